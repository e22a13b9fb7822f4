"""A battery of protocol checks to point at any WebSocket server.

``report = await wslab.check_server(url)`` connects to an echo server
sixteen times, each time as a deliberately simple raw client on asyncio
streams, and runs one named case per connection: a text echo, a 70 KB
message, a ping in the middle of a fragmented message, an unmasked client
frame, invalid UTF-8, an oversized message, a bad handshake... The report
has one row per case: passed or failed, what was expected, what happened.

Design note
-----------
* The battery is **independent** of the frame and handshake code a learner
  writes or compares with: it crafts frames with ``struct`` right here, and
  checks the accept key with ``websockets.utils.accept_key``. It never
  imports ``wslab.frames`` or ``wslab.handshake``. The checks for the pieces
  of a server (:func:`check_handshake_response`, :func:`check_read_frame`,
  lesson 06's exercises) judge with the websockets library's client and
  frames.
* **Nothing hangs.** Each case runs under its own timeout (``timeout``
  seconds, 5 by default); a server that does not answer fails that case with
  "no answer within 5 s" and the battery moves on. Each case uses a fresh
  TCP connection, which is closed (and aborted if need be) when the case
  ends, whatever happened.
* The server is assumed to **echo**: every text or binary message comes back
  unchanged. Its message size limit is a parameter (``max_size``, 1 MiB by
  default, as websockets' own default); ``max_size=None`` skips that case.
* ``check_server`` runs on the caller's loop, so it can test a server that
  runs on that same loop (a notebook's task-mode server). The blocking
  :func:`check_server_sync` runs the battery on a loop of its own in a
  thread: use it from a script or for a server in another thread or
  process, never for a server that needs the calling thread's loop.

What a server must do, case by case, is quoted from RFC 6455 in
:data:`CASES`.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Sequence

from websockets.utils import accept_key

from .checks import CheckFailed, check
from .display import Table

__all__ = [
    "check_server",
    "check_server_sync",
    "Report",
    "CaseResult",
    "Case",
    "CASES",
    "DEFAULT_MAX_SIZE",
    "DEFAULT_TIMEOUT",
    "encode_frame",
    "check_handshake_response",
    "check_read_frame",
    "main",
]

#: The message size limit the battery assumes, in bytes (websockets' default).
DEFAULT_MAX_SIZE = 2**20

#: How long one case may take before it fails with "no answer", in seconds.
DEFAULT_TIMEOUT = 5.0

#: The largest frame the battery accepts from a server, in bytes (memory stays bounded).
MAX_SERVER_FRAME = 64 * 2**20

# Frame layout (RFC 6455 section 5.2):
#   byte 0: FIN | RSV1 | RSV2 | RSV3 | opcode (4 bits)
#   byte 1: MASK | payload length (7 bits: 0-125, 126 -> 16-bit, 127 -> 64-bit)
FIN = 0b1000_0000
RSV_BITS = 0b0111_0000
OPCODE_BITS = 0b0000_1111
MASK_BIT = 0b1000_0000
LENGTH_BITS = 0b0111_1111
LENGTH_16, LENGTH_64 = 126, 127

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_OPCODE_NAMES = {CONT: "continuation", TEXT: "text", BINARY: "binary", CLOSE: "close",
                 PING: "ping", PONG: "pong"}


def encode_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    mask: bool = True,
    rsv: int = 0,
    mask_key: bytes | None = None,
) -> bytes:
    """One frame as a client sends it, valid or not (RFC 6455 section 5.2).

    ``mask=False`` makes the unmasked frame a client must never send;
    ``rsv`` sets the reserved bits (0b111 at most). The length uses the
    shortest form: 7 bits up to 125, then 16 bits, then 64 bits.

    >>> encode_frame(0x1, b"Hello", mask_key=bytes.fromhex("37fa213d")).hex(" ")
    '81 85 37 fa 21 3d 7f 9f 4d 51 58'
    """
    head = bytes([(FIN if fin else 0) | (rsv << 4) | opcode])
    mask_flag = MASK_BIT if mask else 0
    n = len(payload)
    if n < LENGTH_16:
        head += struct.pack("!B", mask_flag | n)
    elif n < 2**16:
        head += struct.pack("!BH", mask_flag | LENGTH_16, n)
    else:
        head += struct.pack("!BQ", mask_flag | LENGTH_64, n)
    if not mask:
        return head + payload
    key = os.urandom(4) if mask_key is None else mask_key
    # XOR with the key repeated over the payload, as one big integer.
    repeated = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")
    return head + key + masked


def _close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode()


def _short(data: bytes | str, limit: int = 24) -> str:
    """A payload, shown short: the text, or a few bytes in hex and the length."""
    if isinstance(data, str):
        return repr(data) if len(data) <= limit else f"{data[:limit]!r}... ({len(data):,} characters)"
    if len(data) <= limit and (not data or data.isascii()):
        return repr(data)
    return f"{len(data):,} bytes ({data[:4].hex(' ')} ...)"


# A server's frames, read back


@dataclass
class _Frame:
    fin: bool
    rsv: int
    opcode: int
    payload: bytes
    masked: bool
    length_form: str  # "7-bit", "16-bit", "64-bit"

    def __str__(self) -> str:
        name = _OPCODE_NAMES.get(self.opcode, f"opcode 0x{self.opcode:x}")
        if self.opcode == CLOSE:
            code, reason = _parse_close(self.payload)
            detail = f"code {code}" + (f" {reason!r}" if reason else "") if code else "no code"
            return f"close frame ({detail})"
        fin = "" if self.fin else " (not final)"
        return f"{name} frame {_short(self.payload)}{fin}"


def _parse_close(payload: bytes) -> tuple[int | None, str]:
    if len(payload) < 2:
        return None, ""
    (code,) = struct.unpack("!H", payload[:2])
    return code, payload[2:].decode("utf-8", "replace")


class _Eof(Exception):
    """The server closed the TCP connection."""


class _Failed(Exception):
    """A case failed; the message says what happened."""


class _Probe:
    """One raw client connection: the handshake, frames out, frames in."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self.host, self.port, self.path = host, port, path
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.frames: asyncio.Queue[_Frame | BaseException] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None
        self.sent_bytes = 0
        self.seen: list[str] = []  # every frame received, for "no answer" reports

    async def connect(self) -> None:
        try:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            raise _Failed(f"could not connect to {self.host}:{self.port}: {exc}") from None

    def request(self, *, key: str | None, version: str = "13") -> bytes:
        lines = [
            f"GET {self.path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
        ]
        if key is not None:
            lines.append(f"Sec-WebSocket-Key: {key}")
        lines.append(f"Sec-WebSocket-Version: {version}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def http(self, request: bytes) -> tuple[int, str, dict[str, str]]:
        """Send ``request``; return the response's status, reason and headers."""
        assert self.reader and self.writer
        self.writer.write(request)
        await self.writer.drain()
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            got = f": {_short(exc.partial, 60)}" if exc.partial else ""
            raise _Failed(f"the server closed the connection without an HTTP response{got}") from None
        except asyncio.LimitOverrunError:
            raise _Failed("the HTTP response head is over 64 KiB without an empty line") from None
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise _Failed(f"the response does not start with an HTTP status line: {status_line!r}")
        headers: dict[str, str] = {}
        for line in header_lines:
            if ":" in line:
                name, value = line.split(":", 1)
                name = name.strip().lower()
                headers[name] = f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
        return int(parts[1]), parts[2] if len(parts) > 2 else "", headers

    async def open(self) -> None:
        """Connect and complete the opening handshake (RFC 6455 section 4)."""
        await self.connect()
        key = base64.b64encode(os.urandom(16)).decode()
        status, reason, headers = await self.http(self.request(key=key))
        if status != 101:
            raise _Failed(f"the handshake got HTTP {status} {reason}; expected 101 Switching Protocols")
        if "websocket" not in headers.get("upgrade", "").lower():
            raise _Failed(f"the 101 response has Upgrade: {headers.get('upgrade')!r}; expected 'websocket'")
        if "upgrade" not in [t.strip().lower() for t in headers.get("connection", "").split(",")]:
            raise _Failed(f"the 101 response has Connection: {headers.get('connection')!r}; expected 'Upgrade'")
        expected = accept_key(key)
        if headers.get("sec-websocket-accept") != expected:
            raise _Failed(
                f"Sec-WebSocket-Accept was {headers.get('sec-websocket-accept')!r} for key {key!r}; "
                f"expected {expected!r} (base64 of SHA-1 of key + GUID, RFC 6455 4.2.2)"
            )
        self._pump = asyncio.ensure_future(self._read_frames())

    async def _read_frames(self) -> None:
        assert self.reader
        try:
            while True:
                self.frames.put_nowait(await self._read_frame())
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            self.frames.put_nowait(_Eof(str(exc)))
        except Exception as exc:  # noqa: BLE001 - handed to the case that reads
            self.frames.put_nowait(exc)

    async def _read_frame(self) -> _Frame:
        assert self.reader
        read = self.reader.readexactly
        b0, b1 = await read(2)
        n = b1 & LENGTH_BITS
        form = "7-bit"
        if n == LENGTH_16:
            (n,) = struct.unpack("!H", await read(2))
            form = "16-bit"
        elif n == LENGTH_64:
            (n,) = struct.unpack("!Q", await read(8))
            form = "64-bit"
        if n > MAX_SERVER_FRAME:
            raise _Failed(f"the server announced a frame of {n:,} bytes; the battery reads at most "
                          f"{MAX_SERVER_FRAME:,} (check the length you encode, RFC 6455 5.2)")
        masked = bool(b1 & MASK_BIT)
        key = await read(4) if masked else b""
        payload = await read(n)
        return _Frame(bool(b0 & FIN), (b0 & RSV_BITS) >> 4, b0 & OPCODE_BITS, payload, masked, form)

    async def send(self, *frames: bytes) -> None:
        """Write frames in one go; a reset connection is not an error here."""
        assert self.writer
        data = b"".join(frames)
        try:
            self.writer.write(data)
            await self.writer.drain()
            self.sent_bytes += len(data)
        except ConnectionError:
            pass  # the server hung up: what it sent before says why

    async def next_frame(self) -> _Frame:
        item = await self.frames.get()
        if isinstance(item, _Eof):
            self.frames.put_nowait(item)  # stays closed
            raise item
        if isinstance(item, BaseException):
            raise item
        self.seen.append(str(item))
        if item.masked:
            raise _Failed(f"the server sent a masked {item} (RFC 6455 5.1: a server must not mask)")
        if item.rsv:
            raise _Failed(f"the server set reserved bits 0b{item.rsv:03b} on {item} with no extension (5.2)")
        return item

    async def message(self) -> tuple[int, bytes, list[_Frame], list[bytes]]:
        """The next data message: (opcode, payload, its frames, pongs seen meanwhile)."""
        frames: list[_Frame] = []
        pongs: list[bytes] = []
        while True:
            try:
                frame = await self.next_frame()
            except _Eof:
                got = f" after {len(frames)} fragment(s)" if frames else ""
                raise _Failed(f"the server closed the TCP connection{got}, with no close frame") from None
            if frame.opcode == PONG:
                pongs.append(frame.payload)
                continue
            if frame.opcode == PING:
                await self.send(encode_frame(PONG, frame.payload))
                continue
            if frame.opcode == CLOSE:
                raise _Failed(f"the server sent a {frame}")
            if frame.opcode == CONT and not frames:
                raise _Failed("the server sent a continuation frame with no message started")
            if frame.opcode != CONT and frames:
                raise _Failed(f"the server started a new message ({frame}) inside a fragmented one")
            frames.append(frame)
            if frame.fin:
                return frames[0].opcode, b"".join(f.payload for f in frames), frames, pongs

    async def close_frame(self) -> tuple[int | None, str, list[str]]:
        """Read until the server's close frame: (code, reason, what came before it)."""
        before: list[str] = []
        while True:
            try:
                frame = await self.next_frame()
            except _Eof:
                seen = f" (it sent {', '.join(before)})" if before else ""
                raise _Failed(f"the server closed the TCP connection without a close frame{seen}") from None
            if frame.opcode == CLOSE:
                code, reason = _parse_close(frame.payload)
                return code, reason, before
            before.append(str(frame))

    async def eof(self) -> bool:
        """True once the server closes TCP; answers nothing else meanwhile."""
        while True:
            try:
                await self.next_frame()
            except _Eof:
                return True

    async def aclose(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
        if self.writer is not None:
            self.writer.close()
            try:
                async with asyncio.timeout(1):
                    await self.writer.wait_closed()
            except (TimeoutError, ConnectionError, OSError):
                self.writer.transport.abort()


# The cases


@dataclass(frozen=True)
class Case:
    """One named check: what a server must do, and the coroutine that checks it."""

    name: str
    expected: str
    run: Callable[[_Probe, "_Settings"], Awaitable[str]]
    rfc: str = ""
    opens: bool = True  # False: the case does its own handshake


@dataclass(frozen=True)
class _Settings:
    max_size: int | None
    timeout: float = DEFAULT_TIMEOUT


async def _echo(probe: _Probe, opcode: int, payload: bytes, *, form: str | None = None) -> str:
    await probe.send(encode_frame(opcode, payload))
    got_opcode, got, frames, _ = await probe.message()
    kind = _OPCODE_NAMES[opcode]
    if got_opcode != opcode:
        raise _Failed(f"a {_OPCODE_NAMES.get(got_opcode, hex(got_opcode))} message came back for a {kind} one")
    if got != payload:
        raise _Failed(f"{_short(got)} came back; expected {_short(payload)}")
    if form is not None and len(frames) == 1 and frames[0].length_form != form:
        raise _Failed(
            f"the echo of {len(payload):,} bytes used a {frames[0].length_form} length; "
            f"RFC 6455 5.2 requires the shortest form ({form})"
        )
    shown = payload.decode() if opcode == TEXT else payload
    return f"{kind} message {_short(shown)} came back"


async def _close_with(probe: _Probe, code: int, what: str) -> str:
    got, reason, before = await probe.close_frame()
    seen = f" after {', '.join(before)}" if before else ""
    if got != code:
        if got is None:
            raise _Failed(f"a close frame with no code{seen}; expected code {code} ({what})")
        raise _Failed(f"close code {got}{seen}; expected {code} ({what})")
    # Finish the closing handshake as a polite client does (RFC 6455 5.5.1).
    await probe.send(encode_frame(CLOSE, _close_payload(code)))
    text = f"close frame, code {got}" + (f" {reason!r}" if reason else "")
    return text + (f" (after {', '.join(before)})" if before else "")


async def _text_echo(p: _Probe, s: _Settings) -> str:
    return await _echo(p, TEXT, "Hello, WebSocket ✓".encode())


async def _binary_echo(p: _Probe, s: _Settings) -> str:
    return await _echo(p, BINARY, bytes(range(256))[:100])


async def _length_16(p: _Probe, s: _Settings) -> str:
    return await _echo(p, BINARY, bytes(range(200)), form="16-bit")


async def _length_64(p: _Probe, s: _Settings) -> str:
    payload = bytes(i % 251 for i in range(70_000))
    return await _echo(p, BINARY, payload, form="64-bit")


async def _two_in_one_write(p: _Probe, s: _Settings) -> str:
    await p.send(encode_frame(TEXT, b"first"), encode_frame(TEXT, b"second"))
    replies = [(await p.message())[1] for _ in range(2)]
    if replies != [b"first", b"second"]:
        raise _Failed(f"{replies!r} came back; expected [b'first', b'second']")
    return "both messages came back, in order"


async def _fragmented(p: _Probe, s: _Settings) -> str:
    await p.send(
        encode_frame(TEXT, b"frag", fin=False),
        encode_frame(CONT, b"ment", fin=False),
        encode_frame(CONT, b"ed", fin=True),
    )
    opcode, got, frames, _ = await p.message()
    if (opcode, got) != (TEXT, b"fragmented"):
        raise _Failed(f"{_OPCODE_NAMES.get(opcode)} message {got!r} came back; expected text 'fragmented'")
    return f"text 'fragmented' came back (in {len(frames)} frame(s))"


async def _ping_inside_fragments(p: _Probe, s: _Settings) -> str:
    await p.send(
        encode_frame(TEXT, b"Hel", fin=False),
        encode_frame(PING, b"mid-message"),
        encode_frame(CONT, b"lo", fin=True),
    )
    opcode, got, _, pongs = await p.message()
    if (opcode, got) != (TEXT, b"Hello"):
        raise _Failed(f"{_OPCODE_NAMES.get(opcode)} message {got!r} came back; expected text 'Hello'")
    if not pongs:
        # The pong may trail the echo; give it the rest of the case's time.
        frame = await p.next_frame()
        if frame.opcode != PONG:
            raise _Failed(f"'Hello' came back but then {frame}, and no pong")
        pongs.append(frame.payload)
    if pongs != [b"mid-message"]:
        raise _Failed(f"pong payload(s) {pongs!r}; expected [b'mid-message']")
    return "pong b'mid-message' and text 'Hello' came back"


async def _ping_pong(p: _Probe, s: _Settings) -> str:
    await p.send(encode_frame(PING, b"are you there?"))
    frame = await p.next_frame()
    if frame.opcode != PONG:
        raise _Failed(f"got a {frame}; expected a pong")
    if frame.payload != b"are you there?":
        raise _Failed(f"the pong carried {frame.payload!r}; expected the ping's b'are you there?'")
    return "pong b'are you there?' came back"


async def _close_echo(p: _Probe, s: _Settings) -> str:
    await p.send(encode_frame(CLOSE, _close_payload(4000, "bye")))
    code, reason, before = await p.close_frame()
    if code != 4000:
        raise _Failed(f"close code {code} came back; expected the client's code 4000 echoed (5.5.1)")
    wait = s.timeout / 2
    try:
        await asyncio.wait_for(p.eof(), wait)
    except TimeoutError:
        raise _Failed(
            f"close code 4000 came back, but the server kept the TCP connection open for {wait:g} s "
            f"(7.1.1: after the closing handshake, the server closes TCP first)"
        ) from None
    return f"close frame, code {code}, then the server closed TCP"


async def _unmasked(p: _Probe, s: _Settings) -> str:
    await p.send(encode_frame(TEXT, b"unmasked", mask=False))
    return await _close_with(p, 1002, "protocol error")


async def _reserved_opcode(p: _Probe, s: _Settings) -> str:
    await p.send(encode_frame(0x3, b"?"))
    return await _close_with(p, 1002, "protocol error")


async def _long_ping(p: _Probe, s: _Settings) -> str:
    await p.send(encode_frame(PING, b"x" * 126))
    return await _close_with(p, 1002, "protocol error")


async def _invalid_utf8(p: _Probe, s: _Settings) -> str:
    await p.send(encode_frame(TEXT, b"caf\xc3"))
    return await _close_with(p, 1007, "invalid payload data")


async def _oversized(p: _Probe, s: _Settings) -> str:
    if s.max_size is None:
        return "skipped (max_size=None)"
    size = s.max_size + 1
    frame = encode_frame(BINARY, bytes(size))
    # Send in pieces and stop as soon as the server answers: a server may
    # refuse from the length in the header and hang up without reading more.
    step = 64 * 1024
    for start in range(0, len(frame), step):
        if not p.frames.empty():
            break
        await p.send(frame[start : start + step])
    return await _close_with(p, 1009, f"message too big: {size:,} bytes > max_size {s.max_size:,}")


async def _handshake_status(p: _Probe, request: bytes) -> tuple[int, str, dict[str, str]]:
    await p.connect()
    return await p.http(request)


async def _missing_key(p: _Probe, s: _Settings) -> str:
    status, reason, _ = await _handshake_status(p, p.request(key=None))
    if status != 400:
        raise _Failed(f"HTTP {status} {reason}; expected 400 Bad Request")
    return f"HTTP {status} {reason}"


async def _wrong_version(p: _Probe, s: _Settings) -> str:
    key = base64.b64encode(os.urandom(16)).decode()
    status, reason, headers = await _handshake_status(p, p.request(key=key, version="8"))
    # RFC 6455 4.4: refuse with "an appropriate HTTP error code (such as 426
    # Upgrade Required)" and a Sec-WebSocket-Version header naming the
    # versions the server speaks. websockets 17 answers 400 without that
    # header: a refusal all the same, so any 4xx passes and the row says so.
    if not 400 <= status < 500:
        raise _Failed(f"HTTP {status} {reason}; expected a refusal, 426 Upgrade Required")
    version = headers.get("sec-websocket-version")
    text = f"HTTP {status} {reason}" + (f", Sec-WebSocket-Version: {version}" if version else "")
    if status != 426 or version != "13":
        text += " (passes; 4.4 recommends 426 with Sec-WebSocket-Version: 13)"
    return text


#: The battery, in order. Each case gets a fresh connection.
CASES: list[Case] = [
    Case("text echo", "a text message comes back unchanged", _text_echo, "5.6"),
    Case("binary echo", "a binary message comes back unchanged", _binary_echo, "5.6"),
    Case("200 bytes (16-bit length)", "200 bytes come back; lengths 126-65535 use 16 bits", _length_16, "5.2"),
    Case("70,000 bytes (64-bit length)", "70,000 bytes come back; longer lengths use 64 bits", _length_64, "5.2"),
    Case("two frames in one write", "two messages sent in one TCP write both come back", _two_in_one_write, "5.2"),
    Case("fragmented message", "'frag'+'ment'+'ed' comes back as one message 'fragmented'", _fragmented, "5.4"),
    Case("ping inside a fragmented message", "a pong comes back, and the message is still reassembled", _ping_inside_fragments, "5.4"),
    Case("ping -> pong", "a pong with the ping's payload", _ping_pong, "5.5.2"),
    Case("close with a code", "the server echoes close code 4000, then closes TCP", _close_echo, "5.5.1"),
    Case("unmasked client frame", "close code 1002 (protocol error)", _unmasked, "5.1"),
    Case("reserved opcode 0x3", "close code 1002 (protocol error)", _reserved_opcode, "5.2"),
    Case("ping longer than 125 bytes", "close code 1002 (protocol error)", _long_ping, "5.5"),
    Case("invalid UTF-8 in a text message", "close code 1007 (invalid payload data)", _invalid_utf8, "8.1"),
    Case("oversized message", "close code 1009 (message too big) for max_size + 1 bytes", _oversized, "7.4.1"),
    Case("handshake without Sec-WebSocket-Key", "HTTP 400 Bad Request", _missing_key, "4.2.1", opens=False),
    Case("handshake with version 8", "HTTP 426 Upgrade Required (any 4xx passes), Sec-WebSocket-Version: 13", _wrong_version, "4.4", opens=False),
]


# Results


@dataclass
class CaseResult:
    """What one case expected and what happened."""

    name: str
    passed: bool
    expected: str
    happened: str
    rfc: str = ""
    seconds: float = 0.0

    def __str__(self) -> str:
        mark = "✓" if self.passed else "✗"
        return f"{mark} {self.name}: {self.happened}" + ("" if self.passed else f" (expected {self.expected})")


@dataclass
class Report:
    """The battery's results: a table in Jupyter, text elsewhere.

    ``report.passed`` is true when every case passed; ``report.failed`` lists
    the failed cases' names; ``report["text echo"]`` is one :class:`CaseResult`;
    ``report.assert_passed()`` raises :class:`wslab.CheckFailed` naming them.
    """

    url: str
    results: list[CaseResult]
    max_size: int | None = DEFAULT_MAX_SIZE
    server_errors: list[BaseException] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> list[str]:
        return [r.name for r in self.results if not r.passed]

    def __getitem__(self, name: str) -> CaseResult:
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(f"no case named {name!r}; the cases are {[r.name for r in self.results]}")

    def __len__(self) -> int:
        return len(self.results)

    @property
    def summary(self) -> str:
        ok = sum(r.passed for r in self.results)
        text = f"{ok} of {len(self.results)} cases passed against {self.url}"
        if self.server_errors:
            text += f"; the server's code raised {len(self.server_errors)} exception(s), first: " \
                    f"{type(self.server_errors[0]).__name__}: {self.server_errors[0]}"
        return text

    def table(self) -> Table:
        rows = [
            ["✓" if r.passed else "✗", r.name, r.happened if r.passed else f"{r.happened}; expected {r.expected}", r.rfc]
            for r in self.results
        ]
        return Table(["", "case", "what happened", "RFC 6455"], rows, title=self.summary)

    def __str__(self) -> str:
        return str(self.table())

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()

    def assert_passed(self) -> None:
        """Raise unless every case passed.

        A server whose code raised ``NotImplementedError`` (an exercise stub)
        re-raises it, so ``wslab.exercise`` reports "not done yet".
        """
        for exc in self.server_errors:
            if isinstance(exc, NotImplementedError):
                raise exc
        if not self.passed:
            failed = "; ".join(
                f"{r.name}: {r.happened} (expected {r.expected}, RFC 6455 {r.rfc})"
                for r in self.results if not r.passed
            )
            raise CheckFailed(f"{len(self.failed)} of {len(self.results)} cases failed: {failed}")


def _target(url: str) -> tuple[str, int, str]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "ws":
        raise ValueError(
            f"the battery speaks plain ws:// only, got {url!r}: pass the server's ws:// url "
            f"(srv.url)"
        )
    if parts.hostname is None:
        raise ValueError(f"no host in {url!r}: write ws://127.0.0.1:PORT/")
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    return parts.hostname, parts.port or 80, path


async def _run_case(case: Case, host: str, port: int, path: str, settings: _Settings, timeout: float) -> CaseResult:
    probe = _Probe(host, port, path)
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            if case.opens:
                await probe.open()
            happened = await case.run(probe, settings)
        passed = True
    except TimeoutError:
        passed, happened = False, f"no answer within {timeout:g} s"
        if probe.seen:
            happened += f" (received only: {', '.join(probe.seen[-3:])})"
    except _Failed as exc:
        passed, happened = False, str(exc)
    except _Eof:
        passed, happened = False, "the server closed the TCP connection"
    except ConnectionResetError:
        passed, happened = False, "the server reset the TCP connection without answering"
    except (ConnectionError, OSError) as exc:
        passed, happened = False, f"connection error: {exc}"
    finally:
        await probe.aclose()
    return CaseResult(case.name, passed, case.expected, happened, case.rfc, time.monotonic() - started)


async def check_server(
    server: Any,
    *,
    max_size: int | None = DEFAULT_MAX_SIZE,
    timeout: float = DEFAULT_TIMEOUT,
    cases: Sequence[str] | None = None,
) -> Report:
    """Run the battery against an echo server; return a :class:`Report`.

    ``server`` is a ``ws://`` URL or a handle with ``.url`` (``wslab.serve``,
    ``wslab.serve_scratch``...): then exceptions its code raised during the
    battery go into ``report.server_errors``. ``max_size`` is the server's
    message size limit in bytes (``None`` skips the oversized case);
    ``timeout`` bounds each case, in seconds; ``cases`` picks cases by name.

    >>> report = await wslab.check_server(srv.url, max_size=2**20)
    >>> report.failed
    []
    """
    url = server if isinstance(server, str) else server.url
    host, port, path = _target(url)
    chosen = CASES
    if cases is not None:
        names = {c.name for c in CASES}
        unknown = [n for n in cases if n not in names]
        if unknown:
            raise ValueError(f"no case named {unknown}; the cases are {[c.name for c in CASES]}")
        chosen = [c for c in CASES if c.name in cases]
    errors = getattr(server, "errors", None)
    errors_before = len(errors) if errors is not None else 0
    settings = _Settings(max_size, timeout)
    results = [await _run_case(c, host, port, path, settings, timeout) for c in chosen]
    report = Report(url, results, max_size)
    if errors is not None:
        report.server_errors = list(errors[errors_before:])
    return report


def check_server_sync(
    server: Any,
    *,
    max_size: int | None = DEFAULT_MAX_SIZE,
    timeout: float = DEFAULT_TIMEOUT,
    cases: Sequence[str] | None = None,
) -> Report:
    """Like :func:`check_server`, blocking, on an event loop in a thread of its own.

    For a script, or a server in another thread or process
    (``wslab.serve_in_thread``). A task-mode server on the calling thread's
    loop cannot answer while this blocks: for that, ``await check_server(...)``.
    """
    loop = _running_loop()
    if loop is not None and getattr(server, "_loop", None) is loop:
        raise RuntimeError(
            f"{getattr(server, 'name', 'this server')!r} runs on this cell's event loop, which "
            f"check_server_sync() would block: write `report = await wslab.check_server(srv)`"
        )
    from .servers import LoopThread

    runner = LoopThread("battery")
    try:
        budget = timeout * (len(cases) if cases is not None else len(CASES)) + 5
        return runner.run(check_server(server, max_size=max_size, timeout=timeout, cases=cases), budget)
    finally:
        runner.stop()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


# Checks for the pieces of a server (lesson 06's exercises)


def check_handshake_response(respond: Callable[[bytes], bytes]) -> None:
    """Judge ``respond(request_bytes) -> response_bytes``, a server's handshake answer.

    The judge is the websockets library's own client (sans-I/O): its real
    request goes in, and your answer must open its connection. Then two
    refusals: no ``Sec-WebSocket-Key`` must get 400, version 8 must get 426
    with ``Sec-WebSocket-Version: 13`` (RFC 6455 4.2.1, 4.4). Raises
    :class:`wslab.CheckFailed` saying what is wrong.
    """
    from websockets.client import ClientProtocol
    from websockets.protocol import State
    from websockets.uri import parse_uri

    client = ClientProtocol(parse_uri("ws://127.0.0.1:8765/chat"))
    client.send_request(client.connect())
    request = b"".join(client.data_to_send())
    answer = respond(request)
    check(isinstance(answer, (bytes, bytearray)),
          f"the answer was {type(answer).__name__}; return bytes, e.g. text.encode()")
    client.receive_data(bytes(answer))
    if client.handshake_exc is not None:
        raise CheckFailed(
            f"websockets' client refused your answer {_short(bytes(answer), 60)}: {client.handshake_exc}"
        )
    check(client.state is State.OPEN,
          f"your answer {_short(bytes(answer), 60)} did not complete the handshake: "
          f"does it end with an empty line, b'\\r\\n\\r\\n'?")
    key_line = next(line for line in request.split(b"\r\n") if line.startswith(b"Sec-WebSocket-Key"))
    for what, bad, status in [
        ("a request without Sec-WebSocket-Key", request.replace(key_line + b"\r\n", b""), 400),
        ("a request with Sec-WebSocket-Version: 8",
         request.replace(b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8"), 426),
    ]:
        refusal = bytes(respond(bad))
        head = refusal.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        line = head.split("\r\n", 1)[0]
        check(line.startswith(f"HTTP/1.1 {status} "),
              f"for {what}, your answer starts {line!r}; expected 'HTTP/1.1 {status} ...'")
        check(refusal.count(b"\r\n\r\n") >= 1, f"for {what}, the answer has no empty line ending its head")
        if status == 426:
            check("sec-websocket-version: 13" in head.lower(),
                  f"the 426 answer lacks the header Sec-WebSocket-Version: 13 (RFC 6455 4.4)")


async def check_read_frame(
    read_frame: Callable[..., Awaitable[tuple[bool, int, bytes]]],
    max_size: int = DEFAULT_MAX_SIZE,
    *,
    timeout: float = 2.0,
) -> None:
    """Judge ``await read_frame(reader, max_size) -> (fin, opcode, payload)``.

    Frames made by the websockets library (and the RFC's examples) go into an
    :class:`asyncio.StreamReader`; each must come back unmasked. Frames that
    break the rules must raise an exception whose ``.code`` is the close code
    (1002 unmasked / reserved opcode / long control frame, 1009 over
    ``max_size``, before reading the payload). Raises :class:`wslab.CheckFailed`.
    """
    from websockets.frames import Frame as WsFrame
    from websockets.frames import Opcode as WsOpcode

    def ws(opcode: WsOpcode, payload: bytes, fin: bool = True) -> bytes:
        return WsFrame(opcode, payload, fin=fin).serialize(mask=True)

    big = bytes(i % 251 for i in range(70_000))
    good: list[tuple[str, bytes, list[tuple[bool, int, bytes]]]] = [
        ("the RFC's masked 'Hello' (81 85 37 fa 21 3d 7f 9f 4d 51 58)",
         bytes.fromhex("818537fa213d7f9f4d5158"), [(True, TEXT, b"Hello")]),
        ("a 200-byte binary frame (16-bit length)", ws(WsOpcode.BINARY, big[:200]), [(True, BINARY, big[:200])]),
        ("a 70,000-byte binary frame (64-bit length)", ws(WsOpcode.BINARY, big), [(True, BINARY, big)]),
        ("two frames of a fragmented message",
         ws(WsOpcode.TEXT, b"Hel", fin=False) + ws(WsOpcode.CONT, b"lo"),
         [(False, TEXT, b"Hel"), (True, CONT, b"lo")]),
        ("a ping with payload b'hi'", ws(WsOpcode.PING, b"hi"), [(True, PING, b"hi")]),
        ("an empty text frame", ws(WsOpcode.TEXT, b""), [(True, TEXT, b"")]),
    ]
    for what, data, expected in good:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        got = []
        for _ in expected:
            try:
                async with asyncio.timeout(timeout):
                    fin, opcode, payload = await read_frame(reader, max_size)
            except TimeoutError:
                raise CheckFailed(f"for {what}, read_frame() waited {timeout:g} s for more bytes: "
                                  f"read exactly the frame's length") from None
            except asyncio.IncompleteReadError as exc:
                raise CheckFailed(f"for {what}, read_frame() read past the frame: it wanted "
                                  f"{exc.expected} more bytes but only {len(exc.partial)} were left") from None
            got.append((bool(fin), int(opcode), bytes(payload)))
        if got != expected:
            raise CheckFailed(f"for {what}, read_frame() returned {_short_list(got)}; expected {_short_list(expected)}")
        check(reader.at_eof(), f"for {what}, read_frame() left bytes unread: read the whole frame")

    header_only = struct.pack("!BBQ", FIN | BINARY, MASK_BIT | LENGTH_64, max_size + 1) + b"\0\0\0\0"
    bad = [
        ("an unmasked frame (81 05 48 65 6c 6c 6f)", bytes.fromhex("810548656c6c6f"), 1002, True),
        ("a frame with the reserved opcode 0x3", encode_frame(0x3, b"?"), 1002, True),
        ("a ping of 126 bytes (control frames carry at most 125)", encode_frame(PING, b"x" * 126), 1002, True),
        (f"a frame that announces {max_size + 1:,} bytes (max_size {max_size:,})", header_only, 1009, False),
    ]
    for what, data, code, eof in bad:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        if eof:
            reader.feed_eof()
        try:
            async with asyncio.timeout(timeout):
                got = await read_frame(reader, max_size)
        except TimeoutError:
            raise CheckFailed(f"for {what}, read_frame() waited {timeout:g} s for the payload: check the "
                              f"length against max_size before reading it, and raise ProtocolError(..., code={code})") from None
        except NotImplementedError:
            raise
        except Exception as exc:  # noqa: BLE001 - we judge what was raised
            raised = getattr(exc, "code", None)
            check(raised == code, f"for {what}, read_frame() raised {type(exc).__name__}({exc}) with code "
                                  f"{raised}; expected code {code}: raise wslab.ProtocolError('...', code={code})")
            continue
        raise CheckFailed(f"for {what}, read_frame() returned {_short_list([got])}; expected it to raise "
                          f"wslab.ProtocolError('...', code={code})")


def _short_list(frames: Sequence[Any]) -> str:
    return "[" + ", ".join(
        f"({f[0]!r}, {f[1]!r}, {_short(bytes(f[2]))})" if isinstance(f, tuple) and len(f) == 3 else repr(f)
        for f in frames
    ) + "]"


def main(argv: list[str] | None = None) -> int:
    """``python -m wslab battery ws://HOST:PORT/ [--max-size N] [--timeout S]``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m wslab battery",
        description="Run the protocol battery against a WebSocket echo server.",
    )
    parser.add_argument("url", help="the server's ws:// url, e.g. ws://127.0.0.1:8765/")
    parser.add_argument("--max-size", type=int, default=DEFAULT_MAX_SIZE,
                        help=f"the server's message size limit in bytes (default {DEFAULT_MAX_SIZE}); "
                             f"0 skips the oversized case")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds per case (default {DEFAULT_TIMEOUT:g})")
    args = parser.parse_args(argv)
    try:
        report = asyncio.run(check_server(args.url, max_size=args.max_size or None, timeout=args.timeout))
    except ValueError as exc:
        parser.error(str(exc))
    print(report)
    return 0 if report.passed else 1

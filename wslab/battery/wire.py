"""The battery's own raw client: frames crafted with ``struct``, a socket read and written at once.

Design note
-----------
* **Independent.** Nothing here imports ``wslab.frames`` or
  ``wslab.handshake``: the battery judges the code a learner writes, so it
  must not share it. Frames are built with ``struct`` (the accept key is
  checked in :mod:`.cases.handshake`, with ``websockets.utils.accept_key``).
* **Reading never depends on writing.** One task reads the socket into a
  buffer from the moment it connects until the server closes it. Writes go
  through the same non-blocking socket (``loop.sock_sendall``); a write that
  fails (the server reset the connection) stops writing and nothing else. A
  server that answers "message too big" and hangs up while the battery is
  still sending gets its close frame read anyway: Linux keeps bytes that
  arrived before a reset readable, and the reader reads them first. (An
  ``asyncio.StreamReader`` would not: once its transport sees the reset it
  raises on every read, bytes in its buffer or not.)
* **Lenient about what the server sends, strict in one place.** Server frames
  are decoded whatever they look like (masked, non-minimal lengths, reserved
  bits); each oddity is written down in :attr:`Probe.violations` and only
  the case named after that rule fails for it. A server's pings are answered
  and its pongs skipped wherever a case reads (RFC 6455 5.5.2 "MAY", 5.5.3).
* **Bounded memory.** Reading pauses once :data:`BUFFER_LIMIT` bytes wait
  unparsed (unless a frame being read needs more) and decoding pauses once
  :data:`FRAMES_AHEAD` frames wait unread: a server that floods the battery
  fails its case on time without growing the grader's memory.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import os
import re
import socket
import struct
from dataclasses import dataclass


__all__ = [
    "encode_frame",
    "close_payload",
    "parse_close",
    "ServerFrame",
    "Probe",
    "Failed",
    "Eof",
    "Unreachable",
    "short",
    "printable",
    "OPCODE_NAMES",
    "MAX_SERVER_FRAME",
    "BUFFER_LIMIT",
    "FRAMES_AHEAD",
    "CONT",
    "TEXT",
    "BINARY",
    "CLOSE",
    "PING",
    "PONG",
]

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
OPCODE_NAMES = {CONT: "continuation", TEXT: "text", BINARY: "binary", CLOSE: "close", PING: "ping", PONG: "pong"}

#: What the battery reads at most per socket read, in bytes.
READ_SIZE = 256 * 1024

#: Bytes read ahead of what a case consumed, and frames decoded ahead, before reading pauses: a server
#: that floods (pongs, pings, echoes in a loop) costs bounded memory, whatever the case's timeout.
BUFFER_LIMIT = 4 * 2**20
FRAMES_AHEAD = 1024


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
    return head + key + _xor(payload, key)


def _xor(payload: bytes, key: bytes) -> bytes:
    """XOR with the key repeated over the payload, as one big integer (5.3)."""
    n = len(payload)
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def close_payload(code: int, reason: str = "") -> bytes:
    """The body of a close frame: the 2-byte code, then the UTF-8 reason (5.5.1)."""
    return struct.pack("!H", code) + reason.encode()


def parse_close(payload: bytes) -> tuple[int | None, str]:
    """(code, reason) of a close frame's body; ``None`` when it has no 2-byte code."""
    if len(payload) < 2:
        return None, ""
    (code,) = struct.unpack("!H", payload[:2])
    return code, payload[2:].decode("utf-8", "replace")


def short(data: bytes | str, limit: int = 24) -> str:
    """A payload, shown short: the text, or a few bytes in hex and the length."""
    if isinstance(data, str):
        return repr(data) if len(data) <= limit else f"{data[:limit]!r}... ({len(data):,} characters)"
    if len(data) <= limit and (not data or data.isascii()):
        return repr(data)
    return f"{len(data):,} bytes ({data[:4].hex(' ')} ...)"


def printable(text: str) -> str:
    """``text`` with every control character shown as an escape (``\\x00``, ``\\x1b``).

    What a server sends ends up in reports, terminals and JUnit XML: a NUL
    or an ANSI escape there must be seen, not obeyed (RFC 9110 5.5 forbids
    them in header values anyway).
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class Failed(Exception):
    """A case failed; the message says what happened."""


class Eof(Exception):
    """The server closed (or reset) the TCP connection."""


class Unreachable(Exception):
    """Nothing accepts TCP connections at the battery's target."""


@dataclass
class ServerFrame:
    """One frame read back from the server, decoded whatever its flaws."""

    fin: bool
    rsv: int
    opcode: int
    payload: bytes
    masked: bool
    length_form: str  # "7-bit", "16-bit", "64-bit"
    minimal: bool  # the length used the shortest form (5.2)

    @property
    def control(self) -> bool:
        return self.opcode >= 0x8

    def __str__(self) -> str:
        name = OPCODE_NAMES.get(self.opcode, f"reserved-opcode 0x{self.opcode:x}")
        if self.opcode == CLOSE:
            code, reason = parse_close(self.payload)
            if code is not None:
                detail = f"code {code}" + (f" {reason!r}" if reason else "")
            else:
                detail = f"a {len(self.payload)}-byte body" if self.payload else "no code"
            return f"close frame ({detail})"
        fin = "" if self.fin else " (not final)"
        return f"{name} frame {short(self.payload)}{fin}"


class Probe:
    """One raw client connection: the handshake, frames out, frames in.

    ``violations`` collects (rule, text) for every server frame that breaks
    a framing rule: ``"masked"``, ``"length"``, ``"rsv"``,
    ``"control-fragmented"``, ``"control-long"``.
    """

    def __init__(self, host: str, port: int, path: str) -> None:
        self.host, self.port, self.path = host, port, path
        self.sock: socket.socket | None = None
        self.buffer = bytearray()
        self.closed: str | None = None  # why the read side ended: "eof" or the error
        self._wake = asyncio.Event()
        self._room = asyncio.Event()  # set while the buffer is under BUFFER_LIMIT (or a read needs more)
        self._room.set()
        self._need = 0  # bytes a read is waiting for
        self._reader: asyncio.Task[None] | None = None
        self._pump: asyncio.Task[None] | None = None
        self.frames: asyncio.Queue[ServerFrame | BaseException] = asyncio.Queue(FRAMES_AHEAD)
        self.answered = asyncio.Event()  # a data or close frame came, or TCP closed
        self.write_error: OSError | None = None
        self.mid_frame = False  # True once a frame was left half written: send nothing more
        self.seen: collections.deque[str] = collections.deque(maxlen=3)  # the last frames read, for reports
        self.frames_seen = 0  # how many frames the case read
        self.violations: list[tuple[str, str]] = []

    # TCP

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, (self.host, self.port))
        except OSError as exc:
            sock.close()
            raise Unreachable(f"nothing accepts connections at {self.host}:{self.port} ({exc.strerror or exc})") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self._reader = asyncio.ensure_future(self._read_socket())

    async def _read_socket(self) -> None:
        assert self.sock is not None
        loop = asyncio.get_running_loop()
        try:
            while True:
                while len(self.buffer) >= max(BUFFER_LIMIT, self._need):
                    self._room.clear()
                    await self._room.wait()
                data = await loop.sock_recv(self.sock, READ_SIZE)
                if not data:
                    self.closed = "eof"
                    break
                self.buffer += data
                self._wake.set()
        except OSError as exc:
            self.closed = f"{type(exc).__name__}: {exc.strerror or exc}"
        finally:
            self.closed = self.closed or "closed"
            self._wake.set()

    async def _wait(self) -> None:
        self._wake.clear()
        await self._wake.wait()

    async def readexactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if self.closed is not None:
                raise Eof(self.closed)
            self._need = n
            self._room.set()
            await self._wait()
        self._need = 0
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        if len(self.buffer) < BUFFER_LIMIT:
            self._room.set()
        return data

    async def readuntil(self, separator: bytes, limit: int = 65536) -> bytes:
        while (end := self.buffer.find(separator)) < 0:
            if len(self.buffer) > limit:
                raise Failed(f"the HTTP response head is over {limit // 1024} KiB without an empty line")
            if self.closed is not None:
                got = f": {short(bytes(self.buffer), 60)}" if self.buffer else ""
                raise Failed(f"the server closed the connection without an HTTP response{got}")
            self._need = len(self.buffer) + 1
            self._room.set()
            await self._wait()
        self._need = 0
        self._room.set()
        end += len(separator)
        data = bytes(self.buffer[:end])
        del self.buffer[:end]
        return data

    async def send(self, *frames: bytes) -> None:
        """Write frames in one go; a reset connection only stops further writes."""
        if self.write_error is not None or self.mid_frame or self.sock is None:
            return
        try:
            await asyncio.get_running_loop().sock_sendall(self.sock, b"".join(frames))
        except OSError as exc:
            self.write_error = exc  # the server hung up: what it sent before says why

    async def send_until_answered(self, data: bytes, chunk: int = 64 * 1024) -> int:
        """Write ``data`` in chunks; stop as soon as the server answers. Returns bytes written.

        "Answers" means a data or close frame, or TCP closed: a server may
        refuse a message from its header alone and hang up without reading
        the rest. Once stopped in the middle, nothing more is written.
        """
        assert self.sock is not None
        loop = asyncio.get_running_loop()
        sent = 0
        for start in range(0, len(data), chunk):
            if self.answered.is_set() or self.write_error is not None:
                break
            writing = asyncio.ensure_future(loop.sock_sendall(self.sock, data[start : start + chunk]))
            answer = asyncio.ensure_future(self.answered.wait())
            try:
                await asyncio.wait({writing, answer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                answer.cancel()
            if not writing.done():
                writing.cancel()
                break
            if writing.exception() is not None:
                exc = writing.exception()
                self.write_error = exc if isinstance(exc, OSError) else OSError(str(exc))
                break
            sent += min(chunk, len(data) - start)
        if sent < len(data):
            self.mid_frame = True
        return sent

    def shutdown_write(self) -> None:
        """Half-close: tell the server the client is done sending (TCP FIN)."""
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    # HTTP

    def request(self, *, key: str | None, version: str = "13", extra: str = "") -> bytes:
        # Lowercase header names: HTTP header names are case-insensitive (RFC 9110 5.1).
        lines = [
            f"GET {self.path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
        ]
        if key is not None:
            lines.append(f"Sec-WebSocket-Key: {key}")
        lines.append(f"Sec-WebSocket-Version: {version}")
        return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()

    async def http(self, request: bytes) -> tuple[int, str, dict[str, str]]:
        """Send ``request``; return the response's status, reason and headers (lowercase names)."""
        await self.send(request)
        head = await self.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        # RFC 9112 4: status-line = HTTP-version SP status-code SP [ reason-phrase ], status-code = 3DIGIT
        # (ASCII digits only: str.isdigit() also takes '²', and int() refuses 4,301 digits).
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or re.fullmatch("[0-9]{3}", parts[1]) is None:
            raise Failed(f"the response does not start with an HTTP status line (RFC 9112 4: "
                         f"HTTP/1.1, a space, a 3-digit status code): {short(status_line, 60)}")
        headers: dict[str, str] = {}
        for line in header_lines:
            if ":" in line:
                name, value = line.split(":", 1)
                name, value = printable(name.strip().lower()), printable(value.strip())
                headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return int(parts[1]), printable(parts[2]) if len(parts) > 2 else "", headers

    async def open(self) -> tuple[str, dict[str, str]]:
        """Connect and complete the opening handshake (RFC 6455 section 4).

        Only the status 101 is required here; the case "101 Switching
        Protocols" judges the headers. Returns (key, response headers).
        """
        await self.connect()
        key = base64.b64encode(os.urandom(16)).decode()
        status, reason, headers = await self.http(self.request(key=key))
        if status != 101:
            raise Failed(f"the handshake got HTTP {status} {reason}; expected 101 Switching Protocols")
        self._pump = asyncio.ensure_future(self._read_frames())
        return key, headers

    # Frames

    async def _read_frames(self) -> None:
        try:
            while True:
                frame = await self._read_frame()
                if frame.opcode not in (PING, PONG):
                    self.answered.set()
                await self.frames.put(frame)  # waits while FRAMES_AHEAD frames are unread
        except Exception as exc:  # noqa: BLE001 - Eof or a bad frame: handed to the case that reads
            self.answered.set()
            await self.frames.put(exc)
        finally:
            self.answered.set()

    async def _read_frame(self) -> ServerFrame:
        b0, b1 = await self.readexactly(2)
        n = b1 & LENGTH_BITS
        form, minimal = "7-bit", True
        if n == LENGTH_16:
            (n,) = struct.unpack("!H", await self.readexactly(2))
            form, minimal = "16-bit", n >= LENGTH_16
        elif n == LENGTH_64:
            (n,) = struct.unpack("!Q", await self.readexactly(8))
            form, minimal = "64-bit", n >= 2**16
        if n > MAX_SERVER_FRAME:
            raise Failed(f"the server announced a frame of {n:,} bytes; the battery reads at most "
                         f"{MAX_SERVER_FRAME:,} (check the length you encode, RFC 6455 5.2)")
        masked = bool(b1 & MASK_BIT)
        key = await self.readexactly(4) if masked else b""
        payload = await self.readexactly(n)
        if masked:
            payload = _xor(payload, key)
        frame = ServerFrame(bool(b0 & FIN), (b0 & RSV_BITS) >> 4, b0 & OPCODE_BITS, payload, masked, form, minimal)
        self._note_violations(frame, n)
        return frame

    def _note_violations(self, frame: ServerFrame, n: int) -> None:
        if len(self.violations) >= FRAMES_AHEAD:
            return  # enough to judge: the case names the first
        if frame.masked:
            self.violations.append(("masked", f"a masked {frame}"))
        if not frame.minimal:
            self.violations.append(("length", f"{frame} with its {n:,}-byte length in the {frame.length_form} form"))
        if frame.rsv:
            self.violations.append(("rsv", f"{frame} with reserved bits 0b{frame.rsv:03b}"))
        if frame.control and not frame.fin:
            self.violations.append(("control-fragmented", f"{frame}: a control frame without FIN"))
        if frame.control and n > 125:
            self.violations.append(("control-long", f"{frame} of {n} bytes"))

    async def next_frame(self) -> ServerFrame:
        """The next frame from the server; raises :class:`Eof` once TCP is closed."""
        item = await self.frames.get()
        if isinstance(item, Eof):
            self.frames.put_nowait(item)  # stays closed
            raise item
        if isinstance(item, BaseException):
            raise item
        self.seen.append(str(item))
        self.frames_seen += 1
        return item

    async def next_answer(self) -> ServerFrame:
        """The next frame that is not a ping or pong: pings are answered, pongs skipped."""
        while True:
            frame = await self.next_frame()
            if frame.opcode == PING:
                await self.send(encode_frame(PONG, frame.payload))
            elif frame.opcode != PONG:
                return frame

    async def message(self) -> tuple[int, bytes, list[ServerFrame], list[bytes]]:
        """The next data message: (opcode, payload, its frames, pongs seen meanwhile)."""
        frames: list[ServerFrame] = []
        pongs: list[bytes] = []
        while True:
            try:
                frame = await self.next_frame()
            except Eof:
                got = f" after {len(frames)} fragment(s)" if frames else ""
                raise Failed(f"the server closed the TCP connection{got}, with no close frame") from None
            if frame.opcode == PONG:
                if len(pongs) < FRAMES_AHEAD:  # a flood of pongs must not grow memory
                    pongs.append(frame.payload)
                continue
            if frame.opcode == PING:
                await self.send(encode_frame(PONG, frame.payload))
                continue
            if frame.opcode == CLOSE:
                raise Failed(f"the server sent a {frame}")
            if frame.opcode == CONT and not frames:
                raise Failed("the server sent a continuation frame with no message started")
            if frame.opcode != CONT and frames:
                raise Failed(f"the server started a new message ({frame}) inside a fragmented one")
            frames.append(frame)
            if frame.fin:
                return frames[0].opcode, b"".join(f.payload for f in frames), frames, pongs

    async def eof(self) -> None:
        """Return once the server closes TCP; frames meanwhile are skipped."""
        while True:
            try:
                await self.next_frame()
            except Eof:
                return

    async def aclose(self) -> None:
        tasks = [t for t in (self._pump, self._reader) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1)
        if self.sock is not None:
            self.sock.close()

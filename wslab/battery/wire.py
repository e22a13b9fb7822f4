"""The battery's own raw client: frames crafted with ``struct``, a socket read and written at once.

Design note
-----------
* **Independent.** Nothing here imports ``wslab.protocol.frames`` or
  ``wslab.protocol.handshake``: the battery judges the code a learner writes, so it
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
  unparsed and decoding pauses once :data:`FRAMES_AHEAD` frames or
  :data:`QUEUE_LIMIT` payload bytes wait unread. A frame over
  :data:`KEPT_PAYLOAD` bytes is read through and only its start is kept (no
  case sends more than 70,000 bytes to echo), a frame announcing more than
  :data:`MAX_SERVER_FRAME` bytes is refused from its header, and a message is
  reassembled up to :data:`MESSAGE_LIMIT` bytes. A server that floods the
  battery, or sends 60 MiB frames, fails its case on time while the grader
  stays under about 100 MB.
* **Rules on every frame.** Each decoded frame and each 101 goes through the
  connection's :class:`~wslab.battery.watch.Watch`: a break is written down
  in :attr:`Probe.violations`, and only the case that names that rule fails
  for it (see :mod:`.watch`).
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
from typing import Callable

from .craft import (
    CLOSE,
    BINARY,
    CONT,
    FIN,
    LENGTH_16,
    LENGTH_64,
    LENGTH_BITS,
    MASK_BIT,
    OPCODE_BITS,
    PING,
    PONG,
    RSV_BITS,
    TEXT,
    apply_mask,
    encode_frame,
    parse_close,
    printable,
    short,
)
from ..course.i18n import N_
from .phrase import Phrase
from .watch import Watch

__all__ = [
    "ServerFrame",
    "Probe",
    "Failed",
    "Eof",
    "Unreachable",
    "MAX_SERVER_FRAME",
    "KEPT_PAYLOAD",
    "MESSAGE_LIMIT",
    "BUFFER_LIMIT",
    "FRAMES_AHEAD",
    "QUEUE_LIMIT",
    "Closed",
]

#: The largest frame the battery reads from a server, in bytes; a larger one fails the case from its header.
MAX_SERVER_FRAME = 64 * 2**20
#: How much of a server frame's payload the battery keeps; the rest is read and dropped.
KEPT_PAYLOAD = 2**20
#: The largest message the battery reassembles from a server's fragments, in bytes.
MESSAGE_LIMIT = 4 * 2**20

#: What the battery reads at most per socket read, in bytes.
READ_SIZE = 256 * 1024

#: Bytes read ahead of what a case consumed, and frames decoded ahead, before reading pauses: a server
#: that floods (pongs, pings, echoes in a loop) costs bounded memory, whatever the case's timeout.
BUFFER_LIMIT = 4 * 2**20
FRAMES_AHEAD = 1024
#: Payload bytes decoded ahead of what a case read, before decoding pauses.
QUEUE_LIMIT = 8 * 2**20


class Failed(Exception):
    """A case failed; the message says what happened."""


class Eof(Exception):
    """The server closed (or reset) the TCP connection."""


class Unreachable(Exception):
    """Nothing accepts TCP connections at the battery's target."""


class Closed(Failed):
    """The server sent a close frame where a case waited for a message; ``frame`` is that close frame."""

    def __init__(self, frame: ServerFrame) -> None:
        super().__init__(Phrase(N_("the server sent a {frame}"), frame=frame))
        self.frame = frame


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
    length: int = -1  # the announced payload length; over KEPT_PAYLOAD, only the payload's start is kept

    def __post_init__(self) -> None:
        if self.length < 0:
            self.length = len(self.payload)

    @property
    def control(self) -> bool:
        return self.opcode >= 0x8

    def phrase(self) -> Phrase:
        """This frame in a few words (a :class:`~.phrase.Phrase`: English, or shown translated)."""
        if self.opcode == CLOSE:
            code, reason = parse_close(self.payload)
            if code is not None and reason:
                return Phrase(N_("close frame (code {code} {reason!r})"), code=code, reason=reason)
            if code is not None:
                return Phrase(N_("close frame (code {code})"), code=code)
            if self.payload:
                return Phrase(N_("close frame (a {size}-byte body)"), size=len(self.payload))
            return Phrase(N_("close frame (no code)"))
        if len(self.payload) == self.length:
            shown = short(self.payload)
        else:
            shown = Phrase(N_("of {size:,} bytes"), size=self.length)
        template = _FRAME_WORDS.get(self.opcode, N_("reserved-opcode 0x{opcode:x} frame {shown}"))
        if not self.fin:
            template = _NOT_FINAL.get(self.opcode, N_("reserved-opcode 0x{opcode:x} frame {shown} (not final)"))
        return Phrase(template, opcode=self.opcode, shown=shown)

    def __str__(self) -> str:
        return str(self.phrase())

    def shown(self) -> str:
        """The frame in a few words, in the learner's language."""
        return self.phrase().shown()


# {opcode} is given to every template, used only by the reserved-opcode one.
_FRAME_WORDS = {
    CONT: N_("continuation frame {shown}"), TEXT: N_("text frame {shown}"), BINARY: N_("binary frame {shown}"),
    PING: N_("ping frame {shown}"), PONG: N_("pong frame {shown}"),
}
_NOT_FINAL = {
    CONT: N_("continuation frame {shown} (not final)"), TEXT: N_("text frame {shown} (not final)"),
    BINARY: N_("binary frame {shown} (not final)"), PING: N_("ping frame {shown} (not final)"),
    PONG: N_("pong frame {shown} (not final)"),
}


class Probe:
    """One raw client connection: the handshake, frames out, frames in.

    ``violations`` collects (kind, text) for every server frame or 101 that
    breaks a rule watched on every connection (:data:`.watch.KINDS`).
    ``received`` counts the bytes read; ``received_at_open`` what the 101 took.
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
        self.watch = Watch()
        self.received = 0
        self.received_at_open = 0
        self.response_headers: dict[str, str] = {}
        self._queued = 0  # payload bytes decoded and not read yet
        self._skip = 0  # bytes of a long frame's payload still to read through, after the frame was queued
        self._drained = asyncio.Event()  # set while _queued is under QUEUE_LIMIT
        self._drained.set()

    @property
    def violations(self) -> list[tuple[str, str]]:
        return self.watch.violations

    # TCP

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, (self.host, self.port))
        except OSError as exc:
            sock.close()
            raise Unreachable(Phrase(N_("nothing accepts connections at {host}:{port} ({reason})"),
                                     host=self.host, port=self.port, reason=exc.strerror or exc)) from None
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
                self.received += len(data)
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

    async def read_through(self, n: int, keep: int) -> bytes:
        """Consume ``n`` bytes as they come, keeping the first ``keep``: memory stays bounded."""
        kept = bytearray()
        left = n
        while left:
            if not self.buffer:
                if self.closed is not None:
                    raise Eof(self.closed)
                self._room.set()
                await self._wait()
                continue
            take = min(left, len(self.buffer))
            if len(kept) < keep:
                kept += self.buffer[: min(take, keep - len(kept))]
            del self.buffer[:take]
            left -= take
            self._room.set()
        return bytes(kept)

    async def readuntil(self, separator: bytes, limit: int = 65536) -> bytes:
        while (end := self.buffer.find(separator)) < 0:
            if len(self.buffer) > limit:
                raise Failed(Phrase(N_("the HTTP response head is over {kib} KiB without an empty line"),
                                    kib=limit // 1024))
            if self.closed is not None:
                if self.buffer:
                    raise Failed(Phrase(N_("the server closed the connection without an HTTP response: {got}"),
                                        got=short(bytes(self.buffer), 60)))
                raise Failed(Phrase(N_("the server closed the connection without an HTTP response")))
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

    def request(self, *, key: str | None, version: str | None = "13", extra: str = "", method: str = "GET") -> bytes:
        """An opening handshake; ``key=None`` or ``version=None`` leaves that header out."""
        lines = [
            f"{method} {self.path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
        ]
        if key is not None:
            lines.append(f"Sec-WebSocket-Key: {key}")
        if version is not None:
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
            raise Failed(Phrase(N_("the response does not start with an HTTP status line (RFC 9112 4: "
                                   "HTTP/1.1, a space, a 3-digit status code): {line}"), line=short(status_line, 60)))
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
            raise Failed(Phrase(N_("the handshake got HTTP {status} {reason}; expected 101 Switching Protocols"),
                                status=status, reason=reason))
        self.response_headers = headers
        self.watch.response(headers)
        self.received_at_open = self.received - len(self.buffer)
        self._pump = asyncio.ensure_future(self._read_frames())
        return key, headers

    # Frames

    async def _read_frames(self) -> None:
        try:
            while True:
                frame = await self._read_frame()
                if frame.length > len(frame.payload):  # handed over at once; the rest is read after
                    self._skip = frame.length - len(frame.payload)
                if frame.opcode not in (PING, PONG):
                    self.answered.set()
                while self._queued >= QUEUE_LIMIT:
                    self._drained.clear()
                    await self._drained.wait()
                self._queued += len(frame.payload)
                await self.frames.put(frame)  # waits while FRAMES_AHEAD frames are unread
                if self._skip:
                    await self.read_through(self._skip, 0)
                    self._skip = 0
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
            if n >= 2**63:
                self.watch.note("length", f"a frame whose 64-bit length 0x{n:016x} has its most significant bit set")
        if n > MAX_SERVER_FRAME:
            raise Failed(Phrase(N_("the server announced a frame of {size:,} bytes; the battery reads at most "
                                   "{most:,} (check the length you encode, RFC 6455 5.2)"),
                                size=n, most=MAX_SERVER_FRAME))
        masked = bool(b1 & MASK_BIT)
        key = await self.readexactly(4) if masked else b""
        payload = await self.readexactly(min(n, KEPT_PAYLOAD))  # over it, the rest is read after the frame is queued
        if masked:
            payload = apply_mask(payload, key)
        frame = ServerFrame(bool(b0 & FIN), (b0 & RSV_BITS) >> 4, b0 & OPCODE_BITS, payload, masked, form, minimal, n)
        self.watch.frame(frame, n)
        return frame

    async def next_frame(self) -> ServerFrame:
        """The next frame from the server; raises :class:`Eof` once TCP is closed."""
        item = await self.frames.get()
        if isinstance(item, ServerFrame):
            self._queued -= len(item.payload)
            if self._queued < QUEUE_LIMIT:
                self._drained.set()
        if isinstance(item, Eof):
            self.frames.put_nowait(item)  # stays closed
            raise item
        if isinstance(item, BaseException):
            raise item
        self.seen.append(item.phrase())
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

    async def pong(self, payload: bytes, *, instead: Callable[[ServerFrame], str]) -> int:
        """Wait for the pong that answers a ping of ``payload``; return how many other pongs came first.

        Pings meanwhile are answered; other pongs are skipped (5.5.3: "A Pong
        frame MAY be sent unsolicited."). Any other frame fails the case with
        the text ``instead(frame)``.
        """
        others = 0
        while True:
            frame = await self.next_frame()
            if frame.opcode == PONG and frame.payload == payload:
                return others
            if frame.opcode == PONG:
                others += 1
            elif frame.opcode == PING:
                await self.send(encode_frame(PONG, frame.payload))
            else:
                raise Failed(instead(frame))

    async def message(self) -> tuple[int, bytes, int, list[bytes]]:
        """The next data message: (opcode, payload, how many frames, pongs seen meanwhile).

        Raises :class:`Closed` for a close frame, :class:`Failed` for a
        message over :data:`MESSAGE_LIMIT` bytes or broken fragments.
        """
        opcode, data, size, count = -1, bytearray(), 0, 0  # one buffer: a million empty fragments cost nothing
        pongs: list[bytes] = []
        while True:
            try:
                frame = await self.next_frame()
            except Eof:
                if count:
                    raise Failed(Phrase(N_("the server closed the TCP connection after {count} fragment(s), "
                                           "with no close frame"), count=count)) from None
                raise Failed(Phrase(N_("the server closed the TCP connection, with no close frame"))) from None
            if frame.opcode == PONG:
                if len(pongs) < FRAMES_AHEAD and frame.length <= 125:  # a flood must not grow memory
                    pongs.append(frame.payload)
                continue
            if frame.opcode == PING:
                await self.send(encode_frame(PONG, frame.payload))
                continue
            if frame.opcode == CLOSE:
                raise Closed(frame)
            if frame.opcode == CONT and not count:
                raise Failed(Phrase(N_("the server sent a continuation frame with no message started")))
            if frame.opcode != CONT and count:
                raise Failed(Phrase(N_("the server started a new message ({frame}) inside a fragmented one"), frame=frame))
            if not count:
                opcode = frame.opcode
            count += 1
            size += frame.length
            if size > MESSAGE_LIMIT:
                raise Failed(Phrase(N_("the server sent a message of more than {most:,} bytes ({frame}); "
                                       "no case sends more than 70,000 bytes to echo"), most=MESSAGE_LIMIT, frame=frame))
            data += frame.payload
            if frame.fin:
                return opcode, bytes(data), count, pongs

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

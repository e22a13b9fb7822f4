"""The receiving side of a connection: bytes in, frames and messages out (RFC 6455 5.4-5.6, RFC 7692).

Part of :mod:`wslab.protocol.frames` (its design note says how the parts fit):
:class:`Reader` (reassembly, UTF-8 across fragments, size limit, who masks,
permessage-deflate with a bound), which hands out :class:`~wslab.protocol.frames.Message`
values (defined with :class:`Frame` in the codec), and :func:`inflate`. Import them from ``wslab.protocol.frames``.
"""

from __future__ import annotations

import codecs
import zlib
from typing import Literal, Union

from .frame_codec import Frame, Message, Opcode, ProtocolError, _decode_at, _invalid_utf8, _too_big, parse_close

__all__ = ["Reader", "Event", "inflate", "DEFLATE_TAIL"]

#: permessage-deflate: each compressed message ends with this empty block, which
#: the sender strips and the receiver appends back (RFC 7692 section 7.2.2).
DEFLATE_TAIL = b"\x00\x00\xff\xff"


# -- permessage-deflate (RFC 7692) ------------------------------------------


def inflate(payload: bytes, *, decompressor: zlib._Decompress | None = None, max_size: int | None = None) -> bytes:
    """Decompress one permessage-deflate message payload (RFC 7692 section 7.2.2).

    The sender compressed the message with raw deflate and stripped the final
    ``00 00 ff ff``; append it back and inflate. Pass the connection's
    ``decompressor`` (``zlib.decompressobj(wbits=-15)``) when the peer keeps its
    compression context between messages (the default, "context takeover").

    A few bytes can inflate to gigabytes (a "deflate bomb"): with ``max_size``
    it stops there and raises :class:`ProtocolError` (1009, message too big).
    Raises ``zlib.error`` for bytes that are not deflate data.
    """
    d = decompressor or zlib.decompressobj(wbits=-15)
    if max_size is None:
        return d.decompress(bytes(payload) + DEFLATE_TAIL)
    out = d.decompress(bytes(payload) + DEFLATE_TAIL, max_size + 1)
    if len(out) > max_size:
        raise _too_big(f"over {max_size} bytes once inflated (max_size)")
    return out


def _inflate_prefix(payload: bytes, limit: int) -> tuple[bytes, bool]:
    """The first ``limit`` bytes ``payload`` inflates to, and whether there was more (for drawing)."""
    d = zlib.decompressobj(wbits=-15)
    out = d.decompress(bytes(payload) + DEFLATE_TAIL, limit + 1)
    return out[:limit], len(out) > limit


# -- The incremental reader ---------------------------------------------------


Event = Union[Frame, Message]


class Reader:
    """The receiving side of a WebSocket connection: bytes in, frames and messages out.

    >>> reader = Reader("client")
    >>> [str(e) for e in reader.feed(bytes.fromhex("01 03 48 65 6c 80 02 6c 6f"))]
    ["TEXT message 'Hello' [5 bytes, 2 frames]"]

    ``role`` is who reads: a ``"server"`` expects masked frames (from
    clients), a ``"client"`` unmasked ones (section 5.1). :meth:`feed` accepts
    bytes in any chunking and returns what they completed: control frames
    (PING, PONG, CLOSE, also in the middle of a fragmented message) and whole
    :class:`Message` objects; with ``frames=True`` every data frame too.
    Anything that breaks the protocol raises :class:`ProtocolError`, whose
    ``error.events`` are the events that call decoded before the bad frame:
    handle them, then send a CLOSE with ``error.code`` and drop the connection
    (section 7.1.7); the reader stays broken. After a CLOSE frame the reader
    reads nothing more (``reader.closed``; later bytes are counted in
    ``reader.ignored``).

    ``max_size`` bounds a message's payload (1009 past it, section 10.4),
    fragments included. It is checked on each frame's header, before its
    payload arrives; with ``permessage_deflate`` the header's length counts
    against what the inflated message has left (as websockets counts it), and
    inflating stops one byte past the limit, so a "deflate bomb" never
    inflates more than ``max_size``. ``max_size=None``: no limit (for trusted
    bytes only).
    """

    def __init__(
        self,
        role: Literal["server", "client"] = "server",
        *,
        # Limits
        max_size: int | None = 2**20,
        # Extensions
        permessage_deflate: bool = False,
        context_takeover: bool = True,
    ) -> None:
        if role not in ("server", "client"):
            raise ValueError(f"role must be 'server' or 'client', not {role!r}")
        self.role = role
        self.max_size = max_size
        self.permessage_deflate = permessage_deflate
        self.context_takeover = context_takeover
        self._mask_required = role == "server"
        self._buffer = bytearray()
        self._decompressor: zlib._Decompress | None = zlib.decompressobj(wbits=-15)
        self._error: ProtocolError | None = None
        #: A CLOSE frame arrived: the peer sends nothing after it (section 5.5.1),
        #: so later bytes are not read, only counted in ``ignored``.
        self.closed = False
        self.ignored = 0
        # The message being reassembled (None between messages).
        self._opcode: Opcode | None = None
        self._parts: list[bytes] = []
        self._size = 0
        self._wire = 0
        self._count = 0
        self._compressed = False
        self._utf8: codecs.IncrementalDecoder | None = None
        # Drawing only (transcript()): inflate at most this many bytes of a message and
        # cut it there instead of failing with 1009; ``_cut`` is where the current one was cut.
        self._inflate_cap: int | None = None
        self._cut: int | None = None

    def __repr__(self) -> str:
        state = f"in a {self._opcode.name} message" if self._opcode is not None else "between messages"
        return f"<Reader {self.role}, {state}, {len(self._buffer)} bytes buffered>"

    @property
    def buffered(self) -> int:
        """Bytes received that do not make a whole frame yet."""
        return len(self._buffer)

    def feed(self, data: bytes, *, frames: bool = False) -> list[Event]:
        """Take ``data`` (any chunk of the stream) and return the events it completed.

        Events are control :class:`Frame` objects and whole :class:`Message`
        objects, in order; with ``frames=True`` each data frame comes too, just
        before the message it completes. Raises :class:`ProtocolError` only.

        When a frame breaks the protocol, what this call decoded before it is
        not lost: it rides on the exception as ``error.events`` (in order),
        beside ``error.code`` and ``error.section``. A frame that fails a check
        is never among them. So whole and chunked feeding deliver the same
        events: the ones returned by earlier calls plus ``error.events``.

        >>> data = bytes.fromhex("81 85 61 62 63 64 09 07 0f 08 0e"  # TEXT 'hello', masked
        ...                      "89 81 61 62 63 64 11"              # PING b'p'
        ...                      "81 81 61 62 63 64 9e")             # TEXT b'\\xff': bad UTF-8
        >>> try:
        ...     Reader("server").feed(data)
        ... except ProtocolError as error:
        ...     print([str(e) for e in error.events], int(error.code))
        ["TEXT message 'hello' [5 bytes]", "PING b'p' [1 byte, masked with 61626364]"] 1007

        Once broken, the reader stays broken: every later call raises the same
        error again, with no events.
        """
        if self._error is not None:
            error = self._error
            raise ProtocolError(str(error), code=error.code, section=error.section)
        if self.closed:
            self.ignored += len(data)
            return []
        buffer = self._buffer
        if buffer:
            buffer += data
            source: bytes | bytearray | memoryview = buffer
        else:  # nothing left over: read the frames straight out of ``data`` (no copy of it)
            source = data
        events: list[Event] = []
        pos = 0
        try:
            while True:
                # Refuse a frame that would make the message too big from its header,
                # before its payload arrives: its length counts against what is left of
                # max_size after the message so far (inflated, when compressed, as
                # websockets counts it). A compressed frame is checked again once inflated.
                frame, n = _decode_at(source, pos, self._mask_required, self.permessage_deflate,
                                      self.max_size, self._size)
                if frame is None:
                    break
                pos += n
                event = self._on_frame(frame)  # may raise: then the frame is not delivered
                if frames and not frame.is_control:
                    events.append(frame)
                if event is not None:
                    events.append(event)
                if frame.opcode == Opcode.CLOSE:
                    self.closed = True
                    self.ignored += len(source) - pos
                    pos = len(source)
                    break
        except ProtocolError as exc:
            exc.events = events  # what this call decoded before the bad frame
            self._error = exc
            raise
        finally:
            if source is buffer:
                del buffer[:pos]
            elif pos < len(source):  # keep the start of a frame that has not finished
                with memoryview(source) as view:
                    buffer += view[pos:]
        return events

    def _on_frame(self, frame: Frame) -> Event | None:
        """Check the rules that span frames; return a control frame or a finished message."""
        opcode = frame.opcode
        if frame.fin and self._opcode is None and 0x0 < opcode < 0x8 and not frame.rsv1:
            # The common case, a whole message in one uncompressed frame (decode() checked its size).
            if opcode == Opcode.BINARY:
                return Message(opcode, frame.payload)
            try:
                return Message(opcode, frame.payload.decode())
            except UnicodeDecodeError as exc:
                raise _invalid_utf8(f"text message near byte {exc.start}", section="8.1") from None
        if opcode >= 0x8:
            if frame.rsv1:
                raise ProtocolError(f"RSV1 set on a {opcode.name} frame: only data frames are compressed",
                                    section="RFC 7692 section 6")
            if opcode == Opcode.CLOSE:
                parse_close(frame.payload)  # raises on a bad code or reason
            return frame
        if opcode == Opcode.CONT:
            if self._opcode is None:
                raise ProtocolError("continuation frame without a message to continue", section="5.4")
            if frame.rsv1:
                raise ProtocolError("RSV1 set on a continuation frame", section="RFC 7692 section 6")
        else:
            if self._opcode is not None:
                raise ProtocolError(
                    f"new {opcode.name} message inside a fragmented {self._opcode.name} message",
                    section="5.4",
                )
            self._opcode = opcode
            self._compressed = frame.rsv1
            self._utf8 = codecs.getincrementaldecoder("utf-8")() if opcode == Opcode.TEXT else None
            if frame.rsv1 and self._decompressor is None:  # drawing only: the context was lost
                self._cut = 0
        self._count += 1
        payload = frame.payload
        self._wire += len(payload)
        if self._compressed:
            payload = self._inflate(payload, frame.fin)
        self._size += len(payload)
        if self.max_size is not None and self._size > self.max_size:
            raise _too_big(f"over {self.max_size} bytes (max_size)")
        if self._utf8 is not None:
            try:
                final = frame.fin and self._cut is None  # a cut message may end inside a character
                self._parts.append(self._utf8.decode(payload, final))  # type: ignore[arg-type]
            except UnicodeDecodeError as exc:
                raise _invalid_utf8(f"text message near byte {self._size - len(payload) + exc.start}",
                                    section="8.1") from None
        else:
            self._parts.append(payload)
        if not frame.fin:
            return None
        data: str | bytes = "".join(self._parts) if self._utf8 is not None else b"".join(self._parts)  # type: ignore[arg-type]
        message = Message(self._opcode, data, self._count, self._wire if self._compressed else None, self._cut)  # type: ignore[arg-type]
        self._cut = None
        self._opcode, self._parts, self._size, self._wire, self._count = None, [], 0, 0, 0
        self._compressed, self._utf8 = False, None
        return message

    def _inflate(self, payload: bytes, fin: bool) -> bytes:
        """Inflate one frame of a compressed message, never beyond ``max_size`` (1009 past it).

        Drawing a capture (``_inflate_cap``), it stops at the cap instead and cuts the
        message there; with context takeover the next messages cannot be inflated then.
        """
        d = self._decompressor
        if self._cut is not None or d is None:  # cut already: the rest is not inflated
            return b""
        cap = self._inflate_cap
        limit = self.max_size if cap is None else cap
        room = 0 if limit is None else limit - self._size + 1  # one byte more: enough to tell "over"
        try:
            out = d.decompress(payload + DEFLATE_TAIL if fin else payload, room)
        except zlib.error as exc:
            raise ProtocolError(f"cannot inflate a compressed message: {exc}", section="RFC 7692 section 7.2.2") from None
        if limit is not None and (d.unconsumed_tail or self._size + len(out) > limit):
            if cap is None:
                raise _too_big(f"over {self.max_size} bytes once inflated (max_size)")
            out = out[: cap - self._size]
            self._cut = self._size + len(out)
            self._decompressor = None if self.context_takeover else zlib.decompressobj(wbits=-15)
            return out
        if fin and not self.context_takeover:
            self._decompressor = zlib.decompressobj(wbits=-15)
        return out

"""WebSocket frames, bit by bit (RFC 6455 section 5).

Design note
-----------
Three layers, each usable on its own:

* :func:`encode` / :func:`decode` turn one :class:`Frame` into wire bytes and
  back. ``decode`` never blocks and never guesses: given too few bytes it says
  how many more it needs; given bytes that break the RFC it raises
  :class:`ProtocolError`, which carries the close code a peer must send and the
  RFC section.
* :class:`Reader` is the incremental side of a connection. Feed it bytes in any
  chunking (one byte at a time is fine); it returns control frames and whole
  messages, reassembled from fragments, checks the rules that span frames
  (fragmentation, UTF-8 across fragments, size limit, who masks) and, when
  permessage-deflate was negotiated, inflates compressed messages (RFC 7692).
* :func:`explain` draws a frame's header bit by bit, for a learner to read;
  :func:`transcript` turns a captured conversation into one line per frame
  (the wiretap's ``tap.frames()`` uses it).

What must never happen: a reader that waits forever for a frame whose declared
length is absurd (``max_size`` stops it with 1009), an exception other than
:class:`ProtocolError` escaping from :meth:`Reader.feed` for any input, a
text message handed over before its UTF-8 has been checked, or events lost to
a later bad frame. When :meth:`Reader.feed` meets a bad frame it raises
:class:`ProtocolError` with ``error.events``: every event the same call decoded
before that frame, in order (the frame that failed is not among them). A
server answers those first (echo the message, pong the ping), then closes with
``error.code``, as websockets and wsproto do; so whole and chunked feeding give
the same events and the same error.

Masking (section 5.3) is shown twice for teaching: :func:`mask_naive` is the
RFC's loop, one byte at a time; :func:`mask` XORs the whole payload as one big
integer, some 30 times faster in pure Python. The codec itself (``encode``,
``decode``, ``Reader``) masks with websockets' C helper,
``websockets.speedups.apply_mask``, some 20 times faster again on large
payloads, and falls back to :func:`mask` where websockets was built without
its C extension (``FAST_MASK`` says which). Large payloads are copied as
little as they can be: a frame is unmasked straight out of the bytes fed, and a
fragmented message is joined once, at its last frame.

>>> frame, used = decode(bytes.fromhex("81 05 48 65 6c 6c 6f"))
>>> print(frame, used)
TEXT 'Hello' [5 bytes] 7
"""

from __future__ import annotations

import codecs
import dataclasses
import enum
import html
import struct
import zlib
from typing import Iterable, Literal, Union

from .display import Table

__all__ = [
    "Opcode",
    "CloseCode",
    "ProtocolError",
    "Frame",
    "Message",
    "Reader",
    "encode",
    "decode",
    "mask",
    "mask_naive",
    "close_payload",
    "parse_close",
    "explain",
    "Explanation",
    "inflate",
    "transcript",
]


class Opcode(enum.IntEnum):
    """What a frame carries: the 4-bit opcode of RFC 6455 section 5.2 (values in 11.8)."""

    #: 0x0: continues the message that a TEXT or BINARY frame started (section 5.4)
    CONT = 0x0
    #: 0x1: the (first) frame of a UTF-8 text message (section 5.6)
    TEXT = 0x1
    #: 0x2: the (first) frame of a binary message (section 5.6)
    BINARY = 0x2
    #: 0x8: starts or answers the closing handshake (section 5.5.1)
    CLOSE = 0x8
    #: 0x9: asks the peer for a PONG (section 5.5.2)
    PING = 0x9
    #: 0xA: answers a PING, or a one-way heartbeat (section 5.5.3)
    PONG = 0xA

    @property
    def is_control(self) -> bool:
        """Control frames have the high bit of the opcode set (section 5.5)."""
        return self >= 0x8


class CloseCode(enum.IntEnum):
    """Why a connection closes: status codes of RFC 6455 section 7.4.1 (IANA registry, 11.7)."""

    #: 1000: the purpose of the connection was fulfilled
    NORMAL_CLOSURE = 1000
    #: 1001: the endpoint goes away (server shutting down, browser leaving the page)
    GOING_AWAY = 1001
    #: 1002: the peer broke the protocol
    PROTOCOL_ERROR = 1002
    #: 1003: a data type the endpoint cannot accept (e.g. binary when it wants text)
    UNSUPPORTED_DATA = 1003
    #: 1005: never on the wire: a CLOSE frame without a code
    NO_STATUS_RCVD = 1005
    #: 1006: never on the wire: the connection dropped without a CLOSE frame
    ABNORMAL_CLOSURE = 1006
    #: 1007: data inconsistent with the message type (invalid UTF-8 in text)
    INVALID_DATA = 1007
    #: 1008: a message that violates the endpoint's policy
    POLICY_VIOLATION = 1008
    #: 1009: a message too big to process
    MESSAGE_TOO_BIG = 1009
    #: 1010: (client) the server did not negotiate a required extension
    MANDATORY_EXTENSION = 1010
    #: 1011: (server) an unexpected condition, e.g. an exception in a handler
    INTERNAL_ERROR = 1011
    #: 1012: the service restarts (IANA registry)
    SERVICE_RESTART = 1012
    #: 1013: try again later (IANA registry)
    TRY_AGAIN_LATER = 1013
    #: 1014: a gateway got an invalid response upstream (IANA registry)
    BAD_GATEWAY = 1014
    #: 1015: never on the wire: the TLS handshake failed
    TLS_HANDSHAKE = 1015


#: Codes that must never appear in a CLOSE frame (section 7.4.1).
_NOT_ON_THE_WIRE = {1005, 1006, 1015}
#: Codes from 1000-2999 a peer may send (section 7.4.2 and the IANA registry).
_SENDABLE = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}


class ProtocolError(Exception):
    """The peer broke RFC 6455: close the connection with ``code``.

    ``str(error)`` is the lowercase message (``invalid opcode 0x3``), a CLOSE
    frame's reason once cut to 123 bytes; ``error.code`` is the :class:`CloseCode` to
    send, ``error.section`` the section of RFC 6455 that forbids it (``"5.2"``;
    for permessage-deflate ``"RFC 7692 section 6"``), ``error.where`` both as
    one reference.

    ``error.events``: raised by :meth:`Reader.feed`, the events that call
    decoded *before* the bad frame, in order (handle them first, as websockets
    and wsproto do, then close with ``error.code``); empty when raised by
    :func:`decode` or by a reader that was already broken.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int = CloseCode.PROTOCOL_ERROR,
        section: str = "5.2",
        events: list[Frame | Message] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = CloseCode(code)
        self.section = section
        self.events: list[Frame | Message] = [] if events is None else events
        self.add_note(
            f"a peer closes with {int(self.code)} ({self.code.name}); see {self.where}"
        )

    @property
    def where(self) -> str:
        """The section as a reference: ``RFC 6455 section 5.2`` (or ``RFC 7692 section 6``)."""
        return self.section if self.section.startswith("RFC") else f"RFC 6455 section {self.section}"

    def __repr__(self) -> str:
        return f"ProtocolError({str(self)!r}, code={int(self.code)}, section={self.section!r})"


# The frame diagram of section 5.2, byte 0 and byte 1:
#
#   0                   1
#   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5
#  +-+-+-+-+-------+-+-------------+
#  |F|R|R|R| opcode|M| Payload len |
#  |I|S|S|S|  (4)  |A|     (7)     |
#  |N|V|V|V|       |S|             |
#  | |1|2|3|       |K|             |
_FIN = 0b1000_0000
_RSV1 = 0b0100_0000
_RSV2 = 0b0010_0000
_RSV3 = 0b0001_0000
_OPCODE = 0b0000_1111
_MASK = 0b1000_0000
_LENGTH = 0b0111_1111

_LENGTH_16 = 126  # "If 126, the following 2 bytes interpreted as a 16-bit unsigned integer"
_LENGTH_64 = 127  # "If 127, the following 8 bytes interpreted as a 64-bit unsigned integer"
_MAX_CONTROL = 125  # "All control frames MUST have a payload length of 125 bytes or less"

_HEAD_7 = struct.Struct("!BB")
_HEAD_16 = struct.Struct("!BBH")
_HEAD_64 = struct.Struct("!BBQ")
_UINT16 = struct.Struct("!H")
_UINT64 = struct.Struct("!Q")

_OPCODES = {op.value: op for op in Opcode}

try:  # the codec's masking: websockets' C helper where it was built (the same XOR as mask())
    from websockets.speedups import apply_mask as _apply_mask
except ImportError:  # pragma: no cover - websockets without its C extension
    _apply_mask = None
#: True when the codec masks with websockets' C ``apply_mask``, False for :func:`mask`.
FAST_MASK = _apply_mask is not None

#: permessage-deflate: each compressed message ends with this empty block, which
#: the sender strips and the receiver appends back (RFC 7692 section 7.2.2).
DEFLATE_TAIL = b"\x00\x00\xff\xff"


# -- Masking (section 5.3) ---------------------------------------------------


def mask_naive(data: bytes, key: bytes) -> bytes:
    """Mask or unmask ``data`` with the 4-byte ``key``, exactly as RFC 6455 section 5.3 says.

        j                   = i MOD 4
        transformed-octet-i = original-octet-i XOR masking-key-octet-j

    Readable and slow (about 15 MB/s); :func:`mask` gives the same bytes faster.
    """
    return bytes(octet ^ key[i % 4] for i, octet in enumerate(data))


def mask(data: bytes, key: bytes) -> bytes:
    """Mask or unmask ``data`` with the 4-byte ``key`` (the same XOR both ways).

    The fast path in pure Python: repeat the key to the payload's length, read
    both as one big integer each and XOR them once. Hundreds of MB/s, against
    some 15 MB/s for :func:`mask_naive`.

    >>> mask(b"Hello", bytes.fromhex("37fa213d")).hex(" ")
    '7f 9f 4d 51 58'
    """
    if len(key) != 4:
        raise ValueError(f"mask key must be 4 bytes, got {len(key)}: use os.urandom(4)")
    n = len(data)
    if not n:
        return b""
    whole, rest = divmod(n, 4)
    keys = key * whole + key[:rest]  # the key repeated to the payload's length
    return (int.from_bytes(data, "little") ^ int.from_bytes(keys, "little")).to_bytes(n, "little")


#: What the codec masks with: ``_xor(data, key)`` (data any bytes-like object, key 4 bytes).
_xor = _apply_mask if _apply_mask is not None else mask


# -- Frames -------------------------------------------------------------------


def _preview(opcode: int, payload: bytes, rsv1: bool, limit: int = 60) -> str:
    """A short readable view of a payload: text as text, close as code + reason, else hex."""
    if opcode == Opcode.CLOSE and not rsv1:
        try:
            code, reason = parse_close(payload)
        except ProtocolError:
            pass
        else:
            return f"{int(code)} ({_close_name(code)}) {_elide(repr(reason), limit)}"
    if opcode in (Opcode.TEXT, Opcode.CONT) and not rsv1:
        try:
            text = bytes(payload).decode()
        except UnicodeDecodeError:
            pass
        else:  # as text, unless it is not readable (a piece of a compressed message, say)
            if opcode == Opcode.TEXT or text.replace("\n", "").replace("\t", "").isprintable():
                return _elide(repr(text), limit)
    if not payload:
        return "''" if opcode == Opcode.TEXT else "b''"
    if not rsv1 and all(0x20 <= b < 0x7F for b in payload[:limit]):
        return _elide(repr(bytes(payload[:limit])) + ("..." if len(payload) > limit else ""), limit + 5)
    shown = payload[: limit // 3]
    text = shown.hex(" ")
    return text + (" ..." if len(payload) > len(shown) else "")


def _close_name(code: int) -> str:
    if code in CloseCode._value2member_map_:
        return CloseCode(code).name
    return "private use" if code >= 4000 else "registered" if code >= 3000 else "unknown"


def _bytes(n: int) -> str:
    return f"{n} byte" if n == 1 else f"{n} bytes"


def _elide(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 5] + "..." + text[-2:]


@dataclasses.dataclass(slots=True)
class Frame:
    """One WebSocket frame (RFC 6455 section 5.2), payload already unmasked.

    >>> print(Frame(Opcode.TEXT, b"Hello"))
    TEXT 'Hello' [5 bytes]

    Build the usual frames with :meth:`text`, :meth:`binary`, :meth:`ping`,
    :meth:`pong` and :meth:`close`; turn them into bytes with :func:`encode`.
    ``mask_key`` is the 4-byte key the frame was (or will be) masked with,
    ``None`` for an unmasked frame.
    """

    opcode: Opcode
    payload: bytes = b""
    fin: bool = True
    rsv1: bool = False
    rsv2: bool = False
    rsv3: bool = False
    mask_key: bytes | None = None

    def __str__(self) -> str:
        notes = [_bytes(len(self.payload))]
        if not self.fin:
            notes.append("not final")
        for name in ("rsv1", "rsv2", "rsv3"):
            if getattr(self, name):
                notes.append(name + (" compressed" if name == "rsv1" else ""))
        if self.mask_key is not None:
            notes.append(f"masked with {self.mask_key.hex()}")
        name = self.opcode.name if isinstance(self.opcode, Opcode) else f"0x{self.opcode:x}"
        return f"{name} {_preview(self.opcode, self.payload, self.rsv1)} [{', '.join(notes)}]"

    @property
    def is_control(self) -> bool:
        """True for CLOSE, PING and PONG (section 5.5)."""
        return self.opcode >= 0x8

    @classmethod
    def text(cls, text: str, *, fin: bool = True) -> Frame:
        """A TEXT frame carrying ``text`` as UTF-8."""
        return cls(Opcode.TEXT, text.encode(), fin)

    @classmethod
    def binary(cls, data: bytes, *, fin: bool = True) -> Frame:
        """A BINARY frame carrying ``data``."""
        return cls(Opcode.BINARY, bytes(data), fin)

    @classmethod
    def ping(cls, data: bytes = b"") -> Frame:
        """A PING frame (at most 125 bytes of application data)."""
        return cls(Opcode.PING, bytes(data))

    @classmethod
    def pong(cls, data: bytes = b"") -> Frame:
        """A PONG frame; answer a PING with the same ``data`` (section 5.5.3)."""
        return cls(Opcode.PONG, bytes(data))

    @classmethod
    def close(cls, code: int | None = CloseCode.NORMAL_CLOSURE, reason: str = "") -> Frame:
        """A CLOSE frame with ``code`` and ``reason`` (``code=None``: an empty payload)."""
        return cls(Opcode.CLOSE, close_payload(code, reason))


def encode(frame: Frame, mask_key: bytes | None = None, *, strict: bool = True) -> bytes:
    """The wire bytes of ``frame`` (RFC 6455 section 5.2).

    The payload length takes 7 bits (0-125), or 126 and a 16-bit length, or
    127 and a 64-bit length. With ``mask_key`` (4 bytes; clients MUST mask,
    section 5.3: ``os.urandom(4)``), or else ``frame.mask_key``, the MASK bit
    is set and the payload masked; otherwise the payload goes as is (servers
    MUST NOT mask). A decoded frame keeps its key, so
    ``encode(decode(data)[0]) == data``.

    With ``strict`` (the default) a frame no peer would accept raises
    :class:`ProtocolError`; ``strict=False`` lets a lesson build broken frames.

    >>> encode(Frame.text("Hello")).hex(" ")
    '81 05 48 65 6c 6c 6f'
    """
    opcode = frame.opcode
    payload = frame.payload
    length = len(payload)
    if strict and opcode >= 0x8:
        if length > _MAX_CONTROL:
            raise ProtocolError(f"control frame too long: {length} bytes (max {_MAX_CONTROL})", section="5.5")
        if not frame.fin:
            raise ProtocolError(f"fragmented control frame: {Opcode(opcode).name} with FIN=0", section="5.5")
    first = (
        (_FIN if frame.fin else 0)
        | (_RSV1 if frame.rsv1 else 0)
        | (_RSV2 if frame.rsv2 else 0)
        | (_RSV3 if frame.rsv3 else 0)
        | opcode
    )
    key = frame.mask_key if mask_key is None else mask_key
    masked = 0 if key is None else _MASK
    if length < _LENGTH_16:
        header = _HEAD_7.pack(first, masked | length)
    elif length < 1 << 16:
        header = _HEAD_16.pack(first, masked | _LENGTH_16, length)
    else:
        header = _HEAD_64.pack(first, masked | _LENGTH_64, length)
    if key is None:
        return header + payload
    if len(key) != 4:
        raise ValueError(f"mask key must be 4 bytes, got {len(key)}: use os.urandom(4)")
    return b"".join((header, key, _xor(payload, key)))


def decode(
    data: bytes | bytearray | memoryview,
    *,
    mask_required: bool | None = None,
    rsv1_allowed: bool = False,
    max_size: int | None = None,
) -> tuple[Frame | None, int]:
    """Read one frame from the start of ``data``.

    Returns ``(frame, used)``: the frame (payload unmasked) and how many bytes
    of ``data`` it took. When ``data`` holds only part of a frame, returns
    ``(None, needed)``: at least ``needed`` more bytes are required. Never
    blocks, never waits.

    ``mask_required``: ``True`` at a server (client frames MUST be masked),
    ``False`` at a client (server frames MUST NOT be), ``None`` to accept both.
    ``rsv1_allowed``: an extension such as permessage-deflate was negotiated.
    ``max_size``: the largest payload accepted (1009 beyond it).

    Raises :class:`ProtocolError` for a frame that breaks section 5.2: reserved
    bits without an extension, an unknown opcode, a control frame that is long
    or fragmented, the wrong masking for the role, a 64-bit length with its
    top bit set, a payload over ``max_size``.

    >>> decode(b"\\x81\\x05Hel")
    (None, 2)
    """
    return _decode_at(data, 0, mask_required, rsv1_allowed, max_size)


def _decode_at(
    data: bytes | bytearray | memoryview,
    start: int,
    mask_required: bool | None,
    rsv1_allowed: bool,
    max_size: int | None,
    already: int = 0,
) -> tuple[Frame | None, int]:
    """:func:`decode` at offset ``start``; returns ``(frame, bytes used)`` or ``(None, needed)``.

    ``already``: bytes of the current message received in earlier frames (for ``max_size``).
    """
    available = len(data) - start
    if available < 2:
        return None, 2 - available
    first = data[start]
    second = data[start + 1]
    if first & (_RSV2 | _RSV3) or (first & _RSV1 and not rsv1_allowed):
        bits = ", ".join(n for n, b in (("RSV1", _RSV1), ("RSV2", _RSV2), ("RSV3", _RSV3)) if first & b)
        raise ProtocolError(f"reserved bit set without an extension: {bits}", section="5.2")
    opcode = _OPCODES.get(first & _OPCODE)
    if opcode is None:
        raise ProtocolError(f"invalid opcode 0x{first & _OPCODE:x}", section="5.2")
    fin = first & _FIN
    masked = second & _MASK
    if mask_required is not None and bool(masked) != mask_required:
        if mask_required:
            raise ProtocolError("unmasked frame from a client: clients must mask every frame", section="5.1")
        raise ProtocolError("masked frame from a server: servers must not mask", section="5.1")
    length = second & _LENGTH
    offset = start + 2
    if length == _LENGTH_16:
        if available < 4:
            return None, 4 - available
        (length,) = _UINT16.unpack_from(data, offset)
        offset += 2
    elif length == _LENGTH_64:
        if available < 10:
            return None, 10 - available
        (length,) = _UINT64.unpack_from(data, offset)
        offset += 8
        if length >> 63:
            raise ProtocolError(f"64-bit payload length with its top bit set: 0x{length:016x}", section="5.2")
    if opcode >= 0x8:
        if length > _MAX_CONTROL:
            raise ProtocolError(f"control frame too long: {length} bytes (max {_MAX_CONTROL})", section="5.5")
        if not fin:
            raise ProtocolError(f"fragmented control frame: {opcode.name} with FIN=0", section="5.5")
    if max_size is not None and already + length > max_size and opcode < 0x8:
        size = f"{already} + {length} bytes" if already else f"{length} bytes"
        raise ProtocolError(
            f"message too big: {size} (max_size is {max_size})",
            code=CloseCode.MESSAGE_TOO_BIG,
            section="10.4",
        )
    # The payload, copied once: unmasked straight out of ``data`` (a view, no slice copy).
    # The view is released before returning: the Reader resizes its buffer afterwards.
    if masked:
        end = offset + 4 + length
        if len(data) < end:
            return None, end - len(data)
        key = bytes(data[offset : offset + 4])
        with memoryview(data) as view:
            payload = _xor(view[offset + 4 : end], key)
    else:
        end = offset + length
        if len(data) < end:
            return None, end - len(data)
        key = None
        with memoryview(data) as view:
            payload = view[offset:end].tobytes()
    return Frame(opcode, payload, bool(fin), bool(first & _RSV1), False, False, key), end - start


# -- Close frames (section 5.5.1, 7.4) ------------------------------------


def close_payload(code: int | None = CloseCode.NORMAL_CLOSURE, reason: str = "") -> bytes:
    """The payload of a CLOSE frame: a 2-byte code then a UTF-8 reason (section 5.5.1).

    ``code=None`` gives the empty payload (no code, no reason). Raises
    ``ValueError`` for a code no peer may send or a reason over 123 bytes.

    >>> close_payload(1000, "bye").hex(" ")
    '03 e8 62 79 65'
    """
    if code is None:
        if reason:
            raise ValueError("a close reason needs a close code: pass code=1000 (or another)")
        return b""
    if not _valid_close_code(code):
        raise ValueError(f"invalid close code {code}: send 1000-1003, 1007-1014 or 3000-4999")
    data = reason.encode()
    if len(data) > 123:
        raise ValueError(f"close reason too long: {len(data)} bytes (max 123, section 5.5)")
    return _UINT16.pack(code) + data


def _valid_close_code(code: int) -> bool:
    return code in _SENDABLE or 3000 <= code <= 4999


def parse_close(payload: bytes) -> tuple[int, str]:
    """The ``(code, reason)`` a CLOSE frame's payload carries (section 5.5.1, 7.1.5).

    An empty payload means no code: ``(1005, "")`` (NO_STATUS_RCVD).
    Raises :class:`ProtocolError`: a 1-byte payload or a code no peer may send
    (1002), a reason that is not UTF-8 (1007).

    >>> parse_close(bytes.fromhex("03 e8 62 79 65"))
    (<CloseCode.NORMAL_CLOSURE: 1000>, 'bye')
    """
    if not payload:
        return CloseCode.NO_STATUS_RCVD, ""
    if len(payload) == 1:
        raise ProtocolError("close frame with a 1-byte payload: a code takes 2 bytes", section="5.5.1")
    (code,) = _UINT16.unpack_from(payload)
    if not _valid_close_code(code):
        raise ProtocolError(f"invalid close code {code}", section="7.4")
    try:
        reason = bytes(payload[2:]).decode()
    except UnicodeDecodeError as exc:
        raise ProtocolError(
            f"invalid utf-8 in close reason at byte {exc.start + 2}",
            code=CloseCode.INVALID_DATA,
            section="5.5.1",
        ) from None
    return (CloseCode(code) if code in CloseCode._value2member_map_ else code), reason


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
        raise ProtocolError(f"message too big: over {max_size} bytes once inflated (max_size)",
                            code=CloseCode.MESSAGE_TOO_BIG, section="10.4")
    return out


def _inflate_prefix(payload: bytes, limit: int) -> tuple[bytes, bool]:
    """The first ``limit`` bytes ``payload`` inflates to, and whether there was more (for drawing)."""
    d = zlib.decompressobj(wbits=-15)
    out = d.decompress(bytes(payload) + DEFLATE_TAIL, limit + 1)
    return out[:limit], len(out) > limit


# -- Messages and the incremental reader ------------------------------------


@dataclasses.dataclass(slots=True)
class Message:
    """A whole data message, reassembled from its frames (section 5.4, 5.6).

    ``data`` is ``str`` for TEXT, ``bytes`` for BINARY; ``frames`` says how
    many frames carried it; ``compressed`` how many bytes were on the wire when
    permessage-deflate compressed it (else ``None``). ``truncated`` is set only
    by the drawing tools (:func:`transcript`), which inflate a capture with a
    bound: ``data`` then holds the first ``truncated`` bytes of the message.
    """

    opcode: Opcode
    data: str | bytes
    frames: int = 1
    compressed: int | None = None
    truncated: int | None = None

    def __str__(self) -> str:
        raw = self.data.encode() if isinstance(self.data, str) else self.data
        notes = [_bytes(len(raw))]
        if self.frames > 1:
            notes.append(f"{self.frames} frames")
        if self.compressed is not None:
            notes.append(f"{_bytes(self.compressed)} compressed")
        if self.truncated is not None:
            notes.append(f"inflated output truncated at {_bytes(self.truncated)}")
        return f"{self.opcode.name} message {_preview(self.opcode, raw, False)} [{', '.join(notes)}]"


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
    Anything that breaks the protocol raises :class:`ProtocolError` (and the
    reader stays broken: send a CLOSE with ``error.code`` and drop the
    connection, section 7.1.7). After a CLOSE frame the reader reads nothing
    more (``reader.closed``; later bytes are counted in ``reader.ignored``).
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
                raise ProtocolError(f"invalid utf-8 in text message near byte {exc.start}",
                                    code=CloseCode.INVALID_DATA, section="8.1") from None
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
            raise ProtocolError(
                f"message too big: over {self.max_size} bytes (max_size)",
                code=CloseCode.MESSAGE_TOO_BIG,
                section="10.4",
            )
        if self._utf8 is not None:
            try:
                final = frame.fin and self._cut is None  # a cut message may end inside a character
                self._parts.append(self._utf8.decode(payload, final))  # type: ignore[arg-type]
            except UnicodeDecodeError as exc:
                raise ProtocolError(
                    f"invalid utf-8 in text message near byte {self._size - len(payload) + exc.start}",
                    code=CloseCode.INVALID_DATA,
                    section="8.1",
                ) from None
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
                raise ProtocolError(
                    f"message too big: over {self.max_size} bytes once inflated (max_size)",
                    code=CloseCode.MESSAGE_TOO_BIG,
                    section="10.4",
                )
            out = out[: cap - self._size]
            self._cut = self._size + len(out)
            self._decompressor = None if self.context_takeover else zlib.decompressobj(wbits=-15)
            return out
        if fin and not self.context_takeover:
            self._decompressor = zlib.decompressobj(wbits=-15)
        return out


# -- explain(): a frame for a learner to read ---------------------------------


def _bits(byte: int, keep: int) -> str:
    """``byte`` as 8 bits, showing only the bits in mask ``keep`` (others as dots)."""
    return "".join(
        ("1" if byte & bit else "0") if keep & bit else "." for bit in (1 << i for i in range(7, -1, -1))
    )


def _hex(data: bytes, limit: int = 12) -> str:
    shown = bytes(data[:limit]).hex(" ")
    return shown + (f" ... ({len(data)} bytes)" if len(data) > limit else "")


#: The fields of the first two bytes, as the RFC's diagram names them: (name, bits, colour).
_FIELDS = [("FIN", 1, "#f4cccc"), ("RSV1", 1, "#fce5cd"), ("RSV2", 1, "#fce5cd"), ("RSV3", 1, "#fce5cd"),
           ("opcode", 4, "#fff2cc"), ("MASK", 1, "#d9ead3"), ("payload len", 7, "#cfe2f3")]


@dataclasses.dataclass
class Explanation:
    """What :func:`explain` returns: the header bits drawn under their names, and a table of fields."""

    header: bytes
    table: Table

    @property
    def rows(self) -> list[list[str]]:
        return list(self.table.rows)  # type: ignore[arg-type]

    def _bit_groups(self) -> list[tuple[str, str, str]]:
        bits = "".join(f"{byte:08b}" for byte in self.header)
        groups, pos = [], 0
        for name, width, colour in _FIELDS:
            if pos + width > len(bits):
                break
            groups.append((name, bits[pos : pos + width], colour))
            pos += width
        return groups

    def __str__(self) -> str:
        groups = self._bit_groups()
        if not groups:
            return str(self.table)
        cells = [(name, " ".join(value)) for name, value, _ in groups]
        widths = [max(len(name), len(value)) for name, value in cells]
        names = "|".join(name.center(w) for (name, _), w in zip(cells, widths))
        values = "|".join(value.center(w) for (_, value), w in zip(cells, widths))
        return f"{self.table.title}\n|{names}|\n|{values}|\n\n" + str(self.table).split("\n", 1)[1]

    __repr__ = __str__

    def _repr_html_(self) -> str:
        groups = self._bit_groups()
        style = "border: 1px solid #999; padding: 2px 6px; text-align: center; font-family: monospace"
        names = "".join(
            f'<td colspan="{len(value)}" style="{style}; background: {colour}">{name}</td>'
            for name, value, colour in groups
        )
        values = "".join(
            f'<td style="{style}; background: {colour}">{bit}</td>' for _, value, colour in groups for bit in value
        )
        diagram = f'<table style="border-collapse: collapse"><tr>{names}</tr><tr>{values}</tr></table>' if groups else ""
        untitled = dataclasses.replace(self.table, title="")
        return f"<p><b>{html.escape(self.table.title)}</b></p>{diagram}<br>{untitled._repr_html_()}"


#: explain() and transcript() inflate at most this many bytes of a message: a deflate
#: bomb (1 MB that inflates to 1 GiB) is drawn in milliseconds, its output cut there.
EXPLAIN_INFLATE_LIMIT = 2**20


def explain(data: bytes, *, inflate_payload: bool = True) -> Explanation:
    """Draw the first frame in ``data`` field by field, bit by bit (RFC 6455 section 5.2).

    Returns the first two bytes drawn as bits under the RFC's field names, and
    a table (HTML in Jupyter, text elsewhere): FIN, RSV1-3 and opcode
    bits, the MASK bit, how the payload length is encoded (7, 16 or 64 bits),
    the masking key, the payload as sent and unmasked, and what is wrong with
    the frame if anything. With RSV1 set (permessage-deflate), also the
    inflated payload (``inflate_payload``; a fresh decompressor, so the first
    message of a connection or ``no_context_takeover``), at most
    ``EXPLAIN_INFLATE_LIMIT`` (1 MiB) of it: past that it says "inflated output
    truncated at N bytes". Never raises for bad or partial bytes: it says what
    is wrong or missing (``tests/test_fuzz_frames.py`` holds it to that).

    >>> print(explain(bytes.fromhex("81 05 48 65 6c 6c 6f")).rows[2])
    ['0', '....0001', 'opcode', '0x1: TEXT']
    """
    data = bytes(data)
    rows: list[list[str]] = []
    columns = ["bytes", "bits", "field", "value"]

    def row(where: str, bits: str, field: str, value: str) -> None:
        rows.append([where, bits, field, value])

    def complain() -> bool:  # what a receiver would say about these bytes
        try:
            decode(data, rsv1_allowed=True)
        except ProtocolError as exc:
            row("", "", "! protocol error", f"{exc} (close code {int(exc.code)}, {exc.where})")
            return True
        return False

    def incomplete(needed: int, what: str = "") -> Explanation:
        if not complain():
            row("", "", "(incomplete)", f"needs {needed:,} more byte(s){what}")
        return Explanation(data[:2], Table(columns, rows, title=f"part of a frame: {len(data)} bytes"))

    if not data:
        return incomplete(2)
    # Byte 0: FIN, RSV1-3, opcode.
    first = data[0]
    op = first & _OPCODE
    name = _OPCODES[op].name if op in _OPCODES else f"opcode 0x{op:x}"
    rsv1, rsv2, rsv3 = (int(bool(first & bit)) for bit in (_RSV1, _RSV2, _RSV3))
    extension = "no extension" if not (rsv1 or rsv2 or rsv3) else (
        "compressed (permessage-deflate)" if (rsv1, rsv2, rsv3) == (1, 0, 0) else "reserved bits set")
    row("0", _bits(first, _FIN), "FIN",
        f"{first >> 7}: " + ("final frame of its message" if first & _FIN else "more frames follow"))
    row("0", _bits(first, _RSV1 | _RSV2 | _RSV3), "RSV1 RSV2 RSV3", f"{rsv1} {rsv2} {rsv3}: {extension}")
    row("0", _bits(first, _OPCODE), "opcode",
        f"0x{op:x}: " + (name if op in _OPCODES else "reserved, not defined by RFC 6455"))
    if len(data) < 2:
        return incomplete(1)
    # Byte 1: MASK, payload length (7 bits), then maybe 2 or 8 bytes of length.
    second = data[1]
    masked = bool(second & _MASK)
    row("1", _bits(second, _MASK), "MASK", f"{int(masked)}: payload " +
        ("masked (client to server)" if masked else "not masked (server to client)"))
    length = second & _LENGTH
    offset = 2
    if length < _LENGTH_16:
        row("1", _bits(second, _LENGTH), "payload length", f"{length} (fits in 7 bits)")
    else:
        size = 2 if length == _LENGTH_16 else 8
        row("1", _bits(second, _LENGTH), "payload length",
            f"{length}: the next {size} bytes hold a {size * 8}-bit length")
        if len(data) < 2 + size:
            return incomplete(2 + size - len(data), " of length")
        length = int.from_bytes(data[2 : 2 + size], "big")
        row(f"2-{1 + size}", data[2 : 2 + size].hex(" "), f"extended length ({size * 8} bits)", f"{length:,}")
        offset += size
    # The masking key, then the payload.
    key = data[offset : offset + 4] if masked else None
    if key is not None:
        if len(key) < 4:
            return incomplete(4 - len(key), " of masking key")
        row(f"{offset}-{offset + 3}", key.hex(" "), "masking key", "XOR key, repeated over the payload")
        offset += 4
    payload = data[offset : offset + length]
    if length:
        row(f"{offset}-{offset + len(payload) - 1}" if payload else f"{offset}", _hex(payload),
            "payload (masked)" if masked else "payload", f"{length:,} bytes")
    clear = payload if key is None else _xor(payload, key)
    if key is not None and payload:
        row("", _hex(clear), "payload (unmasked)", _preview(op, clear, bool(rsv1), 40))
    elif payload and op in (Opcode.TEXT, Opcode.CONT, Opcode.CLOSE) and not rsv1:
        rows[-1][3] += ": " + _preview(op, clear, False, 40)
    if len(payload) < length:
        return incomplete(length - len(payload), " of payload")
    if rsv1 and inflate_payload and op in (Opcode.TEXT, Opcode.BINARY):
        try:
            inflated, cut = _inflate_prefix(clear, EXPLAIN_INFLATE_LIMIT)
        except zlib.error as exc:
            row("", "", "payload (inflated)", f"cannot inflate on its own: {exc}")
        else:
            size = f"inflated output truncated at {len(inflated):,} bytes" if cut else f"{len(inflated):,} bytes"
            row("", _hex(inflated), "payload (inflated)", f"{size}: {_preview(op, inflated, False, 40)}")
    complain()
    end = offset + length
    if end < len(data):
        row(f"{end}-", "", "(next frame)", f"{len(data) - end:,} more bytes")
    title = f"{name} frame, {end:,} bytes on the wire: {offset} of header, {length:,} of payload"
    return Explanation(data[:2], Table(columns, rows, title=title))


# -- transcript(): a captured conversation, frame by frame --------------------


def transcript(chunks: Iterable[tuple[str, float, bytes]], *, extensions: str = "") -> list[str]:
    """Decode a captured conversation into one line per frame, in the order bytes arrived.

    ``chunks`` are ``(direction, seconds, data)`` with direction ``>`` (client
    to server: masked frames) or ``<`` (server to client: unmasked), data
    starting right after the HTTP 101. ``extensions`` is the response's
    ``Sec-WebSocket-Extensions`` value: with ``permessage-deflate`` the lines
    show RSV1 and each message inflated (RFC 7692), at most
    ``EXPLAIN_INFLATE_LIMIT`` (1 MiB) of each: a longer one says "inflated
    output truncated at N bytes" (and, with context takeover, the messages after
    it in that direction cannot be inflated: they show 0 bytes). The frames
    before a bad one are shown, then a ``!`` line ends that direction;
    leftover bytes are reported, never dropped. Never raises for any bytes
    (``tests/test_fuzz_frames.py`` holds it to that).
    """
    params = [p.strip().lower() for p in extensions.split(";")]
    deflate = "permessage-deflate" in params
    readers = {
        ">": Reader("server", max_size=None, permessage_deflate=deflate,
                    context_takeover="client_no_context_takeover" not in params),
        "<": Reader("client", max_size=None, permessage_deflate=deflate,
                    context_takeover="server_no_context_takeover" not in params),
    }
    for reader in readers.values():
        reader._inflate_cap = EXPLAIN_INFLATE_LIMIT
    broken: set[str] = set()
    lines: list[str] = []
    for direction, t, data in chunks:
        if direction in broken:
            continue
        stamp = f"{t * 1000:10.3f} ms"
        error: ProtocolError | None = None
        try:
            events = readers[direction].feed(data, frames=True)
        except ProtocolError as exc:
            events, error = exc.events, exc  # the frames before the bad one are shown too
        for event in events:
            if isinstance(event, Frame):
                lines.append(f"{stamp} {direction} {event}")
            elif event.frames > 1 or event.compressed is not None:
                lines.append(f"{stamp} {direction}   = {event}")
        if error is not None:
            lines.append(f"{stamp} ! {direction} {error} (close code {int(error.code)}, {error.where})")
            broken.add(direction)
    for direction, reader in readers.items():
        if reader.ignored:
            lines.append(f"! {direction} {reader.ignored} bytes after the CLOSE frame, not read (section 5.5.1)")
        if reader.buffered and direction not in broken:
            lines.append(f"! {direction} {reader.buffered} bytes at the end: the start of a frame that never finished")
    return lines

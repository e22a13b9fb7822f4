"""The frame codec: one frame to bytes and back (RFC 6455 section 5).

Part of :mod:`wslab.protocol.frames` (its design note says how the parts fit): the
protocol's vocabulary (:class:`Opcode`, :class:`CloseCode`,
:class:`ProtocolError`), :class:`Frame` and the :class:`Message` it reassembles into,
:func:`encode` / :func:`decode`,
masking (:func:`mask_naive` and :func:`mask` for teaching, websockets' C
``apply_mask`` in the codec) and close payloads. Import it from
``wslab.protocol.frames``.
"""

from __future__ import annotations

import codecs
import dataclasses
import enum
import struct
__all__ = [
    "Opcode",
    "Message",
    "CloseCode",
    "ProtocolError",
    "Frame",
    "encode",
    "decode",
    "mask",
    "mask_naive",
    "close_payload",
    "parse_close",
    "FAST_MASK",
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


def _too_big(what: str) -> ProtocolError:
    """Section 10.4: a message over the endpoint's limit; close with 1009 (MESSAGE_TOO_BIG)."""
    return ProtocolError(f"message too big: {what}", code=CloseCode.MESSAGE_TOO_BIG, section="10.4")


def _invalid_utf8(where: str, *, section: str) -> ProtocolError:
    """Text that is not UTF-8 (a text message: 8.1; a close reason: 5.5.1); close with 1007 (INVALID_DATA)."""
    return ProtocolError(f"invalid utf-8 in {where}", code=CloseCode.INVALID_DATA, section=section)


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
    both as one big integer each and XOR them once: tens of times faster than
    :func:`mask_naive` (measured on a 2-core machine: 150-400 MB/s against
    4-15 MB/s, depending on load; ``benchmarks/bench_frames.py`` prints both).

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
        head = payload[: 4 * limit + 4]  # enough for the preview: a large payload is not decoded whole
        whole = len(head) == len(payload)
        try:
            text = codecs.getincrementaldecoder("utf-8")().decode(head, whole)
        except UnicodeDecodeError:
            pass
        else:  # as text, unless it is not readable (a piece of a compressed message, say)
            if opcode == Opcode.TEXT or text.replace("\n", "").replace("\t", "").isprintable():
                return _elide(repr(text), limit) if whole else repr(text)[: limit - 5] + "..."
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
        raise _too_big(f"{size} (max_size is {max_size})")
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
        raise _invalid_utf8(f"close reason at byte {exc.start + 2}", section="5.5.1") from None
    return (CloseCode(code) if code in CloseCode._value2member_map_ else code), reason

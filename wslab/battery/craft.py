"""Frames as the battery's client crafts them: the bits of RFC 6455 5.2 with ``struct``, nothing shared.

The battery judges the frame code a learner writes (:mod:`wslab.protocol`), so it
builds its own frames from the layout below, valid or deliberately not (an
unmasked client frame, reserved bits set), and shows what a server sent in a
form safe for a report or a terminal (:func:`short`, :func:`printable`).
:mod:`.wire` (the raw client) re-exports all of it.
"""

from __future__ import annotations

import os
import struct

from ..course.i18n import N_
from .phrase import Phrase

__all__ = [
    "encode_frame",
    "apply_mask",
    "close_payload",
    "parse_close",
    "short",
    "printable",
    "OPCODE_NAMES",
    "FIN",
    "RSV_BITS",
    "OPCODE_BITS",
    "MASK_BIT",
    "LENGTH_BITS",
    "LENGTH_16",
    "LENGTH_64",
    "CONT",
    "TEXT",
    "BINARY",
    "CLOSE",
    "PING",
    "PONG",
]

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
    return head + key + apply_mask(payload, key)


def apply_mask(payload: bytes, key: bytes) -> bytes:
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
        if len(data) <= limit:
            return repr(data)
        return Phrase(N_("{start!r}... ({count:,} characters)"), start=data[:limit], count=len(data))
    if len(data) <= limit and (not data or data.isascii()):
        return repr(data)
    return Phrase(N_("{size:,} bytes ({head} ...)"), size=len(data), head=data[:4].hex(" "))


def printable(text: str) -> str:
    """``text`` with every control character shown as an escape (``\\x00``, ``\\x1b``).

    What a server sends ends up in reports, terminals and JUnit XML: a NUL
    or an ANSI escape there must be seen, not obeyed (RFC 9110 5.5 forbids
    them in header values anyway).
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)

"""Frames drawn for a learner: :func:`explain` (one frame, bit by bit) and :func:`transcript` (a capture).

Part of :mod:`wslab.protocol.frames` (its design note says how the parts fit). Both
never raise for any bytes, and inflate compressed payloads with a bound
(``EXPLAIN_INFLATE_LIMIT``), so a deflate bomb is drawn in milliseconds.
Import them from ``wslab.protocol.frames``.
"""

from __future__ import annotations

import dataclasses
import html
import zlib
from typing import Iterable

from ..course.display import Table
from .frame_codec import (
    _FIN,
    _LENGTH,
    _LENGTH_16,
    _MASK,
    _OPCODE,
    _OPCODES,
    _RSV1,
    _RSV2,
    _RSV3,
    Frame,
    Opcode,
    ProtocolError,
    _preview,
    _xor,
    decode,
)
from .frame_reader import Reader, _inflate_prefix

__all__ = ["explain", "Explanation", "transcript", "EXPLAIN_INFLATE_LIMIT"]


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
    (``tests/test_fuzz_frames.py`` holds it to that); a direction other than
    ``>`` or ``<`` is a ``ValueError``.
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
        if direction not in readers:
            raise ValueError(f"direction must be '>' (client to server) or '<' (server to client), not {direction!r}")
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

"""The HTTP messages in captured bytes, read without trusting them.

:func:`http_messages` splits one direction of a relayed connection (what a
:class:`wslab.Capture` recorded) into requests or responses, shown as text:
heads in full, bodies summarized, and after a ``101 Switching Protocols``
only a count of the WebSocket bytes (``tap.frames()`` decodes those).
``tap.http()`` shows what it gives.

Design note
-----------
The bytes come from any peer, so reading them never raises and never
trusts a length: a ``Content-Length`` that is not ``1*DIGIT`` (RFC 9110
section 8.6: ``²``, ``-5``, ``5, 6``), a chunk size that is not ``1*HEXDIG``
(RFC 9112 section 7.1), or a head that never ends is shown as such, with a
``!`` note, and the rest of that direction as unparsed bytes. A length of
more digits than any capture holds reads as "the rest" (never ``int()`` on
thousands of digits). Every loop is bounded by the data's length.
"""

from __future__ import annotations

import re
from typing import Iterable

__all__ = ["http_messages", "content_length"]


def _summarize_body(body: bytes, limit: int) -> str:
    if not body:
        return ""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return f"[{len(body):,} bytes of binary body]"
    if len(text) > limit:
        text = text[:limit] + f"... [{len(body):,} bytes in all]"
    return text


#: RFC 9110 section 8.6: ``Content-Length = 1*DIGIT`` (ASCII digits only: ``str.isdigit`` also takes "²").
_DIGITS = re.compile(r"[0-9]+")
#: RFC 9112 section 7.1: ``chunk-size = 1*HEXDIG``, then optional ``;`` extensions.
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]+)[ \t]*(?:;.*)?")
#: Longer lengths than this many digits exceed any capture: read them as "the rest".
_MAX_DIGITS = 18


def content_length(value: str) -> int | None:
    """The body length a ``Content-Length`` value gives, or None if it is not one (RFC 9110 8.6).

    A list of identical values (``5, 5``) counts as one, as 8.6 allows; a
    number longer than any capture reads as "the rest of the stream" (never
    ``int()`` on thousands of digits: Python refuses more than 4,300).
    """
    values = {v.strip() for v in value.split(",")}
    if len(values) != 1:
        return None
    digits = values.pop()
    if not _DIGITS.fullmatch(digits):
        return None
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= _MAX_DIGITS else 1 << 62


def http_messages(data: bytes, body_limit: int = 200, *, is_response: bool) -> Iterable[str]:
    """Split one direction of a connection (``data``) into HTTP messages, shown as text.

    Each message is its head in full and its body summarized (at most
    ``body_limit`` characters); after an upgrade the rest is counted as
    WebSocket frames. Never raises on what a peer sent: a message whose framing cannot be read
    (a bad ``Content-Length`` or chunk size) is shown with a ``!`` note, and
    the rest of the direction as unparsed bytes.
    """
    pos = 0
    for _ in range(len(data) + 1):  # bounded: each message consumes at least its 4-byte end of head
        if pos >= len(data):
            return
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            yield f"[{len(data) - pos:,} bytes: not a complete HTTP head]"
            return
        head = data[pos:end].decode("latin-1")
        pos = end + 4
        headers = {}
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        first = head.split("\r\n", 1)[0]
        upgrade = not is_response and headers.get("upgrade", "").lower() == "websocket"
        if upgrade or (is_response and first.split(" ")[1:2] == ["101"]):
            rest = len(data) - pos
            yield head + (f"\n\n[then {rest:,} bytes of WebSocket frames: tap.frames() decodes them]" if rest else "")
            return
        problem = ""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body, pos, problem = _dechunk(data, pos)
        elif "content-length" in headers:
            length = content_length(headers["content-length"])
            if length is None:
                rest = len(data) - pos
                yield head + (
                    f"\n\n! Content-Length {headers['content-length'][:40]!r} is not a decimal number "
                    f"(RFC 9110 section 8.6: 1*DIGIT): the body's end is unknown, so the rest "
                    f"({rest:,} bytes) is not parsed"
                )
                return
            body, pos = data[pos : pos + length], min(len(data), pos + length)
        elif is_response and not first.split(" ")[1:2] in (["204"], ["304"]):
            body, pos = data[pos:], len(data)  # read until the server closed
        else:
            body = b""
        summary = _summarize_body(body, body_limit)
        yield head + (f"\n\n{summary}" if summary else "") + (f"\n\n{problem}" if problem else "")
        if problem:
            return


def _dechunk(data: bytes, pos: int) -> tuple[bytes, int, str]:
    """-> (body, position after it, a ``!`` note if a chunk size was bad) (RFC 9112 section 7.1)."""
    body = bytearray()
    for _ in range(len(data)):  # bounded: each chunk consumes at least 3 bytes
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            break
        line = data[pos:eol]
        match = _CHUNK_SIZE.fullmatch(line)
        if match is None:
            return bytes(body), len(data), (
                f"! chunk size {line[:40]!r} is not hexadecimal (RFC 9112 section 7.1: 1*HEXDIG): "
                f"the rest ({len(data) - pos:,} bytes) is not parsed"
            )
        digits = match.group(1).lstrip(b"0") or b"0"
        size = int(digits, 16) if len(digits) <= 15 else 1 << 62
        pos = eol + 2
        if size == 0:
            end = data.find(b"\r\n\r\n", pos - 2)
            return bytes(body), (end + 4 if end >= 0 else len(data)), ""
        body += data[pos : pos + size]
        pos += size + 2
        if pos >= len(data):
            break
    return bytes(body), len(data), ""

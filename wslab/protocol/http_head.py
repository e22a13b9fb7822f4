"""HTTP/1.1 message heads for the WebSocket handshake: parse them, check their syntax, build them.

The opening handshake (RFC 6455 section 4) is an HTTP/1.1 request and
response. This module reads and writes their heads (the start line, the
header lines, the empty line) and enforces HTTP's own rules on them: a
field name is a token and a field value holds no control characters
(RFC 9110 5.1, 5.5), the request line is ``method SP target SP version``
with a visible-ASCII target (RFC 9112 3), a status code is three ASCII
digits (RFC 9112 4). What makes a head a valid *WebSocket* upgrade is
:mod:`wslab.protocol.handshake`'s job, which re-exports every public name here.

Every error is a :class:`HandshakeError` carrying the HTTP status to answer
with (None on the client side), the header concerned and the RFC section.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

__all__ = [
    "MAX_HEAD",
    "REASONS",
    "Headers",
    "Request",
    "Response",
    "HandshakeError",
    "BadRequest",
    "UpgradeRequired",
    "ForbiddenOrigin",
    "HeadersTooLarge",
    "InvalidResponse",
    "parse_request",
    "parse_response",
]

#: Largest request or response head we read, in bytes (the head ends at the blank line).
MAX_HEAD = 16 * 1024

REASONS = {
    101: "Switching Protocols",
    400: "Bad Request",
    403: "Forbidden",
    408: "Request Timeout",
    426: "Upgrade Required",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}

# RFC 9110 5.1 and 5.6.2: a field name is a token, one or more of these characters.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 5.5: a field value holds visible characters, SP, HTAB and obs-text (0x80-0xFF);
# every other control character (NUL, a bare CR or LF, DEL...) makes it invalid.
_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# RFC 9112 3 and 2.3: a request-target is visible ASCII; HTTP-version = "HTTP/" DIGIT "." DIGIT.
_TARGET = re.compile(r"[\x21-\x7e]+")
_VERSION = re.compile(r"HTTP/[0-9]\.[0-9]")
# RFC 9112 4: status-code = 3DIGIT (ASCII digits; str.isdigit() also takes '²' and '٣').
_STATUS = re.compile(r"[0-9]{3}")



# Errors


class HandshakeError(Exception):
    """The handshake failed; the attributes say how a peer should learn of it.

    ``status``: the HTTP status a server answers with (None on the client
    side: a client just fails the connection); ``header``: the header
    concerned (None for the request line); ``value``: what it held;
    ``section``: where the RFC says so (``"4.2.1"`` for RFC 6455, or a full
    reference such as ``"RFC 9112 section 3.2"`` for HTTP's own rules);
    ``where``: the section as a reference; ``message``: what went wrong and
    what to do.
    """

    status: int | None = 400

    def __init__(
        self,
        message: str,
        *,
        header: str | None = None,
        value: str | None = None,
        section: str = "4.2.1",
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.header = header
        self.value = value
        self.section = section
        if status is not None:
            self.status = status

    @property
    def where(self) -> str:
        """The section as a reference: ``RFC 6455 section 4.2.1`` (or ``RFC 9112 section 3.2``)."""
        return self.section if self.section.startswith("RFC") else f"RFC 6455 section {self.section}"

    def __str__(self) -> str:
        return f"{self.message} ({self.where})"


class BadRequest(HandshakeError):
    """The request is not a valid WebSocket upgrade: 400 Bad Request."""

    status = 400


class UpgradeRequired(HandshakeError):
    """The client speaks another WebSocket version: 426, with ``Sec-WebSocket-Version: 13``."""

    status = 426


class ForbiddenOrigin(HandshakeError):
    """The page that opened the connection is not allowed: 403 Forbidden (section 10.2)."""

    status = 403


class HeadersTooLarge(HandshakeError):
    """The request head is larger than the server reads: 431."""

    status = 431


class InvalidResponse(HandshakeError):
    """The server's answer does not complete the handshake: the client fails the connection."""

    status = None


# Headers and messages


class Headers:
    """HTTP headers: names case-insensitive, repeats kept, in order.

    ``headers["upgrade"]`` joins repeated headers with ", " (RFC 9110 5.3);
    ``headers.get_all(name)`` lists them; ``name in headers`` tests presence.
    """

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = list(items)

    def items(self) -> list[tuple[str, str]]:
        """(name, value) pairs in the order they came, names as written."""
        return list(self._items)

    def add(self, name: str, value: str) -> None:
        self._items.append((name, value))

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for n, v in self._items if n.lower() == name]

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self.get_all(name)
        return ", ".join(values) if values else default

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self.get_all(name))

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def tokens(self, name: str, *, lower: bool = True) -> list[str]:
        """A comma-separated header (all its lines) as a list of tokens: ``keep-alive, Upgrade`` -> [...].

        Lowercase by default, for case-insensitive tokens such as ``Connection``;
        ``lower=False`` keeps case-sensitive ones such as subprotocol names.
        """
        found = [t.strip() for v in self.get_all(name) for t in v.split(",") if t.strip()]
        return [t.lower() for t in found] if lower else found

    def __str__(self) -> str:
        return "".join(f"{n}: {v}\r\n" for n, v in self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class _Head:
    """What a request head and a response head share: a start line, then the header lines."""

    headers: Headers

    @property
    def start_line(self) -> str:
        raise NotImplementedError

    def _summary(self) -> str:
        return self.start_line

    def __str__(self) -> str:
        return f"{self.start_line}\r\n{self.headers}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._summary()}, {len(self.headers)} headers>"


@dataclass(repr=False)
class Request(_Head):
    """A parsed HTTP request head; ``rest`` holds any bytes read after it."""

    method: str
    path: str
    version: str
    headers: Headers
    rest: bytes = b""

    @property
    def start_line(self) -> str:
        return f"{self.method} {self.path} {self.version}"

    @property
    def subprotocols(self) -> list[str]:
        """What ``Sec-WebSocket-Protocol`` offers, in the client's order of preference."""
        return self.headers.tokens("Sec-WebSocket-Protocol", lower=False)

    @property
    def extensions(self) -> list[str]:
        """The offers in ``Sec-WebSocket-Extensions``, parameters included."""
        return self.headers.tokens("Sec-WebSocket-Extensions", lower=False)


@dataclass(repr=False)
class Response(_Head):
    """A parsed HTTP response head; ``rest`` holds any bytes read after it (frames, a body)."""

    version: str
    status: int
    reason: str
    headers: Headers
    rest: bytes = b""

    @property
    def start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def _summary(self) -> str:
        return f"{self.status} {self.reason}"


def _split_head(data: bytes, max_size: int, what: str) -> tuple[list[str], bytes] | None:
    end = data.find(b"\r\n\r\n")
    if end < 0:
        bare = data.find(b"\n\n")
        if bare >= 0 and (bare == 0 or data[bare - 1 : bare] != b"\r"):
            raise BadRequest(
                f"the {what} ends its lines with \\n alone; HTTP lines end with \\r\\n "
                f"and the head ends with an empty line: b'\\r\\n\\r\\n'",
                section="4.1",
            )
        if len(data) > max_size:
            raise HeadersTooLarge(
                f"no end of the {what} head after {len(data):,} bytes (limit {max_size:,}): "
                f"a head ends with an empty line, b'\\r\\n\\r\\n'",
                section="4.2.1",
            )
        return None  # incomplete: read more
    if end > max_size:
        raise HeadersTooLarge(f"the {what} head is {end:,} bytes (limit {max_size:,})")
    head = data[:end].decode("latin-1")
    return head.split("\r\n"), data[end + 4 :]


def _parse_headers(lines: Sequence[str]) -> Headers:
    headers = Headers()
    for line in lines:
        if line[:1] in (" ", "\t"):
            raise BadRequest(f"header line {line!r} starts with whitespace (obsolete line folding)", header=None)
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise BadRequest(f"malformed header line {line!r}: write `Name: value`", header=name.strip() or None)
        if not _TOKEN.fullmatch(name):
            raise BadRequest(
                f"header name {name!r} is not a token: letters, digits and !#$%&'*+-.^_`|~ only",
                header=name, section="RFC 9110 section 5.1",
            )
        value = value.strip(" \t")
        # RFC 9110 5.5: "a recipient of CR, LF, or NUL within a field value MUST
        # either reject the message or replace each of those characters with SP";
        # "Field values containing other CTL characters are also invalid". We reject.
        if (bad := _CTL.search(value)) is not None:
            raise BadRequest(
                f"header {name} holds the control character {bad.group()!r} in {value!r}: "
                f"a header value holds visible characters, spaces and tabs only",
                header=name, value=value, section="RFC 9110 section 5.5",
            )
        headers.add(name, value)
    return headers


def _outgoing(lines: list[str]) -> bytes:
    """Join a head we send, refusing a header that would split it (RFC 9110 5.5, response splitting)."""
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        if not _TOKEN.fullmatch(name) or _CTL.search(value):
            raise ValueError(
                f"cannot send the header line {line!r}: a name is a token and a value holds no "
                f"control characters (a CR or LF would start a new header: RFC 9110 section 5.5)"
            )
    try:
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(
            f"cannot send {lines!r}: HTTP heads are bytes; keep header values to ASCII "
            f"(percent-encode a path)"
        ) from None


def parse_request(data: bytes, *, max_size: int = MAX_HEAD) -> Request | None:
    """Parse the request head at the start of ``data``; None if more bytes are needed.

    Raises :class:`BadRequest` for a malformed head (a header name that is not
    a token, a control character in a header value: RFC 9110 5.1, 5.5),
    :class:`HeadersTooLarge` when no head ends within ``max_size`` bytes. It
    does not judge whether the request is a valid upgrade: that is
    :func:`check_request`.
    """
    split = _split_head(data, max_size, "request")
    if split is None:
        return None
    lines, rest = split
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise BadRequest(
            f"malformed request line {lines[0]!r}: write `GET /path HTTP/1.1`", section="4.1"
        )
    method, path, version = parts
    # RFC 9112 3: request-line = method SP request-target SP HTTP-version; the
    # method is a token, the target visible ASCII (anything else is percent-encoded).
    if not _TOKEN.fullmatch(method) or not _TARGET.fullmatch(path) or not _VERSION.fullmatch(version):
        raise BadRequest(
            f"malformed request line {lines[0][:80]!r}: write `GET /path HTTP/1.1`, with the path "
            f"in visible ASCII (percent-encode the rest: %20 for a space)",
            value=path[:80], section="RFC 9112 section 3",
        )
    return Request(method, path, version, _parse_headers(lines[1:]), rest)


def parse_response(data: bytes, *, max_size: int = MAX_HEAD) -> Response | None:
    """Parse the response head at the start of ``data``; None if more bytes are needed.

    Raises :class:`InvalidResponse` for a malformed or oversized head (a status
    code that is not three ASCII digits, a header line that is not `Name: value`,
    a control character in a header value).
    """
    try:
        split = _split_head(data, max_size, "response")
    except HandshakeError as exc:
        raise InvalidResponse(exc.message, section="4.1") from None
    if split is None:
        return None
    lines, rest = split
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not _STATUS.fullmatch(parts[1]):
        raise InvalidResponse(
            f"malformed status line {lines[0][:80]!r}: a status line is `HTTP/1.1 101 Switching Protocols`, "
            f"with a status code of three ASCII digits",
            value=parts[1][:80] if len(parts) > 1 else None, section="RFC 9112 section 4",
        )
    try:
        headers = _parse_headers(lines[1:])
    except HandshakeError as exc:
        raise InvalidResponse(exc.message, header=exc.header, value=exc.value, section=exc.section) from None
    return Response(parts[0], int(parts[1]), parts[2] if len(parts) > 2 else "", headers, rest)

"""The opening handshake of RFC 6455 (section 4), by hand, on raw bytes.

A WebSocket connection starts as an HTTP/1.1 request that asks to switch
protocols, and a ``101 Switching Protocols`` answer. Both are plain text:

    GET /chat HTTP/1.1                          HTTP/1.1 101 Switching Protocols
    Host: 127.0.0.1:8765                        Upgrade: websocket
    Upgrade: websocket                          Connection: Upgrade
    Connection: Upgrade                         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
    Sec-WebSocket-Version: 13

Client side::

    data = build_request("ws://127.0.0.1:8765/chat")   # bytes to write on the socket
    ...read the answer...
    check_response(answer, data)                       # raises HandshakeError if wrong

Server side (what a from-scratch server does with the bytes it read)::

    request = parse_request(data)        # None: not complete yet, read more
    try:
        check_request(request, origins=["http://127.0.0.1:8888"])
        writer.write(response_101(request))
    except HandshakeError as error:
        writer.write(refusal(error))     # 400, 403, 426 with a body that says why

Every error is a :class:`HandshakeError` carrying the HTTP status to answer
with, the header concerned and the RFC section.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence
from urllib.parse import urlsplit

__all__ = [
    "GUID",
    "accept_key",
    "new_key",
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
    "check_request",
    "response_101",
    "refusal",
    "build_request",
    "check_response",
]

#: "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", a GUID no other protocol uses (section 1.3).
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

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


# The accept key (section 1.3 and 4.2.2)


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key``: base64(SHA-1(key + GUID)).

    Section 4.2.2: "concatenate this with the Globally Unique Identifier
    258EAFA5-E914-47DA-95CA-C5AB0DC85B11 ... take the SHA-1 hash of this
    concatenated value ... base64-encode this 20-byte hash". Raises
    ``ValueError`` for a key that is not ASCII text.

    >>> accept_key("dGhlIHNhbXBsZSBub25jZQ==")
    's3pPLMBiTxaQ9kYGzzhZRbK+xOo='
    """
    if not key.isascii():
        raise ValueError(
            f"Sec-WebSocket-Key {key!r} is not ASCII: a key is base64 text, "
            f"base64.b64encode(os.urandom(16)).decode()"
        )
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def new_key() -> str:
    """A fresh ``Sec-WebSocket-Key``: 16 random bytes, base64 (section 4.1)."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


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


@dataclass
class Request:
    """A parsed HTTP request head; ``rest`` holds any bytes read after it."""

    method: str
    path: str
    version: str
    headers: Headers
    rest: bytes = b""

    def __str__(self) -> str:
        return f"{self.method} {self.path} {self.version}\r\n{self.headers}"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.path} {self.version}, {len(self.headers)} headers>"

    @property
    def subprotocols(self) -> list[str]:
        """What ``Sec-WebSocket-Protocol`` offers, in the client's order of preference."""
        return self.headers.tokens("Sec-WebSocket-Protocol", lower=False)

    @property
    def extensions(self) -> list[str]:
        """The offers in ``Sec-WebSocket-Extensions``, parameters included."""
        return self.headers.tokens("Sec-WebSocket-Extensions", lower=False)


@dataclass
class Response:
    """A parsed HTTP response head; ``rest`` holds any bytes read after it (frames, a body)."""

    version: str
    status: int
    reason: str
    headers: Headers
    rest: bytes = b""

    def __str__(self) -> str:
        return f"{self.version} {self.status} {self.reason}\r\n{self.headers}"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}, {len(self.headers)} headers>"


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


# Server side (section 4.2)


def check_request(
    request: Request,
    origins: Sequence[str | None] | Callable[[str | None], bool] | None = None,
) -> str:
    """Check a client's opening handshake; return the ``Sec-WebSocket-Accept`` value.

    ``origins``: the pages allowed to connect (``"http://127.0.0.1:8888"``;
    include None to allow clients that send no Origin, like non-browser
    clients), or a function of the ``Origin`` value (None when absent) that
    says whether it may (``wslab.limits.origin_allowed``, the kit's policy).
    None (the default) allows every origin.

    Raises :class:`BadRequest` (400: among others a missing, repeated or empty
    ``Host``, RFC 9112 3.2; a body announced by ``Content-Length`` or
    ``Transfer-Encoding``), :class:`UpgradeRequired` (426) or
    :class:`ForbiddenOrigin` (403); :func:`refusal` turns one into bytes.
    """
    h = request.headers
    # 4.2.1 (1): "An HTTP/1.1 or higher GET request"
    if request.method != "GET":
        raise BadRequest(f"method {request.method} cannot open a WebSocket: the handshake is a GET request", value=request.method)
    if request.version != "HTTP/1.1":
        raise BadRequest(f"{request.version} cannot open a WebSocket: the handshake needs HTTP/1.1", value=request.version)
    # (2) "A |Host| header field". RFC 9112 3.2: "A server MUST respond with a
    # 400 (Bad Request) status code to any HTTP/1.1 request message that lacks
    # a Host header field and to any request message that contains more than
    # one Host header field line or a Host header field with an invalid field value."
    hosts = h.get_all("Host")
    if not hosts:
        raise BadRequest("missing Host header: HTTP/1.1 requests name the host they are for", header="Host")
    if len(hosts) > 1:
        raise BadRequest(
            f"{len(hosts)} Host headers ({', '.join(map(repr, hosts))}): send exactly one",
            header="Host", value=", ".join(hosts), section="RFC 9112 section 3.2",
        )
    # RFC 6455 4.1: "|Host| header field whose value contains /host/ plus
    # optionally ":" followed by /port/".
    if not hosts[0] or any(c in hosts[0] for c in " \t/?#@\\"):
        raise BadRequest(
            f"Host is {hosts[0]!r}: give the server's host and port, as in `Host: 127.0.0.1:8765`",
            header="Host", value=hosts[0], section="4.1",
        )
    # RFC 9110 9.3.1: "content received in a GET request has no generally
    # defined semantics ... might lead some implementations to reject the
    # request ... because of its potential as a request smuggling attack". Here
    # the bytes after the head are WebSocket frames: a body would make them
    # ambiguous. (Content-Length: 0 says "no body"; websockets accepts it too.)
    for name in ("Transfer-Encoding", "Content-Length"):
        values = h.get_all(name)
        if values and (name == "Transfer-Encoding" or values != ["0"]):
            raise BadRequest(
                f"a GET with {name}: {', '.join(values)} announces a body, but the bytes after "
                f"a WebSocket request are frames (a body here is a request-smuggling risk): send no body",
                header=name, value=", ".join(values), section="RFC 9110 section 9.3.1",
            )
    # (3) "An |Upgrade| header field containing the value 'websocket'"
    if "websocket" not in h.tokens("Upgrade"):
        raise BadRequest(
            ("missing Upgrade header" if "Upgrade" not in h else f"Upgrade is {h['Upgrade']!r}")
            + "; a WebSocket request says `Upgrade: websocket`. A plain HTTP request (a browser's "
            "address bar) cannot open a WebSocket: you need a WebSocket client",
            header="Upgrade", value=h.get("Upgrade"),
        )
    # (4) "A |Connection| header field that includes the token 'Upgrade'"
    if "upgrade" not in h.tokens("Connection"):
        raise BadRequest(
            ("missing Connection header" if "Connection" not in h else f"Connection is {h['Connection']!r}")
            + "; it must include the token Upgrade, as in `Connection: Upgrade`",
            header="Connection", value=h.get("Connection"),
        )
    # (5) "A |Sec-WebSocket-Key| header field with a base64-encoded value
    #      that, when decoded, is 16 bytes in length"
    keys = h.get_all("Sec-WebSocket-Key")
    if len(keys) != 1:
        raise BadRequest(
            "missing Sec-WebSocket-Key: send 16 random bytes, base64-encoded" if not keys
            else f"{len(keys)} Sec-WebSocket-Key headers; send exactly one",
            header="Sec-WebSocket-Key", value=", ".join(keys) or None,
        )
    key = keys[0]
    try:
        raw = base64.b64decode(key, validate=True)
    except ValueError as exc:  # binascii.Error, or characters outside ASCII
        why = str(exc).lower() if key.isascii() else "it holds characters outside ASCII"
        raise BadRequest(
            f"Sec-WebSocket-Key {key!r} is not base64 ({why}); send 16 random bytes, "
            f"base64-encoded: base64.b64encode(os.urandom(16))",
            header="Sec-WebSocket-Key", value=key,
        ) from None
    if len(raw) != 16:
        raise BadRequest(
            f"Sec-WebSocket-Key {key!r} decodes to {len(raw)} bytes, not 16; "
            f"use base64.b64encode(os.urandom(16))",
            header="Sec-WebSocket-Key", value=key,
        )
    # (6) "A |Sec-WebSocket-Version| header field, with a value of 13"
    version = h.get("Sec-WebSocket-Version")
    if version is None:
        raise BadRequest("missing Sec-WebSocket-Version: send 13", header="Sec-WebSocket-Version")
    if version.strip() != "13":
        raise UpgradeRequired(
            f"Sec-WebSocket-Version {version!r} is not supported; this server speaks version 13",
            header="Sec-WebSocket-Version", value=version, section="4.4",
        )
    # 10.2: "Servers that are not intended to process input from any web page
    #        but only for certain sites SHOULD verify the |Origin| field"
    if origins is not None:
        origin = h.get("Origin")
        allowed = origins(origin) if callable(origins) else origin in origins
        if not allowed:
            listed = "" if callable(origins) else f" (allowed: {list(origins)})"
            raise ForbiddenOrigin(
                f"Origin {origin!r} is not allowed{listed}; a page from another site must not "
                f"use your session (cross-site WebSocket hijacking)",
                header="Origin", value=origin, section="10.2",
            )
    return accept_key(key)


def response_101(
    request: Request,
    subprotocol: str | None = None,
    *,
    extensions: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
) -> bytes:
    """The ``101 Switching Protocols`` answer to a request that passed :func:`check_request`.

    ``subprotocol`` must be one the client offered; ``extensions`` is the
    ``Sec-WebSocket-Extensions`` value you accept (None: no extensions, so
    frames go uncompressed). Raises ``ValueError`` for a subprotocol the
    client did not offer, a key that is not ASCII or a header value with a
    control character (run :func:`check_request` first).
    """
    key = request.headers.get("Sec-WebSocket-Key") or ""
    if subprotocol is not None and subprotocol not in request.subprotocols:
        raise ValueError(
            f"subprotocol {subprotocol!r} was not offered by the client (offered: {request.subprotocols}); "
            f"a server may only pick one of those (section 4.2.2)"
        )
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(key)}",
    ]
    if subprotocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    if extensions:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    lines += [f"{n}: {v}" for n, v in headers]
    return _outgoing(lines)


def refusal(error: HandshakeError) -> bytes:
    """The HTTP response that refuses a handshake for ``error``: status line, headers, a short body.

    A 426 carries ``Sec-WebSocket-Version: 13`` (section 4.4); the body says
    what was wrong and where the RFC says so.
    """
    status = error.status or 400
    body = (
        f"Failed to open a WebSocket connection: {error.message}.\n"
        f"({error.where})\n"
    ).encode("utf-8")
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}"]
    if status == 426:
        lines += ["Upgrade: websocket", "Sec-WebSocket-Version: 13"]
    lines += [
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# Client side (section 4.1)


def build_request(
    url: str,
    *,
    key: str | None = None,
    subprotocols: Sequence[str] = (),
    extensions: Sequence[str] = (),
    origin: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
) -> bytes:
    """The bytes of a client's opening handshake for ``url`` (``ws://host:port/path``).

    ``key`` defaults to a fresh random one (:func:`new_key`); ``subprotocols``
    and ``extensions`` are offered in order; ``origin`` is what a browser
    sends for the page's site; ``headers`` are added as they are. Raises
    ``ValueError`` for a URL that is not ``ws://`` or a header that would
    break the head (a CR or LF in a value: RFC 9110 5.5).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "http") or not parts.hostname:
        raise ValueError(f"cannot build a handshake for {url!r}: give a URL like 'ws://127.0.0.1:8765/'")
    host = parts.netloc.rsplit("@", 1)[-1]
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if not _TARGET.fullmatch(path):
        raise ValueError(
            f"cannot send the path {path!r}: a request target is visible ASCII; percent-encode "
            f"the rest (urllib.parse.quote)"
        )
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key or new_key()}",
        "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    if subprotocols:
        lines.append(f"Sec-WebSocket-Protocol: {', '.join(subprotocols)}")
    if extensions:
        lines.append(f"Sec-WebSocket-Extensions: {', '.join(extensions)}")
    lines += [f"{n}: {v}" for n, v in headers]
    return _outgoing(lines)


def check_response(response: Response | bytes, request: Request | bytes) -> Response:
    """Check the server's answer against the request we sent; return the parsed response.

    Raises :class:`InvalidResponse` (section 4.1) when the response is
    malformed, the status is not 101, Upgrade or Connection are wrong,
    ``Sec-WebSocket-Accept`` does not match our key, or the server picked a
    subprotocol or extension we did not offer; :class:`BadRequest` when
    ``request`` itself cannot be checked against (incomplete, malformed, no
    ``Sec-WebSocket-Key`` or one that is not ASCII).
    """
    if isinstance(request, bytes):
        parsed_request = parse_request(request)
        if parsed_request is None:
            raise BadRequest("the request bytes are incomplete: they must end with b'\\r\\n\\r\\n'", section="4.1")
        request = parsed_request
    keys = request.headers.get_all("Sec-WebSocket-Key")
    if len(keys) != 1 or not keys[0].isascii():
        raise BadRequest(
            (f"the request has {len(keys)} Sec-WebSocket-Key headers" if len(keys) > 1
             else f"the request's Sec-WebSocket-Key {keys[0]!r} is not ASCII" if keys
             else "the request has no Sec-WebSocket-Key")
            + ", so no answer can be checked against it: send one key, base64.b64encode(os.urandom(16))",
            header="Sec-WebSocket-Key", value=", ".join(keys) or None, section="4.1",
        )
    if isinstance(response, bytes):
        parsed = parse_response(response)
        if parsed is None:
            raise InvalidResponse("the response is incomplete: read until b'\\r\\n\\r\\n'", section="4.1")
        response = parsed
    h = response.headers
    if response.status != 101:
        raise InvalidResponse(
            f"the server answered {response.status} {response.reason}, not 101 Switching Protocols; "
            f"read its body for why",
            value=str(response.status), section="4.1",
        )
    if "websocket" not in h.tokens("Upgrade"):
        raise InvalidResponse(f"the 101 has Upgrade {h.get('Upgrade')!r}, not websocket", header="Upgrade", value=h.get("Upgrade"), section="4.1")
    if "upgrade" not in h.tokens("Connection"):
        raise InvalidResponse(f"the 101 has Connection {h.get('Connection')!r}, without the Upgrade token", header="Connection", value=h.get("Connection"), section="4.1")
    expected = accept_key(keys[0])
    got = h.get("Sec-WebSocket-Accept")
    if got != expected:
        raise InvalidResponse(
            f"Sec-WebSocket-Accept is {got!r}, expected {expected!r} for our key: "
            f"the server did not compute base64(SHA-1(key + GUID))",
            header="Sec-WebSocket-Accept", value=got, section="4.1",
        )
    protocol = h.get("Sec-WebSocket-Protocol")
    if protocol is not None and protocol not in request.subprotocols:
        raise InvalidResponse(
            f"the server chose subprotocol {protocol!r}, which we did not offer ({request.subprotocols})",
            header="Sec-WebSocket-Protocol", value=protocol, section="4.1",
        )
    offered = {e.split(";")[0].strip().lower() for e in request.extensions}
    for ext in [e.split(";")[0].strip() for e in h.tokens("Sec-WebSocket-Extensions", lower=False)]:
        if ext.lower() not in offered:
            raise InvalidResponse(
                f"the server accepted extension {ext!r}, which we did not offer ({sorted(offered)})",
                header="Sec-WebSocket-Extensions", value=ext, section="4.1",
            )
    return response

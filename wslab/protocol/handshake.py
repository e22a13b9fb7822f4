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
with, the header concerned and the RFC section. Reading and writing the
HTTP heads themselves (and HTTP's own rules on them, RFC 9110 and 9112) is
in :mod:`wslab.protocol.http_head`; this module re-exports its public names.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Callable, Sequence
from urllib.parse import urlsplit

# The HTTP part (heads, their syntax, the errors) lives in http_head; re-exported here.
from . import http_head as _http_head
from .http_head import (  # noqa: F401 - MAX_HEAD and REASONS stay reachable here
    MAX_HEAD,
    REASONS,
    BadRequest,
    ForbiddenOrigin,
    HandshakeError,
    Headers,
    HeadersTooLarge,
    InvalidResponse,
    Request,
    Response,
    UpgradeRequired,
    _outgoing,
    _TARGET,
    parse_request,
    parse_response,
)

__all__ = [
    "GUID",
    "accept_key",
    "new_key",
    # http_head's public names, re-exported (MAX_HEAD and REASONS are reachable here, not starred)
    *(name for name in _http_head.__all__ if name not in ("MAX_HEAD", "REASONS")),
    "check_request",
    "response_101",
    "refusal",
    "build_request",
    "check_response",
]

#: "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", a GUID no other protocol uses (section 1.3).
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

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


# Server side (section 4.2)


def check_request(
    request: Request,
    origins: Sequence[str | None] | Callable[[str | None], bool] | None = None,
) -> str:
    """Check a client's opening handshake; return the ``Sec-WebSocket-Accept`` value.

    ``origins``: the pages allowed to connect (``"http://127.0.0.1:8888"``;
    include None to allow clients that send no Origin, like non-browser
    clients), or a function of the ``Origin`` value (None when absent) that
    says whether it may (``wslab.server.origins.origin_allowed``, the kit's policy).
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
    # 4.1: "If the response lacks an |Upgrade| header field or the |Upgrade| header field contains a value
    # that is not an ASCII case-insensitive match for the value "websocket", the client MUST _Fail the
    # WebSocket Connection_." Exactly that one token: `websocket, h2c` is not a match.
    upgrade = ", ".join(h.get_all("Upgrade")) or None
    if upgrade is None or upgrade.strip().lower() != "websocket":
        raise InvalidResponse(f"the 101 has Upgrade {upgrade!r}; RFC 6455 4.1 wants exactly 'websocket' "
                              f"(any case), nothing more", header="Upgrade", value=upgrade, section="4.1")
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

"""Cases of RFC 6455 section 4: the opening handshake, accepted and refused."""

from __future__ import annotations

import base64
import os

from websockets.utils import accept_key

from ..case import MUST, USUAL, Case, Outcome, Rule, Settings
from ..wire import Failed, Probe

__all__ = ["CASES"]

ACCEPT = Rule(
    MUST, "4.2.2",
    "If the server chooses to accept the incoming connection, it MUST reply with a valid HTTP "
    "response indicating the following. 1. A Status-Line with a 101 response code [...] "
    "2. An |Upgrade| header field with value \"websocket\" [...] 3. A |Connection| header field "
    "with value \"Upgrade\". 4. A |Sec-WebSocket-Accept| header field.",
)

BAD_REQUEST = Rule(
    MUST, "4.2.1",
    "If the server, while reading the handshake, finds that the client did not send a handshake "
    "that matches the description below [...], the server MUST stop processing the client's "
    "handshake and return an HTTP response with an appropriate error code (such as 400 Bad Request).",
)
SUCH_AS_400 = Rule(USUAL, "4.2.1", "an appropriate error code (such as 400 Bad Request)")

UNKNOWN_VERSION = Rule(
    MUST, "4.4",
    "If the server doesn't support the requested version, it MUST respond with a "
    "|Sec-WebSocket-Version| header field (or multiple |Sec-WebSocket-Version| header fields) "
    "containing all versions it is willing to use.",
)
SUCH_AS_426 = Rule(USUAL, "4.2.2", "an appropriate HTTP error code (such as 426 Upgrade Required)")

#: A version nobody speaks: RFC 6455 4.4's own example (IANA lists 0-13; 14-255 are unassigned).
UNKNOWN = "25"


async def _accepted(p: Probe, s: Settings, out: Outcome) -> str:
    await p.connect()
    key = base64.b64encode(os.urandom(16)).decode()
    status, reason, headers = await p.http(p.request(key=key))
    if status != 101:
        raise Failed(f"HTTP {status} {reason}; expected 101 Switching Protocols")
    upgrade = headers.get("upgrade")
    if upgrade is None or upgrade.strip().lower() != "websocket":
        raise Failed(f"the 101 response has Upgrade: {upgrade!r}; expected 'websocket'")
    connection = headers.get("connection")
    if connection is None or "upgrade" not in [t.strip().lower() for t in connection.split(",")]:
        raise Failed(f"the 101 response has Connection: {connection!r}; expected 'Upgrade'")
    expected = accept_key(key)
    if headers.get("sec-websocket-accept") != expected:
        raise Failed(
            f"Sec-WebSocket-Accept was {headers.get('sec-websocket-accept')!r} for key {key!r}; "
            f"expected {expected!r} (base64 of SHA-1 of key + GUID)"
        )
    return f"HTTP 101 {reason}, Upgrade: {upgrade}, Connection: {connection}, the right Sec-WebSocket-Accept"


async def _missing_key(p: Probe, s: Settings, out: Outcome) -> str:
    await p.connect()
    status, reason, _ = await p.http(p.request(key=None))
    if status == 101:
        raise Failed("HTTP 101: the server accepted a handshake without Sec-WebSocket-Key")
    if not 400 <= status < 500:
        raise Failed(f"HTTP {status} {reason}; expected an error code such as 400 Bad Request")
    if status != 400:
        out.note(SUCH_AS_400, f"HTTP {status} {reason}; the RFC's example is 400 Bad Request")
    return f"HTTP {status} {reason}"


async def _unknown_version(p: Probe, s: Settings, out: Outcome) -> str:
    await p.connect()
    key = base64.b64encode(os.urandom(16)).decode()
    status, reason, headers = await p.http(p.request(key=key, version=UNKNOWN))
    if status == 101:
        raise Failed(f"HTTP 101: the server accepted Sec-WebSocket-Version: {UNKNOWN}, a version nobody speaks")
    if not 400 <= status < 500:
        raise Failed(f"HTTP {status} {reason}; expected an error code such as 426 Upgrade Required")
    versions = headers.get("sec-websocket-version")
    if versions is None:
        raise Failed(f"HTTP {status} {reason} with no Sec-WebSocket-Version header naming the versions it speaks")
    if "13" not in [v.strip() for v in versions.split(",")]:
        raise Failed(f"HTTP {status} {reason} with Sec-WebSocket-Version: {versions}; it does not list 13")
    if status != 426:
        out.note(SUCH_AS_426, f"HTTP {status} {reason}; the RFC's example is 426 Upgrade Required")
    return f"HTTP {status} {reason}, Sec-WebSocket-Version: {versions}"


CASES = [
    Case("101 Switching Protocols", ACCEPT,
         "HTTP 101 with Upgrade: websocket, Connection: Upgrade and the right Sec-WebSocket-Accept",
         _accepted, opens=False),
    Case("handshake without Sec-WebSocket-Key", BAD_REQUEST,
         "an HTTP error response (400 Bad Request is usual), never 101", _missing_key, opens=False),
    Case(f"handshake with version {UNKNOWN} (unknown)", UNKNOWN_VERSION,
         "an HTTP error (426 is usual) with Sec-WebSocket-Version listing 13", _unknown_version, opens=False),
]

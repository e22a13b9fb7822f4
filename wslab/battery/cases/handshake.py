"""Cases of RFC 6455 section 4: the opening handshake, accepted and refused."""

from __future__ import annotations

import base64
import os

from websockets.utils import accept_key

from ...course.i18n import N_
from ..case import MUST, USUAL, Case, Outcome, Rule, Settings
from ..phrase import Phrase
from ..wire import Failed, Probe
from .framing import violated

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

#: 4.2.1's list of what the server reads: a GET, and a version header (item 6).
GET_AND_VERSION = Rule(
    MUST, "4.2.1",
    "If the server, while reading the handshake, finds that the client did not send a handshake "
    "that matches the description below [...], the server MUST stop processing the client's "
    "handshake and return an HTTP response with an appropriate error code (such as 400 Bad Request). "
    "[...] 1. An HTTP/1.1 or higher GET request [...] 6. A |Sec-WebSocket-Version| header field, "
    "with a value of 13.",
)
CHOSEN_SUBPROTOCOL = Rule(
    MUST, "4.2.2",
    "The value chosen MUST be derived from the client's handshake, specifically by selecting one of "
    "the values from the |Sec-WebSocket-Protocol| field that the server is willing to use for this "
    "connection (if any). If the client's handshake did not contain such a header field or if the "
    "server does not agree to any of the client's requested subprotocols, the only acceptable value "
    "is null.",
)
CHOSEN_EXTENSIONS = Rule(
    MUST, "4.2.2",
    "If the server supports multiple extensions, then the value MUST be derived from the client's "
    "handshake, specifically by selecting one or more of the values from the "
    "|Sec-WebSocket-Extensions| field.",
)

UNKNOWN_VERSION = Rule(
    MUST, "4.4",
    "If the server doesn't support the requested version, it MUST respond with a "
    "|Sec-WebSocket-Version| header field (or multiple |Sec-WebSocket-Version| header fields) "
    "containing all versions it is willing to use.",
)
SUCH_AS_426 = Rule(USUAL, "4.2.2", "an appropriate HTTP error code (such as 426 Upgrade Required)")

#: A version nobody speaks: RFC 6455 4.4's own example (IANA lists 0-13; 14-255 are unassigned).
UNKNOWN = "25"  # named in a case's name below


async def _accepted(p: Probe, s: Settings, out: Outcome) -> str:
    await p.connect()
    key = base64.b64encode(os.urandom(16)).decode()
    status, reason, headers = await p.http(p.request(key=key))
    if status != 101:
        raise Failed(Phrase(N_("HTTP {status} {reason}; expected 101 Switching Protocols"), status=status,
                            reason=reason))
    upgrade = headers.get("upgrade")
    if upgrade is None or upgrade.strip().lower() != "websocket":
        raise Failed(Phrase(N_("the 101 response has Upgrade: {value!r}; expected 'websocket'"), value=upgrade))
    connection = headers.get("connection")
    if connection is None or "upgrade" not in [t.strip().lower() for t in connection.split(",")]:
        raise Failed(Phrase(N_("the 101 response has Connection: {value!r}; expected 'Upgrade'"), value=connection))
    expected = accept_key(key)
    if headers.get("sec-websocket-accept") != expected:
        raise Failed(Phrase(
            N_("Sec-WebSocket-Accept was {got!r} for key {key!r}; expected {expected!r} (base64 of SHA-1 of key + GUID)"),
            got=headers.get("sec-websocket-accept"), key=key, expected=expected))
    return Phrase(N_("HTTP 101 {reason}, Upgrade: {upgrade}, Connection: {connection}, the right "
                     "Sec-WebSocket-Accept"), reason=reason, upgrade=upgrade, connection=connection)


def _bad_request(what: str, *, note_400: bool = False, **request: str | None):
    """A case whose handshake lacks one thing 4.2.1 requires: never 101, an HTTP error instead.

    With ``note_400``, another 4xx than 400 is remarked on (for a missing key,
    400 is the one answer; for POST, 405 is as good, for no version, 426).
    """

    async def run(p: Probe, s: Settings, out: Outcome) -> str:
        await p.connect()
        fields: dict[str, str | None] = {"key": base64.b64encode(os.urandom(16)).decode(), **request}
        status, reason, _ = await p.http(p.request(**fields))  # type: ignore[arg-type]
        if status == 101:
            raise Failed(Phrase(N_("HTTP 101: the server accepted {what}"), what=Phrase(what)))
        if not 400 <= status < 500:
            raise Failed(Phrase(N_("HTTP {status} {reason}; expected an error code such as 400 Bad Request"),
                                status=status, reason=reason))
        if status != 400 and note_400:
            out.note(SUCH_AS_400, Phrase(N_("HTTP {status} {reason}; the RFC's example is 400 Bad Request"),
                                         status=status, reason=reason))
        return Phrase(N_("HTTP {status} {reason}"), status=status, reason=reason)

    return run


async def _no_subprotocol(p: Probe, s: Settings, out: Outcome) -> str:
    violated(p, frozenset({"subprotocol"}))
    return Phrase(N_("the 101 names no subprotocol (the client offered none)"))


async def _no_extension(p: Probe, s: Settings, out: Outcome) -> str:
    violated(p, frozenset({"extension"}))
    return Phrase(N_("the 101 names no extension (the client offered none)"))


async def _unknown_version(p: Probe, s: Settings, out: Outcome) -> str:
    await p.connect()
    key = base64.b64encode(os.urandom(16)).decode()
    status, reason, headers = await p.http(p.request(key=key, version=UNKNOWN))
    if status == 101:
        raise Failed(Phrase(N_("HTTP 101: the server accepted Sec-WebSocket-Version: {version}, a version nobody "
                               "speaks"), version=UNKNOWN))
    if not 400 <= status < 500:
        raise Failed(Phrase(N_("HTTP {status} {reason}; expected an error code such as 426 Upgrade Required"),
                            status=status, reason=reason))
    versions = headers.get("sec-websocket-version")
    if versions is None:
        raise Failed(Phrase(N_("HTTP {status} {reason} with no Sec-WebSocket-Version header naming the versions it "
                               "speaks"), status=status, reason=reason))
    if "13" not in [v.strip() for v in versions.split(",")]:
        raise Failed(Phrase(N_("HTTP {status} {reason} with Sec-WebSocket-Version: {versions}; it does not list 13"),
                            status=status, reason=reason, versions=versions))
    if status != 426:
        out.note(SUCH_AS_426, Phrase(N_("HTTP {status} {reason}; the RFC's example is 426 Upgrade Required"),
                                     status=status, reason=reason))
    return Phrase(N_("HTTP {status} {reason}, Sec-WebSocket-Version: {versions}"), status=status, reason=reason,
                  versions=versions)


CASES = [
    Case(N_("101 Switching Protocols"), ACCEPT,
         N_("HTTP 101 with Upgrade: websocket, Connection: Upgrade and the right Sec-WebSocket-Accept"),
         _accepted, opens=False),
    Case(N_("handshake without Sec-WebSocket-Key"), BAD_REQUEST,
         N_("an HTTP error response (400 Bad Request is usual), never 101"),
         _bad_request(N_("a handshake without Sec-WebSocket-Key"), key=None, note_400=True), opens=False),
    Case(N_("handshake without Sec-WebSocket-Version"), GET_AND_VERSION,
         N_("an HTTP error response (400 Bad Request is usual), never 101"),
         _bad_request(N_("a handshake without Sec-WebSocket-Version"), version=None), opens=False),
    Case(N_("handshake with POST"), GET_AND_VERSION,
         N_("an HTTP error response (400 Bad Request is usual), never 101"),
         _bad_request(N_("a POST handshake (4.2.1: a GET request)"), method="POST"), opens=False),
    Case(N_("handshake with version 25 (unknown)"), UNKNOWN_VERSION,  # 25 is UNKNOWN, written out to be extracted
         N_("an HTTP error (426 is usual) with Sec-WebSocket-Version listing 13"), _unknown_version, opens=False),
    Case(N_("no subprotocol the client did not offer"), CHOSEN_SUBPROTOCOL,
         N_("no Sec-WebSocket-Protocol in any 101 (the battery never offers one)"), _no_subprotocol,
         watches=frozenset({"subprotocol"})),
    Case(N_("no extension the client did not offer"), CHOSEN_EXTENSIONS,
         N_("no Sec-WebSocket-Extensions in any 101 (the battery never offers one)"), _no_extension,
         watches=frozenset({"extension"})),
]

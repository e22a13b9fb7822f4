"""Cases of RFC 6455 section 5.5 and 7.4: ping, pong, close, close codes."""

from __future__ import annotations

import asyncio

from ..case import CLOSE_FRAME_FIRST, MUST, USUAL, Case, Outcome, Rule, Settings, refused
from ..craft import CLOSE, PING, close_payload, encode_frame, parse_close
from ..wire import Eof, Failed, Probe, ServerFrame
from .framing import PROTOCOL_ERROR, server_frames_case, violated

__all__ = ["CASES", "INVALID_CODES"]

CONTROL_SHORT = Rule(MUST, "5.5", "All control frames MUST have a payload length of 125 bytes or less and MUST NOT be fragmented.")
PONG_RULE = Rule(
    MUST, "5.5.2",
    "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in response, unless it already "
    "received a Close frame.",
)
ANSWER_CLOSE = Rule(
    MUST, "5.5.1",
    "If an endpoint receives a Close frame and did not previously send a Close frame, the endpoint "
    "MUST send a Close frame in response.",
)
ECHO_CODE = Rule(USUAL, "5.5.1", "(When sending a Close frame in response, the endpoint typically echos the status code it received.)")
CLOSE_TCP = Rule(MUST, "5.5.1", "The server MUST close the underlying TCP connection immediately")
RESERVED = {
    code: Rule(
        MUST, "7.4.1",
        f"{code} is a reserved value and MUST NOT be set as a status code in a Close control frame by an endpoint.",
    )
    for code in (1005, 1006, 1015)
}
BODY_CODE = Rule(
    MUST, "5.5.1",
    "If there is a body, the first two bytes of the body MUST be a 2-byte unsigned integer (in network "
    "byte order) representing a status code with value /code/ defined in Section 7.4.",
)
UNUSED_CODE = Rule(
    MUST, "5.5.1, 7.4.2",
    "the first two bytes of the body MUST be a 2-byte unsigned integer (in network byte order) "
    "representing a status code with value /code/ defined in Section 7.4. [7.4.2] Status codes in "
    "the range 0-999 are not used.",
)

NO_DATA_AFTER_CLOSE = Rule(MUST, "5.5.1", "The application MUST NOT send any more data frames after sending a Close frame.")
UNASSIGNED_CODE = Rule(
    USUAL, "7.4.2",
    "Status codes in the range 1000-2999 are reserved for definition by this protocol, its future "
    "revisions, and extensions specified in a permanent and readily available public specification.",
)
CLOSE_REASON = Rule(
    USUAL, "5.5.1",
    "Following the 2-byte integer, the body MAY contain UTF-8-encoded data with value /reason/, the "
    "interpretation of which is not defined by this specification.",
)

#: Codes no close frame may carry (7.4.1, 7.4.2).
INVALID_CODES = frozenset({1005, 1006, 1015}) | frozenset(range(1000))

PING_PAYLOAD = b"are you there?"


async def _ping_pong(p: Probe, s: Settings, out: Outcome) -> str:
    await p.send(encode_frame(PING, PING_PAYLOAD))
    others = await p.pong(PING_PAYLOAD, instead=lambda frame: f"got a {frame}; expected a pong {PING_PAYLOAD!r}")
    extra = f" (after {others} unsolicited pong(s))" if others else ""
    return f"pong {PING_PAYLOAD!r} came back{extra}"


async def _long_ping(p: Probe, s: Settings, out: Outcome) -> str:
    await p.send(encode_frame(PING, b"x" * 126))
    return await refused(p, s, out, code=1002, code_rule=PROTOCOL_ERROR)


async def _fragmented_ping(p: Probe, s: Settings, out: Outcome) -> str:
    await p.send(encode_frame(PING, b"frag", fin=False))
    return await refused(p, s, out, code=1002, code_rule=PROTOCOL_ERROR)


async def _server_frame(p: Probe) -> ServerFrame:
    try:
        return await p.next_answer()
    except Eof:
        raise Failed("the server closed TCP without answering with a close frame") from None


async def _server_close(p: Probe) -> ServerFrame:
    frame = await _server_frame(p)
    if frame.opcode != CLOSE:
        raise Failed(f"the server sent a {frame}; expected a close frame")
    return frame


async def _close_answered(p: Probe, s: Settings, out: Outcome) -> str:
    await p.send(encode_frame(CLOSE, close_payload(4000, "bye")))
    return f"{await _server_close(p)} came back"


async def _close_echoed(p: Probe, s: Settings, out: Outcome) -> str:
    await p.send(encode_frame(CLOSE, close_payload(4000, "bye")))
    frame = await _server_close(p)
    code, _ = parse_close(frame.payload)
    if code != 4000:
        raise Failed(f"close code {code} came back for the client's 4000")
    return f"{frame} came back"


async def _tcp_closed(p: Probe, s: Settings, out: Outcome) -> str:
    await p.send(encode_frame(CLOSE, close_payload(1000)))
    frame = await _server_close(p)
    try:
        await asyncio.wait_for(p.eof(), s.close_wait)
    except TimeoutError:
        raise Failed(
            f"the closing handshake was done ({frame}) but the server kept the TCP connection open "
            f"for {s.close_wait:g} s"
        ) from None
    return f"{frame}, then the server closed TCP"


async def _no_data_after_close(p: Probe, s: Settings, out: Outcome) -> str:
    await p.send(encode_frame(CLOSE, close_payload(1000)))
    await _server_close(p)
    try:
        await asyncio.wait_for(p.eof(), s.close_wait)
    except TimeoutError:
        pass  # TCP left open: the rule of "TCP closed after the closing handshake", not this one
    violated(p, WATCHED_AFTER_CLOSE)
    return "nothing but the echo came before the server's close frame, nothing after it"


WATCHED_AFTER_CLOSE = frozenset({"after-close"})


async def _close_answer(p: Probe, body: bytes, out: Outcome) -> ServerFrame | None:
    """Send a close frame with ``body``; the close frame that comes back, or None when TCP closed first."""
    await p.send(encode_frame(CLOSE, body))
    try:
        frame = await p.next_answer()
    except Eof:
        out.note(CLOSE_FRAME_FIRST, "the server closed TCP without a close frame")
        return None
    if frame.opcode != CLOSE:
        raise Failed(f"the server sent a {frame}; expected a close frame")
    return frame


def _arguable_close_case(name: str, body: bytes, rule: Rule, what: str) -> Case:
    """A close body the RFC does not plainly forbid a server to accept: failing with 1002 is usual, else a remark."""

    async def run(p: Probe, s: Settings, out: Outcome) -> str:
        frame = await _close_answer(p, body, out)
        if frame is None:
            return "the server closed TCP (no close frame)"
        if parse_close(frame.payload)[0] not in (1002, 1007):
            raise Failed(f"{frame} came back for {what}; failing the connection with 1002 is usual")
        return f"{frame}"

    return Case(name, rule, f"the server fails the connection on {what} (close 1002 is usual)", run)


def _bad_close_case(name: str, body: bytes, rule: Rule, what: str, kind: str) -> Case:
    """The client sends ``what``; the server must never send it (``kind``, watched on every connection)."""
    watches = frozenset({kind})

    async def run(p: Probe, s: Settings, out: Outcome) -> str:
        frame = await _close_answer(p, body, out)
        if frame is None:
            return "the server closed TCP (no close frame)"
        violated(p, watches)
        code, _ = parse_close(frame.payload)
        if code != 1002:
            out.note(PROTOCOL_ERROR, f"close code {code if code is not None else '(none)'}; "
                                     f"1002 (protocol error) is the usual answer to {what}")
        return f"{frame}"

    return Case(name, rule, f"the server never sends {what} (close 1002 is usual)", run, watches=watches)


CASES = [
    Case("ping -> pong", PONG_RULE, "a pong with the ping's payload", _ping_pong),
    Case("ping longer than 125 bytes", CONTROL_SHORT, "the server fails the connection (close 1002 is usual)", _long_ping),
    Case("fragmented ping", CONTROL_SHORT, "the server fails the connection (close 1002 is usual)", _fragmented_ping),
    server_frames_case("server control frames", CONTROL_SHORT,
                       "the server's pongs and closes are unfragmented and 125 bytes or less",
                       {"control-fragmented", "control-long"}, need_pong=True),
    Case("close with a code", ANSWER_CLOSE, "a close frame comes back", _close_answered),
    Case("close code echoed", ECHO_CODE, "close code 4000 comes back (typical, not required)", _close_echoed),
    Case("TCP closed after the closing handshake", CLOSE_TCP,
         "the server closes TCP once close frames were exchanged", _tcp_closed),
    Case("no data after the server's close", NO_DATA_AFTER_CLOSE,
         "no data frame follows the server's close frame", _no_data_after_close, watches=WATCHED_AFTER_CLOSE),
    _bad_close_case("close code 1005", close_payload(1005), RESERVED[1005], "code 1005", "close-1005"),
    _bad_close_case("close code 1006", close_payload(1006), RESERVED[1006], "code 1006", "close-1006"),
    _bad_close_case("close code 1015", close_payload(1015), RESERVED[1015], "code 1015", "close-1015"),
    _bad_close_case("close code 999", close_payload(999), UNUSED_CODE, "code 999", "close-unused"),
    _bad_close_case("1-byte close payload", b"\x03", BODY_CODE, "a 1-byte close body", "close-1-byte"),
    _arguable_close_case("close code 2999 (unassigned)", close_payload(2999), UNASSIGNED_CODE, "code 2999"),
    _arguable_close_case("close reason not UTF-8", close_payload(1000) + b"\xff\xfe", CLOSE_REASON,
                         "a reason that is not UTF-8"),
]

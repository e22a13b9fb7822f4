"""Cases of RFC 6455 section 5.5 and 7.4: ping, pong, close, close codes."""

from __future__ import annotations

import asyncio

from ...course.i18n import N_
from ..case import (CLOSE_FRAME_FIRST, MUST, NO_CLOSE_FRAME_SEEN, THEN_TCP_CLOSED, USUAL, Case, Outcome, Rule,
                    Settings, refused)
from ..phrase import Phrase
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
    others = await p.pong(PING_PAYLOAD, instead=lambda frame: Phrase(
        N_("got a {frame}; expected a pong {data!r}"), frame=frame, data=PING_PAYLOAD))
    if others:
        return Phrase(N_("pong {data!r} came back (after {others} unsolicited pong(s))"), data=PING_PAYLOAD,
                      others=others)
    return Phrase(N_("pong {data!r} came back"), data=PING_PAYLOAD)


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
        raise Failed(Phrase(N_("the server closed TCP without answering with a close frame"))) from None


async def _server_close(p: Probe) -> ServerFrame:
    frame = await _server_frame(p)
    if frame.opcode != CLOSE:
        raise Failed(Phrase(EXPECTED_CLOSE, frame=frame))
    return frame


async def _close_answered(p: Probe, s: Settings, out: Outcome) -> str:
    await p.send(encode_frame(CLOSE, close_payload(4000, "bye")))
    return Phrase(CAME_BACK, frame=await _server_close(p))


async def _close_echoed(p: Probe, s: Settings, out: Outcome) -> str:
    await p.send(encode_frame(CLOSE, close_payload(4000, "bye")))
    frame = await _server_close(p)
    code, _ = parse_close(frame.payload)
    if code != 4000:
        raise Failed(Phrase(N_("close code {code} came back for the client's 4000"), code=code))
    return Phrase(CAME_BACK, frame=frame)


async def _tcp_closed(p: Probe, s: Settings, out: Outcome) -> str:
    await p.send(encode_frame(CLOSE, close_payload(1000)))
    frame = await _server_close(p)
    try:
        await asyncio.wait_for(p.eof(), s.close_wait)
    except TimeoutError:
        raise Failed(Phrase(N_("the closing handshake was done ({frame}) but the server kept the TCP connection "
                               "open for {seconds:g} s"), frame=frame, seconds=s.close_wait)) from None
    return Phrase(THEN_TCP_CLOSED, frame=frame)


async def _no_data_after_close(p: Probe, s: Settings, out: Outcome) -> str:
    await p.send(encode_frame(CLOSE, close_payload(1000)))
    await _server_close(p)
    try:
        await asyncio.wait_for(p.eof(), s.close_wait)
    except TimeoutError:
        pass  # TCP left open: the rule of "TCP closed after the closing handshake", not this one
    violated(p, WATCHED_AFTER_CLOSE)
    return Phrase(N_("nothing but the echo came before the server's close frame, nothing after it"))


WATCHED_AFTER_CLOSE = frozenset({"after-close"})
EXPECTED_CLOSE = N_("the server sent a {frame}; expected a close frame")
CAME_BACK = N_("{frame} came back")


async def _close_answer(p: Probe, body: bytes, out: Outcome) -> ServerFrame | None:
    """Send a close frame with ``body``; the close frame that comes back, or None when TCP closed first."""
    await p.send(encode_frame(CLOSE, body))
    try:
        frame = await p.next_answer()
    except Eof:
        out.note(CLOSE_FRAME_FIRST, Phrase(N_("the server closed TCP without a close frame")))
        return None
    if frame.opcode != CLOSE:
        raise Failed(Phrase(EXPECTED_CLOSE, frame=frame))
    return frame


def _arguable_close_case(name: str, body: bytes, rule: Rule, what: str) -> Case:
    """A close body the RFC does not plainly forbid a server to accept: failing with 1002 is usual, else a remark."""

    async def run(p: Probe, s: Settings, out: Outcome) -> str:
        frame = await _close_answer(p, body, out)
        if frame is None:
            return Phrase(NO_CLOSE_FRAME_SEEN)
        if parse_close(frame.payload)[0] not in (1002, 1007):
            raise Failed(Phrase(N_("{frame} came back for {what}; failing the connection with 1002 is usual"),
                                frame=frame, what=Phrase(what)))
        return frame.phrase()

    expected = Phrase(N_("the server fails the connection on {what} (close 1002 is usual)"), what=Phrase(what))
    return Case(name, rule, expected, run)


def _bad_close_case(name: str, body: bytes, rule: Rule, what: str, kind: str) -> Case:
    """The client sends ``what``; the server must never send it (``kind``, watched on every connection)."""
    watches = frozenset({kind})

    async def run(p: Probe, s: Settings, out: Outcome) -> str:
        frame = await _close_answer(p, body, out)
        if frame is None:
            return Phrase(NO_CLOSE_FRAME_SEEN)
        violated(p, watches)
        code, _ = parse_close(frame.payload)
        if code is None:
            out.note(PROTOCOL_ERROR, Phrase(N_("close code (none); 1002 (protocol error) is the usual answer to "
                                               "{what}"), what=Phrase(what)))
        elif code != 1002:
            out.note(PROTOCOL_ERROR, Phrase(N_("close code {code}; 1002 (protocol error) is the usual answer to "
                                               "{what}"), code=code, what=Phrase(what)))
        return frame.phrase()

    expected = Phrase(N_("the server never sends {what} (close 1002 is usual)"), what=Phrase(what))
    return Case(name, rule, expected, run, watches=watches)


CASES = [
    Case(N_("ping -> pong"), PONG_RULE, N_("a pong with the ping's payload"), _ping_pong),
    Case(N_("ping longer than 125 bytes"), CONTROL_SHORT, N_("the server fails the connection (close 1002 is usual)"), _long_ping),
    Case(N_("fragmented ping"), CONTROL_SHORT, N_("the server fails the connection (close 1002 is usual)"), _fragmented_ping),
    server_frames_case(N_("server control frames"), CONTROL_SHORT,
                       N_("the server's pongs and closes are unfragmented and 125 bytes or less"),
                       {"control-fragmented", "control-long"}, need_pong=True),
    Case(N_("close with a code"), ANSWER_CLOSE, N_("a close frame comes back"), _close_answered),
    Case(N_("close code echoed"), ECHO_CODE, N_("close code 4000 comes back (typical, not required)"), _close_echoed),
    Case(N_("TCP closed after the closing handshake"), CLOSE_TCP,
         N_("the server closes TCP once close frames were exchanged"), _tcp_closed),
    Case(N_("no data after the server's close"), NO_DATA_AFTER_CLOSE,
         N_("no data frame follows the server's close frame"), _no_data_after_close, watches=WATCHED_AFTER_CLOSE),
    _bad_close_case(N_("close code 1005"), close_payload(1005), RESERVED[1005], N_("code 1005"), "close-1005"),
    _bad_close_case(N_("close code 1006"), close_payload(1006), RESERVED[1006], N_("code 1006"), "close-1006"),
    _bad_close_case(N_("close code 1015"), close_payload(1015), RESERVED[1015], N_("code 1015"), "close-1015"),
    _bad_close_case(N_("close code 999"), close_payload(999), UNUSED_CODE, N_("code 999"), "close-unused"),
    _bad_close_case(N_("1-byte close payload"), b"\x03", BODY_CODE, N_("a 1-byte close body"), "close-1-byte"),
    _arguable_close_case(N_("close code 2999 (unassigned)"), close_payload(2999), UNASSIGNED_CODE, N_("code 2999")),
    _arguable_close_case(N_("close reason not UTF-8"), close_payload(1000) + b"\xff\xfe", CLOSE_REASON,
                         N_("a reason that is not UTF-8")),
]

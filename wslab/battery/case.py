"""What a case is: a rule of RFC 6455 at its level, quoted, and the coroutine that checks it.

Three levels, as the RFC words them (RFC 2119):

* ``MUST`` (and MUST NOT): a server that breaks it fails the case, and the
  report lists the case in ``report.failed``;
* ``SHOULD``: a note, listed apart; the server still passes;
* ``usual``: what the RFC calls typical ("typically", "such as", a MAY
  code): a remark, never a failure.

A case checks one MUST (or, for a few, one lower-level rule) on a fresh
connection; on its way it may write notes of a lower level (a close frame
that SHOULD have come first, a close code that is usual but not required).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from ..course.i18n import N_
from ..course.i18n import gettext as _
from .craft import BINARY, CLOSE, OPCODE_NAMES, TEXT, close_payload, encode_frame, parse_close, short
from .phrase import Phrase, shown
from .wire import Closed, Eof, Failed, Probe

__all__ = [
    "MUST",
    "SHOULD",
    "USUAL",
    "LEVELS",
    "Rule",
    "Note",
    "Case",
    "Settings",
    "Outcome",
    "CLOSE_FRAME_FIRST",
    "UNSUPPORTED_DATA",
    "echo",
    "declined",
    "refused",
    "close_then_eof",
    "too_big",
    "CODE_1009",
    "NO_CLOSE_FRAME_SEEN",
    "THEN_TCP_CLOSED",
]

MUST, SHOULD, USUAL = "MUST", "SHOULD", "usual"
LEVELS = (MUST, SHOULD, USUAL)


@dataclass(frozen=True)
class Rule:
    """A requirement of RFC 6455: its level, its section, the RFC's exact words."""

    level: str
    section: str
    quote: str

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"level {self.level!r} is not one of {LEVELS}")


@dataclass(frozen=True)
class Note:
    """Something a server did that a lower-level rule (SHOULD, usual) would have it do otherwise."""

    rule: Rule
    text: str

    @property
    def level(self) -> str:
        return self.rule.level

    def __str__(self) -> str:
        return f"{self.rule.level} ({self.rule.section}): {self.text}"

    def shown(self) -> str:
        """The note in the learner's language (the level and section stay as the RFC writes them)."""
        return _("{level} ({section}): {text}").format(level=self.rule.level, section=self.rule.section,
                                                        text=shown(self.text))


@dataclass
class Outcome:
    """What a running case collects besides its verdict."""

    notes: list[Note] = field(default_factory=list)
    skipped: bool = False  # the case does not apply: max_size=None, or the server declines the data (1003)

    def note(self, rule: Rule, text: str) -> None:
        self.notes.append(Note(rule, text))


@dataclass(frozen=True)
class Settings:
    """What every case may need: the server's size limit and the time per case."""

    max_size: int | None
    timeout: float

    @property
    def close_wait(self) -> float:
        """How long a server may take to close TCP once it should, in seconds."""
        return max(self.timeout / 2, 0.2)


@dataclass(frozen=True)
class Case:
    """One named check: the rule, what passing looks like, and the coroutine that checks it."""

    name: str
    rule: Rule
    expected: str
    run: Callable[[Probe, Settings, Outcome], Awaitable[str]]
    opens: bool = True  # False: the case does its own handshake
    #: Kinds of violation (:data:`.watch.KINDS`) this case's rule covers: seen on any connection of the
    #: run, they fail this case (and no other).
    watches: frozenset[str] = frozenset()

    @property
    def level(self) -> str:
        return self.rule.level

    @property
    def section(self) -> str:
        return self.rule.section

    @property
    def quote(self) -> str:
        return self.rule.quote


# Rules that many cases share

#: 7.1.7: failing the connection, the server SHOULD send a close frame first.
CLOSE_FRAME_FIRST = Rule(
    SHOULD, "7.1.7",
    "If _The WebSocket Connection is Established_ prior to the point where the endpoint is required "
    "to _Fail the WebSocket Connection_, the endpoint SHOULD send a Close frame with an appropriate "
    "status code (Section 7.4) before proceeding to _Close the WebSocket Connection_.",
)

#: 7.4.1: a server that only understands text MAY refuse a binary message with 1003.
UNSUPPORTED_DATA = Rule(
    USUAL, "7.4.1",
    "1003 indicates that an endpoint is terminating the connection because it has received a type of "
    "data it cannot accept (e.g., an endpoint that understands only text data MAY send this if it "
    "receives a binary message).",
)

_CLOSE_TCP = "5.5.1: The server MUST close the underlying TCP connection immediately"


# Shared steps


async def echo(
    probe: Probe,
    opcode: int,
    payload: bytes,
    *frames: bytes,
    settings: Settings | None = None,
    out: Outcome | None = None,
) -> str:
    """Send one message (``frames``, or one frame of ``payload``); it must come back unchanged.

    With ``settings``, a message over ``settings.max_size`` must be refused instead (10.4).
    A server that refuses the message with close 1003 (7.4.1: it cannot
    accept that type of data) makes the case not applicable (``out.skipped``).
    """
    data = b"".join(frames) or encode_frame(opcode, payload)
    if settings is not None and settings.max_size is not None and len(payload) > settings.max_size:
        return await too_big(probe, settings, out or Outcome(), data, len(payload))
    await probe.send(data)
    try:
        got_opcode, got, parts, _ = await probe.message()
    except Closed as closed:
        if out is None or settings is None or parse_close(closed.frame.payload)[0] != 1003:
            raise
        return await declined(probe, settings, out, closed.frame, opcode)
    if got_opcode != opcode:
        raise Failed(Phrase(_CAME_BACK_FOR[opcode], got=OPCODE_NAMES.get(got_opcode, hex(got_opcode))))
    if got != payload:
        raise Failed(Phrase(N_("{got} came back; expected {sent}"), got=short(got), sent=short(payload)))
    text = short(payload.decode() if opcode == TEXT else payload)
    if parts > 1:
        return Phrase(_ECHOED_IN_PARTS[opcode], payload=text, parts=parts)
    return Phrase(_ECHOED[opcode], payload=text)


# {got} is an opcode's name as the RFC writes it (text, binary, close...), or its hex value.
_CAME_BACK_FOR = {TEXT: N_("a {got} message came back for a text one"),
                  BINARY: N_("a {got} message came back for a binary one")}
_ECHOED = {TEXT: N_("text message {payload} came back"), BINARY: N_("binary message {payload} came back")}
_ECHOED_IN_PARTS = {TEXT: N_("text message {payload} came back (in {parts} frames)"),
                    BINARY: N_("binary message {payload} came back (in {parts} frames)")}
_DECLINED = {
    TEXT: (N_("the server declined a text message with a {close} but kept the TCP connection open "
              "for {seconds:g} s ({rule})"),
           N_("not applicable: the server declined a text message with a {close} (RFC 6455 7.4.1: \"{quote}\")")),
    BINARY: (N_("the server declined a binary message with a {close} but kept the TCP connection open "
                "for {seconds:g} s ({rule})"),
             N_("not applicable: the server declined a binary message with a {close} (RFC 6455 7.4.1: \"{quote}\")")),
}
_NO_CLOSE_FRAME = N_("the server closed TCP without a close frame")


CODE_1009 = Rule(
    USUAL, "7.4.1",
    "1009 indicates that an endpoint is terminating the connection because it has received a message "
    "that is too big for it to process.",
)


async def too_big(p: Probe, s: Settings, out: Outcome, data: bytes, size: int) -> str:
    """``data`` holds a message of ``size`` bytes, over ``s.max_size``: the server must refuse it (10.4).

    Shared by :func:`echo` and the "oversized message" case (``cases/payload.py``).

    The battery reads while it writes and stops writing once the server
    answers, so a server that refuses from the header and hangs up is seen
    refusing, whatever the kernel does with the rest.
    """
    sent = await p.send_until_answered(data)
    try:
        frame = await p.next_answer()
    except Eof:
        out.note(CLOSE_FRAME_FIRST, Phrase(_NO_CLOSE_FRAME))
        return Phrase(N_("the server closed TCP after {sent:,} bytes (no close frame; {size:,} bytes > max_size "
                         "{max_size:,})"), sent=sent, size=size, max_size=s.max_size)
    if frame.opcode != CLOSE:
        raise Failed(Phrase(N_("the server accepted a message of {size:,} bytes > max_size {max_size:,}: it sent "
                               "a {frame}"), size=size, max_size=s.max_size, frame=frame))
    code, _ = parse_close(frame.payload)
    if code != 1009:
        out.note(CODE_1009, Phrase(N_("close code {code}; 1009 (message too big) is the usual one"), code=code))
    if not await close_then_eof(p, s):
        raise Failed(Phrase(N_("the server sent a {frame} but kept the TCP connection open for {seconds:g} s"),
                            frame=frame, seconds=s.close_wait))
    return Phrase(N_("{frame} after {sent:,} of {total:,} bytes ({size:,} bytes > max_size {max_size:,}), then the "
                     "server closed TCP"), frame=frame, sent=sent, total=len(data), size=size, max_size=s.max_size)


async def declined(probe: Probe, settings: Settings, out: Outcome, close: object, opcode: int) -> str:
    """The server refused a text or binary message (``opcode``) with close 1003: the case does not apply.

    The closing handshake must still end with TCP closed (5.5.1). The RFC's
    words stay as the RFC writes them (a quote).
    """
    out.skipped = True
    kept_open, not_applicable = _DECLINED[opcode]
    if not await close_then_eof(probe, settings):
        raise Failed(Phrase(kept_open, close=close, seconds=settings.close_wait, rule=_CLOSE_TCP))
    return Phrase(not_applicable, close=close, quote=UNSUPPORTED_DATA.quote[:-1])


async def close_then_eof(probe: Probe, settings: Settings) -> bool:
    """Answer the server's close frame (a polite client), then wait for TCP to close.

    True when the server closed TCP within ``settings.close_wait`` seconds.
    """
    if not probe.mid_frame:
        await probe.send(encode_frame(CLOSE, close_payload(1000)))
    else:
        probe.shutdown_write()  # a frame is half written: no close frame can follow it
    try:
        await asyncio.wait_for(probe.eof(), settings.close_wait)
    except TimeoutError:
        return False
    return True


async def refused(
    probe: Probe,
    settings: Settings,
    out: Outcome,
    *,
    code: int | tuple[int, ...],
    code_rule: Rule,
    follow_up: bool = True,
) -> str:
    """The server must fail the connection: echo nothing more, close TCP.

    A close frame SHOULD come first (7.1.7); its code is usually ``code``
    (``code_rule`` says where the RFC names it). With ``follow_up`` a valid
    text message follows the bad frame, so a server that carries on is
    caught at once: its echo comes back.
    """
    if follow_up:
        await probe.send(encode_frame(TEXT, b"still there?"))
    codes = (code,) if isinstance(code, int) else code
    close = None
    while close is None:
        try:
            frame = await probe.next_answer()
        except Eof:
            out.note(CLOSE_FRAME_FIRST, Phrase(_NO_CLOSE_FRAME))
            return Phrase(NO_CLOSE_FRAME_SEEN)
        if frame.opcode != CLOSE:
            raise Failed(Phrase(N_("the server carried on: it sent a {frame} instead of failing the connection"),
                                frame=frame))
        close = frame
    got, reason = parse_close(close.payload)
    if got not in codes:
        if got is None:
            out.note(code_rule, Phrase(N_("close code (none); {usual} is the usual one here"), usual=codes[0]))
        else:
            out.note(code_rule, Phrase(N_("close code {code}; {usual} is the usual one here"), code=got,
                                       usual=codes[0]))
    if not await close_then_eof(probe, settings):
        raise Failed(Phrase(N_("the server sent a {frame} but kept the TCP connection open for {seconds:g} s "
                               "({rule})"), frame=close, seconds=settings.close_wait, rule=_CLOSE_TCP))
    return Phrase(THEN_TCP_CLOSED, frame=close)


#: What a case says when the server failed the connection by closing TCP alone.
NO_CLOSE_FRAME_SEEN = N_("the server closed TCP (no close frame)")
THEN_TCP_CLOSED = N_("{frame}, then the server closed TCP")

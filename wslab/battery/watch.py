"""What every frame and every 101 a server sends must be: rules the battery watches on every connection.

Design note
-----------
A server breaks a rule about its own frames wherever it happens: a masked
frame may be only its close frame, a 1005 may come only when it answers a
valid close, a data frame may follow only the close it sends on an error.
So the battery does not look for those breaks in one case alone: every
connection of the run has a :class:`Watch`, fed with each frame the
:class:`~wslab.battery.wire.Probe` decodes (whatever its flaws) and with the
headers of each 101. Each break becomes a violation ``(kind, text)``; the
case whose rule it is names the kind in ``Case.watches`` and fails for it,
whichever connection it was seen on (:func:`wslab.battery.runner.check_server`
gathers them). Every other case stays silent about it: a mutant fails the
case that names its rule, and no other.

Memory is bounded: at most :data:`KEPT` violations per connection (the
first one is reported, with the count), and a text message's UTF-8 is
checked incrementally, never kept.
"""

from __future__ import annotations

import codecs
from typing import Any

from ..course.i18n import N_
from .phrase import Phrase

__all__ = ["KINDS", "KEPT", "Watch"]

#: Every kind of violation, and what it means (the case that watches it names the rule).
KINDS = {
    "masked": "a masked frame (5.1)",
    "length": "a length not in its minimal form, or a 64-bit length with its top bit set (5.2)",
    "rsv": "reserved bits set with no extension negotiated (5.2)",
    "control-fragmented": "a control frame without FIN (5.5)",
    "control-long": "a control frame over 125 bytes (5.5)",
    "close-1005": "a close frame with code 1005 (7.4.1)",
    "close-1006": "a close frame with code 1006 (7.4.1)",
    "close-1015": "a close frame with code 1015 (7.4.1)",
    "close-unused": "a close frame with a code under 1000 (7.4.2)",
    "close-1-byte": "a close frame whose body is 1 byte (5.5.1)",
    "after-close": "a data frame after the server's own close frame (5.5.1)",
    "text-utf8": "a text message that is not valid UTF-8 (5.6)",
    "subprotocol": "a Sec-WebSocket-Protocol the client did not offer (4.2.2)",
    "extension": "a Sec-WebSocket-Extensions the client did not offer (4.2.2)",
}

#: Violations kept per connection: the first is what a report shows.
KEPT = 64

_CLOSE, _CONT, _TEXT, _BINARY = 0x8, 0x0, 0x1, 0x2
_A_FRAME = N_("a {frame}")
_LENGTH_64_TOP = 2**63


class Watch:
    """The rules on one connection's server frames and 101; ``violations`` lists the breaks."""

    def __init__(self) -> None:
        self.violations: list[tuple[str, Phrase]] = []
        #: Kinds not recorded on this connection: a case that sends invalid UTF-8 on purpose leaves the
        #: server's echo of it to the case that checks the refusal (8.1), so one break fails one case.
        self.excused: set[str] = set()
        self.sent_close = False  # the server sent a close frame: no data frame may follow
        self._text: Any = None  # the incremental UTF-8 decoder of the text message being received
        self._text_what: Any = ""

    def note(self, kind: str, text: Phrase) -> None:
        assert kind in KINDS, kind
        if len(self.violations) < KEPT and kind not in self.excused:
            self.violations.append((kind, text))

    def response(self, headers: dict[str, str]) -> None:
        """The headers (lowercase names) of a 101 to a request that offered no subprotocol or extension."""
        if "sec-websocket-protocol" in headers:
            self.note("subprotocol", Phrase(N_("a 101 with Sec-WebSocket-Protocol: {value!r} though the client "
                                               "offered none"), value=headers["sec-websocket-protocol"]))
        extensions = headers.get("sec-websocket-extensions", "").strip(" ,")
        if extensions:
            self.note("extension", Phrase(N_("a 101 with Sec-WebSocket-Extensions: {value!r} though the client "
                                             "offered none"), value=extensions))

    def frame(self, frame: Any, length: int) -> None:
        """One decoded server frame (a :class:`~wslab.battery.wire.ServerFrame`) of ``length`` bytes."""
        if frame.masked:
            self.note("masked", Phrase(N_("a masked {frame}"), frame=frame))
        if not frame.minimal:
            self.note("length", Phrase(N_("{frame} with its {length:,}-byte length in the {form} form"), frame=frame,
                                       length=length, form=frame.length_form))
        if frame.rsv:
            self.note("rsv", Phrase(N_("{frame} with reserved bits 0b{rsv:03b}"), frame=frame, rsv=frame.rsv))
        if frame.control and not frame.fin:
            self.note("control-fragmented", Phrase(N_("{frame}: a control frame without FIN"), frame=frame))
        if frame.control and length > 125:
            self.note("control-long", Phrase(N_("{frame} of {length} bytes"), frame=frame, length=length))
        if frame.opcode == _CLOSE:
            self._close(frame)
        elif frame.opcode in (_CONT, _TEXT, _BINARY):
            if self.sent_close:
                self.note("after-close", Phrase(N_("a {frame} after the server's own close frame"), frame=frame))
            self._utf8(frame)

    def _close(self, frame: Any) -> None:
        body = frame.payload
        if len(body) == 1:
            self.note("close-1-byte", Phrase(N_("a close frame with the 1-byte body {body!r}"), body=body))
        elif len(body) >= 2:
            code = int.from_bytes(body[:2], "big")
            if code in (1005, 1006, 1015):
                self.note(f"close-{code}", Phrase(_A_FRAME, frame=frame))
            elif code < 1000:
                self.note("close-unused", Phrase(_A_FRAME, frame=frame))
        self.sent_close = True

    def _utf8(self, frame: Any) -> None:
        if frame.opcode == _TEXT:
            self._text = codecs.getincrementaldecoder("utf-8")()
            self._text_what = frame.phrase()
        elif frame.opcode == _BINARY:
            self._text = None
        if self._text is None:
            return
        if len(frame.payload) < frame.length:  # only its start was kept: no verdict on the rest
            self._text = None
            return
        try:
            self._text.decode(frame.payload, final=frame.fin)
        except UnicodeDecodeError as exc:
            self.note("text-utf8", Phrase(N_("a text message that is not UTF-8 ({reason}; it began with the "
                                             "{frame})"), reason=exc.reason, frame=self._text_what))
            self._text = None
            return
        if frame.fin:
            self._text = None

"""Cases of RFC 6455 sections 5.6, 8.1 and 10.4: what a message may hold, and how much."""

from __future__ import annotations

from ...course.i18n import N_
from ..case import MUST, USUAL, Case, Outcome, Rule, Settings, echo, refused, too_big
from ..phrase import Phrase
from ..craft import CONT, TEXT, encode_frame
from ..wire import Probe
from .framing import violated

__all__ = ["CASES", "TOO_BIG_RULE", "too_big"]

SPLIT_UTF8 = Rule(
    MUST, "5.6",
    "Note that a particular text frame might include a partial UTF-8 sequence; however, the whole "
    "message MUST contain valid UTF-8.",
)
INVALID_UTF8 = Rule(
    MUST, "8.1",
    "When an endpoint is to interpret a byte stream as UTF-8 but finds that the byte stream is not, "
    "in fact, a valid UTF-8 stream, that endpoint MUST _Fail the WebSocket Connection_.",
)
SERVER_UTF8 = Rule(
    MUST, "5.6",
    "Note that a particular text frame might include a partial UTF-8 sequence; however, the whole "
    "message MUST contain valid UTF-8.",
)
CODE_1007 = Rule(
    USUAL, "7.4.1",
    "1007 indicates that an endpoint is terminating the connection because it has received data "
    "within a message that was not consistent with the type of the message (e.g., non-UTF-8 [RFC3629] "
    "data within a text message).",
)
TOO_BIG_RULE = Rule(
    MUST, "10.4",
    "Implementations that have implementation- and/or platform-specific limitations regarding the "
    "frame size or total message size after reassembly from multiple frames MUST protect themselves "
    "against exceeding those limits.",
)
async def _split_utf8(p: Probe, s: Settings, out: Outcome) -> str:
    text = "€uro ✓".encode()  # € is e2 82 ac: the first frame ends inside it
    return await echo(p, TEXT, text, encode_frame(TEXT, text[:2], fin=False), encode_frame(CONT, text[2:]),
                      settings=s, out=out)


def _invalid_utf8(*frames: bytes):
    """Send ``frames`` in one write; the server must fail the connection (a follow-up only for one frame:
    after a fragment, a new message would be a second break of its own)."""

    async def run(p: Probe, s: Settings, out: Outcome) -> str:
        p.watch.excused.add("text-utf8")  # an echo of this is this case's failure, not "server text is valid UTF-8"
        await p.send(*frames)
        return await refused(p, s, out, code=1007, code_rule=CODE_1007, follow_up=len(frames) == 1)

    return run


#: Text the server's replies must hold as valid UTF-8: 'café' is also Latin-1, where é is one byte (e9).
SERVER_TEXTS = ["café", "naïve €5 ✓", "日本語 🎉"]
WATCHED_UTF8 = frozenset({"text-utf8"})


async def _server_utf8(p: Probe, s: Settings, out: Outcome) -> str:
    for text in SERVER_TEXTS:
        await p.send(encode_frame(TEXT, text.encode()))
        await p.message()
    violated(p, WATCHED_UTF8)
    return Phrase(N_("the replies to {count} text messages ({texts}) are valid UTF-8"), count=len(SERVER_TEXTS),
                  texts=", ".join(map(repr, SERVER_TEXTS)))


async def _oversized(p: Probe, s: Settings, out: Outcome) -> str:
    if s.max_size is None:
        out.skipped = True
        return Phrase(N_("skipped (max_size=None)"))
    size = s.max_size + 1  # text (NUL characters), so a server that takes only text is judged too
    return await too_big(p, s, out, encode_frame(TEXT, bytes(size)), size)


CASES = [
    Case(N_("valid UTF-8 split across fragments"), SPLIT_UTF8,
         N_("'€uro ✓' sent as e2 82 | ac ... comes back whole"), _split_utf8),
    Case(N_("server text is valid UTF-8"), SERVER_UTF8,
         N_("every text message the server sends is valid UTF-8"), _server_utf8, watches=WATCHED_UTF8),
    Case(N_("invalid UTF-8 in a text message"), INVALID_UTF8,
         N_("the server fails the connection (close 1007 is usual)"), _invalid_utf8(encode_frame(TEXT, b"caf\xc3"))),
    Case(N_("invalid UTF-8 split across fragments"), INVALID_UTF8,
         N_("'caf' + c3 | '(' in two frames: the server fails the connection (close 1007 is usual)"),
         _invalid_utf8(encode_frame(TEXT, b"caf\xc3", fin=False), encode_frame(CONT, b"("))),
    Case(N_("UTF-8-encoded surrogate"), INVALID_UTF8,
         N_("ed a0 80 (U+D800, a surrogate): the server fails the connection (close 1007 is usual)"),
         _invalid_utf8(encode_frame(TEXT, b"a\xed\xa0\x80z"))),
    Case(N_("overlong UTF-8"), INVALID_UTF8,
         N_("c0 af (an overlong '/'): the server fails the connection (close 1007 is usual)"),
         _invalid_utf8(encode_frame(TEXT, b"a\xc0\xafz"))),
    Case(N_("oversized message"), TOO_BIG_RULE,
         N_("max_size + 1 bytes are refused (close 1009 is usual)"), _oversized),
]

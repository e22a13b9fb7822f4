"""Cases of RFC 6455 sections 5.1-5.4 and 6.2: frames, masking, reserved bits, fragments."""

from __future__ import annotations

import asyncio
import struct

from ...course.i18n import N_
from ..case import MUST, USUAL, Case, Outcome, Rule, Settings, echo, refused
from ..phrase import Phrase
from ..craft import BINARY, CLOSE, CONT, PING, TEXT, close_payload, encode_frame
from ..wire import Eof, Failed, Probe

__all__ = ["CASES", "PROTOCOL_ERROR", "server_frames_case", "violated"]

PARSED = Rule(MUST, "6.2", "Incoming data MUST be parsed as WebSocket frames as defined in Section 5.2.")
UNMASKING = Rule(
    MUST, "6.2",
    "A server MUST remove masking for data frames received from a client as described in Section 5.3.",
)
BOTH_KINDS = Rule(MUST, "5.4", "Clients and servers MUST support receiving both fragmented and unfragmented messages.")
CONTROL_INSIDE = Rule(MUST, "5.4", "An endpoint MUST be capable of handling control frames in the middle of a fragmented message.")
NOT_INTERLEAVED = Rule(
    MUST, "5.4",
    "The fragments of one message MUST NOT be interleaved between the fragments of another message "
    "unless an extension has been negotiated that can interpret the interleaving.",
)
FIRST_FRAGMENT = Rule(
    MUST, "5.4",
    "Since control frames cannot be fragmented, the type for all fragments in a message MUST be "
    "either text, binary, or one of the reserved opcodes.",
)
CLIENT_MASKS = Rule(MUST, "5.1", "The server MUST close the connection upon receiving a frame that is not masked.")
MAY_1002 = Rule(USUAL, "5.1", "In this case, a server MAY send a Close frame with a status code of 1002 (protocol error)")
UNKNOWN_OPCODE = Rule(
    MUST, "5.2", "If an unknown opcode is received, the receiving endpoint MUST _Fail the WebSocket Connection_."
)
RSV_ZERO = Rule(
    MUST, "5.2",
    "MUST be 0 unless an extension is negotiated that defines meanings for non-zero values. If a "
    "nonzero value is received and none of the negotiated extensions defines the meaning of such a "
    "nonzero value, the receiving endpoint MUST _Fail the WebSocket Connection_.",
)
LENGTH_TOP_BIT = Rule(
    MUST, "5.2",
    "If 127, the following 8 bytes interpreted as a 64-bit unsigned integer (the most significant bit "
    "MUST be 0) are the payload length.",
)
#: 7.4.1: the code for a protocol error (usual, never required: "Endpoints MAY use").
PROTOCOL_ERROR = Rule(USUAL, "7.4.1", "1002 indicates that an endpoint is terminating the connection due to a protocol error.")

SERVER_UNMASKED = Rule(MUST, "5.1", "A server MUST NOT mask any frames that it sends to the client.")
SERVER_MINIMAL = Rule(
    MUST, "5.2",
    "Note that in all cases, the minimal number of bytes MUST be used to encode the length, for "
    "example, the length of a 124-byte-long string can't be encoded as the sequence 126, 0, 124.",
)
SERVER_RSV = Rule(MUST, "5.2", "RSV1, RSV2, RSV3: 1 bit each MUST be 0 unless an extension is negotiated that defines meanings for non-zero values.")


async def _text_echo(p: Probe, s: Settings, out: Outcome) -> str:
    return await echo(p, TEXT, "Hello, WebSocket ✓".encode(), settings=s, out=out)


async def _binary_echo(p: Probe, s: Settings, out: Outcome) -> str:
    return await echo(p, BINARY, bytes(range(100)), settings=s, out=out)


async def _length_16(p: Probe, s: Settings, out: Outcome) -> str:
    return await echo(p, BINARY, bytes(range(200)), settings=s, out=out)


async def _length_64(p: Probe, s: Settings, out: Outcome) -> str:
    # Over max_size (say 65,536), this message must be refused instead: 10.4.
    return await echo(p, BINARY, bytes(i % 251 for i in range(70_000)), settings=s, out=out)


async def _two_in_one_write(p: Probe, s: Settings, out: Outcome) -> str:
    await p.send(encode_frame(TEXT, b"first"), encode_frame(TEXT, b"second"))
    replies = [(await p.message())[1] for _ in range(2)]
    if replies != [b"first", b"second"]:
        raise Failed(Phrase(N_("{replies!r} came back; expected [b'first', b'second']"), replies=replies))
    return Phrase(N_("both messages came back, in order"))


async def _fragmented(p: Probe, s: Settings, out: Outcome) -> str:
    return await echo(
        p, TEXT, b"fragmented",
        encode_frame(TEXT, b"frag", fin=False), encode_frame(CONT, b"ment", fin=False), encode_frame(CONT, b"ed"),
        settings=s, out=out,
    )


async def _ping_inside_fragments(p: Probe, s: Settings, out: Outcome) -> str:
    await p.send(
        encode_frame(TEXT, b"Hel", fin=False),
        encode_frame(PING, b"mid-message"),
        encode_frame(CONT, b"lo", fin=True),
    )
    opcode, got, _, pongs = await p.message()
    if (opcode, got) != (TEXT, b"Hello"):
        raise Failed(Phrase(N_("a message {got!r} came back; expected text 'Hello'"), got=got))
    if b"mid-message" not in pongs:  # the pong may trail the echo
        await p.pong(b"mid-message", instead=lambda frame: Phrase(
            N_("'Hello' came back but then a {frame}, and no pong b'mid-message'"), frame=frame))
    return Phrase(N_("text 'Hello' and pong b'mid-message' came back"))


async def _orphan_continuation(p: Probe, s: Settings, out: Outcome) -> str:
    await p.send(encode_frame(CONT, b"orphan"))
    return await refused(p, s, out, code=1002, code_rule=PROTOCOL_ERROR)


async def _interleaved(p: Probe, s: Settings, out: Outcome) -> str:
    await p.send(encode_frame(TEXT, b"one", fin=False), encode_frame(TEXT, b"two"))
    return await refused(p, s, out, code=1002, code_rule=PROTOCOL_ERROR, follow_up=False)


async def _unmasked(p: Probe, s: Settings, out: Outcome) -> str:
    await p.send(encode_frame(TEXT, b"unmasked", mask=False))
    return await refused(p, s, out, code=1002, code_rule=MAY_1002)


async def _reserved_opcode(p: Probe, s: Settings, out: Outcome) -> str:
    await p.send(encode_frame(0x3, b"?"))
    return await refused(p, s, out, code=1002, code_rule=PROTOCOL_ERROR)


async def _rsv_bits(p: Probe, s: Settings, out: Outcome) -> str:
    await p.send(encode_frame(TEXT, b"reserved bits", rsv=0b100))  # RSV1; no extension was offered
    return await refused(p, s, out, code=1002, code_rule=PROTOCOL_ERROR)


async def _length_top_bit(p: Probe, s: Settings, out: Outcome) -> str:
    # 127, then 8 bytes with the top bit set: 2**63 + 5. A server that drops the top bit reads 5 bytes.
    payload, key = b"hello", b"\x01\x02\x03\x04"
    head = struct.pack("!BBQ", 0x80 | TEXT, 0x80 | 127, 2**63 + len(payload))
    await p.send(head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload)))
    # 1009 is as fitting: read as it is, the length is far over any limit.
    return await refused(p, s, out, code=(1002, 1009), code_rule=PROTOCOL_ERROR)


def violated(p: Probe, kinds: frozenset[str]) -> None:
    """Fail with the first violation of ``kinds`` seen on this connection (:mod:`..watch`)."""
    bad = [text for kind, text in p.violations if kind in kinds]
    if bad:
        if len(bad) > 1:
            raise Failed(Phrase(N_("the server sent {what} (and {more} more)"), what=bad[0], more=len(bad) - 1))
        raise Failed(Phrase(N_("the server sent {what}"), what=bad[0]))


def server_frames_case(name: str, rule: Rule, expected: str, kinds: set[str], *, need_pong: bool = False) -> Case:
    """A case that talks a little, then looks at every frame the server sent for the rule ``kinds``.

    Text messages of every length form (up to ``max_size``; text, so a
    server that declines binary with 1003 is judged too; what comes back
    is not compared: the echo cases do that), then a 125-byte ping and a
    last message: the pong is looked at if it comes, and waited for only
    with ``need_pong`` (5.5.2 has a case of its own). Then a close, so the
    server's close frame is looked at too. The case also watches every
    other connection of the run for ``kinds`` (``Case.watches``).
    """
    watched = frozenset(kinds)

    async def run(p: Probe, s: Settings, out: Outcome) -> str:
        sizes = [0, 5, 125, 126, 200, 65535, 65536]
        sizes = [n for n in sizes if s.max_size is None or n <= s.max_size]
        for n in sizes:
            await p.send(encode_frame(TEXT, (b"0123456789" * (n // 10 + 1))[:n]))
            await p.message()
        ping = b"p" * 125
        await p.send(encode_frame(PING, ping), encode_frame(TEXT, b"last"))
        _, _, _, pongs = await p.message()
        ponged = ping in pongs
        if need_pong and not ponged:
            await p.pong(ping, instead=lambda frame: Phrase(N_("a {frame} came instead of the pong"), frame=frame))
            ponged = True
        closed = await _close_seen(p, s)
        violated(p, watched)
        template = _WELL_FORMED[ponged, closed]
        return Phrase(template, frames=p.frames_seen, messages=len(sizes) + 1, largest=max(sizes))

    return Case(name, rule, expected, run, watches=watched)


_WELL_FORMED = {  # (a pong came, the server's close frame came): what the case saw
    (False, False): N_("{frames} frames (echoes of {messages} messages up to {largest:,} bytes), all well formed"),
    (True, False): N_("{frames} frames (echoes of {messages} messages up to {largest:,} bytes, a pong), "
                      "all well formed"),
    (False, True): N_("{frames} frames (echoes of {messages} messages up to {largest:,} bytes, its close frame), "
                      "all well formed"),
    (True, True): N_("{frames} frames (echoes of {messages} messages up to {largest:,} bytes, a pong, its close "
                     "frame), all well formed"),
}


async def _close_seen(p: Probe, s: Settings) -> bool:
    """Send a close and read what comes back within ``s.close_wait``: True when it holds the server's close frame."""
    await p.send(encode_frame(CLOSE, close_payload(1000)))
    try:
        async with asyncio.timeout(s.close_wait):
            while True:
                frame = await p.next_answer()
                if frame.opcode == CLOSE:
                    return True
    except (TimeoutError, Eof):
        return False


CASES = [
    Case(N_("text echo"), UNMASKING, N_("a text message comes back unchanged"), _text_echo),
    Case(N_("binary echo"), PARSED, N_("a binary message comes back unchanged"), _binary_echo),
    Case(N_("200 bytes (16-bit length)"), PARSED, N_("200 bytes come back (a 16-bit length)"), _length_16),
    Case(N_("70,000 bytes (64-bit length)"), PARSED,
         N_("70,000 bytes come back (a 64-bit length); over max_size, a refusal"), _length_64),
    Case(N_("two frames in one write"), PARSED, N_("two messages sent in one TCP write both come back"), _two_in_one_write),
    Case(N_("fragmented message"), BOTH_KINDS, N_("'frag'+'ment'+'ed' comes back as one message 'fragmented'"), _fragmented),
    Case(N_("ping inside a fragmented message"), CONTROL_INSIDE,
         N_("a pong comes back, and the message is still reassembled"), _ping_inside_fragments),
    Case(N_("continuation frame with no message"), FIRST_FRAGMENT,
         N_("the server fails the connection (close 1002 is usual)"), _orphan_continuation),
    Case(N_("new message inside a fragmented one"), NOT_INTERLEAVED,
         N_("the server fails the connection (close 1002 is usual)"), _interleaved),
    Case(N_("unmasked client frame"), CLIENT_MASKS, N_("the server closes the connection (close 1002 is usual)"), _unmasked),
    Case(N_("reserved opcode 0x3"), UNKNOWN_OPCODE, N_("the server fails the connection (close 1002 is usual)"), _reserved_opcode),
    Case(N_("64-bit length with the top bit set"), LENGTH_TOP_BIT,
         N_("the server fails the connection (close 1002 is usual)"), _length_top_bit),
    Case(N_("RSV1 set with no extension"), RSV_ZERO, N_("the server fails the connection (close 1002 is usual)"), _rsv_bits),
    server_frames_case(N_("server frames unmasked"), SERVER_UNMASKED, N_("no frame from the server is masked"), {"masked"}),
    server_frames_case(N_("server lengths minimal"), SERVER_MINIMAL,
                       N_("every length the server sends uses the shortest form"), {"length"}),
    server_frames_case(N_("server frames without RSV bits"), SERVER_RSV,
                       N_("the server sets no reserved bit (no extension was negotiated)"), {"rsv"}),
]

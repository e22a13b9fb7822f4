"""wslab.protocol.frames against RFC 6455 section 5 and against the websockets library.

The oracles are the RFC's own vectors (section 5.7), websockets' frame
parser and serializer (``websockets.frames.Frame``), wsproto's frame parser
(same verdict on any sequence of frames), and a real websockets conversation
captured through the wiretap.
"""

from __future__ import annotations

import asyncio
import random
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets import frames as wsframes
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed
from websockets.streams import StreamReader
from wsproto.frame_protocol import FrameProtocol, ParseFailed
from websockets.frames import apply_mask  # the C helper (websockets.speedups) when built

import wslab
from wslab.protocol.frames import (
    CloseCode,
    Frame,
    Message,
    Opcode,
    ProtocolError,
    Reader,
    close_payload,
    decode,
    encode,
    explain,
    mask,
    mask_naive,
    parse_close,
)

from .conftest import run, seconds

KEY = bytes.fromhex("37fa213d")  # the RFC's example masking key (section 5.7)

# -- helpers: websockets as the independent parser / serializer --------------


def ws_parse(data: bytes, *, mask: bool) -> wsframes.Frame:
    """Parse one frame with websockets' generator-based parser, driven as websockets drives it."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = wsframes.Frame.parse(reader.read_exact, mask=mask)
    try:
        next(parser)
    except StopIteration as done:
        return done.value
    raise AssertionError("websockets wanted more bytes")


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# -- RFC 6455 section 5.7, both ways -----------------------------------------

RFC_EXAMPLES = [
    # (what, wire bytes, frame, mask key)
    ("unmasked text Hello", "81 05 48 65 6c 6c 6f", Frame(Opcode.TEXT, b"Hello"), None),
    ("masked text Hello", "81 85 37 fa 21 3d 7f 9f 4d 51 58", Frame(Opcode.TEXT, b"Hello"), KEY),
    ("first fragment Hel", "01 03 48 65 6c", Frame(Opcode.TEXT, b"Hel", fin=False), None),
    ("last fragment lo", "80 02 6c 6f", Frame(Opcode.CONT, b"lo"), None),
    ("unmasked ping Hello", "89 05 48 65 6c 6c 6f", Frame(Opcode.PING, b"Hello"), None),
    ("masked pong Hello", "8a 85 37 fa 21 3d 7f 9f 4d 51 58", Frame(Opcode.PONG, b"Hello"), KEY),
]


@pytest.mark.parametrize("what, wire, frame, key", RFC_EXAMPLES, ids=[e[0] for e in RFC_EXAMPLES])
def test_encode_gives_the_rfc_example_bytes(what, wire, frame, key):
    """RFC 6455 section 5.7."""
    assert encode(frame, mask_key=key) == h(wire)


@pytest.mark.parametrize("what, wire, frame, key", RFC_EXAMPLES, ids=[e[0] for e in RFC_EXAMPLES])
def test_decode_reads_the_rfc_example_bytes(what, wire, frame, key):
    """RFC 6455 section 5.7."""
    decoded, used = decode(h(wire))
    assert used == len(h(wire))
    assert (decoded.opcode, decoded.payload, decoded.fin, decoded.mask_key) == (
        frame.opcode, frame.payload, frame.fin, key,
    )
    assert encode(decoded) == h(wire)  # a decoded frame keeps its key


@pytest.mark.parametrize("size, header", [(256, "82 7e 01 00"), (65536, "82 7f 00 00 00 00 00 01 00 00")])
def test_long_binary_frames_use_16_and_64_bit_lengths(size, header):
    """RFC 6455 section 5.7: 256 bytes in one unmasked frame, 64 KiB in one unmasked frame."""
    payload = bytes(random.Random(size).randbytes(size))
    wire = encode(Frame(Opcode.BINARY, payload))
    assert wire[: len(h(header))] == h(header)
    assert decode(wire) == (Frame(Opcode.BINARY, payload), len(wire))
    assert ws_parse(wire, mask=False).data == payload


def test_lengths_at_the_encoding_boundaries_match_websockets():
    for n in (0, 1, 125, 126, 127, 65535, 65536):
        payload = bytes(n)
        assert encode(Frame(Opcode.BINARY, payload)) == wsframes.Frame(wsframes.Opcode.BINARY, payload).serialize(mask=False)


def test_fragmented_text_message_reassembles():
    """RFC 6455 section 5.7: a fragmented unmasked text message."""
    events = Reader("client").feed(h("01 03 48 65 6c 80 02 6c 6f"))
    assert events == [Message(Opcode.TEXT, "Hello", frames=2)]


# -- masking ----------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.binary(min_size=4, max_size=4))
def test_mask_and_mask_naive_agree_with_websockets_apply_mask(data, key):
    """RFC 6455 section 5.3."""
    expected = apply_mask(data, key)
    assert mask(data, key) == expected
    assert mask_naive(data, key) == expected


def test_mask_is_its_own_inverse_on_a_mebibyte():
    data = random.Random(1).randbytes(2**20)
    assert mask(mask(data, KEY), KEY) == data
    assert mask(data, KEY) == apply_mask(data, KEY)


# -- round trips against websockets over many generated frames ---------------

data_frames = st.builds(
    Frame,
    opcode=st.sampled_from([Opcode.TEXT, Opcode.BINARY, Opcode.CONT]),
    payload=st.one_of(  # short ones, and ones around the 16-bit length limit (drawn cheaply, seeded)
        st.binary(max_size=200),
        st.tuples(st.integers(65530, 65540), st.integers(0, 2**32)).map(lambda t: random.Random(t[1]).randbytes(t[0])),
    ),
    fin=st.booleans(),
)
control_frames = st.builds(
    Frame,
    opcode=st.sampled_from([Opcode.PING, Opcode.PONG]),
    payload=st.binary(max_size=125),
)
any_frame = st.one_of(data_frames, control_frames)
keys = st.one_of(st.none(), st.binary(min_size=4, max_size=4))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_frame, keys)
def test_websockets_parses_what_wslab_encodes(frame, key):
    """RFC 6455 section 5.2."""
    parsed = ws_parse(encode(frame, mask_key=key), mask=key is not None)
    assert (int(parsed.opcode), parsed.data, parsed.fin) == (int(frame.opcode), frame.payload, frame.fin)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_frame, st.booleans())
def test_wslab_decodes_what_websockets_serializes(frame, masked):
    """RFC 6455 section 5.2."""
    theirs = wsframes.Frame(wsframes.Opcode(int(frame.opcode)), frame.payload, frame.fin)
    wire = theirs.serialize(mask=masked)
    decoded, used = decode(wire, mask_required=masked)
    assert used == len(wire)
    assert (decoded.opcode, decoded.payload, decoded.fin) == (frame.opcode, frame.payload, frame.fin)
    assert (decoded.mask_key is not None) == masked


def test_close_payloads_round_trip_with_websockets():
    """RFC 6455 section 5.5.1."""
    for code, reason in [(1000, ""), (1001, "bye"), (4000, "é" * 40), (3000, "x" * 123)]:
        ours = close_payload(code, reason)
        assert ours == wsframes.Close(code, reason).serialize()
        assert parse_close(wsframes.Close(code, reason).serialize()) == (code, reason)
    assert parse_close(b"") == (CloseCode.NO_STATUS_RCVD, "")
    assert str(Frame.close(1000, "bye")) == "CLOSE 1000 (NORMAL_CLOSURE) 'bye' [5 bytes]"


# -- any bytes, any chunking --------------------------------------------------


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:])]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=20),
       st.sampled_from(["server", "client"]), st.booleans())
def test_feeding_any_bytes_in_any_chunking_raises_only_protocol_error(data, cuts, role, deflate):
    reader = Reader(role, max_size=1000, permessage_deflate=deflate)
    try:
        for piece in chunked(data, cuts):
            for event in reader.feed(piece, frames=True):
                assert isinstance(event, (Frame, Message))
    except ProtocolError as exc:
        assert exc.code in (1002, 1007, 1009)
        with pytest.raises(ProtocolError):  # a broken reader stays broken
            reader.feed(b"")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=30), st.binary(max_size=30)), min_size=1, max_size=6),
       st.lists(st.integers(0, 2000), max_size=30), st.integers(1, 4))
def test_messages_come_out_the_same_in_any_chunking(messages, cuts, fragments):
    """RFC 6455 section 5.4: fragments in any chunking, with a ping between fragments."""
    wire = b""
    for message in messages:
        raw = message.encode() if isinstance(message, str) else message
        opcode = Opcode.TEXT if isinstance(message, str) else Opcode.BINARY
        step = max(1, -(-len(raw) // fragments))
        parts = [raw[i : i + step] for i in range(0, len(raw), step)] or [b""]
        for i, part in enumerate(parts):
            theirs = wsframes.Frame(wsframes.Opcode(int(opcode if i == 0 else Opcode.CONT)), part, i == len(parts) - 1)
            wire += theirs.serialize(mask=True)
            if i == 0:
                wire += wsframes.Frame(wsframes.Opcode.PING, b"mid").serialize(mask=True)
    reader = Reader("server")
    events = [e for piece in chunked(wire, cuts) for e in reader.feed(piece)]
    assert [e.data for e in events if isinstance(e, Message)] == messages
    assert [e.payload for e in events if isinstance(e, Frame)] == [b"mid"] * len(messages)
    assert reader.buffered == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([None, True, False]), st.booleans())
def test_decode_and_explain_never_raise_anything_but_protocol_error(data, masked, rsv1):
    try:
        frame, n = decode(data, mask_required=masked, rsv1_allowed=rsv1, max_size=200)
    except ProtocolError as exc:
        assert exc.code in (1002, 1009)
    else:
        assert n > 0 and (frame is None or n <= len(data))
    assert str(explain(data))  # explain says what is wrong instead of raising


def wsproto_verdict(data: bytes, *, client: bool) -> int | None:
    """The close code wsproto's frame parser fails with, or None."""
    return wsproto_events(data, client=client)[1]


def wsproto_events(data: bytes, *, client: bool) -> tuple[list[tuple], int | None]:
    """What wsproto's frame parser delivers before it fails: whole messages and control frames, then the code."""
    protocol = FrameProtocol(client=client, extensions=[])
    protocol.receive_bytes(data)
    events: list[tuple] = []
    parts: list = []
    opcode = None
    try:
        for frame in protocol.received_frames():
            op = int(frame.opcode)
            if op == 0x8:
                events.append(("close", int(frame.payload[0]), frame.payload[1]))
            elif op >= 0x8:
                events.append(("control", op, bytes(frame.payload)))
            else:
                opcode = op if op else opcode
                parts.append(frame.payload)
                if frame.message_finished:
                    joined = "".join(parts) if opcode == 0x1 else b"".join(bytes(p) for p in parts)
                    events.append(("message", opcode, joined))
                    parts, opcode = [], None
    except ParseFailed as failed:
        return events, int(failed.code)
    return events, None


def as_tuples(events: list) -> list[tuple]:
    """wslab's events in wsproto_events()'s shape."""
    out = []
    for event in events:
        if isinstance(event, Message):
            out.append(("message", int(event.opcode), event.data))
        elif event.opcode == Opcode.CLOSE:
            out.append(("close", *parse_close(event.payload)))
        else:
            out.append(("control", int(event.opcode), event.payload))
    return out


def feed_all(reader: Reader, pieces: list[bytes], *, frames: bool = False) -> tuple[list, tuple | None]:
    """Feed ``pieces`` one by one: every event delivered (the error's events too), and the error as a tuple."""
    events: list = []
    for piece in pieces:
        try:
            events += reader.feed(piece, frames=frames)
        except ProtocolError as exc:
            events += exc.events
            return events, (int(exc.code), exc.section, str(exc))
    return events, None


odd_payloads = st.one_of(
    st.binary(max_size=8),
    st.text(max_size=4).map(str.encode),
    st.sampled_from([b"\x03\xe8ok", b"\x03\xed", b"\x0f\xa0", b"\x03", b"\x03\xe8\xc3", bytes(126)]),
)
odd_frames = st.builds(
    lambda op, payload, fin, rsv, key: encode(Frame(op, payload, fin, rsv == 1, rsv == 2, rsv == 3, key), strict=False),
    st.sampled_from([0x0, 0x1, 0x2, 0x8, 0x9, 0xA, 0x3, 0xB]),
    odd_payloads,
    st.booleans(),
    st.sampled_from([0, 0, 0, 0, 1, 2, 3]),
    st.sampled_from([None, b"abcd"]),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(odd_frames, max_size=4), st.booleans())
def test_reader_finds_the_same_protocol_errors_as_wsproto(frames, client):
    """Sections 5.1-5.6, 7.4, 8.1: any sequence of whole frames, valid or not, same verdict as wsproto."""
    data = b"".join(frames)
    reader = Reader("client" if client else "server", max_size=None)
    events, error = feed_all(reader, [data])
    theirs, code = wsproto_events(data, client=client)
    assert (None if error is None else error[0]) == code, data.hex(" ")
    assert as_tuples(events) == theirs, data.hex(" ")  # the events before the error too (issue 11)


# -- events decoded before an error are delivered (issue 11) -----------------

ISSUE_11_VECTOR = "81 85 61 62 63 64 09 07 0f 08 0e  89 81 61 62 63 64 11  81 81 61 62 63 64 9e"


def test_events_before_a_bad_frame_ride_on_the_error_as_wsproto_delivers_them():
    """Sections 7.1.7, 8.1: TEXT 'hello' and PING b'p' come out, then 1007 for the invalid UTF-8."""
    data = h(ISSUE_11_VECTOR)
    theirs, code = wsproto_events(data, client=False)
    assert theirs == [("message", 1, "hello"), ("control", 9, b"p")] and code == 1007
    with pytest.raises(ProtocolError) as caught:
        Reader("server").feed(data)
    assert as_tuples(caught.value.events) == theirs
    assert (caught.value.code, caught.value.section) == (CloseCode.INVALID_DATA, "8.1")


def test_a_broken_reader_raises_again_with_no_events():
    reader = Reader("server")
    with pytest.raises(ProtocolError) as first:
        reader.feed(h(ISSUE_11_VECTOR))
    with pytest.raises(ProtocolError) as again:
        reader.feed(b"")
    assert again.value.events == [] and len(first.value.events) == 2
    assert (again.value.code, again.value.section, str(again.value)) == (
        first.value.code, first.value.section, str(first.value))


def test_events_in_one_call_one_byte_at_a_time_are_the_same():
    data = h(ISSUE_11_VECTOR)
    whole = feed_all(Reader("server"), [data], frames=True)
    bytewise = feed_all(Reader("server"), [data[i : i + 1] for i in range(len(data))], frames=True)
    assert whole == bytewise
    assert [str(e) for e in whole[0]] == [
        "TEXT 'hello' [5 bytes, masked with 61626364]",
        "TEXT message 'hello' [5 bytes]",
        "PING b'p' [1 byte, masked with 61626364]",
    ]  # the bad TEXT frame itself is not delivered, even with frames=True


def wire_frame(opcode: int, payload: bytes, fin: bool, masked: bool) -> bytes:
    """One frame as websockets serializes it (websockets draws a fresh masking key)."""
    return wsframes.Frame(wsframes.Opcode(opcode), payload, fin).serialize(mask=masked)


BAD_ENDINGS = [  # (what, a frame every reader refuses): appended after a valid stream
    ("invalid utf-8", Frame(Opcode.TEXT, b"\xc3\x28")),
    ("unknown opcode", Frame(0x3, b"")),  # type: ignore[arg-type]
    ("rsv2 without an extension", Frame(Opcode.TEXT, b"", rsv2=True)),
    ("close code 1005", Frame(Opcode.CLOSE, b"\x03\xed")),
    ("orphan continuation", Frame(Opcode.CONT, b"x")),
    ("control frame too long", Frame(Opcode.PING, bytes(126))),
    ("fragmented ping", Frame(Opcode.PING, b"", fin=False)),
    ("too big", Frame(Opcode.BINARY, bytes(300))),
]


@st.composite
def streams(draw):
    """A valid stream of messages (fragmented or not, pings between fragments), maybe a bad frame at the end."""
    masked = draw(st.booleans())
    wire = b""
    for _ in range(draw(st.integers(0, 4))):
        text = draw(st.booleans())
        raw = draw(st.text(max_size=20)).encode() if text else draw(st.binary(max_size=20))
        cut = draw(st.integers(0, len(raw)))
        pieces = [raw] if draw(st.booleans()) else [raw[:cut], raw[cut:]]
        for i, piece in enumerate(pieces):
            wire += wire_frame(0x0 if i else (0x1 if text else 0x2), piece, i == len(pieces) - 1, masked)
            if draw(st.booleans()):
                wire += wire_frame(0x9, draw(st.binary(max_size=5)), True, masked)
    ending = draw(st.sampled_from([None, None, *range(len(BAD_ENDINGS))]))
    if ending is not None:
        wire += encode(BAD_ENDINGS[ending][1], mask_key=KEY if masked else None, strict=False)
    return masked, wire, ending


@settings(max_examples=300, deadline=None)
@given(streams(), st.lists(st.integers(0, 1000), max_size=12), st.booleans())
def test_whole_and_chunked_feeding_give_the_same_events_and_the_same_error(stream, cuts, frames):
    """Issue 11: any chunking delivers the same events, the error's events included, and the same error."""
    masked, wire, ending = stream
    role = "server" if masked else "client"
    whole = feed_all(Reader(role, max_size=256), [wire], frames=frames)
    pieces = feed_all(Reader(role, max_size=256), chunked(wire, cuts), frames=frames)
    assert whole == pieces
    assert (whole[1] is None) == (ending is None), whole[1]
    if not frames:  # and the same as wsproto (its limit aside)
        theirs, code = wsproto_events(wire, client=not masked)
        if ending is None or BAD_ENDINGS[ending][0] != "too big":
            assert as_tuples(whole[0]) == theirs
            assert (None if whole[1] is None else whole[1][0]) == code


def test_nothing_is_read_after_a_close_frame():
    """Section 5.5.1: after a CLOSE, the peer sends no more data."""
    reader = Reader("client")
    events = reader.feed(encode(Frame.close(1000, "bye")) + b"\x83\x00 anything")
    assert [e.opcode for e in events] == [Opcode.CLOSE]
    assert reader.closed and reader.ignored == 11
    assert reader.feed(b"more") == [] and reader.ignored == 15


def test_incomplete_frames_say_how_many_bytes_they_need():
    wire = encode(Frame.binary(bytes(300)), mask_key=KEY)
    assert decode(wire[:1]) == (None, 1)
    assert decode(wire[:2]) == (None, 2)  # a 16-bit length follows
    assert decode(wire[:4]) == (None, 4 + 300)  # the key and the payload
    assert decode(wire[:-1]) == (None, 1)
    assert decode(h("81 7f 00 00"))[1] == 6


# -- every protocol error, with its close code --------------------------------

ERRORS = [
    # (what, reader role, wire bytes, close code, words in the message)
    ("rsv1 without extension", "client", "c1 00", 1002, "reserved bit set without an extension: RSV1"),
    ("rsv2", "client", "a1 00", 1002, "RSV2"),
    ("rsv3", "client", "91 00", 1002, "RSV3"),
    ("unknown opcode", "client", "83 00", 1002, "invalid opcode 0x3"),
    ("unknown control opcode", "client", "8b 00", 1002, "invalid opcode 0xb"),
    ("control frame too long", "client", "89 7e 00 7e" + " 00" * 126, 1002, "control frame too long: 126 bytes (max 125)"),
    ("fragmented control frame", "client", "09 00", 1002, "fragmented control frame: PING"),
    ("continuation without a start", "client", "80 00", 1002, "continuation frame without a message"),
    ("new message inside a fragmented one", "client", "01 01 61 81 01 62", 1002, "new TEXT message inside a fragmented TEXT"),
    ("unmasked client frame at a server", "server", "81 00", 1002, "unmasked frame from a client"),
    ("masked frame at a client", "client", "81 80 00 00 00 00", 1002, "masked frame from a server"),
    ("64-bit length with top bit", "client", "82 7f 80 00 00 00 00 00 00 00", 1002, "top bit set"),
    ("message over the size limit", "client", "82 7e 04 01", 1009, "message too big"),
    ("fragments over the size limit", "client", "02 7e 02 00" + " 00" * 512 + " 80 7e 02 01", 1009, "message too big"),
    ("invalid utf-8", "client", "81 02 c3 28", 1007, "invalid utf-8"),
    ("invalid utf-8 across fragments", "client", "01 01 c3 80 01 28", 1007, "invalid utf-8"),
    ("truncated utf-8 at the end", "client", "01 01 c3 80 00", 1007, "invalid utf-8"),
    ("close with 1 byte", "client", "88 01 03", 1002, "1-byte payload"),
    ("close with code 1005", "client", "88 02 03 ed", 1002, "invalid close code 1005"),
    ("close with code 999", "client", "88 02 03 e7", 1002, "invalid close code 999"),
    ("close with code 5000", "client", "88 02 13 88", 1002, "invalid close code 5000"),
    ("close reason not utf-8", "client", "88 04 03 e8 c3 28", 1007, "invalid utf-8 in close reason"),
    ("rsv1 on a control frame with deflate", "client+deflate", "c9 00", 1002, "RSV1 set on a PING"),
    ("rsv1 on a continuation with deflate", "client+deflate", "41 01 61 c0 00", 1002, "RSV1 set on a continuation"),
]


@pytest.mark.parametrize("what, role, wire, code, words", ERRORS, ids=[e[0] for e in ERRORS])
def test_every_protocol_error_carries_its_close_code(what, role, wire, code, words):
    """RFC 6455 sections 5.1-5.6, 7.4, 8.1 and 10.4; RFC 7692 section 6.1."""
    reader = Reader(role.split("+")[0], max_size=1024, permessage_deflate=role.endswith("deflate"))
    with pytest.raises(ProtocolError) as caught:
        reader.feed(h(wire))
    assert caught.value.code == code
    assert words in str(caught.value)
    assert caught.value.section
    assert str(caught.value) == str(caught.value).rstrip(".")


def test_a_ping_in_the_middle_of_a_fragmented_message_is_fine():
    """RFC 6455 section 5.4: control frames MAY be injected in the middle of a fragmented message."""
    events = Reader("client").feed(h("01 03 48 65 6c 89 02 68 69 80 02 6c 6f"))
    assert [str(e) for e in events] == ["PING b'hi' [2 bytes]", "TEXT message 'Hello' [5 bytes, 2 frames]"]


def test_encode_refuses_frames_no_peer_accepts_unless_told():
    with pytest.raises(ProtocolError, match="control frame too long: 126 bytes"):
        encode(Frame.ping(bytes(126)))
    assert len(encode(Frame.ping(bytes(126)), strict=False)) == 130
    with pytest.raises(ValueError, match="mask key must be 4 bytes"):
        encode(Frame.text("x"), mask_key=b"abc")
    with pytest.raises(ValueError, match="invalid close code 1005"):
        Frame.close(1005)


# -- permessage-deflate (RFC 7692) ------------------------------------------


def test_compressed_messages_inflate_with_context_takeover():
    """RFC 7692 section 7.2: raw deflate, 00 00 ff ff stripped, context kept between messages."""
    compressor = zlib.compressobj(wbits=-15)
    wire = b""
    texts = ["Hello, Hello, Hello!" * 5, "Hello, Hello, Hello!" * 5]
    for text in texts:
        body = compressor.compress(text.encode()) + compressor.flush(zlib.Z_SYNC_FLUSH)
        assert body.endswith(b"\x00\x00\xff\xff")
        wire += encode(Frame(Opcode.TEXT, body[:-4], rsv1=True))
    events = Reader("client", permessage_deflate=True).feed(wire)
    assert [e.data for e in events] == texts
    assert events[1].compressed < events[0].compressed < 100  # the second one reuses the context


def test_a_compressed_bomb_stops_at_max_size():
    payload = zlib.compressobj(wbits=-15)
    body = payload.compress(bytes(10**6)) + payload.flush(zlib.Z_SYNC_FLUSH)
    with pytest.raises(ProtocolError) as caught:
        Reader("client", max_size=10**5, permessage_deflate=True).feed(encode(Frame(Opcode.BINARY, body[:-4], rsv1=True)))
    assert caught.value.code == CloseCode.MESSAGE_TOO_BIG


def test_a_compressed_continuation_claiming_2_to_the_62_bytes_gets_1009_from_its_header():
    """Issue 14: the size check holds for every frame of a compressed message, before its payload comes."""
    reader = Reader("client", permessage_deflate=True)  # max_size 1 MiB
    start = zlib.compressobj(wbits=-15)
    body = start.compress(b"x" * 100) + start.flush(zlib.Z_SYNC_FLUSH)
    assert reader.feed(encode(Frame(Opcode.TEXT, body, fin=False, rsv1=True))) == []
    head = bytes([0x00, 0x7F]) + (2**62).to_bytes(8, "big")  # CONT, not final, 64-bit length 2^62
    fed = 0
    with pytest.raises(ProtocolError) as caught:
        for chunk in [head] + [bytes(65536)] * 32:  # at most 2 MiB more
            reader.feed(chunk)
            fed += len(chunk)
    assert caught.value.code == CloseCode.MESSAGE_TOO_BIG and fed == 0  # refused on the header alone
    assert "100 + 4611686018427387904 bytes" in str(caught.value)


def test_compressed_continuations_count_inflated_bytes_against_max_size():
    """Issue 14: many small compressed frames that inflate past max_size get 1009 (RFC 6455 10.4)."""
    reader = Reader("client", max_size=10_000, permessage_deflate=True)
    compressor = zlib.compressobj(wbits=-15)
    with pytest.raises(ProtocolError) as caught:
        for i in range(100):  # 100 frames of 1,000 inflated bytes each
            body = compressor.compress(bytes(1000)) + compressor.flush(zlib.Z_SYNC_FLUSH)
            reader.feed(encode(Frame(Opcode.CONT if i else Opcode.BINARY, body, fin=False, rsv1=i == 0)))
    assert caught.value.code == CloseCode.MESSAGE_TOO_BIG and i == 10


def deflate_bomb(mebibytes: int) -> bytes:
    """About 1 KB per MiB of zeros once inflated: one full-flushed block, repeated (the sync tail stripped)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(2**20)) + c.flush(zlib.Z_FULL_FLUSH)
    return (block * mebibytes)[:-4]


def bounded(call):
    """Run ``call``: its result, the seconds it took and its peak of Python allocations in bytes."""
    import time
    import tracemalloc

    tracemalloc.start()
    try:
        started = time.perf_counter()
        result = call()
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, elapsed, peak


def test_explain_of_a_deflate_bomb_is_quick_small_and_says_it_truncated():
    """Issue 14: 1 MB that inflates to 1 GiB; explain() returns within 1 s and under 50 MB."""
    wire = encode(Frame(Opcode.BINARY, deflate_bomb(1000), rsv1=True))
    assert len(wire) < 1_100_000
    view, elapsed, peak = bounded(lambda: str(explain(wire)))
    assert "inflated output truncated at 1,048,576 bytes" in view
    assert peak < 50e6 and elapsed < seconds(1), (peak, elapsed)


def test_transcript_of_a_deflate_bomb_is_quick_small_and_says_it_truncated():
    """Issue 14: tap.frames() draws a capture with a bound on what it inflates."""
    bomb = encode(Frame(Opcode.BINARY, deflate_bomb(300), rsv1=True))
    after = encode(Frame(Opcode.TEXT, b"\xf2H\xcd\xc9\xc9\x07\x00", rsv1=True))  # 'Hello' on a fresh context
    lines, elapsed, peak = bounded(lambda: wslab.frames.transcript(
        [("<", 0.0, bomb), ("<", 0.1, after)], extensions="permessage-deflate; server_no_context_takeover"))
    assert "inflated output truncated at 1048576 bytes" in lines[1]
    assert "TEXT message 'Hello'" in lines[3]  # no context takeover: the next message inflates again
    assert peak < 50e6 and elapsed < seconds(1), (peak, elapsed)
    taken = wslab.frames.transcript([("<", 0.0, bomb), ("<", 0.1, after)], extensions="permessage-deflate")
    assert "inflated output truncated at 0 bytes" in taken[3]  # its context was lost with the cut


def test_inflate_stops_at_max_size():
    with pytest.raises(ProtocolError) as caught:
        wslab.frames.inflate(deflate_bomb(5), max_size=2**20)
    assert caught.value.code == CloseCode.MESSAGE_TOO_BIG
    assert wslab.frames.inflate(deflate_bomb(1), max_size=2**20) == bytes(2**20)


# -- explain() ----------------------------------------------------------------


def test_explain_names_every_field_of_the_rfc_masked_hello():
    text = str(explain(h("81 85 37 fa 21 3d 7f 9f 4d 51 58")))
    for words in ("FIN", "1.......", "....0001", "TEXT", "MASK", ".0000101", "5 (fits in 7 bits)",
                  "37 fa 21 3d", "7f 9f 4d 51 58", "48 65 6c 6c 6f", "'Hello'"):
        assert words in text
    assert "<table>" in explain(h("81 05 48 65 6c 6c 6f"))._repr_html_()


def test_explain_shows_lengths_errors_and_incomplete_frames():
    assert "16-bit length" in str(explain(h("82 7e 01 00") + bytes(256)))
    assert "64-bit length" in str(explain(h("82 7f 00 00 00 00 00 01 00 00") + bytes(65536)))
    assert "invalid opcode 0x3 (close code 1002" in str(explain(h("83 00")))
    assert "needs 3 more byte(s)" in str(explain(h("81 05 48 65")))


# -- transcript() --------------------------------------------------------------


def test_transcript_shows_the_frames_before_a_bad_one():
    """Issue 11: a bad frame in the same chunk no longer hides the frames before it."""
    lines = wslab.frames.transcript([(">", 0.001, h(ISSUE_11_VECTOR))])
    assert [line.split(" ms ", 1)[1] for line in lines] == [
        "> TEXT 'hello' [5 bytes, masked with 61626364]",
        "> PING b'p' [1 byte, masked with 61626364]",
        "! > invalid utf-8 in text message near byte 0 (close code 1007, RFC 6455 section 8.1)",
    ]


# -- a real websockets conversation, captured through the wiretap ---------------


async def converse(compression: str | None):
    """Talk to a websockets echo server through the wiretap; return the tap."""

    async def echo(ws):
        try:
            async for message in ws:
                await ws.send(message)
        except ConnectionClosed:
            pass  # the client closes with 4000, which websockets reports as an error

    async with serve(echo, "127.0.0.1", 0, compression=compression) as server:
        port = server.sockets[0].getsockname()[1]
        tap = await wslab.wiretap(("127.0.0.1", port), name="test-frames")
        try:
            async with connect(f"ws://127.0.0.1:{tap.port}/", compression=compression) as ws:
                await ws.send("Hello, Hello, Hello, Hello!")
                assert await ws.recv() == "Hello, Hello, Hello, Hello!"
                await ws.send(bytes(range(10)))
                await ws.recv()
                await ws.send(["frag", "mented ", "text"])
                await ws.recv()
                pong = await ws.ping(b"are you there")
                await asyncio.wait_for(pong, seconds(5))
                await ws.close(4000, "done here")
        finally:
            await tap.aclose()
    return tap


@pytest.mark.parametrize("compression", [None, "deflate"])
def test_frames_captured_from_websockets_decode_to_the_messages_sent(compression):
    """RFC 6455 section 5, RFC 7692: what websockets sent, read back by wslab."""
    tap = run(converse(compression), timeout=20)
    up, down = tap.after_upgrade(1)
    deflate = compression is not None
    sent = Reader("server", permessage_deflate=deflate).feed(up)
    echoed = Reader("client", permessage_deflate=deflate).feed(down)
    messages = ["Hello, Hello, Hello, Hello!", bytes(range(10)), "fragmented text"]
    assert [e.data for e in sent if isinstance(e, Message)] == messages
    assert [e.data for e in echoed if isinstance(e, Message)] == messages
    assert [e for e in sent if isinstance(e, Message)][2].frames == 4  # websockets ends with an empty CONT
    controls = [(e.opcode, e.payload) for e in sent if isinstance(e, Frame)]
    assert controls[0] == (Opcode.PING, b"are you there")
    assert parse_close(controls[-1][1]) == (4000, "done here")
    assert (Opcode.PONG, b"are you there") in [(e.opcode, e.payload) for e in echoed if isinstance(e, Frame)]
    first, _ = decode(up, mask_required=True, rsv1_allowed=deflate)
    assert first.mask_key is not None and first.rsv1 == deflate
    if deflate:
        assert [e for e in sent if isinstance(e, Message)][0].compressed < 27
        view = str(tap.frames())
        assert "compressed" in view and "Hello, Hello" in view
    else:
        view = str(tap.frames())
        assert "> TEXT 'Hello, Hello, Hello, Hello!'" in view and "< CLOSE 4000" in view


@pytest.mark.parametrize("name", ["frames", "frame_codec", "frame_reader", "frame_drawing"])
def test_the_examples_in_the_docstrings_hold(name):
    import doctest
    import importlib

    module = importlib.import_module(f"wslab.protocol.{name}")
    result = doctest.testmod(module)
    assert result.failed == 0 and (result.attempted > 0 or name == "frames")


def test_the_codec_masks_with_websockets_c_helper_where_it_is_built():
    """Issue 15: mask_naive and mask stay for teaching; encode/decode use websockets.speedups.apply_mask."""
    speedups = pytest.importorskip("websockets.speedups")
    assert wslab.frames.FAST_MASK and wslab.frame_codec._xor is speedups.apply_mask
    payload = random.Random(3).randbytes(2**20)
    wire = encode(Frame.binary(payload), mask_key=KEY)
    assert wire[14:] == mask(payload, KEY)
    assert decode(wire, mask_required=True)[0].payload == payload
    reader = Reader("server", max_size=None)
    assert reader.feed(wire[:5000]) == [] and reader.buffered == 5000  # the start of a frame is kept
    assert reader.feed(wire[5000:]) == [Message(Opcode.BINARY, payload)] and reader.buffered == 0


def test_lesson_03_closing_handshake_the_server_closes_first_and_the_client_echoes():
    """Lesson 03 section 7 (RFC 6455 5.5.1): a handler's close(4000) goes first, the client echoes 4000."""

    async def main():
        async def close_on_bye(ws):
            async for message in ws:
                if message == "bye":
                    await ws.close(4000, "see you")

        async with serve(close_on_bye, "127.0.0.1", 0, compression=None) as server:
            port = server.sockets[0].getsockname()[1]
            tap = await wslab.wiretap(("127.0.0.1", port), name="test-frames-close")
            try:
                async with connect(f"ws://127.0.0.1:{tap.port}/", compression=None) as ws:
                    await ws.send("bye")
                    await asyncio.wait_for(ws.wait_closed(), seconds(5))
            finally:
                await tap.aclose()
        return tap

    tap = run(main(), timeout=20)
    closes = [line.split(" ms ", 1)[1] for line in str(tap.frames()).splitlines() if "CLOSE" in line]
    assert [c[:15] for c in closes] == ["< CLOSE 4000 (p", "> CLOSE 4000 (p"]


def test_lesson_03_websockets_pure_python_fallback_is_the_big_xor():
    """Lesson 03 section 5: websockets.utils.apply_mask (used without the C helper) gives mask()'s bytes."""
    from websockets.utils import apply_mask as python_apply_mask

    data = random.Random(5).randbytes(1001)
    assert python_apply_mask(data, KEY) == mask(data, KEY) == mask_naive(data, KEY)

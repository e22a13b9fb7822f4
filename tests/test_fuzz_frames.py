"""Fuzzing wslab.frames: random and mutated bytes into every parser (issue 14).

Each parser gets inputs built from valid frames (text, binary, fragmented,
control, compressed, masked and not) and then mutated: bits flipped, bytes
cut, inserted or appended, lengths rewritten to absurd values, frames spliced,
plus plain random bytes. Only the exceptions the docstrings promise may come
out: :class:`ProtocolError` from ``decode``, ``Reader.feed`` and ``parse_close``
(with a close code a peer may send), that or ``zlib.error`` from ``inflate``,
nothing at all from ``explain`` and ``transcript``.
Memory stays bounded (``tracemalloc`` peak) and every run is seeded
(``WSLAB_FUZZ_SEED``) and bounded in count and in time (``WSLAB_FUZZ_SECONDS``
per parser, 1.5 s by default).
"""

from __future__ import annotations

import os
import random
import time
import zlib

import pytest

from wslab.protocol.frames import (
    Frame,
    Message,
    Opcode,
    ProtocolError,
    Reader,
    decode,
    encode,
    explain,
    inflate,
    mask,
    parse_close,
    transcript,
)

from .conftest import compressed, deflate_bomb, random_edits

SEED = int(os.environ.get("WSLAB_FUZZ_SEED", "6455"))
SECONDS = float(os.environ.get("WSLAB_FUZZ_SECONDS", "1.5"))
MAX_CASES = 20_000  # per parser, whatever the clock says
MAX_SIZE = 4096  # the readers' limit: a message over it is refused with 1009
PEAK_BYTES = 48 * 2**20  # the ``bounded_memory`` fixture's bound (conftest): far below what an unbounded inflate of the corpus' bomb would take
CLOSE_CODES = {1002, 1007, 1009}  # what a reader may ask a peer to close with


def corpus(rng: random.Random) -> list[bytes]:
    """Valid streams: single frames and short conversations, masked (to a server) and not (to a client)."""
    frames = [
        Frame.text("Hello"),
        Frame.text("héllo wörld " * 20),
        Frame.binary(bytes(range(256))),
        Frame.binary(rng.randbytes(70_000)),  # a 64-bit length
        Frame(Opcode.TEXT, b"frag", fin=False),
        Frame(Opcode.CONT, "ménted".encode(), fin=True),
        Frame.ping(b"are you there"),
        Frame.pong(b""),
        Frame.close(1000, "bye"),
        Frame.close(None),
        Frame(Opcode.TEXT, compressed(b"Hello, Hello, Hello!" * 10), rsv1=True),
        Frame(Opcode.BINARY, compressed(bytes(3000)), fin=False, rsv1=True),
        Frame(Opcode.CONT, compressed(b"rest")),
        Frame(Opcode.BINARY, deflate_bomb(8), rsv1=True),  # 8 KB that inflate to 8 MiB
    ]
    streams = []
    for key in (None, b"\x37\xfa\x21\x3d"):
        wires = [encode(f, mask_key=key, strict=False) for f in frames]
        streams += wires
        for _ in range(12):
            streams.append(b"".join(rng.choice(wires) for _ in range(rng.randint(2, 5))))
    return streams


def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    """One to three random edits of ``data``."""
    out = bytearray(data)
    for what, at in random_edits(rng, out, kinds=8):
        if what == 0 and out:  # flip a bit
            i = rng.randrange(min(len(out), 16) if rng.random() < 0.7 else len(out))  # headers mostly
            out[i] ^= 1 << rng.randrange(8)
        elif what == 1:  # truncate
            del out[at:]
        elif what == 2:  # extend with random bytes
            out += rng.randbytes(rng.randint(1, 40))
        elif what == 3:  # insert random bytes
            out[at:at] = rng.randbytes(rng.randint(1, 8))
        elif what == 4 and out:  # delete a few bytes
            del out[at : at + rng.randint(1, 8)]
        elif what == 5 and len(out) >= 2:  # an absurd length: 16 or 64 bits, maybe 2^62, maybe top bit set
            out[1] = (out[1] & 0x80) | rng.choice([126, 127])
            out[2:2] = rng.choice([b"\xff\xff", (2**62).to_bytes(8, "big"), b"\x80" + bytes(7), rng.randbytes(8)])
        elif what == 6:  # splice in another stream
            out[at:at] = rng.choice(pool)[: rng.randint(1, 200)]
        else:  # a random first byte: any opcode, any RSV bits
            if out:
                out[0] = rng.randrange(256)
    return bytes(out)


def cases(seed: int, pool: list[bytes]):
    """Inputs until the time or count runs out: 1 in 8 plain random bytes, else mutated valid streams."""
    rng = random.Random(seed)
    deadline = time.monotonic() + SECONDS
    for count in range(MAX_CASES):
        if time.monotonic() > deadline and count >= 200:
            return
        if rng.random() < 0.125:
            yield rng, rng.randbytes(rng.randint(0, 64))
        else:
            yield rng, mutate(rng, rng.choice(pool), pool)


def chunks(rng: random.Random, data: bytes) -> list[bytes]:
    cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randint(1, 6)))
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:])]


@pytest.fixture
def pool():
    return corpus(random.Random(SEED))


def outcome(reader: Reader, pieces: list[bytes]) -> tuple[list, tuple | None]:
    events: list = []
    for piece in pieces:
        try:
            events += reader.feed(piece, frames=True)
        except ProtocolError as error:
            assert int(error.code) in CLOSE_CODES, repr(error)
            assert str(error) and error.section
            events += error.events
            return events, (int(error.code), error.section, str(error))
        except Exception as error:  # pragma: no cover - what the fuzz is here to catch
            raise AssertionError(f"{type(error).__name__} from feed({piece[:40].hex(' ')}...): {error}") from error
    return events, None


def test_parse_close_and_inflate_raise_only_what_they_document(pool, bounded_memory):
    """parse_close: ProtocolError (1002, 1007); inflate(max_size=...): ProtocolError (1009) or zlib.error."""
    for rng, data in cases(SEED + 6, pool):
        try:
            code, reason = parse_close(data[: rng.randint(0, 125)])
        except ProtocolError as error:
            assert int(error.code) in (1002, 1007), repr(error)
        else:
            assert isinstance(reason, str) and (code == 1005 or 1000 <= code <= 4999)
        try:
            out = inflate(data[rng.randrange(len(data) + 1) :], max_size=MAX_SIZE)
        except ProtocolError as error:
            assert int(error.code) == 1009, repr(error)
        except zlib.error:
            pass
        else:
            assert len(out) <= MAX_SIZE


def test_decode_raises_only_protocol_error(pool, bounded_memory):
    for rng, data in cases(SEED + 1, pool):
        masked = rng.choice([None, True, False])
        try:
            frame, n = decode(data, mask_required=masked, rsv1_allowed=rng.random() < 0.5,
                              max_size=rng.choice([None, MAX_SIZE]))
        except ProtocolError as error:
            assert int(error.code) in (1002, 1009), repr(error)
            continue
        assert n > 0
        if frame is not None:
            assert n <= len(data) and isinstance(frame.payload, bytes)
            on_wire = data[n - len(frame.payload) : n]
            assert on_wire == (frame.payload if frame.mask_key is None else mask(frame.payload, frame.mask_key))
            wire = encode(frame, strict=False)  # the minimal length encoding (5.2): data's may be longer
            assert decode(wire, rsv1_allowed=True)[0] == frame and len(wire) <= n


@pytest.mark.parametrize("role", ["server", "client"])
def test_reader_raises_only_protocol_error_and_chunking_changes_nothing(pool, bounded_memory, role):
    for rng, data in cases(SEED + (2 if role == "server" else 3), pool):
        deflate = rng.random() < 0.5
        whole = outcome(Reader(role, max_size=MAX_SIZE, permessage_deflate=deflate), [data])
        reader = Reader(role, max_size=MAX_SIZE, permessage_deflate=deflate)
        chunked = outcome(reader, chunks(rng, data))
        assert chunked == whole, data[:60].hex(" ")
        assert reader.buffered <= len(data)
        for event in whole[0]:
            assert isinstance(event, (Frame, Message))
            if isinstance(event, Message):
                assert len(event.data) <= MAX_SIZE


def test_explain_never_raises(pool, bounded_memory):
    for rng, data in cases(SEED + 4, pool):
        try:
            view = explain(data, inflate_payload=rng.random() < 0.8)
            text, page = str(view), view._repr_html_()
        except Exception as error:  # pragma: no cover
            raise AssertionError(f"explain({data[:40].hex(' ')}...) raised {error!r}") from error
        assert text and page


def test_transcript_never_raises(pool, bounded_memory):
    extensions = ["", "permessage-deflate", "permessage-deflate; client_no_context_takeover",
                  "permessage-deflate; server_no_context_takeover; client_no_context_takeover"]
    for rng, data in cases(SEED + 5, pool):
        capture = [(rng.choice("<>"), i / 1000, piece) for i, piece in enumerate(chunks(rng, data))]
        try:
            lines = transcript(capture, extensions=rng.choice(extensions))
        except Exception as error:  # pragma: no cover
            raise AssertionError(f"transcript({data[:40].hex(' ')}...) raised {error!r}") from error
        assert all(isinstance(line, str) for line in lines)

"""Fuzzing wslab.capture: the views of a capture built from hostile bytes (issue 14, items 5 and 8).

A :class:`~wslab.lab.capture.Capture` is filled, the way the relay fills it, with
connections whose two directions are real HTTP and WebSocket traffic (requests
with and without bodies, chunked bodies, an SSE stream, an upgrade and frames,
compressed or not) then mutated: bits flipped, bytes cut, inserted or spliced,
header values replaced by what a hostile peer sends (``Content-Length: ²``, a
5,000-digit length or chunk size, ``-5``, ``5, 6``, a bad extension list), and
split into chunks at random. Plain random bytes too.

Then every view runs: ``http()``, ``frames()``, ``hexdump()`` (with and without
a limit), ``summary()``, ``show()``, per connection and for all, and the
capture goes through ``save``/``load``, which must give the same views back.
The only exception the views document is ``KeyError`` for a connection the
capture does not hold. Each case must end within ``CASE_SECONDS`` and the
Python allocations peak below ``PEAK_BYTES``; the run is seeded
(``WSLAB_FUZZ_SEED``) and bounded in count and time (``WSLAB_FUZZ_SECONDS``
per test, 1.25 s by default).
"""

from __future__ import annotations

import os
import random
import time

import pytest

from wslab.lab.capture import CHUNK_COST, CONNECTION_COST, Capture, load
from wslab.protocol.frames import Frame, Opcode, encode
from wslab.lab.link import PRESETS, Link

from .conftest import compressed, deflate_bomb, random_edits, seconds

SEED = int(os.environ.get("WSLAB_FUZZ_SEED", "9112"))
SECONDS = float(os.environ.get("WSLAB_FUZZ_SECONDS", "1.25"))
MAX_CASES = 5_000  # per test, whatever the clock says
MIN_CASES = 60  # per test, whatever the clock says
CASE_SECONDS = seconds(1.0)  # one capture's views, all of them: a bound against a hang, scaled by WSLAB_TIME_SCALE
PEAK_BYTES = 48 * 2**20  # the bound of the ``bounded_memory`` fixture (conftest)

KEY = b"\x37\xfa\x21\x3d"


def frames(frame_list: list[Frame], *, masked: bool) -> bytes:
    return b"".join(encode(f, mask_key=KEY if masked else None, strict=False) for f in frame_list)


UPGRADE = (
    b"GET /chat?since=now HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
)


def switching(extensions: bytes | None) -> bytes:
    head = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    )
    if extensions is not None:
        head += b"Sec-WebSocket-Extensions: " + extensions + b"\r\n"
    return head + b"\r\n"


def chunked(body: bytes, sizes: list[int]) -> bytes:
    out, pos = b"", 0
    for size in sizes:
        piece = body[pos : pos + size]
        pos += size
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    return out + b"0\r\n\r\n"


def conversations() -> list[tuple[bytes, bytes]]:
    """Valid (up, down) streams of one connection each: what the lab server and its clients send."""
    json_body = b'{"events":[{"seq":3,"created":1764659000.25,"data":{"price":101.25}}],"cursor":3}'
    poll = b"GET /poll?since=2 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nAccept: */*\r\nCookie: visitor=7f3a\r\n\r\n"
    ok = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(json_body)).encode() + b"\r\nSet-Cookie: visitor=7f3a; Path=/\r\n\r\n" + json_body
    )
    post_body = "héllo wörld ".encode() * 30
    post = (
        b"POST /publish HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Length: "
        + str(len(post_body)).encode() + b"\r\n\r\n" + post_body
    )
    post_chunked = (
        b"POST /publish HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked(post_body, [7, 100, 1, 300])
    )
    sse_events = b"retry: 1000\nid: 2\n\n" + b"".join(
        f'id: {seq}\ndata: {{"seq":{seq},"data":"x"}}\n\n'.encode() for seq in range(3, 9)
    )
    sse = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunked(sse_events, [19, 30, 30, 30, 30, 30, 30])
    )
    sse_request = b"GET /events?since=2 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nAccept: text/event-stream\r\nLast-Event-ID: 2\r\n\r\n"
    not_modified = b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n"
    no_content = b"HTTP/1.1 204 No Content\r\n\r\n"
    until_close = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + bytes(range(256)) * 3
    bad_request = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
    client_frames = [
        Frame.text("Hello"),
        Frame(Opcode.TEXT, b"frag", fin=False),
        Frame(Opcode.CONT, "ménted".encode()),
        Frame.ping(b"are you there"),
        Frame.binary(bytes(300)),
        Frame.close(1000, "bye"),
    ]
    server_frames = [
        Frame.text('{"seq":3,"data":"x"}'),
        Frame.pong(b"are you there"),
        Frame.binary(bytes(range(256)) * 300),  # a 64-bit length
        Frame.close(1001, "going away"),
    ]
    deflated_client = [
        Frame(Opcode.TEXT, compressed(b"Hello, Hello, Hello!" * 10), rsv1=True),
        Frame(Opcode.BINARY, compressed(bytes(3000)), fin=False, rsv1=True),
        Frame(Opcode.CONT, compressed(b"rest")),
    ]
    deflated_server = [
        Frame(Opcode.TEXT, compressed(b'{"seq":3}' * 40), rsv1=True),
        Frame(Opcode.BINARY, deflate_bomb(4), rsv1=True),  # 4 KB that inflate to 4 MiB
    ]
    return [
        (poll * 3, ok * 3),
        (post + poll, bad_request + ok),
        (post_chunked, ok),
        (sse_request, sse),
        (poll, not_modified + no_content),
        (poll, until_close),
        (UPGRADE + frames(client_frames, masked=True), switching(None) + frames(server_frames, masked=False)),
        (
            UPGRADE + frames(deflated_client, masked=True),
            switching(b"permessage-deflate; server_no_context_takeover") + frames(deflated_server, masked=False),
        ),
        (UPGRADE, b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nContent-Length: 5\r\n\r\nhello"),
    ]


#: What hostile peers put in the places a parser reads lengths and names from.
HOSTILE_LENGTHS = [
    b"\xc2\xb2", b"\xb2", b"-5", b"5, 6", b"5, 5", b" ", b"", b"0x10", b"1e3", b"+5",
    b"9" * 5000, b"0" * 5000 + b"7", b"18446744073709551616", b"\xff\xfe",
]
HOSTILE_CHUNK_SIZES = [b"zz", b"f" * 5000, b"0" * 5000 + b"5", b"fffffffffffffffff", b"-1", b"5;ext=\xff", b"", b"\xff"]
HOSTILE_EXTENSIONS = [
    b"permessage-deflate", b"permessage-deflate; client_no_context_takeover; server_no_context_takeover",
    b"permessage-deflate; server_max_window_bits=8", b"\xff\xfe", b";;;", b"x" * 3000,
]
HOSTILE_STATUS = [b"1\xb21", b"1" * 5000, b"", b"-101", b"101 101", b"\xc2\xb2\xc2\xb2"]


def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    """One to three random edits of ``data``."""
    out = bytearray(data)
    for what, at in random_edits(rng, out, kinds=10):
        if what == 0 and out:  # flip a bit
            i = rng.randrange(len(out))
            out[i] ^= 1 << rng.randrange(8)
        elif what == 1:  # truncate
            del out[at:]
        elif what == 2:  # insert random bytes
            out[at:at] = rng.randbytes(rng.randint(1, 40))
        elif what == 3 and out:  # delete a few bytes
            del out[at : at + rng.randint(1, 40)]
        elif what == 4:  # splice in part of another stream
            other = rng.choice(pool)
            start = rng.randrange(len(other) + 1)
            out[at:at] = other[start : start + rng.randint(1, 400)]
        elif what == 5:  # a hostile Content-Length
            out[:] = _replace_value(bytes(out), b"content-length:", rng.choice(HOSTILE_LENGTHS), rng)
        elif what == 6:  # a hostile chunk size, or chunked where it was not
            if b"chunked" in out:
                i = out.find(b"\r\n\r\n", out.find(b"chunked"))
                if i >= 0:
                    out[i + 4 : i + 4] = rng.choice(HOSTILE_CHUNK_SIZES) + b"\r\n"
            else:
                out[:] = _replace_value(bytes(out), b"content-length:", b"0\r\nTransfer-Encoding: chunked", rng)
        elif what == 7:  # a hostile extension list or status code
            out[:] = _replace_value(bytes(out), b"sec-websocket-extensions:", rng.choice(HOSTILE_EXTENSIONS), rng)
            if out.startswith(b"HTTP/1.1 ") and rng.random() < 0.5:
                out[9:12] = rng.choice(HOSTILE_STATUS)
        elif what == 8:  # an absurd frame length after the head
            i = out.find(b"\r\n\r\n")
            if i >= 0 and len(out) > i + 6:
                j = i + 5
                out[j] = (out[j] & 0x80) | rng.choice([126, 127])
                out[j + 1 : j + 1] = rng.choice([b"\xff\xff", (2**62).to_bytes(8, "big"), b"\x80" + bytes(7)])
        else:  # the head's end cut or doubled
            out[:] = bytes(out).replace(b"\r\n\r\n", rng.choice([b"\r\n", b"\n\n", b"\r\n\r\n\r\n\r\n"]), 1)
    return bytes(out)


def _replace_value(data: bytes, name: bytes, value: bytes, rng: random.Random) -> bytes:
    i = data.lower().find(name)
    if i < 0:
        if rng.random() < 0.5:
            return data
        end = data.find(b"\r\n")  # add the header after the start line
        return data if end < 0 else data[: end + 2] + name + b" " + value + data[end:]
    start = i + len(name)
    end = data.find(b"\r\n", start)
    return data[:start] + b" " + value + (data[end:] if end >= 0 else b"")


def pieces(rng: random.Random, data: bytes) -> list[bytes]:
    cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randint(0, 6)))
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:]) if b > a]


def capture_of(rng: random.Random, streams: list[tuple[bytes, bytes]], *, max_capture: int | None = None) -> Capture:
    """A capture filled the way the relay fills it: opened, chunks each way interleaved, EOF, closed."""
    capture = Capture(max_capture=max_capture) if max_capture is not None else Capture()
    capture.target = rng.choice(["http://127.0.0.1:8000/", "ws://127.0.0.1:8001/", "", "\xff<b>é</b>"])
    capture.link = rng.choice([None, *PRESETS.values(), Link(rtt_ms=100), Link(up_ms=20, down_ms=80, jitter_ms=5, seed=3)])
    t = 0.0
    for cid, (up, down) in enumerate(streams, start=rng.randint(1, 5)):
        conn = capture._open(cid, f"127.0.0.1:{40000 + cid}", t)
        capture._record(conn, "=", t, note=f"client {conn.client} connected")
        queue = [(">", p) for p in pieces(rng, up)], [("<", p) for p in pieces(rng, down)]
        while queue[0] or queue[1]:
            side = queue[rng.randrange(2)] if queue[0] and queue[1] else (queue[0] or queue[1])
            direction, data = side.pop(0)
            t += rng.random() * 0.01
            capture._record(conn, direction, t, data)
        if rng.random() < 0.2:
            conn.error = rng.choice(["ConnectionResetError: [Errno 104]", "\x00\xff"])
            capture._record(conn, "!", t, note=conn.error)
        if rng.random() < 0.8:
            capture._record(conn, "=", t, note="connection closed")
            capture._closed(conn, t)
    return capture


def views(capture: Capture, rng: random.Random) -> list[str]:
    """Every view, as text (and as HTML, which must not fail either)."""
    ids = sorted({c.conn for c in capture.log} | set(capture.conns))
    out = [
        str(capture.summary()),
        str(capture.http(body_limit=rng.choice([0, 20, 200]))),
        str(capture.frames()),
        str(capture.hexdump(limit=rng.choice([None, 0, 16, 512]))),
        str(capture.show()),
        repr(capture),
    ]
    capture.summary()._repr_html_()
    capture._repr_html_()
    for cid in ids:
        out += [str(capture.http(cid)), str(capture.frames(cid)), str(capture.hexdump(cid)), str(capture.show(cid))]
        capture.after_upgrade(cid)
    missing = max(ids, default=0) + 1
    for view in (capture.http, capture.frames, capture.hexdump, capture.show):
        with pytest.raises(KeyError, match=f"no connection #{missing}"):
            view(missing)
    return out


@pytest.fixture
def pool() -> list[tuple[bytes, bytes]]:
    return conversations()


def cases(seed: int, pool: list[tuple[bytes, bytes]]):
    """Lists of (up, down) connections until the time or the count runs out: mutated, or random bytes."""
    rng = random.Random(seed)
    flat = [s for pair in pool for s in pair]
    deadline = time.monotonic() + SECONDS
    for count in range(MAX_CASES):
        if time.monotonic() > deadline and count >= MIN_CASES:
            return
        streams = []
        for _ in range(rng.randint(1, 3)):
            up, down = rng.choice(pool)
            roll = rng.random()
            if roll < 0.1:
                up, down = rng.randbytes(rng.randint(0, 200)), rng.randbytes(rng.randint(0, 200))
            elif roll < 0.15:
                up, down = rng.choice([b"", up]), rng.choice([b"", down])
            else:
                if rng.random() < 0.6:
                    up = mutate(rng, up, flat)
                if rng.random() < 0.8:
                    down = mutate(rng, down, flat)
            streams.append((up, down))
        yield rng, streams


def test_every_view_of_a_mutated_capture_raises_nothing_undocumented(pool, bounded_memory):
    """http(), frames(), hexdump(), summary(), show(): text for any bytes; KeyError only for a missing connection."""
    slowest = 0.0
    for rng, streams in cases(SEED, pool):
        capture = capture_of(rng, streams)
        start = time.perf_counter()
        try:
            views(capture, rng)
        except Exception as error:  # pragma: no cover - what the fuzz is here to catch
            raise AssertionError(f"{type(error).__name__} from a view of {[(u[:80], d[:80]) for u, d in streams]}: {error}") from error
        slowest = max(slowest, time.perf_counter() - start)
    assert slowest < CASE_SECONDS, f"the slowest capture's views took {slowest:.2f} s"


def test_save_and_load_give_the_same_views_back(pool, tmp_path):
    """A saved capture loads with the same counters, connections, link and views (RFC-free: a file format)."""
    for number, (rng, streams) in enumerate(cases(SEED + 1, pool)):
        capture = capture_of(rng, streams, max_capture=rng.choice([None, 0, 2_000, 20_000]))
        path = capture.save(tmp_path / f"capture-{number % 4}.json")
        loaded = load(path)
        assert (loaded.bytes_up, loaded.bytes_down, loaded.dropped, loaded.dropped_events, loaded.forgotten) == (
            capture.bytes_up, capture.bytes_down, capture.dropped, capture.dropped_events, capture.forgotten)
        assert loaded.link == capture.link and loaded.target == capture.target
        assert loaded.log == capture.log and loaded.conns == capture.conns
        assert loaded.captured == capture.captured
        assert views(loaded, random.Random(number)) == views(capture, random.Random(number))


def test_a_full_capture_holds_no_more_than_max_capture_and_says_so(pool):
    """Payload and bookkeeping stay within max_capture (plus one record per open connection); the views note it."""
    for rng, streams in cases(SEED + 2, pool):
        limit = rng.choice([0, 500, 5_000, 50_000])
        capture = capture_of(rng, streams, max_capture=limit)
        kept = sum(len(c.data) + len(c.note) + CHUNK_COST for c in capture.log)
        open_records = sum(1 for c in capture.conns.values() if c.closed is None)
        assert kept + CONNECTION_COST * len(capture.conns) <= limit + CONNECTION_COST * open_records
        assert capture.bytes_up == sum(len(u) for u, _ in streams)
        assert capture.bytes_down == sum(len(d) for _, d in streams)
        if capture.truncated:
            for view in (capture.http(), capture.hexdump(), capture.frames()):
                assert str(view).splitlines()[1].startswith("! capture full"), str(view)[:300]


def test_load_refuses_what_is_not_a_capture(tmp_path):
    """load() of another JSON file is a ValueError that names the file."""
    path = tmp_path / "other.json"
    path.write_text('{"cells": []}')
    with pytest.raises(ValueError, match="is not a wslab capture"):
        load(path)


@pytest.mark.parametrize(
    "text, words",
    [
        ("[" * 100_000, "nested too deeply"),
        ('{"wslab_capture": 1, "target": ' + "[" * 50_000 + "]" * 50_000 + "}", "nested too deeply"),
        ('{"wslab_capture": 1, "target": "t", "bytes_up": 0, "bytes_down": 0, "dropped": 0, "connections": [], '
         '"log": [], "link": {"rtt_ms": ' + "[" * 900 + "]" * 900 + "}}", "damaged wslab capture"),
    ],
    ids=["deep-array", "deep-field", "deep-link"],
)
def test_load_of_deeply_nested_json_raises_value_error_not_recursion_error(tmp_path, text, words):
    """Issue 19: 372 of 120,374 fuzzed captures raised RecursionError, which load() does not document."""
    path = tmp_path / "deep.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=words) as info:
        load(path)
    assert str(path) in str(info.value)


def _damage(rng: random.Random, doc):
    """One random edit deep inside a saved capture's JSON: a key gone, or a value of another type."""
    node, path = doc, []
    for _ in range(4):
        if isinstance(node, dict) and node:
            key = rng.choice(sorted(node))
        elif isinstance(node, list) and node:
            key = rng.randrange(len(node))
        else:
            break
        path.append((node, key))
        if rng.random() < 0.4:
            break
        node = node[key]
    if not path:
        return [] if rng.random() < 0.5 else "x"
    parent, key = path[-1]
    if isinstance(parent, dict) and rng.random() < 0.3:
        del parent[key]
    else:
        parent[key] = rng.choice([None, True, -1, 2**70, 1.5, float("nan"), "", "!!!", "\udcff"[:0] + "é", [], {}, [1, "a"], {"a": 1}])
    return doc


def test_load_of_a_damaged_file_raises_only_value_error_that_names_it(pool, tmp_path):
    """load(): ValueError naming the file for bytes or JSON that are not a whole capture; what it loads, it shows."""
    import json

    for number, (rng, streams) in enumerate(cases(SEED + 3, pool)):
        path = capture_of(rng, streams).save(tmp_path / "capture.json")
        if rng.random() < 0.5:
            data = mutate(rng, path.read_bytes(), [b"\"log\": [", b"null", b"\xff"])
        else:
            data = json.dumps(_damage(rng, json.loads(path.read_text()))).encode()
        path.write_bytes(data)
        try:
            loaded = load(path)
        except ValueError as error:
            assert str(path) in str(error), error
            continue
        except Exception as error:  # pragma: no cover - what the fuzz is here to catch
            raise AssertionError(f"{type(error).__name__} from load() of {data[:300]!r}: {error}") from error
        views(loaded, random.Random(number))


def test_load_names_the_damaged_field(tmp_path):
    """Regression: a connection record without its fields was a TypeError, a bad base64 chunk a binascii.Error."""
    import json

    capture = Capture()
    conn = capture._open(1, "127.0.0.1:40000", 0.0)
    capture._record(conn, ">", 0.001, b"GET / HTTP/1.1\r\n\r\n")
    path = capture.save(tmp_path / "capture.json")
    doc = json.loads(path.read_text())
    del doc["connections"][0]["client"]
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"capture.json is a damaged wslab capture: connections\[0\]: no 'client'"):
        load(path)
    doc = json.loads(capture.save(path).read_text())
    doc["log"][0]["data"] = "!!!"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"log\[0\]: data is not base64"):
        load(path)
    path.write_bytes(b"\xff\xfe not json")
    with pytest.raises(ValueError, match="is not a wslab capture: not JSON"):
        load(path)


def test_the_views_take_time_linear_in_the_connections():
    """Regression: http() and frames() scanned the whole log once per connection (2,000 polls: 6 s, now 0.2 s)."""
    request = b"GET /poll?since=2 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"

    def fastest(connections: int) -> float:
        capture = Capture()
        for cid in range(1, connections + 1):
            conn = capture._open(cid, "127.0.0.1:40000", 0.0)
            for _ in range(3):
                capture._record(conn, ">", 0.0, request)
                capture._record(conn, "<", 0.0, answer)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            str(capture.http()), str(capture.frames())
            times.append(time.perf_counter() - start)
        return min(times)

    small, large = fastest(150), fastest(1500)
    assert large < 35 * small, f"10 times the connections took {large / small:.0f} times as long (linear: 10, quadratic: 100)"

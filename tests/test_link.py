"""The link emulator delays every byte as set, caps the rate, never reorders, counts exactly.

Every timing here is taken by an independent clock on both sides: a raw-socket
client and a raw-socket server, each in its own thread, each stamping with
``time.perf_counter()`` (system-wide CLOCK_MONOTONIC on Linux): never the
tap's own clock.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import struct
import threading
import time

import pytest

import wslab
from wslab.lab.link import PRESETS, Link, resolve

from .conftest import run, seconds

#: How far a measured median delay may sit above the one set (a shared, loaded CI machine).
LATE_MS = seconds(20.0)
#: How far below: the link never delivers early (the clock may wake a hair before).
EARLY_MS = 0.5


class StampingServer:
    """A blocking TCP server in a thread: stamps each 12-byte record (seq, client's send time) on arrival.

    With ``echo`` it sends each record straight back.
    """

    RECORD = struct.Struct("!Id")

    def __init__(self, *, echo: bool = True, records: bool = True) -> None:
        self.echo = echo
        self.records = records  # False: stamp each recv() as (bytes so far, 0, now) instead
        self.arrivals: list[tuple[int, float, float]] = []  # (seq, sent by client, arrived here)
        self.raw = bytearray()
        self.got = threading.Event()  # set at the first record
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(seconds(20))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(seconds(20))
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            buf = b""
            for _ in range(1_000_000):  # bounded: until EOF
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                now = time.perf_counter()
                if not data:
                    return
                self.raw += data
                if not self.records:
                    self.arrivals.append((len(self.raw), 0.0, now))
                    continue
                buf += data
                while len(buf) >= self.RECORD.size:
                    seq, sent = self.RECORD.unpack(buf[: self.RECORD.size])
                    self.arrivals.append((seq, sent, now))
                    self.got.set()
                    if self.echo:
                        conn.sendall(buf[: self.RECORD.size])
                    buf = buf[self.RECORD.size :]

    def close(self) -> None:
        self.sock.close()
        self.thread.join(seconds(5))


def client_socket(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=seconds(20))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    for _ in range(100_000):
        if len(data) >= n:
            return data
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise AssertionError(f"EOF after {len(data)} of {n} bytes")
        data += chunk
    raise AssertionError("too many reads")


def ping(sock: socket.socket, count: int) -> list[tuple[int, float, float]]:
    """Send ``count`` records one at a time; -> (seq, sent, back) stamped by this thread."""
    out = []
    for seq in range(count):
        sent = time.perf_counter()
        sock.sendall(StampingServer.RECORD.pack(seq, sent))
        echoed = recv_exactly(sock, StampingServer.RECORD.size)
        back = time.perf_counter()
        assert StampingServer.RECORD.unpack(echoed)[0] == seq
        out.append((seq, sent, back))
    return out


def test_round_trip_and_each_one_way_delay_match_the_link_by_independent_clocks():
    """Up 20 ms and down 80 ms: the server sees each record 20 ms after it left, the client gets it back 100 ms after."""
    server = StampingServer()
    tap = wslab.wiretap_in_thread(("127.0.0.1", server.port), name="link-rtt", link=Link(up_ms=20, down_ms=80))
    try:
        with client_socket(tap.port) as sock:
            pings = ping(sock, 12)
    finally:
        tap.stop()
        server.close()
    # The first record also paid TCP's handshake (tested below): leave it out.
    rtts = [(back - sent) * 1000 for _, sent, back in pings][1:]
    ups = [(arrived - sent) * 1000 for _, sent, arrived in server.arrivals][1:]
    downs = [(back - arrived) * 1000 for (_, _, back), (_, _, arrived) in zip(pings, server.arrivals)][1:]
    assert min(rtts) >= 100 - EARLY_MS and statistics.median(rtts) <= 100 + LATE_MS, rtts
    assert min(ups) >= 20 - EARLY_MS and statistics.median(ups) <= 20 + LATE_MS, ups
    assert min(downs) >= 80 - EARLY_MS and statistics.median(downs) <= 80 + LATE_MS, downs
    assert tap.bytes_up == tap.bytes_down == 12 * StampingServer.RECORD.size


def test_a_task_mode_tap_delays_an_asyncio_client_by_the_round_trip():
    """``wiretap(target, rtt_ms=60)`` on the running loop; a raw blocking server in a thread answers."""
    server = StampingServer()

    async def main():
        tap = await wslab.wiretap(("127.0.0.1", server.port), name="link-task", rtt_ms=60)
        try:
            reader, writer = await asyncio.open_connection(tap.host, tap.port)
            rtts = []
            for seq in range(9):
                sent = time.perf_counter()
                writer.write(StampingServer.RECORD.pack(seq, sent))
                await reader.readexactly(StampingServer.RECORD.size)
                rtts.append((time.perf_counter() - sent) * 1000)
            writer.close()
            return tap, rtts[1:]  # the first paid TCP's handshake too (tested below)
        finally:
            await tap.aclose()

    try:
        tap, rtts = run(main(), timeout=20)
    finally:
        server.close()
    assert tap.link == Link(rtt_ms=60)
    assert min(rtts) >= 60 - EARLY_MS and statistics.median(rtts) <= 60 + LATE_MS, rtts


def test_the_rate_cap_spreads_a_burst_over_its_serialisation_time():
    """At 800 kbit/s (100,000 bytes/s) one way, 60,000 bytes take 0.6 s to reach the server; the other way is free."""
    server = StampingServer(echo=False, records=False)
    size = 60_000
    tap = wslab.wiretap_in_thread(("127.0.0.1", server.port), name="link-rate", link=Link(up_kbps=800))
    try:
        with client_socket(tap.port) as sock:
            started = time.perf_counter()
            sock.sendall(bytes(size))
            sock.shutdown(socket.SHUT_WR)
            server.thread.join(seconds(10))  # the server returns at EOF, after the last byte
    finally:
        tap.stop()
        server.close()
    assert len(server.raw) == size and tap.bytes_up == size
    # The last record is stamped when its bytes arrived: the whole burst's time on the link.
    elapsed = server.arrivals[-1][2] - started
    assert 0.6 * 0.95 <= elapsed <= 0.6 + seconds(0.25), elapsed


def test_jitter_varies_the_delay_but_never_reorders_a_stream():
    """Sequence numbers through a 20 ms ± 15 ms link, one record at a time: every record in order, none lost."""
    server = StampingServer(echo=False)
    tap = wslab.wiretap_in_thread(("127.0.0.1", server.port), name="link-order", link=Link(rtt_ms=40, jitter_ms=15, seed=1))
    count = 300
    try:
        with client_socket(tap.port) as sock:
            for seq in range(count):
                sock.sendall(StampingServer.RECORD.pack(seq, time.perf_counter()))
                # Send the next record once the tap has read this one (its counter, readable from any
                # thread), so it reads them one by one even on a loaded machine; bounded in time.
                deadline = time.perf_counter() + seconds(2)
                while tap.bytes_up < (seq + 1) * StampingServer.RECORD.size and time.perf_counter() < deadline:
                    time.sleep(0.0001)  # lets the tap's thread run (the GIL); the loop waits on its counter
            sock.shutdown(socket.SHUT_WR)
            server.thread.join(seconds(10))
    finally:
        tap.stop()
        server.close()
    seqs = [seq for seq, _, _ in server.arrivals]
    assert seqs == list(range(count))
    delays = [(arrived - sent) * 1000 for _, sent, arrived in server.arrivals]
    assert min(delays) >= 20 - 15 - EARLY_MS
    assert max(delays) - min(delays) > 5, "jitter should spread the delays"
    assert len(tap.chunks) > 10, "the tap should have read many chunks"


def test_bytes_and_half_close_cross_a_slow_link_exactly():
    """Random payloads up and an echo down through 3G: both ends agree with the tap's counts; EOF comes after the data."""
    import random

    rng = random.Random(5)
    payload = rng.randbytes(150_000)

    async def main():
        async def echo(reader, writer):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.write(b"bye")
            await writer.drain()
            writer.close()

        srv = await asyncio.start_server(echo, "127.0.0.1", 0)
        tap = await wslab.wiretap(("127.0.0.1", srv.sockets[0].getsockname()[1]), name="link-bytes",
                                  link=Link(rtt_ms=10, rate_kbps=8_000))
        try:
            reader, writer = await asyncio.open_connection(tap.host, tap.port)
            writer.write(payload)
            await writer.drain()
            writer.write_eof()
            got = b""
            for _ in range(10_000):
                chunk = await reader.read(65536)
                if not chunk:
                    break
                got += chunk
            writer.close()
            return tap, got
        finally:
            await tap.aclose()
            srv.close()

    tap, got = run(main(), timeout=30)
    assert got == payload + b"bye"
    assert tap.bytes_up == len(payload) and tap.bytes_down == len(payload) + 3
    assert tap.streams(1) == (payload, payload + b"bye")


def test_presets_and_shortcuts_resolve_to_links():
    assert set(PRESETS) >= {"same-city", "cross-ocean", "3g"}
    g3 = PRESETS["3g"]
    assert (g3.round_trip_ms, g3.up_rate_kbps, g3.down_rate_kbps) == (300, 768, 1600)
    assert resolve("3g", rtt_ms=500).round_trip_ms == 500 and resolve("3g", rtt_ms=500).down_rate_kbps == 1600
    assert resolve(rtt_ms=100) == Link(rtt_ms=100)
    assert resolve(None) is None
    assert Link(rtt_ms=100).up_delay_ms == Link(rtt_ms=100).down_delay_ms == 50
    assert Link(up_ms=30, rtt_ms=100).down_delay_ms == 70
    assert Link(up_ms=20, down_ms=80).rtt_ms == 100 == Link(up_ms=20, down_ms=80).round_trip_ms
    assert "3g" in str(g3) and "768 kbit/s up" in str(g3)


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: Link(rtt_ms=-1), "rtt_ms=-1"),
        (lambda: Link(rate_kbps=0), "rate_kbps=0"),
        (lambda: Link(jitter_ms="5"), "jitter_ms='5'"),
        (lambda: Link(up_ms=10, down_ms=10, rtt_ms=100), "add up to 20"),
        (lambda: Link(up_ms=30), "one-way delay 30 ms is more than rtt_ms=0"),  # was a -30 ms way down
        (lambda: Link(down_ms=150, rtt_ms=100), "one-way delay 150 ms is more than rtt_ms=100"),
        (lambda: resolve("4g"), "no link preset '4g'"),
        (lambda: resolve(100), "link must be a wslab.Link"),
    ],
)
def test_a_bad_link_is_refused_with_the_value_named(make, words):
    with pytest.raises((ValueError, TypeError)) as info:
        make()
    assert words in str(info.value)


def test_stop_is_bounded_while_bytes_wait_on_a_long_link():
    """The echo is held by a 40 s downlink: stop() returns at once, the client sees the close, nothing more."""
    server = StampingServer()
    tap = wslab.wiretap_in_thread(("127.0.0.1", server.port), name="link-stop", link=Link(up_ms=0, down_ms=40_000, handshake=False))
    try:
        with client_socket(tap.port) as sock:
            sock.sendall(StampingServer.RECORD.pack(1, time.perf_counter()))
            assert server.got.wait(seconds(5)), "the record should cross the 0 ms uplink"
            started = time.perf_counter()
            tap.stop()
            assert time.perf_counter() - started < seconds(4)
            sock.settimeout(seconds(5))
            try:
                assert sock.recv(10) == b""
            except ConnectionError:
                pass
    finally:
        server.close()
    assert tap.bytes_down in (0, StampingServer.RECORD.size)  # perhaps read by the tap; never delivered


@pytest.mark.parametrize("handshake, expected_ms", [(True, 60 + 20), (False, 20)])
def test_a_new_connection_pays_the_tcp_handshake_round_trip(handshake, expected_ms):
    """Up 20 ms, down 40 ms: bytes sent right after connect() reach the server after 60 + 20 ms (SYN, SYN-ACK, data), or 20 without."""
    server = StampingServer(echo=False)
    link = Link(up_ms=20, down_ms=40, handshake=handshake)
    tap = wslab.wiretap_in_thread(("127.0.0.1", server.port), name="link-syn", link=link)
    try:
        started = time.perf_counter()
        with client_socket(tap.port) as sock:
            sock.sendall(StampingServer.RECORD.pack(0, started))
            assert server.got.wait(seconds(5))
    finally:
        tap.stop()
        server.close()
    arrived = (server.arrivals[0][2] - started) * 1000
    # Late by a loaded machine's scheduling is fine; early never is. The bound still tells 20 from 80.
    assert expected_ms - EARLY_MS <= arrived <= expected_ms + max(LATE_MS, seconds(35)), arrived


def _greeting_ms(handshake: bool) -> float:
    """Milliseconds from connect() until a greeting sent at accept() reached the client, over
    up 20 ms, down 40 ms. A raw blocking server in a thread greets; the client stamps with its own clock."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(seconds(10))

    def greet():
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.sendall(b"220 hello\r\n")
            conn.settimeout(seconds(10))
            try:
                conn.recv(10)  # until the client closes
            except OSError:
                pass

    thread = threading.Thread(target=greet, daemon=True)
    thread.start()
    tap = wslab.wiretap_in_thread(("127.0.0.1", listener.getsockname()[1]), name="link-greet",
                                  link=Link(up_ms=20, down_ms=40, handshake=handshake))
    try:
        started = time.perf_counter()
        with client_socket(tap.port) as sock:
            assert recv_exactly(sock, 11) == b"220 hello\r\n"
            return (time.perf_counter() - started) * 1000
    finally:
        tap.stop()
        listener.close()
        thread.join(seconds(10))


@pytest.mark.parametrize("handshake, expected_ms", [(True, 2 * 60), (False, 40)])
def test_a_server_that_speaks_first_is_heard_after_the_whole_handshake(handshake, expected_ms):
    """Up 20 ms, down 40 ms: a greeting sent at accept() reaches the client 120 ms after connect()
    (SYN 20, SYN-ACK 40, ACK 20, then the greeting 40), or 40 without the handshake."""
    arrived: list[float] = []
    for _ in range(3):  # a loaded machine only adds delay (140 ms once): the best of three is the link's
        arrived.append(_greeting_ms(handshake))
        if arrived[-1] <= expected_ms + LATE_MS:
            break
    assert min(arrived) >= expected_ms - EARLY_MS, arrived  # never early, on any try
    assert min(arrived) <= expected_ms + LATE_MS, arrived


def test_a_long_transfer_runs_at_the_capped_rate_and_the_link_pushes_back():
    """2 MB through a 16,000 kbit/s (2 MB/s) uplink arrive at 2 MB/s by the server's clock; the relay holds at most its limit."""
    import wslab.lab.link as link_module

    server = StampingServer(echo=False, records=False)
    size = 2_000_000
    most = [0]
    original = link_module.Pipe.send

    def send(self, data):  # watch what the pipe holds
        original(self, data)
        most[0] = max(most[0], self.queued)

    link_module.Pipe.send = send
    tap = wslab.wiretap_in_thread(("127.0.0.1", server.port), name="link-long", link=Link(up_kbps=16_000, handshake=False))
    try:
        with client_socket(tap.port) as sock:
            block = bytes(60_000)
            for _ in range(size // len(block)):
                sock.sendall(block)
            sock.sendall(bytes(size % len(block)))
            sock.shutdown(socket.SHUT_WR)
            server.thread.join(seconds(15))
    finally:
        link_module.Pipe.send = original
        tap.stop()
        server.close()
    assert len(server.raw) == size == tap.bytes_up
    first_bytes, _, first = server.arrivals[0]
    last = server.arrivals[-1][2]
    took = last - first  # after the first read, by the server's clock
    at_cap = (size - first_bytes) / 2e6  # what the rest takes at 2 MB/s
    # Never faster than the cap (10 % for the shaper's bursts); slower only by the machine's load.
    assert at_cap / 1.1 <= took <= at_cap + seconds(0.2), (took, at_cap)
    limit = link_module.Shaper(Link(up_kbps=16_000), ">").limit  # a quarter second of the link: 500,000 bytes
    assert limit == 500_000 and most[0] <= limit + 65536, most[0]  # at most one read past the limit


def test_a_saved_capture_remembers_its_link(tmp_path):
    tap = wslab.wiretap_in_thread(("127.0.0.1", 9), name="link-save", link="3g")
    tap.stop()
    loaded = wslab.Capture.load(tap.save(tmp_path / "3g.json"))
    assert loaded.link == PRESETS["3g"] and "over 3g: 150 ms up" in str(loaded.summary())


def test_short_polls_keep_their_cadence_over_a_round_trip():
    """Lesson 01, section 9: wslab's short-poll client sends a poll every interval whatever the answers take,
    so over a 100 ms round trip its polls still reach the server 250 ms apart (a loop that waits 250 ms
    after each answer would reach it every 350 ms). A raw asyncio HTTP server stamps each arrival."""
    arrivals: list[float] = []

    async def handle(reader, writer):
        body = b'{"events":[],"cursor":0}'
        try:
            for _ in range(100):
                await reader.readuntil(b"\r\n\r\n")
                arrivals.append(time.perf_counter())
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        tap = await wslab.wiretap(f"http://127.0.0.1:{port}/", name="link-cadence", rtt_ms=100)
        try:
            with pytest.raises(wslab.transports.ReceiveTimeout):
                await wslab.receive("short_poll", {"http": tap.url, "ws": "ws://127.0.0.1:9/"}, 1, timeout=1.6, interval=0.25)
        finally:
            await tap.aclose()
            server.close()

    run(main(), timeout=20)
    gaps = [(b - a) * 1000 for a, b in zip(arrivals, arrivals[1:])]
    assert len(gaps) >= 3, arrivals
    # 250 ms apart (slack scaled, but never up to the 350 ms of a loop that waits after each answer)
    assert 200 < statistics.median(gaps) < min(250 + seconds(0.05) * 1000, 340), gaps


# Parameters validated where they enter; one bad tap never harms another (issue 19)


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: Link(rate_kbps=1e-12), "rate_kbps=1e-12: give kilobits per second from 0.1 to 100,000,000"),
        (lambda: Link(rate_kbps=1e308), "rate_kbps=1e+308"),
        (lambda: Link(up_kbps=float("inf")), "up_kbps=inf"),
        (lambda: Link(down_kbps=float("nan")), "down_kbps=nan"),
        (lambda: Link(jitter_ms=1e308), "jitter_ms=1e+308: give milliseconds, a number from 0 up to an hour"),
        (lambda: Link(rtt_ms=float("nan")), "rtt_ms=nan"),
        (lambda: resolve("3g", rate_kbps=1e-12), "rate_kbps=1e-12"),
        (lambda: wslab.wiretap_in_thread(("127.0.0.1", 9), name="bad", rtt_ms=float("inf")), "rtt_ms=inf"),
    ],
)
def test_a_link_outside_its_documented_range_is_refused_where_it_enters(make, words):
    with pytest.raises(ValueError) as info:
        make()
    assert words in str(info.value)


def test_a_clock_entry_that_cannot_be_waited_for_never_harms_another_tap():
    """Issue 19: ``Link(rate_kbps=1e-12)`` put an entry 1e11 years away on the process-wide clock;
    waiting for it raised OverflowError in the clock thread, and a sane tap then lost round trips."""
    from wslab.lab.link import CLOCK

    async def far_away():
        loop = asyncio.get_running_loop()
        CLOCK.at(time.monotonic() + 1e300, loop, lambda: None)  # what that link's pipe asked for
        with pytest.raises(ValueError, match="finite"):
            CLOCK.at(float("inf"), loop, lambda: None)

    asyncio.run(far_away())
    server = StampingServer()
    tap = wslab.wiretap_in_thread(("127.0.0.1", server.port), name="link-sane", link=Link(rtt_ms=20))
    try:
        with client_socket(tap.port) as sock:
            sock.settimeout(seconds(5))
            pings = ping(sock, 20)
    finally:
        tap.stop()
        server.close()
    rtts = [(back - sent) * 1000 for _, sent, back in pings][1:]
    assert len(pings) == 20 and min(rtts) >= 20 - EARLY_MS, rtts
    assert CLOCK._thread is not None and CLOCK._thread.is_alive()


def test_a_connection_buffers_at_most_4_mib_per_direction_whatever_the_link():
    """Issue 19: behind ``Link(rtt_ms=1000, jitter_ms=999, rate_kbps=1e7)`` a peer that never read
    made one connection hold 1,020 MiB: the in-flight bound was rate x delay, without a cap."""
    from wslab.lab.link import MAX_IN_FLIGHT, Shaper

    huge = Link(rtt_ms=1000, jitter_ms=999, rate_kbps=1e7)
    fastest = Link(rtt_ms=3_600_000, jitter_ms=3_600_000, rate_kbps=100_000_000)
    assert MAX_IN_FLIGHT == 4 * 1024 * 1024
    assert [Shaper(link, way).limit for link in (huge, fastest) for way in "<>"] == [MAX_IN_FLIGHT] * 4
    assert Shaper(Link(up_kbps=16_000), ">").limit == 500_000  # below the cap: a quarter second of the link

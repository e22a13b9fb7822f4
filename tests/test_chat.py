"""The class chat room, against websockets' own client and httpx, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import wslab
from wslab import chat

from .conftest import run, seconds


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
    table = chat.measure_fanout([1000], rounds=1, timeout=seconds(60))
    assert table.rows[0][0] == 1000
    (measured,) = table.raw[1000]
    assert measured["first"] <= measured["median"] <= measured["last"]
    assert measured["room_us"] > 0 and measured["bare_us"] > 0
    assert "fanout" not in str(wslab.status())


@pytest.mark.parametrize("hub, expected", [(True, "page"), (False, 403)])
def test_under_jupyterhub_the_hubs_own_page_origin_is_let_in(monkeypatch, hub, expected):
    """Through the hub and jupyter-server-proxy, Origin is the hub and Host is passed through."""
    if hub:
        monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/ada/")
    else:
        monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)

    async def main():
        room = await wslab.chat_room(name="t-hub")
        port = room.server.port
        sock = socket.create_connection(("127.0.0.1", port))
        try:
            async with connect(f"ws://hub.test:{port}/?nick=page", sock=sock,
                               origin=f"https://hub.test:{port}") as ws:
                return (await recv_json(ws))["nick"]
        except InvalidStatus as exc:
            return exc.response.status_code
        finally:
            sock.close()

    assert run(main()) == expected


def test_raise_fd_limit_raises_the_soft_limit_up_to_the_hard_one():
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        wanted = soft + 16 if hard == resource.RLIM_INFINITY else min(soft + 16, hard)
        assert chat.raise_fd_limit(wanted) == wanted
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == wanted
        assert chat.raise_fd_limit(1) == wanted  # never lowers it
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_measure_fanout_refuses_nonsense_counts():
    with pytest.raises(ValueError, match="counts must be positive"):
        chat.measure_fanout([0])

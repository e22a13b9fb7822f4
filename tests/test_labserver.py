"""The lab server: polling, long polling, SSE and WebSocket push of one source (wslab/lab/labserver.py).

The peers are independent: httpx for HTTP, the websockets client, raw sockets.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import time

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus

import wslab
from wslab.lab.events import poisson
from wslab.lab.labserver import lab_server, lab_server_in_thread

from .conftest import end_child, run, seconds, within


async def until(condition, what: str, limit: float = 5) -> None:
    """Wait until ``condition()`` holds, checking at most every millisecond, bounded in time."""
    async with asyncio.timeout(seconds(limit)):
        while not condition():
            await asyncio.sleep(0.001)


def test_poll_answers_at_once_with_the_events_after_the_cursor():
    async def main():
        lab = await lab_server()
        try:
            async with httpx.AsyncClient() as client:
                empty = (await client.get(lab.http_url + "poll", params={"since": 0})).json()
                lab.publish("a"), lab.publish("b"), lab.publish("c")
                some = (await client.get(lab.http_url + "poll", params={"since": 1})).json()
            return empty, some, lab.requests["poll"], lab.empty["poll"]
        finally:
            await lab.aclose()

    empty, some, requests, empties = run(main())
    assert empty == {"events": [], "cursor": 0}
    assert [e["seq"] for e in some["events"]] == [2, 3] and some["cursor"] == 3
    assert [e["data"] for e in some["events"]] == ["b", "c"]
    assert (requests, empties) == (2, 1)


@pytest.mark.parametrize("endpoint", ["poll", "longpoll", "events"])
@pytest.mark.parametrize("cursor, problem", [("abc", "not a whole number"), ("-2", "negative"), ("9", "from the future")])
def test_a_malformed_or_future_cursor_gets_400_naming_the_value(endpoint, cursor, problem):
    async def main():
        lab = await lab_server()
        lab.publish()
        try:
            async with httpx.AsyncClient() as client:
                return await client.get(lab.http_url + endpoint, params={"since": cursor})
        finally:
            await lab.aclose()

    response = run(main())
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["value"] == cursor and body["newest"] == 1
    assert problem in body["message"] and "from 0 to 1" in body["hint"]


def test_a_bad_last_event_id_gets_400_too():
    async def main():
        lab = await lab_server()
        try:
            async with httpx.AsyncClient() as client:
                return await client.get(lab.http_url + "events", headers={"Last-Event-ID": "7"})
        finally:
            await lab.aclose()

    response = run(main())
    assert response.status_code == 400 and response.json()["value"] == "7"


@pytest.mark.parametrize("query", ["timeout=soon", "timeout=-1", "timeout=nan", "timeout=1e9"])
def test_a_bad_long_poll_timeout_gets_400(query):
    async def main():
        lab = await lab_server()
        try:
            async with httpx.AsyncClient() as client:
                return await client.get(lab.http_url + "longpoll?since=0&" + query)
        finally:
            await lab.aclose()

    response = run(main())
    assert response.status_code == 400 and response.json()["error"] == "bad timeout"


def test_a_websocket_handshake_with_a_bad_cursor_gets_400():
    async def main():
        lab = await lab_server()
        try:
            with pytest.raises(InvalidStatus) as info:
                async with connect(lab.ws_url + "?since=nope"):
                    pass
            return info.value.response
        finally:
            await lab.aclose()

    response = run(main())
    assert response.status_code == 400
    assert json.loads(response.body)["value"] == "nope"


def test_a_long_poll_is_held_until_an_event_comes():
    async def main():
        lab = await lab_server()
        try:
            async with httpx.AsyncClient() as client:
                request = asyncio.ensure_future(client.get(lab.http_url + "longpoll", params={"since": 0}))
                await until(lambda: lab.held == 1, "the long poll is held")
                assert not request.done()
                event = lab.publish("late")
                body = (await request).json()
                return event, body, time.time()
        finally:
            await lab.aclose()

    event, body, answered = run(main())
    assert [e["seq"] for e in body["events"]] == [event.seq] and body["cursor"] == event.seq
    assert event.created <= answered


def test_a_long_poll_that_times_out_gets_an_empty_answer():
    async def main():
        lab = await lab_server()
        try:
            async with httpx.AsyncClient() as client:
                response = await client.get(lab.http_url + "longpoll", params={"since": 0, "timeout": 0.05})
            return response, lab.empty["longpoll"]
        finally:
            await lab.aclose()

    response, empties = run(main())
    assert response.status_code == 200 and response.json() == {"events": [], "cursor": 0}
    assert empties == 1


async def read_sse(response, n: int) -> list[tuple[str | None, str]]:
    """(id, data) of the next ``n`` events of a text/event-stream, read with httpx."""
    events, event_id, data = [], None, []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                events.append((event_id, "\n".join(data)))
                if len(events) == n:
                    return events
            event_id, data = None, []
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
    return events


def test_sse_streams_events_with_ids_on_one_response():
    async def main():
        lab = await lab_server()
        try:
            async with httpx.AsyncClient(timeout=seconds(5)) as client:
                async with client.stream("GET", lab.http_url + "events", params={"since": 0}) as response:
                    for i in range(3):
                        lab.publish(i)
                    got = await read_sse(response, 3)
                    return response.headers, got, lab.requests["events"]
        finally:
            await lab.aclose()

    headers, got, requests = run(main())
    assert headers["content-type"] == "text/event-stream"
    assert headers.get("transfer-encoding") == "chunked" and "content-length" not in headers
    assert [i for i, _ in got] == ["1", "2", "3"]
    assert [json.loads(d)["data"] for _, d in got] == [0, 1, 2]
    assert requests == 1


def test_sse_resumes_after_the_last_event_id():
    async def main():
        lab = await lab_server()
        lab.source.publish_many(range(5))
        try:
            async with httpx.AsyncClient(timeout=seconds(5)) as client:
                async with client.stream("GET", lab.http_url + "events", headers={"Last-Event-ID": "3"}) as r:
                    return await read_sse(r, 2), lab.requests["resumes"]
        finally:
            await lab.aclose()

    got, resumes = run(main())
    assert [i for i, _ in got] == ["4", "5"] and resumes == 1


def test_end_streams_ends_open_sse_responses():
    async def main():
        lab = await lab_server()
        try:
            async with httpx.AsyncClient(timeout=seconds(5)) as client:
                async with client.stream("GET", lab.http_url + "events") as response:
                    await until(lambda: lab.held == 1, "the stream is open")
                    lab.end_streams()
                    return [line async for line in response.aiter_lines()]
        finally:
            await lab.aclose()

    assert run(main()) == ["retry: 1000", "id: 0", ""]


def test_websocket_pushes_each_event_as_a_json_message():
    async def main():
        lab = await lab_server()
        lab.publish("old")
        try:
            async with connect(lab.ws_url + "?since=1", compression=None) as ws:
                lab.publish("new")
                return json.loads(await ws.recv()), ws.response.headers.get("Sec-WebSocket-Extensions")
        finally:
            await lab.aclose()

    message, extensions = run(main())
    assert message["seq"] == 2 and message["data"] == "new" and extensions is None


def test_the_index_page_sets_a_cookie_the_server_does_not_remember():
    """Statelessness, on a raw socket: the memory is the cookie the client sends back."""

    async def exchange(port: int, cookie: str = "") -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        extra = f"Cookie: {cookie}\r\n" if cookie else ""
        writer.write(f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Connection: close\r\n\r\n".encode())
        data = await reader.read()
        writer.close()
        return data

    async def main():
        lab = await lab_server()
        try:
            return await exchange(lab.port), await exchange(lab.port, "visitor=1"), await exchange(lab.port)
        finally:
            await lab.aclose()

    first, again, stranger = run(main())
    assert first.startswith(b"HTTP/1.1 200 OK\r\n") and b"Set-Cookie: visitor=1" in first
    assert b"Set-Cookie" not in again and b"welcome back, visitor 1" in again
    assert b"Set-Cookie: visitor=3" in stranger and b"new visitor" in stranger


@pytest.mark.parametrize("mode", ["task", "thread"])
def test_the_server_stops_cleanly_with_clients_still_connected(mode):
    async def main():
        lab = await lab_server() if mode == "task" else lab_server_in_thread()
        assert lab in wslab.servers.servers() and lab.mode == mode
        async with httpx.AsyncClient(timeout=seconds(10)) as client:
            long_poll = asyncio.ensure_future(client.get(lab.http_url + "longpoll", params={"since": 0}))

            async def stream():
                async with client.stream("GET", lab.http_url + "events") as response:
                    return [line async for line in response.aiter_lines()]

            sse = asyncio.ensure_future(stream())
            ws = await connect(lab.ws_url)
            await until(lambda: lab.held == 3, "three held requests")
            async with asyncio.timeout(seconds(lab.stop_timeout + 1)):
                await lab.aclose()
            polled, streamed = (await long_poll).json(), await sse
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            return lab, polled, streamed, ws.close_code

    lab, polled, streamed, close_code = run(main())
    assert polled == {"events": [], "cursor": 0}
    assert streamed == ["retry: 1000", "id: 0", ""]
    assert close_code == 1001
    assert not lab.running and lab not in wslab.servers.servers()


def test_a_thread_mode_server_takes_events_from_any_thread_and_stop_all_stops_it():
    lab = lab_server_in_thread(name="lab-thread")
    event = lab.publish("from the main thread")
    response = httpx.get(lab.http_url + "poll?since=0", timeout=seconds(5))
    assert response.json()["events"][0]["seq"] == event.seq
    assert "lab-thread" in str(wslab.status())
    wslab.stop_all()
    assert not lab.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(lab.http_url + "poll", timeout=seconds(5))


def test_starting_a_lab_under_a_taken_name_replaces_the_old_one():
    first = lab_server_in_thread(name="lab")
    second = lab_server_in_thread(name="lab")
    assert not first.running and second.running
    second.stop()


def test_a_lab_uses_the_source_it_is_given_even_an_empty_one_and_can_take_a_clock():
    from wslab.lab.events import EventSource

    source = EventSource(seed=9)
    lab = lab_server_in_thread(name="lab-given", source=source)
    other = lab_server_in_thread(name="lab-clock", clock=lambda: 42.0)
    try:
        assert lab.source is source
        assert other.publish().created == 42.0
    finally:
        lab.stop()
        other.stop()


@pytest.mark.parametrize("endpoint", ["longpoll", "events"])
def test_a_client_that_hangs_up_during_a_held_request_is_let_go(endpoint):
    async def main():
        lab = await lab_server()
        try:
            reader, writer = await asyncio.open_connection(lab.host, lab.port)
            writer.write(f"GET /{endpoint}?since=0 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            await until(lambda: lab.held == 1, "the request is held")
            writer.close()
            await until(lambda: lab.held == 0, "the server let the request go")
            lab.publish("after the hang-up")  # nobody to write to: no error either
            async with httpx.AsyncClient() as client:
                alive = await client.get(lab.http_url + "poll", params={"since": 0})
            return alive.json(), lab.errors
        finally:
            await lab.aclose()

    answer, errors = run(main())
    assert [e["data"] for e in answer["events"]] == ["after the hang-up"]
    assert errors == []


# WebSocket push (issue 15.4): each event serialised once and broadcast() to the caught-up
# connections; the ones behind catch up from their cursor. The guarantees, checked with the
# websockets client: every event once, in order, from the cursor, for fast and slow readers.


async def read_seqs(ws, until_seq: int) -> list[int]:
    """The seqs a client receives until it has ``until_seq`` (bounded by the caller's timeout)."""
    seqs: list[int] = []
    while not seqs or seqs[-1] < until_seq:
        seqs.append(json.loads(await ws.recv())["seq"])
    return seqs


@pytest.mark.parametrize("fanout", ["broadcast", "each"])
def test_every_client_gets_every_event_after_its_cursor_once_in_order_while_events_keep_coming(fanout):
    """Clients join at random moments of a fast schedule published from another thread."""
    import random
    import threading

    lab = lab_server_in_thread(name="lab-push", fanout=fanout)
    total = 600
    stop = threading.Event()

    def publisher():
        for i in range(total):
            lab.publish(i)
            if i % 3 == 0:
                time.sleep(0.001)  # the schedule: joins land between bursts and inside them
        stop.set()

    async def main():
        rng = random.Random(5)
        clients = []
        thread = threading.Thread(target=publisher)
        thread.start()
        try:
            for k in range(24):
                newest = lab.source.newest
                cursor = rng.choice([0, newest, rng.randint(0, newest)])
                clients.append((cursor, await connect(f"{lab.ws_url}?since={cursor}", compression=None)))
                await asyncio.sleep(rng.random() * 0.01)  # the schedule, not synchronisation
            got = await asyncio.gather(*(read_seqs(ws, total) for cursor, ws in clients if cursor < total))
            got += [[] for cursor, _ in clients if cursor == total]  # joined after the last event
            clients.sort(key=lambda client: client[0] == total)
        finally:
            thread.join(seconds(10))
            for _, ws in clients:
                await ws.close()
        return [(cursor, seqs) for (cursor, _), seqs in zip(clients, got)]

    try:
        results = run(main(), timeout=30)
    finally:
        lab.stop()
    for cursor, seqs in results:
        assert seqs == list(range(cursor + 1, total + 1)), f"client from cursor {cursor}"
    assert lab.errors == []
    if fanout == "broadcast":
        assert lab.pusher.stats["broadcasts"] > 0


def test_a_client_that_stops_reading_leaves_the_broadcast_catches_up_and_loses_nothing():
    async def main():
        lab = await lab_server()
        try:
            fast = await connect(lab.ws_url, compression=None)
            small = socket.socket()
            small.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window, set before connecting
            small.connect((lab.host, lab.ws_port))
            small.setblocking(False)
            slow = await connect(lab.ws_url, compression=None, max_queue=1, sock=small)  # reads nothing for now
            await until(lambda: len(lab.pusher.members) == 2, "both joined the broadcast")
            n = 400
            fast_got = asyncio.ensure_future(read_seqs(fast, n))
            most = 0
            for i in range(n):
                lab.publish("x" * 10_000)  # 4 MB in all: more than the sockets hold
                await asyncio.sleep(0)  # let the broadcaster run, as a schedule would
                most = max(most, max(c.transport.get_write_buffer_size() for c in lab._ws.connections))
            fast_seqs = await fast_got
            let_go = lab.pusher.stats["let go"]
            slow_seqs = await read_seqs(slow, n)  # now it reads: it catches up, then rejoins
            await until(lambda: len(lab.pusher.members) == 2, "the slow one rejoined")
            lab.publish("after")
            last = json.loads(await slow.recv())["seq"], json.loads(await fast.recv())["seq"]
            await fast.close(), await slow.close()
            return fast_seqs, slow_seqs, let_go, most, last, lab.guard.stats
        finally:
            await lab.aclose()

    fast_seqs, slow_seqs, let_go, most, last, guard_stats = run(main(), timeout=30)
    assert fast_seqs == list(range(1, 401))
    assert slow_seqs == list(range(1, 401))  # nothing lost, nothing twice
    assert let_go >= 1 and last == (401, 401)
    assert most < 256 * 1024  # the slow reader's backlog stayed in the event source, not in buffers
    assert not guard_stats  # nobody was closed for it


def test_a_client_resumes_from_its_cursor_after_reconnecting():
    async def main():
        lab = await lab_server()
        try:
            async with connect(lab.ws_url + "?since=0") as ws:
                lab.source.publish_many(range(5))
                first = [json.loads(await ws.recv())["seq"] for _ in range(3)]
            lab.source.publish_many(range(5, 8))  # published while it is away
            async with connect(f"{lab.ws_url}?since={first[-1]}") as ws:
                rest = await read_seqs(ws, 8)
            return first, rest
        finally:
            await lab.aclose()

    first, rest = run(main())
    assert first == [1, 2, 3] and rest == [4, 5, 6, 7, 8]


@pytest.mark.parametrize("origin, allowed", [
    ("https://evil.example", False),
    ("http://127.0.0.1:8888", True),
    (None, True),
])
def test_the_websocket_port_refuses_a_foreign_origin_with_403(origin, allowed):
    """RFC 6455 10.2: a server not meant for every page checks Origin (wslab.limits' policy)."""

    async def main():
        lab = await lab_server()
        try:
            if allowed:
                async with connect(lab.ws_url, origin=origin) as ws:
                    lab.publish("hi")
                    return json.loads(await ws.recv())["data"], lab.guard.origins
            with pytest.raises(InvalidStatus) as info:
                async with connect(lab.ws_url, origin=origin):
                    pass
            return info.value.response.status_code, lab.guard.origins
        finally:
            await lab.aclose()

    got, origins = run(main())
    assert got == ("hi" if allowed else 403)
    assert origins == []  # the allow-list never grows from requests


@pytest.mark.parametrize("origin, status", [("https://evil.example", 403), ("null", 403),
                                            ("http://127.0.0.1:8888", 200), (None, 200)])
def test_the_http_port_refuses_a_request_from_a_foreign_page_with_403(origin, status):
    """A cross-origin fetch or EventSource carries Origin: the same policy as the WebSocket port."""

    async def main():
        lab = await lab_server()
        try:
            headers = {} if origin is None else {"Origin": origin}
            async with httpx.AsyncClient() as client:
                response = await client.get(lab.http_url + "poll?since=0", headers=headers)
            return response, lab.guard.origins, lab.requests["poll"]
        finally:
            await lab.aclose()

    response, origins, polls = run(main())
    assert response.status_code == status and response.headers["content-type"] == "application/json"
    if status == 403:
        assert response.json()["error"] == "origin not allowed" and response.json()["value"] == origin
    assert origins == [] and polls == 1


# Hostile input (issue 14.3): every bad query gets the same JSON 400, never a 500 or an HTML page.

HUGE = "1" * 4301  # one digit past Python's int() limit for strings


@pytest.mark.parametrize(
    "path, headers, error",
    [
        ("poll?since=" + HUGE, {}, "bad cursor"),
        ("longpoll?since=" + HUGE, {}, "bad cursor"),
        ("events?since=" + HUGE, {}, "bad cursor"),
        ("events?limit=" + HUGE, {}, "bad limit"),
        ("events", {"Last-Event-ID": HUGE}, "bad cursor"),
        ("longpoll?since=0&timeout=" + HUGE, {}, "bad timeout"),
        ("poll?since=%00", {}, "bad cursor"),
        ("longpoll?since=%00", {}, "bad cursor"),
        ("poll?since=%FF%FE", {}, "bad query"),
        ("events?since=1&limit=%FF", {}, "bad query"),
    ],
    ids=lambda value: value[:24] + ("...(4301 digits)" if HUGE in value else "") if isinstance(value, str) else None,
)
def test_a_hostile_query_gets_the_json_400_that_names_it(path, headers, error):
    async def main():
        lab = await lab_server()
        lab.publish()
        try:
            async with httpx.AsyncClient(timeout=seconds(5)) as client:
                return await client.get(lab.http_url + path, headers=headers), lab.errors
        finally:
            await lab.aclose()

    response, errors = run(main())
    assert response.status_code == 400, response.text[:200]
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == error and "hint" in body
    assert len(body["value"]) < 100 and ("4301 characters" in body["value"]) == (HUGE in path + str(headers))
    assert errors == []


def test_a_nul_cursor_is_not_read_as_zero():
    async def main():
        lab = await lab_server()
        lab.publish()
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(lab.http_url + "poll?since=%00")).json()
        finally:
            await lab.aclose()

    assert run(main())["value"] == "\x00"


@pytest.mark.parametrize("method, path, status", [("GET", "nowhere", 404), ("POST", "poll", 405)])
def test_tornados_own_errors_are_json_too(method, path, status):
    async def main():
        lab = await lab_server()
        try:
            async with httpx.AsyncClient() as client:
                return await client.request(method, lab.http_url + path)
        finally:
            await lab.aclose()

    response = run(main())
    assert response.status_code == status and response.headers["content-type"] == "application/json"
    assert response.json()["status"] == status


@pytest.mark.parametrize("query, error", [(HUGE, "bad cursor"), ("%FF%FE", "bad query"), ("%00", "bad cursor")],
                         ids=["4301 digits", "not utf-8", "nul"])
def test_a_websocket_handshake_with_a_hostile_cursor_gets_the_json_400(query, error):
    async def main():
        lab = await lab_server()
        try:
            with pytest.raises(InvalidStatus) as info:
                async with connect(lab.ws_url + "?since=" + query):
                    pass
            return info.value.response, lab.errors
        finally:
            await lab.aclose()

    response, errors = run(main())
    assert response.status_code == 400 and json.loads(response.body)["error"] == error
    assert errors == []


@pytest.mark.parametrize("kwargs, match", [
    ({"host": "0.0.0.0"}, "loopback address only, got host='0.0.0.0'"),
    ({"host": "localhost"}, "not host='localhost'"),
    ({"host": 7}, "got host=7"),
    ({"port": 8080}, "takes no port="),
    ({"max_connections": 0}, "max_connections"),
])
def test_options_the_lab_cannot_honour_get_a_clear_error(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        lab_server_in_thread(name="lab-bad", **kwargs)
    assert "lab-bad" not in str(wslab.status())


def test_another_loopback_address_works():
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    lab = lab_server_in_thread(name="lab-v6", host="::1")
    try:
        assert lab.http_url.startswith("http://[::1]:")
        assert httpx.get(lab.http_url + "poll", timeout=seconds(5)).json() == {"events": [], "cursor": 0}
    finally:
        lab.stop()


def test_at_the_connection_cap_an_idle_connection_makes_room_and_busy_ones_do_not():
    """RFC 9110 15.6.4: 503 with Retry-After when every connection is in a request."""

    async def main():
        lab = await lab_server(max_connections=2)
        try:
            idle = await asyncio.open_connection(lab.host, lab.port)  # connected, sends nothing
            async with httpx.AsyncClient(timeout=seconds(5)) as a, httpx.AsyncClient(timeout=seconds(5)) as b:
                first = asyncio.ensure_future(a.get(lab.http_url + "longpoll?since=0"))
                await until(lambda: lab.held == 1, "one long poll is held")  # the idle one was evicted
                second = asyncio.ensure_future(b.get(lab.http_url + "longpoll?since=0"))
                await until(lambda: lab.held == 2, "two long polls are held")
                async with httpx.AsyncClient(timeout=seconds(5)) as c:
                    refused = await c.get(lab.http_url + "poll")
                lab.publish("done")
                answers = [(await first).json(), (await second).json()]
            return refused, answers, dict(lab.shed), await idle[0].read()
        finally:
            await lab.aclose()

    refused, answers, shed, idle_got = run(main())
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json()["error"] == "too many connections"
    assert [a["events"][0]["data"] for a in answers] == ["done", "done"]
    assert shed == {"evicted": 1, "refused": 1} and idle_got == b""


# Slow-loris and file-descriptor exhaustion (issue 14.6): the server runs in a process of its
# own with the common soft limit of 1,024 open files; this process opens 1,100 connections that
# send half a request and then nothing, and a well-behaved client must still be served.

SLOW_SERVER = """
import resource, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
import wslab
lab = wslab.lab_server_in_thread(**eval(sys.argv[1]))
lab.publish("still here")
print(lab.port, lab.ws_port, flush=True)
sys.stdin.read()  # until the test closes our stdin
lab.stop()
print(dict(lab.shed), flush=True)
"""


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process so far, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture
def lab_process(tmp_path):
    """Start a lab server in a child process: ``start(**kwargs) -> (process, http port, ws port, stderr path)``."""
    started = []

    def start(**kwargs):
        err = tmp_path / "server-stderr.txt"
        process = subprocess.Popen([sys.executable, "-c", SLOW_SERVER, repr(kwargs)], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=err.open("wb"), text=True)
        started.append(process)
        line = within(process.stdout.readline, 30, f"the lab server printed no ports: {err}")
        assert line, f"the lab server process failed: {err.read_text()[-2000:]}"
        port, ws_port = map(int, line.split())
        return process, port, ws_port, err

    yield start
    for process in started:
        end_child(process)


async def open_slow_connections(port: int, n: int, half_request: bytes) -> list[asyncio.StreamWriter]:
    """``n`` connections that each send ``half_request`` and then nothing (in batches, bounded)."""
    writers = []
    for start in range(0, n, 100):
        opened = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port) for _ in range(min(100, n - start))))
        for _, writer in opened:
            writer.write(half_request)
            writers.append(writer)
    return writers


@pytest.mark.parametrize("cap", [None, 5000], ids=["default cap", "cap above the fd limit"])
def test_1100_slow_loris_connections_leave_a_good_client_served_within_15_s(lab_process, cap):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1500:
        pytest.skip(f"the test opens 1,100 connections; the hard limit on open files here is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1500) if hard == resource.RLIM_INFINITY else max(soft, min(hard, 4096)), hard))
    process, port, _, err = lab_process(**({} if cap is None else {"max_connections": cap}))

    async def main():
        slow = await open_slow_connections(port, 1100, b"GET /poll?since=0 HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        async with httpx.AsyncClient(timeout=seconds(15)) as client:
            response = await client.get(f"http://127.0.0.1:{port}/poll?since=0")
        served = time.monotonic() - t0
        for writer in slow:
            writer.transport.abort()
        return response, served

    try:
        response, served = run(main(), timeout=40)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert response.status_code == 200 and response.json()["events"][0]["data"] == "still here"
    assert served < seconds(15)
    process.stdin.close()
    shed = within(process.stdout.read, 15, "the lab server's last line")  # what it shed
    assert process.wait(seconds(10)) == 0
    assert "evicted" in shed
    assert err.stat().st_size < 20_000, err.read_text()[:2000]  # no "Too many open files" in a loop


def test_1100_slow_loris_connections_on_the_websocket_port_leave_a_good_client_served_within_15_s(lab_process):
    """The WebSocket port has wslab.limits' caps: idle handshakes beyond them are cut."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1500:
        pytest.skip(f"the test opens 1,100 connections; the hard limit on open files here is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1500) if hard == resource.RLIM_INFINITY else max(soft, min(hard, 4096)), hard))
    process, _, ws_port, err = lab_process()

    async def main():
        slow = await open_slow_connections(ws_port, 1100, b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        t0 = time.monotonic()
        try:
            async with asyncio.timeout(seconds(15)):
                while True:  # a refused attempt (503, or cut at the cap) is retried: bounded by the timeout
                    try:
                        async with connect(f"ws://127.0.0.1:{ws_port}/?since=0", open_timeout=seconds(15)) as ws:
                            return json.loads(await ws.recv())["data"], time.monotonic() - t0
                    except InvalidStatus as exc:
                        assert exc.response.status_code == 503
                    except (InvalidMessage, OSError):
                        pass
                    await asyncio.sleep(0.1)
        finally:
            for writer in slow:
                writer.transport.abort()

    try:
        data, served = run(main(), timeout=40)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert data == "still here" and served < seconds(15)
    assert err.stat().st_size < 20_000, err.read_text()[:2000]


# The browser's own clients (Chromium's fetch, EventSource, WebSocket): the lesson's JavaScript.
# Last in this module: Playwright's sync API keeps a loop running in this thread while its
# module-scoped fixture lives, and run() cannot start another one.

@pytest.fixture
def lab_page(chromium):
    lab = lab_server_in_thread(name="lab-browser")
    context = chromium.new_context()
    page = context.new_page()
    page.goto(lab.http_url)  # same origin as the lab's HTTP endpoints
    try:
        yield lab, page
    finally:
        context.close()
        lab.stop()


def test_a_browsers_event_source_resumes_with_last_event_id_after_the_stream_breaks(lab_page):
    """HTML Living Standard 9.2: EventSource reconnects and sends Last-Event-ID."""
    lab, page = lab_page
    page.evaluate("""() => {
        window.got = [];
        const source = new EventSource("/events?since=now");
        source.onmessage = (message) => window.got.push([message.lastEventId, JSON.parse(message.data).seq]);
    }""")
    deadline = time.monotonic() + seconds(5)
    while lab.held < 1 and time.monotonic() < deadline:  # the stream is open at the server
        time.sleep(0.001)
    lab.source.publish_many("abc")
    page.wait_for_function("() => window.got.length >= 3", timeout=seconds(5) * 1000)
    lab.end_streams()
    while lab.held > 0 and time.monotonic() < deadline + seconds(5):  # the stream has ended
        time.sleep(0.001)
    lab.source.publish_many("def")  # published while the browser is away
    page.wait_for_function("() => window.got.length >= 6", timeout=seconds(10) * 1000)
    got = page.evaluate("() => window.got")
    assert got == [[str(n), n] for n in range(1, 7)]
    assert lab.requests["events"] == 2 and lab.requests["resumes"] == 1


@pytest.mark.parametrize("pattern", ["fetch loop", "long poll", "websocket"])
def test_the_lessons_browser_patterns_get_every_event_once_in_order(lab_page, pattern):
    lab, page = lab_page
    scripts = {
        "fetch loop": """(wsPort) => { window.got = [];
            (async (cursor) => { while (true) {
              const answer = await (await fetch(`/poll?since=${cursor}`)).json();
              answer.events.forEach((e) => window.got.push(e.seq));
              cursor = answer.cursor;
              await new Promise((resolve) => setTimeout(resolve, 20)); } })(0); }""",
        "long poll": """(wsPort) => { window.got = [];
            (async (cursor) => { while (true) {
              const answer = await (await fetch(`/longpoll?since=${cursor}`)).json();
              answer.events.forEach((e) => window.got.push(e.seq));
              cursor = answer.cursor; } })(0); }""",
        "websocket": """(wsPort) => { window.got = [];
            const ws = new WebSocket(`ws://${location.hostname}:${wsPort}/?since=0`);
            ws.onmessage = (message) => window.got.push(JSON.parse(message.data).seq); }""",
    }
    page.evaluate(scripts[pattern], lab.ws_port)
    for gap in poisson(0.005, 10, seed=4):
        time.sleep(gap)  # the schedule, not synchronisation
        lab.publish()
    page.wait_for_function("() => window.got.length >= 10", timeout=seconds(10) * 1000)
    assert page.evaluate("() => window.got") == list(range(1, 11))


def test_chromium_asks_before_a_public_pages_websocket_reaches_loopback(chromium):
    """Lesson 02's claim (section 5): Local Network Access covers WebSockets in Chromium 147+.

    The page comes from the lab's HTTP port, which a Chromium switch makes count as a public
    address; its WebSocket to the lab's other port on 127.0.0.1 is refused unless the page has
    the "local-network-access" permission (what the user's answer to the prompt grants).
    """
    from .conftest import CHROMIUM, CHROMIUM_ARGS

    if int(chromium.version.split(".")[0]) < 147:
        pytest.skip(f"Chromium {chromium.version} predates Local Network Access for WebSockets (147)")
    lab = lab_server_in_thread(name="lab-lna")
    lab.publish("hi")
    public = chromium.browser_type.launch(
        executable_path=CHROMIUM, headless=True,
        args=CHROMIUM_ARGS + [f"--ip-address-space-overrides=127.0.0.1:{lab.port}=public"],
    )
    script = """([wsPort, ms]) => new Promise((resolve) => {
        const ws = new WebSocket(`ws://127.0.0.1:${wsPort}/?since=0`);
        ws.onmessage = (message) => { resolve(JSON.parse(message.data).data); ws.close(); };
        ws.onerror = () => resolve("refused");
        setTimeout(() => resolve("no answer"), ms); })"""
    got = {}
    try:
        for granted in (False, True):
            context = public.new_context()
            if granted:
                context.grant_permissions(["local-network-access"], origin=lab.http_url.rstrip("/"))
            page = context.new_page()
            page.goto(lab.http_url)
            got[granted] = page.evaluate(script, [lab.ws_port, seconds(5) * 1000])
            context.close()
    finally:
        public.close()
        lab.stop()
    assert got == {False: "refused", True: "hi"}

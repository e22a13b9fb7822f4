"""The lab server: polling, long polling, SSE and WebSocket push of one source (wslab/labserver.py).

The peers are independent: httpx for HTTP, the websockets client, raw sockets.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import wslab
from wslab.events import poisson
from wslab.labserver import lab_server, lab_server_in_thread

from .conftest import run, seconds


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
    from wslab.events import EventSource

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

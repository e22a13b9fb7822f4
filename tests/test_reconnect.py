"""Reconnection: a client that resumes from the last event id loses and doubles nothing over
server restarts that close with 1012 (service restart) and 1001 (going away), RFC 6455 7.4.1."""

from __future__ import annotations

import asyncio
import itertools
import json
import random

import pytest
import websockets.client
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidHandshake, InvalidStatus

import wslab
from wslab import reconnect

from .conftest import run, seconds


def backoff(base=0.05, cap=1.0, rng=None):
    rng = rng or random.Random(7)
    for n in itertools.count():
        yield rng.uniform(0, min(cap, base * 2**n))


async def follow(url, count):
    """The lesson's reference: its own loop (websockets 14 to 17), backing off after any connection
    that brought no event, skipping messages that are not events."""
    events = []
    delays = backoff()
    while len(events) < count:
        try:
            async with connect(url, open_timeout=seconds(2)) as ws:
                await ws.send(json.dumps({"last": events[-1]["id"] if events else 0}))
                async for message in ws:
                    try:
                        event = json.loads(message)
                    except ValueError:
                        continue  # not JSON: not an event
                    if not isinstance(event, dict) or not isinstance(event.get("id"), int):
                        continue  # JSON, but not an event
                    events.append(event)
                    delays = backoff()  # progress: the next outage starts with short delays again
                    if len(events) >= count:
                        return events
        except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed):
            pass
        await asyncio.sleep(next(delays))
    return events


def test_a_resuming_client_loses_and_doubles_nothing_over_two_restarts():
    table = run(reconnect.check_follow(follow, count=120), timeout=40)
    assert [row[1] for row in table.rows] == [1012, 1001]
    assert all(gap >= 0.3 for gap in table.gaps)  # the port was closed 300 ms
    assert 1 <= table.flaps <= reconnect.MAX_FLAPS


async def reconnect_at_once(url, count):
    """websockets' own loop: its backoff applies to failed attempts only."""
    events = []
    async for ws in connect(url, reconnect_delays=backoff, open_timeout=seconds(2)):
        try:
            await ws.send(json.dumps({"last": events[-1]["id"] if events else 0}))
            async for message in ws:
                event = json.loads(message)
                if isinstance(event, dict) and "id" in event:
                    events.append(event)
                if len(events) >= count:
                    return events
        except ConnectionClosed:
            continue


def test_a_client_that_reconnects_at_once_after_a_handshake_that_worked_fails_the_check():
    """Issue 19: websockets resets its backoff after every successful handshake, so a server that
    accepts and closes at once was reconnected to 1,811 times in 5 s."""
    with pytest.raises(wslab.CheckFailed, match=r"connected \d+ times within 1.5 s to a server that accepted"):
        run(reconnect.check_follow(reconnect_at_once, count=60, restarts=(1012,)), timeout=40)


def test_a_client_that_parses_every_message_as_an_event_is_told_to_skip_junk():
    async def trusting(url, count):
        events, delays = [], backoff()
        while True:
            try:
                async with connect(url, open_timeout=seconds(2)) as ws:
                    await ws.send(json.dumps({"last": events[-1]["id"] if events else 0}))
                    async for message in ws:
                        events.append(json.loads(message))
                        delays = backoff()
                        if len(events) >= count:
                            return events
            except (OSError, InvalidHandshake, ConnectionClosed):
                pass
            await asyncio.sleep(next(delays))

    with pytest.raises(wslab.CheckFailed, match="follow\\(\\) raised JSONDecodeError: .*skip them"):
        run(reconnect.check_follow(trusting, count=60, restarts=(1012,)), timeout=40)


def test_a_stream_answers_a_first_message_that_is_not_a_whole_number_from_0_with_1008():
    """Issue 19: ``{"last": Infinity}`` got OverflowError and 1011 (RFC 6455 section 7.4.1: 1008 is
    policy violation, 1011 an unexpected condition on the server)."""
    firsts = ['{"last": Infinity}', '{"last": -Infinity}', '{"last": NaN}', '{"last": -1}', '{"last": "5"}',
              '{"last": 1.5}', '{"last": true}', '{"last": null}', "[1]", '"last"', "1" * 5000, "not json",
              "[" * 100_000]

    async def main():
        stream = await reconnect.resumable_stream("strict", interval=0.05)
        codes = []
        for first in firsts:
            async with connect(stream.url) as ws:
                await ws.send(first)
                with pytest.raises(ConnectionClosed) as info:
                    await asyncio.wait_for(ws.recv(), seconds(5))
                codes.append(info.value.rcvd.code)
        await stream.aclose()
        return codes, stream.errors

    codes, errors = run(main(), timeout=30)
    assert codes == [1008] * len(firsts) and not errors


def test_the_stream_listens_under_wslabs_limits():
    async def main():
        stream = await reconnect.resumable_stream("limited", interval=0.05,
                                                  limits=wslab.Limits(max_connections=1, max_size=1024))
        async with connect(stream.url) as first:
            with pytest.raises(InvalidStatus) as busy:
                await connect(stream.url, open_timeout=seconds(5))
            await first.send("x" * 2048)
            with pytest.raises(ConnectionClosed) as big:
                await asyncio.wait_for(first.recv(), seconds(5))
        with pytest.raises(InvalidStatus) as foreign:
            await connect(stream.url, origin="https://evil.example", open_timeout=seconds(5))
        await stream.aclose()
        return busy.value.response.status_code, big.value.rcvd.code, foreign.value.response.status_code

    assert run(main()) == (503, 1009, 403)


def test_a_client_that_starts_over_is_told_which_event_came_twice():
    async def start_over(url, count):
        events = []
        async for ws in connect(url, reconnect_delays=backoff, open_timeout=seconds(2)):
            try:
                await ws.send(json.dumps({"last": 0}))
                async for message in ws:
                    events.append(json.loads(message))
                    if len(events) >= count:
                        return events
            except ConnectionClosed:
                continue

    with pytest.raises(wslab.CheckFailed, match="arrived twice"):
        run(reconnect.check_follow(start_over, count=60, restarts=(1012,), flap=0, junk=False), timeout=40)


def test_a_plain_websocket_does_not_come_back_by_itself():
    async def main():
        stream = await reconnect.resumable_stream("plain", interval=0.01)
        ws = await connect(stream.url)
        await ws.send(json.dumps({"last": 0}))
        await asyncio.wait_for(ws.recv(), seconds(5))
        restarting = asyncio.ensure_future(stream.restart(code=1012, down=0.1))
        with pytest.raises(ConnectionClosedError) as info:
            while True:
                await asyncio.wait_for(ws.recv(), seconds(5))
        await restarting
        await stream.aclose()
        return info.value.rcvd.code, ws.state.name

    assert run(main()) == (1012, "CLOSED")


def test_websockets_default_backoff_is_random_first_then_growing_and_capped():
    """What the lesson says of websockets 17's reconnect_delays default."""
    delays = list(itertools.islice(websockets.client.backoff(), 12))
    assert 0 <= delays[0] < 5
    assert delays[1] == pytest.approx(3.1) and delays[2] == pytest.approx(3.1 * 1.618)
    assert delays[-1] == 90.0 and max(delays) == 90.0
    assert connect.__init__.__kwdefaults__["reconnect_delays"] is websockets.client.backoff


@pytest.mark.parametrize("code, raises", [(1000, False), (1001, False), (1012, True)])
def test_async_for_over_a_connection_ends_quietly_on_1000_and_1001_and_raises_on_1012(code, raises):
    """What the lesson's hint says: both outcomes must lead to the next connection."""
    from websockets.asyncio.server import serve

    async def close_with(connection):
        await connection.close(code)

    async def main():
        async with serve(close_with, "127.0.0.1", 0) as server:
            ws = await connect(f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/")
            try:
                async for _ in ws:
                    pass
            except ConnectionClosedError:
                return True
            return False

    assert run(main()) is raises


# In a real browser: EventSource comes back by itself with Last-Event-ID; WebSocket does not.

_PAGE = b"""<!doctype html><meta charset="utf-8"><title>reconnect</title><script>
window.seen = [];
const es = new EventSource("/events");
es.onmessage = e => { window.seen.push(e.lastEventId + ":" + e.data); };
</script>"""


class _SSEServer:
    """A page and an SSE endpoint that ends the first stream after one event (retry: 100 ms).

    The second stream stays open until ``read`` is set (the page has read its event) or the
    test's bound passes; ``handlers`` are the streams still being answered.
    """

    def __init__(self):
        self.requests: list[dict] = []
        self.read = asyncio.Event()
        self.handlers: set[asyncio.Task] = set()

    async def handle(self, reader, writer):
        self.handlers.add(asyncio.current_task())
        try:
            await self._answer(reader, writer)
        finally:
            self.handlers.discard(asyncio.current_task())

    async def _answer(self, reader, writer):
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        path = head.split(" ", 2)[1]
        headers = {ln.partition(":")[0].lower(): ln.partition(":")[2].strip() for ln in head.split("\r\n")[1:] if ln}
        if path == "/":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n"
                         b"Connection: close\r\n\r\n" % len(_PAGE) + _PAGE)
        elif path == "/events":
            self.requests.append(headers)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
                         b"Connection: close\r\n\r\n")
            if len(self.requests) == 1:
                writer.write(b"retry: 100\nid: 1\ndata: one\n\n")  # then the stream ends
            else:
                writer.write(b"id: 2\ndata: two\n\n")
                await writer.drain()
                try:  # keep this stream open until the page has read it
                    await asyncio.wait_for(self.read.wait(), seconds(20))
                except TimeoutError:
                    pass  # the test's own wait fails first and says what is missing
        else:
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()


def test_in_chromium_eventsource_reconnects_with_last_event_id_and_websocket_does_not(chromium):
    """HTML standard, server-sent events: the user agent reconnects after `retry` ms and sends
    Last-Event-ID. A WebSocket closed with 1012 stays closed (readyState 3) and does not reconnect."""
    import threading

    from websockets.asyncio.server import serve

    sse = _SSEServer()
    ws_connections = []
    ready = threading.Event()
    box = {}

    async def closes_1012(connection):
        ws_connections.append(connection.request.path)
        await connection.close(1012, "service restart")

    async def servers(stop):
        http = await asyncio.start_server(sse.handle, "127.0.0.1", 0)
        async with serve(closes_1012, "127.0.0.1", 0) as ws_server:
            box["http"] = http.sockets[0].getsockname()[1]
            box["ws"] = ws_server.sockets[0].getsockname()[1]
            ready.set()
            await stop.wait()
        http.close()
        if sse.handlers:  # the last stream ends once sse.read is set
            await asyncio.wait(sse.handlers, timeout=seconds(5))

    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(servers(stop),), daemon=True)
    thread.start()
    try:
        assert ready.wait(seconds(10))
        page = chromium.new_page()
        page.goto(f"http://127.0.0.1:{box['http']}/", timeout=seconds(15) * 1000)
        page.wait_for_function("window.seen.length >= 2", timeout=seconds(10) * 1000)
        seen = page.evaluate("window.seen")
        loop.call_soon_threadsafe(sse.read.set)
        # Half a second (scaled) after the close, the WebSocket is still closed: it did not come back.
        state = page.evaluate("""([url, wait]) => new Promise(resolve => {
            const ws = new WebSocket(url);
            ws.onclose = e => setTimeout(() => resolve([e.code, ws.readyState]), wait);
        })""", [f"ws://127.0.0.1:{box['ws']}/", seconds(0.5) * 1000])
        page.close()
    finally:
        loop.call_soon_threadsafe(sse.read.set)
        loop.call_soon_threadsafe(stop.set)
        thread.join(seconds(10))
    assert seen[:2] == ["1:one", "2:two"]
    assert sse.requests[1].get("last-event-id") == "1"
    assert state == [1012, 3]
    assert ws_connections == ["/"]  # one connection: the page did not come back

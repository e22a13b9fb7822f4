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
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

import wslab
from wslab import reconnect

from .conftest import run, seconds


def backoff(base=0.05, cap=1.0, rng=None):
    rng = rng or random.Random(7)
    for n in itertools.count():
        yield rng.uniform(0, min(cap, base * 2**n))


async def follow(url, count):
    events = []
    async for ws in connect(url, reconnect_delays=backoff, open_timeout=2):
        try:
            await ws.send(json.dumps({"last": events[-1]["id"] if events else 0}))
            async for message in ws:
                events.append(json.loads(message))
                if len(events) >= count:
                    return events
        except ConnectionClosed:
            continue


def test_a_resuming_client_loses_and_doubles_nothing_over_two_restarts():
    table = run(reconnect.check_follow(follow, count=120), timeout=40)
    assert [row[1] for row in table.rows] == [1012, 1001]
    assert all(gap >= 0.3 for gap in table.gaps)  # the port was closed 300 ms


def test_a_client_that_starts_over_is_told_which_event_came_twice():
    async def start_over(url, count):
        events = []
        async for ws in connect(url, reconnect_delays=backoff, open_timeout=2):
            try:
                await ws.send(json.dumps({"last": 0}))
                async for message in ws:
                    events.append(json.loads(message))
                    if len(events) >= count:
                        return events
            except ConnectionClosed:
                continue

    with pytest.raises(wslab.CheckFailed, match="arrived twice"):
        run(reconnect.check_follow(start_over, count=60, restarts=(1012,)), timeout=40)


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

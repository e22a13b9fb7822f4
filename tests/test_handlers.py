"""Ready-made handlers (wslab/server/handlers.py), talked to by the websockets client."""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedOK

import wslab
from wslab.server.handlers import echo, ticker

from .conftest import run


def test_echo_answers_like_the_article():
    async def main():
        srv = await wslab.serve(echo, name="echo")
        async with connect(srv.url) as ws:
            await ws.send("hello world")
            assert await ws.recv() == "Data received: hello world"
            await ws.send(b"\x00\x01")
            assert await ws.recv() == b"\x00\x01"
        await srv.aclose()

    run(main())


def test_ticker_pushes_numbered_timestamped_events_then_closes_normally():
    async def main():
        srv = await wslab.serve(ticker(0.01, count=5), name="ticks")
        async with connect(srv.url) as ws:
            events = [json.loads(await ws.recv()) for _ in range(5)]
            with pytest.raises(ConnectionClosedOK):
                await ws.recv()
        assert [e["seq"] for e in events] == [0, 1, 2, 3, 4]
        times = [e["sent"] for e in events]
        assert times == sorted(times)
        await srv.aclose()

    run(main())


def test_ticker_refuses_a_non_positive_interval():
    with pytest.raises(ValueError, match="interval must be positive"):
        ticker(0)

"""Behind a reverse proxy: hop-by-hop headers (RFC 9110 section 7.6.1), idle timeouts, keepalive pings,
and what an access log keeps. Peers: websockets' server and client."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import wslab
from wslab import proxy

from .conftest import run, seconds


async def echo(connection):
    async for message in connection:
        await connection.send(message)


def test_a_proxy_that_strips_hop_by_hop_headers_gets_426_and_one_that_forwards_them_works():
    async def main():
        srv = await wslab.serve(echo, "behind", ping_interval=None)
        naive = await proxy.reverse_proxy(srv, "naive", forward_upgrade=False)
        good = await proxy.reverse_proxy(srv, "good")
        with pytest.raises(InvalidStatus) as info:
            await connect(naive.url, open_timeout=seconds(5))
        async with connect(good.url) as ws:
            await ws.send("through")
            reply = await asyncio.wait_for(ws.recv(), seconds(5))
        await wslab.aclose_all()
        return info.value.response.status_code, reply

    assert run(main()) == (426, "through")  # websockets: "Upgrade Required" for a GET without Upgrade


def test_an_idle_timeout_closes_a_quiet_connection_unless_pings_keep_it_busy():
    async def main():
        srv = await wslab.serve(echo, "behind", ping_interval=None)
        cutter = await proxy.reverse_proxy(srv, "cutter", idle_timeout=1.0)
        quiet = await connect(cutter.url, ping_interval=None)
        busy = await connect(cutter.url, ping_interval=0.2, ping_timeout=5)
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(quiet.recv(), seconds(5))
        await busy.send("still here")
        reply = await asyncio.wait_for(busy.recv(), seconds(5))
        await busy.close()
        await wslab.aclose_all()
        return info.value.rcvd, reply, cutter.idle_closed

    rcvd, reply, closed = run(main())
    assert rcvd is None  # no close frame: the proxy cut TCP (the client sees 1006)
    assert reply == "still here" and len(closed) == 1


def test_the_access_log_keeps_a_query_token():
    async def main():
        srv = await wslab.serve(echo, "behind", ping_interval=None)
        good = await proxy.reverse_proxy(srv, "good")
        async with connect(good.url + "?token=SEKRIT"):
            pass
        await wslab.aclose_all()
        return good.access_log

    assert run(main()) == ['127.0.0.1 "GET /?token=SEKRIT HTTP/1.1"']

"""Behind a reverse proxy: hop-by-hop headers (RFC 9110 section 7.6.1), idle timeouts, keepalive pings,
and what an access log keeps. Peers: websockets' server and client."""

from __future__ import annotations

import asyncio
import collections
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import wslab
from wslab import proxy

from .conftest import end_child, run, seconds

ROOT = Path(__file__).resolve().parent.parent


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
        return list(good.access_log)

    assert run(main()) == ['127.0.0.1 "GET /?token=SEKRIT HTTP/1.1"']


# Limits (issue 19): a connection cap, and memory that stays bounded


def test_a_proxy_over_its_connection_cap_answers_503_with_retry_after_and_keeps_relaying():
    async def main():
        srv = await wslab.serve(echo, "behind", ping_interval=None)
        capped = await proxy.reverse_proxy(srv, "capped", limits=wslab.Limits(max_connections=2))
        held = [await connect(capped.url) for _ in range(2)]
        with pytest.raises(InvalidStatus) as info:
            await connect(capped.url, open_timeout=seconds(5))
        await held[0].send("still relayed")
        reply = await asyncio.wait_for(held[0].recv(), seconds(5))
        for ws in held:
            await ws.close()
        await wslab.aclose_all()
        return info.value.response, reply, dict(capped.stats), srv.connections

    response, reply, stats, behind = run(main())
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert b"2 connections relayed" in response.body
    assert reply == "still relayed" and stats == {"refused: busy": 1}


_PROXY_CHILD = textwrap.dedent(
    """
    import asyncio, resource, sys
    import wslab
    from wslab import proxy
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))

    async def echo(connection):
        async for message in connection:
            await connection.send(message)

    async def main():
        srv = await wslab.serve(echo, "target", ping_interval=None)
        front = await proxy.reverse_proxy(srv, "front")
        print(front.port, srv.port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the test closes stdin
        print(dict(front.stats), flush=True)
        await wslab.aclose_all()

    asyncio.run(main())
    """
)


def test_a_proxy_under_a_256_file_limit_refuses_with_503_before_descriptors_run_out():
    """Issue 19: without a cap, 338 proxied connections exhausted a 1,024-file process and its
    target's direct clients timed out. Here the limit is 256: 150 clients need 450 descriptors."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    child = subprocess.Popen([sys.executable, "-c", _PROXY_CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    async def main():
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), seconds(20))
        front, target = (int(p) for p in line.split())
        held, statuses = [], collections.Counter()
        try:
            for _ in range(150):
                try:
                    held.append(await connect(f"ws://127.0.0.1:{front}/", open_timeout=seconds(5)))
                    statuses[101] += 1
                except InvalidStatus as exc:
                    statuses[exc.response.status_code] += 1
            await held[0].send("through the proxy")
            relayed = await asyncio.wait_for(held[0].recv(), seconds(5))
            try:  # the budget is the process's: the target refuses cleanly too ...
                await connect(f"ws://127.0.0.1:{target}/", open_timeout=seconds(5))
                direct_status = 101
            except InvalidStatus as exc:
                direct_status = exc.response.status_code
            for ws in held[-10:]:  # ... until some proxied clients leave
                await ws.close()
            deadline = time.monotonic() + seconds(5)
            while True:  # a well-behaved client retries, as a page would
                try:
                    async with connect(f"ws://127.0.0.1:{target}/", open_timeout=seconds(5)) as direct:
                        await direct.send("direct")
                        direct_reply = await asyncio.wait_for(direct.recv(), seconds(5))
                        break
                except InvalidStatus:
                    assert time.monotonic() < deadline, "the target never served a direct client"
                    await asyncio.sleep(0.05)
        finally:
            for ws in held:
                ws.transport.abort()
        return statuses, relayed, direct_status, direct_reply

    try:
        statuses, relayed, direct_status, direct_reply = run(main(), timeout=60)
    finally:
        err = end_child(child)
    assert "Too many open files" not in err, err[-2000:]
    assert statuses[101] >= 30 and statuses[503] >= 50 and sum(statuses.values()) == 150, statuses
    assert direct_status in (101, 503)  # never a timeout
    assert (relayed, direct_reply) == ("through the proxy", "direct")


def test_the_access_log_and_errors_keep_the_last_1000_entries_with_long_lines_cut():
    """3,000 requests with 60 KB lines once held 180 MB (RSS 31 -> 570 MB here); now 1,000 lines of
    at most 2 KiB, and errors without their tracebacks (RSS 31 -> 33 MB)."""

    async def main():
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))
        port = dead.getsockname()[1]
        dead.close()  # nothing listens there: every request is a 502 and an error
        front = await proxy.reverse_proxy(("127.0.0.1", port), "front")
        long_path = "/?" + "x" * 50_000
        for i in range(1100):
            reader, writer = await asyncio.open_connection("127.0.0.1", front.port)
            path = long_path if i % 2 else f"/{i}"
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            status = await asyncio.wait_for(reader.readline(), seconds(5))
            assert status.startswith(b"HTTP/1.1 502"), status
            writer.close()
        await wslab.aclose_all()
        return front

    front = run(main(), timeout=60)
    assert len(front.access_log) == len(front.errors) == proxy.LOG_LINES == 1000
    assert front.access_log[-2] == '127.0.0.1 "GET /1098 HTTP/1.1"'
    assert max(len(line) for line in front.access_log) <= proxy.LOG_LINE_MAX
    full = len('127.0.0.1 "GET /? HTTP/1.1"') + 50_000
    assert front.access_log[-1].startswith('127.0.0.1 "GET /?xxx')
    assert front.access_log[-1].endswith(f"xxx... ({full} characters)")
    assert front.stats["dropped: oldest log entry"] == 200
    # An error kept with its traceback would hold the frame, and so the 50 KB head, alive.
    assert all(exc.__traceback__ is None for exc in front.errors)


def test_idle_closed_keeps_only_the_last_entries(monkeypatch):
    monkeypatch.setattr(proxy, "LOG_LINES", 3)

    async def main():
        srv = await wslab.serve(echo, "behind", ping_interval=None)
        cutter = await proxy.reverse_proxy(srv, "cutter", idle_timeout=0.2)
        quiet = [await connect(f"{cutter.url}?n={i}", ping_interval=None) for i in range(5)]
        for ws in quiet:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), seconds(5))
        await wslab.aclose_all()
        return list(cutter.idle_closed)

    assert run(main()) == [f"idle 0.2 s: /?n={i}" for i in (2, 3, 4)]

"""Through a real jupyter-server-proxy (4.6, in a real ``python -m jupyter server``): the upgrade
is forwarded, keepalive pings are answered hop by hop, and what a quiet connection does.

Read from jupyter_server_proxy/handlers.py and websocket.py before measuring: the proxy is a tornado
WebSocketHandler facing the client and a tornado WebSocket client facing the backend. tornado
answers every ping itself on both sides (``_handle_message``, opcode 0x9); the proxy also forwards
each ping (``on_ping`` -> ``write_ping``, ``ping_cb`` -> ``self.ping``) and drops the pong that comes
back (``on_pong`` only logs). No idle timeout applies to a proxied WebSocket: ``request_timeout=300``
is for plain HTTP, and Jupyter Server leaves tornado's ``websocket_ping_interval`` unset. The tests
measure each of these: a peer's ``ping_timeout`` through the proxy detects a dead *proxy* (Jupyter
stopped with SIGSTOP), not a dead or stalled peer behind it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError

import wslab

from .conftest import run, seconds
from .test_browser import JupyterProcess

# Keepalive, scaled together so that every comparison below holds on a slow machine too:
# a ping every 0.2 s, its pong due within 0.5 s, then 0.5 s for the closing handshake.
PING_INTERVAL, PING_TIMEOUT, CLOSE_TIMEOUT = seconds(0.2), seconds(0.5), seconds(0.5)


@pytest.fixture(scope="module")
def jupyter_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("jsp") / "notebooks"
    root.mkdir()
    process = JupyterProcess("server", root)
    try:
        process.wait_ready()
        assert "jupyter_server_proxy | extension was successfully loaded" in process.log
        yield process
    finally:
        process.stop()


def via_proxy(jupyter, port: int) -> tuple[str, dict[str, str]]:
    return f"ws://127.0.0.1:{jupyter.port}/proxy/{port}/", {"Authorization": f"token {jupyter.token}"}


def test_upgrade_pings_and_silence_through_jupyter_server_proxy(jupyter_server):
    seen_upgrade: list[str] = []

    def record(connection, request):
        seen_upgrade.append(request.headers.get("Upgrade", ""))

    async def echo(connection):
        async for message in connection:
            await connection.send(message)

    release = asyncio.Event()

    async def stall(connection):  # greets, then never reads again: no pong, no message
        await connection.send("stalling")
        connection.transport.pause_reading()
        await release.wait()

    server_side: dict[str, tuple] = {}

    async def watch(connection):  # pings every PING_INTERVAL, each pong due within PING_TIMEOUT: does its peer answer?
        await connection.send("watching")
        try:
            await asyncio.wait_for(connection.wait_closed(), window)
            server_side[connection.request.path] = ("closed, sent", connection.protocol.close_sent.code)
        except TimeoutError:
            server_side[connection.request.path] = ("open", connection.latency)

    window = seconds(2.0)

    async def main():
        no_pings = wslab.Limits().replace(ping_interval=None)
        backend = await wslab.serve(echo, "jsp-echo", limits=no_pings, process_request=record)
        stuck = await wslab.serve(stall, "jsp-stall", limits=no_pings)
        pings = wslab.Limits().replace(ping_interval=PING_INTERVAL, ping_timeout=PING_TIMEOUT,
                                       close_timeout=CLOSE_TIMEOUT)
        watcher = await wslab.serve(watch, "jsp-watch", limits=pings)
        url, auth = via_proxy(jupyter_server, backend.port)
        stuck_url, _ = via_proxy(jupyter_server, stuck.port)
        watch_url, _ = via_proxy(jupyter_server, watcher.port)

        async def pinging():  # pings for the whole window, each answered within PING_TIMEOUT
            async with connect(url, additional_headers=auth, ping_interval=PING_INTERVAL,
                               ping_timeout=PING_TIMEOUT) as ws:
                status = ws.response.status_code
                await asyncio.sleep(window)  # the measurement window, not synchronisation
                await ws.send("after pings")
                return status, await asyncio.wait_for(ws.recv(), seconds(5)), ws.latency

        async def quiet():  # no pings, no messages for the window: does the proxy cut it?
            async with connect(url, additional_headers=auth, ping_interval=None) as ws:
                start = time.monotonic()
                await asyncio.sleep(window)
                await ws.send("after silence")
                return time.monotonic() - start, await asyncio.wait_for(ws.recv(), seconds(5))

        async def stalled_backend(target, headers):  # the backend answers nothing from its greeting on
            async with connect(target, additional_headers=headers, ping_interval=PING_INTERVAL,
                               ping_timeout=PING_TIMEOUT, close_timeout=CLOSE_TIMEOUT) as ws:
                await asyncio.wait_for(ws.recv(), seconds(5))  # the greeting
                try:
                    await asyncio.wait_for(ws.wait_closed(), window)
                except TimeoutError:
                    return "open", ws.latency
                return f"closed, sent {ws.protocol.close_sent.code}", None  # received: none (1006)

        async def stalled_client(target, headers):  # reads the greeting, then nothing: no pong from here
            ws = await connect(target, additional_headers=headers, ping_interval=None)
            await asyncio.wait_for(ws.recv(), seconds(5))
            ws.transport.pause_reading()
            await asyncio.sleep(window + seconds(1))  # outlast the server's measurement window
            ws.transport.abort()

        results = await asyncio.gather(
            pinging(), quiet(), stalled_backend(stuck_url, auth), stalled_backend(stuck.url, {}),
            stalled_client(watch_url + "proxied", auth), stalled_client(watcher.url + "direct", {}),
        )
        release.set()
        await wslab.aclose_all()
        return results

    (status, echoed, latency), (silence, after), proxied_stall, direct_stall, _, _ = run(main(), timeout=30)
    # The upgrade crosses the proxy: 101 to the client, Upgrade: websocket at the backend.
    assert status == 101 and seen_upgrade and set(seen_upgrade) == {"websocket"}
    # Ten pings over the window, every pong in time: the connection is still open and works.
    assert echoed == "after pings" and 0 < latency < PING_TIMEOUT
    # A window of silence without pings: not cut (no idle timeout in the proxy's source either).
    assert silence >= window and after == "after silence"
    # A backend that reads nothing: straight to it, the client's ping_timeout closes the connection
    # (1011); through the proxy the client's pings are answered by the proxy itself, so it stays open.
    assert direct_stall == ("closed, sent 1011", None)
    assert proxied_stall[0] == "open" and proxied_stall[1] > 0
    # The same the other way: the server's pings to a client that reads nothing time out straight,
    # and are answered by the proxy (tornado's client side) through it.
    assert server_side["/direct"] == ("closed, sent", 1011)
    assert server_side["/proxied"][0] == "open" and server_side["/proxied"][1] > 0


def test_a_frozen_proxy_is_closed_by_the_clients_ping_timeout(jupyter_server):
    async def echo(connection):
        async for message in connection:
            await connection.send(message)

    async def main():
        backend = await wslab.serve(echo, "jsp-frozen", limits=wslab.Limits().replace(ping_interval=None))
        url, auth = via_proxy(jupyter_server, backend.port)
        async with connect(url, additional_headers=auth, ping_interval=PING_INTERVAL, ping_timeout=PING_TIMEOUT,
                           close_timeout=CLOSE_TIMEOUT) as ws:
            await ws.send("before")
            assert await asyncio.wait_for(ws.recv(), seconds(5)) == "before"
            os.killpg(jupyter_server.proc.pid, signal.SIGSTOP)  # Jupyter (the proxy) answers nothing now
            try:
                start = time.monotonic()
                with pytest.raises(ConnectionClosedError) as info:
                    await asyncio.wait_for(ws.recv(), seconds(5))
                took = time.monotonic() - start
            finally:
                os.killpg(jupyter_server.proc.pid, signal.SIGCONT)
        await wslab.aclose_all()
        return info.value, took

    closed, took = run(main(), timeout=20)
    assert closed.sent is not None and closed.sent.code == 1011 and closed.rcvd is None
    assert took < PING_INTERVAL + PING_TIMEOUT + CLOSE_TIMEOUT + seconds(1.5)  # and some slack


def rss(pid: int) -> int:
    """Resident memory of process ``pid`` in bytes (Linux /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def test_through_the_proxy_bufferedamount_stays_low_because_jupyter_holds_the_data(jupyter_server, chromium):
    from .test_bufferdemo import record_of, running_demo

    grew: list[int] = []
    with running_demo(pause=2.5, total=16 << 20) as demo:
        before = rss(jupyter_server.proc.pid)

        def all_sent_while_unread(page):  # everything left the browser, the server has not read yet
            page.wait_for_function(
                "() => { const r = Object.values(window.wslabBuffered || {})[0]; return r && "
                "r.sent === r.total_expected && r.samples.length && r.samples[r.samples.length - 1][1] === 0; }"
                .replace("r.total_expected", str(demo.total)),
                timeout=seconds(20) * 1000,
            )
            assert not any(e == "reading" for _, e in page.evaluate(
                "() => Object.values(window.wslabBuffered)[0].events")), "the pause ended first: a slow machine?"
            grew.append(rss(jupyter_server.proc.pid) - before)

        url = f"http://127.0.0.1:{jupyter_server.port}/proxy/{demo.server.port}/?token={jupyter_server.token}"
        rec = record_of(chromium, url, during=all_sent_while_unread)
    # Straight to the server bufferedAmount stays up until the server reads (test_bufferdemo.py);
    # through the proxy the browser's queue was empty (checked above) while the backend still read
    # nothing: the proxy read all 16 MiB and holds them in the Jupyter server's memory (its
    # on_message calls tornado's write_message without awaiting it).
    print(f"peak bufferedAmount {max(a for _, a, _ in rec['samples']):,} B; Jupyter's RSS grew {grew[0]:,} B")
    assert grew[0] > 4 << 20  # of 16 MiB sent while the backend read nothing (7.9-15 MB measured)
    (stats,) = demo.pages
    assert stats.done and stats.received == demo.total

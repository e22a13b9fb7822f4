"""Background servers: lifecycle, ports, stopping, errors (wslab/server/background.py)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as sync_connect

import wslab
from wslab.server.handlers import echo

from .conftest import run, seconds


def refuses(port: int) -> bool:
    """True if nothing listens on 127.0.0.1:port."""
    with socket.socket() as sock:
        sock.settimeout(seconds(2))
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_serve_listens_on_loopback_port_chosen_by_the_os():
    async def main():
        srv = await wslab.serve(echo, name="echo")
        assert srv.host == "127.0.0.1" and srv.port > 0
        assert srv.url == f"ws://127.0.0.1:{srv.port}/"
        async with connect(srv.url) as ws:
            await ws.send("hello world")
            assert await ws.recv() == "Data received: hello world"
            assert srv.connections == 1
        await srv.aclose()
        assert refuses(srv.port)

    run(main())


def test_serve_keeps_serving_while_the_caller_does_other_work():
    """Like a notebook between cells: the coroutine that started it has returned."""

    async def start():
        return await wslab.serve(echo, name="bg")

    async def main():
        srv = await start()
        for i in range(3):
            async with connect(srv.url) as ws:
                await ws.send(str(i))
                assert await ws.recv() == f"Data received: {i}"
        await srv.aclose()

    run(main())


def test_same_name_replaces_the_old_server():
    async def main():
        first = await wslab.serve(echo, name="echo")
        second = await wslab.serve(echo, name="echo")
        assert not first.running and second.running
        assert refuses(first.port)
        assert [s.name for s in wslab.servers.servers()] == ["echo"]
        async with connect(second.url) as ws:
            await ws.send("x")
            assert await ws.recv() == "Data received: x"
        await wslab.aclose_all()

    run(main())


def test_same_name_replaces_a_thread_server():
    first = wslab.serve_in_thread(echo, name="t")
    second = wslab.serve_in_thread(echo, name="t")
    assert not first.running and not first._thread.thread.is_alive()
    with sync_connect(second.url, open_timeout=seconds(5)) as ws:
        ws.send("y")
        assert ws.recv(timeout=seconds(5)) == "Data received: y"
    second.stop()


def test_many_servers_at_once_get_distinct_ports():
    async def main():
        servers = [await wslab.serve(echo, name=f"s{i}") for i in range(12)]
        assert len({s.port for s in servers}) == 12
        assert len(wslab.status()) == 12
        for s in servers:
            async with connect(s.url) as ws:
                await ws.send(s.name)
                assert await ws.recv() == f"Data received: {s.name}"
        await wslab.aclose_all()
        assert len(wslab.status()) == 0

    run(main())


@pytest.mark.parametrize("mode", ["task", "thread"])
def test_stop_closes_clients_with_1001_going_away(mode):
    async def main():
        if mode == "task":
            srv = await wslab.serve(echo, name="echo")
        else:
            srv = wslab.serve_in_thread(echo, name="echo")
        async with connect(srv.url) as ws:
            await ws.send("hi")
            await ws.recv()
            await srv.aclose()
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
        assert refuses(srv.port)

    run(main())


def test_stop_returns_in_bounded_time_when_a_client_never_answers_the_close():
    """A raw client completes the handshake, then never reads again."""

    async def main():
        srv = await wslab.serve(echo, name="echo", stop_timeout=seconds(0.5))
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
        started = time.monotonic()
        await srv.aclose()
        assert time.monotonic() - started < seconds(3)
        writer.close()

    run(main())


def test_nothing_left_running_after_stop_all():
    before = {t.name for t in threading.enumerate()}

    async def main():
        task_servers = [await wslab.serve(echo, name=f"task{i}") for i in range(3)]
        thread_servers = [wslab.serve_in_thread(echo, name=f"thread{i}") for i in range(3)]
        clients = [await connect(s.url) for s in task_servers + thread_servers]
        await wslab.aclose_all()
        for client in clients:
            await client.wait_closed()
        for s in task_servers + thread_servers:
            assert refuses(s.port)
        assert len(wslab.status()) == 0
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert others == []

    run(main())
    leftover = {t.name for t in threading.enumerate()} - before
    assert not [name for name in leftover if name.startswith("wslab-")]


def test_sync_stop_all_from_plain_code_stops_thread_servers():
    srv = wslab.serve_in_thread(echo, name="plain")
    wslab.stop_all()
    assert refuses(srv.port) and not srv._thread.thread.is_alive()


def test_thread_server_answers_while_the_callers_loop_is_blocked():
    """A synchronous client in a coroutine blocks the loop: a thread server still answers."""

    async def main():
        srv = wslab.serve_in_thread(echo, name="threaded")
        with sync_connect(srv.url, open_timeout=seconds(5)) as ws:  # blocks this loop
            ws.send("blocked")
            assert ws.recv(timeout=seconds(5)) == "Data received: blocked"
        srv.stop()

    run(main())


def test_task_server_cannot_answer_a_sync_client_on_its_own_loop():
    """The deadlock lesson 00 warns about: the loop is blocked, so the handshake times out."""

    async def main():
        srv = await wslab.serve(echo, name="same-loop")
        with pytest.raises(TimeoutError):
            sync_connect(srv.url, open_timeout=seconds(0.5))
        await srv.aclose()

    run(main())


def test_handler_errors_are_shown_kept_and_close_with_1011(capsys):
    async def broken(connection):
        await connection.recv()
        raise ValueError("boom in the handler")

    async def main():
        srv = await wslab.serve(broken, name="broken")
        async with connect(srv.url) as ws:
            await ws.send("x")
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
        assert info.value.rcvd.code == 1011
        assert [type(e) for e in srv.errors] == [ValueError]
        assert wslab.status().rows[0][-1] == 1
        await srv.aclose()

    run(main())
    err = capsys.readouterr().err
    assert "server 'broken': the handler raised ValueError: boom in the handler" in err
    assert "Traceback" in err


def test_an_exercise_stub_in_a_handler_is_one_line_without_a_traceback(capsys):
    """A learner's handler that still raises NotImplementedError has nothing to debug: one line
    says so (the check beside it reports "not done yet"), no traceback fills the output."""

    async def stub(connection):
        raise NotImplementedError("not done yet")

    async def main():
        srv = await wslab.serve(stub, name="stub")
        async with connect(srv.url) as ws:
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
        assert info.value.rcvd.code == 1011 and [type(e) for e in srv.errors] == [NotImplementedError]
        await srv.aclose()

    run(main())
    err = capsys.readouterr().err
    assert "server 'stub': the handler is not written yet (NotImplementedError: not done yet)" in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_client_going_away_is_not_a_handler_error(capsys):
    async def main():
        srv = await wslab.serve(echo, name="echo")
        async with connect(srv.url) as ws:
            await ws.send("x")
            await ws.recv()
        async with connect(srv.url):
            pass
        await srv.aclose()
        assert srv.errors == []

    run(main())
    assert "handler raised" not in capsys.readouterr().err


def test_legacy_two_argument_handler_is_refused_with_the_modern_signature():
    async def handler(ws, path):
        pass

    with pytest.raises(TypeError, match=r"handler\(connection\).*connection.request.path"):
        wslab.serve_in_thread(handler)


def test_sync_handler_is_refused():
    def handler(connection):
        pass

    with pytest.raises(TypeError, match="async def handler"):
        wslab.serve_in_thread(handler)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.org"])
def test_non_loopback_host_needs_an_explicit_opt_in(host):
    with pytest.raises(ValueError, match="allow_network=True"):
        wslab.serve_in_thread(echo, host=host)


@pytest.mark.parametrize("port", [-1, 65536, "8081", 80.0, True])
def test_a_port_that_is_not_a_port_number_says_what_to_pass(port):
    with pytest.raises(ValueError, match="port must be a whole number from 0 to 65535.*port=0"):
        wslab.serve_in_thread(echo, port=port)


def test_port_taken_by_another_program_names_the_port_and_suggests_port_0():
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(wslab.PortInUseError, match=rf"port {port} .*port=0"):
            wslab.serve_in_thread(echo, port=port)
    assert [t for t in threading.enumerate() if t.name.startswith("wslab-echo")] == []


def test_serve_outside_a_running_loop_says_how_to_await_it():
    with pytest.raises(wslab.NoRunningLoopError, match="await wslab.serve"):
        wslab.serve(echo)


def test_forgotten_await_says_so():
    async def main():
        pending = wslab.serve(echo, name="forgot")
        with pytest.raises(AttributeError, match="must be awaited"):
            pending.url
        srv = await pending
        await srv.aclose()

    run(main())


def test_status_shows_a_table_in_jupyter_and_text_elsewhere():
    srv = wslab.serve_in_thread(echo, name="shown")
    table = wslab.status()
    assert "shown" in str(table) and srv.url in str(table) and "thread" in str(table)
    assert "<table>" in table._repr_html_() and "shown" in table._repr_html_()
    srv.stop()
    assert "no wslab servers running" in str(wslab.status())


SCRIPT = """
import asyncio, wslab
from websockets.asyncio.client import connect

async def main():
    srv = await wslab.serve(wslab.handlers.echo, name="script")
    async with connect(srv.url) as ws:
        await ws.send("from a script")
        print(await ws.recv())
    wslab.serve_in_thread(wslab.handlers.echo, name="left-running")

asyncio.run(main())
"""


def test_works_in_a_plain_script_and_exits_with_servers_still_running():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=seconds(30)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Data received: from a script"

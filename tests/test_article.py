"""Lesson 00's claims about the article's code, pinned on the installed websockets.

The article ("Python WebSocket introduction and implementation") was written for
websockets 10; lesson 00 says what of it still runs on the pinned websockets
(>= 14, < 18), and ships its two programs as modern scripts in
``notebooks/article/``. These tests hold each claim to the behaviour it describes,
and run the scripts as processes, the way a learner runs them in a terminal.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import websockets
import websockets.asyncio.client
import websockets.asyncio.server
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from .conftest import run, seconds, within

ARTICLE = Path(__file__).resolve().parent.parent / "notebooks" / "article"


def test_the_articles_serve_call_outside_a_running_loop_raises():
    """websockets 14+: serve() needs a running loop when it is called (lesson 00, section 2)."""

    async def handler(ws, path):  # the article's two-argument handler
        pass

    with pytest.raises(RuntimeError, match="no running event loop"):
        websockets.serve(handler, "127.0.0.1", 0)


def test_websockets_connect_is_the_new_asyncio_client():
    """The article's `websockets.connect(...)` line still runs: it is the new client since 14.0."""
    assert websockets.connect is websockets.asyncio.client.connect
    assert websockets.serve is websockets.asyncio.server.serve


def test_the_articles_header_attributes_are_gone_from_the_new_connection():
    """`request_headers` / `response_headers` are the part of the article's client that breaks."""
    assert not hasattr(ClientConnection, "request_headers")
    assert not hasattr(ClientConnection, "response_headers")


def test_the_articles_two_argument_handler_fails_with_1011():
    """The new server calls the handler with one argument: `(ws, path)` raises TypeError inside."""

    async def handler(ws, path):
        await ws.send(path)

    async def scenario():
        async with websockets.asyncio.server.serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}/") as ws:
                with pytest.raises(ConnectionClosedError):
                    await ws.recv()
                return ws.close_code

    assert run(scenario()) == 1011


def _start_server() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "web_server.py", "--port", "0"],
        cwd=ARTICLE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # Ctrl-C must reach it even when pytest itself was started in the background
        # (which makes children ignore SIGINT): restore the default disposition.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    line = within(proc.stdout.readline, 20, "web_server.py printed no address")
    assert line.startswith("listening on ws://127.0.0.1:"), line
    return proc, line.split()[2]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_the_modern_scripts_run_in_a_terminal_and_the_server_stops_cleanly(stop):
    server, url = _start_server()
    try:
        client = subprocess.run(
            [sys.executable, "web_client.py", url], cwd=ARTICLE,
            capture_output=True, text=True, timeout=seconds(30),
        )
        assert client.returncode == 0, client.stderr
        out = client.stdout
        assert "Request headers:\n" in out and "Sec-WebSocket-Key: " in out
        assert "Response headers:\n" in out and "Sec-WebSocket-Accept: " in out
        assert out.rstrip().endswith("Data received: hello world")
        server.send_signal(stop)
        rest, err = server.communicate(timeout=seconds(10))  # raises TimeoutExpired if it does not stop
        assert server.returncode == 0, err
        assert rest.strip() == "stopped" and "Traceback" not in err
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=seconds(10))


def test_the_server_script_defaults_to_the_articles_port():
    source = (ARTICLE / "web_server.py").read_text()
    assert 'default=8081' in source
    client = (ARTICLE / "web_client.py").read_text()
    assert '"ws://127.0.0.1:8081/"' in client


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_the_article_server_closes_a_connected_client_with_1001_when_stopped(stop):
    """notebooks/article/web_server.py: Ctrl-C or `kill` "closes its clients with 1001 (going away)",
    and prints "stopped", not a traceback of the handler it interrupted."""
    server, url = _start_server()
    try:

        async def scenario() -> int:
            async with connect(url) as websocket:
                server.send_signal(stop)  # the client has sent nothing: the handler still waits
                with pytest.raises(ConnectionClosed):
                    await websocket.recv()
                return websocket.close_code

        assert run(scenario(), timeout=15) == 1001
        rest, err = server.communicate(timeout=seconds(10))
        assert server.returncode == 0 and rest.strip() == "stopped", err
        assert "Traceback" not in err and err.strip() == "", err
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=seconds(10))

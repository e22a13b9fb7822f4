"""Listener limits (wslab/server/limits.py) against hostile and clumsy peers, on 127.0.0.1.

Peers are raw asyncio sockets (a ping flood, a reader that stops, slow-loris
sockets, forged handshakes) and websockets' own client; servers are every
websockets-based listener wslab starts: wslab.serve / serve_in_thread, the chat
room, the push channel.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

import wslab
from wslab.server.limits import DEFAULT_LIMITS, Guard, Limits
from wslab.server.origins import env_origins, origin_allowed

from .conftest import end_child, run, seconds

ROOT = Path(__file__).resolve().parent.parent


def rss_mb() -> float:
    """This process's resident set size, from /proc."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def upgrade_request(path: str = "/", origin: str | None = None, host: str = "127.0.0.1") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def raw_upgrade(port: int, path: str = "/", origin: str | None = None, rcvbuf: int | None = None):
    """A WebSocket opened by hand: (reader, writer, status line); the reader is not used after."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(upgrade_request(path, origin))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), seconds(5))
    return reader, writer, head.split(b"\r\n", 1)[0].decode()


#: A masked ping with a 125-byte payload (RFC 6455 section 5.5.2; mask key 0).
PING = bytes([0x89, 0x80 | 125]) + b"\0\0\0\0" + b"p" * 125


async def ping_flood(port: int, path: str = "/", total: float = 100e6, limit_s: float = 20):
    """Open a WebSocket, stop reading, send pings until ``total`` bytes or the server cuts us.

    Returns (bytes sent, writer): the caller aborts the writer once it has
    checked the server (until then the flooding socket stays open).
    """
    reader, writer, status = await raw_upgrade(port, path, rcvbuf=4096)
    assert status.startswith("HTTP/1.1 101"), status
    writer.transport.pause_reading()
    chunk = PING * 1000
    sent, end = 0, time.monotonic() + seconds(limit_s)
    try:
        while sent < total and time.monotonic() < end:
            writer.write(chunk)
            await asyncio.wait_for(writer.drain(), seconds(3))
            sent += len(chunk)
    except (ConnectionError, asyncio.TimeoutError):
        pass
    return sent, writer


async def wait_until(predicate, timeout: float = 5, what: str = "condition") -> None:
    deadline = time.monotonic() + seconds(timeout)
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.02)


async def start(kind: str, **kwargs):
    """(listener handle, its server, path a client uses) for each websockets-based listener."""
    if kind == "serve":
        srv = await wslab.serve(wslab.handlers.echo, name=f"l-{kind}", **kwargs)
        return srv, srv, "/"
    if kind == "chat":
        room = await wslab.chat_room(name=f"l-{kind}", **kwargs)
        return room, room.server, "/?nick=flood"
    if kind == "push":
        chan = await wslab.push_channel(name=f"l-{kind}", **kwargs)
        return chan, chan.server, "/"
    raise ValueError(kind)


LISTENERS = ["serve", "chat", "push"]


# Item 2: memory without bound


@pytest.mark.parametrize("kind", LISTENERS)
def test_a_ping_flood_from_a_client_that_never_reads_is_closed_and_memory_stays_bounded(kind):
    """Pongs are queued without backpressure by websockets; the guard bounds them (1008)."""

    async def main():
        _, server, path = await start(kind)
        before = rss_mb()
        sent, flooder = await ping_flood(server.port, path)
        try:
            await wait_until(lambda: server.connections == 0, 5, "the flooding connection closed")
            return sent, rss_mb() - before, dict(server.guard.stats)
        finally:
            flooder.transport.abort()

    sent, grew, stats = run(main(), timeout=40)
    assert stats.get("closed: overflow") == 1
    assert grew < 20, f"RSS grew {grew:.1f} MB"


def test_the_push_channel_closes_a_page_that_stops_reading():
    async def main():
        chan = await wslab.push_channel(name="l-push-slow", limits=Limits(max_buffer=256 * 1024))
        reader, writer, status = await raw_upgrade(chan.server.port, rcvbuf=4096)
        writer.transport.pause_reading()
        await wait_until(lambda: chan.clients == 1, 5, "the page joined")
        before = rss_mb()
        text = "x" * 3000
        async with asyncio.timeout(seconds(20)):
            for pushed in range(1, 100_001):
                chan.push(text)
                if pushed % 50 == 0:
                    await asyncio.sleep(0)  # let the loop write
                    if chan.clients == 0:
                        break
        writer.transport.abort()
        return pushed, chan.clients, rss_mb() - before, dict(chan.server.guard.stats)

    pushed, clients, grew, stats = run(main(), timeout=30)
    assert clients == 0
    # 256 KiB in the server's buffer plus what the kernel's socket buffers took
    # (a few MB on loopback); unguarded, all 100,000 pushes (300 MB) were buffered.
    assert pushed < 10_000
    assert stats.get("closed: overflow") == 1
    assert grew < 20


def test_the_chat_room_drops_a_member_whose_buffer_fills_when_nobody_publishes():
    """The room's buffer check ran only when it published; pongs alone now count too."""

    async def main():
        room = await wslab.chat_room(name="l-chat-quiet", notices=False)
        sent, flooder = await ping_flood(room.server.port, "/?nick=quiet")
        try:
            await wait_until(lambda: "quiet" in room.dropped, 5, "the member dropped")
        finally:
            flooder.transport.abort()
        return room.members, room.dropped

    members, dropped = run(main(), timeout=30)
    assert members == [] and dropped == ["quiet"]


def test_a_client_that_neither_reads_nor_answers_is_closed_after_stall_timeout():
    """websockets' keepalive ping waits behind a paused write buffer, so it never times out."""

    async def pusher(connection):
        while True:
            await connection.send("x" * 10_000)

    async def main():
        limits = Limits(stall_timeout=0.5, max_buffer=16 << 20, ping_interval=0.2, ping_timeout=0.2)
        srv = await wslab.serve(pusher, name="l-stall", limits=limits)
        reader, writer, status = await raw_upgrade(srv.port, rcvbuf=4096)
        writer.transport.pause_reading()
        t0 = time.monotonic()
        await wait_until(lambda: srv.connections == 1, 5, "connected")
        await wait_until(lambda: srv.connections == 0, 10, "the stalled client closed")
        writer.transport.abort()
        return time.monotonic() - t0, dict(srv.guard.stats)

    took, stats = run(main(), timeout=20)
    assert stats.get("closed: stalled") == 1
    assert 0.4 < took < seconds(5)


# Connection caps


def test_connections_over_the_cap_get_503_with_retry_after_before_the_upgrade():
    async def main():
        srv = await wslab.serve(wslab.handlers.echo, name="l-cap", limits=Limits(max_connections=3))
        held = [await connect(srv.url) for _ in range(3)]
        with pytest.raises(InvalidStatus) as info:
            await connect(srv.url)
        await held.pop().close()
        await wait_until(lambda: srv.connections == 2, 5, "one closed")
        async with connect(srv.url) as again:
            await again.send("hi")
            echo = await asyncio.wait_for(again.recv(), seconds(5))
        for c in held:
            await c.close()
        return info.value.response, echo, dict(srv.guard.stats)

    response, echo, stats = run(main())
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert echo == "Data received: hi"
    assert stats.get("refused: busy") == 1


_LISTENER_CHILD = textwrap.dedent(
    """
    import asyncio, resource, sys
    import wslab
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))  # the common limit
    kind = sys.argv[1]

    async def main():
        if kind == "serve":
            srv = await wslab.serve(wslab.handlers.echo, name="x")
        elif kind == "chat":
            srv = (await wslab.chat_room(name="x")).server
        else:
            srv = (await wslab.push_channel(name="x")).server
        print(srv.port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the test closes stdin
        await srv.aclose()

    asyncio.run(main())
    """
)


async def _loris(port: int, n: int, opened: list[int]) -> list[asyncio.StreamWriter]:
    """Open ``n`` sockets that send half a request and nothing more (the server may cut some)."""

    async def one() -> asyncio.StreamWriter | None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        except OSError:
            return None
        opened[0] += 1
        return writer

    writers = []
    for start in range(0, n, 100):
        writers += await asyncio.gather(*(one() for _ in range(start, min(n, start + 100))))
    return [w for w in writers if w is not None]


@pytest.mark.parametrize("kind", LISTENERS)
def test_1100_slow_loris_sockets_leave_a_well_behaved_client_served(kind):
    """With the common 1,024 open-file limit, idle half-requests used to lock out every client."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    child = subprocess.Popen([sys.executable, "-c", _LISTENER_CHILD, kind], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    async def main():
        port = int(await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), seconds(20)))
        opened = [0]
        held = await asyncio.wait_for(_loris(port, 1100, opened), seconds(30))
        try:
            t0 = time.monotonic()
            path = "/?nick=good" if kind == "chat" else "/"
            deadline = t0 + seconds(15)
            while True:  # a well-behaved client retries, as a page would
                try:
                    async with connect(f"ws://127.0.0.1:{port}{path}", open_timeout=seconds(3)) as ws:
                        if kind == "serve":
                            await ws.send("hi")
                        first = await asyncio.wait_for(ws.recv(), seconds(3))
                        return time.monotonic() - t0, first, opened[0]
                except (OSError, asyncio.TimeoutError, InvalidHandshake, ConnectionClosed):
                    if time.monotonic() > deadline:
                        raise AssertionError("no well-behaved client served within 15 s") from None
                    await asyncio.sleep(0.1)
        finally:
            for writer in held:
                writer.transport.abort()

    try:
        took, first, opened = run(main(), timeout=60)
    finally:
        err = end_child(child)
    assert opened == 1100
    assert took < seconds(15)
    assert first
    assert "Too many open files" not in err, err[-2000:]


# Item 7: Origin


@pytest.mark.parametrize("kind", [*LISTENERS, "thread"])
def test_a_forged_origin_is_refused_by_every_listener(kind, monkeypatch):
    monkeypatch.delenv("WSLAB_ORIGINS", raising=False)
    monkeypatch.delenv("JUPYTERHUB_PUBLIC_URL", raising=False)

    async def main():
        if kind == "thread":
            srv = wslab.serve_in_thread(wslab.handlers.echo, name="l-thread")
            path = "/"
        else:
            _, srv, path = await start(kind)
        codes = []
        for origin in ("https://evil.example", "null", f"http://127.0.0.1.evil.example:{srv.port}"):
            _, writer, status = await raw_upgrade(srv.port, path, origin=origin)
            writer.close()
            codes.append(status)
        _, writer, ok = await raw_upgrade(srv.port, path.replace("flood", "ok"),
                                          origin=f"http://127.0.0.1:{srv.port}")
        writer.close()
        return codes, ok

    codes, ok = run(main())
    assert codes == ["HTTP/1.1 403 Forbidden"] * 3
    assert ok.startswith("HTTP/1.1 101")


def test_2000_forged_handshakes_never_grow_the_allow_list(monkeypatch):
    """Issue 14.7: under JupyterHub the room learnt every Origin equal to its Host (2 -> 2,002)."""
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/ada/")

    async def main():
        room = await wslab.chat_room(name="l-forged")
        port = room.server.port
        before = list(room.origins)
        statuses: dict[str, int] = {}

        async def forge(i: int) -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(upgrade_request("/?nick=x", origin=f"http://rebind{i}.test:{port}",
                                         host=f"rebind{i}.test:{port}"))
            status = (await reader.readuntil(b"\r\n")).decode().strip()
            statuses[status] = statuses.get(status, 0) + 1
            writer.transport.abort()

        for batch in range(0, 2000, 50):  # under Limits.max_handshakes at a time
            await asyncio.gather(*(forge(i) for i in range(batch, batch + 50)))
        return before, list(room.origins), statuses, room.server.guard.stats["refused: origin"]

    before, after, statuses, refused = run(main(), timeout=60)
    assert statuses == {"HTTP/1.1 403 Forbidden": 2000}
    assert refused == 2000
    assert after == before


def test_the_origin_policy_on_its_own():
    assert origin_allowed(None)
    assert not origin_allowed(None, limits=Limits(allow_no_origin=False))
    assert origin_allowed("http://localhost:8888")
    assert origin_allowed("http://[::1]:8888")
    assert not origin_allowed("http://localhost.evil.example")
    assert not origin_allowed("http://127.0.0.1:8888", limits=Limits(local_origins=False))
    assert origin_allowed("http://10.0.0.5:8765", sockname=("10.0.0.5", 8765))
    assert not origin_allowed("http://10.0.0.5:8766", sockname=("10.0.0.5", 8765))
    assert origin_allowed("https://hub.example.org", limits=Limits(origins=("https://hub.example.org",)))
    assert env_origins({"WSLAB_ORIGINS": "https://a.example, nonsense, https://user@b.example",
                        "JUPYTERHUB_PUBLIC_URL": "https://Hub.Example.org/user/ada/"}) == (
        "https://a.example", "https://hub.example.org")
    # Without limits= the policy is Limits()'s own (origins.py cannot import limits.py: it names the defaults)
    for origin in (None, "http://localhost:8888", "http://[::1]", "https://evil.example", "null"):
        assert origin_allowed(origin) == origin_allowed(origin, limits=Limits()), origin


def test_limits_say_what_is_wrong():
    with pytest.raises(ValueError, match="max_buffer"):
        Limits(max_buffer=0)
    with pytest.raises(ValueError, match="ping_timeout"):
        Limits(ping_timeout=-1)
    with pytest.raises(TypeError, match="origins"):
        Limits(origins="https://one.example")
    with pytest.raises(TypeError, match="wslab.Limits"):
        Guard({"max_size": 1})
    kwargs = Guard().serve_kwargs()
    assert kwargs["max_size"] == DEFAULT_LIMITS.max_size and kwargs["open_timeout"] == 10
    assert callable(kwargs["process_request"]) and kwargs["create_connection"] is not None


# Item 8: a script whose main raises does not hang on exit


def test_a_script_whose_main_raises_exits_although_a_client_stopped_reading(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(
        """
        import asyncio, os, socket
        import wslab

        async def pusher(connection):
            while True:
                await connection.send("x" * 60000)

        async def main():
            srv = await wslab.serve(pusher, "p")
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", srv.port))
            sock.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n"
                         b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n")
            def waiting_in_drain():  # the server's buffer past its high-water mark: send() waits in drain()
                return any(c.transport.get_write_buffer_size() > c.transport.get_write_buffer_limits()[1]
                           for c in srv._ws_server.connections)

            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10 * float(os.environ.get("WSLAB_TIME_SCALE", "1"))
            while not waiting_in_drain():
                if loop.time() > deadline:
                    raise SystemExit("the pusher never filled the server's buffer")
                await asyncio.sleep(0.01)
            raise RuntimeError("main failed")

        asyncio.run(main())
        """
    ))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=seconds(30), env=env)
    took = time.monotonic() - t0
    assert out.returncode == 1 and "RuntimeError: main failed" in out.stderr, out.stderr[-2000:]
    assert took < seconds(10)


def test_the_process_wide_budget_refuses_with_503_before_files_run_out(monkeypatch):
    from wslab import limits

    async def main():
        srv = await wslab.serve(wslab.handlers.echo, name="l-budget")
        budget = limits.open_connections() + 1  # room for one more socket in this process
        monkeypatch.setattr(limits, "fd_budget", lambda: budget)
        async with connect(srv.url) as first:
            with pytest.raises(InvalidStatus) as info:
                await connect(srv.url)
            await first.send("still served")
            echo = await asyncio.wait_for(first.recv(), seconds(5))
        return info.value.response, echo

    response, echo = run(main())
    assert response.status_code == 503 and b"open-file limit" in response.body
    assert echo == "Data received: still served"
    assert limits.count_open(+1) - 1 == limits.count_open(-1)

"""The from-scratch server passes the battery and talks to real clients.

The clients are independent implementations: the websockets library, wsproto
(sans-I/O, driven over a raw TCP connection) and headless Chromium.
"""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

import wslab
from wslab import frames, scratch
from wslab.battery import CASES

from .conftest import CHROMIUM, CHROMIUM_ARGS, eventually, need_chromium, run, seconds, serve_one_answer


def with_scratch(use, *, timeout: float = 10, **options):
    """What ``await use(srv)`` gives against a new ``wslab.serve_scratch(**options)``, closed after;
    the whole within ``timeout`` seconds (scaled)."""

    async def main():
        srv = await wslab.serve_scratch(**options)
        try:
            return await use(srv)
        finally:
            await srv.aclose()

    return run(main(), timeout=timeout)


async def raw_answer(srv, request: bytes) -> bytes:
    """All that ``srv`` answers a raw client writing ``request``, up to the server's close (5 s, scaled)."""
    reader, writer = await asyncio.open_connection(srv.host, srv.port)
    writer.write(request)
    answer = await asyncio.wait_for(reader.read(), seconds(5))
    writer.close()
    return answer


# The battery


def test_the_reference_server_passes_every_case_of_the_battery():
    report = with_scratch(lambda srv: wslab.check_server(srv, timeout=seconds(5)), timeout=60)
    assert report.failed == [], str(report)
    assert len(report) == len(CASES) and report.server_errors == []


def test_the_size_limit_is_a_parameter():
    """RFC 6455 7.4.1: 1009 for a message over the server's limit, whatever the limit."""

    cases = ["oversized message", "200 bytes (16-bit length)", "70,000 bytes (64-bit length)"]
    report = with_scratch(lambda srv: wslab.check_server(srv, max_size=1000, timeout=seconds(5), cases=cases),
                          max_size=1000)
    assert report.failed == []  # max_size applies: 70,000 bytes over 1000 must be refused
    assert "1009" in report["70,000 bytes (64-bit length)"].happened


def test_a_reader_that_accepts_unmasked_frames_fails_only_the_masking_case(monkeypatch):
    """RFC 6455 5.1: a server must close with 1002 on an unmasked client frame."""

    class Lenient(frames.Reader):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._mask_required = None  # the bug: accept both

    monkeypatch.setattr(frames, "Reader", Lenient)
    report = with_scratch(lambda srv: wslab.check_server(srv, timeout=seconds(1)), timeout=60)
    assert report.failed == ["unmasked client frame"], str(report)


# Independent clients


def test_a_websockets_client_completes_a_session():
    async def main():
        srv = await wslab.serve_scratch(lambda m: m.upper() if isinstance(m, str) else m[::-1])
        try:
            async with connect(srv.url, compression=None) as ws:
                await ws.send("hello")
                text = await ws.recv()
                await ws.send(b"\x01\x02\x03")
                data = await ws.recv()
                big = "é" * 40_000  # 80,000 bytes of UTF-8: a 64-bit length
                await ws.send(big)
                echoed = await ws.recv()
                latency = await ws.ping(b"hi")
                await asyncio.wait_for(latency, seconds(5))
                await ws.close(1000, "done")
                return text, data, echoed == big.upper(), ws.protocol.close_rcvd.code
        finally:
            await srv.aclose()

    assert run(main()) == ("HELLO", b"\x03\x02\x01", True, 1000)


def test_a_wsproto_client_completes_a_session():
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import (
        AcceptConnection, BytesMessage, CloseConnection, Ping, Pong, Request, TextMessage,
    )

    async def main():
        srv = await wslab.serve_scratch()
        reader, writer = await asyncio.open_connection(srv.host, srv.port)
        ws = WSConnection(ConnectionType.CLIENT)
        events = []

        async def until(kind):
            for _ in range(100):  # bounded: each round reads at least one byte
                for event in ws.events():
                    events.append(event)
                    if isinstance(event, kind):
                        return event
                data = await reader.read(65536)
                ws.receive_data(data or None)
            raise AssertionError(f"no {kind.__name__} in {events}")

        try:
            writer.write(ws.send(Request(host=f"{srv.host}:{srv.port}", target="/")))
            await until(AcceptConnection)
            writer.write(ws.send(TextMessage(data="from wsproto")))
            text = await until(TextMessage)
            writer.write(ws.send(TextMessage(data="frag", message_finished=False)))
            writer.write(ws.send(Ping(payload=b"mid")))
            writer.write(ws.send(TextMessage(data="mented", message_finished=True)))
            pong = await until(Pong)
            fragmented = await until(TextMessage)
            writer.write(ws.send(BytesMessage(data=bytes(300))))
            data = await until(BytesMessage)
            writer.write(ws.send(CloseConnection(code=1000, reason="bye")))
            closed = await until(CloseConnection)
            eof = await reader.read()
            return text.data, pong.payload, fragmented.data, data.data, closed.code, eof
        finally:
            writer.close()
            await srv.aclose()

    assert run(main()) == ("from wsproto", b"mid", "fragmented", bytes(300), 1000, b"")


PAGE = b"""<!doctype html><meta charset="utf-8"><title>wslab scratch test</title><p>test page</p>"""

SESSION_JS = """
async (url) => {
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  const failed = new Promise((_, reject) => { ws.onerror = () => reject(new Error("websocket error")); });
  const next = () => Promise.race([failed, new Promise((resolve) => { ws.onmessage = (e) => resolve(e.data); })]);
  await Promise.race([failed, new Promise((resolve) => { ws.onopen = resolve; })]);
  const log = [];
  ws.send("Hello from Chromium \u2713");
  log.push(await next());
  ws.send(new Uint8Array([0, 1, 2, 255]).buffer);
  log.push(Array.from(new Uint8Array(await next())));
  ws.send("x".repeat(70000));
  log.push((await next()).length);
  const closed = new Promise((resolve) => {
    ws.onclose = (e) => resolve({code: e.code, reason: e.reason, clean: e.wasClean});
  });
  ws.close(4000, "bye");
  log.push(await closed);
  return log;
}
"""


async def serve_page() -> asyncio.base_events.Server:
    """A one-page HTTP server on 127.0.0.1 (about:blank cannot open WebSockets to loopback)."""
    return await serve_one_answer(lambda head: (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
        + f"Content-Length: {len(PAGE)}\r\nConnection: close\r\n\r\n".encode() + PAGE
    ))


@pytest.mark.browser
def test_headless_chromium_completes_a_session():
    need_chromium()
    from playwright.async_api import async_playwright

    async def main():
        srv = await wslab.serve_scratch()
        http = await serve_page()
        page_url = f"http://127.0.0.1:{http.sockets[0].getsockname()[1]}/"
        try:
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                try:
                    page = await browser.new_page()
                    await page.goto(page_url)
                    return await page.evaluate(SESSION_JS, srv.url)
                finally:
                    await browser.close()
        finally:
            http.close()
            await srv.aclose()

    log = run(main(), timeout=90)
    assert log == [
        "Hello from Chromium \u2713",
        [0, 1, 2, 255],
        70000,
        {"code": 4000, "reason": "bye", "clean": True},
    ]


# Running in the background like wslab's other servers


def test_status_lists_it_and_stopping_sends_1001_to_clients():
    """RFC 6455 7.4.1: 1001, going away, when the server stops."""

    async def main():
        srv = await wslab.serve_scratch(name="visible")
        listed = [row[0] for row in wslab.status().rows]
        ws = await connect(srv.url)
        await ws.send("x")
        await ws.recv()
        connections = srv.connections
        await srv.aclose()
        try:
            await asyncio.wait_for(ws.recv(), seconds(5))
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
        return listed, connections, code, wslab.status().rows, srv.running

    listed, connections, code, after, running = run(main())
    assert "visible" in listed and connections == 1
    assert code == 1001 and after == [] and running is False


def test_stop_all_stops_it_and_the_port_is_free_again():
    async def main():
        srv = await wslab.serve_scratch(name="to-stop")
        wslab.stop_all()  # from the server's own loop: stops listening at once
        with pytest.raises(OSError):
            await asyncio.wait_for(asyncio.open_connection(srv.host, srv.port), seconds(5))
        return srv.running

    assert run(main()) is False


def test_restarting_under_the_same_name_replaces_the_old_server():
    async def main():
        first = await wslab.serve_scratch(name="same")
        second = await wslab.serve_scratch(name="same")
        try:
            return first.running, second.running, [r[0] for r in wslab.status().rows].count("same")
        finally:
            await second.aclose()

    assert run(main()) == (False, True, 1)


def test_a_stub_in_the_connection_code_is_kept_and_reported_once(capsys):
    async def not_done(reader, writer):
        raise NotImplementedError("not done yet")

    async def main():
        srv = await wslab.serve_streams(not_done, name="stub")
        try:
            report = await wslab.check_server(srv, cases=["text echo", "ping -> pong"], timeout=seconds(5))
        finally:
            await srv.aclose()
        return report, srv.errors

    report, errors = run(main())
    assert report.failed == ["text echo", "ping -> pong"]
    assert len(errors) == 2 and all(isinstance(e, NotImplementedError) for e in errors)
    assert capsys.readouterr().err.count("NotImplementedError: not done yet") == 1
    with pytest.raises(NotImplementedError):
        report.assert_passed()


def raises(message):
    raise ValueError(f"cannot handle {message!r}")


@pytest.mark.parametrize("broken, error", [(raises, ValueError), (lambda message: 42, TypeError)])
def test_a_handler_that_raises_or_returns_nonsense_closes_with_1011(broken, error):
    """RFC 6455 7.4.1: 1011, the server met an unexpected condition."""

    async def main():
        srv = await wslab.serve_scratch(broken, name="broken")
        try:
            async with connect(srv.url) as ws:
                await ws.send("boom")
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), seconds(5))
            return closed.value.rcvd.code, [type(e) for e in srv.errors]
        finally:
            await srv.aclose()

    assert run(main()) == (1011, [error])


def test_serve_streams_wants_an_async_function_on_loopback():
    def plain(reader, writer):
        pass

    async def fine(reader, writer):
        pass

    with pytest.raises(TypeError, match="async def"):
        run(wslab.serve_streams(plain))
    with pytest.raises(ValueError, match="allow_network"):
        run(wslab.serve_streams(fine, host="0.0.0.0"))


def test_a_refused_handshake_gets_a_body_that_says_why():
    """RFC 6455 4.2.2 / 4.4: refuse with an HTTP error that says what was wrong."""

    answer = with_scratch(lambda srv: raw_answer(srv, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))  # a browser's address bar
    assert answer.startswith(b"HTTP/1.1 400 ") and b"Upgrade" in answer


def test_the_reference_connection_is_short_enough_to_read():
    """The lesson asks learners to compare with it: keep it readable."""
    import inspect

    lines = inspect.getsource(scratch.connection).splitlines()
    assert len(lines) < 110


# Failing the connection (RFC 6455 7.1.7): what came first is answered, the close is seen


# Masked TEXT 'hello', masked PING 'p', masked TEXT b'\xff' (invalid UTF-8), mask 61 62 63 64.
ISSUE_11_BYTES = bytes.fromhex("81 85 61 62 63 64 09 07 0f 08 0e  89 81 61 62 63 64 11  81 81 61 62 63 64 9e")


def test_events_before_a_bad_frame_are_answered_before_the_close():
    """Issue 11: like websockets, wsproto and Node's ws: echo 'hello', pong 'p', then close 1007 (8.1)."""
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, CloseConnection, Pong, Request, TextMessage

    async def main():
        srv = await wslab.serve_scratch(name="before-error")
        reader, writer = await asyncio.open_connection(srv.host, srv.port)
        ws = WSConnection(ConnectionType.CLIENT)
        try:
            writer.write(ws.send(Request(host=f"{srv.host}:{srv.port}", target="/")))
            data = b""
            for _ in range(100):  # bounded: until the 101
                data += await asyncio.wait_for(reader.read(65536), seconds(5))
                if b"\r\n\r\n" in data:
                    break
            ws.receive_data(data)
            assert isinstance(next(ws.events()), AcceptConnection)
            writer.write(ISSUE_11_BYTES)  # all three frames in one write
            answer = await asyncio.wait_for(reader.read(), seconds(5))  # until the server's FIN
            ws.receive_data(answer)
            return [e for e in ws.events()]
        finally:
            writer.close()
            await srv.aclose()

    text, pong, close = run(main())
    assert isinstance(text, TextMessage) and text.data == "hello"
    assert isinstance(pong, Pong) and pong.payload == b"p"
    assert isinstance(close, CloseConnection) and close.code == 1007


SERVER_SCRIPT = """
import asyncio, resource, sys
import wslab

async def main():
    if len(sys.argv) > 1:  # the open-file limit to run under, like a laptop's common 1,024
        resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    srv = await wslab.serve_scratch(name="out-of-process")
    print(srv.port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the test closes stdin
    await srv.aclose()
    print(dict(srv.stats), flush=True)

asyncio.run(main())
"""


class ServerProcess:
    """The reference server in a process of its own (``with ServerProcess() as port:``), stopped at exit."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.stats = ""

    def __enter__(self) -> int:
        import os
        import selectors
        import subprocess
        import sys

        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # this checkout's wslab
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER_SCRIPT, *self.args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(seconds(20)):
                self.__exit__()
                raise AssertionError("the server process printed no port in 20 s")
        return int(self.proc.stdout.readline())

    def __exit__(self, *exc: object) -> None:
        import subprocess

        self.proc.stdin.close()
        try:
            self.proc.wait(seconds(10))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stats = self.proc.stdout.read()
        self.proc.stdout.close()


def oversized_codes(url: str, runs: int) -> list:
    """A sync websocket-client sends 1 MiB + 1 bytes; what does it read back, each run?"""
    import struct

    import websocket

    seen = []
    for _ in range(runs):
        ws = websocket.create_connection(url, timeout=seconds(5))
        try:
            ws.send_binary(b"x" * (2**20 + 1))
            opcode, data = ws.recv_data(control_frame=True)
            seen.append((opcode, struct.unpack("!H", data[:2])[0]))
        except Exception as exc:  # noqa: BLE001 - a reset is what the test looks for
            seen.append(repr(exc))
        finally:
            ws.shutdown()
    return seen


def test_a_sync_client_sending_one_byte_too_many_sees_1009_every_time_in_a_thread():
    """Issue 11: the server half-closes and drains, so the client reads 1009 instead of a reset."""
    from wslab.server.background import LoopThread

    thread = LoopThread("oversized")
    try:
        srv = thread.run(wslab.serve_scratch(name="oversized"))
        assert oversized_codes(srv.url, 20) == [(8, 1009)] * 20
        thread.run(srv.aclose())
    finally:
        thread.stop()


def test_a_sync_client_sending_one_byte_too_many_sees_1009_every_time_out_of_process():
    with ServerProcess() as port:
        assert oversized_codes(f"ws://127.0.0.1:{port}/", 20) == [(8, 1009)] * 20


# Hostile clients (issue 14 items 6, 7, 8): timeouts, caps, Origin, a quiet stop


def raise_open_file_limit(needed: int) -> None:
    """Raise this process's soft RLIMIT_NOFILE to ``needed`` (bounded by the hard limit), or skip."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft != resource.RLIM_INFINITY and soft < needed:
        pytest.skip(f"needs {needed} open files, the hard limit is {hard}")


def test_1100_slow_loris_connections_leave_a_good_client_served_within_15_s():
    """Issue 14 item 6: a server process limited to 1,024 open files, 1,100 idle sockets, one real client.

    Once max_handshakes sockets wait, a newcomer cuts the oldest idle one (or is cut itself while
    all are young); sockets beyond the process's budget are refused: the well-behaved client is
    served within about handshake_grace of asking.
    """
    raise_open_file_limit(4096)  # this process holds the 1,100 attacking sockets
    loris_count = 1100

    async def main(port: int):
        url = f"ws://127.0.0.1:{port}/"
        loris = []
        try:
            for _ in range(loris_count):
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    continue  # refused: counted below
                writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the end of the head
                loris.append(writer)
            loop = asyncio.get_running_loop()
            start = loop.time()
            for attempt in range(1, 200):  # bounded: a well-behaved client retries after a refusal
                try:
                    async with connect(url, open_timeout=seconds(2)) as ws:
                        await ws.send("still here?")
                        reply = await asyncio.wait_for(ws.recv(), seconds(2))
                        break
                except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed):
                    if loop.time() - start > seconds(15):
                        raise AssertionError(f"not served within 15 s ({attempt} attempts)")
                    await asyncio.sleep(0.2)  # back-off between retries, not synchronisation
            return reply, loop.time() - start, attempt, len(loris)
        finally:
            for writer in loris:
                writer.transport.abort()

    server = ServerProcess("1024")
    with server as port:
        reply, elapsed, attempts, opened = run(main(port), timeout=60)
    assert reply == "still here?" and elapsed < seconds(15), (elapsed, attempts)
    assert opened == loris_count
    assert "cut: idle handshake" in server.stats or "refused: handshakes" in server.stats, server.stats


def test_a_connection_beyond_the_cap_gets_503_with_retry_after():
    """A cap on concurrent connections, refused cleanly with an HTTP answer (not a reset)."""

    before = wslab.limits.open_connections()

    async def main():
        srv = await wslab.serve_scratch(name="capped", limits=wslab.Limits(max_connections=2))
        try:
            first, second = await connect(srv.url), await connect(srv.url)
            with pytest.raises(InvalidStatus) as refused:
                await connect(srv.url, open_timeout=seconds(5))
            await first.close()
            await first.wait_closed()
            await eventually(lambda: srv.connections < 2, "the server notices the first one left")
            async with connect(srv.url) as third:
                await third.send("in")
                echoed = await third.recv()
            await second.close()
            return refused.value.response, echoed, srv.stats["refused: busy"]
        finally:
            await srv.aclose()

    response, echoed, refused = run(main())
    assert wslab.limits.open_connections() == before  # every socket left the process-wide count
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert b"busy" in response.body
    assert echoed == "in" and refused == 1


def test_an_unfinished_request_gets_408_after_the_handshake_timeout():
    answer = with_scratch(lambda srv: raw_answer(srv, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"),  # no blank line
                          name="slow-head", limits=wslab.Limits(open_timeout=0.3))
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n") and b"0.3 s" in answer


def test_a_client_that_never_answers_the_keepalive_ping_is_closed_with_1011():
    """RFC 6455 5.5.2: a ping "may serve as a keepalive"; no answer within ping_timeout closes."""

    async def main():
        limits = wslab.Limits(ping_interval=0.2, ping_timeout=0.3)
        srv = await wslab.serve_scratch(name="keepalive", limits=limits)
        try:
            async with connect(srv.url, ping_interval=None) as alive:  # websockets answers pings itself
                for _ in range(3):
                    await asyncio.sleep(0.25)  # quiet for longer than ping_interval, on purpose
                    await alive.send("x")
                    assert await alive.recv() == "x"
            reader, writer = await asyncio.open_connection(srv.host, srv.port)
            writer.write(hs_request())
            answer = await asyncio.wait_for(reader.read(), seconds(5))  # never answers: until EOF
            writer.close()
            return answer
        finally:
            await srv.aclose()

    answer = run(main())
    after = answer.split(b"\r\n\r\n", 1)[1]
    assert after.startswith(b"\x89\x09keepalive"), after  # the ping
    assert after[11:].startswith(b"\x88") and after[13:15] == (1011).to_bytes(2, "big"), after


def hs_request() -> bytes:
    from wslab import handshake

    return handshake.build_request("ws://127.0.0.1/")


def test_a_client_that_never_reads_is_cut_after_the_stall_timeout():
    """No unbounded buffer: a reply the client does not read waits stall_timeout, then TCP is cut."""

    async def main():
        srv = await wslab.serve_scratch(lambda m: m * 100_000, name="stall", limits=wslab.Limits(stall_timeout=0.3))
        try:
            reader, writer = await asyncio.open_connection(srv.host, srv.port)
            from websockets.frames import Frame as WsFrame, Opcode as WsOpcode

            frame = WsFrame(WsOpcode.TEXT, b"0123456789").serialize(mask=True, extensions=[])
            writer.write(hs_request() + frame * 20)
            await writer.drain()
            await eventually(lambda: srv.connections == 0, "the server cuts the connection")
            writer.transport.abort()
            return srv.connections
        finally:
            await srv.aclose()

    assert run(main()) == 0


def test_a_forged_origin_is_refused_with_403_and_the_kit_policy_holds():
    """RFC 6455 10.2; issue 14 item 7: this computer's pages and the explicit list only; Host is not trusted."""

    async def main():
        srv = await wslab.serve_scratch(name="origin", origins=["https://hub.example.org"])
        try:
            statuses = {}
            for origin in ["http://evil.example", "http://127.0.0.1.evil.example", "null",
                           "http://127.0.0.1:8888", "https://hub.example.org", None]:
                try:
                    async with connect(srv.url, origin=origin) as ws:
                        await ws.send("hi")
                        await ws.recv()
                        statuses[origin] = 101
                except InvalidStatus as refused:
                    statuses[origin] = refused.response.status_code
            # DNS rebinding: a page whose Host is its own name
            rebinding = await raw_answer(srv, hs_request().replace(b"Host: 127.0.0.1", b"Host: evil.example")
                                         .replace(b"\r\n\r\n", b"\r\nOrigin: http://evil.example\r\n\r\n"))
            return statuses, rebinding
        finally:
            await srv.aclose()

    statuses, rebinding = run(main())
    assert statuses == {
        "http://evil.example": 403, "http://127.0.0.1.evil.example": 403, "null": 403,
        "http://127.0.0.1:8888": 101, "https://hub.example.org": 101, None: 101,
    }
    assert rebinding.startswith(b"HTTP/1.1 403 Forbidden\r\n") and b"10.2" in rebinding


def test_stopping_with_clients_connected_prints_no_traceback(capfd, caplog):
    """Issue 14 item 8: Python 3.11's start_server printed a CancelledError traceback per client."""

    async def main():
        srv = await wslab.serve_scratch(name="quiet-stop")
        clients = [await connect(srv.url) for _ in range(3)]
        await srv.aclose()
        codes = []
        for ws in clients:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), seconds(5))
            codes.append(closed.value.rcvd.code)
        return codes

    assert run(main()) == [1001] * 3
    err = capfd.readouterr().err
    assert "Traceback" not in err and "CancelledError" not in err, err
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.records


EMFILE_SCRIPT = """
import asyncio, resource, sys
import concurrent.futures.thread  # run_in_executor imports it on first use: not once files run out
import wslab

async def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    srv = await wslab.serve_scratch(name="emfile")
    hog = []
    try:
        while len(hog) < 1000:  # another part of the process takes every file left
            hog.append(open("/dev/null"))
    except OSError:
        pass
    print(srv.port, flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)  # "free"
    for f in hog:
        f.close()
    print("freed", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # EOF: stop
    await srv.aclose()
    print(dict(srv.stats), flush=True)

asyncio.run(main())
"""


def test_out_of_file_descriptors_pauses_accepting_says_so_once_and_recovers():
    """Issue 14 item 6: no tight logging loop on EMFILE; the server accepts again once files are free."""
    import os
    import selectors
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, "-c", EMFILE_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, text=True)

    def line() -> str:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            assert sel.select(seconds(20)), "the server process said nothing for 20 s"
        return proc.stdout.readline().strip()

    async def client(port: int):
        async with connect(f"ws://127.0.0.1:{port}/", open_timeout=seconds(10)) as ws:
            await ws.send("back")
            return await ws.recv()

    try:
        port = int(line())

        async def main():
            pending = asyncio.ensure_future(client(port))
            done, _ = await asyncio.wait([pending], timeout=seconds(1.5))  # the server cannot accept: nothing happens
            assert not done, "served although the process had no file descriptor left"
            proc.stdin.write("free\n")
            proc.stdin.flush()
            return await asyncio.wait_for(pending, seconds(10))

        assert run(main(), timeout=30) == "back"
        assert line() == "freed"
    finally:
        proc.stdin.close()
        try:
            proc.wait(seconds(10))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    stats = proc.stdout.read()
    err = proc.stderr.read()
    assert "accept paused: EMFILE" in stats, stats
    assert err.count("too many open files") == 1 and len(err) < 1000, err[:2000]


def test_accepted_sockets_send_small_frames_at_once():
    """TCP_NODELAY on every accepted socket, as asyncio's own servers have (else ~40 ms per reply pair)."""
    import socket

    async def main():
        seen = []

        async def probe(reader, writer):
            sock = writer.get_extra_info("socket")
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

        srv = await wslab.serve_streams(probe, name="nodelay")
        try:
            reader, writer = await asyncio.open_connection(srv.host, srv.port)
            await asyncio.wait_for(reader.read(), seconds(5))  # the server closes after probe()
            writer.close()
            return seen
        finally:
            await srv.aclose()

    assert run(main()) == [1]


def test_the_size_limit_comes_from_the_kit_limits_unless_given():
    """One default for every listener: Limits.max_size; max_size= still wins."""

    async def main():
        srv = await wslab.serve_scratch(name="limits-size", limits=wslab.Limits(max_size=1000))
        try:
            async with connect(srv.url, compression=None) as ws:
                await ws.send("x" * 1000)
                assert await ws.recv() == "x" * 1000
                await ws.send("x" * 1001)
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), seconds(5))
            return closed.value.rcvd.code
        finally:
            await srv.aclose()

    assert run(main()) == 1009

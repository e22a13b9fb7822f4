"""The from-scratch server passes the battery and talks to real clients.

The clients are independent implementations: the websockets library, wsproto
(sans-I/O, driven over a raw TCP connection) and headless Chromium.
"""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

import wslab
from wslab import frames, scratch
from wslab.battery import CASES

from .conftest import CHROMIUM, CHROMIUM_ARGS, need_chromium, run, seconds


# The battery


def test_the_reference_server_passes_every_case_of_the_battery():
    async def main():
        srv = await wslab.serve_scratch()
        try:
            return await wslab.check_server(srv, timeout=seconds(5))
        finally:
            await srv.aclose()

    report = run(main(), timeout=60)
    assert report.failed == [], str(report)
    assert len(report) == len(CASES) and report.server_errors == []


def test_the_size_limit_is_a_parameter():
    """RFC 6455 7.4.1: 1009 for a message over the server's limit, whatever the limit."""

    async def main():
        srv = await wslab.serve_scratch(max_size=1000)
        try:
            return await wslab.check_server(
                srv, max_size=1000, timeout=seconds(5),
                cases=["oversized message", "200 bytes (16-bit length)", "70,000 bytes (64-bit length)"],
            )
        finally:
            await srv.aclose()

    report = run(main())
    assert report.failed == []  # max_size applies: 70,000 bytes over 1000 must be refused
    assert "1009" in report["70,000 bytes (64-bit length)"].happened


def test_a_reader_that_accepts_unmasked_frames_fails_only_the_masking_case(monkeypatch):
    """RFC 6455 5.1: a server must close with 1002 on an unmasked client frame."""

    class Lenient(frames.Reader):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._mask_required = None  # the bug: accept both

    monkeypatch.setattr(frames, "Reader", Lenient)

    async def main():
        srv = await wslab.serve_scratch()
        try:
            return await wslab.check_server(srv, timeout=seconds(1))
        finally:
            await srv.aclose()

    report = run(main(), timeout=60)
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

    async def page(reader, writer):
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                + f"Content-Length: {len(PAGE)}\r\nConnection: close\r\n\r\n".encode() + PAGE
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(page, "127.0.0.1", 0)


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

    async def main():
        srv = await wslab.serve_scratch()
        try:
            reader, writer = await asyncio.open_connection(srv.host, srv.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # a browser's address bar
            answer = await asyncio.wait_for(reader.read(), seconds(5))
            writer.close()
            return answer
        finally:
            await srv.aclose()

    answer = run(main())
    assert answer.startswith(b"HTTP/1.1 400 ") and b"Upgrade" in answer


def test_the_reference_connection_is_short_enough_to_read():
    """The lesson asks learners to compare with it: keep it readable."""
    import inspect

    lines = inspect.getsource(scratch.connection).splitlines()
    assert len(lines) < 110

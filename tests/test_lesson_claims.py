"""Claims lessons 00, 02 and 03 make about websockets, ipykernel and the article's scripts.

Each test pins one sentence of a lesson to the behaviour it describes, on the pinned
versions, with an independent peer (websockets, raw asyncio sockets, real processes):
when an upgrade changes the behaviour, the test fails and names the lesson to fix.
"""

from __future__ import annotations

import asyncio

import pytest
import websockets
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from .conftest import run, seconds

async def _quiet(connection) -> None:
    await connection.wait_closed()


def _port(server) -> int:
    return server.sockets[0].getsockname()[1]


# Lesson 00


# Lesson 00's other claims (the article, its scripts, ipykernel): tests/test_article.py, tests/test_setup.py


# Lessons 00 and 02: what the handshake of websockets says


def test_websockets_offers_and_accepts_permessage_deflate_with_4_kib_windows_and_context_takeover():
    """Lessons 00 and 02 show these two header values; lesson 03 relies on context takeover.

    RFC 7692 7.1.1: without ``*_no_context_takeover`` in the answer, both sides keep
    their compression context between messages.
    """

    async def scenario():
        async with serve(_quiet, "127.0.0.1", 0) as server:
            async with connect(f"ws://127.0.0.1:{_port(server)}/") as websocket:
                return (websocket.request.headers["Sec-WebSocket-Extensions"],
                        websocket.response.headers["Sec-WebSocket-Extensions"])

    offer, answer = run(scenario())
    assert offer == "permessage-deflate; client_max_window_bits"
    assert answer == "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
    assert "no_context_takeover" not in answer


def test_websockets_picks_the_first_subprotocol_of_the_servers_list_that_the_client_offered():
    """Lesson 02, section 4: server ["chat.v2", "chat.v1"], client ["chat.v1", "chat.v2"] -> chat.v2."""

    async def scenario():
        async with serve(_quiet, "127.0.0.1", 0, subprotocols=["chat.v2", "chat.v1"]) as server:
            async with connect(f"ws://127.0.0.1:{_port(server)}/", subprotocols=["chat.v1", "chat.v2"]) as ws:
                return ws.subprotocol

    assert run(scenario()) == "chat.v2"


def test_an_origin_list_without_none_refuses_a_client_that_sends_no_origin_with_403():
    """Lesson 02, section 5: a client without `Origin` is refused "unless you add `None` to `origins`".

    RFC 6455 10.2: "it SHOULD respond to the WebSocket handshake with a reply containing
    HTTP 403 Forbidden status code".
    """

    async def status(origins, origin):
        async with serve(_quiet, "127.0.0.1", 0, origins=origins) as server:
            try:
                async with connect(f"ws://127.0.0.1:{_port(server)}/", origin=origin):
                    return 101
            except InvalidStatus as refused:
                return refused.response.status_code

    page = "http://127.0.0.1:8888"
    assert run(status([page], page)) == 101
    assert run(status([page], "http://evil.example")) == 403
    assert run(status([page], None)) == 403
    assert run(status([page, None], None)) == 101


@pytest.mark.parametrize("header, value", [
    ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),  # right for another key, wrong for this one
    ("Sec-WebSocket-Protocol", "chat.v9"),  # a subprotocol the client never offered
    ("Sec-WebSocket-Extensions", "x-unknown"),  # an extension the client never offered
])
def test_the_websockets_client_refuses_a_101_with_a_wrong_websocket_header(header, value):
    """Lesson 02, section 4: the client checks every WebSocket header of the answer."""

    async def scenario():
        async def fake_server(reader, writer):
            head = await reader.readuntil(b"\r\n\r\n")
            key = [ln.split(b":", 1)[1].strip() for ln in head.split(b"\r\n")
                   if ln.lower().startswith(b"sec-websocket-key:")][0]
            fields = {"Upgrade": "websocket", "Connection": "Upgrade",
                      "Sec-WebSocket-Accept": websockets.utils.accept_key(key.decode())}
            fields[header] = value
            writer.write(b"HTTP/1.1 101 Switching Protocols\r\n"
                         + "".join(f"{k}: {v}\r\n" for k, v in fields.items()).encode() + b"\r\n")
            await writer.drain()
            await reader.read()  # until the client gives up
            writer.close()

        listener = await asyncio.start_server(fake_server, "127.0.0.1", 0)
        try:
            port = listener.sockets[0].getsockname()[1]
            with pytest.raises(InvalidHandshake):
                async with connect(f"ws://127.0.0.1:{port}/", subprotocols=["chat.v1"], open_timeout=5):
                    pass
        finally:
            listener.close()

    run(scenario())


# Lesson 03


def test_websockets_draws_a_fresh_masking_key_for_every_frame():
    """Lesson 03, section 4: "websockets draws a fresh one for every frame" (RFC 6455 5.3)."""
    keys = {Frame(Opcode.TEXT, b"Hello").serialize(mask=True)[2:6] for _ in range(20)}
    assert len(keys) == 20


def _client_frame_heads(compression: str | None) -> list[tuple[int, int]]:
    """(first byte, payload length) of each frame a websockets client sends: a text
    message, the same in three fragments, then its close (read by hand, 7-bit lengths)."""

    async def scenario() -> bytes:
        raw = bytearray()

        async def sans_io_server(reader, writer):
            protocol = ServerProtocol(extensions=[ServerPerMessageDeflateFactory()])
            while data := await reader.read(65536):
                if protocol.state is State.OPEN or raw:
                    raw.extend(data)
                protocol.receive_data(data)
                for event in protocol.events_received():
                    if isinstance(event, Request):
                        protocol.send_response(protocol.accept(event))
                writer.write(b"".join(protocol.data_to_send()))
                await writer.drain()
                if protocol.close_expected():  # both CLOSE frames passed: the server closes TCP first
                    break
            writer.close()

        listener = await asyncio.start_server(sans_io_server, "127.0.0.1", 0)
        try:
            port = listener.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}/", compression=compression) as websocket:
                await websocket.send("hello")
                await websocket.send(["Hel", "lo ", "again"])
        finally:
            listener.close()
        return bytes(raw)

    raw, heads, pos = run(scenario()), [], 0
    while pos < len(raw):
        length = raw[pos + 1] & 0b0111_1111
        assert raw[pos + 1] & 0b1000_0000 and length < 126, raw[pos:pos + 2].hex()
        heads.append((raw[pos], length))
        pos += 2 + 4 + length
    return heads


def test_websockets_ends_a_fragmented_send_with_an_empty_final_continuation_frame():
    """Lesson 03, section 4: TEXT (not final), CONT, CONT (not final), then an empty final CONT."""
    heads = _client_frame_heads(compression=None)
    assert heads == [(0x81, 5), (0x01, 3), (0x00, 3), (0x00, 5), (0x80, 0), (0x88, 2)], heads


def test_with_permessage_deflate_data_frames_set_rsv1_and_the_close_frame_does_not():
    """Lesson 02, section 4: the TEXT frames go compressed (first byte c1), the CLOSE frame not (88).

    RFC 7692 6: RSV1 marks the first frame of a compressed message, never a control frame.
    """
    firsts = [first for first, _ in _client_frame_heads(compression="deflate")]
    assert firsts[0] == 0xC1 and firsts[1] == 0x41, [hex(b) for b in firsts]  # RSV1 on each first frame
    assert all(b & 0b0111_0000 == 0 for b in firsts[2:]), [hex(b) for b in firsts]  # CONTs and CLOSE
    assert firsts[-1] == 0x88


PAGE = b"<!doctype html><title>wslab</title><p>a page</p>"
OPEN_JS = """
async (url) => await new Promise((resolve, reject) => {
  const ws = new WebSocket(url);
  ws.onmessage = (event) => { resolve(event.data); ws.close(); };
  ws.onerror = () => reject(new Error("websocket error"));
  setTimeout(() => reject(new Error("no message within 5 s")), 5000);
})
"""


@pytest.mark.browser
def test_chromium_sends_the_pages_origin_and_the_servers_cookies_from_another_port(chromium):
    """Lesson 02, section 5: a browser sends `Origin` (the page's site) with every handshake, and
    the cookies it holds for the *server's* host, even from a page on another port of 127.0.0.1
    (same site: `SameSite` does not stop it). RFC 6455 4.1: browsers MUST send |Origin|."""
    import threading

    from websockets.datastructures import Headers
    from websockets.http11 import Response
    from websockets.sync.server import serve as sync_serve

    seen: list[tuple[str | None, str | None]] = []

    def page(connection, request):
        if request.path == "/":
            return Response(200, "OK", Headers({"Content-Type": "text/html", "Content-Length": str(len(PAGE))}), PAGE)
        return None  # /ws: go on with the WebSocket handshake

    def handler(connection):
        seen.append((connection.request.headers.get("Origin"), connection.request.headers.get("Cookie")))
        connection.send("ok")
        connection.recv(timeout=seconds(5))  # until the page closes

    servers = [sync_serve(handler, "127.0.0.1", 0, process_request=page) for _ in range(2)]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    try:
        ws_port, other_port = (s.socket.getsockname()[1] for s in servers)
        tab = chromium.new_page()
        try:
            tab.goto(f"http://127.0.0.1:{ws_port}/")
            tab.evaluate("document.cookie = 'session=s3cr3t; path=/'")
            tab.goto(f"http://127.0.0.1:{other_port}/")  # another origin, the same site
            assert tab.evaluate(OPEN_JS, f"ws://127.0.0.1:{ws_port}/ws") == "ok"
        finally:
            tab.close()
    finally:
        for server in servers:
            server.shutdown()
        for thread in threads:
            thread.join(timeout=seconds(5))
    assert seen and seen[0][0] == f"http://127.0.0.1:{other_port}", seen
    assert "session=s3cr3t" in (seen[0][1] or ""), seen


def test_the_pinned_websockets_has_the_reconnect_delays_lesson_08_uses():
    """Lesson 08, section 2 measures ``async for ws in connect(url, reconnect_delays=...)``: the
    argument exists from websockets 17 (14.2, 15.0.1 and 16.0 raise TypeError), so the kit pins
    ``websockets>=17`` (exercise 7.4's ``follow()`` keeps its own retry loop)."""
    import inspect
    import re
    from pathlib import Path

    from wslab.course.environment import REQUIREMENTS

    root = Path(__file__).resolve().parent.parent
    assert "reconnect_delays" in inspect.signature(connect).parameters
    assert int(websockets.__version__.split(".")[0]) >= 17
    pins = [re.search(r"websockets>=(\d+)", (root / f).read_text()).group(1) for f in ("pyproject.toml", "requirements.txt")]
    assert pins == ["17", "17"] and REQUIREMENTS["websockets"][0] == "17.0"
    source = (root / "instructor" / "source" / "08-keep-it-running.ipynb").read_text()
    assert "reconnect_delays" in source


def test_wsproto_gives_exercise_3_3s_close_codes_for_every_suspect_frame():
    """Lesson 03, exercise 3.3: the expected close codes are what an independent client (wsproto)
    sends, including a lone continuation frame (1002) and a non-final text fragment that ends inside
    a character (legal: RFC 6455 8.1 judges the whole message; fail early only on bytes that no
    continuation can fix)."""
    import json
    from pathlib import Path

    from wsproto.frame_protocol import FrameProtocol, ParseFailed

    notebook = json.loads((Path(__file__).resolve().parent.parent / "instructor" / "source"
                           / "03-read-a-frame-bit-by-bit.ipynb").read_text())
    cell = next("".join(c["source"]) for c in notebook["cells"]
                if c["cell_type"] == "code" and "suspects = [" in "".join(c["source"]))
    namespace: dict = {}
    exec(cell.split("with wslab.exercise")[0], namespace)  # noqa: S102 - the lesson's own list literal
    suspects = namespace["suspects"]
    assert len(suspects) >= 12
    for wire, expected, what in suspects:
        protocol = FrameProtocol(client=True, extensions=[])
        protocol.receive_bytes(bytes.fromhex(wire))
        try:
            list(protocol.received_frames())
            code = None
        except ParseFailed as error:
            code = int(error.code)
        assert code == expected, what


def test_a_websockets_connection_pauses_sends_above_32_kib_and_resumes_below_8_kib():
    """Lesson 08, section 3: ``send()`` waits once the write buffer passes ``write_limit`` (32 KiB,
    the high-water mark) until it drains below ``write_limit // 4`` (asyncio's low-water default)."""

    async def main():
        limits = []

        async def handler(connection):
            limits.append(connection.transport.get_write_buffer_limits())  # (low, high)

        async with serve(handler, "127.0.0.1", 0) as server:
            async with connect(f"ws://127.0.0.1:{_port(server)}/") as client:
                limits.append(client.transport.get_write_buffer_limits())
                await asyncio.wait_for(client.wait_closed(), seconds(5))
        return limits

    assert run(main()) == [(2**15 // 4, 2**15)] * 2


@pytest.mark.browser
def test_chromium_has_websocketstream_without_a_flag_and_the_page_can_test_for_it(chromium):
    """Lesson 08, section 3: in the kit's Chromium (156) ``typeof WebSocketStream`` is "function"
    with no flag (MDN's compatibility data: Chromium 124 on; not Firefox, not Safari), and
    ``"WebSocketStream" in globalThis`` is the test a page uses before falling back."""
    tab = chromium.new_page()
    try:
        tab.set_content("<p>probe</p>")
        assert tab.evaluate("typeof WebSocketStream") == "function"
        assert tab.evaluate('"WebSocketStream" in globalThis') is True
        assert int(chromium.version.split(".")[0]) >= 124
    finally:
        tab.close()


def test_a_websockets_send_has_no_per_message_compression_switch():
    """Lesson 07, section 5: websockets' ``send()`` takes the message and ``text=`` only, so a
    connection that negotiated permessage-deflate (RFC 7692) compresses every message; the way out
    is ``compression=None`` or a context that is not taken over."""
    import inspect

    from websockets.asyncio.connection import Connection

    assert list(inspect.signature(Connection.send).parameters) == ["self", "message", "text"]


@pytest.mark.skipif(__import__("sys").platform != "linux", reason="the lesson's claim is about Linux")
def test_perf_counter_is_the_machine_wide_monotonic_clock_on_linux():
    """Lesson 05 subtracts time.perf_counter() stamps taken in two processes: on Linux it reads CLOCK_MONOTONIC."""
    import time

    assert time.get_clock_info("perf_counter").implementation == "clock_gettime(CLOCK_MONOTONIC)"

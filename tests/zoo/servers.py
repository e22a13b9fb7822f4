"""Start one zoo server in this process: ``python -m tests.zoo.servers NAME [MAX_SIZE]``.

Prints ``PORT <n>`` once it listens on 127.0.0.1 (port 0: the OS picks),
then serves until stdin closes or the process is killed. NAME is a library
(see :data:`LIBRARIES`) or
``raw`` / ``raw:QUIRK`` (see :mod:`tests.zoo.raw`). Every server echoes text
and binary messages and limits messages to MAX_SIZE bytes (1 MiB).
"""

from __future__ import annotations

import asyncio
import sys

LIBRARIES = [
    "websockets", "aiohttp", "tornado", "wsproto", "scratch",
    "uvicorn-websockets", "uvicorn-wsproto", "hypercorn", "autobahn", "simple-websocket",
]


async def asgi_echo(scope, receive, send) -> None:
    """An ASGI echo app: text comes back as text, bytes as bytes (for uvicorn and hypercorn)."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] != "websocket":
        await send({"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


def _bound_socket():
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(100)
    return sock


async def _uvicorn(max_size: int, ws: str) -> int:
    import uvicorn

    sock = _bound_socket()
    config = uvicorn.Config(asgi_echo, ws=ws, ws_max_size=max_size, ws_ping_interval=None, log_level="critical",
                            lifespan="off")
    server = uvicorn.Server(config)
    _BACKGROUND.append(asyncio.ensure_future(server.serve(sockets=[sock])))
    while not server.started:
        await asyncio.sleep(0.01)  # uvicorn sets `started` once it serves; bounded by the harness's start timeout
    return sock.getsockname()[1]


async def uvicorn_websockets_server(max_size: int) -> int:
    return await _uvicorn(max_size, "websockets")


async def uvicorn_wsproto_server(max_size: int) -> int:
    return await _uvicorn(max_size, "wsproto")


async def hypercorn_server(max_size: int) -> int:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    sock = _bound_socket()
    config = Config()
    config.bind = [f"fd://{sock.fileno()}"]
    config.websocket_max_message_size = max_size
    config.websocket_ping_interval = None
    config.accesslog = config.errorlog = None
    _BACKGROUND.append(asyncio.ensure_future(serve(asgi_echo, config)))
    _SOCKETS.append(sock)  # hypercorn opens the fd again: this socket must stay open
    return sock.getsockname()[1]


async def autobahn_server(max_size: int) -> int:
    from autobahn.asyncio.websocket import WebSocketServerFactory, WebSocketServerProtocol

    class Echo(WebSocketServerProtocol):
        def onMessage(self, payload, isBinary):  # noqa: N802, N803 - autobahn's names
            self.sendMessage(payload, isBinary)

    factory = WebSocketServerFactory()
    factory.protocol = Echo
    factory.setProtocolOptions(maxMessagePayloadSize=max_size, maxFramePayloadSize=max_size)
    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    return server.sockets[0].getsockname()[1]


async def simple_websocket_server(max_size: int) -> int:
    import threading

    import simple_websocket
    from werkzeug.serving import make_server

    def app(environ, start_response):
        # As flask-sock (the same author's) integrates it with Werkzeug: a handshake simple-websocket refuses
        # raises (Werkzeug answers 500); once the WebSocket is over, ConnectionError tells Werkzeug to drop
        # the connection instead of writing an HTTP response onto it.
        ws = simple_websocket.Server.accept(environ, max_message_size=max_size)
        try:
            while True:
                ws.send(ws.receive())
        except simple_websocket.ConnectionClosed:
            pass
        raise ConnectionError("the WebSocket is closed")

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_port


#: Tasks of servers that run as tasks (uvicorn, hypercorn), and their sockets: referenced while the process serves.
_BACKGROUND: list[asyncio.Future] = []
_SOCKETS: list = []


async def websockets_server(max_size: int) -> int:
    from websockets.asyncio.server import serve

    async def echo(connection):
        async for message in connection:
            await connection.send(message)

    server = await serve(echo, "127.0.0.1", 0, max_size=max_size)
    return server.sockets[0].getsockname()[1]


async def aiohttp_server(max_size: int) -> int:
    from aiohttp import WSMsgType, web

    async def handler(request):
        ws = web.WebSocketResponse(max_msg_size=max_size)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


async def tornado_server(max_size: int) -> int:
    import tornado.httpserver
    import tornado.netutil
    import tornado.web
    import tornado.websocket

    class Echo(tornado.websocket.WebSocketHandler):
        def on_message(self, message):
            return self.write_message(message, binary=isinstance(message, bytes))

    app = tornado.web.Application([("/", Echo)], websocket_max_message_size=max_size)
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    tornado.httpserver.HTTPServer(app).add_sockets(sockets)
    return sockets[0].getsockname()[1]


async def wsproto_server(max_size: int) -> int:
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import (AcceptConnection, BytesMessage, CloseConnection, Ping, RejectConnection,
                                Request, TextMessage)
    from wsproto.utilities import LocalProtocolError, RemoteProtocolError

    async def connection(reader, writer):
        ws = WSConnection(ConnectionType.SERVER)
        parts: list = []
        size = 0
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                try:
                    ws.receive_data(data)
                    events = list(ws.events())
                except RemoteProtocolError as exc:
                    hint = exc.event_hint
                    if isinstance(hint, RejectConnection):
                        writer.write(ws.send(hint))
                    elif hint is not None:
                        writer.write(ws.send(hint))
                    await writer.drain()
                    return
                for event in events:
                    if isinstance(event, Request):
                        writer.write(ws.send(AcceptConnection()))
                    elif isinstance(event, (TextMessage, BytesMessage)):
                        parts.append(event.data)
                        size += len(event.data)
                        if size > max_size:
                            writer.write(ws.send(CloseConnection(code=1009, reason="message too big")))
                            await writer.drain()
                            return
                        if event.message_finished:
                            message = ("" if isinstance(event, TextMessage) else b"").join(parts)
                            parts, size = [], 0
                            writer.write(ws.send(type(event)(data=message)))
                    elif isinstance(event, Ping):
                        writer.write(ws.send(event.response()))
                    elif isinstance(event, CloseConnection):
                        try:
                            writer.write(ws.send(event.response()))
                        except LocalProtocolError:
                            pass
                        await writer.drain()
                        return
                await writer.drain()
        except (ConnectionError, LocalProtocolError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(connection, "127.0.0.1", 0)
    return server.sockets[0].getsockname()[1]


async def scratch_server(max_size: int) -> int:
    import wslab

    srv = await wslab.serve_scratch(max_size=max_size)
    return srv.port


async def raw_server(max_size: int, quirk: str) -> int:
    from .raw import RawServer

    server = RawServer(quirk, max_size)
    return await server.start()


async def main(name: str, max_size: int) -> None:
    if name == "raw" or name.startswith("raw:"):
        port = await raw_server(max_size, name.partition(":")[2])
    elif name in LIBRARIES:
        port = await globals()[f"{name.replace('-', '_')}_server"](max_size)
    else:
        raise SystemExit(f"unknown server {name!r}: one of {LIBRARIES} or raw[:QUIRK]")
    print(f"PORT {port}", flush=True)
    # Serve until stdin closes (the test ends) or the process is killed.
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2**20))

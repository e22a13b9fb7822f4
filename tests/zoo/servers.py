"""Start one zoo server in this process: ``python -m tests.zoo.servers NAME [MAX_SIZE]``.

Prints ``PORT <n>`` once it listens on 127.0.0.1 (port 0: the OS picks),
then serves until stdin closes or the process is killed. NAME is a library
(``websockets``, ``aiohttp``, ``tornado``, ``wsproto``, ``scratch``) or
``raw`` / ``raw:QUIRK`` (see :mod:`tests.zoo.raw`). Every server echoes text
and binary messages and limits messages to MAX_SIZE bytes (1 MiB).
"""

from __future__ import annotations

import asyncio
import sys

LIBRARIES = ["websockets", "aiohttp", "tornado", "wsproto", "scratch"]


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
        port = await globals()[f"{name}_server"](max_size)
    else:
        raise SystemExit(f"unknown server {name!r}: one of {LIBRARIES} or raw[:QUIRK]")
    print(f"PORT {port}", flush=True)
    # Serve until stdin closes (the test ends) or the process is killed.
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2**20))

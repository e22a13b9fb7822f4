"""The article's echo server, in today's websockets API (websockets 14 and later).

Run it in a terminal, from this folder:

    python web_server.py            # listens on ws://127.0.0.1:8081/, like the article
    python web_server.py --port 0   # any free port (on a shared JupyterHub host, use this)

then, in a second terminal, ``python web_client.py``. Stop the server with
Ctrl-C (or ``kill``, which sends SIGTERM): it closes its clients with 1001
(going away) and prints "stopped" (a handler still waiting for its client's
message ends quietly: ``ConnectionClosed`` is caught, not logged as a traceback).

What changed since the article (websockets 10):

* ``handler(websocket)`` takes one argument; the path is ``websocket.request.path``;
* ``websockets.serve(...)`` needs a running event loop the moment it is called,
  so the server starts inside ``async def main()`` run by ``asyncio.run(main())``,
  not with ``asyncio.get_event_loop().run_until_complete(...)``.
"""

import argparse
import asyncio
import signal

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


async def handler(websocket):
    try:
        data = await websocket.recv()
        reply = f"Data received: {data}"
        await websocket.send(reply)
    except ConnectionClosed:
        pass  # the client left, or Ctrl-C closed it with 1001 first: nothing to answer


async def main(host: str, port: int) -> None:
    async with serve(handler, host, port) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening on ws://{host}:{port}/ (Ctrl-C to stop)", flush=True)
        # `kill` (SIGTERM) stops the server the same way as Ctrl-C.
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, server.close)
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The article's echo server, modern API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081, help="0 picks a free port (default: 8081)")
    args = parser.parse_args()
    try:
        asyncio.run(main(args.host, args.port))
    except KeyboardInterrupt:
        pass
    print("stopped", flush=True)

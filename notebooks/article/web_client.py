"""The article's client, in today's websockets API (websockets 14 and later).

Start ``python web_server.py`` first, then run, from this folder:

    python web_client.py                          # ws://127.0.0.1:8081/
    python web_client.py ws://127.0.0.1:PORT/     # the address the server printed

What changed since the article (websockets 10): ``websockets.connect`` still
works (it *is* ``websockets.asyncio.client.connect`` since 14.0), but the
handshake headers moved: ``websocket.request.headers`` and
``websocket.response.headers`` replace ``request_headers`` and
``response_headers``; and the coroutine runs with ``asyncio.run(...)``.
"""

import asyncio
import sys

from websockets.asyncio.client import connect


async def main(url: str) -> None:
    async with connect(url) as websocket:
        await websocket.send("hello world")
        print(f"Request headers:\n{websocket.request.headers}")
        response = await websocket.recv()
        print(f"Response headers:\n{websocket.response.headers}")
        print(response)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8081/"))

"""Ready-made connection handlers for lessons.

Each is ``async def handler(connection)``, websockets' modern signature:
pass it to :func:`wslab.serve` or :func:`wslab.serve_in_thread`.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Awaitable, Callable

from websockets.asyncio.server import ServerConnection

__all__ = ["echo", "ticker"]


async def echo(connection: ServerConnection) -> None:
    """Answer every message like the article's server: ``Data received: <msg>``.

    Binary messages come back as they are.
    """
    async for message in connection:
        if isinstance(message, str):
            await connection.send(f"Data received: {message}")
        else:
            await connection.send(message)


def ticker(
    interval: float = 1.0, count: int | None = None
) -> Callable[[ServerConnection], Awaitable[None]]:
    """Make a handler that pushes a timestamped event every ``interval`` seconds.

    Each event is JSON: ``{"seq": 0, "sent": 1700000000.123}`` with ``sent``
    from ``time.time()``. After ``count`` events (forever if None) it closes
    the connection normally (1000).

    >>> srv = await wslab.serve(wslab.handlers.ticker(0.5, count=10), name="ticks")
    """
    if interval <= 0:
        raise ValueError(f"interval must be positive, got {interval!r} seconds")

    async def tick(connection: ServerConnection) -> None:
        seq = 0
        loop = asyncio.get_running_loop()
        start = loop.time()
        while count is None or seq < count:
            await connection.send(json.dumps({"seq": seq, "sent": time.time()}))
            seq += 1
            # Sleep until the next tick on the schedule, so the rate does not drift.
            await asyncio.sleep(max(0.0, start + seq * interval - loop.time()))

    tick.__name__ = "ticker"
    return tick

"""What the latency lab's two light servers share: one asyncio-streams listener in a thread.

The floor's raw TCP pusher (:mod:`wslab.lab.experiment.floor`) and the light
HTTP server (:mod:`wslab.lab.experiment.httpserver`) differ in what they say
on a connection, not in how they hold one. :class:`StreamListener` is that
part: it listens on ``127.0.0.1`` (port 0: the OS picks), counts the open
connections, keeps each connection's task so stopping can cancel it, and
keeps any error a connection raises in ``errors`` (shown, never lost). A
subclass writes :meth:`StreamListener._serve` (one connection) and
``_close`` (stopping).

Design note: thread mode of :class:`wslab.server.background.Background`, one
loop in a daemon thread; every connection is a task on that loop. A
connection that the peer drops or that stopping cancels ends quietly; its
writer is closed in every case.
"""

from __future__ import annotations

import asyncio
import time

from ...server import background as _servers

__all__ = ["StreamListener"]


class StreamListener(_servers.Background):
    """An asyncio-streams listener on ``127.0.0.1`` in thread mode; a subclass serves each connection."""

    mode = "thread"
    stop_timeout = 2.0

    def __init__(self, name: str) -> None:
        self.name = name
        self.errors: list[BaseException] = []
        self.started = time.time()
        self.host, self.port = "127.0.0.1", 0
        #: Connections open now.
        self.connections = 0
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the listener runs on (its thread's)."""
        assert self._thread is not None
        return self._thread.loop

    async def _listen(self) -> None:
        """Listen on ``host``, a port the OS picks (read back into ``port``)."""
        self._server = await asyncio.start_server(self._connection, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception as exc:  # noqa: BLE001 - kept and shown, never lost
            self.errors.append(exc)
        finally:
            self.connections -= 1
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection, from its first byte to its end (the writer is closed after)."""
        raise NotImplementedError

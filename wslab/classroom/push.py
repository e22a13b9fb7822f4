"""A server that pushes what Python says to every page connected: ``wslab.push_channel``.

Lesson 05's first live page: ``chan = await wslab.push_channel()``, then
``wslab.browser_client(chan)`` shows a client in the cell's output (or open
``chan.page_url``), and ``chan.push("hello, page")`` reaches every page.

Design note
-----------
The channel runs on a :func:`wslab.serve` server (the notebook's loop, or a
thread of its own with :func:`push_channel_in_thread`); ``push()`` may be
called from any thread and hands the text to that loop. On the loop, joining
the push list, the greeting and the replay of the last ``replay`` pushes
happen with no ``await`` in between, so no push falls in a gap and a page
knows it is connected only when the server spoke first (see
:mod:`wslab.classroom.browser`). What must never happen: a page that stops
reading holding memory without bound (the listener's guard closes it with
1008 past ``Limits.max_buffer``), or one that floods growing
:attr:`PushChannel.received` (only the last ``keep`` are kept).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from typing import Any

from websockets.asyncio.server import ServerConnection, broadcast
from websockets.http11 import Request, Response

from ..server.limits import writable
from ..server.serve import Server, serve, serve_in_thread
from .browser import ServesPage, html_page_responder, page_html

__all__ = ["PushChannel", "push_channel", "push_channel_in_thread"]


class PushChannel(ServesPage):
    """A WebSocket server that pushes what Python says to every page connected.

    It greets each client first (so the page knows it is really connected),
    replays the last ``replay`` pushes to newcomers, keeps the last ``keep``
    messages pages sent in :attr:`received`, and serves a page with the client at
    ``http://127.0.0.1:<port>/``. Make one with :func:`push_channel` (on the
    notebook's loop) or :func:`push_channel_in_thread`.

    ``push(text)`` works from any thread and returns how many pages it
    reached.
    """

    client_format = "text"

    def __init__(
        self, *, greeting: str = "hello from the kernel", replay: int = 20, keep: int = 10_000
    ) -> None:
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be a whole number of messages, at least 1, got {keep!r}")
        self.greeting = greeting
        self.pushed: deque[str] = deque(maxlen=replay)
        #: What pages sent, oldest first: (time.time(), text); the newest ``keep`` only.
        self.received: list[tuple[float, str]] = []
        self.keep = keep
        self.server: Server | None = None
        self._clients: set[ServerConnection] = set()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[str]]] = []
        self._taken = 0  # how many of self.received next_message() has returned
        self._lock = threading.Lock()

    @property
    def clients(self) -> int:
        """Pages connected and not being closed (a page the guard dropped no longer counts)."""
        return sum(1 for c in list(self._clients) if writable(c))

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        return html_page_responder(lambda: page_html(title="wslab push channel"))(connection, request)

    async def handler(self, connection: ServerConnection) -> None:
        # Joining the push list, greeting and replay happen with no await in
        # between (broadcast() writes at once), so no push falls in a gap.
        # Join first: a page that has its greeting is counted by push() from
        # another thread.
        self._clients.add(connection)
        try:
            broadcast([connection], self.greeting)
            for text in self.pushed:
                broadcast([connection], text)
            async for message in connection:
                text = message if isinstance(message, str) else f"(binary, {len(message)} bytes)"
                with self._lock:
                    self.received.append((time.time(), text))
                    if len(self.received) > self.keep:  # a page that floods cannot grow it without bound
                        extra = len(self.received) - self.keep
                        del self.received[:extra]
                        self._taken = max(0, self._taken - extra)
                    waiters, self._waiters = self._waiters, []
                for loop, future in waiters:
                    loop.call_soon_threadsafe(_resolve, future, text)
        finally:
            self._clients.discard(connection)

    def push(self, text: str) -> int:
        """Send ``text`` to every connected page (and to pages that connect later)."""
        if not isinstance(text, str):
            raise TypeError(f"push() sends text, got {type(text).__name__}; use str(value) or json.dumps(value)")
        if self.server is None or not self.server.running:
            raise RuntimeError("this push channel is stopped: start a new one with wslab.push_channel()")
        loop = self.server._loop
        assert loop is not None
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        reached = self.clients
        if running is loop:
            self._push_now(text)
        else:
            loop.call_soon_threadsafe(self._push_now, text)
        return reached

    def _push_now(self, text: str) -> None:
        """On the server's loop: remember ``text`` for newcomers and send it to every page."""
        self.pushed.append(text)
        # A page that stops reading is closed by the guard (1008) once
        # Limits.max_buffer bytes wait for it: see wslab/server/limits.py.
        broadcast([c for c in self._clients if writable(c)], text)

    async def next_message(self, timeout: float = 10) -> str:
        """The oldest message from a page that this method has not returned yet.

        Waits for one if there is none; raises TimeoutError after ``timeout`` s.
        """
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while True:
                with self._lock:
                    if self._taken < len(self.received):
                        self._taken += 1
                        return self.received[self._taken - 1][1]
                    future: asyncio.Future[str] = loop.create_future()
                    self._waiters.append((loop, future))
                await future

    def stop(self) -> None:
        if self.server:
            self.server.stop()

    def __repr__(self) -> str:
        return f"<wslab.PushChannel {self.url} {self.clients} page(s), {len(self.received)} received>"


def _resolve(future: asyncio.Future[str], text: str) -> None:
    if not future.done():
        future.set_result(text)


async def push_channel(name: str = "push", **kwargs: Any) -> PushChannel:
    """Start a :class:`PushChannel` on the notebook's loop (task mode).

    ``chan = await wslab.push_channel()``; other keyword arguments go to
    :func:`wslab.serve`.
    """
    channel = PushChannel(**{k: kwargs.pop(k) for k in ("greeting", "replay", "keep") if k in kwargs})
    channel.server = await serve(channel.handler, name, process_request=channel.process_request, **kwargs)
    return channel


def push_channel_in_thread(name: str = "push", **kwargs: Any) -> PushChannel:
    """Start a :class:`PushChannel` on its own loop in a thread (see :func:`wslab.serve_in_thread`)."""
    channel = PushChannel(**{k: kwargs.pop(k) for k in ("greeting", "replay", "keep") if k in kwargs})
    channel.server = serve_in_thread(channel.handler, name, process_request=channel.process_request, **kwargs)
    return channel

"""A chat client for a learner: join the class room, read, send (split from chat.py).

:class:`ChatClient` runs in a thread of its own (a :class:`wslab.server.background.LoopThread`),
so a cell may block while it keeps reading; :func:`join_classroom` starts one
and registers it (``wslab.status()`` shows it, ``wslab.stop_all()`` closes it);
:func:`stalled_client` is lesson 05's slow reader. ``wslab.classroom.chat`` re-exports
all three.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ..course.i18n import gettext as _
from ..server.background import LoopThread, register, release, unregister

__all__ = ["ChatClient", "join_classroom", "stalled_client"]


class ChatClient:
    """A chat client running in a thread of its own: join, read, send.

    ``events`` holds every event received (dicts, oldest first); ``messages``
    just the chat lines as ``"nick: text"``. It shows in ``wslab.status()`` and
    ``wslab.stop_all()`` closes it. After the connection ends, ``close_info``
    says who closed it, with which code and reason.
    """

    mode = "thread"

    def __init__(self, url: str, nick: str, *, name: str, connect_timeout: float = 5, **kwargs: Any) -> None:
        self.name = name
        self.nick = nick
        self.url = url
        self.started = time.time()
        self.errors: list[BaseException] = []
        self.events: list[dict[str, Any]] = []
        self.close_info: str | None = None
        self._cond = threading.Condition()
        self._thread = LoopThread(name)
        self._connection: Any = None
        self._done: Any = None
        self._stopping = False
        try:
            self._thread.run(self._open(kwargs), connect_timeout + 1)
        except BaseException:
            self._thread.stop()
            raise

    async def _open(self, kwargs: dict[str, Any]) -> None:
        kwargs.setdefault("open_timeout", 5)
        kwargs.setdefault("close_timeout", 1)
        self._connection = await connect(self.url, **kwargs)
        first = await asyncio.wait_for(self._connection.recv(), kwargs["open_timeout"])
        self._record(first)
        self._done = asyncio.ensure_future(self._read())

    def _record(self, data: Any) -> None:
        try:
            event = json.loads(data)
        except (TypeError, ValueError, RecursionError):  # not JSON text, or nested too deeply
            event = None
        if not isinstance(event, dict):  # a room may relay anything: keep it as it came
            event = {"type": "raw", "text": data}
        with self._cond:
            if event.get("type") == "welcome":
                self.nick = event.get("nick", self.nick)
            self.events.append(event)
            self._cond.notify_all()

    async def _read(self) -> None:
        try:
            async for data in self._connection:
                self._record(data)
        except ConnectionClosed:
            pass
        finally:
            exc = self._connection.close_exc if hasattr(self._connection, "close_exc") else None
            self.close_info = _describe_close(exc)
            with self._cond:
                self._cond.notify_all()

    # What a learner uses

    @property
    def messages(self) -> list[str]:
        with self._cond:
            events = list(self.events)
        lines = []
        for event in events:
            batch = event.get("events", [event])
            for ev in batch if isinstance(batch, list) else []:
                if isinstance(ev, dict) and ev.get("type") == "message":
                    lines.append(f"{ev.get('nick', '?')}: {ev.get('text', '')}")
        return lines

    @property
    def running(self) -> bool:
        return self.close_info is None and self._connection is not None

    @property
    def connections(self) -> int:
        return 1 if self.running else 0

    @property
    def uptime(self) -> float:
        return time.time() - self.started

    def send(self, text: str) -> None:
        """Send one chat message."""
        if not self.running:
            raise RuntimeError(_("{name} is not connected ({why}); join again").format(
                name=repr(self.name), why=self.close_info))
        self._thread.run(self._connection.send(text))

    async def wait_for(self, text: str, timeout: float = 5) -> str:
        """Wait until a chat line containing ``text`` arrives; return it.

        Raises TimeoutError after ``timeout`` seconds with what did arrive.
        Use ``await``: the notebook's loop keeps serving meanwhile.
        """
        return await asyncio.to_thread(self._wait_sync, text, timeout)

    def _wait_sync(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.messages:
                    if text in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self.close_info is not None:
                    raise TimeoutError(
                        _("no message containing {text} within {seconds} s "
                          "(got {count} events; connection: {state})").format(
                            text=repr(text), seconds=timeout, count=len(self.events),
                            state=self.close_info or _("open"))
                    )
                self._cond.wait(left)

    async def wait_closed(self, timeout: float = 5) -> str:
        """Wait until the connection has ended; return :attr:`close_info`."""
        def wait() -> str:
            with self._cond:
                self._cond.wait_for(lambda: self.close_info is not None, timeout)
            if self.close_info is None:
                raise TimeoutError(_("{name} still open after {seconds} s").format(name=repr(self.name), seconds=timeout))
            return self.close_info
        return await asyncio.to_thread(wait)

    def stop(self) -> None:
        """Leave the room. Returns at once: the client's thread closes the
        connection (at most ``close_timeout`` seconds) and then ends."""
        unregister(self)
        if self._stopping:
            return
        self._stopping = True
        loop = self._thread.loop
        if not loop.is_running():
            return

        async def finish() -> None:
            try:
                if self._connection is not None:
                    await self._connection.close()
                if self._done is not None:
                    await asyncio.wait_for(asyncio.shield(self._done), 2)
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
            finally:
                loop.stop()

        asyncio.run_coroutine_threadsafe(finish(), loop)

    async def aclose(self) -> None:
        """Leave the room and wait until the client's thread has ended."""
        self.stop()
        await asyncio.to_thread(self._thread.thread.join, 5)  # finish() stops the loop
        self._thread.stop(1)  # closes the loop (or stops it, if finish() is stuck)

    def __repr__(self) -> str:
        return f"<wslab.ChatClient {self.nick!r} {self.url} {self.close_info or 'connected'}>"


def _describe_close(exc: BaseException | None) -> str:
    if exc is None:
        return _("closed")
    sent = getattr(exc, "sent", None)
    rcvd = getattr(exc, "rcvd", None)
    if rcvd is not None:
        return _("closed by the server: {code} {reason}").format(code=rcvd.code, reason=rcvd.reason).rstrip()
    if sent is not None:
        return _("closed by this client: {code} {reason} (no answer from the server)").format(
            code=sent.code, reason=sent.reason).rstrip()
    return _("connection lost: 1006 (no close frame)")


def _ws_url(url: str, nick: str) -> str:
    if url.startswith("http://"):
        url = "ws://" + url[len("http://"):]
    elif url.startswith("https://"):
        url = "wss://" + url[len("https://"):]
    if not url.startswith(("ws://", "wss://")):
        raise ValueError(_("not a room address: {url}; expected ws://host:port/ or http://host:port/").format(
            url=repr(url)))
    parts = urlsplit(url)
    query = urlencode({"nick": nick})
    return f"{parts.scheme}://{parts.netloc}{parts.path or '/'}?{query}"


async def join_classroom(url: str, nick: str, *, name: str | None = None, **kwargs: Any) -> ChatClient:
    """Join a chat room (your class's, or one from :func:`chat_room`) as ``nick``.

    ``url`` is what the instructor's ``python -m wslab classroom`` printed
    (``http://...`` or ``ws://...``), or ``room.url``. Returns once the room
    has welcomed you; meanwhile the notebook's loop keeps running, so a room
    on that loop (``await wslab.chat_room()``) can answer. The client itself
    runs in a thread of its own. Other keyword arguments go to
    :func:`websockets.asyncio.client.connect` (``ping_interval=...``).

    >>> me = await wslab.join_classroom("http://127.0.0.1:8765/", "ada")
    >>> me.send("hello, class")
    """
    if not isinstance(nick, str) or not nick.strip():
        raise ValueError(_("join_classroom needs a nickname: join_classroom(url, 'ada')"))
    name = name or f"chat-{nick.strip()}"
    await release(name)
    client = await asyncio.to_thread(ChatClient, _ws_url(url, nick.strip()), nick.strip(), name=name, **kwargs)
    register(client)
    return client


async def stalled_client(url: str, nick: str) -> Any:
    """Join the room at ``url`` as ``nick``, read the welcome, then never read again.

    The client asks the OS for a tiny receive buffer, so what the room sends
    soon piles up on the room's side: the slow reader of lesson 05. Returns
    the websockets connection; ``connection.transport.abort()`` ends it.
    """
    parts = urlsplit(_ws_url(url, nick))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        await asyncio.to_thread(sock.connect, (parts.hostname, parts.port))
        connection = await connect(f"{parts.scheme}://{parts.netloc}{parts.path}?{parts.query}",
                                   sock=sock, ping_interval=None)
    except BaseException:
        sock.close()
        raise
    await asyncio.wait_for(connection.recv(), 5)  # the welcome
    connection.transport.pause_reading()
    return connection

"""A chat room for a whole class: many clients, one broadcast.

Design note
-----------
The room is one websockets server (:func:`wslab.serve` or
:func:`wslab.serve_in_thread`, so ``wslab.status()`` shows it and
``wslab.stop_all()`` stops it). Everything about the room (``members``, the
history) lives on the server's loop and is touched only there; ``say()`` from
another thread goes through ``call_soon_threadsafe``.

* Fan-out uses :func:`websockets.asyncio.server.broadcast`: it writes the
  frame to every connection's buffer without waiting for any of them, so one
  slow reader cannot stall the others. A client whose unsent buffer grows
  past ``max_buffer`` bytes is dropped (close code 1008) instead of letting
  the buffer grow without bound.
* Join order: the welcome (and the history) are written with ``broadcast``
  to the newcomer alone and the newcomer joins ``members`` with no ``await``
  in between, so the first thing every client reads is its welcome, and a
  client that has read it is guaranteed to get every later message.
* Limits, both enforced by websockets before the room sees anything:
  ``max_size`` (a bigger message closes the connection with 1009, message too
  big) and ``origins`` (a page from another site gets HTTP 403 at the
  handshake: cross-site WebSocket hijacking, RFC 6455 section 10.2).
* The same port serves the room's HTML page to plain HTTP GETs, so a browser
  can open ``http://127.0.0.1:<port>/``; the page shows every message as
  text (``textContent``), so a ``<script>`` sent as a chat message does not run.
* :func:`measure_fanout` keeps its room in a thread of this process and runs
  the simulated clients in a separate process (multiprocessing, "spawn"), so
  the clients' reading never shares a GIL with the room's writing; see the
  note above :func:`raise_fd_limit` for who stamps which time.

The wire format is JSON, one event per message::

    {"type": "welcome", "room": ..., "nick": ..., "members": [...]}
    {"type": "history", "events": [...]}        (only if there is any)
    {"type": "join" | "leave", "nick": ..., "time": ...}
    {"type": "message", "nick": ..., "text": ..., "time": ...}

Clients send plain text; the nickname is in the URL: ``ws://.../?nick=ada``.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import re
import resource
import socket
import statistics
import threading
import time
import traceback
import unicodedata
from collections import deque
from typing import Any, Sequence
from urllib.parse import parse_qs, urlencode, urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, broadcast
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from .browser import html_page_responder, page_html
from .display import Table
from .servers import LoopThread, Server, register, release, serve, serve_in_thread, unregister

__all__ = [
    "ChatRoom",
    "chat_room",
    "chat_room_in_thread",
    "ChatClient",
    "join_classroom",
    "LOOPBACK_ORIGINS",
    "measure_fanout",
    "plot_fanout",
    "raise_fd_limit",
    "stalled_client",
]

#: Pages allowed to open the room by default: no Origin header at all (Python
#: clients) and pages served from this computer, on any port.
LOOPBACK_ORIGINS: list[Any] = [
    None,
    re.compile(r"https?://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?"),
]

#: Limits
DEFAULT_MAX_SIZE = 4096  # bytes per message; bigger -> close 1009
DEFAULT_MAX_BUFFER = 256 * 1024  # unsent bytes per client before it is dropped
MAX_NICK = 24

_NICK_OK = re.compile(r"[^\W_][\w .\-]{0,23}", re.UNICODE)


class BadNickname(ValueError):
    """The nickname in the URL is missing or not acceptable (close code 1008)."""


def _clean_nick(path: str) -> str:
    values = parse_qs(urlsplit(path).query).get("nick", [])
    nick = unicodedata.normalize("NFC", values[0]).strip() if values else ""
    if not nick:
        raise BadNickname("no nickname: connect to ws://host:port/?nick=yourname")
    if not _NICK_OK.fullmatch(nick):
        raise BadNickname(
            f"nickname {nick[:30]!r} not accepted: use 1-{MAX_NICK} letters, digits, "
            f"spaces, '.', '-' or '_', starting with a letter or digit"
        )
    return nick


class ChatRoom:
    """The room: who is in it, what was said, and the handler that runs it.

    Start one with :func:`chat_room` (notebook's loop) or
    :func:`chat_room_in_thread`. ``room.say(text)`` speaks as ``"teacher"``
    from any thread. ``room.members`` lists nicknames, ``room.dropped`` the
    nicknames dropped for reading too slowly.
    """

    client_format = "chat"

    def __init__(
        self,
        room: str = "wslab chat",
        *,
        history: int = 50,
        notices: bool = True,
        # Limits
        max_buffer: int = DEFAULT_MAX_BUFFER,
    ) -> None:
        if history < 0:
            raise ValueError(f"history must be 0 or more messages, got {history!r}")
        self.room = room
        self.notices = notices
        self.max_buffer = max_buffer
        self.history: deque[dict[str, Any]] = deque(maxlen=history)
        self.dropped: list[str] = []
        self.server: Server | None = None
        #: The Origin allow-list the server checks (None: any site may connect).
        self.origins: list[Any] | None = None
        #: Under JupyterHub, also accept the page whose Origin matches its Host
        #: header (the hub's own pages; see _allow_same_origin).
        self.trust_hub_origin = bool(os.environ.get("JUPYTERHUB_SERVICE_PREFIX"))
        self._members: dict[ServerConnection, str] = {}

    # What it looks like

    @property
    def url(self) -> str:
        return self.server.url if self.server else "(not started)"

    @property
    def page_url(self) -> str:
        """``http://host:port/``: the chat page for a browser."""
        return self.url.replace("ws://", "http://", 1)

    @property
    def members(self) -> list[str]:
        return sorted(self._members.values())

    def __repr__(self) -> str:
        return f"<wslab.ChatRoom {self.room!r} {self.url} {len(self._members)} member(s)>"

    # The server side

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.trust_hub_origin and self.origins is not None:
            self._allow_same_origin(request)
        page = page_html(title=self.room, format="chat",
                         intro="Messages show as text: markup you send is shown, never run.")
        return html_page_responder(page)(connection, request)

    def _allow_same_origin(self, request: Request) -> None:
        """Under JupyterHub: let in the page that came through the hub to this kernel.

        A notebook page on a hub has the hub's origin (``https://hub.example.org``),
        which the kernel cannot know in advance. The hub's proxy and
        jupyter-server-proxy pass the browser's ``Host`` header through, so a
        page from the hub has ``Origin`` equal to ``scheme://<Host>``: that one
        origin joins ``self.origins`` before websockets checks it.
        """
        origin = request.headers.get("Origin")
        host = request.headers.get("Host")
        if origin and host and urlsplit(origin).netloc == host and origin not in self.origins:
            assert self.origins is not None
            self.origins.append(origin)

    def _nick_for(self, wanted: str) -> str:
        taken = set(self._members.values())
        nick, n = wanted, 2
        while nick in taken:
            nick, n = f"{wanted}-{n}", n + 1
        return nick

    async def handler(self, connection: ServerConnection) -> None:
        try:
            wanted = _clean_nick(connection.request.path)
        except BadNickname as exc:
            await connection.close(CloseCode.POLICY_VIOLATION, str(exc)[:120])
            return
        nick = self._nick_for(wanted)
        # No await from here to the end of the join: see the design note.
        welcome = {"type": "welcome", "room": self.room, "nick": nick,
                   "members": sorted([*self._members.values(), nick])}
        broadcast([connection], json.dumps(welcome))
        if self.history:
            broadcast([connection], json.dumps({"type": "history", "events": list(self.history)}))
        self._members[connection] = nick
        if self.notices:
            self._publish({"type": "join", "nick": nick, "time": time.time()})
        try:
            async for message in connection:
                if not isinstance(message, str):
                    await connection.close(CloseCode.UNSUPPORTED_DATA, "the room takes text messages only")
                    return
                if message.strip():
                    self._publish({"type": "message", "nick": nick, "text": message, "time": time.time()})
        finally:
            if self._members.pop(connection, None) is not None and self.notices:
                self._publish({"type": "leave", "nick": nick, "time": time.time()})

    def _publish(self, event: dict[str, Any]) -> None:
        """Record ``event`` and send it to every member now (on the room's loop)."""
        data = json.dumps(event)
        if self.history.maxlen:
            self.history.append(event)
        healthy = []
        for connection, nick in list(self._members.items()):
            transport = connection.transport
            if transport is not None and transport.get_write_buffer_size() > self.max_buffer:
                self._drop(connection, nick)
            else:
                healthy.append(connection)
        broadcast(healthy, data)

    def _drop(self, connection: ServerConnection, nick: str) -> None:
        del self._members[connection]
        self.dropped.append(nick)
        # The close frame queues behind the unsent data; close_timeout then aborts.
        asyncio.ensure_future(connection.close(CloseCode.POLICY_VIOLATION, "too slow: dropped from the room"))
        if self.notices:
            self._publish({"type": "leave", "nick": nick, "time": time.time(), "why": "too slow"})

    def say(self, text: str, nick: str = "teacher") -> None:
        """Post ``text`` to everyone, from any thread or cell."""
        if not isinstance(text, str):
            raise TypeError(f"say() sends text, got {type(text).__name__}")
        if self.server is None or not self.server.running:
            raise RuntimeError("this room is stopped: start a new one with wslab.chat_room()")
        event = {"type": "message", "nick": nick, "text": text, "time": time.time()}
        _on_loop(self.server, self._publish, event)

    def stop(self) -> None:
        if self.server:
            self.server.stop()


def _on_loop(server: Server, fn: Any, *args: Any) -> None:
    loop = server._loop
    assert loop is not None
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        fn(*args)
    else:
        loop.call_soon_threadsafe(fn, *args)


def _room_args(kwargs: dict[str, Any]) -> tuple[ChatRoom, dict[str, Any]]:
    room_keys = ("room", "history", "notices", "max_buffer")
    room = ChatRoom(**{k: kwargs.pop(k) for k in room_keys if k in kwargs})
    kwargs.setdefault("max_size", DEFAULT_MAX_SIZE)
    # permessage-deflate compresses every broadcast once per member (each
    # connection has its own compression context): off unless asked for.
    kwargs.setdefault("compression", None)
    origins = kwargs.get("origins", LOOPBACK_ORIGINS)
    # A list of our own, which websockets reads at every handshake: appending
    # to room.origins later (the classroom does, once its port is known) works.
    room.origins = kwargs["origins"] = None if origins is None else list(origins)
    return room, kwargs


async def chat_room(name: str = "chat", **kwargs: Any) -> ChatRoom:
    """Start a chat room on the notebook's loop; ``room = await wslab.chat_room()``.

    Room options: ``room`` (its title), ``history`` (messages kept for
    newcomers, default 50), ``notices`` (join/leave messages), ``max_buffer``.
    Server options go to :func:`wslab.serve`: ``max_size`` (default 4096 bytes;
    bigger messages close with 1009), ``origins`` (default: pages from this
    computer and clients without an Origin header; None allows every site),
    ``host``/``port``/``allow_network``, ``ping_interval``/``ping_timeout``.
    """
    room, kwargs = _room_args(kwargs)
    room.server = await serve(room.handler, name, process_request=room.process_request, **kwargs)
    return room


def chat_room_in_thread(name: str = "chat", **kwargs: Any) -> ChatRoom:
    """Like :func:`chat_room`, on its own loop in a thread (cells may block)."""
    room, kwargs = _room_args(kwargs)
    room.server = serve_in_thread(room.handler, name, process_request=room.process_request, **kwargs)
    return room


# A client for a learner


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
        except (TypeError, ValueError):
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
            for ev in event.get("events", [event]):
                if ev.get("type") == "message":
                    lines.append(f"{ev['nick']}: {ev['text']}")
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
            raise RuntimeError(f"{self.name!r} is not connected ({self.close_info}); join again")
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
                        f"no message containing {text!r} within {timeout} s "
                        f"(got {len(self.events)} events; connection: {self.close_info or 'open'})"
                    )
                self._cond.wait(left)

    async def wait_closed(self, timeout: float = 5) -> str:
        """Wait until the connection has ended; return :attr:`close_info`."""
        def wait() -> str:
            with self._cond:
                self._cond.wait_for(lambda: self.close_info is not None, timeout)
            if self.close_info is None:
                raise TimeoutError(f"{self.name!r} still open after {timeout} s")
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
        return "closed"
    sent = getattr(exc, "sent", None)
    rcvd = getattr(exc, "rcvd", None)
    if rcvd is not None:
        return f"closed by the server: {rcvd.code} {rcvd.reason}".rstrip()
    if sent is not None:
        return f"closed by this client: {sent.code} {sent.reason} (no answer from the server)".rstrip()
    return "connection lost: 1006 (no close frame)"


def _ws_url(url: str, nick: str) -> str:
    if url.startswith("http://"):
        url = "ws://" + url[len("http://"):]
    elif url.startswith("https://"):
        url = "wss://" + url[len("https://"):]
    if not url.startswith(("ws://", "wss://")):
        raise ValueError(f"not a room address: {url!r}; expected ws://host:port/ or http://host:port/")
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
        raise ValueError("join_classroom needs a nickname: join_classroom(url, 'ada')")
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


# Fan-out: how long does broadcast take to reach 100, 500, 1,000 clients?
#
# Where things run (measure_fanout):
# * the room: a chat_room_in_thread in this process (wslab.status() shows it,
#   the finally clause stops it);
# * the simulated clients: a child process started with the "spawn" context
#   (safe from a Jupyter kernel: no fork of a process that has threads), one
#   asyncio loop there, plain websockets clients on 127.0.0.1. Client and room
#   never share a GIL, so the clients' reading and timestamping cannot be
#   serialised with the room's writing. With both in one process, the room's
#   thread handed the GIL to the clients' thread about twice per client in the
#   middle of one broadcast(), and the "last client" figure measured GIL
#   scheduling, not fan-out (500 clients could come out slower than 1,000).
#   The room has no keepalive pings (ping_interval=None) while it is measured.
# * the clock: time.perf_counter(), which is system-wide (CLOCK_MONOTONIC on
#   Linux), so a stamp taken in the room's thread and one taken in the child
#   are comparable. The room stamps t0 right before it broadcasts and puts it
#   in the message text; the child stamps each arrival when the bytes reach
#   the client connection (_StampedConnection.data_received, before parsing)
#   and sends back first/median/last for the round.
# * the talk between them: a multiprocessing Pipe, one request and one answer
#   at a time: ("connect", n) -> ("connected", n); ("round", k) -> ("ready", k),
#   then the room broadcasts, -> ("result", {...}); ("stop", None) ends the
#   child. Every wait on the pipe is bounded in time and checks that the child
#   is alive; the child is always stopped (then terminated, then killed) and
#   joined in bounded time, on errors and on KeyboardInterrupt too.


def raise_fd_limit(needed: int) -> int:
    """Raise this process's soft limit on open files to ``needed`` (up to the hard limit).

    Each simulated client costs one file descriptor in the room's process (the
    server's socket) and one in the clients' process (its own socket);
    :func:`measure_fanout` raises the limit in both. Returns the new soft limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


class _StampedConnection(ClientConnection):
    """A client connection that notes when bytes last reached it (``received_at``).

    The fan-out clients' clock: the time the message's bytes came in from the
    socket, before this process spends anything on parsing the frame or
    waking the task that reads it.
    """

    received_at = 0.0

    def data_received(self, data: bytes) -> None:
        self.received_at = time.perf_counter()
        super().data_received(data)


async def _connect_many(url: str, n: int, batch: int = 50, first: int = 0) -> list[Any]:
    """Open ``n`` clients to the room at ``url`` (in batches), each past its welcome."""
    clients: list[Any] = []
    for start in range(first, first + n, batch):
        group = [
            connect(f"{url}?nick=sim{i}", ping_interval=None, max_size=None, open_timeout=20,
                    create_connection=_StampedConnection)
            for i in range(start, min(first + n, start + batch))
        ]
        opened = await asyncio.gather(*group)
        clients.extend(opened)
        for c in opened:
            await asyncio.wait_for(c.recv(), 20)  # the welcome: now a member
    return clients


async def _fanout_round(conn: Any, clients: list[Any], k: int | str, timeout: float) -> dict[str, float]:
    """One round, in the clients' process: arm every reader, say "ready", time the arrivals.

    The room's message text is ``fanout <k> <t0>``, with ``t0`` the room's
    ``perf_counter()`` just before ``broadcast()``. A client's arrival time is
    when the message's last bytes reached it (nothing else is sent to the
    clients during a round: no notices, no pings).
    """
    marker = f"fanout {k} "
    arrivals: list[float] = []
    sample: list[str] = []
    done = asyncio.Event()

    async def listen(c: Any) -> None:
        while True:
            data = await c.recv()
            if marker in data:
                arrivals.append(c.received_at)
                if not sample:
                    sample.append(data)
                if len(arrivals) == len(clients):
                    done.set()
                return

    tasks = [asyncio.ensure_future(listen(c)) for c in clients]
    try:
        await asyncio.sleep(0)  # every reader is now waiting in recv()
        cpu0 = time.process_time()  # idle from here until the message comes
        conn.send(("ready", k))
        await asyncio.wait_for(done.wait(), timeout)
        cpu = time.process_time() - cpu0
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    t0 = float(json.loads(sample[0])["text"].split()[2])
    delays = sorted(a - t0 for a in arrivals)
    # This process's CPU load while the message came in: CPU seconds over the
    # time from the room's stamp to the last arrival (1.0 = a core kept busy).
    return {"first": delays[0], "median": statistics.median(delays), "last": delays[-1],
            "client_cores": cpu / delays[-1] if delays[-1] > 0 else float("nan")}


async def _fanout_client_loop(conn: Any) -> None:
    clients: list[Any] = []
    try:
        while True:
            try:
                command, arg = await asyncio.to_thread(conn.recv)
            except EOFError:  # the parent is gone
                return
            if command == "connect":
                url, n = arg
                clients.extend(await _connect_many(url, n - len(clients), first=len(clients)))
                conn.send(("connected", len(clients)))
            elif command == "round":
                k, timeout = arg
                conn.send(("result", await _fanout_round(conn, clients, k, timeout)))
            elif command == "stop":
                return
            else:
                raise ValueError(f"unknown command {command!r} for the fan-out clients")
    finally:
        for c in clients:
            c.transport.abort()


def _fanout_clients(conn: Any, max_clients: int) -> None:
    """The child process of :func:`measure_fanout`: the simulated clients, on a loop of their own.

    Module-level so that a "spawn" child can import it. Answers the parent's
    requests on ``conn`` (see the note above); an error is sent back as
    ``("error", traceback)`` before the process exits.
    """
    try:
        raise_fd_limit(max_clients + 256)
        conn.send(("hello", os.getpid()))
        asyncio.run(_fanout_client_loop(conn))
    except BaseException:
        try:
            conn.send(("error", traceback.format_exc()))
        except (OSError, ValueError):
            pass
    finally:
        conn.close()


class _ClientProcess:
    """The parent's end of the clients' process: bounded requests, a bounded stop."""

    def __init__(self, max_clients: int, start_timeout: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(target=_fanout_clients, args=(child_conn, max_clients),
                                   name="wslab-fanout-clients", daemon=True)
        self.process.start()
        child_conn.close()  # the child has its own copy: EOF here if it dies
        self.expect("hello", start_timeout)

    def send(self, command: str, arg: Any = None) -> None:
        self._conn.send((command, arg))

    def expect(self, what: str, timeout: float) -> Any:
        """The child's next answer, which must be ``what``; bounded by ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self._conn.poll(min(0.2, max(0.0, deadline - time.monotonic()))):
            if not self.process.is_alive():
                raise RuntimeError(f"the fan-out clients' process exited with code {self.process.exitcode} "
                                   f"while measure_fanout waited for {what!r}")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"the fan-out clients did not answer {what!r} within {timeout:.0f} s: "
                                   f"try a larger timeout or fewer clients")
        try:
            kind, value = self._conn.recv()
        except EOFError:
            self.process.join(1)
            hint = ("; in a script, call measure_fanout under `if __name__ == \"__main__\":` (the clients' "
                    "process is started with multiprocessing's \"spawn\" and imports your script)"
                    if what == "hello" else "")
            raise RuntimeError(f"the fan-out clients' process ended (exit code {self.process.exitcode}) "
                               f"while measure_fanout waited for {what!r}{hint}") from None
        if kind == "error":
            last = value.strip().splitlines()[-1] if value.strip() else "no details"
            raise RuntimeError(f"the fan-out clients failed ({last}); their traceback:\n{value}")
        if kind != what:
            raise RuntimeError(f"the fan-out clients answered {kind!r}, expected {what!r}")
        return value

    def close(self) -> None:
        """Stop the child: ask, then terminate, then kill; joined in a few seconds at most."""
        try:
            try:
                self._conn.send(("stop", None))
            except (OSError, ValueError):
                pass
            self.process.join(3)
            if self.process.is_alive():
                self.process.terminate()
                self.process.join(2)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(2)
        finally:
            self._conn.close()


def measure_fanout(
    counts: Sequence[int] = (100, 500, 1000), *, rounds: int = 5, timeout: float = 30
) -> Table:
    """Fan one message out to ``counts`` simulated clients: the server's cost, and when clients have it.

    The room runs in a thread of this process (:func:`chat_room_in_thread`,
    so ``wslab.status()`` shows it while it runs); the clients run in a
    separate process, on an event loop of their own, so their reading never
    competes with the room's writing for this process's GIL. Each round
    measures, on the room's loop:

    * **room**: the room's own ``_publish`` (``json.dumps``, the slow-reader
      check, ``broadcast()``): wall time until it returns, and the room
      thread's CPU time for it (``time.thread_time()``), in microseconds;
    * **bare**: websockets' ``broadcast()`` alone, of the same kind of text to
      the same connections, in a round of its own right after (the floor the
      room is compared with);

    and, in the clients' process, when each client's socket got the bytes of
    the room's message (``time.perf_counter()`` is one clock for the whole
    machine): first, median and last client, in milliseconds. The last
    client's time is set as much by how fast the clients' process reads
    hundreds of sockets as by the server, so the clients' process CPU load
    while the message came in (its ``time.process_time()`` over the time
    from the room's stamp to the last arrival) is shown beside it.

    Each count is measured ``rounds`` times; the table shows medians,
    ``table.raw`` keeps every round (``{"room_us", "bare_us", "room_cpu_us",
    "bare_cpu_us", "first", "median", "last", "client_cores"}``, times in
    seconds except the ``_us``).
    ``timeout`` bounds each round (and, plus a bit per client, each batch
    of connections).
    """
    counts = [int(n) for n in counts]
    if not counts or min(counts) < 1:
        raise ValueError(f"counts must be positive numbers of clients, got {counts!r}")
    raise_fd_limit(max(counts) + 256)
    room = chat_room_in_thread("fanout", history=0, notices=False, max_buffer=1 << 30, ping_interval=None)
    raw: dict[int, list[dict[str, float]]] = {}
    clients: _ClientProcess | None = None
    try:
        clients = _ClientProcess(max(counts), start_timeout=max(30.0, timeout))
        assert room.server is not None and room.server._loop is not None
        loop = room.server._loop
        for n in sorted(set(counts)):
            clients.send("connect", (room.url, n))
            clients.expect("connected", timeout + n / 20)
            raw[n] = []
            for k in range(rounds):
                stamps: dict[str, float] = {}
                measured = []
                for way in ("room", "bare"):
                    label = f"{k}" if way == "room" else f"{k}b"
                    clients.send("round", (label, timeout))
                    clients.expect("ready", timeout)

                    def fan_out(way: str = way, label: str = label) -> None:
                        cpu0 = time.thread_time()
                        t0 = time.perf_counter()
                        event = {"type": "message", "nick": "bench", "text": f"fanout {label} {t0!r}",
                                 "time": time.time()}
                        if way == "room":
                            room._publish(event)
                        else:
                            broadcast(list(room._members), json.dumps(event))
                        stamps[way] = time.perf_counter() - t0
                        stamps[way + " cpu"] = time.thread_time() - cpu0

                    loop.call_soon_threadsafe(fan_out)
                    measured.append(clients.expect("result", timeout + 5))
                room_round = measured[0]
                room_round.update(room_us=stamps["room"] * 1e6, bare_us=stamps["bare"] * 1e6,
                                  room_cpu_us=stamps["room cpu"] * 1e6, bare_cpu_us=stamps["bare cpu"] * 1e6)
                raw[n].append(room_round)
    finally:
        try:
            if clients is not None:
                clients.close()
        finally:
            room.stop()
    rows = []
    for n in counts:
        med = {key: statistics.median(r[key] for r in raw[n])
               for key in ("room_us", "bare_us", "room_cpu_us", "first", "median", "last", "client_cores")}
        ratios = [r["room_cpu_us"] / r["bare_cpu_us"] for r in raw[n]]
        rows.append([n, f"{med['room_us']:.0f}", f"{med['bare_us']:.0f}", f"{med['room_cpu_us'] / n:.1f}",
                     f"{min(ratios):.2f}-{max(ratios):.2f}", f"{med['first'] * 1000:.2f}",
                     f"{med['last'] * 1000:.2f}", f"{med['client_cores']:.2f}"])
    table = Table(["clients", "room us", "bare broadcast() us", "room CPU us/client", "room/bare CPU",
                   "first client ms", "last client ms", "client process cores"], rows,
                  title=f"fan-out of one message, median of {rounds} rounds (room/bare CPU: min-max)",
                  align_right=set(range(8)))
    table.raw = raw  # type: ignore[attr-defined]
    return table


def plot_fanout(table: Table) -> Any:
    """Plot what :func:`measure_fanout` measured: the server's fan-out time, and the last client's.

    Left: the room's fan-out and bare ``broadcast()``, every round as a dot
    and the median as a line (the server's side). Right: when the last
    client had it, with the clients' process CPU load written beside each
    median (the clients' side: it depends on that process as much as on
    the server).
    """
    import matplotlib.pyplot as plt

    raw: dict[int, list[dict[str, float]]] = table.raw  # type: ignore[attr-defined]
    counts = sorted(raw)
    fig, (server_ax, client_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    xs = [n for n in counts for _ in raw[n]]
    for key, label in (("room_us", "room (_publish)"), ("bare_us", "bare broadcast()")):
        line = server_ax.plot(counts, [statistics.median(r[key] for r in raw[n]) / 1000 for n in counts],
                              marker="o", label=label)[0]
        server_ax.scatter(xs, [r[key] / 1000 for n in counts for r in raw[n]], s=10, alpha=0.4,
                          color=line.get_color())
    server_ax.set_title("server: until broadcast() returns")
    server_ax.set_ylabel("ms")
    client_ax.scatter(xs, [r["last"] * 1000 for n in counts for r in raw[n]], s=10, alpha=0.4, color="C2")
    medians = [statistics.median(r["last"] for r in raw[n]) * 1000 for n in counts]
    client_ax.plot(counts, medians, marker="o", color="C2", label="last client has it")
    for n, y in zip(counts, medians):
        cores = statistics.median(r["client_cores"] for r in raw[n])
        client_ax.annotate(f"clients' process: {cores:.2f} cores", (n, y), textcoords="offset points",
                           xytext=(4, 6), fontsize=8)
    client_ax.set_title("clients: until the last one has it")
    client_ax.set_ylabel("ms after the room's stamp")
    for ax in (server_ax, client_ax):
        ax.set_xlabel("clients in the room")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left")
    fig.tight_layout()
    return fig

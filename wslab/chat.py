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
  slow reader cannot stall the others. Every write, pongs included, goes
  through the room's :class:`wslab.limits.Guard`: a member whose unsent
  buffer grows past ``max_buffer`` bytes is failed with close code 1008 at
  that write (even when the room is quiet and only pongs pile up) instead of
  letting the buffer grow without bound.
* Publishing never re-enters itself. ``_publish`` records an event and hands
  it to ``_fanout``, the one place that writes to members (a broker hook
  belongs between the two). A member the guard drops during ``_fanout`` only
  leaves ``members`` there (``_on_guard_close``); its leave notice is queued
  and goes out later from ``_flush_notices``. (Before, ``_drop`` published
  the notice from inside the loop over members: two slow members raised
  ``KeyError``, 600 a ``RecursionError``.)
* Join and leave notices are queued: at once (next loop turn) in a small room,
  every ``NOTICE_DELAY`` seconds above ``NOTICE_BATCH_ABOVE`` members, and
  several in a row go out as one event (``"nick": "ada, bob, cy and 47
  others"``, ``"nicks": [...]``), so admitting n members costs about n
  writes per batch instead of n squared in all. Only connections that are
  open and not closing are written to (:func:`wslab.limits.writable`).
* Names: ``room.say()`` speaks as the instructor (``"role": "instructor"``
  in the event; the page marks those lines ``* [instructor]``). The nicks in
  :data:`RESERVED_NICKS` and every nick ``say()`` used cannot be taken by a
  student (compared after NFKC and case folding, ignoring spaces, '.', '-'
  and '_'; refused with 1008).
* Join order: the welcome (and the history) are written with ``broadcast``
  to the newcomer alone and the newcomer joins ``members`` with no ``await``
  in between, so the first thing every client reads is its welcome, and a
  client that has read it is guaranteed to get every later message.
* Limits: :class:`wslab.Limits` with the room's own ``max_size`` (4096 bytes;
  a bigger message closes with 1009, message too big) and ``max_buffer``;
  the Origin policy answers a page from another site with HTTP 403 at the
  handshake (cross-site WebSocket hijacking, RFC 6455 section 10.2). Under
  JupyterHub the hub's origin comes from ``JUPYTERHUB_PUBLIC_URL`` or
  ``WSLAB_ORIGINS`` (or ``origins=``), never from a request's ``Host``.
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
    {"type": "join" | "leave", "nick": ..., "time": ...}   (+ "why": "too slow" if dropped)
    {"type": "join" | "leave", "nick": "ada, bob, cy and 2 others", "nicks": [...], "time": ...}
    {"type": "message", "nick": ..., "text": ..., "time": ...}   (+ "role": "instructor" from say())

Clients send plain text; the nickname is in the URL: ``ws://.../?nick=ada``.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import re
import resource
import statistics
import time
import traceback
import unicodedata
from collections import deque
from typing import Any, Sequence
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, broadcast
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from .browser import html_page_responder, page_html
from .display import Table
from .limits import DEFAULT_LIMITS, Guard, writable
from .servers import Server, serve, serve_in_thread

__all__ = [
    "ChatRoom",
    "chat_room",
    "chat_room_in_thread",
    "ChatClient",
    "join_classroom",
    "LOOPBACK_ORIGINS",
    "RESERVED_NICKS",
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


#: Names a student cannot take (compared case-insensitively, NFKC): the
#: instructor's. Every nick ``room.say()`` speaks as joins the room's own set.
RESERVED_NICKS = frozenset({"teacher", "instructor", "room", "server", "wslab"})


def _nick_key(nick: str) -> str:
    """What makes two nicknames the same one: NFKC, case-folded, without spaces, '.', '-', '_'."""
    return re.sub(r"[\s.\-_]", "", unicodedata.normalize("NFKC", nick).casefold())


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


#: Join and leave notices wait this long (seconds) once the room has more than
#: NOTICE_BATCH_ABOVE members, so that many joins become one notice.
NOTICE_DELAY = 0.25
NOTICE_BATCH_ABOVE = 50


class ChatRoom:
    """The room: who is in it, what was said, and the handler that runs it.

    Start one with :func:`chat_room` (notebook's loop) or
    :func:`chat_room_in_thread`. ``room.say(text)`` speaks as ``"teacher"``
    from any thread; its events carry ``"role": "instructor"`` and the page
    shows them marked, and no student can take that name (nor any in
    :data:`RESERVED_NICKS`). ``room.members`` lists nicknames,
    ``room.dropped`` the nicknames dropped for reading too slowly (1008).
    """

    client_format = "chat"
    #: A wslab.broker.Broker when the room spans processes (it takes every event; see broker.py).
    broker: Any = None

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
        self.guard: Guard | None = None
        #: The explicit Origin allow-list (the guard's; code may append, requests never do).
        self.origins: list[Any] | None = None
        self._members: dict[ServerConnection, str] = {}
        self._taken: set[str] = set()  # _nick_key of every member's nick
        self._reserved: set[str] = {_nick_key(n) for n in RESERVED_NICKS}
        self._notices: list[tuple[str, str, str | None]] = []  # (kind, nick, why) waiting to go out
        self._notice_timer: Any = None

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
        page = page_html(title=self.room, format="chat",
                         intro="Messages show as text: markup you send is shown, never run.")
        return html_page_responder(page)(connection, request)

    def _nick_for(self, wanted: str) -> str:
        if _nick_key(wanted) in self._reserved:
            raise BadNickname(f"nickname {wanted!r} is reserved for the instructor: pick another")
        nick, n = wanted, 2
        while _nick_key(nick) in self._taken:
            nick, n = f"{wanted}-{n}", n + 1
        return nick

    async def handler(self, connection: ServerConnection) -> None:
        try:
            nick = self._nick_for(_clean_nick(connection.request.path))
        except BadNickname as exc:
            await connection.close(CloseCode.POLICY_VIOLATION, str(exc)[:120])
            return
        # No await from here to the end of the join: see the design note.
        welcome = {"type": "welcome", "room": self.room, "nick": nick,
                   "members": sorted([*self._members.values(), nick])}
        broadcast([connection], json.dumps(welcome))
        if self.history:
            broadcast([connection], json.dumps({"type": "history", "events": list(self.history)}))
        if not writable(connection):  # dropped already (its buffer overflowed)
            return
        self._members[connection] = nick
        self._taken.add(_nick_key(nick))
        self._notice("join", nick)
        try:
            async for message in connection:
                if not isinstance(message, str):
                    await connection.close(CloseCode.UNSUPPORTED_DATA, "the room takes text messages only")
                    return
                if message.strip():
                    self._publish({"type": "message", "nick": nick, "text": message, "time": time.time()})
        finally:
            self._leave(connection)

    def _leave(self, connection: ServerConnection, why: str | None = None) -> None:
        """``connection`` is no longer a member (it left, or was dropped); queue its leave notice."""
        nick = self._members.pop(connection, None)
        if nick is None:
            return
        self._taken.discard(_nick_key(nick))
        if why is not None:
            self.dropped.append(nick)
        self._notice("leave", nick, why)

    def _on_guard_close(self, connection: ServerConnection, stat: str) -> None:
        """The guard closed ``connection`` (1008, too much buffered, or not reading).

        Called in the middle of a write (even inside ``broadcast()``): it only
        updates the members and queues the notice, it never publishes.
        """
        self._leave(connection, "too slow")

    # Publishing: _publish records an event and hands it to _fanout, the one
    # place that writes to the members (a broker can take the event between them).

    def _publish(self, event: dict[str, Any]) -> None:
        """Record ``event`` and send it to every member now (on the room's loop)."""
        if self.broker is not None and self.broker.take(self, event):
            return  # it comes back through Redis, to this process and every other (broker.py)
        if self.history.maxlen:
            self.history.append(event)
        self._fanout(json.dumps(event))

    def _fanout(self, data: str) -> None:
        """Write ``data`` to every member whose connection is still open.

        A member whose buffer passes ``max_buffer`` is dropped by the guard
        during this write (``_on_guard_close``): its leave notice goes out
        later, from :meth:`_flush_notices`, so publishing never re-enters
        itself.
        """
        broadcast([c for c in self._members if writable(c)], data)

    def _notice(self, kind: str, nick: str, why: str | None = None) -> None:
        """Queue a join or leave notice; several in a row go out as one."""
        if not self.notices:
            return
        self._notices.append((kind, nick, why))
        if self._notice_timer is None:  # on the room's loop: handler and guard callbacks run there
            delay = NOTICE_DELAY if len(self._members) > NOTICE_BATCH_ABOVE else 0
            self._notice_timer = asyncio.get_running_loop().call_later(delay, self._flush_notices)

    def _flush_notices(self) -> None:
        self._notice_timer = None
        pending, self._notices = self._notices, []
        now = time.time()
        for kind in ("join", "leave"):
            group = [(nick, why) for k, nick, why in pending if k == kind]
            if not group:
                continue
            if len(group) == 1:
                event: dict[str, Any] = {"type": kind, "nick": group[0][0], "time": now}
                if group[0][1]:
                    event["why"] = group[0][1]
            else:
                nicks = [nick for nick, _ in group]
                shown = ", ".join(nicks[:3]) + (f" and {len(nicks) - 3} others" if len(nicks) > 3 else "")
                event = {"type": kind, "nick": shown, "nicks": nicks, "time": now}
                dropped = [nick for nick, why in group if why]
                if dropped:
                    event["dropped"] = dropped
            self._publish(event)

    def say(self, text: str, nick: str = "teacher") -> None:
        """Post ``text`` to everyone as the instructor, from any thread or cell.

        ``nick`` becomes reserved: no student can join under it afterwards.
        """
        if not isinstance(text, str):
            raise TypeError(f"say() sends text, got {type(text).__name__}")
        if self.server is None or not self.server.running:
            raise RuntimeError("this room is stopped: start a new one with wslab.chat_room()")
        self._reserved.add(_nick_key(nick))
        event = {"type": "message", "nick": nick, "text": text, "time": time.time(), "role": "instructor"}
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


def _room_args(name: str, kwargs: dict[str, Any]) -> tuple[ChatRoom, dict[str, Any]]:
    room_keys = ("room", "history", "notices", "max_buffer")
    room = ChatRoom(**{k: kwargs.pop(k) for k in room_keys if k in kwargs})
    limits = kwargs.pop("limits", None) or DEFAULT_LIMITS
    limits = limits.replace(max_buffer=room.max_buffer)
    if "max_size" not in kwargs:
        limits = limits.replace(max_size=DEFAULT_MAX_SIZE)
    origins = kwargs.pop("origins", _DEFAULT)
    if origins is None:
        kwargs["origins"] = None  # every site: websockets checks nothing
    elif origins is not _DEFAULT:
        limits = limits.replace(origins=tuple(o for o in origins if o is not None),
                                local_origins=False, allow_no_origin=None in origins)
    # permessage-deflate compresses every broadcast once per member (each
    # connection has its own compression context): off unless asked for.
    kwargs.setdefault("compression", None)
    room.guard = Guard(limits, name=name, on_close=room._on_guard_close)
    # The guard's list, read at every handshake: appending to room.origins
    # later (the classroom does, once its port is known) works.
    room.origins = room.guard.origins
    kwargs["limits"] = room.guard
    return room, kwargs


_DEFAULT: Any = object()


async def chat_room(name: str = "chat", **kwargs: Any) -> ChatRoom:
    """Start a chat room on the notebook's loop; ``room = await wslab.chat_room()``.

    Room options: ``room`` (its title), ``history`` (messages kept for
    newcomers, default 50), ``notices`` (join/leave messages), ``max_buffer``
    (bytes waiting for one member before it is dropped with 1008, default
    256 KiB). Server options go to :func:`wslab.serve`: ``max_size`` (default
    4096 bytes; bigger messages close with 1009), ``origins`` (default: the
    Origin policy of :class:`wslab.Limits`: pages from this computer, the
    room's own address, ``WSLAB_ORIGINS`` and the hub's public URL, and
    clients without an Origin header; None allows every site), ``limits``,
    ``host``/``port``/``allow_network``, ``ping_interval``/``ping_timeout``.
    ``broker`` (a :class:`wslab.broker.Broker`) joins the room of that title in other processes.
    """
    broker = kwargs.pop("broker", None)
    room, kwargs = _room_args(name, kwargs)
    room.server = await serve(room.handler, name, process_request=room.process_request, **kwargs)
    if broker is not None:
        await broker.attach(room)
    return room


def chat_room_in_thread(name: str = "chat", **kwargs: Any) -> ChatRoom:
    """Like :func:`chat_room`, on its own loop in a thread (cells may block)."""
    broker = kwargs.pop("broker", None)
    room, kwargs = _room_args(name, kwargs)
    room.server = serve_in_thread(room.handler, name, process_request=room.process_request, **kwargs)
    if broker is not None:
        broker.attach_in_thread(room)
    return room


# A client for a learner: wslab/chat_client.py (re-exported here)

from .chat_client import ChatClient, join_classroom, stalled_client  # noqa: E402


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

    * **room**: the room's own ``_publish`` (``json.dumps``, ``broadcast()``
      through wslab's guarded connections, which check each member's buffer):
      wall time until it returns, and the room thread's CPU time for it
      (``time.thread_time()``), in microseconds;
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

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
  through the room's :class:`wslab.server.limits.Guard`: a member whose unsent
  buffer grows past ``max_buffer`` bytes is failed with close code 1008 at
  that write (even when the room is quiet and only pongs pile up) instead of
  letting the buffer grow without bound.
* Publishing never re-enters itself. ``_publish`` hands an event to
  ``_deliver``, which records it and hands it to ``_fanout``, the one place
  that writes to members; a broker takes the event in ``_publish`` and gives
  it back to ``_deliver`` when it comes out of Redis (``broker.py``). A member the guard drops during ``_fanout`` only
  leaves ``members`` there (``_on_guard_close``); its leave notice is queued
  and goes out later from ``_flush_notices``. (Before, ``_drop`` published
  the notice from inside the loop over members: two slow members raised
  ``KeyError``, 600 a ``RecursionError``.)
* Join and leave notices are queued: at once (next loop turn) in a small room,
  every ``NOTICE_DELAY`` seconds above ``NOTICE_BATCH_ABOVE`` members, and
  several in a row go out as one event (``"nick": "ada, bob, cy and 47
  others"``, ``"nicks": [...]``), so admitting n members costs about n
  writes per batch instead of n squared in all. Only connections that are
  open and not closing are written to (:func:`wslab.server.limits.writable`).
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
    {"type": "system", "text": ..., "time": ...}   (about the room itself: split, whole again, not sent)

Clients send plain text; the nickname is in the URL: ``ws://.../?nick=ada``.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import unicodedata
from collections import deque
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, broadcast
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from ..course.i18n import gettext as _
from .browser import ServesPage, html_page_responder, page_html
from ..server.limits import DEFAULT_LIMITS, Guard, writable
from ..server.serve import Server, serve, serve_in_thread

__all__ = [
    "ChatRoom",
    "chat_room",
    "chat_room_in_thread",
    "ChatClient",
    "join_classroom",
    "LOOPBACK_ORIGINS",
    "RESERVED_NICKS",
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


class ChatRoom(ServesPage):
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
            raise ValueError(_("history must be 0 or more messages, got {value}").format(value=repr(history)))
        self.room = room
        self.notices = notices
        self.max_buffer = max_buffer
        #: The largest message in bytes (the server's max_size; set when the room starts).
        self.max_size = DEFAULT_MAX_SIZE
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
    def members(self) -> list[str]:
        return sorted(self._members.values())

    def __repr__(self) -> str:
        return f"<wslab.ChatRoom {self.room!r} {self.url} {len(self._members)} member(s)>"

    # The server side

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        page = page_html(title=self.room, format="chat",
                         intro=_("Messages show as text: markup you send is shown, never run."))
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
                if self.broker is not None and self.broker.full:
                    await self.broker.ready()  # Redis is slower than the senders: wait (broker.py)
                if message.strip() and not self._publish(
                        {"type": "message", "nick": nick, "text": message, "time": time.time()}):
                    notice = _("not sent ({message}): {why}").format(message=repr(message[:40]), why=self.broker.refusal)
                    broadcast([connection], self._system_event(notice))
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

    def _publish(self, event: dict[str, Any]) -> bool:
        """Record ``event`` and send it to every member now (on the room's loop).

        With a broker, the broker takes it instead: it comes back through
        Redis, to this process and every other (broker.py), to
        :meth:`_deliver`. False if the broker could not keep it
        (``broker.refusal`` says why).
        """
        if self.broker is not None:
            return bool(self.broker.take(self, event))
        self._deliver(event)
        return True

    def _deliver(self, event: dict[str, Any]) -> None:
        """Record ``event`` in the history and send it to every member."""
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

    @staticmethod
    def _system_event(text: str) -> str:
        return json.dumps({"type": "system", "text": text, "time": time.time()})

    def _system(self, text: str) -> None:
        """Tell this process's members something about the room itself (not kept in the history)."""
        self._fanout(self._system_event(text))

    @property
    def stats(self) -> dict[str, Any]:
        """Members, members dropped, and the broker's counters if the room has one."""
        stats: dict[str, Any] = {"members": len(self._members), "dropped members": len(self.dropped)}
        if self.broker is not None:
            stats["broker"] = self.broker.stats
        return stats

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
                nicks = [nick for nick, _why in group]
                shown = ", ".join(nicks[:3]) + (
                    _(" and {count} others").format(count=len(nicks) - 3) if len(nicks) > 3 else "")
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
            raise TypeError(_("say() sends text, got {type}").format(type=type(text).__name__))
        if self.server is None or not self.server.running:
            raise RuntimeError(_("this room is stopped: start a new one with wslab.chat_room()"))
        if self.broker is not None and len(text.encode("utf-8", "surrogatepass")) > self.max_size:
            raise ValueError(_("say() text too long for a room across processes: {size} bytes (max {most})").format(
                size=f"{len(text.encode('utf-8', 'surrogatepass')):,}", most=f"{self.max_size:,}"))
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
    room.max_size = kwargs.get("max_size") or limits.max_size or DEFAULT_MAX_SIZE
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
    ``broker`` (a :class:`wslab.production.broker.Broker`) joins the room of that title in other processes.
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


# A client for a learner: wslab/classroom/chat_client.py (re-exported here)

from .chat_client import ChatClient, join_classroom, stalled_client  # noqa: E402


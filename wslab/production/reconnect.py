"""Reconnection: a numbered event stream that restarts, and a check for clients that resume.

    stream = await wslab.reconnect.resumable_stream()   # events 1, 2, 3, ... every 10 ms
    await stream.restart(code=1012, down=0.3)            # every client gets 1012, port closed 0.3 s
    stream.resumes                                       # who came back, from which id, after how long

Design note
-----------
One websockets server on ``127.0.0.1``, on the running loop (task mode, in
the registry, so ``wslab.stop_all()`` stops it), and one producer task that
appends an event ``{"id": n, "t": ...}`` to a bounded backlog every
``interval`` seconds and broadcasts it to the subscribers.

* A client says where it is with its first message, ``{"last": <id>}`` (0 for
  a fresh start): the handler writes every backlog event after that id and
  joins the subscribers with no ``await`` in between, so no event falls in a
  gap between the catch-up and the live stream, and none comes twice. (The
  first message, not the URL: ``async for ws in connect(url)`` reconnects to
  the same URL every time.)
* ``restart()`` is a real outage: every connection is closed with the code
  given (1012 service restart, or 1001 going away), the listening socket is
  closed, nothing listens for ``down`` seconds (a client's attempts are
  refused), then a new server listens on the same port. The producer pauses
  from the outage until the first client is back, so what a check sees does
  not depend on how long a client's backoff took.
* ``resumes`` records each reconnection: the time the outage began, the time
  the client's ``{"last": ...}`` arrived, and the id it resumed from. The gap
  is measured on one clock, this process's ``time.monotonic()``.
* The listener runs under wslab's limits (:class:`wslab.server.limits.Guard`: the
  same message size, queue, write buffer, keepalive, connection cap and
  Origin policy as every wslab listener). A first message that is not
  ``{"last": <a whole number from 0>}`` (``Infinity``, ``-1``, ``"5"``,
  ``1.5``, not JSON, too late) is closed with 1008, never 1011.
* Two ways to misbehave, for :func:`check_follow`: ``junk=True`` sends
  messages that are not events (not JSON, or JSON without an ``"id"``) at the
  start of every connection and after every 50th event; :meth:`flap` makes the
  server accept every connection and close it at once (1011) for a while, as
  a crashing backend behind a healthy proxy does. A client that reconnects at
  once after a handshake that worked (websockets' ``async for ws in
  connect(...)`` does: it resets its backoff after every successful
  handshake) then reconnects hundreds of times a second; ``flaps`` counts them.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import ServerConnection, broadcast
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed

from ..course.checks import CheckFailed
from ..course.display import Table
from ..course.i18n import gettext as _
from ..server.limits import Guard, Limits
from ..server.background import Background, register, release

__all__ = ["ResumableStream", "Resume", "resumable_stream", "check_follow", "JUNK", "MAX_FLAPS"]

#: Events kept for clients that come back (at 100 events/s: 100 s).
DEFAULT_BACKLOG = 10_000
#: What a ``junk=True`` stream sends that is not an event: not JSON, and JSON without an id.
JUNK = ("server restarting soon: not JSON", json.dumps({"notice": "this is not an event"}))
#: Connections check_follow allows during its 1.5 s of a server that accepts and closes at once.
MAX_FLAPS = 30
#: How long check_follow's server accepts and closes at once, seconds.
FLAP_SECONDS = 1.5


@dataclass
class Resume:
    """One client coming back: outage start, resume time (monotonic seconds), the id it resumed from."""

    outage: float
    resumed: float
    last: int

    @property
    def gap(self) -> float:
        return self.resumed - self.outage


class ResumableStream(Background):
    """A numbered event stream on a websockets server that can be restarted (see the module note)."""

    mode = "task"
    host = "127.0.0.1"

    def __init__(self, name: str, interval: float, backlog: int, *, junk: bool = False,
                 limits: Limits | None = None) -> None:
        if not (isinstance(interval, (int, float)) and interval > 0):
            raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
        if isinstance(backlog, bool) or not isinstance(backlog, int) or backlog < 1:
            raise ValueError(f"backlog must be a whole number of events, at least 1, got {backlog!r}")
        self.name = name
        self.junk = junk
        #: The listener's limits (wslab.limits); guard.stats counts what they refused or closed.
        self.guard = Guard(limits, name=name)
        #: Connections accepted and closed at once by flap().
        self.flaps = 0
        self._flap_until = 0.0
        self.interval = interval
        self.backlog: deque[dict[str, Any]] = deque(maxlen=backlog)
        self.published = 0
        self.started = time.time()
        self.errors: list[BaseException] = []
        self.resumes: list[Resume] = []
        self.restarts: list[tuple[float, float]] = []  # (down from, up again), monotonic
        self.port = 0
        self._subscribers: set[ServerConnection] = set()
        self._ws_server: Any = None
        self._producer: asyncio.Task[None] | None = None
        self._outage: float | None = None
        self._producing = asyncio.Event()
        self._producing.set()

    @property
    def connections(self) -> int:
        return len(self._subscribers)

    async def _listen(self) -> None:
        self._ws_server = await ws_serve(self._handler, "127.0.0.1", self.port, compression=None,
                                         **self.guard.serve_kwargs())
        self.port = self._ws_server.sockets[0].getsockname()[1]

    async def _produce(self) -> None:
        next_at = time.monotonic()
        while True:
            if not self._producing.is_set():
                await self._producing.wait()
                next_at = time.monotonic()
            self.published += 1
            event = {"id": self.published, "t": time.time()}
            self.backlog.append(event)
            broadcast(self._subscribers, json.dumps(event))
            if self.junk and self.published % 50 == 0:
                broadcast(self._subscribers, JUNK[0])
            next_at += self.interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    def flap(self, seconds: float) -> None:
        """For ``seconds`` from now, accept every connection and close it at once (1011)."""
        self._flap_until = time.monotonic() + seconds

    async def _handler(self, connection: ServerConnection) -> None:
        if time.monotonic() < self._flap_until:
            self.flaps += 1
            await connection.close(1011, "backend unavailable")
            return
        if self.junk:
            broadcast([connection], JUNK[0])
            broadcast([connection], JUNK[1])
        try:
            async with asyncio.timeout(5):
                hello = json.loads(await connection.recv())
            last = hello["last"]
        except ConnectionClosed:
            return
        except (TimeoutError, ValueError, KeyError, TypeError, RecursionError):  # RecursionError: [[[[...
            await connection.close(1008, 'send {"last": <id>} first (0 for the start)')
            return
        if isinstance(last, bool) or not isinstance(last, int) or last < 0:
            await connection.close(1008, f'"last" must be a whole number from 0, got {str(last)[:40]}')
            return
        if self._outage is not None:
            self.resumes.append(Resume(self._outage, time.monotonic(), last))
            self._producing.set()
        oldest = self.backlog[0]["id"] if self.backlog else self.published + 1
        if last + 1 < oldest:
            await connection.close(1008, f"event {last + 1} is no longer kept (oldest: {oldest})")
            return
        # No await from here to the add: see the design note.
        for event in self.backlog:
            if event["id"] > last:
                broadcast([connection], json.dumps(event))
        self._subscribers.add(connection)
        try:
            await connection.wait_closed()
        finally:
            self._subscribers.discard(connection)

    async def restart(self, *, code: int = 1012, down: float = 0.3) -> None:
        """Close every client with ``code``, stop listening for ``down`` seconds, listen again."""
        if code not in (1001, 1012):
            raise ValueError(f"a restart closes with 1012 (service restart) or 1001 (going away), got {code!r}")
        self._outage = time.monotonic()
        self._producing.clear()
        reason = "service restart" if code == 1012 else "going away"
        await asyncio.gather(*(c.close(code, reason) for c in list(self._subscribers)),
                             return_exceptions=True)
        self._ws_server.close(close_connections=False)
        await self._ws_server.wait_closed()
        await asyncio.sleep(down)  # the outage itself, not a synchronisation
        await self._listen()
        self.restarts.append((self._outage, time.monotonic()))

    async def _close(self) -> None:
        if self._producer is not None:
            self._producer.cancel()
        if self._ws_server is not None:
            self._ws_server.close()
            try:
                async with asyncio.timeout(self.stop_timeout):
                    await self._ws_server.wait_closed()
            except TimeoutError:
                for c in list(self._ws_server.connections):
                    c.transport.abort()

    def __repr__(self) -> str:
        return (f"<wslab.reconnect.ResumableStream {self.url} {self.published} events, "
                f"{self.connections} subscriber(s), {len(self.restarts)} restart(s)>")


async def resumable_stream(name: str = "stream", *, interval: float = 0.01,
                           backlog: int = DEFAULT_BACKLOG, junk: bool = False,
                           limits: Limits | None = None) -> ResumableStream:
    """Start a numbered event stream (an event every ``interval`` seconds) on the running loop.

    ``junk=True`` also sends messages that are not events (see the module
    note); ``limits`` (:class:`wslab.Limits`, the kit's defaults) are the
    listener's limits.
    """
    await release(name)
    stream = ResumableStream(name, interval, backlog, junk=junk, limits=limits)
    stream._loop = asyncio.get_running_loop()
    await stream._listen()
    stream._producer = asyncio.ensure_future(stream._produce())
    register(stream)
    return stream


async def check_follow(follow: Any, *, count: int = 150, restarts: tuple[int, ...] = (1012, 1001),
                       down: float = 0.3, timeout: float = 20, flap: float = FLAP_SECONDS,
                       junk: bool = True) -> Table:
    """Run ``await follow(url, count)`` against a stream that misbehaves, then restarts once per code in ``restarts``.

    ``follow`` must return the first ``count`` events (dicts with ``"id"``) in
    order: ids 1 to ``count``, none lost, none twice. First, for ``flap``
    seconds, the server accepts every connection and closes it at once
    (1011): ``follow`` must back off (at most :data:`MAX_FLAPS` connections
    in that time), also after a handshake that worked. With ``junk`` the
    stream also sends messages that are not events (:data:`JUNK`), which
    ``follow`` must skip. Raises :class:`CheckFailed` naming the first
    problem; returns a table of the outages (how long each client was away).
    """
    stream = await resumable_stream("follow-check", interval=0.01, junk=junk)
    task = None
    try:
        task = asyncio.ensure_future(follow(stream.url, count))
        if flap:
            await _flapping(stream, task, flap)
        for i, code in enumerate(restarts):
            # Restart once the client has had a share of the events (bounded wait).
            target = (i + 1) * count // (len(restarts) + 1)
            for _step in range(int(timeout / 0.01)):
                if (stream.published >= target and stream._subscribers) or task.done():
                    break
                await asyncio.sleep(0.01)
            if task.done():
                break
            await stream.restart(code=code, down=down)
        try:
            events = await asyncio.wait_for(task, timeout)
        except TimeoutError:
            raise CheckFailed(_("follow() did not return {count} events within {seconds} s; "
                                "{resumes} reconnection(s) seen by the server").format(
                count=count, seconds=f"{timeout:.0f}", resumes=len(stream.resumes))) from None
        except (NotImplementedError, CheckFailed):
            raise
        except Exception as exc:  # noqa: BLE001 - the learner's error, explained
            raise CheckFailed(
                _("follow() raised {type}: {error}; a stream may send messages that are "
                  "not events (not JSON, or without an \"id\"): skip them and keep following").format(
                    type=type(exc).__name__, error=str(exc)[:120])
            ) from exc
    finally:
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=5)
        # A client that returned from inside `async for ws in connect(...)` leaves its last
        # connection open, no longer read (its generator is suspended until garbage
        # collection): abort our side rather than wait for a closing handshake it cannot answer.
        if stream._producer is not None:
            stream._producer.cancel()
        for connection in list(stream._subscribers):
            connection.transport.abort()
        await stream.aclose()
    _check_events(events, count)
    if len(stream.resumes) < len(stream.restarts):
        raise CheckFailed(_("the server restarted {restarts} times but the client came back {resumes} times").format(
            restarts=len(stream.restarts), resumes=len(stream.resumes)))
    rows = [[i + 1, code, f"{r.last}", f"{r.gap * 1000:.0f}"]
            for i, (code, r) in enumerate(zip(restarts, _first_resumes(stream)))]
    gaps = [r.gap for r in _first_resumes(stream)]
    flapped = _("; {flaps} connection(s) to a server closing at once for {seconds} s").format(
        flaps=stream.flaps, seconds=f"{flap:g}") if flap else ""
    table = Table([_("restart"), _("close code"), _("resumed after id"), _("away ms")], rows,
                  title=_("{count} events, none lost or doubled; the port was closed {ms} ms each time").format(
                      count=count, ms=f"{down * 1000:.0f}") + flapped,
                  align_right={0, 1, 2, 3})
    table.gaps = gaps  # type: ignore[attr-defined]
    table.median_gap = statistics.median(gaps) if gaps else None  # type: ignore[attr-defined]
    table.flaps = stream.flaps  # type: ignore[attr-defined]
    return table


async def _flapping(stream: ResumableStream, task: asyncio.Future[Any], seconds: float) -> None:
    """Run the stream as a server that accepts and closes at once; fail a client that does not back off."""
    stream._producing.clear()  # no events while it flaps (the producer has not run yet)
    stream.flap(seconds)
    end = time.monotonic() + seconds
    for _step in range(int(seconds / 0.01) + 100):  # bounded: until the end of the flapping
        if time.monotonic() >= end or task.done() or stream.flaps > MAX_FLAPS:
            break
        await asyncio.sleep(0.01)
    if stream.flaps > MAX_FLAPS:
        raise CheckFailed(
            _("follow() connected {flaps} times within {seconds} s to a server that accepted each "
              "connection and closed it at once (1011); expected at most {most}. Wait a backoff delay "
              "after every connection that brought no event, not only after failed attempts (websockets' "
              "`async for ws in connect(...)` retries at once after a handshake that worked)").format(
                flaps=stream.flaps, seconds=f"{seconds:g}", most=MAX_FLAPS)
        )
    stream._producing.set()


def _check_events(events: Any, count: int) -> None:
    """The events follow() returned are ids 1 to count, in order, each once."""
    if not isinstance(events, list):
        raise CheckFailed(_("follow() should return a list of events, got {type}").format(type=type(events).__name__))
    seen: set[int] = set()
    for position, event in enumerate(events, start=1):
        event_id = event.get("id") if isinstance(event, dict) else None
        if isinstance(event_id, bool) or not isinstance(event_id, int):
            raise CheckFailed(_("follow() returned {event} at position {position}, which is not an "
                                'event: skip messages that are not JSON objects with an integer "id"').format(
                event=repr(str(event)[:60]), position=position))
        if event_id in seen:
            raise CheckFailed(_("event {id} arrived twice (at position {position}): "
                                'resume with {{"last": <the last id you saw>}} after reconnecting').format(
                id=event_id, position=position))
        if event_id != position:
            raise CheckFailed(_("event {position} is missing: after {previous} came {id}").format(
                position=position, previous=position - 1, id=event_id))
        seen.add(event_id)
    if len(events) != count:
        raise CheckFailed(_("follow() returned {got} events; expected {count}").format(got=len(events), count=count))


def _first_resumes(stream: ResumableStream) -> list[Resume]:
    """The first resume after each restart."""
    out = []
    for began, _code in stream.restarts:
        after = [r for r in stream.resumes if r.outage == began]
        if after:
            out.append(after[0])
    return out

"""The lab server's WebSocket push: each event serialised once, ``broadcast()`` to the caught-up.

A push server can deliver an event to N clients in two ways:

* **each** (``fanout="each"``): every connection has a task that waits for
  the next event, serialises it and ``await connection.send()``\\ s it. Per
  delivery that is a task wake-up, a ``json.dumps`` and a ``send()`` (a lock,
  a drain): about 100 us of server CPU here, so 500 clients cost about half
  a core at 10 events a second.
* **broadcast** (the default): one task waits for the next event, serialises
  it once and hands the bytes to :func:`websockets.asyncio.server.broadcast`,
  which writes one frame into every connection's buffer without awaiting
  anything. ``benchmarks/bench_push.py`` measures both in one run.

Design note
-----------
The invariant that keeps every event delivered exactly once, in order:
*a connection is in* ``members`` *only while it has been sent every event up
to* ``sent``, the seq of the last event broadcast. Everything runs on the lab
server's loop, so:

* The broadcaster (one task, :meth:`Pusher._run`) waits on the
  :class:`~wslab.lab.events.EventSource` for events after ``sent``; for each, it
  first lets go of members that are behind (their transport paused writing:
  the client reads slower than events come), then broadcasts to the rest,
  then advances ``sent``. No ``await`` inside that step.
* A connection's own task (:meth:`Pusher.handle`) catches up from its cursor
  with ``await connection.send()`` (backpressure: it waits while the client
  is slow) until its cursor equals ``sent``; then, with no ``await`` between
  that check and the join, it joins ``members``. It then sleeps until the
  server stops, the client goes, or the broadcaster lets it go; a connection
  let go notes its cursor (``sent`` at that moment) and catches up again.

So a slow reader is never dropped for being slow and never makes the server
buffer more than websockets' ``write_limit`` plus one event: it simply leaves
the broadcast for a while. What must never happen: an ``await`` between
"caught up" and "joined" (an event broadcast in between would be lost), or a
member written to by both the broadcaster and its own task.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection, broadcast
from websockets.exceptions import ConnectionClosed

from .events import Event

if TYPE_CHECKING:
    from .labserver import LabServer

__all__ = ["Pusher", "FANOUTS"]

#: The ways :class:`Pusher` can deliver (see the module doc).
FANOUTS = ("broadcast", "each")


class Pusher:
    """The WebSocket side of one lab server: ``handle`` is the websockets handler.

    ``stats`` counts ``"joined"`` (a connection joined the broadcast),
    ``"let go"`` (it fell behind and caught up on its own) and
    ``"broadcasts"`` (events broadcast).
    """

    def __init__(self, lab: LabServer, fanout: str = "broadcast") -> None:
        if fanout not in FANOUTS:
            raise ValueError(f"fanout must be one of {FANOUTS}, got {fanout!r}")
        self.lab = lab
        self.fanout = fanout
        #: The seq of the last event broadcast: every member has every event up to it.
        self.sent = lab.source.newest
        #: Caught-up connections, each with the future that wakes its task when it is let go.
        self.members: dict[ServerConnection, asyncio.Future[None]] = {}
        self.stats: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the broadcaster on the running loop (the lab's); a no-op for ``"each"``."""
        if self.fanout == "broadcast":
            self._task = asyncio.ensure_future(self._run())

    # The broadcaster

    async def _run(self) -> None:
        lab = self.lab
        assert lab._stopping is not None
        try:
            while True:
                events = await lab.source.wait_after(self.sent, None, until=[lab._stopping])
                if events is None:
                    return  # the server is stopping
                for event in events:
                    self._broadcast(event)
        except Exception as exc:  # noqa: BLE001 - report, never lose silently
            lab._report(exc)

    def _broadcast(self, event: Event) -> None:
        members = self.members
        if members:
            targets = []
            behind = []
            for connection in members:
                # broadcast() skips connections that are not OPEN, and wslab's guarded
                # connection writes nothing to a closing transport: only "behind" is ours.
                if connection.paused:
                    behind.append(connection)
                else:
                    targets.append(connection)
            for connection in behind:
                self._let_go(connection)
            broadcast(targets, event.dumps())
            self.stats["broadcasts"] += 1
        self.sent = event.seq

    def _let_go(self, connection: ServerConnection) -> None:
        wake = self.members.pop(connection)
        connection.lab_cursor = self.sent  # type: ignore[attr-defined]
        self.stats["let go"] += 1
        if not wake.done():
            wake.set_result(None)

    # One connection

    async def handle(self, connection: ServerConnection) -> None:
        """The websockets handler: push every event after the connection's cursor, in order."""
        lab = self.lab
        lab.requests["ws"] += 1
        closed = asyncio.ensure_future(connection.wait_closed())
        held = self.fanout == "broadcast"  # lab.hold() counts the "each" way's waits itself
        lab._held += held
        try:
            if self.fanout == "each":
                await self._each(connection, closed)
            else:
                await self._catch_up_and_join(connection, closed)
        except ConnectionClosed:
            pass
        except Exception as exc:  # noqa: BLE001 - report, never lose
            lab._report(exc)
        finally:
            lab._held -= held
            self.members.pop(connection, None)
            closed.cancel()

    async def _catch_up_and_join(self, connection: ServerConnection, closed: asyncio.Future[Any]) -> None:
        lab = self.lab
        stopping = lab._stopping
        assert stopping is not None
        cursor: int = connection.cursor  # type: ignore[attr-defined]
        loop = asyncio.get_running_loop()
        while True:
            # Catch up on our own, with backpressure, until we have everything broadcast so far.
            while cursor < self.sent and not (stopping.done() or closed.done()):
                for event in lab.source.since(cursor)[: self.sent - cursor]:
                    await connection.send(event.dumps())
                    cursor = event.seq
            if stopping.done():
                await connection.close(1001, "server stopping")
                return
            if closed.done():
                return
            # Caught up (cursor == sent): join, with no await since the check.
            wake: asyncio.Future[None] = loop.create_future()
            self.members[connection] = wake
            self.stats["joined"] += 1
            await asyncio.wait((wake, closed, stopping), return_when=asyncio.FIRST_COMPLETED)
            if self.members.pop(connection, None) is None and wake.done():
                cursor = connection.lab_cursor  # type: ignore[attr-defined]  # let go: behind

    async def _each(self, connection: ServerConnection, closed: asyncio.Future[Any]) -> None:
        """The per-connection way: a task per client, a ``json.dumps`` and a ``send()`` per delivery."""
        lab = self.lab
        cursor: int = connection.cursor  # type: ignore[attr-defined]
        while True:
            events = await lab.hold(cursor, None, closed)
            if events is None:
                if not closed.done():  # the server is stopping
                    await connection.close(1001, "server stopping")
                return
            for event in events:
                await connection.send(event.dumps())
                cursor = event.seq

    async def aclose(self) -> None:
        """Wait for the broadcaster to end (it ends when the server's stopping future is set)."""
        if self._task is not None and not self._task.done():
            try:
                async with asyncio.timeout(1):
                    await self._task
            except TimeoutError:
                self._task.cancel()

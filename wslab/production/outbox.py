"""A room's outbox: this process's events on their way to the room's log in Redis.

Design note
-----------
:class:`wslab.production.broker.Broker` seals each event of its room
(:mod:`wslab.production.roomlog`) and keeps it here, in order, until Redis
confirms its ``XADD``; only then does the event leave the outbox. So an
event is never lost to a write that failed, and one whose ``XADD`` timed out
is simply sent again (readers skip the copy: :class:`roomlog.Seen`).

What must never happen: memory that grows while Redis is away. The outbox
holds at most ``max_pending`` events and ``max_pending_bytes`` bytes of
sealed payload; an event that does not fit is refused (:meth:`Outbox.refusal`
says why, for its sender). The last ``max_pending`` confirmed events are kept
too, with when Redis confirmed them: if Redis comes back without the room's
log (it restarted without saving it), :meth:`Outbox.resend` puts those of
the last few seconds back at the front, in their order, to be sent again.

Everything here runs on the room's loop, between two awaits: no lock.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Iterator

from ..course.i18n import gettext as _

__all__ = ["Pending", "Outbox"]


class Pending:
    """One event of this process on its way to the log: its sealed ``fields`` and its ``seq``."""

    __slots__ = ("seq", "fields", "size", "event", "local", "acked")

    def __init__(self, seq: int, fields: dict[str, bytes], event: dict[str, Any]) -> None:
        self.seq = seq
        self.fields = fields
        self.size = len(fields["p"])
        self.event = event
        self.local = False  # delivered to this process's members during a split
        self.acked = 0.0  # time.monotonic() when Redis confirmed it


class Outbox:
    """Events waiting for Redis, oldest first, bounded in count and in bytes.

    ``len(outbox)`` events wait, ``outbox.bytes`` of sealed payload; iterating
    gives them oldest first.
    """

    def __init__(self, *, max_pending: int, max_pending_bytes: int) -> None:
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        #: Bytes of sealed payload waiting.
        self.bytes = 0
        self._waiting: deque[Pending] = deque()
        self._confirmed: deque[Pending] = deque(maxlen=max_pending)  # recent: resent if Redis lost its data

    def __len__(self) -> int:
        return len(self._waiting)

    def __iter__(self) -> Iterator[Pending]:
        return iter(list(self._waiting))  # a copy: delivering an event may queue another

    def fits(self, size: int) -> bool:
        """Is there room for one more event of ``size`` bytes?"""
        return len(self._waiting) < self.max_pending and self.bytes + size <= self.max_pending_bytes

    def refusal(self, *, split: bool) -> str:
        """What the sender of an event that does not fit is told."""
        if split:
            return _("{count} messages already wait for Redis (the room is split): yours was not kept; "
                     "send it again when the room is whole").format(count=len(self._waiting))
        return _("{count} messages already wait for Redis: yours was not kept; send it again in a moment").format(
            count=len(self._waiting))

    def add(self, pending: Pending) -> None:
        """Queue ``pending`` last (check :meth:`fits` first)."""
        self._waiting.append(pending)
        self.bytes += pending.size

    def batch(self, most: int) -> list[Pending]:
        """The oldest ``most`` events, still in the outbox until :meth:`confirmed`."""
        return [self._waiting[i] for i in range(min(len(self._waiting), most))]

    def confirmed(self, batch: list[Pending], now: float) -> None:
        """Redis has ``batch`` (the oldest events, as :meth:`batch` gave them): let them go."""
        for pending in batch:
            self._waiting.popleft()
            self.bytes -= pending.size
            pending.acked = now
            self._confirmed.append(pending)

    def resend(self, since: float) -> int:
        """Put the events Redis confirmed at ``since`` or later back in front, in order; return how many."""
        recent = [p for p in self._confirmed if p.acked >= since]
        self._confirmed.clear()
        for pending in reversed(recent):
            self._waiting.appendleft(pending)
            self.bytes += pending.size
        return len(recent)

"""One source of events, numbered, for every transport to deliver.

The polling lessons deliver *the same* events four ways (short polling, long
polling, server-sent events, WebSocket push), so the events live in one
place, an :class:`EventSource`, and each transport only reads from it.

An event is ``Event(seq, created, payload)``: ``seq`` counts 1, 2, 3, ...,
``created`` is the server's ``time.time()`` when it was published (clients
on the same machine compare it with their own ``time.time()``, so latency is
``received - created``) and ``payload`` is anything JSON can carry.

A *cursor* is the ``seq`` of the last event a client has: ``since(0)`` is
every event, ``since(7)`` the events after 7. A cursor is valid from 0 up to
the newest ``seq`` (``"now"`` stands for the newest: only what comes next);
anything else is a :class:`CursorError` (HTTP 400).

Design note
-----------
The source may be published to from any thread (a notebook cell, a schedule
on another loop, a measuring thread) while handlers on the server's loop
wait on it. A ``threading.Lock`` guards the list of events; each waiter is
an asyncio future that belongs to the loop that awaits it, and ``publish()``
wakes it on *that* loop (``call_soon_threadsafe`` when called from another
thread). Nothing here ever blocks an event loop.

    >>> source = EventSource(seed=1)
    >>> source.publish({"price": 101.5}).seq
    1
    >>> [e.seq for e in source.since(0)]
    [1]
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

__all__ = ["Event", "EventSource", "CursorError", "poisson", "parse_cursor", "shown"]


@dataclass(frozen=True)
class Event:
    """One published event: ``seq`` (1, 2, ...), ``created`` (``time.time()``), ``payload``."""

    seq: int
    created: float
    payload: Any = None

    def to_json(self) -> dict[str, Any]:
        """The event as every transport sends it: ``{"seq", "created", "data"}``."""
        return {"seq": self.seq, "created": self.created, "data": self.payload}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"))

    @classmethod
    def from_json(cls, obj: dict[str, Any] | str | bytes) -> Event:
        """Read an event back from :meth:`to_json`'s dict or its JSON text.

        Raises ``ValueError`` naming what is wrong when ``obj`` is not an event.
        """
        try:
            if isinstance(obj, (str, bytes)):
                obj = json.loads(obj)
            if not isinstance(obj, dict):
                raise ValueError(f"an event is a JSON object, got {type(obj).__name__}")
            seq, created = obj["seq"], obj["created"]
            if isinstance(seq, bool) or not isinstance(seq, int) or not isinstance(created, (int, float)):
                raise ValueError(f"an event has a whole-number seq and a numeric created, got {str(obj)[:80]}")
            return cls(seq, float(created), obj.get("data"))
        except KeyError as exc:
            raise ValueError(f"an event needs {exc}, got {str(obj)[:80]}") from None
        except RecursionError:
            raise ValueError("not an event: JSON nested too deeply") from None

    def __str__(self) -> str:
        text = json.dumps(self.payload)
        if len(text) > 40:
            text = text[:37] + "..."
        return f"#{self.seq} at {self.created:.6f}: {text}"


class CursorError(ValueError):
    """A cursor that is not a whole number from 0 to the newest event's ``seq``.

    ``value`` is what the client sent, ``newest`` the newest ``seq`` then;
    ``status`` is the HTTP status the lab server answers with (400) and
    :meth:`to_json` its body.
    """

    status = 400

    def __init__(self, value: Any, newest: int, problem: str) -> None:
        self.value = value
        self.newest = newest
        self.problem = problem
        super().__init__(
            f"bad cursor {shown(value)!r}: {problem}; send the seq of the last event you have "
            f"(a whole number from 0 to {newest}), 0 to get every event or 'now' for new ones only"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "error": "bad cursor",
            "value": shown(self.value),
            "problem": self.problem,
            "newest": self.newest,
            "hint": f"send since=<seq of the last event you have>, a whole number from 0 to {self.newest}",
            "message": str(self),
        }


#: A value a client sent is echoed in an error up to this many characters.
SHOWN_CHARS = 64


def shown(value: Any) -> Any:
    """``value`` as an error echoes it: a long string is cut, with its length (``"111...(4301 characters)"``)."""
    if isinstance(value, str) and len(value) > SHOWN_CHARS:
        return f"{value[:SHOWN_CHARS]}...({len(value)} characters)"
    return value


def parse_cursor(text: str | int | None, newest: int) -> int:
    """Turn a cursor as sent (``"7"``) into an int, or raise :class:`CursorError`.

    ``None`` or ``""`` means 0 (every event); ``"now"`` means the newest
    event (only what comes next).
    """
    if text is None or text == "":
        return 0
    if text == "now":
        return newest
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        stripped = str(text).strip()
        if not stripped.isascii() or not stripped.isdigit():
            negative = stripped.startswith("-") and stripped[1:].isascii() and stripped[1:].isdigit()
            raise CursorError(text, newest, "a cursor is a negative number" if negative else "not a whole number")
        # Count the digits before int(): Python refuses int() of more than
        # 4,300 digits (ValueError), and a number longer than the newest seq
        # is from the future anyway.
        digits = stripped.lstrip("0") or "0"
        if len(digits) > len(str(newest)):
            raise CursorError(text, newest, f"it is from the future: the newest event is {newest}")
        value = int(digits)
    if value < 0:
        raise CursorError(text, newest, "a cursor is a negative number")
    if value > newest:
        raise CursorError(text, newest, f"it is from the future: the newest event is {newest}")
    return value


def poisson(mean_gap_s: float, n: int, seed: int | None = 0) -> list[float]:
    """``n`` gaps between Poisson arrivals (exponential, mean ``mean_gap_s``), seeded.

    >>> [round(g, 3) for g in poisson(0.1, 3, seed=1)]
    [0.014, 0.188, 0.144]
    """
    if mean_gap_s <= 0:
        raise ValueError(f"mean_gap_s must be positive, got {mean_gap_s!r} seconds")
    if n < 0:
        raise ValueError(f"n must be 0 or more, got {n!r}")
    rng = random.Random(seed)
    return [rng.expovariate(1.0 / mean_gap_s) for _ in range(n)]


class EventSource:
    """Numbered, timestamped events that clients read by cursor.

    ``publish(payload)`` adds one (thread-safe); ``since(cursor)`` returns the
    events after a cursor right away; ``await wait_after(cursor, timeout)``
    waits until there is at least one (or the timeout passes: ``[]``).
    ``await run_schedule(gaps)`` publishes one event after each gap.
    ``seed`` seeds :meth:`poisson` and the default payloads; ``clock`` stamps
    ``Event.created`` (``time.time`` by default; pass ``time.perf_counter``
    when every client is on this machine and you want a monotonic clock).
    """

    def __init__(
        self, *, seed: int | None = 0, max_events: int = 1_000_000, clock: Callable[[], float] = time.time
    ) -> None:
        self.seed = seed
        self.clock = clock
        self.rng = random.Random(seed)
        self.max_events = max_events
        self._events: list[Event] = []
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()

    # Reading

    @property
    def newest(self) -> int:
        """The ``seq`` of the newest event; 0 before the first."""
        with self._lock:
            return self._events[-1].seq if self._events else 0

    def __len__(self) -> int:
        return self.newest

    @property
    def events(self) -> list[Event]:
        """Every event so far (a copy)."""
        with self._lock:
            return list(self._events)

    def check_cursor(self, cursor: str | int | None) -> int:
        """Validate a cursor as a client sent it (see :func:`parse_cursor`)."""
        return parse_cursor(cursor, self.newest)

    def since(self, cursor: int) -> list[Event]:
        """The events after ``cursor``, oldest first (possibly none).

        Raises :class:`CursorError` for a negative cursor or one beyond the newest event.
        """
        with self._lock:
            newest = self._events[-1].seq if self._events else 0
            if not isinstance(cursor, int) or cursor < 0 or cursor > newest:
                parse_cursor(cursor, newest)  # raises with the right message
            # seq n sits at index n - 1
            return self._events[cursor:]

    async def wait_after(
        self,
        cursor: int,
        timeout: float | None = None,
        *,
        until: Iterable[asyncio.Future[Any]] = (),
    ) -> list[Event] | None:
        """Wait until there are events after ``cursor``, return them; ``[]`` on timeout.

        ``until``: futures that end the wait early (the server stops, the
        client goes away); then the result is ``None``. The wait costs one
        future and no extra task, so a push server wakes one loop step after
        :meth:`publish`.

        Raises :class:`CursorError` for a bad cursor, at once.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        until = list(until)
        while True:
            if any(f.done() for f in until):
                return None
            future: asyncio.Future[None] = loop.create_future()
            entry = (loop, future)
            with self._lock:
                newest = self._events[-1].seq if self._events else 0
                if not isinstance(cursor, int) or not 0 <= cursor <= newest:
                    parse_cursor(cursor, newest)  # raises with the right message
                ready = self._events[cursor:]
                if ready:
                    return ready
                self._waiters.add(entry)

            def wake(_: Any, future: asyncio.Future[None] = future) -> None:
                _set(future)

            for other in until:
                other.add_done_callback(wake)
            try:
                if deadline is None:
                    await future
                else:
                    await asyncio.wait_for(future, max(0.0, deadline - loop.time()))
            except TimeoutError:
                return []
            finally:
                with self._lock:
                    self._waiters.discard(entry)
                for other in until:
                    other.remove_done_callback(wake)

    # Writing

    def publish(self, payload: Any = None) -> Event:
        """Add an event now and wake every waiter; returns the :class:`Event`.

        Safe to call from any thread. With no payload, the event carries a
        seeded random walk value ``{"value": ...}``.
        """
        with self._lock:
            seq = (self._events[-1].seq if self._events else 0) + 1
            if payload is None:
                previous = self._events[-1].payload if self._events else None
                base = previous.get("value", 100.0) if isinstance(previous, dict) else 100.0
                payload = {"value": round(base + self.rng.gauss(0, 1), 2)}
            event = Event(seq, self.clock(), payload)
            if len(self._events) >= self.max_events:
                raise OverflowError(
                    f"event source is full ({self.max_events} events); make a new EventSource "
                    f"or pass a larger max_events"
                )
            self._events.append(event)
            waiters = list(self._waiters)
        self._wake(waiters)
        return event

    def publish_many(self, payloads: Iterable[Any]) -> list[Event]:
        """Publish several events at once (a burst)."""
        return [self.publish(p) for p in payloads]

    @staticmethod
    def _wake(waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]) -> None:
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for loop, future in waiters:
            if loop is current:
                _set(future)
            elif not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(_set, future)
                except RuntimeError:  # the loop closed meanwhile
                    pass

    def wake_all(self) -> None:
        """Wake every waiter without an event (they re-check and wait again)."""
        with self._lock:
            waiters = list(self._waiters)
        self._wake(waiters)

    def poisson(self, mean_gap_s: float, n: int) -> list[float]:
        """``n`` Poisson gaps from this source's seeded generator."""
        return poisson(mean_gap_s, n, seed=self.rng.randrange(2**32))

    async def run_schedule(
        self, gaps: Sequence[float], payloads: Sequence[Any] | None = None
    ) -> list[Event]:
        """Publish one event after each gap (seconds), on an absolute clock that does not drift."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        due = 0.0
        published = []
        for i, gap in enumerate(gaps):
            due += gap
            await asyncio.sleep(max(0.0, start + due - loop.time()))
            published.append(self.publish(None if payloads is None else payloads[i]))
        return published

    def __repr__(self) -> str:
        return f"<wslab.EventSource {self.newest} event(s), seed={self.seed!r}>"


def _set(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)

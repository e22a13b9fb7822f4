"""A link emulator: a real network's delay, jitter and bandwidth, on loopback.

    link = wslab.Link(rtt_ms=100)                          # 50 ms each way
    tap = await wslab.wiretap(lab.http_url, link=link)    # or rtt_ms=100, or link="3g"
    wslab.Link(up_ms=20, down_ms=80, rate_kbps=1000)       # asymmetric delay, 1 Mbit/s each way
    wslab.link.PRESETS["cross-ocean"]                      # ready-made links (see PRESETS)

On loopback a round trip costs about 0.05 ms, so the cost that makes polling
slow in real life, a round trip per request, never shows. A :class:`Link`
given to :func:`wslab.lab.wiretap` makes the tap's relay hold every byte it
relays for as long as a real network would, per direction, in order.

Design note
-----------
*What is emulated.* Each direction (``>`` up, client to server; ``<`` down)
has a one-way delay (``rtt_ms / 2`` unless set per direction), an optional
jitter and an optional rate. The relay reads a chunk (whatever one
``read()`` returned: up to 64 KiB), records it, then hands it to the
direction's :class:`Pipe`, which computes when the chunk is due at the far
side::

    sent = max(now, link busy until) + len(chunk) * 8 / rate     # serialisation
    due  = max(sent + delay + jitter, due of the previous chunk)  # propagation, in order

A new connection also pays TCP's handshake (``handshake=True``): its
first bytes up are not due before one round trip after the client
connected, plus the one-way delay (SYN, SYN-ACK, then data), and a server
that speaks first is not heard before two round trips (its ``accept()``
returns when the ACK arrives, then its bytes travel down). The relay's own
connections are on loopback, so without this a connection would cost
nothing to open.

The rate is a property of the link, so it is shared by every connection of a
tap in that direction (like one phone's radio); delay and order are per
connection. Byte counts stay exact: nothing is dropped, added or split.
The cap applies to the bytes relayed (TCP payload), not to the TCP/IP
headers a real link also carries (about 3 % more for full segments).

*Why no reordering.* TCP hands the application an ordered byte stream: a
segment that arrives late holds back every later one (head-of-line
blocking). So a chunk whose jitter would let it overtake the previous one is
delivered right after it instead, never before. Jitter therefore adds delay
on average; it never reorders bytes or splits a stream. Jitter is drawn
uniformly in ``[-jitter_ms, +jitter_ms]`` per chunk (never below zero
delay), from ``random.Random`` seeded by ``seed`` (per direction).

*What runs where.* A pipe lives on the relay's loop (the kernel's loop for a
task-mode tap, the tap's own thread for ``wiretap_in_thread``) and only that
loop touches its sockets. Timing is kept by one small clock thread for the
whole process (:class:`Clock`): ``loop.call_at`` wakes up to about a
millisecond late, because ``epoll`` waits in whole milliseconds, rounded up;
the clock thread sleeps on a lock with a timeout (nanosecond resolution),
then hands the delivery to the loop with ``call_soon_threadsafe``, which wakes
the loop at once. Only the head of each pipe's queue is ever scheduled; the
callback delivers everything due, in order, and schedules the next head. A
chunk already due with nothing queued before it (a link with zero delay and
no rate) is written at once, without the clock.

*Flow control.* A pipe holds at most ``limit`` bytes not yet delivered
(with a cap, what the link carries in its delay plus a quarter second, at
least 256 KiB and never more than ``MAX_IN_FLIGHT``, 4 MiB, whatever the
link; without one, 1 MiB, like a TCP window); the relay stops
reading that direction until it drains, so a slow link pushes back on the
sender through TCP as a real one does, and memory stays bounded (about
``limit`` per direction per connection, plus asyncio's write buffers).

What must never happen: bytes delivered out of order, a byte lost or counted
twice, a pipe that keeps a stopped tap's connection alive (``close()``
forgets the queue; the clock drops entries of closed pipes), a clock thread
that keeps the interpreter alive (it is a daemon and holds no sockets), a
clock thread that dies: it is shared by every tap in the process, so it
sleeps at most a minute per wait (a longer timeout overflows), refuses a
moment that is not finite, and an entry that fails anyway is dropped (the
first failure is printed) while the others keep their times.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import heapq
import itertools
import math
import random
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["Link", "PRESETS", "resolve", "Shaper", "Pipe", "Clock",
           "MAX_DELAY_MS", "MIN_RATE_KBPS", "MAX_RATE_KBPS", "MAX_IN_FLIGHT"]


#: The longest one-way delay, round trip or jitter a link accepts, ms (an hour).
MAX_DELAY_MS = 3_600_000
#: The slowest rate a link accepts, kbit/s (100 bit/s: slower than a 300-baud modem's 0.3 kbit/s).
MIN_RATE_KBPS = 0.1
#: The fastest rate a link accepts, kbit/s (100 Gbit/s).
MAX_RATE_KBPS = 100_000_000


@dataclass(frozen=True)
class Link:
    """What a network does to bytes: delay each way, jitter, rate.

    ``rtt_ms`` is the round trip; each direction gets half of it unless
    ``up_ms`` (client to server) or ``down_ms`` (server to client) say
    otherwise (give one and the other is the rest of ``rtt_ms``).
    ``jitter_ms`` varies each chunk's one-way delay uniformly within
    ``± jitter_ms`` (without reordering: see the module's design note).
    ``rate_kbps`` caps each direction at that many kilobits (1,000 bits) per
    second, as serialisation delay; ``up_kbps`` / ``down_kbps`` set one
    direction. ``seed`` makes the jitter reproducible. ``None`` means "no
    cap". Times are milliseconds.

    Ranges (checked here, where the values enter; anything else raises
    ``ValueError`` naming the value and the range): delays and jitter from 0
    to ``MAX_DELAY_MS`` (an hour); rates from ``MIN_RATE_KBPS`` (0.1 kbit/s,
    100 bit/s) to ``MAX_RATE_KBPS`` (100,000,000 kbit/s: 100 Gbit/s), or None.

    ``handshake`` (default True) charges each new connection the round trip
    of TCP's handshake: on loopback ``connect()`` returns at once, so the
    client's first bytes are held until one round trip after it connected,
    plus the one-way delay, as on a real network (SYN, SYN-ACK, then data);
    a server that speaks first is heard two round trips after the connect.

    >>> wslab.Link(rtt_ms=100).down_ms
    50.0
    >>> wslab.Link(up_ms=30, rtt_ms=100).down_ms
    70.0
    """

    rtt_ms: float = 0.0
    jitter_ms: float = 0.0
    rate_kbps: float | None = None
    seed: int | None = None
    up_ms: float | None = None
    down_ms: float | None = None
    up_kbps: float | None = None
    down_kbps: float | None = None
    name: str = ""
    handshake: bool = True

    def __post_init__(self) -> None:
        for field in ("rtt_ms", "jitter_ms", "up_ms", "down_ms"):
            value = getattr(self, field)
            if value is None and field in ("up_ms", "down_ms"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_DELAY_MS:
                raise ValueError(f"Link {field}={value!r}: give milliseconds, a number from 0 up to an hour "
                                 f"({MAX_DELAY_MS:,})")
        for field in ("rate_kbps", "up_kbps", "down_kbps"):
            value = getattr(self, field)
            if value is None:
                continue
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not MIN_RATE_KBPS <= value <= MAX_RATE_KBPS):
                raise ValueError(f"Link {field}={value!r}: give kilobits per second from {MIN_RATE_KBPS:g} "
                                 f"to {MAX_RATE_KBPS:,} (100 Gbit/s), or None for no cap")
        if self.up_ms is not None and self.down_ms is not None and self.rtt_ms and abs(self.up_ms + self.down_ms - self.rtt_ms) > 1e-9:
            raise ValueError(
                f"Link up_ms={self.up_ms!r} and down_ms={self.down_ms!r} add up to {self.up_ms + self.down_ms:g} ms, "
                f"not rtt_ms={self.rtt_ms!r}: give rtt_ms, or the two one-way delays"
            )
        if self.up_ms is not None and self.down_ms is not None and not self.rtt_ms:
            object.__setattr__(self, "rtt_ms", self.up_ms + self.down_ms)  # so link.rtt_ms is the round trip
        for one in (self.up_ms, self.down_ms):
            if one is not None and one > self.rtt_ms and (self.up_ms is None or self.down_ms is None):
                # the other way would be rtt_ms - one: a negative delay (with rtt_ms=0 too)
                raise ValueError(
                    f"Link one-way delay {one!r} ms is more than rtt_ms={self.rtt_ms!r}: "
                    f"give rtt_ms as well, or both up_ms and down_ms"
                )

    # The resolved figures, per direction

    @property
    def up_delay_ms(self) -> float:
        """One-way delay client to server (``>``), ms."""
        return _one_way(self.up_ms, self.down_ms, self.rtt_ms)

    @property
    def down_delay_ms(self) -> float:
        """One-way delay server to client (``<``), ms."""
        return _one_way(self.down_ms, self.up_ms, self.rtt_ms)

    @property
    def round_trip_ms(self) -> float:
        """Up plus down delay, ms (what a ping would show, without jitter)."""
        return self.up_delay_ms + self.down_delay_ms

    @property
    def up_rate_kbps(self) -> float | None:
        return self.up_kbps if self.up_kbps is not None else self.rate_kbps

    @property
    def down_rate_kbps(self) -> float | None:
        return self.down_kbps if self.down_kbps is not None else self.rate_kbps

    def delay_ms(self, direction: str) -> float:
        """The one-way delay of ``direction`` (``">"`` up or ``"<"`` down), ms."""
        return self.up_delay_ms if direction == ">" else self.down_delay_ms

    def rate(self, direction: str) -> float | None:
        """The cap of ``direction`` in kbit/s, or None."""
        return self.up_rate_kbps if direction == ">" else self.down_rate_kbps

    @property
    def idle(self) -> bool:
        """True when the link changes nothing (no delay, no jitter, no cap)."""
        return not (self.up_delay_ms or self.down_delay_ms or self.jitter_ms or self.up_rate_kbps or self.down_rate_kbps)

    def replace(self, **changes: Any) -> Link:
        """A copy with some fields changed (``rtt_ms=`` also drops ``up_ms``/``down_ms``)."""
        if "rtt_ms" in changes:
            changes.setdefault("up_ms", None)
            changes.setdefault("down_ms", None)
        if "rate_kbps" in changes:
            changes.setdefault("up_kbps", None)
            changes.setdefault("down_kbps", None)
        return dataclasses.replace(self, **changes)

    def __str__(self) -> str:
        parts = [f"{self.up_delay_ms:g} ms up, {self.down_delay_ms:g} ms down"]
        if self.jitter_ms:
            parts.append(f"± {self.jitter_ms:g} ms jitter")
        up, down = self.up_rate_kbps, self.down_rate_kbps
        if up is not None or down is not None:
            if up == down:
                parts.append(f"{up:g} kbit/s each way")
            else:
                parts.append(f"{'no cap' if up is None else f'{up:g} kbit/s'} up, {'no cap' if down is None else f'{down:g} kbit/s'} down")
        label = f"{self.name}: " if self.name else ""
        return f"{label}{', '.join(parts)}"


def _one_way(this_way: float | None, other_way: float | None, rtt_ms: float) -> float:
    """One direction's delay, ms: as given, else the round trip less the other way's, else half the round trip."""
    if this_way is not None:
        return float(this_way)
    if other_way is not None:
        return float(rtt_ms - other_way)
    return rtt_ms / 2


#: Ready-made links, with where their figures come from.
#:
#: * ``"same-city"``: 4 ms round trip, 20 Mbit/s down, 5 Mbit/s up: WebPageTest's
#:   "FIOS (20/5 Mbps 4ms RTT)" connectivity profile (a fibre line to a server nearby).
#: * ``"cross-ocean"``: 59 ms round trip, no cap: New York to London over Hibernia
#:   Express, the lowest-latency transatlantic cable, tested at 58.95 ms round trip
#:   (2015); light in fibre needs 56 ms for those 5,585 km (High Performance Browser
#:   Networking, table 1-1). Everyday routes take longer.
#: * ``"3g"``: 300 ms round trip, 1.6 Mbit/s down, 768 kbit/s up: WebPageTest's
#:   "Mobile 3G (1.6 Mbps/768 Kbps 300ms RTT)" profile.
PRESETS: dict[str, Link] = {
    "same-city": Link(rtt_ms=4, up_kbps=5_000, down_kbps=20_000, name="same-city"),
    "cross-ocean": Link(rtt_ms=59, name="cross-ocean"),
    "3g": Link(rtt_ms=300, up_kbps=768, down_kbps=1_600, name="3g"),
}


def resolve(link: Link | str | None = None, *, rtt_ms: float | None = None, rate_kbps: float | None = None) -> Link | None:
    """The :class:`Link` a tap should use: ``link`` (a Link or a preset name), changed by the shortcuts.

    ``resolve("3g", rtt_ms=500)`` is the 3G preset with a 500 ms round trip;
    ``resolve(rtt_ms=100)`` is ``Link(rtt_ms=100)``; nothing at all is None
    (no link: the relay writes at once).
    """
    if isinstance(link, str):
        if link not in PRESETS:
            raise ValueError(f"no link preset {link!r}: choose one of {', '.join(sorted(PRESETS))}, or give wslab.Link(...)")
        link = PRESETS[link]
    elif link is not None and not isinstance(link, Link):
        raise TypeError(f"link must be a wslab.Link or a preset name ({', '.join(sorted(PRESETS))}), got {link!r}")
    if rtt_ms is None and rate_kbps is None:
        return link
    changes: dict[str, Any] = {}
    if rtt_ms is not None:
        changes["rtt_ms"] = rtt_ms
    if rate_kbps is not None:
        changes["rate_kbps"] = rate_kbps
    return (link or Link()).replace(**changes)


# The clock: one daemon thread for the whole process


class Clock:
    """Calls ``callback()`` on ``loop`` at a ``time.monotonic()`` moment, within a fraction of a ms.

    One thread sleeps until the earliest entry is due, then hands it to its
    loop with ``call_soon_threadsafe``. Waking a thread and then a loop takes
    time (about 0.05 ms on an idle machine, more under load), so the clock
    learns the floor of that latency, the least of its last 32 wake-ups
    (``lag``, at most 0.5 ms), and wakes that much early: a callback then
    runs on time when the machine is as fast as it just was, late otherwise,
    and early only by what the machine sped up since. :meth:`at` returns the
    entry; :meth:`cancel` drops it.
    """

    MAX_LAG = 0.0005

    def __init__(self) -> None:
        self._heap: list[list[Any]] = []
        self._cond = threading.Condition()
        self._count = itertools.count()
        self._thread: threading.Thread | None = None
        self._lags: collections.deque[float] = collections.deque([0.0], maxlen=32)

    @property
    def lag(self) -> float:
        """Seconds the clock wakes early (the floor of its recent wake-up latency)."""
        return min(max(0.0, min(self._lags)), self.MAX_LAG)

    #: The longest the thread sleeps in one wait (a longer timeout overflows ``Condition.wait``).
    MAX_WAIT = 60.0

    def at(self, when: float, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> list[Any]:
        if not math.isfinite(when):
            raise ValueError(f"a link delivery due at {when!r}: the moment must be a finite time.monotonic() value")
        entry = [when, next(self._count), loop, callback]
        with self._cond:
            heapq.heappush(self._heap, entry)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="wslab-link-clock", daemon=True)
                self._thread.start()
            if self._heap[0] is entry:
                self._cond.notify()
        return entry

    @staticmethod
    def cancel(entry: list[Any]) -> None:
        entry[2] = entry[3] = None  # dropped when it reaches the head; holds nothing meanwhile

    def _run(self) -> None:
        while True:  # a daemon: lives as long as the process; each turn waits for the next entry
            head: list[Any] | None = None
            try:
                with self._cond:
                    while self._heap and self._heap[0][3] is None:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        self._cond.wait(timeout=self.MAX_WAIT)
                        continue
                    head = self._heap[0]
                    woke = head[0] - self.lag
                    wait = woke - time.monotonic()
                    if wait > 0:
                        self._cond.wait(timeout=min(wait, self.MAX_WAIT))
                        continue
                    heapq.heappop(self._heap)
                _, _, loop, callback = head
                if callback is None:
                    continue
                try:
                    loop.call_soon_threadsafe(self._call, callback, woke)
                except RuntimeError:  # that loop is closed: its tap is gone
                    pass
            except Exception:  # noqa: BLE001 - one bad entry must never stop every tap's clock
                if head is not None:
                    self.cancel(head)  # dropped at the head; the other entries keep their times
                if not self._failed:
                    self._failed = True
                    traceback.print_exc()

    _failed = False

    def _call(self, callback: Callable[[], None], woke: float) -> None:
        self._lags.append(time.monotonic() - woke)  # on the loop: the whole wake-up latency
        callback()


#: The process's clock (started on first use).
CLOCK = Clock()


# Shaping one direction of a tap


#: Bytes a pipe of an uncapped link holds in flight before the relay stops reading.
UNCAPPED_LIMIT = 1024 * 1024
#: Bytes any pipe holds in flight, whatever its link (Linux's largest default TCP send
#: buffer, the third figure of net.ipv4.tcp_wmem, is the same 4 MiB).
MAX_IN_FLIGHT = 4 * 1024 * 1024


class Shaper:
    """One direction of a link, shared by a tap's connections: delay, jitter, the rate's busy time."""

    def __init__(self, link: Link, direction: str) -> None:
        self.delay = link.delay_ms(direction) / 1000
        self.jitter = link.jitter_ms / 1000
        rate = link.rate(direction)
        self.bytes_per_s = None if rate is None else rate * 1000 / 8
        self.busy_until = 0.0
        #: Nothing to do (no delay, no jitter, no cap): a pipe writes at once.
        self.instant = self.bytes_per_s is None and not self.delay and not self.jitter
        self.rng = random.Random(f"{link.seed}{direction}") if link.seed is not None else random.Random()
        # In flight per pipe: with a cap, what the link carries in its delay
        # plus a quarter second (at least 256 KiB, at most MAX_IN_FLIGHT);
        # without one, 1 MiB (like a TCP window: an uncapped link then carries
        # up to 1 MiB per delay).
        if self.bytes_per_s is None:
            self.limit = UNCAPPED_LIMIT
        else:
            self.limit = min(MAX_IN_FLIGHT, max(256 * 1024, int(self.bytes_per_s * (self.delay + self.jitter + 0.25))))

    def sent(self, size: int, now: float) -> float:
        """When the last bit of ``size`` bytes handed over at ``now`` has left (serialisation)."""
        if self.bytes_per_s is None:
            return now
        start = max(now, self.busy_until)
        self.busy_until = start + size / self.bytes_per_s
        return self.busy_until

    def propagation(self) -> float:
        """One chunk's one-way delay, seconds (jitter drawn here; never below zero)."""
        if not self.jitter:
            return self.delay
        return max(0.0, self.delay + self.rng.uniform(-self.jitter, self.jitter))


_EOF, _ABORT = object(), object()


class Pipe:
    """One direction of one relayed connection: chunks wait here until due, then go out in order.

    Lives on the relay's loop. :meth:`send`, :meth:`send_eof` and
    :meth:`send_abort` queue; delivery writes to ``transport``. ``queued`` is
    the bytes not yet delivered; :meth:`room` waits until it is below the
    limit, :meth:`flushed` until everything went out.
    """

    def __init__(self, shaper: Shaper, transport: asyncio.WriteTransport, loop: asyncio.AbstractEventLoop, *, clock: Clock = CLOCK) -> None:
        self.shaper = shaper
        self.transport = transport
        self.loop = loop
        self.clock = clock
        self.queue: collections.deque[tuple[float, Any]] = collections.deque()
        self.queued = 0
        self.last_due = 0.0
        self.closed = False
        self._entry: list[Any] | None = None
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def limit(self) -> int:
        return self.shaper.limit

    def send(self, data: bytes) -> None:
        if self.shaper.instant and not self.queue and not self.closed:
            if not self.transport.is_closing():
                self.transport.write(data)  # a link with nothing to do costs one check
            return
        now = time.monotonic()
        due = self.shaper.sent(len(data), now) + self.shaper.propagation()
        self._put(max(due, self.last_due), data)

    def hold(self, until: float) -> None:
        """Deliver nothing before ``until`` (``time.monotonic()``): the TCP handshake's round trip."""
        self.last_due = max(self.last_due, until)

    def send_eof(self) -> None:
        """Pass the half-close on after every byte before it (one-way delay later)."""
        self._put(max(time.monotonic() + self.shaper.delay, self.last_due), _EOF)

    def send_abort(self) -> None:
        """Pass a reset on after every byte before it."""
        self._put(max(time.monotonic() + self.shaper.delay, self.last_due), _ABORT)

    def _put(self, due: float, item: Any) -> None:
        if self.closed:
            return
        self.last_due = due
        if not self.queue and due <= time.monotonic():
            self._deliver(item)  # nothing ahead of it and already due: no clock needed
            return
        self.queue.append((due, item))
        if isinstance(item, bytes):
            self.queued += len(item)
        if self._entry is None:
            self._entry = self.clock.at(self.queue[0][0], self.loop, self._fire)

    def _fire(self) -> None:
        self._entry = None
        if self.closed:
            return
        now = time.monotonic() + self.clock.lag + 50e-6  # the clock woke us ``lag`` early
        while self.queue and self.queue[0][0] <= now:
            _, item = self.queue.popleft()
            if isinstance(item, bytes):
                self.queued -= len(item)
            self._deliver(item)
        if self.queue:
            self._entry = self.clock.at(self.queue[0][0], self.loop, self._fire)
        self._wake()

    def _deliver(self, item: Any) -> None:
        transport = self.transport
        if transport.is_closing():
            return  # that side is gone: what was in flight is lost with it
        if item is _EOF:
            if transport.can_write_eof():
                try:
                    transport.write_eof()
                except OSError:
                    pass
        elif item is _ABORT:
            transport.abort()
        else:
            transport.write(item)

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters = []

    async def _wait(self, ready: Callable[[], bool]) -> None:
        for _ in range(1_000_000):  # bounded: each turn waits for a delivery or close()
            if ready() or self.closed:
                return
            waiter = self.loop.create_future()
            self._waiters.append(waiter)
            await waiter

    async def room(self) -> None:
        """Wait until fewer than ``limit`` bytes are in flight."""
        await self._wait(lambda: self.queued < self.limit)

    async def flushed(self) -> None:
        """Wait until everything queued was delivered."""
        await self._wait(lambda: not self.queue)

    def close(self) -> None:
        """Forget what is queued and wake every waiter (the connection is going)."""
        self.closed = True
        self.queue.clear()
        self.queued = 0
        if self._entry is not None:
            self.clock.cancel(self._entry)
            self._entry = None
        self._wake()

"""The "why WebSockets" curve: server CPU and delivered latency against the number of clients.

:func:`measure_scaling` starts servers of equal weight in this process (the
latency lab's light asyncio HTTP server, :mod:`wslab.lab.experiment.httpserver`,
for short and long polling; the lab server's websockets side,
:func:`wslab.lab_server_in_thread`, for WebSocket push; both over one event
source) and N clients of one transport in a process of their own, publishes a
seeded Poisson schedule, and records for each transport and N:

* the server's CPU: the seconds of CPU this process used during the schedule,
  read from the operating system (``time.process_time()``: user + system time
  of every thread; the lab server's thread does the work, the publishing
  thread sleeps between events and pays for waking the server's waiters), as
  a share of one core and per delivered event; ``point.extra["thread_cpu_s"]``
  is the lab server's thread alone (:func:`server_cpu`);
* the delivered latency: from the server stamping the event (``created``) to
  a client's code having it, p50 and p99 over every delivery;
* what was lost or delivered twice (it must be nothing).

The clients are deliberately light and share no code with wslab's transports:
raw asyncio HTTP/1.1 on one keep-alive connection each for short and long
polling, the websockets client for WebSocket push. :func:`plot_scaling`
draws the figure. Quick mode (``quick=True``, or ``wslab.QUICK``) uses fewer
clients and a shorter schedule.

Why servers of equal weight: the curve compares protocols. Per delivered
event, long polling costs a request to parse and a response with headers to
write, and a waiter to wake; WebSocket push costs one frame written into
each connection's buffer (the event serialised once, and ``broadcast()``
encoding that text once, for every client). A full framework adds
its own Python to every request (tornado, the lab server's HTTP side, runs
about ten times the light server's per long poll here), so it has a row of
its own, ``"long polling, tornado"``: what a framework adds, not what the
protocol costs.

Design note
-----------
What runs where: the lab server on a thread of this process (its loop owns
everything tornado and websockets do); the publisher in the calling thread
(``lab.publish`` is thread-safe); the clients in a "spawn" child process, on
one event loop of its own, so their work never competes with the server for
this process's GIL (it still shares the machine's cores: the figures say how
loaded the clients' process was). The two talk over a multiprocessing Pipe,
one request and one answer at a time; every wait is bounded and checks that
the child is alive; the child is stopped, terminated or killed, and joined,
whatever happens. Both clocks are ``time.perf_counter()`` (one clock for the
whole machine: the lab is started with ``clock=time.perf_counter``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from .childproc import ChildProcess, child_side, commands, raise_fd_limit
from ..course.display import Table

__all__ = ["TRANSPORTS", "PROTOCOLS", "ScalingPoint", "measure_scaling", "measure_point", "plot_scaling", "server_cpu",
           "process_cpu", "ClientProcess"]

#: The transports :func:`measure_scaling` can drive, in the order they are shown: the three protocols
#: on servers of equal weight, then long polling on the lab server's tornado side (a framework's row).
TRANSPORTS = ("short polling", "long polling", "websocket", "long polling, tornado")

#: The protocols (the headline curve); the other rows show what a server framework adds.
PROTOCOLS = TRANSPORTS[:3]


@dataclass
class ScalingPoint:
    """One transport at one number of clients (see :func:`measure_scaling`)."""

    transport: str
    clients: int
    events: int
    seconds: float  #: wall time from the first publish to the last delivery
    server_cpu_s: float  #: CPU seconds this process (the lab server and the publisher) used in that time
    client_cpu_s: float  #: CPU seconds the clients' process used in that time
    deliveries: int
    p50_ms: float
    p99_ms: float
    lost: int
    duplicated: int
    requests: int  #: HTTP requests the server answered in that time (0 for WebSocket)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def server_cores(self) -> float:
        """The lab server's CPU as a share of one core (1.0 = one core busy all the time)."""
        return self.server_cpu_s / self.seconds if self.seconds else 0.0

    @property
    def client_cores(self) -> float:
        return self.client_cpu_s / self.seconds if self.seconds else 0.0

    @property
    def us_per_request(self) -> float:
        """Server CPU per HTTP request answered, microseconds (``nan`` for WebSocket: no requests)."""
        return self.server_cpu_s / self.requests * 1e6 if self.requests else float("nan")

    @property
    def us_per_delivery(self) -> float:
        """Server CPU per delivered event, microseconds."""
        return self.server_cpu_s / self.deliveries * 1e6 if self.deliveries else float("nan")


def process_cpu(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used so far, from ``/proc`` (Linux); ``nan`` elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu(lab: Any, timeout: float = 10) -> float:
    """CPU seconds the thread of a thread-mode lab server (or any loop thread) has used so far.

    Read on that thread with ``time.thread_time()`` (``CLOCK_THREAD_CPUTIME_ID``
    on Linux and macOS: the operating system's count for that one thread).
    """
    loop = lab._loop if getattr(lab, "_loop", None) is not None else lab._thread.loop
    if loop is None or loop.is_closed():
        raise RuntimeError(f"{lab!r} is not running")
    answer: concurrent.futures.Future[float] = concurrent.futures.Future()
    loop.call_soon_threadsafe(lambda: answer.set_result(time.thread_time()))
    return answer.result(timeout)


# The clients' process


class ClientProcess(ChildProcess):
    """The parent's end of the clients' process: ``request(command, arg, timeout)``, ``cpu()``, ``close()``."""

    def __init__(self, max_clients: int, start_timeout: float = 30) -> None:
        super().__init__(_client_main, (max_clients,), who="the clients", name="wslab-scaling-clients",
                         start_timeout=start_timeout)

    def cpu(self) -> float:
        """CPU seconds the clients' process has used so far (user + system, from the OS)."""
        return self.request("cpu", None, 10)


def _client_main(conn: Any, max_clients: int) -> None:
    """The child process: light clients on a loop of its own (module-level: "spawn" imports it)."""
    child_side(conn, _client_loop, max_clients + 256)


class _Clients:
    """N clients of one transport, recording (seq, latency) per delivery."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[None]] = []
        self.closers: list[Any] = []
        self.got: list[list[tuple[int, float]]] = []
        self.top: list[int] = []  # the highest seq each client has
        self.last_seq = 0  # 0 until the parent says which seq ends the schedule
        self.finished = 0  # clients that have last_seq
        self.done = asyncio.Event()
        self.ready = 0

    def deliver(self, k: int, seq: int, created: float, now: float) -> None:
        self.got[k].append((seq, now - created))
        if seq > self.top[k]:
            if self.last_seq and self.top[k] < self.last_seq <= seq:
                self.finished += 1
                if self.finished == len(self.got):
                    self.done.set()
            self.top[k] = seq

    def expect(self, last: int) -> None:
        self.last_seq = last
        self.finished = sum(top >= last for top in self.top)
        if self.finished == len(self.got):
            self.done.set()


async def _http_get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: str) -> dict[str, Any]:
    """One GET on a keep-alive connection; the JSON body (a tiny HTTP/1.1 client, Content-Length only)."""
    writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = await reader.readexactly(length)
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"GET {target} answered {head.split(b' ', 2)[1].decode()}: {body[:200]!r}")
    return json.loads(body)


async def _poller(clients: _Clients, k: int, port: int, endpoint: str, cursor: int, interval: float,
                  rng: random.Random) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    clients.closers.append(writer)
    loop = asyncio.get_running_loop()
    first = True
    next_poll = loop.time() + rng.random() * interval  # spread the polls over the interval
    while True:
        if endpoint == "poll":
            await asyncio.sleep(max(0.0, next_poll - loop.time()))
            next_poll += interval
        # A long poll's first request answers at once (timeout=0): the client is then ready.
        hold = "" if endpoint == "poll" else "&timeout=0" if first else "&timeout=30"
        answer = await _http_get(reader, writer, f"/{endpoint}?since={cursor}{hold}")
        now = time.perf_counter()
        if first:
            first = False
            clients.ready += 1
        for event in answer["events"]:
            clients.deliver(k, event["seq"], event["created"], now)
        cursor = answer["cursor"]


async def _open_ws(url: str, attempts: int = 5) -> Any:
    """A websockets client connection; a refused handshake (a server at its cap) is retried, bounded."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidHandshake

    for attempt in range(attempts):
        try:
            return await connect(url, compression=None, open_timeout=30, ping_interval=None, max_size=None)
        except (InvalidHandshake, OSError):
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


async def _pusher(clients: _Clients, k: int, ws: Any) -> None:
    clients.closers.append(ws)
    clients.ready += 1
    async for message in ws:
        now = time.perf_counter()
        event = json.loads(message)
        clients.deliver(k, event["seq"], event["created"], now)


async def _client_loop(conn: Any) -> None:
    clients: _Clients | None = None
    try:
        async for command, arg in commands(conn):
            if command == "start":
                # arg: transport, n, http port, ws url, cursor, poll interval, seed
                transport, n, port, ws_url, cursor, interval, seed = arg
                clients = _Clients()
                clients.got = [[] for _ in range(n)]
                clients.top = [cursor] * n
                rng = random.Random(seed)
                for first in range(0, n, 50):  # open the connections in batches of 50
                    batch = range(first, min(n, first + 50))
                    if transport == "websocket":
                        opened = await asyncio.gather(*(_open_ws(f"{ws_url}?since={cursor}") for _ in batch))
                        coros = [_pusher(clients, k, ws) for k, ws in zip(batch, opened)]
                    else:
                        endpoint = "poll" if transport == "short polling" else "longpoll"
                        coros = [_poller(clients, k, port, endpoint, cursor, interval, rng) for k in batch]
                    clients.tasks.extend(asyncio.ensure_future(coro) for coro in coros)
                    await asyncio.sleep(0.01)
                deadline = time.monotonic() + 30 + n / 10
                while clients.ready < n:  # bounded: the deadline, and any client task that failed
                    failed = [t for t in clients.tasks if t.done()]
                    if failed:
                        failed[0].result()  # raises the client's error
                        raise RuntimeError("a client ended before it was ready")
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"only {clients.ready} of {n} {transport} clients were ready in time")
                    await asyncio.sleep(0.01)
                conn.send(("ready", clients.ready))
            elif command == "expect":
                first, last, timeout = arg
                assert clients is not None
                clients.expect(last)
                try:
                    await asyncio.wait_for(clients.done.wait(), timeout)
                except TimeoutError:
                    pass
                conn.send(("result", _summarise(clients.got, first, last)))
            elif command == "end":
                if clients is not None:
                    await _end(clients)
                    clients = None
                conn.send(("ended", None))
            elif command == "cpu":
                t = os.times()
                conn.send(("cpu", t.user + t.system))
            else:
                raise ValueError(f"unknown command {command!r} for the scaling clients")
    finally:
        if clients is not None:
            await _end(clients)


async def _end(clients: _Clients) -> None:
    for task in clients.tasks:
        task.cancel()
    await asyncio.gather(*clients.tasks, return_exceptions=True)
    for closer in clients.closers:
        transport = getattr(closer, "transport", None)
        if transport is not None:
            transport.abort()


def _summarise(got: list[list[tuple[int, float]]], first: int, last: int) -> dict[str, Any]:
    latencies: list[float] = []
    lost = duplicated = 0
    wanted = set(range(first, last + 1))
    for deliveries in got:
        seqs = [seq for seq, _ in deliveries if first <= seq <= last]
        duplicated += len(seqs) - len(set(seqs))
        lost += len(wanted - set(seqs))
        latencies.extend(lat for seq, lat in deliveries if first <= seq <= last)
    latencies.sort()
    if latencies:
        p50 = statistics.median(latencies)
        p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    else:
        p50 = p99 = float("nan")
    return {"deliveries": len(latencies), "p50": p50, "p99": p99, "lost": lost, "duplicated": duplicated,
            "done": time.perf_counter()}


# The measurement


def measure_point(
    lab: Any,
    clients: ClientProcess,
    transport: str,
    n: int,
    *,
    events: int,
    mean_gap: float,
    interval: float,
    seed: int,
    timeout: float,
    http: Any = None,
) -> ScalingPoint:
    """One transport with ``n`` clients against a running thread-mode ``lab`` (see :func:`measure_scaling`).

    ``http``: the light HTTP server over ``lab.source`` that serves short and
    long polling (None: the lab server's tornado side serves them).
    """
    from .events import poisson

    serving = lab if http is None or transport in ("websocket", "long polling, tornado") else http

    def answered() -> int:
        if serving is lab:
            return sum(lab.requests[k] for k in ("poll", "longpoll"))
        return sum(serving.requests[k] for k in ("/poll", "/longpoll"))

    cursor = lab.source.newest
    clients.request("start", (transport, n, serving.port, lab.ws_url, cursor, interval, seed), timeout + n / 10)
    try:
        gaps = poisson(mean_gap, events, seed=seed)
        requests0 = answered()
        thread0, cpu0, client0 = server_cpu(serving), time.process_time(), clients.cpu()
        start = time.perf_counter()
        due = start
        first = None
        for gap in gaps:  # an absolute schedule, so it does not drift
            due += gap
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            event = lab.publish()
            first = first or event.seq
        last = lab.source.newest
        result = clients.request("expect", (first, last, timeout), timeout + 10)
        thread1, cpu1, client1 = server_cpu(serving), time.process_time(), clients.cpu()
        requests = answered() - requests0
    finally:
        clients.request("end", None, 30)
    seconds = max(result["done"], time.perf_counter()) - start
    return ScalingPoint(
        transport=transport, clients=n, events=events, seconds=seconds,
        server_cpu_s=cpu1 - cpu0, client_cpu_s=client1 - client0, deliveries=result["deliveries"],
        p50_ms=result["p50"] * 1000, p99_ms=result["p99"] * 1000, lost=result["lost"],
        duplicated=result["duplicated"], requests=requests, extra={"thread_cpu_s": thread1 - thread0},
    )


def measure_scaling(
    counts: Sequence[int] | None = None,
    transports: Sequence[str] = TRANSPORTS,
    *,
    events: int | None = None,
    mean_gap: float = 0.1,
    poll_interval: float | None = None,
    seed: int = 0,
    timeout: float = 60,
    quick: bool | None = None,
) -> Table:
    """Server CPU and delivered latency for each transport at each number of clients.

    ``counts`` defaults to (10, 100, 500), or (5, 20, 50) in quick mode
    (``quick``; None: ``wslab.QUICK``, which ``WSLAB_QUICK=1`` sets);
    ``events`` (default 40, quick 10) are published on a Poisson schedule with
    ``mean_gap`` seconds between them (seeded by ``seed``); short polling
    polls every ``poll_interval`` seconds (default 0.5, quick 0.25). Each
    point starts its clients fresh, lets them all connect (and poll once)
    before the timed schedule, and waits until every client has the last
    event (or ``timeout`` seconds pass: the table then shows what was lost).

    Returns a :class:`wslab.course.display.Table` with one row per transport and
    count; ``table.points`` holds the :class:`ScalingPoint`\\ s. Columns:
    server CPU as a share of one core, server CPU per delivered event and per
    HTTP request answered (us), HTTP requests per event, p50 and p99 delivered
    latency (ms), the clients' process CPU (share of one core), lost and
    duplicated deliveries.
    """
    from .experiment.httpserver import light_http_server
    from .experiment.progress import progress_line
    from .labserver import lab_server_in_thread

    if quick is None:
        from .. import QUICK as quick
    counts = [int(n) for n in (counts or ((5, 20, 50) if quick else (10, 100, 500)))]
    if not counts or min(counts) < 1:
        raise ValueError(f"counts must be positive numbers of clients, got {counts!r}")
    unknown = [t for t in transports if t not in TRANSPORTS]
    if unknown:
        raise ValueError(f"unknown transport(s) {unknown!r}: choose from {TRANSPORTS}")
    events = events if events is not None else (10 if quick else 40)
    interval = poll_interval if poll_interval is not None else (0.25 if quick else 0.5)
    raise_fd_limit(max(counts) + 256)
    lab = lab_server_in_thread("scaling", clock=time.perf_counter, max_connections=max(counts) + 64,
                               ping_interval=None)
    points: list[ScalingPoint] = []
    clients: ClientProcess | None = None
    http = None
    # About how long: each point's schedule, its clients connecting, and starting the clients' process.
    expected = 3.0 + len(transports) * sum(events * mean_gap + 0.1 + n / 200 for n in counts)
    try:
        http = light_http_server("scaling-http", source=lab.source)
        clients = ClientProcess(max(counts))
        with progress_line(len(transports) * len(counts), expected, unit="points") as progress:
            for transport in transports:
                for n in counts:
                    progress(f"{transport}, {n} clients", 0)
                    points.append(measure_point(lab, clients, transport, n, events=events, mean_gap=mean_gap,
                                                interval=interval, seed=seed, timeout=timeout, http=http))
                    progress(f"{transport}, {n} clients", 1)
    finally:
        try:
            if clients is not None:
                clients.close()
        finally:
            if http is not None:
                http.stop()
            lab.stop()
    return scaling_table(points, interval)


def scaling_table(points: list[ScalingPoint], interval: float) -> Table:
    rows = []
    for p in points:
        label = f"{p.transport} every {interval:g} s" if p.transport == "short polling" else p.transport
        per_request = "-" if not p.requests else f"{p.us_per_request:.0f}"
        rows.append([label, p.clients, f"{p.server_cores:.2f}", f"{p.us_per_delivery:.0f}", per_request,
                     f"{p.requests / p.events:.1f}", f"{p.p50_ms:.1f}", f"{p.p99_ms:.1f}", f"{p.client_cores:.2f}",
                     p.lost, p.duplicated])
    table = Table(
        ["transport", "clients", "server cores", "server us/delivery", "server us/request", "requests/event",
         "p50 ms", "p99 ms", "client cores", "lost", "twice"],
        rows, title="server cost and latency against the number of clients", align_right=set(range(1, 11)),
    )
    table.points = points  # type: ignore[attr-defined]
    return table


def plot_scaling(table: Table) -> Any:
    """Two panels from :func:`measure_scaling`: server CPU (share of a core) and p50 latency, per transport.

    The protocols are solid lines; a framework's row (tornado) is dashed.
    Returns a :class:`~wslab.lab.experiment.figure.LabFigure`: as a cell's value it shows as an image.
    """
    from .experiment.figure import finish_axes, new_figure

    points: list[ScalingPoint] = table.points  # type: ignore[attr-defined]
    fig, (cpu_ax, lat_ax) = new_figure(10, 3.8, nrows=1, ncols=2)
    for transport in TRANSPORTS:
        mine = [p for p in points if p.transport == transport]
        if not mine:
            continue
        xs = [p.clients for p in mine]
        style = {} if transport in PROTOCOLS else {"linestyle": "--", "color": "#999999"}
        cpu_ax.plot(xs, [p.server_cores for p in mine], marker="o", label=transport, **style)
        lat_ax.plot(xs, [p.p50_ms for p in mine], marker="o", label=transport, **style)
    cpu_ax.set_title("server CPU (from the OS)")
    cpu_ax.set_ylabel("share of one core")
    lat_ax.set_title("delivered latency, p50")
    lat_ax.set_ylabel("ms")
    lat_ax.set_yscale("log")
    finish_axes((cpu_ax, lat_ax), xlabel="clients", fontsize=8)
    cpu_ax.set_ylim(bottom=0)  # latency is on a log scale: only the CPU axis starts at 0
    return fig

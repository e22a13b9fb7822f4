"""Fan-out, measured: how long does one broadcast take to reach 100, 500, 1,000 clients?

Lesson 05 calls it as ``wslab.fanout.measure_fanout``; the
room it measures is :mod:`wslab.classroom.chat`'s. The design note is the comment block
below ("Where things run").
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import Any, Sequence

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import broadcast

from ..lab.childproc import ChildProcess, child_side, commands, raise_fd_limit
from ..course.display import Table
from .chat import chat_room_in_thread

__all__ = ["measure_fanout", "plot_fanout", "raise_fd_limit"]


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
            "client_cores": cpu / delays[-1] if delays[-1] > 0 else float("nan"), "clients": len(arrivals)}


async def _fanout_client_loop(conn: Any) -> None:
    clients: list[Any] = []
    try:
        async for command, arg in commands(conn):
            if command == "connect":
                url, n = arg
                clients.extend(await _connect_many(url, n - len(clients), first=len(clients)))
                conn.send(("connected", len(clients)))
            elif command == "round":
                k, timeout = arg
                conn.send(("result", await _fanout_round(conn, clients, k, timeout)))
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
    child_side(conn, _fanout_client_loop, max_clients + 256)


def _ClientProcess(max_clients: int, start_timeout: float) -> ChildProcess:
    """The parent's end of the clients' process (:class:`wslab.lab.childproc.ChildProcess`)."""
    return ChildProcess(_fanout_clients, (max_clients,), who="the fan-out clients",
                        name="wslab-fanout-clients", start_timeout=start_timeout)


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
    "bare_cpu_us", "first", "median", "last", "client_cores", "clients"}``, times in
    seconds except the ``_us``; ``clients``: how many clients got the room's message).
    ``timeout`` bounds each round (and, plus a bit per client, each batch
    of connections).
    """
    counts = [int(n) for n in counts]
    if not counts or min(counts) < 1:
        raise ValueError(f"counts must be positive numbers of clients, got {counts!r}")
    raise_fd_limit(max(counts) + 256)

    room = chat_room_in_thread("fanout", history=0, notices=False, max_buffer=1 << 30, ping_interval=None)
    raw: dict[int, list[dict[str, float]]] = {}
    clients: ChildProcess | None = None
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

    from ..lab.experiment.figure import finish_axes

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
    finish_axes((server_ax, client_ax), xlabel="clients in the room", loc="upper left")
    for ax in (server_ax, client_ax):
        ax.set_ylim(bottom=0)
    fig.tight_layout()
    return fig

"""The latency lab: the same seeded events over every transport, measured.

Design note
-----------
What runs where:

* the **servers** run in thread mode, each on its own event loop in a daemon
  thread (:class:`wslab.servers.LoopThread`): the lab server of
  ``wslab/labserver.py`` for the HTTP and WebSocket transports, and the raw
  TCP pusher of this module for the floor;
* the **measuring client** runs on the caller's loop (the notebook kernel's,
  or the one ``asyncio.run()`` made for ``python -m wslab bench``). So the
  numbers measure the protocol, not a client and a server taking turns on
  one loop.

Both sides read one clock, :data:`CLOCK` (``time.perf_counter``: monotonic,
and on Linux the same CLOCK_MONOTONIC in every thread and process): the
server stamps each event with the moment it published it
(:class:`wslab.events.Event`), the client with the moment it read it, and the
difference is the one-way latency. Events come on a seeded Poisson schedule
(realistic gaps, never an echo loop: a sleeping process must be woken, and
that is part of what push costs).

Every transport's outcome is a :class:`TransportResult` of plain data
(latencies in milliseconds, requests, bytes each way); a whole run is a
:class:`Results`, saved as JSON (and CSV) and loaded back for plotting.

What must never happen: an event silently lost (each result counts
``received`` against ``events`` and names what is missing); a server left
running (each is registered, so ``wslab.stop_all()`` sees it, and stopped in a
``finally``); a measurement that never ends (every wait is bounded).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import math
import os
import platform
import random
import time
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Iterator, Sequence

from . import servers as _servers
from .display import Table
from .events import Event, poisson

__all__ = [
    "TRANSPORTS",
    "ExperimentConfig",
    "TransportResult",
    "Results",
    "run_experiment",
    "measure_transport",
    "expected_seconds",
    "schedule",
    "load_results",
    "percentile",
    "TcpPushServer",
    "serve_tcp_push",
    "measure_tcp_floor",
]

#: Transport key -> label shown in tables and plots, in the order they run.
TRANSPORTS: dict[str, str] = {
    "tcp_floor": "raw TCP push (floor)",
    "websocket": "WebSocket",
    "websocket_deflate": "WebSocket + deflate",
    "sse": "SSE",
    "long_poll": "long polling",
    "short_poll_50ms": "short poll 50 ms",
    "short_poll_250ms": "short poll 250 ms",
    "short_poll_1000ms": "short poll 1 s",
}

#: The 2010 published table (Lubbers and Greco, websocket.org): header bytes
#: per message and Mbps at one message a second for 1k/10k/100k clients.
PUBLISHED_2010 = {
    "polling": {"bytes": 871, "mbps": {1_000: 6.6, 10_000: 66.0, 100_000: 665.0}},
    "websocket": {"bytes": 2, "mbps": {1_000: 0.015, 10_000: 0.153, 100_000: 1.526}},
}

SCHEMA = "wslab.results/1"

#: The one clock both sides of every measurement read.
CLOCK = time.perf_counter


def short_poll_interval(key: str) -> float | None:
    """``"short_poll_250ms"`` -> 0.25 (seconds); None for other transports."""
    if key.startswith("short_poll_") and key.endswith("ms"):
        return int(key[len("short_poll_") : -2]) / 1000
    return None


def label(key: str) -> str:
    if key in TRANSPORTS:
        return TRANSPORTS[key]
    interval = short_poll_interval(key)
    return f"short poll {interval * 1000:g} ms" if interval is not None else key


# Statistics


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation (numpy's default).

    >>> percentile([1, 2, 3, 4], 50)
    2.5
    """
    if not values:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be between 0 and 100, got {q!r}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# Plain data


@dataclass
class ExperimentConfig:
    """What a run measures: which transports, how many events, how often, how big."""

    seed: int = 1
    events: int = 900
    #: Mean gap between events (Poisson arrivals), milliseconds.
    mean_gap_ms: float = 20.0
    #: Bytes of padding added to each event's data (0: just ``{"value": ...}``).
    payload_bytes: int = 0
    transports: list[str] = field(default_factory=lambda: list(TRANSPORTS))
    #: Extra: seconds of ``time.sleep`` in the server's loop every ``block_every_ms`` (0: none).
    block_ms: float = 0.0
    block_every_ms: float = 100.0

    def __post_init__(self) -> None:
        if self.events < 1:
            raise ValueError(f"events must be at least 1, got {self.events!r}")
        if not self.mean_gap_ms > 0:
            raise ValueError(f"mean_gap_ms must be positive, got {self.mean_gap_ms!r}")
        if self.payload_bytes < 0:
            raise ValueError(f"payload_bytes must be 0 or more, got {self.payload_bytes!r}")
        unknown = [k for k in self.transports if k not in TRANSPORTS and short_poll_interval(k) is None]
        if unknown:
            raise ValueError(
                f"unknown transport {unknown[0]!r}; choose from {', '.join(TRANSPORTS)} "
                f"or short_poll_<N>ms"
            )


@dataclass(repr=False)
class TransportResult:
    """What one transport did with the schedule: latencies, requests, bytes."""

    key: str
    events: int
    #: One-way latency of each event received, milliseconds, in event order.
    latencies_ms: list[float] = field(default_factory=list)
    #: Sequence numbers (1, 2, ...) of the events received, same order as ``latencies_ms``.
    seqs: list[int] = field(default_factory=list)
    #: HTTP requests (or WebSocket handshakes) after set-up, during the events.
    requests: int = 0
    #: Polls answered with nothing new.
    empty_responses: int = 0
    #: TCP payload bytes after set-up, client to server and back.
    bytes_up: int = 0
    bytes_down: int = 0
    #: Connection set-up: wall time (ms) and bytes before the first event.
    setup_ms: float = math.nan
    setup_bytes_up: int = 0
    setup_bytes_down: int = 0
    #: Short polling only: the polling interval, milliseconds.
    interval_ms: float | None = None
    #: Median latency in the bytes pass, through the wiretap relay (ms): what a relay adds.
    relay_p50_ms: float | None = None
    #: Anything that went wrong, as text (empty: nothing did).
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Nanoseconds are all a clock read tells: keep that, so JSON round-trips exactly.
        self.latencies_ms = [round(float(x), 6) for x in self.latencies_ms]

    @property
    def label(self) -> str:
        return label(self.key)

    @property
    def received(self) -> int:
        return len(self.latencies_ms)

    @property
    def missing(self) -> list[int]:
        """Sequence numbers of events that never arrived."""
        got = set(self.seqs)
        return [seq for seq in range(1, self.events + 1) if seq not in got]

    @property
    def duplicates(self) -> int:
        return len(self.seqs) - len(set(self.seqs))

    def p(self, q: float) -> float:
        """The ``q``-th percentile of the latencies, ms (see :func:`percentile`)."""
        return percentile(self.latencies_ms, q)

    def __repr__(self) -> str:
        bpe = self.bytes_per_event
        return (
            f"<TransportResult {self.key}: {self.received}/{self.events} events, p50 {_ms(self.p50_ms)} ms, "
            f"p99 {_ms(self.p99_ms)} ms, {self.requests_per_event:.2f} requests/event, "
            f"{bpe['up']:g} B up + {bpe['down']:g} B down per event>"
        )

    @property
    def p50_ms(self) -> float:
        return self.p(50)

    @property
    def p90_ms(self) -> float:
        return self.p(90)

    @property
    def p99_ms(self) -> float:
        return self.p(99)

    @property
    def requests_per_event(self) -> float:
        return self.requests / self.events

    @property
    def bytes_per_event(self) -> dict[str, float]:
        up, down = self.bytes_up / self.events, self.bytes_down / self.events
        return {"up": round(up, 1), "down": round(down, 1), "total": round(up + down, 1)}

    def summary(self) -> dict[str, Any]:
        """The figures results.json shows for this transport (without raw latencies)."""
        return {
            "label": self.label,
            "events": self.events,
            "received": self.received,
            "missing": len(self.missing),
            "p50_ms": _r(self.p50_ms),
            "p90_ms": _r(self.p90_ms),
            "p99_ms": _r(self.p99_ms),
            "mean_ms": _r(sum(self.latencies_ms) / self.received) if self.received else None,
            "max_ms": _r(max(self.latencies_ms)) if self.received else None,
            "requests": self.requests,
            "requests_per_event": round(self.requests_per_event, 3),
            "empty_responses": self.empty_responses,
            "bytes_per_event": self.bytes_per_event,
            "setup": {
                "ms": _r(self.setup_ms),
                "bytes_up": self.setup_bytes_up,
                "bytes_down": self.setup_bytes_down,
            },
            "interval_ms": self.interval_ms,
            "relay_p50_ms": self.relay_p50_ms,
            "errors": list(self.errors),
        }

    def to_dict(self) -> dict[str, Any]:
        data = self.summary()
        data["bytes"] = {"up": self.bytes_up, "down": self.bytes_down}
        data["seqs"] = list(self.seqs)
        data["latencies_ms"] = list(self.latencies_ms)
        return data

    @classmethod
    def from_dict(cls, key: str, data: dict[str, Any]) -> TransportResult:
        try:
            setup = data.get("setup", {})
            return cls(
                key=key,
                events=int(data["events"]),
                latencies_ms=[float(x) for x in data["latencies_ms"]],
                seqs=[int(s) for s in data.get("seqs", range(1, len(data["latencies_ms"]) + 1))],
                requests=int(data.get("requests", 0)),
                empty_responses=int(data.get("empty_responses", 0)),
                bytes_up=int(data.get("bytes", {}).get("up", 0)),
                bytes_down=int(data.get("bytes", {}).get("down", 0)),
                setup_ms=math.nan if setup.get("ms") is None else float(setup["ms"]),
                setup_bytes_up=int(setup.get("bytes_up", 0)),
                setup_bytes_down=int(setup.get("bytes_down", 0)),
                interval_ms=data.get("interval_ms"),
                relay_p50_ms=data.get("relay_p50_ms"),
                errors=list(data.get("errors", [])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"transport {key!r} in the results is malformed: {exc!r}") from None


def _r(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(value, 4)


def machine() -> dict[str, Any]:
    """Where the run happened: Python, OS, CPU count, load average."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": load,
        "clock": "time.perf_counter",
    }


def versions() -> dict[str, str]:
    out = {}
    for dist in ("wslab", "websockets", "tornado", "httpx", "matplotlib"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "-"
    return out


@dataclass(repr=False)
class Results:
    """A whole run: configuration, machine, library versions, one result per transport."""

    config: ExperimentConfig
    transports: dict[str, TransportResult] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=machine)
    versions: dict[str, str] = field(default_factory=versions)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    seconds: float = 0.0

    def __getitem__(self, key: str) -> TransportResult:
        try:
            return self.transports[key]
        except KeyError:
            raise KeyError(
                f"no results for {key!r}; this run measured {', '.join(self.transports) or 'nothing'}"
            ) from None

    def __iter__(self):
        return iter(self.transports.values())

    def __len__(self) -> int:
        return len(self.transports)

    def subset(self, *keys: str) -> Results:
        """Only the transports named, in that order: ``results.subset("tcp_floor", "websocket")``."""
        return replace(self, transports={key: self[key] for key in keys})

    def side_by_side(self, **others: TransportResult) -> Results:
        """These results plus ``others`` under new names, to plot together.

        >>> both = results.side_by_side(**{"websocket, loop blocked": blocked["websocket"]})
        >>> wslab.plots.latency_cdf(both)
        """
        merged = dict(self.transports)
        for name, result in others.items():
            merged[name] = replace(result, key=name)
        return replace(self, transports=merged)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "created": self.created,
            "seconds": round(self.seconds, 2),
            "config": asdict(self.config),
            "machine": self.machine,
            "versions": self.versions,
            "transports": {k: r.to_dict() for k, r in self.transports.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Results:
        if data.get("schema") != SCHEMA:
            raise ValueError(
                f"not wslab results: schema {data.get('schema')!r}, expected {SCHEMA!r}; "
                f"load a results.json written by `python -m wslab bench` or Results.save()"
            )
        return cls(
            config=ExperimentConfig(**data["config"]),
            transports={k: TransportResult.from_dict(k, v) for k, v in data["transports"].items()},
            machine=data.get("machine", {}),
            versions=data.get("versions", {}),
            created=data.get("created", ""),
            seconds=float(data.get("seconds", 0.0)),
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write JSON to ``path`` (a file, or a folder: ``results.json`` in it)."""
        path = Path(path)
        if path.is_dir():
            path = path / "results.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    def save_csv(self, folder: str | os.PathLike[str]) -> list[Path]:
        """Write ``summary.csv`` (a row per transport) and ``latencies.csv`` (a row per event)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        summary, latencies = folder / "summary.csv", folder / "latencies.csv"
        columns = [
            "transport", "events", "received", "p50_ms", "p90_ms", "p99_ms", "requests_per_event",
            "bytes_up_per_event", "bytes_down_per_event", "bytes_total_per_event", "setup_ms",
        ]
        with summary.open("w", newline="") as f:
            out = csv.writer(f)
            out.writerow(columns)
            for r in self:
                bpe = r.bytes_per_event
                out.writerow([
                    r.key, r.events, r.received, _r(r.p50_ms), _r(r.p90_ms), _r(r.p99_ms),
                    round(r.requests_per_event, 3), bpe["up"], bpe["down"], bpe["total"], _r(r.setup_ms),
                ])
        with latencies.open("w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["transport", "seq", "latency_ms"])
            for r in self:
                for seq, ms in zip(r.seqs, r.latencies_ms):
                    out.writerow([r.key, seq, round(ms, 4)])
        return [summary, latencies]

    def table(self) -> Table:
        """p50/p90/p99, requests and bytes per event: HTML in Jupyter, text in a terminal."""
        rows = []
        for r in self:
            bpe = r.bytes_per_event
            rows.append([
                r.label, f"{r.received}/{r.events}", _ms(r.p50_ms), _ms(r.p90_ms), _ms(r.p99_ms),
                f"{r.requests_per_event:.2f}", f"{bpe['up']:g}", f"{bpe['down']:g}", _ms(r.setup_ms),
            ])
        c = self.config
        return Table(
            ["transport", "events", "p50 ms", "p90 ms", "p99 ms", "requests/event",
             "bytes up/event", "bytes down/event", "set-up ms"],
            rows,
            title=f"{c.events} Poisson events, mean gap {c.mean_gap_ms:g} ms, "
            f"{c.payload_bytes}-byte payload, seed {c.seed}",
            align_right=set(range(1, 9)),
        )

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()

    def __str__(self) -> str:
        return str(self.table())

    __repr__ = __str__


def _ms(value: float) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def load_results(path: str | os.PathLike[str]) -> Results:
    """Read a results.json (or a folder holding one) back into :class:`Results`."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.exists():
        raise FileNotFoundError(f"no results at {str(path)!r}; run `python -m wslab bench --out DIR` first")
    return Results.from_dict(json.loads(path.read_text()))


# The schedule


def schedule(config: ExperimentConfig) -> tuple[list[float], list[Any]]:
    """The gaps (seconds, seeded Poisson) and payloads every transport delivers.

    A payload is ``{"value": <seeded random walk>, "pad": "xxx..."}`` with
    ``payload_bytes`` of padding (no ``pad`` when it is 0).
    """
    gaps = poisson(config.mean_gap_ms / 1000, config.events, seed=config.seed)
    rng = random.Random(config.seed + 1)
    value, payloads = 100.0, []
    for _ in range(config.events):
        value = round(value + rng.gauss(0, 1), 2)
        payload: dict[str, Any] = {"value": value}
        if config.payload_bytes:
            payload["pad"] = "x" * config.payload_bytes
        payloads.append(payload)
    return gaps, payloads


# The floor: raw TCP push with asyncio streams


class TcpPushServer(_servers.Background):
    """A raw TCP server that pushes newline-delimited, timestamped events.

    The floor every other transport is compared with: no HTTP, no framing,
    just ``b"<seq> <created> <payload>\\n"`` written to the socket at the
    scheduled times. It runs on its own loop in a daemon thread and joins
    wslab's registry, so ``wslab.status()`` shows it and ``wslab.stop_all()``
    stops it. Each client that connects and sends ``b"go\\n"`` gets the whole
    schedule, then the server closes the connection.
    """

    mode = "thread"
    stop_timeout = 2.0

    def __init__(self, name: str, gaps: Sequence[float], payloads: Sequence[Any]) -> None:
        self.name = name
        self.gaps = list(gaps)
        self.payloads = list(payloads)
        self.errors: list[BaseException] = []
        self.started = time.time()
        self.host, self.port = "127.0.0.1", 0
        self.connections = 0
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"tcp://{self.host}:{self.port}/"

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._thread is not None
        return self._thread.loop

    async def _start(self) -> TcpPushServer:
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if (await reader.readline()) != b"go\n":
                return
            loop = asyncio.get_running_loop()
            start, due, clock = loop.time(), 0.0, CLOCK
            for seq, (gap, payload) in enumerate(zip(self.gaps, self.payloads), start=1):
                due += gap
                delay = start + due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                line = Event(seq, clock(), payload).dumps() + "\n"
                writer.write(line.encode())
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception as exc:  # noqa: BLE001 - kept and shown, never lost
            self.errors.append(exc)
        finally:
            self.connections -= 1
            self._tasks.discard(task)
            writer.close()

    # Stopping (stop() and aclose() come from Background): returns within a
    # few seconds, stopping the thread too.

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        try:
            async with asyncio.timeout(self.stop_timeout):
                await self._server.wait_closed()
        except TimeoutError:  # stopping must not fail
            pass

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<wslab TcpPushServer {self.name!r} {self.url} thread mode, {state}>"


def serve_tcp_push(
    config: ExperimentConfig | None = None, name: str = "tcp-floor"
) -> TcpPushServer:
    """Start the raw TCP pusher for ``config``'s schedule in a thread of its own."""
    config = config or ExperimentConfig()
    server = TcpPushServer(name, *schedule(config))
    return _servers.start_in_thread(name, server._start)


class Recorder:
    """The runner's bookkeeping for one transport: what arrived, and when.

    ``record(seq, created)`` is the whole per-event cost the runner adds
    (``benchmarks/bench_latency.py`` times it): read the clock, append two numbers.
    """

    __slots__ = ("seqs", "created", "received", "_clock")

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.created: list[float] = []
        self.received: list[float] = []
        self._clock = CLOCK

    def record(self, seq: int, created: float, received: float | None = None) -> None:
        self.received.append(self._clock() if received is None else received)
        self.seqs.append(seq)
        self.created.append(created)

    def latencies_ms(self) -> list[float]:
        return [(r - c) * 1000 for r, c in zip(self.received, self.created)]


async def measure_tcp_floor(
    config: ExperimentConfig, *, timeout: float | None = None, report: Callable[[int], Any] | None = None
) -> TransportResult:
    """Push ``config``'s schedule over raw TCP (asyncio streams); the client reads on this loop.

    Each event is the same JSON line the other transports carry
    (:meth:`wslab.events.Event.dumps`), so bytes compare directly.
    """
    result = TransportResult("tcp_floor", config.events)
    server = serve_tcp_push(config)
    recorder = Recorder()
    timeout = timeout or _budget(config)
    try:
        t0 = time.perf_counter()
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"go\n")
        await writer.drain()
        result.setup_ms = (time.perf_counter() - t0) * 1000
        result.setup_bytes_up = 3
        down = 0
        counter = asyncio.ensure_future(_count(lambda: len(recorder.seqs), report))
        try:
            async with asyncio.timeout(timeout):
                while True:
                    line = await reader.readline()
                    received = CLOCK()
                    if not line:
                        break
                    down += len(line)
                    event = Event.from_json(line)
                    recorder.record(event.seq, event.created, received)
        except TimeoutError:
            result.errors.append(f"timed out after {timeout:.1f} s")
        finally:
            counter.cancel()
        result.bytes_down = down
        writer.close()
    finally:
        await server.aclose()
    result.seqs = recorder.seqs
    result.latencies_ms = [round(x, 6) for x in recorder.latencies_ms()]
    result.errors += [repr(e) for e in server.errors]
    return result


def _budget(config: ExperimentConfig, extra: float = 10.0) -> float:
    """Seconds a transport may take: the schedule, plus the slowest poll, plus slack."""
    return config.events * config.mean_gap_ms / 1000 * 2 + extra


def _block_loop(loop: asyncio.AbstractEventLoop, config: ExperimentConfig) -> Callable[[], None]:
    """Every ``block_every_ms``, run a callback on the server's loop that calls ``time.sleep``.

    This is what a handler with a blocking call does to every other client of
    that loop. Returns a function that stops it.
    """
    if config.block_ms <= 0:
        return lambda: None
    state = {"handle": None, "stopped": False}

    def block() -> None:
        if state["stopped"]:
            return
        time.sleep(config.block_ms / 1000)  # on purpose: this is the lesson
        state["handle"] = loop.call_later(config.block_every_ms / 1000, block)

    def start() -> None:
        state["handle"] = loop.call_later(config.block_every_ms / 1000, block)

    loop.call_soon_threadsafe(start)

    def stop() -> None:
        state["stopped"] = True
        handle = state["handle"]
        if handle is not None and not loop.is_closed():
            loop.call_soon_threadsafe(handle.cancel)

    return stop


# The lab-server transports (wslab.labserver + wslab.transports)

_LAB_NAME = "latency-lab"
_TAP_NAME = "latency-tap"


def _client_args(key: str) -> tuple[str, dict[str, Any]]:
    """Transport key -> (name :func:`wslab.transports.receive` knows, its options)."""
    interval = short_poll_interval(key)
    if interval is not None:
        return "short_poll", {"interval": interval}
    return key, {}


@dataclass
class _Pass:
    """One client run against a fresh lab server."""

    result: Any  # wslab.transports.Result
    ready_at: float = math.nan
    ready_bytes: tuple[int, int] = (0, 0)
    end_bytes: tuple[int, int] = (0, 0)
    errors: list[str] = field(default_factory=list)

    @property
    def steady_requests(self) -> int:
        """Requests sent after the client was listening (set-up ones excluded)."""
        return sum(1 for x in self.result.exchanges if x.kind != "setup" and x.sent >= self.ready_at)


async def _count(read: Callable[[], int], report: Callable[[int], Any] | None, every: float = 0.25) -> None:
    """Report how many more events ``read()`` says are done, every ``every`` seconds (for a progress bar)."""
    if report is None:
        return
    done = 0
    try:
        while True:
            await asyncio.sleep(every)
            now = read()
            if now > done:
                report(now - done)
                done = now
    except asyncio.CancelledError:
        pass


async def _lab_pass(
    key: str, config: ExperimentConfig, *, through_tap: bool, report: Callable[[int], Any] | None = None
) -> _Pass:
    """Run ``key``'s client against a lab server in its own thread; the schedule starts when it listens."""
    from .labserver import lab_server_in_thread
    from .transports import DeliveryError, ReceiveTimeout, receive
    from .wiretap import wiretap_in_thread

    transport, options = _client_args(key)
    gaps, payloads = schedule(config)
    lab = lab_server_in_thread(_LAB_NAME, seed=config.seed)
    # Stamp events with our clock. (Set on the lab's own fresh source: an empty
    # EventSource passed as source= is falsy, and labserver replaces it.)
    lab.source.clock = CLOCK
    server_loop: asyncio.AbstractEventLoop = lab._loop  # type: ignore[assignment]
    tap = world = None
    stop_blocking = lambda: None  # noqa: E731
    state: dict[str, Any] = {}
    errors: list[str] = []
    try:
        if through_tap:
            target = lab.ws_url if transport.startswith("websocket") else lab.http_url
            tap = wiretap_in_thread(target, _TAP_NAME, max_capture=64 * 1024)
        if config.block_ms > 0:
            # A loop blocked by a handler cannot also be the clock of the world:
            # events then happen in a thread of their own, on time.
            world = _servers.LoopThread("latency-world")
            schedule_loop = world.loop
            stop_blocking = _block_loop(server_loop, config)
        else:
            schedule_loop = server_loop

        def on_ready() -> None:
            state["ready_at"] = CLOCK()
            if tap is not None:
                state["ready_bytes"] = (tap.bytes_up, tap.bytes_down)
            state["schedule"] = asyncio.run_coroutine_threadsafe(
                lab.run_schedule(gaps, payloads), schedule_loop
            )

        counter = asyncio.ensure_future(_count(lambda: lab.source.newest, report))
        try:
            result = await receive(
                transport, lab, config.events, since="now", tap=tap, on_ready=on_ready,
                timeout=_budget(config), clock=CLOCK, **options,
            )
        except ReceiveTimeout as exc:
            result = exc.result
            errors.append(str(exc))
        except DeliveryError as exc:
            raise RuntimeError(f"{key}: {exc}") from exc
        finally:
            counter.cancel()
        done = _Pass(result, state.get("ready_at", math.nan), state.get("ready_bytes", (0, 0)), errors=errors)
        if tap is not None:
            done.end_bytes = (tap.bytes_up, tap.bytes_down)
        future = state.get("schedule")
        if future is not None:
            try:
                await asyncio.wait_for(asyncio.wrap_future(future), timeout=_budget(config))
            except TimeoutError:
                errors.append("the schedule did not finish in time")
            except Exception as exc:  # noqa: BLE001 - kept in the result, never lost
                errors.append(f"the schedule failed: {exc!r}")
        return done
    finally:
        stop_blocking()
        if tap is not None:
            await tap.aclose()
        await lab.aclose()
        if world is not None:
            world.stop()
        errors.extend(f"lab server: {e!r}" for e in lab.errors)


async def measure_transport(
    key: str, config: ExperimentConfig, *, bytes_pass: bool = True,
    progress: Callable[[str, int], Any] | None = None,
) -> TransportResult:
    """Measure one transport: a latency pass (direct), then a bytes pass (through a wiretap).

    The wiretap is a relay: it adds a hop, so latency is measured without it,
    and bytes are counted in a second run of the same schedule through it.
    """
    reported = 0

    def report(n: int) -> None:
        nonlocal reported
        reported += n
        if progress:
            progress(key, n)

    def finish_pass(passes: int) -> None:
        # the counter samples; top up to exactly the events of the passes done
        if progress and reported < passes * config.events:
            report(passes * config.events - reported)

    if progress:
        progress(key, 0)
    if key == "tcp_floor":
        result = await measure_tcp_floor(config, report=report)
        finish_pass(1)
        return result
    latency = await _lab_pass(key, config, through_tap=False, report=report)
    finish_pass(1)
    r = latency.result
    out = TransportResult(
        key, config.events,
        latencies_ms=[(d.received - d.created) * 1000 for d in r.deliveries],
        seqs=[d.seq for d in r.deliveries],
        requests=latency.steady_requests,
        empty_responses=r.empty_responses,
        setup_ms=r.setup_s * 1000,
        interval_ms=None if r.interval is None else r.interval * 1000,
        errors=list(latency.errors),
    )
    if bytes_pass:
        wire = await _lab_pass(key, config, through_tap=True, report=report)
        finish_pass(2)
        out.setup_bytes_up, out.setup_bytes_down = wire.ready_bytes
        out.bytes_up = wire.end_bytes[0] - wire.ready_bytes[0]
        out.bytes_down = wire.end_bytes[1] - wire.ready_bytes[1]
        out.relay_p50_ms = _r(percentile(wire.result.latencies_ms, 50))
        out.errors += [f"bytes pass: {e}" for e in wire.errors]
    return out


def _merge(config: ExperimentConfig, overrides: dict[str, Any]) -> ExperimentConfig:
    if config is None:
        return ExperimentConfig(**overrides)
    if overrides:
        data = asdict(config)
        data.update(overrides)
        return ExperimentConfig(**data)
    return config


async def run_experiment(
    config: ExperimentConfig | None = None,
    *,
    bytes_pass: bool = True,
    progress: bool | Callable[[str, int], Any] | None = None,
    **overrides: Any,
) -> Results:
    """Run the same seeded schedule over every transport in ``config``; return :class:`Results`.

    Keyword arguments override the configuration's fields::

        results = await wslab.run_experiment(events=200, transports=["websocket", "long_poll"])
        results.table()

    The servers run in threads of their own; this coroutine is the measuring
    client, on the caller's loop. ``progress``: ``True`` shows a progress bar
    (a widget in Jupyter, text in a terminal), ``False`` none, ``None`` (the
    default) shows one when the run should take more than a few seconds; a
    callable gets ``progress(key, n)`` as events are done and
    ``progress(key, 0)`` as a transport starts. With ``bytes_pass=False``
    each transport runs once, without byte counts.
    """
    config = _merge(config, overrides)  # type: ignore[arg-type]
    if progress is None:
        progress = expected_seconds(config, bytes_pass=bytes_pass) > 3
    if progress is True:
        with _progress_bar(config, bytes_pass) as bar:
            return await run_experiment(config, bytes_pass=bytes_pass, progress=bar)
    results = Results(config)
    started = CLOCK()
    for key in config.transports:
        results.transports[key] = await measure_transport(
            key, config, bytes_pass=bytes_pass, progress=progress or None
        )
    results.seconds = CLOCK() - started
    return results


@contextlib.contextmanager
def _progress_bar(config: ExperimentConfig, bytes_pass: bool) -> Iterator[Callable[[str, int], None]]:
    """A tqdm bar over every event of every pass; yields the ``progress`` callback."""
    from tqdm.auto import tqdm

    passes = {k: 1 if k == "tcp_floor" or not bytes_pass else 2 for k in config.transports}
    total = sum(passes.values()) * config.events
    with tqdm(total=total, unit="event", desc="measuring", dynamic_ncols=True,
              bar_format="{desc}{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} events [{elapsed}<{remaining}]") as bar:

        def progress(key: str, n: int) -> None:
            if n:
                bar.update(n)
            else:  # starting this transport
                bar.set_description(key, refresh=True)

        yield progress


def expected_seconds(config: ExperimentConfig, *, bytes_pass: bool = True) -> float:
    """About how long :func:`run_experiment` takes for ``config``, seconds."""
    span = sum(poisson(config.mean_gap_ms / 1000, config.events, seed=config.seed))
    total = 0.0
    for key in config.transports:
        interval = short_poll_interval(key) or 0.0
        passes = 1 if key == "tcp_floor" or not bytes_pass else 2
        total += passes * (span + interval + 0.05)
    return total

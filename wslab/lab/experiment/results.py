"""The latency lab's plain data: what a run measures, what it found, saved as JSON and CSV.

:class:`ExperimentConfig` (the seed and size of the schedule, the transports,
the network link), :class:`TransportResult` (one transport's latencies,
requests and bytes), :class:`Results` (a whole run, with the machine and the
library versions) and :func:`percentile`. Nothing here opens a socket or
reads a clock for a measurement: the schedule a config stands for, the
clock and the polling intervals are in :mod:`wslab.lab.experiment.timing`.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

from ...course.display import Table
from .timing import short_poll_interval

__all__ = [
    "TRANSPORTS",
    "PUBLISHED_2010",
    "SCHEMA",
    "label",
    "percentile",
    "ExperimentConfig",
    "TransportResult",
    "Results",
    "machine",
    "versions",
    "load_results",
]

#: Transport key -> label shown in tables and plots, in the order they run.
TRANSPORTS: dict[str, str] = {
    "tcp_floor": "raw TCP push (floor)",
    "websocket": "WebSocket",
    "websocket_deflate": "WebSocket + deflate",
    "sse": "SSE",
    "sse_tornado": "SSE, tornado server",
    "long_poll": "long polling",
    "long_poll_tornado": "long polling, tornado server",
    "long_poll_httpx": "long polling, httpx client",
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
    #: Events each client receives, untimed, before the timed schedule (warms its code paths).
    warmup: int = 5
    #: The network between client and server (:class:`wslab.Link`): round trip and jitter
    #: (ms) and a bandwidth cap per direction (kbit/s; None: none). All zero/None: loopback.
    rtt_ms: float = 0.0
    jitter_ms: float = 0.0
    rate_kbps: float | None = None
    #: Per-direction caps (kbit/s), overriding ``rate_kbps`` (a preset such as "3g" has both).
    up_kbps: float | None = None
    down_kbps: float | None = None

    @property
    def linked(self) -> bool:
        """True when the run goes through an emulated link (a round trip, jitter or a rate cap)."""
        return (self.rtt_ms > 0 or self.jitter_ms > 0 or self.rate_kbps is not None
                or self.up_kbps is not None or self.down_kbps is not None)

    def link_text(self) -> str:
        """``"loopback"``, or ``"100 ms round trip, 1000 kbit/s"``."""
        if not self.linked:
            return "loopback"
        parts = [f"{self.rtt_ms:g} ms round trip"]
        if self.jitter_ms:
            parts.append(f"jitter {self.jitter_ms:g} ms")
        if self.up_kbps is not None or self.down_kbps is not None:
            up = self.up_kbps if self.up_kbps is not None else self.rate_kbps
            down = self.down_kbps if self.down_kbps is not None else self.rate_kbps
            parts.append(f"{_kbps(down)} down, {_kbps(up)} up")
        elif self.rate_kbps is not None:
            parts.append(f"{self.rate_kbps:g} kbit/s")
        return ", ".join(parts)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentConfig:
        """From :func:`dataclasses.asdict` output; fields this version does not know are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def __post_init__(self) -> None:
        if self.events < 1:
            raise ValueError(f"events must be at least 1, got {self.events!r}")
        if not self.mean_gap_ms > 0:
            raise ValueError(f"mean_gap_ms must be positive, got {self.mean_gap_ms!r}")
        if self.payload_bytes < 0:
            raise ValueError(f"payload_bytes must be 0 or more, got {self.payload_bytes!r}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be 0 or more events, got {self.warmup!r}")
        if self.rtt_ms < 0 or self.jitter_ms < 0:
            raise ValueError(f"rtt_ms and jitter_ms must be 0 or more, got {self.rtt_ms!r} and {self.jitter_ms!r}")
        for name in ("rate_kbps", "up_kbps", "down_kbps"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive (or None for no cap), got {value!r}")
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


def _kbps(value: float | None) -> str:
    return "no cap" if value is None else f"{value:g} kbit/s"


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
            "link": {"rtt_ms": self.config.rtt_ms, "jitter_ms": self.config.jitter_ms,
                     "rate_kbps": self.config.rate_kbps, "up_kbps": self.config.up_kbps,
                     "down_kbps": self.config.down_kbps, "text": self.config.link_text()},
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
            config=ExperimentConfig.from_dict(data["config"]),
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
            f"{c.payload_bytes}-byte payload, seed {c.seed}, {c.link_text()}",
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


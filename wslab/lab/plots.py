"""Figures of a latency run: what push costs against polling, drawn from saved results.

Every function takes a :class:`wslab.lab.experiment.Results` (from
``await wslab.run_experiment()`` or ``wslab.load_results("results.json")``)
and returns a matplotlib :class:`~matplotlib.figure.Figure`; none needs a
server. The figures are made without pyplot, so nothing leaks between cells
and they work headless (the Agg canvas) as well as in a notebook, where a
figure shows itself as the value of a cell.

    >>> results = wslab.load_results("wslab-results-20260101-120000")
    >>> wslab.plots.latency_cdf(results)                # in a notebook: shows the figure
    >>> wslab.plots.save_figures(results, "figures/")   # PNG files
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from ..course.display import Table
from .experiment import PUBLISHED_2010, Results, short_poll_interval
from .experiment.figure import new_figure

__all__ = [
    "latency_cdf",
    "latency_boxes",
    "bytes_per_event",
    "bandwidth_projection",
    "projection",
    "short_poll_delay",
    "figures",
    "save_figures",
]

#: One colour per transport, the same in every figure.
COLORS = {
    "tcp_floor": "#555555",
    "websocket": "#1f77b4",
    "websocket_deflate": "#17becf",
    "sse": "#2ca02c",
    "long_poll": "#ff7f0e",
    "sse_tornado": "#98df8a",  # the latency lab's heavier-library rows (measure)
    "long_poll_tornado": "#ffbb78",
    "long_poll_httpx": "#c49c94",
    "short_poll_50ms": "#d62728",
    "short_poll_250ms": "#9467bd",
    "short_poll_1000ms": "#8c564b",
}
_SPARE = ["#e377c2", "#bcbd22", "#d62728", "#aec7e8"]

# matplotlib 3.10 renamed boxplot(vert=False) to orientation="horizontal".
_HORIZONTAL = {"orientation": "horizontal"} if tuple(
    int(p) for p in matplotlib.__version__.split(".")[:2]) >= (3, 10) else {"vert": False}

#: The client counts of the 2010 table.
CLIENTS = (1_000, 10_000, 100_000)


_spare_of: dict[str, str] = {}


def _color(key: str, i: int = 0) -> str:
    """The transport's colour; a key of your own gets the next spare one (and keeps it)."""
    if key in COLORS:
        return COLORS[key]
    if key not in _spare_of:
        _spare_of[key] = _SPARE[len(_spare_of) % len(_SPARE)]
    return _spare_of[key]


def _figure(width: float = 8.0, height: float = 4.5) -> tuple[Figure, Axes]:
    fig, ax = new_figure(width, height)
    ax.set_axisbelow(True)  # grid lines behind bars and points
    return fig, ax


def _subtitle(results: Results) -> str:
    c = results.config
    cpus = results.machine.get("cpus", "?")
    return (
        f"{c.events} Poisson events, mean gap {c.mean_gap_ms:g} ms, seed {c.seed}; "
        f"loopback, {cpus} CPUs, websockets {results.versions.get('websockets', '?')}"
    )


def _ms_formatter(value: float, _pos: Any) -> str:
    if value >= 1:
        return f"{value:g}"
    return f"{value:.2g}"


def _with_data(results: Results) -> list[Any]:
    rows = [r for r in results if r.received]
    if not rows:
        raise ValueError("these results hold no received events to plot; run the experiment first")
    return rows


# Latency


def latency_cdf(results: Results, *, ax: Axes | None = None) -> Figure:
    """Latency distribution per transport: a CDF on a log axis, p50/p90/p99 marked."""
    fig, ax = _figure(10, 5) if ax is None else (ax.figure, ax)
    for i, r in enumerate(_with_data(results)):
        values = np.sort(np.asarray(r.latencies_ms))
        fraction = np.arange(1, len(values) + 1) / len(values)
        color = _color(r.key, i)
        ax.step(values, fraction, where="post", color=color, lw=1.8,
                label=f"{r.label}  (p50 {_fmt(r.p50_ms)} ms)")
        for q, marker in ((50, "o"), (90, "s"), (99, "^")):
            ax.plot([r.p(q)], [q / 100], marker=marker, color=color, ms=6, mec="white", mew=0.8)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(_ms_formatter))
    ax.set_xlabel("one-way latency, created on the server to read by the client (ms, log scale)")
    ax.set_ylabel("fraction of events delivered")
    ax.set_ylim(0, 1.02)
    for q in (0.5, 0.9, 0.99):
        ax.axhline(q, color="#cccccc", lw=0.8, zorder=0)
    ax.grid(True, which="major", axis="x", color="#eeeeee")
    ax.set_title("How long an event takes to arrive\n" + _subtitle(results), fontsize=11)
    handles, labels = ax.get_legend_handles_labels()
    from matplotlib.lines import Line2D

    handles += [Line2D([], [], ls="", marker=m, color="#444444") for m in "os^"]
    labels += ["p50", "p90", "p99"]
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8.5, frameon=False)
    return fig


def latency_boxes(results: Results, *, ax: Axes | None = None) -> Figure:
    """A compact view: one box (p25-p75, whiskers p1-p99) and the events as dots, per transport."""
    rows = _with_data(results)
    fig, ax = _figure(9, 0.55 * len(rows) + 1.6) if ax is None else (ax.figure, ax)
    rng = np.random.default_rng(0)  # jitter only: the data are the measured values
    positions = np.arange(len(rows))[::-1]
    for pos, (i, r) in zip(positions, enumerate(rows)):
        values = np.asarray(r.latencies_ms)
        color = _color(r.key, i)
        ax.scatter(values, pos + rng.uniform(-0.18, 0.18, len(values)), s=4, color=color, alpha=0.35,
                   lw=0)
        ax.boxplot([values], positions=[pos], **_HORIZONTAL, widths=0.55, whis=(1, 99), showfliers=False,
                   patch_artist=True, boxprops={"facecolor": "none", "edgecolor": "black"},
                   medianprops={"color": "black", "lw": 2}, whiskerprops={"color": "black"},
                   capprops={"color": "black"})
        ax.annotate(f"{_fmt(r.p50_ms)} ms", (float(np.max(values)), pos), xytext=(6, 0),
                    textcoords="offset points", va="center", fontsize=8.5)
    ax.set_yticks(positions, [r.label for r in rows])
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(_ms_formatter))
    ax.set_xlabel("one-way latency (ms, log scale); box p25-p75, line p50, whiskers p1-p99; label p50")
    ax.grid(True, axis="x", color="#eeeeee")
    ax.margins(x=0.15)
    ax.set_title("Latency per transport\n" + _subtitle(results), fontsize=11)
    return fig


# Bytes


def bytes_per_event(results: Results, *, ax: Axes | None = None) -> Figure:
    """TCP payload bytes per event in steady state, client to server and back, per transport."""
    rows = list(results)
    fig, ax = _figure(9, 0.5 * len(rows) + 1.6) if ax is None else (ax.figure, ax)
    positions = np.arange(len(rows))[::-1]
    up = np.array([r.bytes_per_event["up"] for r in rows])
    down = np.array([r.bytes_per_event["down"] for r in rows])
    ax.barh(positions, down, color="#1f77b4", label="server to client (<, down)")
    ax.barh(positions, up, left=down, color="#ff7f0e", label="client to server (>, up)")
    for pos, u, d in zip(positions, up, down):
        ax.annotate(f"{u + d:.0f} B", (u + d, pos), xytext=(4, 0), textcoords="offset points",
                    va="center", fontsize=8.5)
    ax.set_yticks(positions, [r.label for r in rows])
    ax.set_xlabel("bytes per event (TCP payload, after set-up: headers, framing and the event)")
    ax.margins(x=0.12)
    ax.grid(True, axis="x", color="#eeeeee")
    ax.legend(loc="lower right", fontsize=8.5)
    ax.set_title("What each event costs on the wire\n" + _subtitle(results), fontsize=11)
    return fig


def _mbps(byte_count: float, clients: int, per_second: float = 1.0) -> float:
    # The 2010 article's unit: 871 B x 8 x 1,000 / 2**20 = 6.6 "Mbps".
    return byte_count * 8 * clients * per_second / 2**20


def projection(results: Results, clients: Sequence[int] = CLIENTS) -> Table:
    """Bandwidth at one message a second per client, from measured bytes, beside the 2010 table.

    For short polling the cost of one message is one poll (request and
    answer, carrying one event); for the other transports it is the measured
    bytes per event.
    Megabits as the article counted them (2**20 bits).
    """
    rows = []
    for name, data in PUBLISHED_2010.items():
        rows.append([f"2010 article: {name}", f"{data['bytes']}"] + [f"{data['mbps'][n]:g}" for n in clients])
    for key, what, per_message in _measured_costs(results):
        rows.append([f"measured: {what}", f"{per_message:.0f}"]
                    + [f"{_mbps(per_message, n):.3g}" for n in clients])
    return Table(
        ["what", "bytes/message"] + [f"{n:,} clients (Mbps)" for n in clients],
        rows,
        title="Bandwidth at one message per second per client",
        align_right=set(range(1, len(clients) + 2)),
    )


def _event_bytes(results: Results) -> float | None:
    """Bytes of one event's JSON, from the raw TCP floor (a line per event) or the WebSocket (2-byte header)."""
    for key, framing in (("tcp_floor", 1), ("websocket", 2)):
        r = results.transports.get(key)
        if r is not None and r.bytes_down:
            return r.bytes_down / r.events - framing
    return None


def _measured_costs(results: Results) -> list[tuple[str, str, float]]:
    """(key, what, bytes per message at one message a second) for each measured transport.

    A short poll at one message a second carries one event: its cost is the
    poll's headers both ways (measured: the poll's bytes minus the events it
    carried) plus one event.
    """
    costs = []
    polls = [r for r in results if short_poll_interval(r.key) is not None and r.requests]
    event = _event_bytes(results)
    if polls and event is not None:
        slowest = max(polls, key=lambda r: short_poll_interval(r.key) or 0)
        headers = (slowest.bytes_up + slowest.bytes_down - event * slowest.events) / slowest.requests
        costs.append((slowest.key, "short polling (a poll with one event)", headers + event))
    for r in results:
        if short_poll_interval(r.key) is None and r.bytes_up + r.bytes_down:
            costs.append((r.key, r.label, r.bytes_per_event["total"]))
    return costs


def bandwidth_projection(results: Results, *, ax: Axes | None = None,
                         clients: Sequence[int] = CLIENTS) -> Figure:
    """Mbps for 1,000 / 10,000 / 100,000 clients at one message a second, measured vs 2010."""
    fig, ax = _figure(9, 5.2) if ax is None else (ax.figure, ax)
    xs = np.asarray(clients, dtype=float)
    for name, data, style in (("polling", PUBLISHED_2010["polling"], "#d62728"),
                              ("WebSocket", PUBLISHED_2010["websocket"], "#1f77b4")):
        ax.plot(xs, [data["mbps"][n] for n in clients], ls="--", marker="D", color=style, alpha=0.6,
                label=f"2010 article: {name} ({data['bytes']} B/message)")
    last_label = math.inf
    costs = sorted(_measured_costs(results), key=lambda c: -c[2])
    for i, (key, what, per_message) in enumerate(costs):
        ys = [_mbps(per_message, n) for n in clients]
        ax.plot(xs, ys, marker="o", color=_color(key, i), label=f"measured: {what} ({per_message:.0f} B)")
        at = min(ys[-1], last_label / 1.35)  # keep the end labels apart
        last_label = at
        ax.annotate(f"{ys[-1]:.3g}", (xs[-1], at), xytext=(6, 0), textcoords="offset points",
                    va="center", fontsize=8, color=_color(key, i))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(xs, [f"{n:,}" for n in clients])
    ax.minorticks_off()
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlim(xs[0] / 1.6, xs[-1] * 2.2)
    ax.set_xlabel("clients, each getting one message per second")
    ax.set_ylabel("traffic (Mbps, 2**20 bits/s as in 2010; log scale)")
    ax.grid(True, which="major", color="#eeeeee")
    ax.legend(fontsize=8, loc="upper left", framealpha=0.95)
    ax.set_title("Bytes on the wire, projected to many clients\n"
                 "measured: headers + framing + the event; 2010 (Lubbers and Greco): headers/framing only",
                 fontsize=10.5)
    return fig


# Short polling


def short_poll_delay(results: Results, *, ax: Axes | None = None) -> Figure:
    """How short-polling delay grows with the interval: measured points against interval/2."""
    polls = sorted((r for r in results if short_poll_interval(r.key) is not None and r.received),
                   key=lambda r: short_poll_interval(r.key) or 0)
    if not polls:
        raise ValueError("these results hold no short polling runs (short_poll_<N>ms); measure some first")
    fig, ax = _figure(8, 5) if ax is None else (ax.figure, ax)
    intervals = np.array([short_poll_interval(r.key) * 1000 for r in polls])  # type: ignore[operator]
    line = np.geomspace(intervals.min() / 1.5, intervals.max() * 1.5, 50)
    ax.fill_between(line, 0.0001, line, color="#eeeeee", label="possible: 0 to one interval")
    ax.plot(line, line / 2, "k--", lw=1.2, label="expected mean and median: interval / 2")
    means = [sum(r.latencies_ms) / r.received for r in polls]
    ax.errorbar(intervals, [r.p50_ms for r in polls],
                yerr=[[r.p50_ms - r.p(10) for r in polls], [r.p(90) - r.p50_ms for r in polls]],
                fmt="o", color="#d62728", capsize=4, label="measured median (bars: p10-p90)")
    ax.plot(intervals, means, "x", color="black", ms=8, label="measured mean")
    for x, r in zip(intervals, polls):
        ax.annotate(f"{_fmt(r.p50_ms)} ms", (x, r.p50_ms), xytext=(8, -4), textcoords="offset points",
                    fontsize=8.5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(intervals, [f"{x:g}" for x in intervals])
    ax.minorticks_off()
    ax.yaxis.set_major_formatter(FuncFormatter(_ms_formatter))
    ax.set_ylim(max(0.5, min(r.p(10) for r in polls) / 2), intervals.max() * 2)
    ax.set_xlim(line[0], line[-1])
    ax.set_xlabel("polling interval (ms, log scale)")
    ax.set_ylabel("one-way latency (ms, log scale)")
    ax.grid(True, which="major", color="#eeeeee")
    ax.legend(fontsize=8.5, loc="upper left")
    ax.set_title("Short polling: an event waits for the next poll\n" + _subtitle(results), fontsize=11)
    return fig


def _fmt(ms: float) -> str:
    if ms is None or math.isnan(ms):
        return "-"
    return f"{ms:.2g}" if ms < 10 else f"{ms:.0f}"


# All at once

_FIGURES: dict[str, Callable[..., Figure]] = {
    "latency_cdf": latency_cdf,
    "latency_boxes": latency_boxes,
    "bytes_per_event": bytes_per_event,
    "bandwidth_projection": bandwidth_projection,
    "short_poll_delay": short_poll_delay,
}


def figures(results: Results) -> dict[str, Figure]:
    """Every figure these results can draw, by name (short polling only if it was measured)."""
    out = {}
    for name, draw in _FIGURES.items():
        if name == "short_poll_delay" and not any(short_poll_interval(r.key) for r in results):
            continue
        out[name] = draw(results)
    return out


def save_figures(results: Results, folder: str | os.PathLike[str], *, dpi: int = 110) -> list[Path]:
    """Draw every figure and write it as ``<folder>/<name>.png``; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figures(results).items():
        path = folder / f"{name}.png"
        fig.savefig(path, dpi=dpi)
        paths.append(path)
    return paths

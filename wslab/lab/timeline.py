"""The timeline picture: the same events, delivered by each transport, from a real run.

``wslab.lab.timeline.draw(results)`` takes :class:`wslab.lab.transports.Result`
objects (one per transport, each from a run of the same schedule) and draws,
one row each, two lanes on a shared time axis:

* the **server** lane: a dot when each event was created;
* the **client** lane: each HTTP request (or connection) as a bar from when
  it was sent to when its answer came back: a short bar for a poll, a long
  one for a held long poll, one bar for the whole stream of SSE or a
  WebSocket; grey when the answer was empty;
* a slanted line from each event's creation (server) to the moment the client
  had it (client): its delay, drawn to scale.

Nothing is drawn by hand: every mark is a timestamp the run recorded. Time is
in milliseconds from each row's first event, so rows of separate runs of the
same seeded schedule line up.

:func:`marks` computes the shapes without drawing (the tests read it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from .transports import Result

__all__ = ["Marks", "marks", "draw"]

SERVER_Y, CLIENT_Y = 1.0, 0.0
COLORS = {"answer": "tab:blue", "answer-alt": "#8cb8de", "empty": "0.7", "stream": "tab:purple", "setup": "0.85", "delivery": "tab:green"}


@dataclass
class Marks:
    """What one row shows, in ms from ``t0``: events, request bars, delivery lines."""

    label: str
    t0: float
    created: list[float]
    requests: list[tuple[float, float, str]]  # (start, end, kind: answer | empty | stream | setup)
    deliveries: list[tuple[float, float]]  # (created, received)


def marks(result: Result, *, t0: float | None = None, until: float | None = None) -> Marks:
    """The shapes of one row: times in ms from ``t0`` (default: the first event's creation)."""
    if t0 is None:
        t0 = result.deliveries[0].created if result.deliveries else result.started
    end = result.finished if until is None else t0 + until / 1000

    def ms(t: float) -> float:
        return (t - t0) * 1000

    requests = []
    for exchange in result.exchanges:
        stop = exchange.ended or exchange.answered or end
        if exchange.kind in ("events", "websocket"):
            kind = "stream"
        elif exchange.kind == "setup":
            kind = "setup"
        else:
            kind = "answer" if exchange.events else "empty"
        requests.append((ms(exchange.sent), ms(stop), kind))
    return Marks(
        label=result.label,
        t0=t0,
        created=[ms(d.created) for d in result.deliveries],
        requests=requests,
        deliveries=[(ms(d.created), ms(d.received)) for d in result.deliveries],
    )


def draw(
    results: Sequence[Result],
    *,
    window_ms: tuple[float, float] | None = None,
    title: str | None = "the same events, four ways",
    width: float = 10.0,
) -> Any:
    """Draw one row per result (see the module doc); return the matplotlib figure.

    ``window_ms=(start, end)`` zooms in (default: from the first request to
    the last delivery).
    """
    import matplotlib.pyplot as plt

    if not results:
        raise ValueError("draw() needs at least one Result: run wslab.receive(...) first")
    rows = [marks(r) for r in results]
    if window_ms is None:
        last = max((received for m in rows for _, received in m.deliveries), default=1000.0)
        first = min([0.0] + [start for m in rows for start, _, _ in m.requests])
        pad = 0.03 * (last - first) + 2
        window_ms = (first - pad, last + pad)
    fig, axes = plt.subplots(len(rows), 1, figsize=(width, 1.25 * len(rows) + 1.2), sharex=True, squeeze=False)
    for ax, m, result in zip(axes[:, 0], rows, results):
        _row(ax, m, result, window_ms)
    axes[-1, 0].set_xlabel("ms since the first event was created")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    legend = [
        Line2D([], [], marker="o", color="black", linestyle="none", markersize=4, label="event created"),
        Line2D([], [], marker="^", color="0.3", linestyle="none", markersize=4, label="request sent"),
        Patch(color=COLORS["answer"], label="request open, answered with events"),
        Patch(color=COLORS["empty"], label="answered empty"),
        Patch(color=COLORS["setup"], label="first request: where \"now\" is"),
        Patch(color=COLORS["stream"], label="stream open"),
        Line2D([], [], color=COLORS["delivery"], label="event delivered"),
    ]
    fig.legend(handles=legend, loc="lower center", ncol=3, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.09, 1, 1))
    return fig


def _row(ax: Any, m: Marks, result: Result, window: tuple[float, float]) -> None:
    lo, hi = window
    bar = 0.16
    for i, (start, end, kind) in enumerate(m.requests):
        if end < lo or start > hi:
            continue
        start, end = max(start, lo), min(end, hi)
        color = COLORS["answer-alt"] if kind == "answer" and i % 2 else COLORS[kind]  # back-to-back requests
        ax.broken_barh([(start, max(end - start, (hi - lo) / 400))], (CLIENT_Y + 0.08, bar),
                       facecolors=color, edgecolor="white", linewidth=0.8, gid=f"request-{kind}")
        ax.plot([start], [CLIENT_Y + 0.08 + bar], marker="^", markersize=4, color="0.3", gid="request-sent")
    for created, received in m.deliveries:
        ax.plot([created, received], [SERVER_Y, CLIENT_Y + 0.08], color=COLORS["delivery"], linewidth=1, gid="delivery")
        ax.plot([received], [CLIENT_Y + 0.04], marker="|", markersize=10, color=COLORS["delivery"])
    ax.plot(m.created, [SERVER_Y] * len(m.created), "o", color="black", markersize=4, gid="created")
    ax.set_xlim(lo, hi)
    ax.set_ylim(-0.25, 1.3)
    ax.set_yticks([CLIENT_Y, SERVER_Y], ["client", "server"])
    empty = f", {result.empty_responses} empty" if result.transport.endswith("poll") else ""
    ax.set_title(
        f"{m.label}: {result.requests} request(s){empty}, median delay {result.median_ms:.1f} ms",
        loc="left", fontsize=9,
    )
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)

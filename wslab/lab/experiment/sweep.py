"""Latency against round trip: the same schedule over every transport, at several link delays.

    sweep = await wslab.experiment.sweep_rtt([0, 20, 100, 300], events=60, mean_gap_ms=100)
    sweep.table()        # p50 per transport per round trip, measured
    sweep.plot()         # latency against round trip, one line per transport
    sweep.expected("short_poll_250ms", 100)   # what first principles predict, ms

Each round trip is a real run of :func:`wslab.lab.experiment.run_experiment`
through a :class:`wslab.Link` (0 ms: loopback, no relay). What first
principles predict, for a one-way delay ``d = rtt / 2``:

* push (raw TCP, WebSocket, SSE): ``d``: each event crosses the link once;
* short polling every ``T``: ``T / 2 + d``: the wait for the next poll to
  reach the server, then the answer's way back (a client that waits for
  each answer before the next poll polls every ``max(T, rtt)``);
* long polling: ``d`` when the next request is already waiting at the
  server, up to ``d + rtt`` for an event that comes just after an answer
  left (that answer must reach the client, and the next request the
  server); with events a mean gap ``g`` apart, about
  ``d + rtt * rtt / (2 * g)`` while ``rtt`` is small against ``g``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from ...course.display import Table
from .results import ExperimentConfig, Results, label
from .progress import progress_line
from .timing import short_poll_interval
from .runner import expected_seconds, link_fields, run_experiment

__all__ = ["Sweep", "sweep_rtt", "expected_ms", "SWEEP_TRANSPORTS"]

#: The transports a sweep runs unless told otherwise.
SWEEP_TRANSPORTS = ["tcp_floor", "websocket", "sse", "long_poll", "short_poll_250ms"]


def expected_ms(key: str, rtt_ms: float, mean_gap_ms: float) -> tuple[float, float]:
    """What first principles predict for ``key``'s p50 at ``rtt_ms``: (low, high), ms.

    Push is exactly the one-way delay; short polling ``T/2 + d`` (a median,
    so the low and high are the same); long polling between ``d`` and
    ``d + rtt`` (see the module doc). Loopback's own fraction of a
    millisecond is not included.
    """
    d = rtt_ms / 2
    interval = short_poll_interval(key)
    if interval is not None:
        value = max(interval * 1000, rtt_ms) / 2 + d
        return value, value
    if key.startswith("long_poll"):
        return d, d + rtt_ms
    return d, d


@dataclass(repr=False)
class Sweep:
    """One :class:`~wslab.lab.experiment.results.Results` per round trip (ms), in order."""

    runs: dict[float, Results] = field(default_factory=dict)

    @property
    def rtts(self) -> list[float]:
        return list(self.runs)

    @property
    def keys(self) -> list[str]:
        first = next(iter(self.runs.values()), None)
        return list(first.transports) if first is not None else []

    def p50(self, key: str) -> list[float]:
        """``key``'s measured p50 at each round trip, ms."""
        return [run[key].p50_ms for run in self.runs.values()]

    def expected(self, key: str, rtt_ms: float) -> tuple[float, float]:
        gap = next(iter(self.runs.values())).config.mean_gap_ms if self.runs else 20.0
        return expected_ms(key, rtt_ms, gap)

    def table(self) -> Table:
        """Measured p50 per transport and round trip, with what first principles predict."""
        rows = []
        for key in self.keys:
            for rtt, run in self.runs.items():
                low, high = self.expected(key, rtt)
                predicted = f"{low:.0f}" if math.isclose(low, high) else f"{low:.0f} to {high:.0f}"
                rows.append([label(key), f"{rtt:g} ms", f"{run[key].p50_ms:.3g}", predicted,
                             f"{run[key].requests_per_event:.2f}", f"{run[key].setup_ms:.0f}"])
        return Table(["transport", "round trip", "p50 ms", "first principles ms", "requests/event", "set-up ms"],
                     rows, align_right={1, 2, 3, 4, 5})

    def plot(self, *, ax: Any = None) -> Any:
        """p50 against round trip, one line per transport, on linear axes: a :class:`~wslab.lab.experiment.figure.LabFigure`.

        As a cell's value it shows as an image.
        """
        if ax is None:
            from .figure import new_figure

            fig, ax = new_figure(8, 4.5)
        else:
            fig = ax.figure
        rtts = self.rtts
        for key in self.keys:
            ax.plot(rtts, self.p50(key), marker="o", label=label(key))
        ax.plot(rtts, [r / 2 for r in rtts], linestyle="--", color="#888888", label="one-way delay (rtt / 2)")
        ax.set_xlabel("round trip of the link, ms")
        ax.set_ylabel("p50 latency, ms")
        first = next(iter(self.runs.values()))
        ax.set_title(f"Latency against round trip ({first.config.events} Poisson events, "
                     f"mean gap {first.config.mean_gap_ms:g} ms, each point a run)", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        return fig

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()

    def __str__(self) -> str:
        return str(self.table())

    __repr__ = __str__


async def sweep_rtt(rtts: Sequence[float], *, transports: Sequence[str] | None = None, rate_kbps: float | None = None,
                    progress: bool = True, **config: Any) -> Sweep:
    """Run the experiment once per round trip in ``rtts`` (ms); return a :class:`Sweep`.

    Other keyword arguments go to :func:`run_experiment` (``events``,
    ``mean_gap_ms``, ``seed``, ...). There is one pass per transport at each
    round trip (``bytes_pass=False`` at 0 ms: loopback has nothing to show
    there that the main run does not). The loopback run comes first, its
    sub-millisecond passes one at a time; then every run over a link goes
    side by side (their figures are at least half a round trip: the tens of
    microseconds they cost each other do not show). ``progress``: a progress
    line with the time the sweep should take.
    """
    keys = list(transports or SWEEP_TRANSPORTS)
    configs = []
    for rtt in rtts:
        link = {"rtt_ms": rtt, "rate_kbps": rate_kbps} if rtt or rate_kbps else None
        configs.append((float(rtt), ExperimentConfig(transports=keys, **{**config, **link_fields(link)})))
    total = sum(c.events * len(keys) for _, c in configs)
    loopback = [c for _, c in configs if not c.linked]
    linked = [c for _, c in configs if c.linked]
    expected = (sum(expected_seconds(c, bytes_pass=False) for c in loopback)
                + max([expected_seconds(c, bytes_pass=False) for c in linked] or [0.0]))
    sweep = Sweep()
    with progress_line(total, expected) if progress else contextlib.nullcontext(None) as report:
        runs = {rtt: run_experiment(c, bytes_pass=False, progress=report or False) for rtt, c in configs}
        done = {rtt: await runs[rtt] for rtt, c in configs if not c.linked}
        together = [rtt for rtt, c in configs if c.linked]
        done.update(zip(together, await asyncio.gather(*(runs[rtt] for rtt in together))))
    sweep.runs = {rtt: done[rtt] for rtt, _ in configs}
    return sweep

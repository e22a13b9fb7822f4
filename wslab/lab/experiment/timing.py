"""When things happen in a latency run: the clock, the seeded schedule, polling intervals, time budgets.

The servers publish on :func:`schedule` (seeded Poisson gaps, the same for
every transport) after ``config.warmup`` events :data:`WARMUP_GAP_S` apart;
both sides stamp with :data:`CLOCK`; a short-polling transport polls every
:func:`short_poll_interval` of its name (``short_poll_250ms``: 0.25 s); a
client and the schedule get :func:`time_budget` seconds before they count as
timed out. The runner, the floor and the clients read these from here;
:mod:`wslab.lab.experiment.results` holds what a run measures and found
(plain data, JSON and CSV).
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

from ..events import poisson

if TYPE_CHECKING:  # results imports short_poll_interval from here; the config is only a type
    from .results import ExperimentConfig

__all__ = ["CLOCK", "WARMUP_GAP_S", "schedule", "span", "short_poll_interval", "time_budget"]

#: The one clock both sides of every measurement read.
CLOCK = time.perf_counter

#: Gap between warm-up events, seconds (the same for every transport).
WARMUP_GAP_S = 0.002


def schedule(config: ExperimentConfig) -> tuple[list[float], list[Any]]:
    """The gaps (seconds, seeded Poisson) and payloads every transport delivers.

    A payload is ``{"value": <seeded random walk>, "pad": "xxx..."}`` with
    ``payload_bytes`` of padding (no ``pad`` when it is 0).
    """
    gaps = _gaps(config)
    rng = random.Random(config.seed + 1)
    value, payloads = 100.0, []
    for _ in range(config.events):
        value = round(value + rng.gauss(0, 1), 2)
        payload: dict[str, Any] = {"value": value}
        if config.payload_bytes:
            payload["pad"] = "x" * config.payload_bytes
        payloads.append(payload)
    return gaps, payloads


def span(config: ExperimentConfig) -> float:
    """Seconds the timed schedule lasts: the sum of its gaps (its last event is due then)."""
    return sum(_gaps(config))


def _gaps(config: ExperimentConfig) -> list[float]:
    return poisson(config.mean_gap_ms / 1000, config.events, seed=config.seed)


def short_poll_interval(key: str) -> float | None:
    """``"short_poll_250ms"`` -> 0.25 (seconds); None for other transports."""
    if key.startswith("short_poll_") and key.endswith("ms"):
        return int(key[len("short_poll_") : -2]) / 1000
    return None


def time_budget(config: ExperimentConfig, extra: float = 10.0) -> float:
    """Seconds a transport may take: the schedule, plus the slowest poll, round trips, slack."""
    per_event = config.mean_gap_ms / 1000 * 2 + 3 * config.rtt_ms / 1000
    return config.events * per_event + (config.warmup + 5) * (0.01 + config.rtt_ms / 500) + extra

"""The latency lab: the same seeded events over every transport, measured.

Design note
-----------
What runs where:

* the **servers** run in thread mode, each on its own event loop in a daemon
  thread (:class:`wslab.server.background.LoopThread`): the lab server of
  ``wslab/lab/labserver.py`` for the HTTP and WebSocket transports, and the raw
  TCP pusher of :mod:`wslab.lab.experiment.floor` for the floor; with a link, a
  wiretap that delays and paces the bytes sits between, in a thread too;
* the **measuring client** runs on the caller's loop (the notebook kernel's,
  or the one ``asyncio.run()`` made for ``python -m wslab bench``). So the
  numbers measure the protocol, not a client and a server taking turns on
  one loop. Every transport's client is equally light and stamps at the same
  point, and is warmed up before the timed part
  (:mod:`wslab.lab.experiment.clients`).

Both sides read one clock, :data:`CLOCK` (``time.perf_counter``: monotonic,
and on Linux the same CLOCK_MONOTONIC in every thread and process): the
server stamps each event with the moment it published it
(:class:`wslab.lab.events.Event`), the client with the moment it read it, and the
difference is the one-way latency. Events come on a seeded Poisson schedule
(realistic gaps, never an echo loop: a sleeping process must be woken, and
that is part of what push costs).

The package, by concept:

* :mod:`~wslab.lab.experiment.results`: the plain data (config, one result per
  transport, a whole run as JSON and CSV, percentiles);
* :mod:`~wslab.lab.experiment.timing`: when things happen (the clock, the seeded
  schedule, warm-up gaps, short-poll intervals, time budgets);
* :mod:`~wslab.lab.experiment.floor`: the raw TCP floor;
* :mod:`~wslab.lab.experiment.clients`: the light measuring clients;
* :mod:`~wslab.lab.experiment.httpserver`: the light HTTP server for polling and SSE;
* :mod:`~wslab.lab.experiment.listener`: the listener the floor and the HTTP server share;
* :mod:`~wslab.lab.experiment.runner`: :func:`run_experiment`;
* :mod:`~wslab.lab.experiment.sweep`: latency against round trip (:func:`sweep_rtt`);
* :mod:`~wslab.lab.experiment.figure`: a matplotlib Figure that shows itself as an image.

What may share the machine: a pass whose figure is a fraction of a
millisecond (push and long polling on loopback) runs alone; the bytes
passes, short polling and every run over a link run side by side after it
(:func:`quiet_needed`, ``run_experiment(overlap=...)``).

What must never happen: an event silently lost (each result counts
``received`` against ``events`` and names what is missing); a server left
running (each is registered, so ``wslab.stop_all()`` sees it, and stopped in a
``finally``); a measurement that never ends (every wait is bounded).
"""

from __future__ import annotations

from .floor import Recorder, TcpPushServer, measure_tcp_floor, serve_tcp_push
from .results import (
    PUBLISHED_2010,
    SCHEMA,
    TRANSPORTS,
    ExperimentConfig,
    Results,
    TransportResult,
    label,
    load_results,
    machine,
    percentile,
    versions,
)
from .progress import progress_line
from .runner import expected_seconds, link_fields, measure_transport, quiet_needed, run_experiment
from .sweep import Sweep, expected_ms, sweep_rtt
from .timing import CLOCK, schedule, short_poll_interval

__all__ = [
    "TRANSPORTS",
    "ExperimentConfig",
    "TransportResult",
    "Results",
    "run_experiment",
    "measure_transport",
    "expected_seconds",
    "quiet_needed",
    "progress_line",
    "link_fields",
    "sweep_rtt",
    "Sweep",
    "expected_ms",
    "schedule",
    "load_results",
    "percentile",
    "TcpPushServer",
    "serve_tcp_push",
    "measure_tcp_floor",
    "Recorder",
    "CLOCK",
    "PUBLISHED_2010",
    "SCHEMA",
    "short_poll_interval",
    "label",
    "machine",
    "versions",
]

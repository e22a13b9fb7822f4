"""wslab's latency lab and an independent benchmark (benchmarks/bench_reference.py) measure alike.

The reference shares no transport code with wslab: its own asyncio TCP and
HTTP servers and clients, websockets for WebSocket. Both run the same seeded
schedule in one process, interleaved (reference and wslab alternate, the
order flipped every round), so the machine's load hurts them alike.

A test must pass on a busy machine as on an idle one, so this module checks
what load cannot change:

* the reference derives the same schedule from the same seeds;
* both sides deliver every timed event over every transport;
* no wslab transport is grossly off: its p50 ratio to its own TCP floor is
  within a factor of 5 of the reference's, or its p50 is within 1 ms (scaled
  by WSLAB_TIME_SCALE) of the reference's. A fault of design (a polling loop,
  Nagle's algorithm, a timer on the way) costs milliseconds on p50s of a
  tenth of one; load moves both sides alike and by much less than that.

The finer claim, each ratio within 25% of the reference's, is a timing claim
and lives in the benchmark, which prints PASS or MISS with the spread over
alternating rounds: ``python benchmarks/bench_reference.py --compare --rounds 5``.
(On a busy machine a 3-attempt version of that claim here failed 6 runs of 6:
issue 26.)
"""

from __future__ import annotations

import importlib.util
import math
import statistics
from pathlib import Path

import wslab
from wslab.lab.experiment import ExperimentConfig, schedule

from .conftest import TIME_SCALE, run

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("bench_reference", ROOT / "benchmarks" / "bench_reference.py")
reference = importlib.util.module_from_spec(spec)
assert spec.loader is not None
spec.loader.exec_module(reference)

EVENTS, GAP_MS, ROUNDS = 100, 5.0, 2
#: How far off a transport may be before it is a fault, not noise (see the module docstring).
FACTOR, SLACK_MS = 5.0, 1.0 * TIME_SCALE


def test_the_reference_derives_the_same_schedule_from_the_seeds():
    for seed in (1, 7):
        ours = schedule(ExperimentConfig(events=200, mean_gap_ms=GAP_MS, seed=seed))
        assert reference.reference_schedule(200, GAP_MS, seed) == ours


def test_every_transport_measures_within_a_factor_of_the_independent_reference():
    try:
        p50 = run(reference.interleaved(ROUNDS, EVENTS, GAP_MS, seed=1, warmup=5), timeout=120)
    finally:
        wslab.stop_all()
    # Every event arrived on both sides (wslab_p50 raises on a missing event; the
    # reference's clients stop only after EVENTS timed events), and every p50 is a time.
    for side in ("reference", "wslab"):
        assert set(p50[side]) == set(reference.KEYS)
        for key, values in p50[side].items():
            assert len(values) == ROUNDS and all(math.isfinite(v) and v > 0 for v in values), (side, key, values)
    off = reference.agreement(p50)
    assert set(off) == {"websocket", "sse", "long_poll"}
    report = ", ".join(
        f"{k}: wslab {statistics.median(p50['wslab'][k]):.3f} ms ({off[k]:.2f}x the reference's ratio), "
        f"reference {statistics.median(p50['reference'][k]):.3f} ms"
        for k in off
    )
    print(report)
    for key, ratio in off.items():
        gap = abs(statistics.median(p50["wslab"][key]) - statistics.median(p50["reference"][key]))
        assert 1 / FACTOR <= ratio <= FACTOR or gap <= SLACK_MS, f"{key} is off: {report}"

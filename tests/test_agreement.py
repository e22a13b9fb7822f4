"""wslab's latency lab agrees with an independent benchmark (benchmarks/bench_reference.py).

The reference shares no transport code with wslab: its own asyncio TCP and
HTTP servers and clients, websockets for WebSocket. Both run the same seeded
schedule in one process, interleaved (reference and wslab alternate, the
order flipped every round), so the machine's load hurts them alike. The p50
ratio of each transport to the raw TCP floor, median over the rounds, must
agree within 25%. On a loaded machine one attempt can be unlucky: a bounded
retry budget repeats the whole comparison (fresh rounds) at most twice.
"""

from __future__ import annotations

import importlib.util
import statistics
from pathlib import Path

import wslab
from wslab.experiment import ExperimentConfig, schedule

from .conftest import run

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("bench_reference", ROOT / "benchmarks" / "bench_reference.py")
reference = importlib.util.module_from_spec(spec)
assert spec.loader is not None
spec.loader.exec_module(reference)

EVENTS, GAP_MS, ROUNDS, ATTEMPTS, TOLERANCE = 100, 5.0, 3, 3, 0.25


def test_the_reference_derives_the_same_schedule_from_the_seeds():
    for seed in (1, 7):
        ours = schedule(ExperimentConfig(events=200, mean_gap_ms=GAP_MS, seed=seed))
        assert reference.reference_schedule(200, GAP_MS, seed) == ours


def test_p50_ratios_to_the_floor_agree_with_the_reference_within_25_percent():
    attempts = []
    for _ in range(ATTEMPTS):
        p50 = run(reference.interleaved(ROUNDS, EVENTS, GAP_MS, seed=1, warmup=5), timeout=120)
        ref = {k: statistics.median(v) for k, v in reference.ratios(p50["reference"]).items()}
        ours = {k: statistics.median(v) for k, v in reference.ratios(p50["wslab"]).items()}
        off = {k: ours[k] / ref[k] for k in ref}
        attempts.append((ref, ours, off))
        if all(abs(x - 1) <= TOLERANCE for x in off.values()):
            break
    wslab.stop_all()
    ref, ours, off = attempts[-1]
    report = "; ".join(
        ", ".join(f"{k} wslab {o[k]:.2f}x vs reference {r[k]:.2f}x" for k in r) for r, o, _ in attempts
    )
    print(f"agreement after {len(attempts)} attempt(s): {report}")
    assert all(abs(x - 1) <= TOLERANCE for x in off.values()), f"after {len(attempts)} attempt(s): {report}"
    assert set(off) == {"websocket", "sse", "long_poll"}

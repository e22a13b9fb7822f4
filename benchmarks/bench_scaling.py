"""The "why WebSockets" curve, repeated: server CPU and latency against clients, min / median / max.

    python benchmarks/bench_scaling.py                       # 10, 100, 500 clients, 3 repeats
    python benchmarks/bench_scaling.py --counts 10 50 --repeats 5 --events 20

Runs wslab.measure_scaling (the lab server on a thread here, the clients in a
process of their own, the server's CPU from the OS) REPEATS times with
different seeds, and prints for each transport and count the server's CPU
(share of one core), its CPU per HTTP request or per delivery, and the p50
latency, as min / median / max over the repeats; then the ratios measured in
each run: long polling's and short polling's server CPU over WebSocket's at
the same count. Absolute figures are noisy on a shared machine (the load
average is printed); compare ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wslab.scaling import TRANSPORTS, measure_scaling  # noqa: E402


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    return " / ".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[10, 100, 500])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--mean-gap", type=float, default=0.1)
    parser.add_argument("--poll-interval", type=float, default=0.5)
    args = parser.parse_args(argv)
    runs = []
    for r in range(args.repeats):
        table = measure_scaling(args.counts, events=args.events, mean_gap=args.mean_gap,
                                poll_interval=args.poll_interval, seed=r)
        print(f"repeat {r + 1} (load average {os.getloadavg()[0]:.1f})\n{table}\n", flush=True)
        runs.append({(p.transport, p.clients): p for p in table.points})

    print(f"min / median / max over {args.repeats} repeats; {args.events} events, mean gap {args.mean_gap:g} s, "
          f"short polling every {args.poll_interval:g} s")
    print(f"{'transport':>14}  {'clients':>7}  {'server cores':>18}  {'us/request or delivery':>24}  "
          f"{'p50 ms':>24}  {'client cores':>18}  lost  twice")
    for transport in TRANSPORTS:
        for n in args.counts:
            pts = [run[(transport, n)] for run in runs]
            cost = [p.us_per_request if p.requests else p.us_per_delivery for p in pts]
            print(f"{transport:>14}  {n:>7}  {spread([p.server_cores for p in pts], '{:.2f}'):>18}  "
                  f"{spread(cost, '{:.0f}'):>24}  {spread([p.p50_ms for p in pts]):>24}  "
                  f"{spread([p.client_cores for p in pts], '{:.2f}'):>18}  "
                  f"{sum(p.lost for p in pts):>4}  {sum(p.duplicated for p in pts):>5}")
    print("\nserver CPU over WebSocket's at the same count, per run (min / median / max):")
    for transport in ("long polling", "short polling"):
        for n in args.counts:
            ratios = [run[(transport, n)].server_cpu_s / run[("websocket", n)].server_cpu_s for run in runs]
            print(f"  {transport:>14} / websocket, {n:>4} clients: {spread(ratios)}")
    print(f"\n(cpu count {os.cpu_count()}; a shared machine: compare ratios, not absolute figures)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

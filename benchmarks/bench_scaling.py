"""The "why WebSockets" curve, repeated: server CPU and latency against clients, min / median / max.

    python benchmarks/bench_scaling.py                       # 10, 100, 500 clients, 3 repeats
    python benchmarks/bench_scaling.py --counts 10 50 --repeats 5 --events 20

Runs wslab.measure_scaling (servers of equal weight on threads here: the light
asyncio HTTP server for polling, websockets for push, and tornado's row; the
clients in a process of their own; the server's CPU from the OS) REPEATS times with
different seeds, and prints for each transport and count the server's CPU
(share of one core), its CPU per HTTP request or per delivery, and the p50
latency, as min / median / max over the repeats; then, per run, long
polling's server CPU per delivery over WebSocket's at the same count, with
PASS or MISS for the protocols' target (a WebSocket
delivery costs the server less than a long-poll answer, on servers of equal
weight), and what tornado adds per request. Absolute figures are noisy on a
shared machine (the load average is printed); compare ratios.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _verdict import machine_load, spread, verdict  # noqa: E402

from wslab.lab.scaling import TRANSPORTS, measure_scaling  # noqa: E402


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
    print(f"{'transport':>22}  {'clients':>7}  {'server cores':>18}  {'us/request or delivery':>24}  "
          f"{'p50 ms':>24}  {'client cores':>18}  lost  twice")
    for transport in TRANSPORTS:
        for n in args.counts:
            pts = [run[(transport, n)] for run in runs]
            cost = [p.us_per_request if p.requests else p.us_per_delivery for p in pts]
            print(f"{transport:>22}  {n:>7}  {spread([p.server_cores for p in pts], '{:.2f}'):>18}  "
                  f"{spread(cost, '{:.0f}'):>24}  {spread([p.p50_ms for p in pts]):>24}  "
                  f"{spread([p.client_cores for p in pts], '{:.2f}'):>18}  "
                  f"{sum(p.lost for p in pts):>4}  {sum(p.duplicated for p in pts):>5}")
    print(f"\nper repeat ({machine_load()}; a shared machine: compare ratios, not absolute figures)")
    ok = True
    for n in args.counts:
        # The protocols' target: a WebSocket delivery (a frame into an open connection) costs the server
        # less than a long-poll answer (a request parsed, a response with headers), on servers of equal weight.
        ok &= verdict(f"long polling / websocket, server CPU per delivery, {n} clients",
                      [run[("long polling", n)].us_per_delivery / run[("websocket", n)].us_per_delivery
                       for run in runs], at_least=1.0)
    for n in args.counts:
        ratios = [run[("long polling, tornado", n)].us_per_request / run[("long polling", n)].us_per_request
                  for run in runs]
        print(f"  what a framework adds: tornado / light server, CPU per long-poll request, {n} clients: "
              f"{spread(ratios)} (min / median / max)")
    ok &= verdict("deliveries lost or twice, every transport and count",
                  [float(p.lost + p.duplicated) for run in runs for p in run.values()], at_most=0, fmt="{:.0f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

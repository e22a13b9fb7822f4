"""Broadcast fan-out: time for one chat message to reach 100, 500 and 1,000 clients.

The room (wslab.chat_room_in_thread) runs on one thread's loop, the simulated
clients on another's, in this process. Prints the median over ROUNDS of the
time until the first, median and last client has the message, and the ratio
of each count's "last" to the smallest count's, measured in this one run.

    python benchmarks/bench_broadcast.py [ROUNDS] [COUNTS...]
"""

from __future__ import annotations

import os
import sys

from wslab.chat import measure_fanout


def main(argv: list[str]) -> int:
    rounds = int(argv[0]) if argv else 7
    counts = [int(n) for n in argv[1:]] or [100, 500, 1000]
    table = measure_fanout(counts, rounds=rounds, timeout=60)
    print(table)
    base = float(table.rows[0][3])
    print()
    print(f"last-client time relative to {table.rows[0][0]} clients (same run):")
    for n, _, _, last in table.rows:
        print(f"  {n:>5} clients: x{float(last) / base:.1f}  ({float(last) / n * 1000:.1f} us per client)")
    print(f"\n(cpu count {os.cpu_count()}; numbers are noisy on a shared machine: compare ratios)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

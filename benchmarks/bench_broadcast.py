"""Broadcast fan-out: time for one chat message to reach 100, 500 and 1,000 clients.

The room (wslab.chat_room_in_thread) runs on a thread's loop in this process,
the simulated clients on a loop of their own in a child process (so they never
share a GIL with the room); the room stamps the time just before broadcast(),
the child stamps each arrival (time.perf_counter() is one clock for the whole
machine). Prints the median over ROUNDS of the time until the first, median
and last client has the message, and the ratio of each count's "last" to the
smallest count's, measured in this one run.

    python benchmarks/bench_broadcast.py [ROUNDS] [COUNTS...]
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from wslab.chat import measure_fanout  # noqa: E402


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

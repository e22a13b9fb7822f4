"""Broadcast fan-out: the chat room's server-side cost against bare websockets.broadcast(), in one run.

    python benchmarks/bench_broadcast.py [ROUNDS] [COUNTS...]     # default: 7 rounds, 100 500 1000

The room (wslab.chat_room_in_thread) runs on a thread's loop in this process,
the simulated clients on a loop of their own in a child process
(wslab.fanout.measure_fanout). Each round times, on the room's loop:

* the room's own fan-out (``room._publish``: json.dumps, ``broadcast()`` through
  wslab's guarded connections, which check each member's buffer) until it returns (wall time, and the room thread's CPU time,
  which a busy machine inflates less), and
* bare ``websockets.broadcast()`` of the same kind of message to the same
  connections, in a round of its own right after,

so the ratio room / bare is measured in the same run, round by round. It
also prints when the first and last client had the message, with the
clients' process CPU load during the round beside it: the last client's time
depends on how fast that one process reads hundreds of sockets (and on what
else the machine runs), so it is not a measure of the server alone.

Prints min / median / max over the rounds, and PASS or MISS for room / bare CPU (target: at
most 1.25 per count from 100 clients on, on the median). Absolute figures are noisy on a
shared machine; compare the ratios.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _verdict import machine_load, spread, verdict  # noqa: E402

from wslab.classroom.chat import measure_fanout  # noqa: E402

#: The room's CPU for one message over bare websockets broadcast()'s to the same connections: what the
#: room adds (a member check and the guard's buffer check per connection). At most a quarter more, from
#: 100 clients on (lesson 05 quotes medians of 1.02-1.13 there).
TARGET = 1.25


def main(argv: list[str]) -> int:
    rounds = int(argv[0]) if argv else 7
    counts = [int(n) for n in argv[1:]] or [100, 500, 1000]
    table = measure_fanout(counts, rounds=rounds, timeout=60)
    raw = table.raw
    print(table)
    print()
    print(f"server side, until broadcast() returns (min / median / max over {rounds} rounds):")
    print(f"{'clients':>7}  {'room wall us':>22}  {'bare wall us':>22}  {'room CPU us/client':>20}  "
          f"{'bare CPU us/client':>20}  {'room / bare CPU':>18}")
    for n in counts:
        rs = raw[n]
        print(f"{n:>7}  {spread([r['room_us'] for r in rs], '{:.0f}'):>22}  "
              f"{spread([r['bare_us'] for r in rs], '{:.0f}'):>22}  "
              f"{spread([r['room_cpu_us'] / n for r in rs]):>20}  {spread([r['bare_cpu_us'] / n for r in rs]):>20}  "
              f"{spread([r['room_cpu_us'] / r['bare_cpu_us'] for r in rs], '{:.2f}'):>18}")
    print()
    print("client side, when the first and the last client had it, and the clients' process load:")
    print(f"{'clients':>7}  {'first ms':>20}  {'last ms':>22}  {'client process cores':>22}")
    for n in counts:
        rs = raw[n]
        print(f"{n:>7}  {spread([r['first'] * 1000 for r in rs], '{:.2f}'):>20}  "
              f"{spread([r['last'] * 1000 for r in rs], '{:.2f}'):>22}  "
              f"{spread([r['client_cores'] for r in rs], '{:.2f}'):>22}")
    print("\n(the last-client time includes the clients' process reading every socket: near 1.0 core it is")
    print(" that process, not the server, that sets it)")
    print(f"({machine_load()}; numbers are noisy on a shared machine: compare ratios)")
    ok = True
    for n in counts:
        ratios = [r["room_cpu_us"] / r["bare_cpu_us"] for r in raw[n]]
        if n >= 100:  # the target's counts: below them the room's per-message work weighs on too few clients
            ok &= verdict(f"room / bare broadcast() CPU, {n} clients, per round", ratios, at_most=TARGET)
        else:
            print(f"room / bare broadcast() CPU, {n} clients: {spread(ratios)} (the target is for 100 or more)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

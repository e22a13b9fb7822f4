"""What a flood of half-open TLS handshakes costs a wslab TLS listener, and whether memory comes back.

    python benchmarks/bench_tls_flood.py              # 1,100 sockets, 3 runs, about a minute and a half
    python benchmarks/bench_tls_flood.py --quick      # 300 sockets, 1 run, 2 s handshake timeout

A child process runs ``wslab.production.tls.serve_tls`` (an echo); this process opens
``--sockets`` TCP connections to it that never send a ClientHello, holds them
until the listener's handshake timeout (``open_timeout``) has passed, closes
them, then reads the child's RSS (``/proc/<pid>/status``) until it settles or
``open_timeout * 3 + 5`` seconds pass. Reported per run: RSS at the start,
at the peak, and at the end, and the listener's count of reclaims
(``srv.guard.stats["reclaimed: failed handshakes"]``). See wslab/production/tls.py's design note
for why the memory needs a full garbage collection to come back (a reference
cycle per failed handshake on CPython 3.11) and what the listener does: it
holds at most ``max_handshakes`` (128) sockets in their handshake and cuts or
refuses the rest, so "peak growth per socket opened" is an average over all.
Target: the end within 25 MB of the start.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import textwrap
import time

from _verdict import verdict  # this script's folder is on sys.path

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    import wslab
    from wslab import tls

    async def echo(connection):
        async for message in connection:
            await connection.send(message)

    async def main():
        srv = await tls.serve_tls(echo, "flood", ca=tls.make_ca(),
                                  limits=wslab.Limits(open_timeout=float(sys.argv[1])))
        print(srv.port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        print(srv.guard.stats["reclaimed: failed handshakes"], flush=True)
        await srv.aclose()

    asyncio.run(main())
    """
)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def one_run(sockets: int, open_timeout: float) -> tuple[float, float, float, int]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(open_timeout)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=env)
    held: list[socket.socket] = []
    try:
        port = int(child.stdout.readline())
        start = rss_mb(child.pid)
        t0 = time.monotonic()
        held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(sockets)]
        peak = rss_mb(child.pid)
        while time.monotonic() < t0 + open_timeout:  # bounded: the handshake timeout
            peak = max(peak, rss_mb(child.pid))
            time.sleep(0.1)
        for sock in held:
            sock.close()
        end, deadline = rss_mb(child.pid), time.monotonic() + open_timeout * 3 + 5
        while end > start + 25 and time.monotonic() < deadline:  # bounded: until it settles
            time.sleep(0.2)
            end = rss_mb(child.pid)
        child.stdin.write("\n")
        child.stdin.flush()
        reclaims = int(child.stdout.readline())
        return start, peak, end, reclaims
    finally:
        for sock in held:
            sock.close()
        child.stdin.close()
        child.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sockets", type=int, default=None, help="half-open sockets per run (default 1,100)")
    parser.add_argument("--runs", type=int, default=None, help="runs (default 3)")
    parser.add_argument("--open-timeout", type=float, default=None, help="the listener's open_timeout, s (default 10)")
    parser.add_argument("--quick", action="store_true", help="300 sockets, 1 run, 2 s timeout")
    args = parser.parse_args()
    sockets = args.sockets or (300 if args.quick else 1100)
    runs = args.runs or (1 if args.quick else 3)
    open_timeout = args.open_timeout or (2.0 if args.quick else 10.0)
    print(f"{sockets} half-open TLS sockets, open_timeout {open_timeout:g} s, {runs} run(s); "
          f"Python {sys.version.split()[0]}, load {os.getloadavg()[0]:.2f}")
    results = [one_run(sockets, open_timeout) for _ in range(runs)]
    print(f"{'run':>4} {'start MB':>9} {'peak MB':>8} {'end MB':>7} {'reclaims':>9}")
    for i, (start, peak, end, reclaims) in enumerate(results, 1):
        print(f"{i:>4} {start:>9.1f} {peak:>8.1f} {end:>7.1f} {reclaims:>9}")
    per_socket = statistics.median((peak - start) * 1024 / sockets for start, peak, _, _ in results)
    worst = max(end - start for start, _, end, _ in results)
    print(f"peak growth per socket opened: {per_socket:.0f} KiB (median); end minus start, worst run: {worst:.1f} MB")
    verdict("memory back near the start after the flood (end - start)", [end - start for start, _, end, _ in results],
            at_most=25, fmt="{:.1f}", unit=" MB", why=f"worst run {worst:.1f} MB")


if __name__ == "__main__":
    main()

"""What the wiretap costs: echo round trips and bulk throughput, direct versus through a tap.

    python benchmarks/bench_wiretap.py            # about ten seconds
    python benchmarks/bench_wiretap.py --quick

Everything is measured in one run on the same machine, so read the ratios,
not the absolute figures. Targets: a tap (task mode, same loop as client and
server) adds well under 1 ms to a small echo round trip on loopback (the
polling lessons compare transports that differ by far more), and relays bulk
data at 100 MB/s or more, so capturing never dominates a lesson's traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _verdict import machine_load, verdict  # noqa: E402

from websockets.asyncio.client import connect  # noqa: E402

import wslab  # noqa: E402


async def round_trips(url: str, count: int) -> list[float]:
    async with connect(url, compression=None) as ws:
        times = []
        for i in range(count):
            started = time.perf_counter()
            await ws.send(f"tick {i}")
            await ws.recv()
            times.append(time.perf_counter() - started)
        return times


async def bulk(host: str, port: int, size: int) -> float:
    """Seconds to push ``size`` bytes to a discard server and see it close."""
    reader, writer = await asyncio.open_connection(host, port)
    block = b"x" * 65536
    started = time.perf_counter()
    for _ in range(size // len(block)):
        writer.write(block)
        await writer.drain()
    writer.write_eof()
    await reader.read()  # the server closes once it has read everything
    elapsed = time.perf_counter() - started
    writer.close()
    return elapsed


async def main(quick: bool) -> int:
    count = 300 if quick else 2000
    size = (16 if quick else 128) * 1024 * 1024
    repeats = 3 if quick else 5

    srv = await wslab.serve(wslab.handlers.echo, name="bench-echo", compression=None)
    tap = await wslab.wiretap(srv, name="bench-tap")
    await round_trips(srv.url, 50)  # warm up
    added, ratios = [], []
    for r in range(repeats):  # alternating, the order flipped every repeat
        got = {}
        for name, url in ((("direct", srv.url), ("tap", tap.url)) if r % 2 == 0 else (("tap", tap.url), ("direct", srv.url))):
            got[name] = statistics.median(await round_trips(url, count // repeats)) * 1000
        added.append(got["tap"] - got["direct"])
        ratios.append(got["tap"] / got["direct"])

    async def discard(reader, writer):
        while await reader.read(65536):
            pass
        writer.close()

    sink = await asyncio.start_server(discard, "127.0.0.1", 0)
    sink_port = sink.sockets[0].getsockname()[1]
    bulk_tap = await wslab.wiretap(("127.0.0.1", sink_port), name="bench-bulk", max_capture=1024 * 1024)
    part = size // repeats // 65536 * 65536  # whole blocks
    speeds, counted = [], []
    for _ in range(repeats):
        before = bulk_tap.bytes_up
        speeds.append(part / 1e6 / await bulk(bulk_tap.host, bulk_tap.port, part))
        counted.append(bulk_tap.bytes_up - before)
    bulk_direct = part / 1e6 / await bulk("127.0.0.1", sink_port, part)

    sink.close()
    await wslab.aclose_all()

    print(f"echo round trips, {count // repeats} per repeat, {repeats} alternating repeats; {machine_load()}")
    print(f"bulk {part / 1e6:.0f} MB direct (once, for scale): {bulk_direct:.0f} MB/s")
    ok = verdict("echo round trip, what the tap adds, per repeat", added, at_most=1.0, fmt="{:.3f}", unit=" ms")
    print(f"  (tap / direct per repeat: {min(ratios):.2f} / {statistics.median(ratios):.2f} / {max(ratios):.2f})")
    ok &= verdict(f"bulk {part / 1e6:.0f} MB through the tap, per repeat", speeds, at_least=100, fmt="{:.0f}",
                  unit=" MB/s")
    ok &= verdict("bytes the tap counted, off by, per repeat", [abs(c - part) for c in counted], at_most=0,
                  fmt="{:.0f}")
    return 0 if ok else 1

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer round trips, less data")
    sys.exit(asyncio.run(main(parser.parse_args().quick)))

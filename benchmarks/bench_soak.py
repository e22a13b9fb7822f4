"""Soak: the class chat room with 1,000 members for a few minutes, some of them hostile.

The room (wslab.chat_room_in_thread, the classroom's settings: history 100,
max_size 4096, max_buffer 256 KiB, keepalive 20 s / 20 s) runs in this
process; the members run in a child process ("spawn"), on one asyncio loop:

* live members: websockets clients that read everything; ten of them also
  chat every two seconds;
* stalled members: raw sockets with a 4 KiB receive buffer that read their
  handshake and then nothing (they never answer a ping);
* ping flooders: raw sockets that stop reading and send pings as fast as the
  server takes them.

A hostile member that the room closes comes back after half a second, so the
pressure lasts the whole run. The room says ``soak <seq> <t0>`` RATE times a
second (``t0`` its ``time.perf_counter()`` just before ``say()``); every live
member stamps each arrival when its bytes are read (before parsing;
``perf_counter`` is one clock for the machine). Reported: delivery (every
live member must have every message, in order, once), the fan-out time of a
message (until the last live member has it) p50 / p99 / max, the room's RSS
(this process, from /proc) at the start, its peak and at the end, and what
the guard closed.

    python benchmarks/bench_soak.py            # 1,000 members, 180 s
    python benchmarks/bench_soak.py --quick    # 200 members, 20 s
    python benchmarks/bench_soak.py --members 1000 --seconds 300 --stalled 5 --flooders 5

Numbers are noisy on a shared machine: the delivery figures are exact, the
times and memory are one run's.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import socket
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _verdict import machine_load, verdict  # noqa: E402

import wslab  # noqa: E402
from wslab.classroom.fanout import _StampedConnection, raise_fd_limit  # noqa: E402

PING = bytes([0x89, 0x80 | 125]) + b"\0\0\0\0" + b"p" * 125


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


# The members' process


async def _raw_member(port: int, nick: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port)), 10)
    reader, writer = await asyncio.open_connection(sock=sock)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(f"GET /?nick={nick} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    writer.transport.pause_reading()
    return reader, writer


async def _hostile(port: int, nick: str, flood: bool, stop: asyncio.Event, counts: dict[str, int]) -> None:
    """Join, misbehave until the room closes us, come back; until ``stop``."""
    while not stop.is_set():
        try:
            reader, writer = await _raw_member(port, nick)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            await asyncio.sleep(0.5)
            continue
        counts["joins"] += 1
        try:
            if flood:
                chunk = PING * 200
                while not stop.is_set() and not writer.transport.is_closing():
                    writer.write(chunk)
                    await asyncio.wait_for(writer.drain(), 5)
                    counts["ping bytes"] += len(chunk)
            else:
                await stop.wait()
            if not stop.is_set():
                counts["closed by the room"] += 1
        except (OSError, asyncio.TimeoutError):
            counts["closed by the room"] += 1
        finally:
            writer.transport.abort()
        await asyncio.sleep(0.5)


class _Live:
    """A live member's record: the teacher's messages it got, and when."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.last = -1
        self.got = 0
        self.out_of_order = 0
        self.closed: str | None = None


async def _members_main(conn: Any) -> None:
    command, (url, port, n_live, n_stalled, n_flood) = conn.recv()
    assert command == "start"
    stop = asyncio.Event()
    counts: dict[str, int] = {"joins": 0, "ping bytes": 0, "closed by the room": 0}
    arrivals: dict[int, list[float]] = {}  # seq -> delays of every live member
    live: list[_Live] = []

    async def read(member: _Live) -> None:
        try:
            async for data in member.ws:
                event = json.loads(data)
                if event.get("type") != "message" or event.get("role") != "instructor":
                    continue
                _, seq_text, t0, _ = event["text"].split(" ", 3)
                seq, delay = int(seq_text), member.ws.received_at - float(t0)
                arrivals.setdefault(seq, []).append(delay)
                if seq != member.last + 1:
                    member.out_of_order += 1
                member.last = seq
                member.got += 1
        except Exception as exc:  # noqa: BLE001 - reported
            member.closed = repr(exc)
        else:
            member.closed = "closed"

    async def chatter(member: _Live, i: int) -> None:
        k = 0
        while not stop.is_set():
            await asyncio.sleep(2)
            k += 1
            try:
                await member.ws.send(f"student {i} says {k}")
            except Exception:  # noqa: BLE001 - the reader reports the close
                return

    for start in range(0, n_live, 50):
        opened = await asyncio.gather(*(
            wslab_connect(f"{url}?nick=live{i}") for i in range(start, min(n_live, start + 50))))
        for ws in opened:
            await asyncio.wait_for(ws.recv(), 20)  # the welcome
            live.append(_Live(ws))
    tasks = [asyncio.ensure_future(read(m)) for m in live]
    tasks += [asyncio.ensure_future(chatter(m, i)) for i, m in enumerate(live[:10])]
    tasks += [asyncio.ensure_future(_hostile(port, f"stalled{i}", False, stop, counts)) for i in range(n_stalled)]
    tasks += [asyncio.ensure_future(_hostile(port, f"flooder{i}", True, stop, counts)) for i in range(n_flood)]
    conn.send(("ready", len(live)))
    cpu0 = time.process_time()
    command, sent = await asyncio.to_thread(conn.recv)
    cpu = time.process_time() - cpu0
    assert command == "stop"
    deadline = time.monotonic() + 10
    while any(m.last < sent - 1 and m.closed is None for m in live) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for m in live:
        m.ws.transport.abort()
    fanout = [max(d) for seq, d in sorted(arrivals.items())]
    deliveries = sorted(x for d in arrivals.values() for x in d)
    conn.send(("report", {
        "live": len(live),
        "complete": sum(1 for m in live if m.got == sent and m.out_of_order == 0),
        "missing": sum(sent - m.got for m in live),
        "out_of_order": sum(m.out_of_order for m in live),
        "closed_live": [m.closed for m in live if m.closed is not None][:5],
        "fanout": fanout,
        "delivery_p50": statistics.median(deliveries) if deliveries else None,
        "delivery_p99": deliveries[int(0.99 * (len(deliveries) - 1))] if deliveries else None,
        "hostile": counts,
        "cpu_s": cpu,
    }))


def wslab_connect(url: str) -> Any:
    from websockets.asyncio.client import connect

    return connect(url, open_timeout=20, ping_interval=20, ping_timeout=60, max_size=None,
                   create_connection=_StampedConnection)


def _members(conn: Any, needed_fds: int) -> None:
    try:
        raise_fd_limit(needed_fds)
        asyncio.run(_members_main(conn))
    finally:
        conn.close()


# The room's process


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 members for 20 s")
    parser.add_argument("--members", type=int, default=None, help="members in all (default 1000)")
    parser.add_argument("--seconds", type=float, default=None, help="how long the soak runs (default 180)")
    parser.add_argument("--stalled", type=int, default=5)
    parser.add_argument("--flooders", type=int, default=5)
    parser.add_argument("--rate", type=float, default=4.0, help="teacher messages a second (default 4)")
    args = parser.parse_args(argv)
    members = args.members or (200 if args.quick else 1000)
    duration = args.seconds or (20.0 if args.quick else 180.0)
    n_live = members - args.stalled - args.flooders
    raise_fd_limit(members + 512)
    room = wslab.chat_room_in_thread("soak", room="soak", history=100,
                                     limits=wslab.Limits(max_connections=members + 100))
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_members, args=(child, members + 512), daemon=True)
    proc.start()
    child.close()
    try:
        parent.send(("start", (room.url, room.server.port, n_live, args.stalled, args.flooders)))
        if not parent.poll(120):
            raise TimeoutError("the members did not join within 120 s")
        kind, joined = parent.recv()
        assert kind == "ready", kind
        print(f"{joined} live members joined, plus {args.stalled} stalled and {args.flooders} ping flooders; "
              f"soaking for {duration:.0f} s at {args.rate:g} messages/s")
        rss_start = peak = rss_mb()
        cpu0, load0 = time.process_time(), os.getloadavg()[0]
        assert room.server._loop is not None
        sent, t_start, next_at = 0, time.monotonic(), time.monotonic()
        while time.monotonic() - t_start < duration:
            def say(seq: int = sent) -> None:
                room.say(f"soak {seq} {time.perf_counter()!r} " + "x" * 400)

            room.server._loop.call_soon_threadsafe(say)
            sent += 1
            next_at += 1 / args.rate
            peak = max(peak, rss_mb())
            time.sleep(max(0.0, next_at - time.monotonic()))
        rss_end = rss_mb()
        room_cpu, soaked = time.process_time() - cpu0, time.monotonic() - t_start
        load1 = os.getloadavg()[0]
        parent.send(("stop", sent))
        if not parent.poll(60):
            raise TimeoutError("the members did not report within 60 s")
        kind, report = parent.recv()
        stats = dict(room.server.guard.stats)
        dropped = len(room.dropped)
    finally:
        room.stop()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
    fanout = sorted(report["fanout"])
    def pct(q: float) -> float:
        return fanout[int(q * (len(fanout) - 1))] * 1000
    print()
    print(f"delivery: {report['complete']} of {report['live']} live members got all {sent} messages in order; "
          f"{report['missing']} missing, {report['out_of_order']} out of order")
    if report["closed_live"]:
        print(f"  live members closed: {report['closed_live']}")
    print(f"fan-out (until the last live member has it), over {len(fanout)} messages: "
          f"p50 {pct(0.5):.1f} ms, p99 {pct(0.99):.1f} ms, max {fanout[-1] * 1000:.1f} ms")
    print(f"one delivery: p50 {report['delivery_p50'] * 1000:.1f} ms, p99 {report['delivery_p99'] * 1000:.1f} ms")
    print(f"room RSS: start {rss_start:.0f} MB, peak {peak:.0f} MB, end {rss_end:.0f} MB "
          f"(end - start {rss_end - rss_start:+.1f} MB)")
    print(f"hostile members: {report['hostile']['joins']} joins, {report['hostile']['closed by the room']} closed "
          f"while misbehaving, {report['hostile']['ping bytes'] / 1e6:.0f} MB of pings sent")
    print(f"the room's guard: {stats}; dropped from the room: {dropped}")
    print(f"CPU over the soak: the room's process {room_cpu / soaked:.2f} cores, the members' process "
          f"{report['cpu_s'] / soaked:.2f} cores; machine load average {load0:.1f} at the start, {load1:.1f} at the end")
    print(f"\n({machine_load()}; one run on a shared machine: times and memory are noisy)")
    # The target: every live member gets every message, in order, once (exact, whatever the load).
    ok = verdict("live members without every message in order", [float(report["live"] - report["complete"])],
                 at_most=0, fmt="{:.0f}")
    ok &= verdict("messages missing or out of order, over every live member",
                  [float(report["missing"] + report["out_of_order"])], at_most=0, fmt="{:.0f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

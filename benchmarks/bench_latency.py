"""WebSocket push through wslab's lab server against the raw asyncio TCP floor, in one run.

    python benchmarks/bench_latency.py              # 900 Poisson events, mean gap 20 ms, 3 rounds
    python benchmarks/bench_latency.py --events 300 --rounds 1

Prints the medians and their ratios (targets: WebSocket p50 within 1.5x of the
raw TCP floor measured in the same run; the runner's bookkeeping under 10 us
per event, timed over several repeats: median and spread). Also measures bare websockets (a push handler on wslab.serve_in_thread,
no lab server) to show what the lab server adds. The rounds interleave the
transports so a busy machine hurts them alike; compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _options import schedule_parser  # noqa: E402
from _verdict import difference, machine_load, spread, verdict  # noqa: E402

from websockets.asyncio.client import connect  # noqa: E402

import wslab  # noqa: E402
from wslab.lab.events import Event  # noqa: E402
from wslab.lab.experiment import CLOCK, ExperimentConfig, Recorder, percentile, run_experiment, schedule  # noqa: E402


WARM = 5  # events left out of the statistics of the bare clients below (warm-up)


async def bare_websockets(config: ExperimentConfig) -> tuple[list[float], list[float]]:
    """Push the schedule with a plain websockets handler on a server thread: no lab server.

    Returns the latencies and, per event, the part spent in the client
    process after the bytes arrived (``data_received`` to ``recv()``
    returning: frame parsing, UTF-8, the hand-off to the reading task), ms.
    """
    gaps, payloads = schedule(config)

    async def push(connection) -> None:
        loop = asyncio.get_running_loop()
        start, due = loop.time(), 0.0
        for seq, (gap, payload) in enumerate(zip(gaps, payloads), start=1):
            due += gap
            await asyncio.sleep(max(0.0, start + due - loop.time()))
            await connection.send(Event(seq, CLOCK(), payload).dumps())
        await connection.close()

    srv = wslab.serve_in_thread(push, name="bench-bare-websockets", compression=None)
    rec, client_part = Recorder(), []
    try:
        async with connect(srv.url, compression=None) as ws:
            arrived = [0.0]
            original = ws.data_received

            def data_received(data: bytes) -> None:  # the bytes reach the client process
                arrived[0] = CLOCK()
                original(data)

            ws.data_received = data_received  # the transport looks it up on each call
            async for message in ws:
                received = CLOCK()
                event = Event.from_json(message)
                rec.record(event.seq, event.created, received)
                client_part.append((received - arrived[0]) * 1000)
    finally:
        srv.stop()
    return rec.latencies_ms()[WARM:], client_part[WARM:]


async def bare_floor(config: ExperimentConfig) -> tuple[list[float], list[float]]:
    """The floor's server with a client that also stamps when the bytes reach the process."""
    from wslab.lab.experiment.floor import serve_tcp_push

    server = serve_tcp_push(config, name="bench-bare-floor")
    rec, client_part = Recorder(), []
    try:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        protocol = writer.transport.get_protocol()
        arrived = [0.0]
        original = protocol.data_received

        def data_received(data: bytes) -> None:
            arrived[0] = CLOCK()
            original(data)

        protocol.data_received = data_received
        writer.write(b"go\n")
        await reader.readline()  # ready
        while line := await reader.readline():
            received = CLOCK()
            event = Event.from_json(line)
            rec.record(event.seq, event.created, received)
            client_part.append((received - arrived[0]) * 1000)
        writer.close()
    finally:
        await server.aclose()
    return rec.latencies_ms()[WARM:], client_part[WARM:]


def bookkeeping_us(n: int = 100_000) -> dict[str, float]:
    """Time the per-event record paths once, microseconds per event."""
    from wslab.lab.experiment.clients import LightResult, _Timed

    rec = Recorder()
    t0 = time.perf_counter()
    for i in range(n):
        rec.record(i, 1.0, 2.0)
    floor = (time.perf_counter() - t0) / n * 1e6

    run = _Timed(LightResult("websocket"), n, 0, None, None)
    run.ready(0)
    t0 = time.perf_counter()
    for seq in range(1, n + 1):
        run.take(seq, 1.0, 2.0)
    take = (time.perf_counter() - t0) / n * 1e6

    line = Event(1, 1.0, {"value": 101.5}).dumps().encode()
    t0 = time.perf_counter()
    for _ in range(n // 4):
        Event.from_json(line)
    parse = (time.perf_counter() - t0) / (n // 4) * 1e6
    return {"Recorder.record (floor)": floor, "clients _Timed.take (lab clients)": take,
            "Event.from_json (parsing, protocol work)": parse}


def bookkeeping_repeated(repeats: int = 7) -> dict[str, list[float]]:
    """:func:`bookkeeping_us` ``repeats`` times: one figure per repeat, per path."""
    runs = [bookkeeping_us() for _ in range(repeats)]
    return {name: [r[name] for r in runs] for name in runs[0]}


async def main(args: argparse.Namespace) -> int:
    config = ExperimentConfig(events=args.events, mean_gap_ms=args.mean_gap_ms, seed=1,
                              transports=["tcp_floor", "websocket"])
    p50 = {"tcp_floor": [], "websocket": [], "bare websockets": []}
    p99 = {"tcp_floor": [], "websocket": [], "bare websockets": []}
    ratios = []
    split: dict[str, list[tuple[float, float]]] = {"raw TCP": [], "bare websockets": []}
    for rnd in range(args.rounds):
        results = await run_experiment(config, bytes_pass=False, progress=False)
        bare, bare_client = await bare_websockets(config)
        floor_lat, floor_client = await bare_floor(config)
        split["bare websockets"].append((percentile(bare, 50), statistics.median(bare_client)))
        split["raw TCP"].append((percentile(floor_lat, 50), statistics.median(floor_client)))
        for key in ("tcp_floor", "websocket"):
            p50[key].append(results[key].p50_ms)
            p99[key].append(results[key].p99_ms)
            assert results[key].missing == [], (key, results[key].missing[:5])
        p50["bare websockets"].append(percentile(bare, 50))  # noqa: E501
        p99["bare websockets"].append(percentile(bare, 99))
        ratios.append(results["websocket"].p50_ms / results["tcp_floor"].p50_ms)
        print(f"round {rnd + 1}: tcp {p50['tcp_floor'][-1]:.3f} ms, websockets bare "
              f"{p50['bare websockets'][-1]:.3f} ms, wslab lab server {p50['websocket'][-1]:.3f} ms "
              f"-> ratio {ratios[-1]:.2f}x", flush=True)
    print()
    print(f"machine: {machine_load()} (shared with other jobs: compare ratios)")
    print(f"{config.events} Poisson events per run, mean gap {config.mean_gap_ms:g} ms, {args.rounds} round(s)")
    print(f"{'transport':<28}{'p50 ms (median of rounds)':>28}{'p99 ms':>10}")
    for key in p50:
        print(f"{key:<28}{statistics.median(p50[key]):>28.3f}{statistics.median(p99[key]):>10.3f}")
    ratio = statistics.median(ratios)
    bare_ratios = [b / t for b, t in zip(p50["bare websockets"], p50["tcp_floor"])]
    bare_ratio = statistics.median(bare_ratios)
    print()
    ok = verdict("WebSocket (wslab lab server) p50 / raw TCP p50, per round", ratios, at_most=1.5)
    print(f"bare websockets p50 / raw TCP p50, per round: {spread(bare_ratios)} (min / median / max)")
    print("\nwhere the time goes (p50 of the events, median of rounds): server and kernel = created to the")
    print("bytes reaching the client process (data_received); client = from there to the application")
    for key, parts in split.items():
        total = statistics.median(p for p, _ in parts)
        client = statistics.median(c for _, c in parts)
        print(f"  {key:<18} total {total:.3f} ms = server and kernel {total - client:.3f} + client {client:.3f} ms")
    difference("  what the lab server's push adds to bare websockets (its event source, one wake-up)",
               [w - b for w, b in zip(p50["websocket"], p50["bare websockets"])], p50["bare websockets"])
    print(f"\nbookkeeping per event, us, min / median / max of {args.bookkeeping_repeats} repeats:")
    costs = bookkeeping_repeated(args.bookkeeping_repeats)
    for name, us in costs.items():
        print(f"  {name:<44}{spread(us):>24}")
    for name in ("Recorder.record (floor)", "clients _Timed.take (lab clients)"):
        ok &= verdict(f"runner bookkeeping, {name}", costs[name], at_most=10, unit=" us/event")
    if args.json:
        Path(args.json).write_text(json.dumps({"p50": p50, "p99": p99, "ratio": ratio,
                                               "bare_ratio": bare_ratio, "bookkeeping_us": costs}, indent=1))
    wslab.stop_all()
    return 0 if ok else 1


if __name__ == "__main__":
    parser = schedule_parser(__doc__, events=900, rounds=3, seeded=False)
    parser.add_argument("--bookkeeping-repeats", type=int, default=7)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    sys.exit(asyncio.run(main(parser.parse_args())))

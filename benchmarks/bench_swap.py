"""Which side of the lab's HTTP transports costs what: each client against each server, alternating.

    python benchmarks/bench_swap.py                          # long polling and SSE, 300 events, 5 rounds
    python benchmarks/bench_swap.py --events 200 --rounds 7 --keys long_poll

``bench_reference.py --compare`` says whether wslab's long polling and SSE
agree with an independent benchmark; this says where a difference sits. For
each transport and round it runs four pairs on the same seeded schedule, in
an order that flips every round: the reference's client against the
reference's server (the baseline of that round), the reference's client
against wslab's light server (:mod:`wslab.lab.experiment.httpserver`), wslab's
light client (:mod:`wslab.lab.experiment.clients`) against the reference's
server, and wslab against wslab. Each pair's p50 is divided by the
baseline's of the same round, so a busy machine moves both alike.

Target: every pair within 25% of the reference pair, on the median of the
rounds (the same tolerance as ``bench_reference.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import bench_reference as ref  # noqa: E402
from _options import schedule_parser  # noqa: E402
from _verdict import machine_load, spread, verdict  # noqa: E402

from wslab.lab.experiment.clients import receive as light_receive  # noqa: E402
from wslab.lab.experiment.httpserver import light_http_server  # noqa: E402
from wslab.lab.experiment.timing import CLOCK  # noqa: E402

PAIRS = (("reference", "reference"), ("reference", "wslab"), ("wslab", "reference"), ("wslab", "wslab"))


def _server(side: str, gaps: list[float], payloads: list[Any], warmup: int
            ) -> tuple[int, Callable[[], Any], Callable[[], Any], Callable[[], None]]:
    """(port, publish the warm-up, start the schedule, stop) for one side's server."""
    if side == "reference":
        thread, pub = ref.ServerThread(), ref.Publisher()
        srv = thread.call(asyncio.start_server(ref._http_handler(pub), "127.0.0.1", 0))
        loop = thread.loop
        tasks: list[Any] = []

        def run(g: list[float], p: list[Any]) -> None:
            loop.call_soon_threadsafe(lambda: tasks.append(loop.create_task(pub.run(g, p))))

        def stop() -> None:
            try:
                thread.call(thread.close(srv, tasks), timeout=5)
            finally:
                thread.stop()

        return (srv.sockets[0].getsockname()[1], lambda: run([ref.WARMUP_GAP] * warmup, [None] * warmup),
                lambda: run(gaps, payloads), stop)
    light = light_http_server("swap-http", seed=1, clock=CLOCK)
    loop = light.loop
    return (light.port,
            lambda: asyncio.run_coroutine_threadsafe(light.run_schedule([ref.WARMUP_GAP] * warmup, [None] * warmup), loop),
            lambda: asyncio.run_coroutine_threadsafe(light.run_schedule(gaps, payloads), loop),
            light.stop)


async def pair_p50(key: str, client: str, server: str, events: int, mean_gap_ms: float, seed: int, warmup: int) -> float:
    """The p50 (ms) of ``events`` timed events over ``key``, ``client``'s client against ``server``'s server."""
    gaps, payloads = ref.reference_schedule(events, mean_gap_ms, seed)
    port, warm, go, stop = _server(server, gaps, payloads, warmup)
    try:
        async with asyncio.timeout(events * mean_gap_ms / 1000 * 2 + 20):
            if client == "reference":
                run = ref._client_long_poll if key == "long_poll" else ref._client_sse
                latencies = await run(port, events, warmup, warm, go)
            else:
                got = await light_receive(key, f"http://127.0.0.1:{port}/", events, warmup=warmup,
                                          on_ready=warm, on_warm=go, timeout=events * mean_gap_ms / 1000 * 2 + 10)
                if got.errors:
                    raise RuntimeError(f"{key}, wslab's client: {got.errors}")
                latencies = got.recorder.latencies_ms()
    finally:
        stop()
    return statistics.median(latencies)


async def main(args: argparse.Namespace) -> int:
    ok = True
    print(f"{args.events} Poisson events, mean gap {args.mean_gap_ms:g} ms, {args.rounds} rounds; {machine_load()}")
    for key in args.keys:
        p50: dict[tuple[str, str], list[float]] = {pair: [] for pair in PAIRS}
        for rnd in range(args.rounds):
            for pair in (PAIRS if rnd % 2 == 0 else PAIRS[::-1]):
                p50[pair].append(await pair_p50(key, *pair, args.events, args.mean_gap_ms, args.seed, args.warmup))
        print(f"\n{key}: p50 ms, min / median / max over the rounds")
        for (client, server), values in p50.items():
            print(f"  {client:>9} client, {server:>9} server: {spread(values, '{:.3f}')}")
        base = p50[("reference", "reference")]
        for client, server in PAIRS[1:]:
            ok &= verdict(f"{key}, {client} client + {server} server / reference pair, per round",
                          [v / b for v, b in zip(p50[(client, server)], base)], at_least=0.75, at_most=1.25)
    return 0 if ok else 1


if __name__ == "__main__":
    parser = schedule_parser(__doc__, events=300, rounds=5)
    parser.add_argument("--keys", nargs="+", default=["long_poll", "sse"], choices=["long_poll", "sse"])
    sys.exit(asyncio.run(main(parser.parse_args())))

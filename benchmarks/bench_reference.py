"""An independent push-latency benchmark: none of wslab's transport code, the same schedule.

    python benchmarks/bench_reference.py                     # 900 events, mean gap 20 ms, 5 rounds
    python benchmarks/bench_reference.py --events 300 --rounds 5 --compare

What it measures, built here from the standard library and websockets only:

* a **raw TCP floor**: a server that writes each event's JSON line at its
  scheduled time, a client that ``readline()``\\ s;
* **WebSocket**: a websockets server whose handler waits for the next
  published event and ``send()``\\ s it, the websockets client ``recv()``\\ s;
* **SSE**: an HTTP/1.1 server on asyncio streams answering ``GET /events``
  with a chunked ``text/event-stream``, one chunk per event; a client on
  asyncio streams reading chunks;
* **long polling**: an HTTP/1.1 keep-alive server on asyncio streams holding
  ``GET /longpoll?since=N`` until an event after N exists, answered with a
  ``Content-Length`` JSON body; a client asking again at once.

The events (``{"seq","created","data"}``) come on the seeded Poisson
schedule of ``wslab.lab.experiment.schedule`` (re-derived here from the same
seeds: ``random.Random(seed).expovariate`` for the gaps, a Gaussian walk
from ``random.Random(seed + 1)`` for the payloads; ``tests/test_agreement.py``
checks they are equal). Servers run on a loop in a thread of their own, the
client on the main loop; every client receives ``warmup`` untimed events
first and stamps each timed event when its bytes have been read, before
parsing. The servers set nothing special: whatever asyncio does for its
sockets (it sets ``TCP_NODELAY``) they get.

``--compare`` runs wslab's lab (``wslab.lab.experiment.measure_transport``)
interleaved with this one (the order flipped every round) and prints both
sets of p50 ratios to the floor, min / median / max; each transport's
ratio over the reference's, round by round, with PASS or MISS against
:data:`TOLERANCE`; and wslab's p50 minus the reference's, as a figure only
where it is larger than the reference's own round-to-round spread ("within
noise" otherwise). The machine is shared and noisy: compare ratios from one
run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import serve as ws_serve

CLOCK = time.perf_counter
KEYS = ("tcp_floor", "websocket", "sse", "long_poll")
WARMUP_GAP = 0.002


# The schedule


def reference_schedule(events: int, mean_gap_ms: float, seed: int) -> tuple[list[float], list[dict[str, Any]]]:
    """Gaps (seconds) and payloads, derived from the seeds as wslab documents them."""
    rng = random.Random(seed)
    gaps = [rng.expovariate(1.0 / (mean_gap_ms / 1000)) for _ in range(events)]
    walk = random.Random(seed + 1)
    value, payloads = 100.0, []
    for _ in range(events):
        value = round(value + walk.gauss(0, 1), 2)
        payloads.append({"value": value})
    return gaps, payloads


def dumps(seq: int, created: float, data: Any) -> str:
    return json.dumps({"seq": seq, "created": created, "data": data}, separators=(",", ":"))


def percentile50(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# A loop in a thread


class ServerThread:
    """An event loop in a daemon thread; ``call(coro)`` runs a coroutine there and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="reference-server")
        self.thread.start()

    def call(self, coro: Awaitable[Any], timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def close(self, server: asyncio.Server, tasks: list[asyncio.Task[Any]]) -> None:
        """On this loop: cancel ``tasks`` (the publishers), close ``server``, cancel what else runs
        (its connection handlers)."""
        for task in tasks:
            task.cancel()
        server.close()
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()


class Publisher:
    """Events in a list; waiters woken when one is added. Lives on the server loop."""

    def __init__(self) -> None:
        self.events: list[str] = []  # JSON text, seq = index + 1
        self.waiters: list[asyncio.Future[None]] = []

    def publish(self, data: Any) -> None:
        seq = len(self.events) + 1
        self.events.append(dumps(seq, CLOCK(), data))
        waiters, self.waiters = self.waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    async def after(self, cursor: int) -> list[str]:
        while len(self.events) <= cursor:
            waiter = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            await waiter
        return self.events[cursor:]

    async def run(self, gaps: list[float], payloads: list[Any]) -> None:
        loop = asyncio.get_running_loop()
        start, due = loop.time(), 0.0
        for gap, payload in zip(gaps, payloads):
            due += gap
            delay = start + due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.publish(payload)


# Servers


async def _read_request(reader: asyncio.StreamReader) -> str | None:
    """The request target of the next GET on this connection, or None at EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    return head.split(b"\r\n", 1)[0].split(b" ")[1].decode()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _closing(serve: Handler) -> Handler:
    """``serve`` as a connection handler that ends quietly when the client goes (or the server stops)
    and always closes the connection."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await serve(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    return handle


def _http_handler(pub: Publisher) -> Handler:
    @_closing
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (target := await _read_request(reader)) is not None:
            path, _, query = target.partition("?")
            params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
            since = len(pub.events) if params.get("since") == "now" else int(params.get("since", 0))
            if path == "/poll":
                body = json.dumps({"events": [], "cursor": since}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            elif path == "/longpoll":
                events = await pub.after(since)
                body = ('{"events":[' + ",".join(events) + '],"cursor":%d}' % (since + len(events))).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            elif path == "/events":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                             b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
                preamble = b"id: %d\n\n" % since
                writer.write(b"%x\r\n%s\r\n" % (len(preamble), preamble))
                cursor = since
                while True:
                    events = await pub.after(cursor)
                    text = "".join(f"id: {cursor + i + 1}\ndata: {e}\n\n" for i, e in enumerate(events)).encode()
                    cursor += len(events)
                    writer.write(b"%x\r\n%s\r\n" % (len(text), text))
                    await writer.drain()
            else:
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()

    return handle


def _floor_handler(gaps: list[float], payloads: list[Any], warmup: int, start: threading.Event) -> Handler:
    @_closing
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        for _ in range(warmup):
            await asyncio.sleep(WARMUP_GAP)
            writer.write((dumps(0, CLOCK(), None) + "\n").encode())
        await writer.drain()
        await reader.readline()  # the client has the warm-up: start
        loop = asyncio.get_running_loop()
        t0, due = loop.time(), 0.0
        for seq, (gap, payload) in enumerate(zip(gaps, payloads), start=1):
            due += gap
            delay = t0 + due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            writer.write((dumps(seq, CLOCK(), payload) + "\n").encode())
            await writer.drain()

    return handle


# Clients (on the caller's loop)


async def _client_floor(port: int, events: int, warmup: int) -> list[float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"go\n")
    for _ in range(warmup):
        await reader.readline()
    writer.write(b"start\n")
    out = []
    while len(out) < events:
        line = await reader.readline()
        received = CLOCK()
        if not line:
            break
        out.append((received - json.loads(line)["created"]) * 1000)
    writer.close()
    return out


async def _client_websocket(port: int, events: int, warmup: int, on_open: Callable[[], None],
                            on_warm: Callable[[], None]) -> list[float]:
    out: list[float] = []
    async with ws_connect(f"ws://127.0.0.1:{port}/", compression=None) as ws:
        on_open()
        for _ in range(warmup):
            await ws.recv()
        on_warm()
        while len(out) < events:
            message = await ws.recv()
            received = CLOCK()
            out.append((received - json.loads(message)["created"]) * 1000)
    return out


_REQUEST = ("GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: {accept}\r\n"
            "Accept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\nUser-Agent: reference/1\r\n\r\n")


async def _response(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    return await reader.readexactly(length)


async def _client_long_poll(port: int, events: int, warmup: int, on_open: Callable[[], None],
                            on_warm: Callable[[], None]) -> list[float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_REQUEST.format(target="/poll?since=now", port=port, accept="*/*").encode())
    cursor = base = json.loads(await _response(reader))["cursor"]
    on_open()
    out: list[float] = []
    warm = warmup == 0
    if warm:
        on_warm()
    while len(out) < events:
        writer.write(_REQUEST.format(target=f"/longpoll?since={cursor}", port=port, accept="*/*").encode())
        body = await _response(reader)
        received = CLOCK()
        answer = json.loads(body)
        for e in answer["events"]:
            if e["seq"] > base + warmup and len(out) < events:
                out.append((received - e["created"]) * 1000)
        cursor = answer["cursor"]
        if not warm and cursor >= base + warmup:
            warm = True
            on_warm()
    writer.close()
    return out


async def _client_sse(port: int, events: int, warmup: int, on_open: Callable[[], None],
                      on_warm: Callable[[], None]) -> list[float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_REQUEST.format(target="/events?since=now", port=port, accept="text/event-stream").encode())
    await reader.readuntil(b"\r\n\r\n")
    out: list[float] = []
    base: int | None = None
    warm = False
    while len(out) < events:
        size = int(await reader.readline(), 16)
        chunk = await reader.readexactly(size + 2)
        received = CLOCK()
        for block in chunk[:size].split(b"\n\n"):
            fields = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line)
            if b"data" not in fields:
                if base is None and b"id" in fields:
                    base = int(fields[b"id"])
                    on_open()
                    if warmup == 0:
                        warm = True
                        on_warm()
                continue
            seq = int(fields[b"id"])
            if seq > base + warmup and len(out) < events:  # type: ignore[operator]
                out.append((received - json.loads(fields[b"data"])["created"]) * 1000)
            if not warm and seq >= base + warmup:  # type: ignore[operator]
                warm = True
                on_warm()
    writer.close()
    return out


# One transport, one pass


async def measure(key: str, events: int = 900, mean_gap_ms: float = 20.0, seed: int = 1,
                  warmup: int = 5, timeout: float | None = None) -> list[float]:
    """One-way latencies (ms) of ``events`` timed events over ``key`` (one of :data:`KEYS`)."""
    gaps, payloads = reference_schedule(events, mean_gap_ms, seed)
    timeout = timeout or events * mean_gap_ms / 1000 * 2 + 10
    server = ServerThread()
    pub = Publisher()
    started: list[Any] = []

    def publish_warmup() -> None:
        server.loop.call_soon_threadsafe(
            lambda: started.append(server.loop.create_task(pub.run([WARMUP_GAP] * warmup, [None] * warmup))))

    def start_schedule() -> None:
        server.loop.call_soon_threadsafe(lambda: started.append(server.loop.create_task(pub.run(gaps, payloads))))

    try:
        if key == "tcp_floor":
            srv = server.call(asyncio.start_server(_floor_handler(gaps, payloads, warmup, threading.Event()),
                                                   "127.0.0.1", 0))
            client = _client_floor(srv.sockets[0].getsockname()[1], events, warmup)
        elif key == "websocket":
            async def push(ws: Any) -> None:
                cursor = len(pub.events)
                try:
                    while True:
                        for text in await pub.after(cursor):
                            await ws.send(text)
                            cursor += 1
                except Exception:  # noqa: BLE001 - the client went away
                    pass

            async def start_ws() -> Any:
                return await ws_serve(push, "127.0.0.1", 0, compression=None)

            srv = server.call(start_ws())
            port = list(srv.sockets)[0].getsockname()[1]
            client = _client_websocket(port, events, warmup, publish_warmup, start_schedule)
        elif key in ("sse", "long_poll"):
            srv = server.call(asyncio.start_server(_http_handler(pub), "127.0.0.1", 0))
            port = srv.sockets[0].getsockname()[1]
            run = _client_sse if key == "sse" else _client_long_poll
            client = run(port, events, warmup, publish_warmup, start_schedule)
        else:
            raise ValueError(f"unknown key {key!r}: one of {', '.join(KEYS)}")
        async with asyncio.timeout(timeout):
            return await client
    finally:
        try:
            server.call(server.close(srv, started), timeout=5)
        except Exception:  # noqa: BLE001 - stopping must not fail (nor a server that never started)
            pass
        server.stop()


# wslab side by side


async def wslab_p50(key: str, events: int, mean_gap_ms: float, seed: int, warmup: int) -> float:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from wslab.lab.experiment import ExperimentConfig, measure_transport

    config = ExperimentConfig(events=events, mean_gap_ms=mean_gap_ms, seed=seed, warmup=warmup, transports=[key])
    result = await measure_transport(key, config, bytes_pass=False)
    if result.missing or result.errors:
        raise RuntimeError(f"wslab {key}: {len(result.missing)} missing, {result.errors}")
    return result.p50_ms


async def interleaved(rounds: int, events: int, mean_gap_ms: float, seed: int = 1, warmup: int = 5,
                      compare: bool = True, log: Callable[[str], None] | None = None) -> dict[str, dict[str, list[float]]]:
    """p50 (ms) per round for each key, reference and wslab alternating (order flipped each round)."""
    p50: dict[str, dict[str, list[float]]] = {"reference": {k: [] for k in KEYS}, "wslab": {k: [] for k in KEYS}}
    for rnd in range(rounds):
        for key in KEYS:
            sides = ["reference", "wslab"] if compare else ["reference"]
            if rnd % 2:
                sides.reverse()
            for side in sides:
                if side == "reference":
                    value = percentile50(await measure(key, events, mean_gap_ms, seed, warmup))
                else:
                    value = await wslab_p50(key, events, mean_gap_ms, seed, warmup)
                p50[side][key].append(value)
        if log:
            log(f"round {rnd + 1}: " + "; ".join(
                f"{side} " + ", ".join(f"{k} {p50[side][k][-1]:.3f}" for k in KEYS)
                for side in p50 if p50[side]["tcp_floor"]))
    return p50


def ratios(p50: dict[str, list[float]]) -> dict[str, list[float]]:
    """Per round, each key's p50 over the floor's p50 of the same round."""
    return {k: [v / f for v, f in zip(p50[k], p50["tcp_floor"])] for k in KEYS if k != "tcp_floor"}


#: The agreement this benchmark checks: wslab's p50 ratio to its floor within 25% of the reference's.
TOLERANCE = 0.25


def agreement(p50: dict[str, dict[str, list[float]]]) -> dict[str, float]:
    """Per transport, wslab's median ratio to its floor over the reference's (1.0 = they agree)."""
    ref, mine = ratios(p50["reference"]), ratios(p50["wslab"])
    return {k: statistics.median(mine[k]) / statistics.median(ref[k]) for k in ref}


def paired(p50: dict[str, dict[str, list[float]]]) -> dict[str, list[float]]:
    """Per transport, per round: wslab's ratio to its floor over the reference's, both from that round."""
    ref, mine = ratios(p50["reference"]), ratios(p50["wslab"])
    return {k: [m / r for m, r in zip(mine[k], ref[k])] for k in ref}


async def main(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _verdict import difference, machine_load, spread, verdict

    p50 = await interleaved(args.rounds, args.events, args.mean_gap_ms, args.seed, args.warmup,
                            compare=args.compare, log=lambda s: print(s, flush=True))
    print(f"\n{args.events} Poisson events, mean gap {args.mean_gap_ms:g} ms, seed {args.seed}, "
          f"{args.rounds} alternating rounds; {machine_load()} (shared: compare ratios)")
    print(f"{'p50 ratio to the TCP floor':<28}{'reference min/median/max':>28}"
          + (f"{'wslab min/median/max':>26}" if args.compare else ""))
    ref = ratios(p50["reference"])
    mine = ratios(p50["wslab"]) if args.compare else {}
    for key in ref:
        print(f"{key:<28}{spread(ref[key]):>28}" + (f"{spread(mine[key]):>26}" if args.compare else ""))
    print(f"{'floor p50 ms':<28}{spread(p50['reference']['tcp_floor'], '{:.3f}'):>28}"
          + (f"{spread(p50['wslab']['tcp_floor'], '{:.3f}'):>26}" if args.compare else ""))
    if not args.compare:
        return 0
    print("\nwslab's p50 minus the reference's, per round (the reference's own rounds give the noise):")
    for key in KEYS:
        difference(f"  {key}", [(m - r) for m, r in zip(p50["wslab"][key], p50["reference"][key])],
                   p50["reference"][key])
    print(f"\ntarget: each transport's ratio to its floor within {TOLERANCE:.0%} of the reference's, "
          f"round by round (wslab / reference)")
    ok = True
    for key, values in paired(p50).items():
        ok &= verdict(f"{key}: wslab / reference", values, at_least=1 - TOLERANCE, at_most=1 + TOLERANCE)
    return 0 if ok else 1


if __name__ == "__main__":
    from _options import schedule_parser  # beside this script (imported here: tests load this file alone)

    parser = schedule_parser(__doc__, events=900, rounds=5)
    parser.add_argument("--compare", action="store_true", help="also run wslab's lab, interleaved")
    sys.exit(asyncio.run(main(parser.parse_args())))

"""The floor every transport is compared with: raw TCP push with asyncio streams.

No HTTP, no framing: the server writes each event's JSON line
(:meth:`wslab.lab.events.Event.dumps` plus ``\\n``) to the socket at the
scheduled time, the client reads lines and stamps each one the moment
``readline()`` returns it, before parsing it: the same point every other
measuring client stamps at (see :mod:`wslab.lab.experiment.clients`).

The conversation, so warm-up and set-up mean what they mean for the other
transports::

    > go 5\\n              the client: send me 5 warm-up events, then wait
    < ready\\n             set-up ends here (the client is listening)
    < {"seq":0,...}\\n     x 5, 2 ms apart: warm-up, not timed
    > start\\n             the client has them all: start the schedule
    < {"seq":1,...}\\n     ... the timed events, on the seeded schedule; then EOF

The server runs on its own loop in a daemon thread and joins wslab's
registry, so ``wslab.status()`` shows it and ``wslab.stop_all()`` stops it.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, Callable, Sequence

from ...server import background as _servers
from ..events import Event
from .listener import StreamListener
from .progress import count_progress
from .results import ExperimentConfig, TransportResult
from .timing import CLOCK, WARMUP_GAP_S, schedule, time_budget

__all__ = ["TcpPushServer", "serve_tcp_push", "Recorder", "measure_tcp_floor"]

_numbers = itertools.count(1)  # a name of its own for each floor server: runs may overlap


class TcpPushServer(StreamListener):
    """A raw TCP server that pushes newline-delimited, timestamped events.

    Each client that connects and sends ``b"go <warmup>\\n"`` (or just
    ``b"go\\n"``: no warm-up) gets ``b"ready\\n"``, the warm-up events, and
    after its ``b"start\\n"`` the whole schedule; then the server closes the
    connection.
    """

    def __init__(self, name: str, gaps: Sequence[float], payloads: Sequence[Any]) -> None:
        super().__init__(name)
        self.gaps = list(gaps)
        self.payloads = list(payloads)

    @property
    def url(self) -> str:
        return f"tcp://{self.host}:{self.port}/"

    async def _start(self) -> TcpPushServer:
        await self._listen()
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        words = (await reader.readline()).split()
        if not words or words[0] != b"go":
            return
        warmup = int(words[1]) if len(words) > 1 and words[1].isdigit() else 0
        writer.write(b"ready\n")
        for _ in range(min(warmup, 1000)):
            await asyncio.sleep(WARMUP_GAP_S)
            writer.write((Event(0, CLOCK(), {"warmup": True}).dumps() + "\n").encode())
        await writer.drain()
        if warmup and (await reader.readline()) != b"start\n":
            return
        loop = asyncio.get_running_loop()
        start, due, clock = loop.time(), 0.0, CLOCK
        for seq, (gap, payload) in enumerate(zip(self.gaps, self.payloads), start=1):
            due += gap
            delay = start + due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            line = Event(seq, clock(), payload).dumps() + "\n"
            writer.write(line.encode())
            await writer.drain()

    # Stopping (stop() and aclose() come from Background): returns within a
    # few seconds, stopping the thread too.

    async def _close(self) -> None:
        await _servers.close_listener(self._server, self._tasks, timeout=self.stop_timeout)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<wslab TcpPushServer {self.name!r} {self.url} thread mode, {state}>"


def serve_tcp_push(
    config: ExperimentConfig | None = None, name: str = "tcp-floor"
) -> TcpPushServer:
    """Start the raw TCP pusher for ``config``'s schedule in a thread of its own."""
    config = config or ExperimentConfig()
    server = TcpPushServer(name, *schedule(config))
    return _servers.start_in_thread(name, server._start)


class Recorder:
    """The runner's bookkeeping for one transport: what arrived, and when.

    ``record(seq, created, received)`` is the whole per-event cost the runner
    adds (``benchmarks/bench_latency.py`` times it): append three numbers.
    """

    __slots__ = ("seqs", "created", "received", "_clock")

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.created: list[float] = []
        self.received: list[float] = []
        self._clock = CLOCK

    def record(self, seq: int, created: float, received: float | None = None) -> None:
        self.received.append(self._clock() if received is None else received)
        self.seqs.append(seq)
        self.created.append(created)

    def __len__(self) -> int:
        return len(self.seqs)

    def latencies_ms(self) -> list[float]:
        return [(r - c) * 1000 for r, c in zip(self.received, self.created)]


async def measure_tcp_floor(
    config: ExperimentConfig, *, timeout: float | None = None, report: Callable[[int], Any] | None = None,
    via: Callable[[Any], Any] | None = None,
) -> TransportResult:
    """Push ``config``'s schedule over raw TCP (asyncio streams); the client reads on this loop.

    Each event is the same JSON line the other transports carry, so bytes
    compare directly. ``via(server)`` may return a relay (a wiretap with a
    link) to connect through instead; its bytes are counted too.
    """
    result = TransportResult("tcp_floor", config.events)
    server = serve_tcp_push(config, name=f"tcp-floor-{next(_numbers)}")
    recorder = Recorder()
    timeout = timeout or time_budget(config)
    tap = via(server) if via is not None else None
    try:
        host, port = (tap.host, tap.port) if tap is not None else (server.host, server.port)
        t0 = CLOCK()
        reader, writer = await asyncio.open_connection(host, port)
        counter = asyncio.ensure_future(count_progress(lambda: len(recorder), report))
        try:
            async with asyncio.timeout(timeout):
                writer.write(b"go %d\n" % config.warmup)
                await writer.drain()
                if await reader.readline() != b"ready\n":
                    raise ConnectionError("the floor server did not answer ready")
                result.setup_ms = (CLOCK() - t0) * 1000
                result.setup_bytes_up, result.setup_bytes_down = len(b"go %d\n" % config.warmup), 6
                for _ in range(config.warmup):
                    await reader.readline()
                if config.warmup:
                    writer.write(b"start\n")
                    result.bytes_up = 6
                down = 0
                while True:
                    line = await reader.readline()
                    received = CLOCK()  # stamped when read, before parsing
                    if not line:
                        break
                    down += len(line)
                    event = Event.from_json(line)
                    recorder.record(event.seq, event.created, received)
                result.bytes_down = down
        except TimeoutError:
            result.errors.append(f"timed out after {timeout:.1f} s")
        finally:
            counter.cancel()
            writer.close()
    finally:
        if tap is not None:
            await tap.aclose()
        await server.aclose()
    result.seqs = recorder.seqs
    result.latencies_ms = recorder.latencies_ms()
    result.errors += [repr(e) for e in server.errors]
    return result

"""Clients for the lab server: the same events by polling, long polling, SSE and WebSocket.

One call runs a client until it has ``n_events`` new events and says what it
cost::

    lab = await wslab.lab_server()
    task = asyncio.create_task(lab.run_schedule(wslab.poisson(0.1, 10, seed=1)))
    result = await wslab.receive("long_poll", lab, 10)
    result.latencies_ms, result.requests, result.empty_responses

Transport names (:data:`TRANSPORTS`): ``"short_poll"`` (a ``GET /poll``
every ``interval`` seconds), ``"long_poll"`` (``GET /longpoll``, again as
soon as an answer comes), ``"sse"`` (``GET /events``, one streamed response,
reconnecting with ``Last-Event-ID`` like a browser's ``EventSource``),
``"websocket"`` (no compression) and ``"websocket_deflate"``
(permessage-deflate offered).

What each client records (:class:`Result`): per event a :class:`Delivery`
(``seq``, ``created`` by the server, ``received`` by the client, both
``time.time()`` unless you pass ``clock=``, so ``received - created`` is the
one-way delay on one machine); every HTTP request or connection as an
:class:`Exchange` (when sent, when answered, how many events it brought), so
:mod:`wslab.lab.timeline` can draw the run; ``requests`` (sent, so a long poll
still held when a run times out counts), ``empty_responses``,
``reconnects``, ``setup_s`` (until the client was listening; a long-poll
client starting at ``"now"`` first asks ``/poll`` where now is, counted in
``setup_requests``, not in ``requests``), and, when the
client went through a wiretap (``tap=``), ``bytes_up`` / ``bytes_down``.

Reuse (the latency lab does): ``target`` is a :class:`~wslab.lab.labserver.LabServer`,
or its URLs as ``{"http": lab.http_url, "ws": lab.ws_url}``, so the client
can run on another loop, thread or process than the server; ``on_ready``
is called once the client listens (publish after that); ``since="now"``
(the default) means only events published after the client started.

The clients are httpx's keep-alive ``AsyncClient`` (one TCP connection for
all polls) and websockets' client. Every wait is bounded: ``timeout``
seconds for the whole run (:class:`ReceiveTimeout` carries the partial result).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import httpx
from websockets.asyncio.client import connect as ws_connect

from ..course.display import Table
from .events import Event

__all__ = [
    "TRANSPORTS",
    "Delivery",
    "Exchange",
    "Result",
    "ReceiveTimeout",
    "DeliveryError",
    "receive",
    "deliver",
    "compare",
]

#: The transport names :func:`receive` knows.
TRANSPORTS = ("short_poll", "long_poll", "sse", "websocket", "websocket_deflate")


@dataclass(frozen=True)
class Delivery:
    """One event as a client got it: ``seq``, ``created`` (server), ``received`` (client)."""

    seq: int
    created: float
    received: float

    @property
    def latency(self) -> float:
        """``received - created``, seconds."""
        return self.received - self.created


@dataclass
class Exchange:
    """One HTTP request (or one connection, for streams): sent, answered, events it brought.

    For a poll, ``answered`` is when its whole answer was read; for SSE and
    WebSocket it is when the stream opened (response headers, or the 101),
    and ``ended`` is when the stream closed.
    """

    kind: str
    sent: float
    answered: float | None = None
    events: int = 0
    ended: float | None = None
    status: int | None = None


@dataclass
class Result:
    """What one client run delivered and what it cost (see the module doc)."""

    transport: str
    n_events: int
    interval: float | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list)
    requests: int = 0
    empty_responses: int = 0
    reconnects: int = 0
    setup_requests: int = 0
    setup_s: float = 0.0
    started: float = 0.0
    finished: float = 0.0
    bytes_up: int | None = None
    bytes_down: int | None = None

    @property
    def seqs(self) -> list[int]:
        return [d.seq for d in self.deliveries]

    @property
    def latencies_ms(self) -> list[float]:
        return [d.latency * 1000 for d in self.deliveries]

    def percentile_ms(self, p: float) -> float:
        """The ``p``-th percentile (0-100) of the delays, ms (nearest rank)."""
        values = sorted(self.latencies_ms)
        if not values:
            return float("nan")
        rank = max(0, min(len(values) - 1, round(p / 100 * len(values) + 0.5) - 1))
        return values[rank]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latencies_ms) if self.deliveries else float("nan")

    @property
    def bytes_per_event(self) -> float | None:
        if self.bytes_up is None or self.bytes_down is None or not self.deliveries:
            return None
        return (self.bytes_up + self.bytes_down) / len(self.deliveries)

    @property
    def label(self) -> str:
        if self.transport == "short_poll" and self.interval is not None:
            return f"short_poll {self.interval * 1000:g} ms"
        return self.transport

    def row(self) -> list[Any]:
        per_event = self.bytes_per_event
        return [
            self.label,
            len(self.deliveries),
            self.requests,
            self.empty_responses,
            f"{self.median_ms:.1f}",
            f"{self.percentile_ms(99):.1f}",
            "-" if per_event is None else f"{per_event:.0f}",
        ]

    def __repr__(self) -> str:
        return (
            f"<wslab.transports.Result {self.label}: {len(self.deliveries)}/{self.n_events} events, "
            f"{self.requests} request(s), {self.empty_responses} empty, "
            f"median {self.median_ms:.1f} ms>"
        )


def compare(results: list[Result]) -> Table:
    """A table of results side by side: events, requests, empty answers, delays, bytes per event."""
    return Table(
        ["transport", "events", "requests", "empty", "median ms", "p99 ms", "bytes/event"],
        [r.row() for r in results],
        align_right={1, 2, 3, 4, 5, 6},
    )


class ReceiveTimeout(TimeoutError):
    """The run did not get its events in time; ``result`` holds what it got."""

    def __init__(self, result: Result, timeout: float) -> None:
        self.result = result
        super().__init__(
            f"{result.transport}: got {len(result.deliveries)} of {result.n_events} events in "
            f"{timeout:g} s; is anything publishing? (lab.publish(), lab.run_schedule(gaps)) "
            f"or pass a larger timeout"
        )


class DeliveryError(RuntimeError):
    """The server answered something a client cannot use (an HTTP error, a broken stream)."""


# Targets


def _urls(target: Any) -> tuple[str | None, str | None]:
    if isinstance(target, Mapping):
        return target.get("http"), target.get("ws")
    if isinstance(target, str):
        return (target, None) if target.startswith("http") else (None, target)
    http, ws = getattr(target, "http_url", None), getattr(target, "ws_url", None)
    if http is None and ws is None:
        raise TypeError(
            f"receive() needs a lab server or its URLs, got {target!r}: pass the handle of "
            f"wslab.lab_server(), or {{'http': lab.http_url, 'ws': lab.ws_url}}"
        )
    return http, ws


def _join(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path


class _Run:
    """The state of one client run, shared by the transport loops."""

    def __init__(self, result: Result, cursor: int | str, clock: Callable[[], float], on_ready: Callable[[], Any] | None) -> None:
        self.result = result
        self.cursor = cursor
        self.clock = clock
        self._on_ready = on_ready
        self._ready = False
        self._t0 = time.perf_counter()

    @property
    def done(self) -> bool:
        return len(self.result.deliveries) >= self.result.n_events

    def ready(self) -> None:
        if not self._ready:
            self._ready = True
            self.result.setup_s = time.perf_counter() - self._t0
            if self._on_ready is not None:
                self._on_ready()

    def take(self, events: list[dict[str, Any]] | list[Event], received: float) -> int:
        """Record events after the cursor (dropping repeats); return how many were new."""
        new = 0
        for obj in events:
            event = obj if isinstance(obj, Event) else Event.from_json(obj)
            if isinstance(self.cursor, int) and event.seq <= self.cursor:
                continue  # already have it (a resent event): never deliver twice
            if self.done:
                break
            self.result.deliveries.append(Delivery(event.seq, event.created, received))
            self.cursor = event.seq
            new += 1
        return new


def _check(response: httpx.Response) -> Any:
    if response.status_code != 200:
        raise DeliveryError(f"{response.request.method} {response.request.url} got {response.status_code}: {response.text[:300]}")
    return response.json()


# Transports


async def _poll(run: _Run, client: httpx.AsyncClient, base: str, endpoint: str, interval: float, hold: float) -> None:
    loop = asyncio.get_running_loop()
    if endpoint == "longpoll" and isinstance(run.cursor, str):
        # A held request cannot say when it reached the server, so learn
        # where "now" is with one short poll first (a page's initial load).
        exchange = Exchange("setup", run.clock())
        run.result.exchanges.append(exchange)
        body = _check(await client.get(_join(base, "poll"), params={"since": run.cursor}))
        exchange.answered = run.clock()
        exchange.status = 200
        run.result.setup_requests += 1
        run.cursor = int(body["cursor"]) - len(body["events"])
        run.take(body["events"], exchange.answered)
        run.ready()
    start = loop.time()
    tick = 0
    while not run.done:
        params: dict[str, Any] = {"since": run.cursor}
        if endpoint == "longpoll":
            params["timeout"] = hold
        exchange = Exchange(endpoint, run.clock())
        run.result.exchanges.append(exchange)
        run.result.requests += 1  # counted when sent: a held request counts too
        response = await client.get(_join(base, endpoint), params=params)
        body = _check(response)
        received = run.clock()
        exchange.answered = received
        exchange.status = response.status_code
        if isinstance(run.cursor, str):  # "now": the first answer tells where we are
            run.cursor = int(body["cursor"]) - len(body["events"])
        exchange.events = run.take(body["events"], received)
        if not body["events"]:
            run.result.empty_responses += 1
        run.ready()
        if endpoint == "poll":
            tick += 1
            await asyncio.sleep(max(0.0, start + tick * interval - loop.time()))


async def _sse(run: _Run, client: httpx.AsyncClient, base: str, reconnect_delay: float | None, max_reconnects: int) -> None:
    retry = 1.0
    first = True
    while not run.done:
        headers = {"Accept": "text/event-stream"}
        params: dict[str, Any] = {}
        if isinstance(run.cursor, int) and not first:
            headers["Last-Event-ID"] = str(run.cursor)  # what EventSource does on reconnect
        else:
            params["since"] = run.cursor
        if not first:
            if run.result.reconnects >= max_reconnects:
                raise DeliveryError(f"sse: the stream ended {run.result.reconnects + 1} times; giving up")
            run.result.reconnects += 1
            await asyncio.sleep(retry if reconnect_delay is None else reconnect_delay)
        first = False
        exchange = Exchange("events", run.clock())
        run.result.exchanges.append(exchange)
        run.result.requests += 1
        async with client.stream("GET", _join(base, "events"), params=params, headers=headers) as response:
            exchange.answered = run.clock()
            exchange.status = response.status_code
            if response.status_code != 200:
                await response.aread()
                _check(response)
            data: list[str] = []
            event_id: str | None = None
            async for line in response.aiter_lines():
                # text/event-stream (HTML Living Standard, 9.2.6): fields end at a blank line
                if line == "":
                    received = run.clock()  # stamped when read, before parsing
                    if data:
                        exchange.events += run.take([json.loads("\n".join(data))], received)
                    elif event_id is not None and event_id.isdigit() and isinstance(run.cursor, str):
                        run.cursor = int(event_id)  # the preamble's id: where "now" was
                    run.ready()  # the preamble (retry:, id:) arrived: listening
                    data, event_id = [], None
                    if run.done:
                        break
                    continue
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "data":
                    data.append(value)
                elif name == "id":
                    event_id = value
                elif name == "retry" and value.isdigit():
                    retry = int(value) / 1000
            exchange.ended = run.clock()
        if exchange.events == 0 and not run.done:
            run.result.empty_responses += 1


async def _websocket(run: _Run, base: str, compression: str | None, options: dict[str, Any]) -> None:
    url = f"{base.rstrip('/')}/?since={run.cursor}"
    exchange = Exchange("websocket", run.clock())
    run.result.exchanges.append(exchange)
    run.result.requests += 1  # the upgrade request
    options = {"compression": compression, "open_timeout": 10, **options}
    async with ws_connect(url, **options) as ws:
        exchange.answered = run.clock()
        exchange.status = 101
        run.ready()
        async for message in ws:
            received = run.clock()  # stamped when read, before parsing
            obj = json.loads(message)
            if isinstance(run.cursor, str):
                run.cursor = int(obj["seq"]) - 1
            exchange.events += run.take([obj], received)
            if run.done:
                break
    exchange.ended = run.clock()


async def receive(
    transport: str,
    target: Any,
    n_events: int,
    *,
    interval: float = 0.25,
    since: int | str = "now",
    tap: Any = None,
    on_ready: Callable[[], Any] | None = None,
    # Timeouts
    timeout: float | None = 60.0,
    longpoll_timeout: float = 20.0,
    reconnect_delay: float | None = None,
    max_reconnects: int = 100,
    clock: Callable[[], float] = time.time,
    client: httpx.AsyncClient | None = None,
    ws_options: Mapping[str, Any] | None = None,
) -> Result:
    """Receive ``n_events`` events from a lab server over ``transport``; return a :class:`Result`.

    ``transport`` is one of :data:`TRANSPORTS`. ``target`` is a lab server
    handle or ``{"http": url, "ws": url}``. ``interval`` is the short-polling
    period, seconds. ``since`` is the cursor to start after (``"now"``: only
    new events; ``0``: every event the server has). With ``tap`` (a
    :func:`wslab.lab.wiretap` in front of the lab's HTTP or WebSocket URL, as the
    transport needs) the client connects through it and the result carries
    the bytes that crossed it during the run. ``on_ready()`` is called once
    the client is listening. ``longpoll_timeout`` is how long the server may
    hold a long poll; ``reconnect_delay`` overrides the SSE ``retry:`` wait.
    ``client`` lets you bring your own ``httpx.AsyncClient``, ``ws_options``
    go to :func:`websockets.asyncio.client.connect` (``max_size=...``,
    ``create_connection=...``).

    Raises :class:`ReceiveTimeout` (with the partial result) after
    ``timeout`` seconds, :class:`DeliveryError` when the server answers an
    error (a 400 for a bad cursor, say), :class:`ValueError` for an unknown
    transport.
    """
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown transport {transport!r}: choose one of {', '.join(TRANSPORTS)}")
    if n_events < 1:
        raise ValueError(f"n_events must be at least 1, got {n_events!r}")
    if transport == "short_poll" and not interval > 0:
        raise ValueError(f"interval must be positive seconds, got {interval!r}")
    http_url, ws_url = _urls(target)
    websocket = transport.startswith("websocket")
    base = ws_url if websocket else http_url
    if tap is not None:
        base = tap.url
    if base is None:
        kind = "ws" if websocket else "http"
        raise ValueError(f"{transport} needs the lab's {kind} URL; pass the lab server or {{'{kind}': url}}")
    result = Result(transport, n_events, interval if transport == "short_poll" else None)
    own_client = client is None
    if client is None and not websocket:
        read = longpoll_timeout + 10 if transport == "long_poll" else (None if transport == "sse" else 30.0)
        client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=read))
    run = _Run(result, since, clock, on_ready)
    before = (tap.bytes_up, tap.bytes_down) if tap is not None else None
    result.started = clock()
    try:
        async with asyncio.timeout(timeout):
            if transport == "short_poll":
                await _poll(run, client, base, "poll", interval, longpoll_timeout)
            elif transport == "long_poll":
                await _poll(run, client, base, "longpoll", interval, longpoll_timeout)
            elif transport == "sse":
                await _sse(run, client, base, reconnect_delay, max_reconnects)
            else:
                compression = "deflate" if transport == "websocket_deflate" else None
                await _websocket(run, base, compression, dict(ws_options or {}))
    except TimeoutError:
        raise ReceiveTimeout(result, timeout or 0) from None
    finally:
        if own_client and client is not None:
            await client.aclose()
        result.finished = clock()
        if tap is not None and before is not None:
            await asyncio.sleep(0)
            result.bytes_up = tap.bytes_up - before[0]
            result.bytes_down = tap.bytes_down - before[1]
    return result


async def deliver(transport: str, lab: Any, gaps: Sequence[float], *, payloads: Sequence[Any] | None = None, **kwargs: Any) -> Result:
    """Start a ``transport`` client, publish one event per gap once it listens, return its result.

    ``lab`` is a lab server (task or thread mode); the schedule runs on the
    caller's loop (``lab.publish`` is thread-safe). Other keyword arguments
    go to :func:`receive`. Run it once per transport with the same seeded
    ``gaps`` and the rows of :func:`wslab.lab.timeline.draw` line up::

        gaps = wslab.poisson(0.2, 5, seed=1)
        results = [await deliver(t, lab, gaps) for t in ("short_poll", "long_poll", "sse")]
    """
    ready = asyncio.Event()
    user_ready = kwargs.pop("on_ready", None)

    def on_ready() -> None:
        ready.set()
        if user_ready is not None:
            user_ready()

    client = asyncio.ensure_future(receive(transport, lab, len(gaps), on_ready=on_ready, **kwargs))
    waiting = asyncio.ensure_future(ready.wait())
    try:
        await asyncio.wait({client, waiting}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
    if client.done():
        return client.result()  # it failed before listening: raise that
    try:
        await lab.run_schedule(gaps, payloads)
    except BaseException:
        client.cancel()
        raise
    return await client

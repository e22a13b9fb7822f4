"""The latency lab's runner: one seeded schedule over every transport, measured.

For each transport :func:`measure_transport` starts a fresh server in a
thread of its own (the lab server of :mod:`wslab.lab.labserver`, or the floor's
raw TCP pusher), runs one measuring client on the caller's loop
(:mod:`wslab.lab.experiment.clients`), and returns a
:class:`~wslab.lab.experiment.results.TransportResult`:

1. the client connects and says it listens (set-up: wall time and bytes);
2. ``config.warmup`` events are published 2 ms apart and received, untimed;
3. the timed schedule starts (seeded Poisson gaps) and every event is
   stamped by the server when published and by the client when read.

Without a link, latency is measured direct and bytes in a second pass
through a wiretap (a relay adds a hop, so never both at once). With a link
(``run_experiment(link=wslab.Link(rtt_ms=100))``, or ``rtt_ms=`` and
``rate_kbps=`` in the config), every transport, the floor too, goes through
one wiretap that delays and paces every byte as that link would, and one
pass gives both latency and bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from ...server import background as _servers
from .clients import LONGPOLL_HOLD, LightResult
from .clients import receive as light_receive
from .floor import measure_tcp_floor
from .progress import count_progress, progress_line
from .results import ExperimentConfig, Results, TransportResult, _r, percentile
from .timing import CLOCK, WARMUP_GAP_S, schedule, short_poll_interval, span, time_budget

__all__ = ["run_experiment", "measure_transport", "expected_seconds", "link_fields", "quiet_needed"]

_LAB_NAME = "latency-lab"
_TAP_NAME = "latency-tap"
_HTTP_NAME = "latency-http"
_numbers = itertools.count(1)


def _unique(name: str) -> str:
    """``name`` plus a number of its own: passes that run side by side never release each other's servers."""
    return f"{name}-{next(_numbers)}"


def _block_loop(loop: asyncio.AbstractEventLoop, config: ExperimentConfig) -> Callable[[], None]:
    """Every ``block_every_ms``, run a callback on the server's loop that calls ``time.sleep``.

    This is what a handler with a blocking call does to every other client of
    that loop. Returns a function that stops it.
    """
    if config.block_ms <= 0:
        return lambda: None
    state: dict[str, Any] = {"handle": None, "stopped": False}

    def block() -> None:
        if state["stopped"]:
            return
        time.sleep(config.block_ms / 1000)  # on purpose: this is the lesson
        state["handle"] = loop.call_later(config.block_every_ms / 1000, block)

    def start() -> None:
        state["handle"] = loop.call_later(config.block_every_ms / 1000, block)

    loop.call_soon_threadsafe(start)

    def stop() -> None:
        state["stopped"] = True
        handle = state["handle"]
        if handle is not None and not loop.is_closed():
            loop.call_soon_threadsafe(handle.cancel)

    return stop


# The link

def link_fields(link: Any) -> dict[str, Any]:
    """A :class:`wslab.Link`, a preset name (``wslab.lab.link.PRESETS``) or a dict -> config fields.

    >>> link_fields({"rtt_ms": 100})
    {'rtt_ms': 100.0, 'jitter_ms': 0.0, 'rate_kbps': None, 'up_kbps': None, 'down_kbps': None}
    """
    if link is None:
        return {}
    if isinstance(link, str):
        from ..link import PRESETS

        if link not in PRESETS:
            raise ValueError(f"unknown link preset {link!r}; choose one of {', '.join(PRESETS)}")
        link = PRESETS[link]
    get = link.get if isinstance(link, dict) else lambda name, default=None: getattr(link, name, default)
    out: dict[str, Any] = {"rtt_ms": float(get("rtt_ms", 0.0) or 0.0),
                           "jitter_ms": float(get("jitter_ms", 0.0) or 0.0)}
    for name in ("rate_kbps", "up_kbps", "down_kbps"):
        value = get(name, None)
        out[name] = None if value is None else float(value)
    up, down = get("up_ms", None), get("down_ms", None)
    if up is not None or down is not None:
        raise ValueError("the latency lab takes a symmetric link (rtt_ms); up_ms/down_ms are not supported here")
    return out


def _tap(target: Any, config: ExperimentConfig, name: str = _TAP_NAME) -> Any:
    """A wiretap in front of ``target`` in a thread of its own; through the config's link if any."""
    from ..wiretap import wiretap_in_thread

    name = _unique(name)
    if not config.linked:
        return wiretap_in_thread(target, name, max_capture=64 * 1024)
    from ..link import Link

    link = Link(rtt_ms=config.rtt_ms, jitter_ms=config.jitter_ms, rate_kbps=config.rate_kbps,
                up_kbps=config.up_kbps, down_kbps=config.down_kbps, seed=config.seed)
    return wiretap_in_thread(target, name, max_capture=64 * 1024, link=link)


# The lab-server transports


@dataclass
class _Pass:
    """One client run against a fresh lab server."""

    got: LightResult
    ready_bytes: tuple[int, int] = (0, 0)
    warm_bytes: tuple[int, int] = (0, 0)
    end_bytes: tuple[int, int] = (0, 0)
    errors: list[str] = field(default_factory=list)


def _client_args(key: str) -> tuple[str, dict[str, Any]]:
    """Transport key -> (the client's transport name, its options)."""
    interval = short_poll_interval(key)
    if interval is not None:
        return "short_poll", {"interval": interval}
    if key.endswith("_tornado"):
        return key[: -len("_tornado")], {}
    return key, {}


def _start_server(key: str, config: ExperimentConfig) -> tuple[Any, str, asyncio.AbstractEventLoop]:
    """A fresh server for ``key`` in a thread of its own -> (handle, URL, its loop).

    WebSocket: the lab server's websockets side. ``*_tornado``: the lab
    server's tornado side (lesson 01's). Every other HTTP transport: the
    light asyncio server of :mod:`wslab.lab.experiment.httpserver`. Events are
    stamped with :data:`CLOCK`.
    """
    if key.startswith("websocket") or key.endswith("_tornado"):
        from ..labserver import lab_server_in_thread

        lab = lab_server_in_thread(_unique(_LAB_NAME), seed=config.seed)
        # Set on the lab's own fresh source: an empty EventSource passed as
        # source= is falsy, and labserver replaces it.
        lab.source.clock = CLOCK
        return lab, lab.ws_url if key.startswith("websocket") else lab.http_url, lab._loop  # type: ignore[return-value]
    from .httpserver import light_http_server

    light = light_http_server(_unique(_HTTP_NAME), seed=config.seed, clock=CLOCK)
    return light, light.http_url, light.loop


async def _lab_pass(
    key: str, config: ExperimentConfig, *, through_tap: bool, warmup: int,
    report: Callable[[int], Any] | None = None,
) -> _Pass:
    """Run ``key``'s client against a lab server in its own thread; the schedule starts once it is warm."""
    transport, options = _client_args(key)
    gaps, payloads = schedule(config)
    lab, target, server_loop = _start_server(key, config)
    tap = world = None
    stop_blocking: Callable[[], None] = lambda: None  # noqa: E731
    state: dict[str, Any] = {}
    errors: list[str] = []
    try:
        if through_tap:
            tap = _tap(target, config)
            target = tap.url
        if config.block_ms > 0:
            # A loop blocked by a handler cannot also be the clock of the world:
            # events then happen in a thread of their own, on time.
            world = _servers.LoopThread("latency-world")
            schedule_loop = world.loop
            stop_blocking = _block_loop(server_loop, config)
        else:
            schedule_loop = server_loop

        def tap_bytes() -> tuple[int, int]:
            return (tap.bytes_up, tap.bytes_down) if tap is not None else (0, 0)

        def on_ready() -> None:
            state["ready_bytes"] = tap_bytes()
            if warmup:
                asyncio.run_coroutine_threadsafe(
                    lab.run_schedule([WARMUP_GAP_S] * warmup, [{"warmup": True}] * warmup), server_loop)

        def on_warm() -> None:
            state["warm_bytes"] = tap_bytes()
            state["schedule"] = asyncio.run_coroutine_threadsafe(lab.run_schedule(gaps, payloads), schedule_loop)

        if key == "long_poll_httpx":
            client = _httpx_long_poll(target, config, warmup, on_ready, on_warm)
        else:
            client = light_receive(transport, target, config.events, warmup=warmup, on_ready=on_ready,
                                   on_warm=on_warm, timeout=time_budget(config), **options)
        got: LightResult | None = None
        # Events published so far, warm-up events left out (they are not in the progress line's total).
        counter = asyncio.ensure_future(
            count_progress(lambda: len(got.recorder) if got else max(0, lab.source.newest - warmup), report))
        try:
            got = await client
        finally:
            counter.cancel()
        done = _Pass(got, state.get("ready_bytes", (0, 0)), state.get("warm_bytes", (0, 0)), errors=errors)
        errors.extend(got.errors)
        future = state.get("schedule")
        if future is not None:
            try:
                await asyncio.wait_for(asyncio.wrap_future(future), timeout=time_budget(config))
            except TimeoutError:
                errors.append("the schedule did not finish in time")
            except Exception as exc:  # noqa: BLE001 - kept in the result, never lost
                errors.append(f"the schedule failed: {exc!r}")
        done.end_bytes = tap_bytes()
        return done
    finally:
        stop_blocking()
        if tap is not None:
            await tap.aclose()
        await lab.aclose()
        if world is not None:
            world.stop()
        errors.extend(f"server: {e!r}" for e in lab.errors)


async def _httpx_long_poll(url: str, config: ExperimentConfig, warmup: int,
                           on_ready: Callable[[], Any], on_warm: Callable[[], Any]) -> LightResult:
    """Long polling read by httpx (:func:`wslab.lab.transports.receive`): what a heavier client adds.

    The same keep-alive client receives the warm-up events first, then the timed ones.
    """
    import httpx

    from ..transports import ReceiveTimeout, receive

    with contextlib.suppress(ImportError):
        import anyio._backends._asyncio  # noqa: F401 - httpx imports it on its first request: an import, not set-up

    out = LightResult("long_poll_httpx")
    # Made before the clock starts: an AsyncClient loads its TLS certificates when made.
    client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=LONGPOLL_HOLD + 10))
    t0 = CLOCK()

    def listening() -> None:
        out.setup_s = CLOCK() - t0
        on_ready()

    async with client:
        try:
            if warmup:
                await receive("long_poll", {"http": url}, warmup, on_ready=listening, client=client,
                              clock=CLOCK, timeout=time_budget(config), longpoll_timeout=LONGPOLL_HOLD)

            def start() -> None:
                if not warmup:
                    listening()  # no warm-up: listening now, after the set-up request
                on_warm()

            timed = receive("long_poll", {"http": url}, config.events, on_ready=start, client=client,
                            clock=CLOCK, timeout=time_budget(config), longpoll_timeout=LONGPOLL_HOLD)
            result = await timed
        except ReceiveTimeout as exc:
            result = exc.result
            out.errors.append(str(exc))
    first = result.deliveries[0].seq - 1 if result.deliveries else 0
    for d in result.deliveries:
        out.recorder.record(d.seq - first, d.created, d.received)
    out.requests = result.requests
    out.setup_requests = result.setup_requests + warmup
    out.empty_responses = result.empty_responses
    return out


def quiet_needed(key: str, config: ExperimentConfig) -> bool:
    """True when ``key``'s figure is a fraction of a millisecond, so its latency pass must run alone.

    That is every push transport and long polling on loopback. Short polling
    (a delay of half an interval, tens of milliseconds and more) and any run
    over a link (at least half its round trip) are not: the tens of
    microseconds that passes running side by side cost each other do not
    show at that scale.
    """
    return not config.linked and short_poll_interval(key) is None


async def _latency(key: str, config: ExperimentConfig, report: Callable[[int], Any]) -> tuple[TransportResult, _Pass]:
    """The latency pass (with a link, also the bytes): a :class:`TransportResult` without bytes yet."""
    latency = await _lab_pass(key, config, through_tap=config.linked, warmup=config.warmup, report=report)
    got = latency.got
    rec = got.recorder
    interval = short_poll_interval(key)
    out = TransportResult(
        key, config.events,
        latencies_ms=rec.latencies_ms(),
        seqs=list(rec.seqs),
        requests=got.requests,
        empty_responses=got.empty_responses,
        setup_ms=got.setup_s * 1000,
        interval_ms=None if interval is None else interval * 1000,
        errors=list(latency.errors),
    )
    if config.linked:
        _add_bytes(out, latency)
    return out, latency


async def _bytes(out: TransportResult, key: str, config: ExperimentConfig, report: _Reporter) -> None:
    """The loopback bytes pass: the same schedule through a wiretap, no warm-up (bytes do not depend on warmth)."""
    report.begin(2)
    wire = await _lab_pass(key, config, through_tap=True, warmup=0, report=report)
    out.relay_p50_ms = _r(percentile(wire.got.recorder.latencies_ms(), 50))
    out.errors += [f"bytes pass: {e}" for e in wire.errors]
    _add_bytes(out, wire)


def _add_bytes(out: TransportResult, wire: _Pass) -> None:
    out.setup_bytes_up, out.setup_bytes_down = wire.ready_bytes
    out.bytes_up = wire.end_bytes[0] - wire.warm_bytes[0]
    out.bytes_down = wire.end_bytes[1] - wire.warm_bytes[1]


class _Reporter:
    """Counts one transport's events for a progress callback, never past the passes begun; tops up each pass."""

    def __init__(self, key: str, config: ExperimentConfig, progress: Callable[[str, int], Any] | None) -> None:
        self.key, self.events, self.progress = key, config.events, progress
        self.reported = 0
        self.cap = config.events  # the events of the passes begun: the count never goes past them
        if progress:
            progress(key, 0)

    def __call__(self, n: int) -> None:
        n = min(n, self.cap - self.reported)
        if n <= 0:
            return
        self.reported += n
        if self.progress:
            self.progress(self.key, n)

    def begin(self, passes: int) -> None:
        """Pass number ``passes`` begins: its events may now be counted."""
        self.cap = passes * self.events

    def finish(self, passes: int) -> None:
        # the counter samples; top up to exactly the events of the passes done
        if self.progress and self.reported < passes * self.events:
            self(passes * self.events - self.reported)


async def measure_transport(
    key: str, config: ExperimentConfig, *, bytes_pass: bool = True,
    progress: Callable[[str, int], Any] | None = None,
) -> TransportResult:
    """Measure one transport, its passes one after the other; see the module doc for the passes."""
    report = _Reporter(key, config, progress)
    if key == "tcp_floor":
        via = (lambda server: _tap((server.host, server.port), config)) if config.linked else None
        result = await measure_tcp_floor(config, report=report, via=via)
        report.finish(1)
        return result
    out, _ = await _latency(key, config, report)
    report.finish(1)
    if bytes_pass and not config.linked:
        await _bytes(out, key, config, report)
        report.finish(2)
    return out


async def _measure_all(config: ExperimentConfig, *, bytes_pass: bool, overlap: bool,
                       progress: Callable[[str, int], Any] | None) -> dict[str, TransportResult]:
    """Every transport of ``config``: the quiet latency passes one at a time, then the rest side by side."""
    if not overlap:
        return {key: await measure_transport(key, config, bytes_pass=bytes_pass, progress=progress)
                for key in config.transports}
    out: dict[str, TransportResult] = {}
    later: list[Any] = []

    def counted(key: str, n: int) -> None:  # the side-by-side passes count their events, without renaming the line
        if progress and n:
            progress(key, n)

    async def bytes_pass_of(key: str, report: _Reporter) -> None:
        await _bytes(out[key], key, config, report)
        report.finish(2)

    for key in config.transports:
        if not quiet_needed(key, config):
            later.append(measure_transport(key, config, bytes_pass=bytes_pass, progress=progress and counted))
            continue
        report = _Reporter(key, config, progress)  # alone: the progress line names it
        if key == "tcp_floor":
            out[key] = await measure_tcp_floor(config, report=report)
            report.finish(1)
            continue
        out[key], _ = await _latency(key, config, report)
        report.finish(1)
        if bytes_pass:
            later.append(bytes_pass_of(key, report))
    if later and progress:
        progress("the bytes and short polling, side by side", 0)
    for result in await asyncio.gather(*later):
        if isinstance(result, TransportResult):
            out[result.key] = result
    return {key: out[key] for key in config.transports}


def _merge(config: ExperimentConfig | None, overrides: dict[str, Any]) -> ExperimentConfig:
    if config is None:
        return ExperimentConfig(**overrides)
    if overrides:
        data = asdict(config)
        data.update(overrides)
        return ExperimentConfig(**data)
    return config


async def run_experiment(
    config: ExperimentConfig | None = None,
    *,
    link: Any = None,
    bytes_pass: bool = True,
    overlap: bool = True,
    progress: bool | Callable[[str, int], Any] | None = None,
    **overrides: Any,
) -> Results:
    """Run the same seeded schedule over every transport in ``config``; return :class:`Results`.

    Keyword arguments override the configuration's fields::

        results = await wslab.run_experiment(events=200, transports=["websocket", "long_poll"])
        far = await wslab.run_experiment(events=200, link=wslab.Link(rtt_ms=100))
        results.table()

    ``link`` (a :class:`wslab.Link`, a preset name such as ``"cross-ocean"``,
    or ``{"rtt_ms": ..., "rate_kbps": ...}``) puts every transport, the floor
    too, through a relay that behaves like that network; its round trip and
    rate are kept in the config (and ``results.json``).

    The servers run in threads of their own; this coroutine is the measuring
    client, on the caller's loop. ``progress``: ``True`` shows a progress bar
    (a widget in Jupyter, text in a terminal), ``False`` none, ``None`` (the
    default) shows one when the run should take more than a few seconds; a
    callable gets ``progress(key, n)`` as events are done and
    ``progress(key, 0)`` as a transport starts. With ``bytes_pass=False``
    each transport runs once, without byte counts (with a link there is only
    one pass anyway).

    ``overlap`` (the default): the passes whose figure is a fraction of a
    millisecond (push and long polling on loopback, see :func:`quiet_needed`)
    run one at a time, alone; then everything else runs side by side: the
    loopback bytes passes (bytes do not depend on timing), short polling
    (its delay is tens of milliseconds and more) and every pass over a link.
    That takes about as long as one transport instead of one per transport,
    and changes no figure by more than the few tens of microseconds runs
    cost each other. ``overlap=False`` runs every pass alone.
    """
    config = _merge(config, {**overrides, **link_fields(link)})
    if progress is None:
        progress = expected_seconds(config, bytes_pass=bytes_pass, overlap=overlap) > 3
    if progress is True:
        with _progress_bar(config, bytes_pass, overlap) as bar:
            return await run_experiment(config, bytes_pass=bytes_pass, overlap=overlap, progress=bar)
    results = Results(config)
    started = CLOCK()
    results.transports.update(await _measure_all(config, bytes_pass=bytes_pass, overlap=overlap,
                                                 progress=progress or None))
    results.seconds = CLOCK() - started
    return results


def _passes(key: str, config: ExperimentConfig, bytes_pass: bool) -> int:
    return 1 if key == "tcp_floor" or not bytes_pass or config.linked else 2


def _progress_bar(config: ExperimentConfig, bytes_pass: bool, overlap: bool = True
                  ) -> contextlib.AbstractContextManager[Callable[[str, int], None]]:
    """:func:`progress_line` over every event of every pass of ``config``."""
    total = sum(_passes(k, config, bytes_pass) for k in config.transports) * config.events
    return progress_line(total, expected_seconds(config, bytes_pass=bytes_pass, overlap=overlap))


def expected_seconds(config: ExperimentConfig, *, bytes_pass: bool = True, overlap: bool = True) -> float:
    """About how long :func:`run_experiment` takes for ``config``, seconds (on an idle machine)."""
    timed, rtt = span(config), config.rtt_ms / 1000
    alone, side_by_side = 0.0, [0.0]
    for key in config.transports:
        interval = short_poll_interval(key) or 0.0
        per_pass = timed + interval + 0.3 + config.warmup * WARMUP_GAP_S + 3 * rtt  # 0.3 s: start and stop
        if key.startswith("long_poll"):
            per_pass += config.events * rtt / 4  # a round trip per event when events come faster
        passes = _passes(key, config, bytes_pass)
        if not overlap:
            alone += passes * per_pass
        elif quiet_needed(key, config):
            alone += per_pass
            side_by_side += [per_pass] * (passes - 1)
        else:
            side_by_side += [passes * per_pass]
    return alone + max(side_by_side)

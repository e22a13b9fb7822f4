"""The lab server: one event source, four ways to deliver it.

Endpoints (``lab.http_url`` is ``http://127.0.0.1:<port>/``)::

    GET /                      a short text page; sets a ``visitor`` cookie if you have none
    GET /poll?since=N          short polling: the events after cursor N, at once (maybe none)
    GET /longpoll?since=N      long polling: held until there is an event after N,
        [&timeout=S]           or S seconds pass (default 20): then ``{"events": []}``
    GET /events                server-sent events (text/event-stream): one response that
        [?since=N][&limit=K]   never ends (or ends after K events, to watch a client
                               reconnect), an ``id: <seq>`` line per event; a client that
                               reconnects sends ``Last-Event-ID: <seq>`` and resumes there
    ws://127.0.0.1:<ws_port>/?since=N
                               WebSocket push: one JSON text message per event, each
                               event serialised once and broadcast() to the clients
                               that are caught up (the others catch up first)

The HTTP side is in :mod:`wslab.lab.labhttp`, the WebSocket push in
:mod:`wslab.lab.labpush`; this module holds the handle and starts both.

Hostile clients (issue 14): every parameter is read by one function,
:func:`~wslab.lab.labhttp.parse_query` (percent-escapes must be UTF-8; nothing is stripped, so
``since=%00`` is refused, not read as 0), and numbers are counted before
``int()`` (which refuses more than 4,300 digits); every error, tornado's own
404/405 included, is a JSON body. The HTTP port gives a client
:data:`HEADER_TIMEOUT` seconds to send its headers, caps open connections at
``max_connections`` (the oldest idle one makes room; else ``503``) and
survives running out of file descriptors (:mod:`wslab.lab.labhttp`). The
WebSocket port applies :mod:`wslab.server.limits` (handshake timeout, keepalive,
message size, a bound on what is buffered per client, a connection cap, the
Origin policy: a page from another site gets 403); the HTTP port refuses a
request that carries such an ``Origin`` with the same 403 (JSON).

``/poll`` and ``/longpoll`` answer ``{"events": [...], "cursor": N}`` where
``cursor`` is the seq of the last event in the answer (or the one sent);
every event is ``{"seq", "created", "data"}`` (:class:`wslab.lab.events.Event`).
A malformed cursor, or one from the future, gets **400** and a JSON body that
names the value and what to send (:class:`wslab.lab.events.CursorError`); so does
a bad ``timeout``. A WebSocket handshake with a bad cursor gets the same 400.

Why tornado for the HTTP side: it ships with Jupyter already, it is
maintained, it speaks HTTP/1.1 with keep-alive, it streams a response bit by
bit with ``flush()`` (which is all SSE and long polling need), and it runs on
asyncio, so it shares a loop with websockets and with the notebook. Writing
our own HTTP parser would teach the wrong lesson. The WebSocket side is the
websockets library on a port of its own (two listeners, one source).

Design note
-----------
Like :mod:`wslab.server.background`, a lab server runs either on the loop already
running (task mode, ``await lab_server()``) or on a loop of its own in a
daemon thread (thread mode, ``lab_server_in_thread()``, a
:class:`wslab.server.background.LoopThread`); :class:`wslab.server.background.Background` decides
where stopping runs. Everything tornado and websockets own is
touched only on that loop. The :class:`~wslab.lab.events.EventSource` is the one
shared object: ``lab.publish()`` may be called from any thread.

Held requests (long polls, SSE streams) wait on ``source.wait_after()``
*and* on a "stopping" future; so do the WebSocket broadcaster and every
WebSocket connection's task (see :mod:`wslab.lab.labpush` for how a connection
catches up and joins the broadcast without losing or repeating an event). So
``stop()`` ends them at once: a held long poll answers ``{"events": []}``, an SSE stream ends
its chunked body, WebSocket clients get 1001. What must never happen: a stop
that waits for a client (every step is bounded by ``stop_timeout``, then
connections are cut), a fixed port, a listener on anything but loopback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

import tornado.netutil
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from .events import CursorError, Event, EventSource
from .labhttp import (
    DEFAULT_LONGPOLL_TIMEOUT,
    HEADER_TIMEOUT,
    MAX_HTTP_CONNECTIONS,
    BadParameter,
    http_server,
    parse_query,
)
from .labpush import FANOUTS, Pusher
from ..server.limits import DEFAULT_LIMITS, Guard, Limits
from ..server.background import Background, _running_loop, register, release, start_in_thread

__all__ = ["LabServer", "lab_server", "lab_server_in_thread", "parse_query", "BadParameter", "DEFAULT_LONGPOLL_TIMEOUT",
           "HEADER_TIMEOUT", "MAX_HTTP_CONNECTIONS"]

DEFAULT_STOP_TIMEOUT = 3.0


@dataclass(eq=False)
class LabServer(Background):
    """A handle on a running lab server (see the module doc for its endpoints).

    Attributes: ``name``, ``host``, ``port`` (HTTP), ``ws_port``, ``http_url``,
    ``ws_url``, ``url`` (= ``http_url``), ``mode`` (``"task"``/``"thread"``),
    ``source`` (the :class:`~wslab.lab.events.EventSource`), ``requests`` and
    ``empty`` (:class:`collections.Counter` by endpoint: ``"poll"``,
    ``"longpoll"``, ``"events"``, ``"ws"``, ``"index"``; ``requests["resumes"]``
    counts SSE requests that carried ``Last-Event-ID``), ``errors``.
    """

    name: str
    source: EventSource
    host: str = "127.0.0.1"
    port: int = 0
    ws_port: int = 0
    mode: str = "task"
    started: float = field(default_factory=time.time)
    errors: list[BaseException] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)
    empty: Counter[str] = field(default_factory=Counter)
    stop_timeout: float = DEFAULT_STOP_TIMEOUT
    _http: Any = field(default=None, repr=False)
    _ws: Any = field(default=None, repr=False)
    _stopping: asyncio.Future[None] | None = field(default=None, repr=False)
    _ending: asyncio.Future[None] | None = field(default=None, repr=False)
    _held: int = field(default=0, repr=False)
    _busy: set[Any] = field(default_factory=set, repr=False)
    #: The WebSocket port's :class:`wslab.server.limits.Guard` and :class:`wslab.lab.labpush.Pusher`.
    guard: Guard | None = field(default=None, repr=False)
    pusher: Pusher | None = field(default=None, repr=False)
    #: Connections the HTTP port shed to stay up (see :mod:`wslab.lab.labhttp`): ``"evicted"``
    #: (idle ones closed to make room), ``"refused"`` (503 at the cap), ``"out of files"``
    #: (pauses after the process ran out of file descriptors), ``"refused: origin"`` (403 for a
    #: request from another site's page).
    shed: Counter[str] = field(default_factory=Counter)

    # Addresses

    @property
    def http_url(self) -> str:
        return f"http://{self._netloc_host}:{self.port}/"

    @property
    def ws_url(self) -> str:
        return f"ws://{self._netloc_host}:{self.ws_port}/"

    @property
    def _netloc_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def url(self) -> str:
        return self.http_url

    @property
    def connections(self) -> int:
        """Open HTTP connections plus open WebSocket connections."""
        if self._stopped:
            return 0
        http = len(getattr(self._http, "_connections", ())) if self._http else 0
        ws = len(self._ws.connections) if self._ws else 0
        return http + ws

    @property
    def held(self) -> int:
        """Requests held open right now (long polls, SSE streams, WebSocket pushes)."""
        return self._held

    # Events

    def publish(self, payload: Any = None) -> Event:
        """Publish an event to every transport; safe from any thread."""
        return self.source.publish(payload)

    async def run_schedule(self, gaps: Sequence[float], payloads: Sequence[Any] | None = None) -> list[Event]:
        """Publish one event after each gap, on the caller's loop (any loop, any thread).

        ``asyncio.create_task(lab.run_schedule(wslab.poisson(0.1, 20, seed=1)))``
        runs it in the background of a notebook.
        """
        return await self.source.run_schedule(gaps, payloads)

    def end_streams(self) -> None:
        """End every open SSE stream now (as a proxy's timeout or a deploy would).

        Clients see their stream end; an ``EventSource`` (and the ``"sse"``
        client) reconnects with ``Last-Event-ID`` and misses nothing.
        Safe from any thread.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def end() -> None:
            ending, self._ending = self._ending, loop.create_future()
            if ending is not None and not ending.done():
                ending.set_result(None)

        if _running_loop() is loop:
            end()
        else:
            loop.call_soon_threadsafe(end)

    # Held requests

    async def hold(
        self,
        cursor: int,
        timeout: float | None,
        gone: asyncio.Future[None] | None = None,
        *,
        ending: asyncio.Future[None] | None = None,
    ) -> list[Event] | None:
        """Wait for events after ``cursor``; ``[]`` on timeout, ``None`` when stopping or ``gone``.

        An SSE stream passes ``ending``, the future :meth:`end_streams`
        resolves (taken when the stream opened), so that ends the wait too.
        """
        stopping = self._stopping
        if stopping is None or stopping.done():
            return None
        self._held += 1
        try:
            until = [f for f in (stopping, gone, ending) if f is not None]
            return await self.source.wait_after(cursor, timeout, until=until)
        finally:
            self._held -= 1

    # Stopping (stop() and aclose() come from Background): held requests end
    # at once, every step is bounded by stop_timeout. stop() from a cell on
    # the server's own loop stops listening and ends held requests at once,
    # and finishes closing connections in the background; ``await
    # lab.aclose()`` waits for that.

    def _stop_listening(self) -> None:
        if self._stopping is not None and not self._stopping.done():
            self._stopping.set_result(None)
        if self._http is not None:
            self._http.stop()  # stop listening
        if self._ws is not None:
            self._ws.close(close_connections=True)

    async def _close(self) -> None:
        self._stop_listening()
        # Let held handlers see "stopping" and answer before connections are
        # closed: a few loop steps, bounded.
        for _ in range(50):
            if self._held == 0:
                break
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        try:
            async with asyncio.timeout(self.stop_timeout):
                await asyncio.gather(self._http.close_all_connections(), self._ws.wait_closed(),
                                     self.pusher.aclose() if self.pusher else asyncio.sleep(0))
        except TimeoutError:
            for conn in list(getattr(self._http, "_connections", ())):
                conn.stream.close()
            for conn in list(self._ws.connections):
                conn.transport.abort()

    def _begin_close(self) -> None:
        self._stop_listening()
        super()._begin_close()  # the rest of _close() as a task

    def _release(self) -> None:
        for sock in getattr(self._http, "_sockets", {}).values():
            sock.close()

    def _report(self, exc: BaseException) -> None:
        self.errors.append(exc)
        print(
            f"! lab server {self.name!r}: {type(exc).__name__}: {exc}\n"
            f"! the client got 500; the exception is kept in lab.errors\n"
            + "".join(traceback.format_exception(exc)),
            file=sys.stderr,
            flush=True,
        )

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (
            f"<wslab.LabServer {self.name!r} {self.http_url} + {self.ws_url} {self.mode} mode, "
            f"{state}, {self.source.newest} event(s), {self.connections} connection(s)>"
        )


# WebSocket side (websockets)


def _process_request(lab: LabServer) -> Any:
    """The WebSocket port's check of ``?since=``: the same JSON 400 as the HTTP port's."""

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        try:
            cursor = lab.source.check_cursor(parse_query(urlsplit(request.path).query).get("since"))
        except (CursorError, BadParameter) as exc:
            lab.requests["ws"] += 1
            body = json.dumps(exc.to_json()).encode()
            headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return Response(HTTPStatus.BAD_REQUEST, "Bad Request", headers, body)
        connection.cursor = cursor  # type: ignore[attr-defined]
        return None

    return process_request


# Starting


async def _start(
    name: str,
    source: EventSource | None,
    seed: int | None,
    clock: Callable[[], float],
    mode: str,
    stop_timeout: float,
    host: str,
    max_connections: int,
    limits: Limits | None,
    fanout: str,
    ws_kwargs: dict[str, Any],
) -> LabServer:
    if source is None:  # not `source or ...`: an empty source is falsy (len 0)
        source = EventSource(seed=seed, clock=clock)
    lab = LabServer(name=name, source=source, host=host, mode=mode, stop_timeout=stop_timeout)
    loop = asyncio.get_running_loop()
    lab._loop = loop
    lab._stopping = loop.create_future()
    lab._ending = loop.create_future()
    http = http_server(lab, max_connections)
    sockets = tornado.netutil.bind_sockets(0, lab.host)
    http.add_sockets(sockets)
    lab._http = http
    lab.port = sockets[0].getsockname()[1]
    # The WebSocket port: wslab's listener limits (handshake timeout, keepalive,
    # message size, a bound on what is buffered per client, a connection cap,
    # the Origin policy: see wslab.limits), then our own check of ?since=.
    limits = DEFAULT_LIMITS if limits is None else limits
    if "close_timeout" not in ws_kwargs:
        limits = limits.replace(close_timeout=max(0.05, min(limits.close_timeout, stop_timeout)))
    lab.guard = Guard(limits, name=name)
    lab.pusher = Pusher(lab, fanout)
    try:
        kwargs = lab.guard.serve_kwargs(process_request=_process_request(lab), **ws_kwargs)
        lab._ws = await ws_serve(lab.pusher.handle, lab.host, 0, **kwargs)
    except BaseException:
        http.stop()
        for sock in sockets:
            sock.close()
        raise
    lab.pusher.start()
    lab.ws_port = lab._ws.sockets[0].getsockname()[1]
    return lab


def _check_options(host: Any, max_connections: Any, fanout: Any, ws_kwargs: dict[str, Any]) -> None:
    """Refuse, with what to do instead, what the lab server cannot do."""
    try:
        loopback = isinstance(host, str) and ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if host == "localhost":
        raise ValueError(
            "give the lab server an address, not host='localhost': a browser may resolve localhost to ::1 "
            "while the server listens on 127.0.0.1; keep the default host='127.0.0.1'"
        )
    if not loopback:
        raise ValueError(
            f"the lab server listens on a loopback address only, got host={host!r}: on a shared hub "
            f"every kernel shares one network, and the lab has no access control. Keep the default "
            f"host='127.0.0.1' (a browser on this computer reaches it; on JupyterHub, through "
            f"jupyter-server-proxy)"
        )
    if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
        raise ValueError(f"max_connections must be a whole number above 0, got {max_connections!r}")
    if fanout not in FANOUTS:
        raise ValueError(f"fanout must be one of {FANOUTS} (see wslab.labpush), got {fanout!r}")
    for key in ("port", "ws_port", "sock", "ssl"):
        if key in ws_kwargs:
            raise TypeError(
                f"lab_server() takes no {key}= (got {ws_kwargs[key]!r}): the OS picks both ports "
                f"(port 0); read them back as lab.port and lab.ws_port"
            )


async def lab_server(
    name: str = "lab",
    *,
    source: EventSource | None = None,
    seed: int | None = 0,
    clock: Callable[[], float] = time.time,
    stop_timeout: float = DEFAULT_STOP_TIMEOUT,
    host: str = "127.0.0.1",
    max_connections: int = MAX_HTTP_CONNECTIONS,
    limits: Limits | None = None,
    fanout: str = "broadcast",
    **ws_kwargs: Any,
) -> LabServer:
    """Start a lab server on the running loop (task mode); ``lab = await wslab.lab_server()``.

    It listens on ``127.0.0.1``, two ports the OS picks (``lab.http_url``,
    ``lab.ws_url``), serves between cells, and shows in ``wslab.status()``.
    A lab server already running under ``name`` is stopped first. Pass a
    ``source`` to share an :class:`~wslab.lab.events.EventSource`, else a new
    one seeded with ``seed`` and stamping events with ``clock`` (``time.time``
    by default) is made. ``host`` may be another loopback address (``"::1"``),
    nothing else (:class:`ValueError`); ``max_connections`` caps the HTTP
    port's open connections; ``limits`` (a :class:`wslab.Limits`) sets the
    WebSocket port's (``lab.guard`` counts what it refused or closed);
    ``fanout="each"`` pushes the old way, a task and a ``send()`` per client,
    to compare with the default ``"broadcast"`` (:mod:`wslab.lab.labpush`).
    Other keyword arguments go to
    :func:`websockets.asyncio.server.serve` (``compression=None`` refuses
    permessage-deflate; by default it is accepted when a client offers it).
    """
    _check_options(host, max_connections, fanout, ws_kwargs)
    await release(name)
    lab = await _start(name, source, seed, clock, "task", stop_timeout, host, max_connections, limits, fanout,
                       ws_kwargs)
    register(lab)
    return lab


def lab_server_in_thread(
    name: str = "lab",
    *,
    source: EventSource | None = None,
    seed: int | None = 0,
    clock: Callable[[], float] = time.time,
    stop_timeout: float = DEFAULT_STOP_TIMEOUT,
    host: str = "127.0.0.1",
    max_connections: int = MAX_HTTP_CONNECTIONS,
    limits: Limits | None = None,
    fanout: str = "broadcast",
    **ws_kwargs: Any,
) -> LabServer:
    """Start a lab server on its own loop in a daemon thread (thread mode); no ``await``.

    Use it when cells block (a blocking socket, ``time.sleep``) or when a
    measuring client runs on another loop. Same arguments as :func:`lab_server`.
    """
    _check_options(host, max_connections, fanout, ws_kwargs)
    return start_in_thread(
        name,
        lambda: _start(name, source, seed, clock, "thread", stop_timeout, host, max_connections, limits, fanout,
                       ws_kwargs),
    )

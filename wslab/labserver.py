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
                               WebSocket push: one JSON text message per event

Hostile clients (issue 14): every parameter is read by one function,
:func:`parse_query` (percent-escapes must be UTF-8; nothing is stripped, so
``since=%00`` is refused, not read as 0), and numbers are counted before
``int()`` (which refuses more than 4,300 digits); every error, tornado's own
404/405 included, is a JSON body. The HTTP port gives a client
:data:`HEADER_TIMEOUT` seconds to send its headers, caps open connections at
``max_connections`` (the oldest idle one makes room; else ``503``) and
survives running out of file descriptors (:class:`_LabHTTPServer`).

``/poll`` and ``/longpoll`` answer ``{"events": [...], "cursor": N}`` where
``cursor`` is the seq of the last event in the answer (or the one sent);
every event is ``{"seq", "created", "data"}`` (:class:`wslab.events.Event`).
A malformed cursor, or one from the future, gets **400** and a JSON body that
names the value and what to send (:class:`wslab.events.CursorError`); so does
a bad ``timeout``. A WebSocket handshake with a bad cursor gets the same 400.

Why tornado for the HTTP side: it ships with Jupyter already, it is
maintained, it speaks HTTP/1.1 with keep-alive, it streams a response bit by
bit with ``flush()`` (which is all SSE and long polling need), and it runs on
asyncio, so it shares a loop with websockets and with the notebook. Writing
our own HTTP parser would teach the wrong lesson. The WebSocket side is the
websockets library on a port of its own (two listeners, one source).

Design note
-----------
Like :mod:`wslab.servers`, a lab server runs either on the loop already
running (task mode, ``await lab_server()``) or on a loop of its own in a
daemon thread (thread mode, ``lab_server_in_thread()``, a
:class:`wslab.servers.LoopThread`); :class:`wslab.servers.Background` decides
where stopping runs. Everything tornado and websockets own is
touched only on that loop. The :class:`~wslab.events.EventSource` is the one
shared object: ``lab.publish()`` may be called from any thread.

Held requests (long polls, SSE streams, WebSocket pushes) wait on
``source.wait_after()`` *and* on a "stopping" future, so ``stop()`` ends them
at once: a held long poll answers ``{"events": []}``, an SSE stream ends
its chunked body, WebSocket clients get 1001. What must never happen: a stop
that waits for a client (every step is bounded by ``stop_timeout``, then
connections are cut), a fixed port, a listener on anything but loopback.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import socket
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Callable, Sequence
from urllib.parse import parse_qsl, urlsplit

import tornado.iostream
import tornado.netutil
import tornado.web
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .events import CursorError, Event, EventSource, shown
from .labpush import FANOUTS, Pusher
from .limits import DEFAULT_LIMITS, Guard, Limits
from .servers import Background, _running_loop, register, release, start_in_thread

__all__ = ["LabServer", "lab_server", "lab_server_in_thread", "parse_query", "BadParameter", "DEFAULT_LONGPOLL_TIMEOUT",
           "HEADER_TIMEOUT", "MAX_HTTP_CONNECTIONS"]

#: How long ``/longpoll`` holds a request when the client names no timeout, seconds.
DEFAULT_LONGPOLL_TIMEOUT = 20.0
#: The longest hold a client may ask for, seconds.
MAX_LONGPOLL_TIMEOUT = 120.0
#: An SSE stream with nothing to say sends a ``: keep-alive`` comment this often, seconds.
SSE_KEEPALIVE = 15.0
DEFAULT_STOP_TIMEOUT = 3.0
#: Seconds an HTTP client gets to send a request's headers, and that a keep-alive
#: connection may sit idle between requests (tornado's ``idle_connection_timeout``).
HEADER_TIMEOUT = 10.0
#: Open HTTP connections at most (see :class:`_LabHTTPServer`).
MAX_HTTP_CONNECTIONS = 256
#: Request headers (bytes) and request bodies (the lab answers GET only) at most.
MAX_HEADER = 16 * 1024
MAX_BODY = 4 * 1024


class BadParameter(ValueError):
    """A query parameter other than the cursor that is not acceptable (HTTP 400)."""

    status = 400

    def __init__(self, name: str, value: Any, hint: str) -> None:
        self.name, self.value, self.hint = name, value, hint
        super().__init__(f"bad {name} {shown(value)!r}: {hint}")

    def to_json(self) -> dict[str, Any]:
        return {"error": f"bad {self.name}", "value": shown(self.value), "hint": self.hint, "message": str(self)}


#: At most this many ``name=value`` pairs in a query string.
MAX_QUERY_FIELDS = 16


def parse_query(query: str) -> dict[str, str]:
    """A URL's query string as ``{name: value}`` (the last value of a repeated name wins).

    Both ports read their parameters with this one function, so a query is
    either read the same way or refused the same way: percent-escapes must
    decode to UTF-8 (``%FF%FE`` does not) and there are at most
    :data:`MAX_QUERY_FIELDS` pairs; else :class:`BadParameter` (HTTP 400).
    Nothing is stripped: ``since=%00`` is a NUL character, not an empty cursor.
    """
    try:
        pairs = parse_qsl(query, keep_blank_values=True, encoding="utf-8", errors="strict",
                          max_num_fields=MAX_QUERY_FIELDS)
    except UnicodeDecodeError:
        raise BadParameter("query", query, "percent-escapes must encode UTF-8 text, for example since=7") from None
    except ValueError:
        raise BadParameter("query", query, f"send at most {MAX_QUERY_FIELDS} name=value pairs") from None
    return dict(pairs)


def _timeout_param(text: str | None) -> float:
    if text is None or text == "":
        return DEFAULT_LONGPOLL_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= MAX_LONGPOLL_TIMEOUT:  # also false for nan (and inf, for 4,301 digits)
        raise BadParameter(
            "timeout", text, f"send seconds to hold the request, from 0 to {MAX_LONGPOLL_TIMEOUT:g}"
        )
    return value


#: The most events ``/events?limit=`` may ask for.
MAX_LIMIT = 999_999_999


def _limit_param(text: str | None) -> int | None:
    if text is None or text == "":
        return None
    # Digits are counted before int(): int() refuses more than 4,300 of them.
    digits = text.lstrip("0")
    if not (text.isascii() and text.isdigit() and digits and len(digits) <= len(str(MAX_LIMIT))):
        raise BadParameter("limit", text, "send how many events to stream before the server ends the stream, "
                                          f"a whole number from 1 to {MAX_LIMIT}")
    return int(digits)


@dataclass(eq=False)
class LabServer(Background):
    """A handle on a running lab server (see the module doc for its endpoints).

    Attributes: ``name``, ``host``, ``port`` (HTTP), ``ws_port``, ``http_url``,
    ``ws_url``, ``url`` (= ``http_url``), ``mode`` (``"task"``/``"thread"``),
    ``source`` (the :class:`~wslab.events.EventSource`), ``requests`` and
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
    #: The WebSocket port's :class:`wslab.limits.Guard` and :class:`wslab.labpush.Pusher`.
    guard: Guard | None = field(default=None, repr=False)
    pusher: Pusher | None = field(default=None, repr=False)
    #: Connections the HTTP port shed to stay up (see :class:`_LabHTTPServer`): ``"evicted"``
    #: (idle ones closed to make room), ``"refused"`` (503 at the cap), ``"out of files"``
    #: (pauses after the process ran out of file descriptors).
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


# HTTP side (tornado)


class _Handler(tornado.web.RequestHandler):
    endpoint = "?"

    def initialize(self, lab: LabServer) -> None:
        self.lab = lab
        self.gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.args: dict[str, str] = {}

    def prepare(self) -> None:
        self.lab.requests[self.endpoint] += 1
        self.lab._busy.add(self.request.connection.stream)  # type: ignore[union-attr]
        try:
            self.args = parse_query(self.request.query)
        except BadParameter as exc:
            self.bad_request(exc)

    def on_finish(self) -> None:
        self.lab._busy.discard(self.request.connection.stream)  # type: ignore[union-attr]

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")

    def compute_etag(self) -> None:  # no Etag: every poll answer is fresh
        return None

    def on_connection_close(self) -> None:
        self.lab._busy.discard(self.request.connection.stream)  # type: ignore[union-attr]
        if not self.gone.done():
            self.gone.set_result(None)

    def bad_request(self, exc: CursorError | BadParameter) -> None:
        self.set_status(exc.status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(exc.to_json()))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Every error tornado answers itself (404, 405, 500) is JSON too, never its HTML page."""
        self.set_header("Content-Type", "application/json")
        reason = self._reason
        hint = {
            404: "the lab serves GET /, /poll?since=N, /longpoll?since=N&timeout=S and /events",
            405: "the lab answers GET only",
            500: "the server failed; the exception is kept in lab.errors",
        }.get(status_code, "see the lab server's endpoints at GET /")
        self.finish(json.dumps({"error": reason.lower(), "status": status_code, "path": shown(self.request.path),
                                "hint": hint}))

    def answer(self, events: list[Event], cursor: int) -> None:
        if not events:
            self.lab.empty[self.endpoint] += 1
        self.set_header("Content-Type", "application/json")
        last = events[-1].seq if events else cursor
        body = {"events": [e.to_json() for e in events], "cursor": last}
        self.finish(json.dumps(body, separators=(",", ":")))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, tornado.web.HTTPError):
            return
        if value is not None:
            self.lab._report(value)


class _NotFound(_Handler):
    endpoint = "not found"

    def prepare(self) -> None:
        super().prepare()
        if not self._finished:
            raise tornado.web.HTTPError(404)


class _Index(_Handler):
    endpoint = "index"

    def get(self) -> None:
        visitor = self.get_cookie("visitor")
        if visitor is None:
            visitor = str(self.lab.requests["index"])
            self.set_cookie("visitor", visitor)
            greeting = f"hello, new visitor {visitor}: your browser will send this cookie back"
        else:
            greeting = f"welcome back, visitor {visitor}: you sent me your cookie"
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(
            f"{greeting}\n"
            f"{self.lab.source.newest} events so far\n"
            "GET /poll?since=N, GET /longpoll?since=N&timeout=S, GET /events (SSE), "
            f"WebSocket {self.lab.ws_url}?since=N\n"
        )


class _Poll(_Handler):
    endpoint = "poll"

    def get(self) -> None:
        try:
            cursor = self.lab.source.check_cursor(self.args.get("since"))
            events = self.lab.source.since(cursor)
        except CursorError as exc:
            return self.bad_request(exc)
        self.answer(events, cursor)


class _LongPoll(_Handler):
    endpoint = "longpoll"

    async def get(self) -> None:
        try:
            cursor = self.lab.source.check_cursor(self.args.get("since"))
            timeout = _timeout_param(self.args.get("timeout"))
        except (CursorError, BadParameter) as exc:
            return self.bad_request(exc)
        events = await self.lab.hold(cursor, timeout, self.gone)
        if self.gone.done():
            return  # the client went away: nobody to answer
        self.answer(events or [], cursor)


class _Stream(_Handler):
    endpoint = "events"

    async def get(self) -> None:
        resume = self.request.headers.get("Last-Event-ID")
        try:
            if resume is not None:
                cursor = self.lab.source.check_cursor(resume)
                self.lab.requests["resumes"] += 1
            else:
                cursor = self.lab.source.check_cursor(self.args.get("since"))
            limit = _limit_param(self.args.get("limit"))
        except (CursorError, BadParameter) as exc:
            return self.bad_request(exc)
        sent = 0
        ending = self.lab._ending  # end_streams() ends the streams open now
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("X-Accel-Buffering", "no")
        # The preamble: reconnect after 1 s if the stream breaks, and the
        # cursor as an id, so even a client that got no event yet resumes here.
        self.write(f"retry: 1000\nid: {cursor}\n\n")
        # Each event is a small write on a long-lived response: without
        # TCP_NODELAY, Nagle's algorithm and delayed ACKs hold some back ~40 ms.
        self.request.connection.stream.set_nodelay(True)
        try:
            await self.flush()
            while True:
                events = await self.lab.hold(cursor, SSE_KEEPALIVE, self.gone, ending=ending)
                if events is None:
                    break  # server stopping, streams ended, or the client went away
                if not events:
                    self.write(": keep-alive\n\n")
                for event in events[: None if limit is None else limit - sent]:
                    self.write(f"id: {event.seq}\ndata: {event.dumps()}\n\n")
                    cursor = event.seq
                    sent += 1
                await self.flush()
                if limit is not None and sent >= limit:
                    break  # end the stream: the client reconnects with Last-Event-ID
        except tornado.iostream.StreamClosedError:
            return
        if not self.gone.done():
            self.finish()


class _LabHTTPServer(HTTPServer):
    """tornado's HTTPServer that stays up under slow-loris and file-descriptor exhaustion.

    tornado has a header timeout (``idle_connection_timeout`` doubles as it)
    but no cap on connections, and its accept loop lets ``EMFILE`` ("Too many
    open files") escape: the listening socket stays readable, so the loop
    logs the same error in a tight loop until the attacker leaves. Here:

    * at ``max_connections`` open connections, the oldest connection that is
      not in a request (still sending its headers, or idle between requests)
      is closed to make room; when every one is in a request, the newcomer
      gets ``503`` and ``Retry-After: 1`` (RFC 9110 15.6.4) and is closed;
    * on ``EMFILE``/``ENFILE`` the oldest idle connection is closed and the
      accept retried; with none to close, accepting pauses (0.1 s, doubling to
      2 s) and one line is logged per pause, not one per loop step.
    """

    max_connections = 256
    lab: LabServer

    def handle_stream(self, stream: tornado.iostream.IOStream, address: tuple[Any, ...]) -> None:
        super().handle_stream(stream, address)
        self._order[stream] = None  # insertion order: the oldest first

    def on_close(self, server_conn: Any) -> None:
        self._order.pop(getattr(server_conn, "stream", None), None)
        super().on_close(server_conn)

    def _evict_idle(self) -> bool:
        """Close the oldest connection that is not in a request; False if there is none."""
        busy = self.lab._busy
        for stream in self._order:
            if stream not in busy and not stream.closed():
                self._order.pop(stream)
                stream.close()
                self.lab.shed["evicted"] += 1
                return True
        return False

    def _refuse(self, sock: socket.socket) -> None:
        body = json.dumps({"error": "too many connections", "status": 503,
                           "hint": f"the lab serves at most {self.max_connections} connections at once; "
                                   f"retry in a second"}).encode()
        head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n").encode()
        try:
            sock.setblocking(False)
            sock.send(head + body)
        except OSError:
            pass
        sock.close()
        self.lab.shed["refused"] += 1

    def add_sockets(self, sockets: Any) -> None:
        self._order: dict[Any, None] = {}
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = self._accept_on(sock)

    def _accept_on(self, sock: socket.socket) -> Callable[[], None]:
        io_loop = IOLoop.current()
        state = {"removed": False, "paused": False, "delay": 0.1}

        def resume() -> None:
            if not state["removed"]:
                state["paused"] = False
                io_loop.add_handler(sock, accept, IOLoop.READ)

        def accept(fd: Any, events: int) -> None:
            for _ in range(128):  # bounded, like tornado's own loop
                if state["removed"]:
                    return
                try:
                    conn, address = sock.accept()
                except BlockingIOError:
                    state["delay"] = 0.1
                    return
                except ConnectionAbortedError:
                    continue
                except OSError as exc:
                    if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                        raise
                    self.lab.shed["out of files"] += 1
                    if self._evict_idle():
                        continue  # a descriptor is free again: accept the waiting client
                    delay = state["delay"]
                    state["delay"] = min(2.0, delay * 2)
                    print(f"! lab server {self.lab.name!r}: {exc.strerror} ({errno.errorcode[exc.errno]}), every "
                          f"connection busy: not accepting for {delay:g} s", file=sys.stderr, flush=True)
                    io_loop.remove_handler(sock)
                    state["paused"] = True
                    io_loop.call_later(delay, resume)
                    return
                if len(self._order) >= self.max_connections and not self._evict_idle():
                    self._refuse(conn)
                    continue
                self._handle_connection(conn, address)

        def remove() -> None:
            if not state["paused"]:
                io_loop.remove_handler(sock)
            state["removed"] = True

        io_loop.add_handler(sock, accept, IOLoop.READ)
        return remove


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
    app = tornado.web.Application(
        [
            (r"/", _Index, {"lab": lab}),
            (r"/poll", _Poll, {"lab": lab}),
            (r"/longpoll", _LongPoll, {"lab": lab}),
            (r"/events", _Stream, {"lab": lab}),
        ],
        default_handler_class=_NotFound,
        default_handler_args={"lab": lab},
        log_function=lambda handler: None,  # no access log in the notebook
    )
    sockets = tornado.netutil.bind_sockets(0, lab.host)
    # idle_connection_timeout is also tornado's header timeout: a client gets
    # HEADER_TIMEOUT seconds to send its request's headers (slow-loris), and
    # a keep-alive connection is closed after that long without a request.
    http = _LabHTTPServer(app, idle_connection_timeout=HEADER_TIMEOUT, body_timeout=HEADER_TIMEOUT,
                          max_body_size=MAX_BODY, max_header_size=MAX_HEADER)
    http.lab = lab
    http.max_connections = max_connections
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
    ``source`` to share an :class:`~wslab.events.EventSource`, else a new
    one seeded with ``seed`` and stamping events with ``clock`` (``time.time``
    by default) is made. ``host`` may be another loopback address (``"::1"``),
    nothing else (:class:`ValueError`); ``max_connections`` caps the HTTP
    port's open connections; ``limits`` (a :class:`wslab.Limits`) sets the
    WebSocket port's (``lab.guard`` counts what it refused or closed);
    ``fanout="each"`` pushes the old way, a task and a ``send()`` per client,
    to compare with the default ``"broadcast"`` (:mod:`wslab.labpush`).
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

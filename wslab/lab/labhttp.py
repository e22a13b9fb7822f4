"""The lab server's HTTP side: tornado handlers for ``/poll``, ``/longpoll``, ``/events``, and a guarded server.

See :mod:`wslab.lab.labserver` for the endpoints. This module holds what reads a
request (:func:`parse_query`, the parameters, :class:`BadParameter`), the
handlers, and :class:`_LabHTTPServer`, tornado's HTTP server with a
connection cap and an accept loop that survives running out of file
descriptors. Everything here runs on the lab server's loop; handlers reach
the lab through ``self.lab`` (a :class:`wslab.lab.labserver.LabServer`).
"""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import sys
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qsl

import tornado.iostream
import tornado.web
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop

from .events import CursorError, Event, shown
from ..server.origins import origin_allowed

if TYPE_CHECKING:
    from .labserver import LabServer

__all__ = [
    "BadParameter",
    "parse_query",
    "DEFAULT_LONGPOLL_TIMEOUT",
    "MAX_LONGPOLL_TIMEOUT",
    "SSE_KEEPALIVE",
    "HEADER_TIMEOUT",
    "MAX_HTTP_CONNECTIONS",
    "MAX_HEADER",
    "MAX_BODY",
    "MAX_LIMIT",
    "MAX_QUERY_FIELDS",
    "handlers",
    "http_server",
]

#: How long ``/longpoll`` holds a request when the client names no timeout, seconds.
DEFAULT_LONGPOLL_TIMEOUT = 20.0
#: The longest hold a client may ask for, seconds.
MAX_LONGPOLL_TIMEOUT = 120.0
#: An SSE stream with nothing to say sends a ``: keep-alive`` comment this often, seconds.
SSE_KEEPALIVE = 15.0
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


# HTTP side (tornado)


class _Handler(tornado.web.RequestHandler):
    endpoint = "?"

    def initialize(self, lab: LabServer) -> None:
        self.lab = lab
        self.gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.args: dict[str, str] = {}

    def prepare(self) -> None:
        self.lab.requests[self.endpoint] += 1
        stream = self.request.connection.stream  # type: ignore[union-attr]
        self.lab._busy.add(stream)
        # A browser sends Origin with a cross-origin fetch or EventSource: a page from another
        # site gets 403 before anything runs (the WebSocket port's policy, wslab.limits).
        origin = self.request.headers.get("Origin")
        guard = self.lab.guard
        if origin is not None and guard is not None:
            sockname = stream.socket.getsockname() if stream.socket is not None else None
            if not origin_allowed(origin, limits=guard.limits, allow=guard.origins, sockname=sockname):
                self.lab.shed["refused: origin"] += 1
                self.set_status(403)
                self.set_header("Content-Type", "application/json")
                self.finish(json.dumps({
                    "error": "origin not allowed", "value": shown(origin),
                    "hint": "pages from this computer and the lab's own page may ask; allow another with "
                            "limits=wslab.Limits(origins=(...)) or WSLAB_ORIGINS",
                }))
                return
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


def handlers(lab: LabServer) -> list[tuple[str, type[_Handler], dict[str, Any]]]:
    """The lab's routes, for :class:`tornado.web.Application`."""
    return [
        (r"/", _Index, {"lab": lab}),
        (r"/poll", _Poll, {"lab": lab}),
        (r"/longpoll", _LongPoll, {"lab": lab}),
        (r"/events", _Stream, {"lab": lab}),
    ]


def http_server(lab: LabServer, max_connections: int) -> _LabHTTPServer:
    """A guarded tornado HTTP server for ``lab`` (not listening yet: ``add_sockets`` starts it)."""
    app = tornado.web.Application(
        handlers(lab),
        default_handler_class=_NotFound,
        default_handler_args={"lab": lab},
        log_function=lambda handler: None,  # no access log in the notebook
    )
    # idle_connection_timeout is also tornado's header timeout: a client gets
    # HEADER_TIMEOUT seconds to send its request's headers (slow-loris), and
    # a keep-alive connection is closed after that long without a request.
    http = _LabHTTPServer(app, idle_connection_timeout=HEADER_TIMEOUT, body_timeout=HEADER_TIMEOUT,
                          max_body_size=MAX_BODY, max_header_size=MAX_HEADER)
    http.lab = lab
    http.max_connections = max_connections
    return http

"""The latency lab's HTTP server: the lab server's polling and SSE endpoints, equally light.

A transport's figure should be the transport's cost, not a framework's.
The floor is raw asyncio, WebSocket is the websockets library; measured
here, tornado (the lab server of lesson 01) adds about 0.2-0.5 ms of its own
Python to every long-poll response on a loaded 2-core machine, where an
asyncio-streams server or aiohttp add a few hundredths. So the lab serves
``/poll``, ``/longpoll`` and ``/events`` from this small HTTP/1.1 server on
asyncio streams, over the same :class:`wslab.lab.events.EventSource` and with the
same JSON and ``text/event-stream`` shapes as :mod:`wslab.lab.labserver`, and
shows what tornado adds as rows of their own (``long_poll_tornado``,
``sse_tornado``).

It speaks just what the lab's clients need: ``GET`` with keep-alive,
``Content-Length`` answers for the polls, a chunked ``text/event-stream``
with ``TCP_NODELAY`` (asyncio sets it on every TCP socket it makes:
``asyncio.selector_events._SelectorSocketTransport`` calls
``base_events._set_nodelay``). Anything else gets 400, 404 or 405.

How light, measured against an independent minimal server
(``benchmarks/bench_reference.py --compare``, which shares no code with
wslab; 5 alternating rounds of 200 events on a 2-core machine at load 6-8):
each transport's p50 ratio to its floor is within 25% of the reference's
(WebSocket 0.86, SSE 1.13, long polling 1.11, round by round). Where the
last few tens of microseconds go: with the reference's client on both
servers, this server's publish-to-write time equals the reference's (about
0.1 ms on that machine, within 10 us), and the client's read-to-stamp
time too; the rest is Python the server runs around each wake-up while the
client, in the same process, waits for the GIL. Per held request this
server reads the query without ``parse_qs``, answers an event that is
already there without arming a timer, and ends a wait with one future
(the timer, or stopping: ``_held``); what remains is the event source's
wake-up (a lock and a re-check in :meth:`wslab.lab.events.EventSource.wait_after`,
which every server of the lab shares) and the validation of the cursor.
SSE still measured +0.04 ms against the reference (its rounds alone moved
0.03 ms); long polling +0.035 ms, within its noise.

Design note: one loop in a daemon thread (the listener it shares with the
floor, :class:`wslab.lab.experiment.listener.StreamListener`); held requests wait on
``source.wait_after`` and on one future that a timer or stopping resolves,
so stopping answers them at once and never waits for a client.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any, Sequence
from urllib.parse import parse_qsl

from ...server import background as _servers
from ..events import CursorError, Event, EventSource
from .listener import StreamListener

__all__ = ["LightHttpServer", "light_http_server"]

_MAX_HEAD = 16 * 1024
_MAX_FIELDS = 16


class LightHttpServer(StreamListener):
    """``GET /poll``, ``/longpoll`` and ``/events`` over an :class:`~wslab.lab.events.EventSource`."""

    def __init__(self, name: str, source: EventSource) -> None:
        super().__init__(name)
        self.source = source
        self._stopping: asyncio.Future[None] | None = None
        self._held: set[asyncio.Future[None]] = set()
        #: Requests answered, by path (``"/poll"``, ``"/longpoll"``, ``"/events"``, others).
        self.requests: Counter[str] = Counter()

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    url = http_url

    async def _start(self) -> LightHttpServer:
        self._stopping = asyncio.get_running_loop().create_future()
        await self._listen()
        return self

    async def run_schedule(self, gaps: Sequence[float], payloads: Sequence[Any] | None = None) -> list[Event]:
        return await self.source.run_schedule(gaps, payloads)

    def publish(self, payload: Any = None) -> Event:
        return self.source.publish(payload)

    # One connection: requests one after another (keep-alive)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                return
            line = head[: head.find(b"\r\n")].decode("latin-1").split(" ")
            if len(line) != 3 or not line[2].startswith("HTTP/1."):
                return self._error(writer, 400, f"not an HTTP/1.1 request line: {' '.join(line)[:80]!r}")
            method, target = line[0], line[1]
            if method != "GET":
                return self._error(writer, 405, f"only GET is served here, got {method}")
            path, _, query_string = target.partition("?")
            query = _query(query_string)
            self.requests[path] += 1
            try:
                if path == "/poll":
                    cursor = self.source.check_cursor(query.get("since"))
                    self._answer(writer, self.source.since(cursor), cursor)
                elif path == "/longpoll":
                    cursor = self.source.check_cursor(query.get("since"))
                    hold = min(max(float(query.get("timeout", 20)), 0.0), 120.0)
                    # An event already there is answered at once, without arming a timer.
                    events = self.source.since(cursor) or await self._hold(cursor, hold) or []
                    self._answer(writer, events, cursor)
                elif path == "/events":
                    await self._stream(writer, self.source.check_cursor(query.get("since")))
                    return
                else:
                    return self._error(writer, 404, f"no such endpoint: {path}")
            except (CursorError, ValueError) as exc:
                return self._error(writer, 400, str(exc))
            await writer.drain()

    async def _hold(self, cursor: int, seconds: float) -> list[Event] | None:
        """The events after ``cursor``, waiting up to ``seconds``; None after that or when stopping.

        One future ends the wait: a timer resolves it after ``seconds``, and
        stopping resolves every held one (``_held``). Not
        ``asyncio.wait_for``, which costs a loop step more on every wake-up.
        """
        if self._stopping is None or self._stopping.done():
            return None
        loop = asyncio.get_running_loop()
        expired: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(seconds, _resolve, expired)
        self._held.add(expired)
        try:
            return await self.source.wait_after(cursor, None, until=(expired,))
        finally:
            timer.cancel()
            self._held.discard(expired)

    def _answer(self, writer: asyncio.StreamWriter, events: list[Event], cursor: int) -> None:
        if events:
            cursor = events[-1].seq
        body = ('{"events":[' + ",".join(e.dumps() for e in events) + '],"cursor":%d}' % cursor).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    def _error(self, writer: asyncio.StreamWriter, status: int, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        reason = {400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}[status]
        writer.write(b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (status, reason.encode(), len(body), body))

    async def _stream(self, writer: asyncio.StreamWriter, cursor: int) -> None:
        """text/event-stream, chunked: the preamble, then one chunk per batch of events."""
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        self._chunk(writer, f"retry: 1000\nid: {cursor}\n\n".encode())
        await writer.drain()
        while True:
            events = self.source.since(cursor) or await self._hold(cursor, 15.0)
            if events is None and self._stopping is not None and self._stopping.done():
                writer.write(b"0\r\n\r\n")
                return
            events = events or []
            text = "".join(f"id: {e.seq}\ndata: {e.dumps()}\n\n" for e in events) if events else ": keep-alive\n\n"
            if events:
                cursor = events[-1].seq
            self._chunk(writer, text.encode())
            await writer.drain()

    @staticmethod
    def _chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(b"%x\r\n%s\r\n" % (len(data), data))

    # Stopping (stop() and aclose() come from Background)

    async def _close(self) -> None:
        if self._stopping is not None and not self._stopping.done():
            self._stopping.set_result(None)
        for held in list(self._held):
            _resolve(held)
        assert self._server is not None
        self._server.close()
        await asyncio.sleep(0)  # let held requests see the stop and answer first
        await _servers.close_listener(self._server, self._tasks, timeout=self.stop_timeout)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<wslab LightHttpServer {self.name!r} {self.http_url} thread mode, {state}>"


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _query(text: str) -> dict[str, str]:
    """A query string as ``{name: value}`` (the last value wins); plain ``a=1&b=2`` without parse_qsl.

    The lab's clients send only plain pairs; anything with a percent-escape
    or a ``+`` goes through :func:`urllib.parse.parse_qsl`, so both read the
    same. A name without ``=`` is ignored, like ``parse_qsl`` does.
    """
    if "%" in text or "+" in text:
        return dict(parse_qsl(text, max_num_fields=_MAX_FIELDS))
    pairs = text.split("&")
    if len(pairs) > _MAX_FIELDS:
        raise ValueError(f"at most {_MAX_FIELDS} name=value pairs in a query, got {len(pairs)}")
    return {name: value for name, eq, value in (p.partition("=") for p in pairs) if eq}


def light_http_server(name: str = "latency-http", *, seed: int = 1, clock: Any = None,
                      source: EventSource | None = None) -> LightHttpServer:
    """Start a :class:`LightHttpServer` in a thread of its own, over ``source`` or a fresh event source.

    Pass another server's ``source`` (a lab server's) to serve the same
    events side by side with it; ``seed`` and ``clock`` then do not apply.
    """
    if source is None:
        source = EventSource(seed=seed)
        if clock is not None:
            source.clock = clock
    server = LightHttpServer(name, source)
    return _servers.start_in_thread(name, server._start)

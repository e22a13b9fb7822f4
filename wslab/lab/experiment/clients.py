"""The latency lab's measuring clients: equally light for every transport.

A latency figure is the transport's cost plus the measuring client's. So
that the client's share is the same small amount everywhere, each transport
is read by the thinnest client it can have:

* **HTTP** (short polling, long polling, SSE): raw asyncio streams, one
  keep-alive connection, a request of the same few header lines httpx sends
  (``Host``, ``Accept``, ``Accept-Encoding``, ``Connection``,
  ``User-Agent``), the response read with ``readuntil``/``readexactly``
  (``Content-Length`` or chunked);
* **WebSocket**: the websockets library's client (``recv()``);
* **the floor**: raw asyncio streams, ``readline()``
  (:mod:`wslab.lab.experiment.floor`).

Every client stamps an event at the same point: the moment the bytes that
complete it have been read (the HTTP response's body, the SSE chunk, the
WebSocket message, the TCP line), before any JSON is parsed. And every
client is warmed up first: it receives ``warmup`` events that are not
timed, so the first timed event does not pay for code run the first time.

A heavier client (httpx) is measured as a row of its own
(``long_poll_httpx``), never mixed into a transport's figure; lesson 01's
:func:`wslab.lab.transports.receive` keeps httpx, which is the client a learner
would write.

Call shape (the runner's)::

    got = await receive("long_poll", lab.http_url, 100, warmup=5,
                        on_ready=publish_warmup, on_warm=start_schedule)
    got.recorder.latencies_ms()

``on_ready()`` runs once the client listens (then publish the warm-up
events), ``on_warm()`` once it has them all (then start the timed
schedule); sequence numbers in the result count timed events from 1.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

from websockets.asyncio.client import connect as ws_connect

from .floor import Recorder
from .timing import CLOCK

__all__ = ["LightResult", "receive", "HttpConnection", "REQUEST_HEADERS", "TRANSPORTS"]

#: The transports these clients speak.
TRANSPORTS = ("short_poll", "long_poll", "sse", "websocket", "websocket_deflate")

#: The request header lines every HTTP client here sends (httpx's set, with our own User-Agent).
REQUEST_HEADERS = (
    ("Accept-Encoding", "gzip, deflate"),
    ("Connection", "keep-alive"),
    ("User-Agent", "wslab-lab/0.1"),
)

#: How long the server may hold a long poll, seconds.
LONGPOLL_HOLD = 20.0


@dataclass
class LightResult:
    """What a light client got: timed events (a :class:`Recorder`) and what it cost."""

    transport: str
    recorder: Recorder = field(default_factory=Recorder)
    #: Requests (or connections) sent in the timed part, after the warm-up.
    requests: int = 0
    #: Requests sent before: set-up and warm-up.
    setup_requests: int = 0
    empty_responses: int = 0
    #: Seconds from starting to connect until the client was listening.
    setup_s: float = float("nan")
    errors: list[str] = field(default_factory=list)


class DeliveryError(RuntimeError):
    """The server answered something a client cannot use."""


class HttpConnection:
    """One keep-alive HTTP/1.1 connection on asyncio streams: ``GET`` and read the answer."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        head = "".join(f"{k}: {v}\r\n" for k, v in REQUEST_HEADERS)
        self._tail = f"Host: {host}:{port}\r\n{head}".encode("latin-1")
        self.accept = "*/*"

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def send(self, target: str) -> None:
        assert self.writer is not None
        self.writer.write(b"GET " + target.encode("latin-1") + b" HTTP/1.1\r\n" + self._tail
                          + b"Accept: " + self.accept.encode("latin-1") + b"\r\n\r\n")

    async def head(self) -> tuple[int, dict[str, str]]:
        """Read a response's status line and headers (lower-case names)."""
        assert self.reader is not None
        block = await self.reader.readuntil(b"\r\n\r\n")
        lines = block.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise DeliveryError(f"not an HTTP response: {lines[0][:80]!r}")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        return int(parts[1]), headers

    async def body(self, headers: dict[str, str]) -> bytes:
        """Read a whole body (``Content-Length`` or chunked)."""
        assert self.reader is not None
        if "content-length" in headers:
            return await self.reader.readexactly(int(headers["content-length"]))
        if headers.get("transfer-encoding", "").lower() == "chunked":
            out = []
            while chunk := await self.chunk():
                out.append(chunk)
            return b"".join(out)
        raise DeliveryError("a response with neither Content-Length nor chunked encoding")

    async def chunk(self) -> bytes:
        """Read one chunk of a chunked body (``b""``: the last one)."""
        assert self.reader is not None
        size = int((await self.reader.readline()).split(b";")[0], 16)
        data = await self.reader.readexactly(size + 2)  # the chunk and its CRLF
        return data[:size]

    async def get(self, target: str) -> tuple[bytes, float]:
        """Send ``GET target``; return (body, when it had been read)."""
        self.send(target)
        status, headers = await self.head()
        body = await self.body(headers)
        received = CLOCK()  # stamped when read, before parsing
        if status != 200:
            raise DeliveryError(f"GET {target} got {status}: {body[:300].decode('utf-8', 'replace')}")
        return body, received

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class _Timed:
    """Warm-up first, then timed events, numbered from 1 after the cursor where listening began."""

    def __init__(self, result: LightResult, n_events: int, warmup: int,
                 on_ready: Callable[[], Any] | None, on_warm: Callable[[], Any] | None) -> None:
        self.result, self.n_events, self.warmup = result, n_events, warmup
        self._on_ready, self._on_warm = on_ready, on_warm
        self.base: int | None = None  # the cursor when listening began
        self.cursor = 0
        self.warm = False
        self.listening = False
        self.t0 = CLOCK()

    @property
    def done(self) -> bool:
        return len(self.result.recorder) >= self.n_events

    def ready(self, cursor: int | None) -> None:
        """Listening from ``cursor`` on (None: the first event will tell)."""
        if not self.listening:
            self.listening = True
            if cursor is not None:
                self.base = self.cursor = cursor
            self.result.setup_s = CLOCK() - self.t0
            if self._on_ready is not None:
                self._on_ready()
            self._check_warm()

    def _check_warm(self) -> None:
        if not self.warm and (self.base is None and self.warmup == 0 or
                              self.base is not None and self.cursor - self.base >= self.warmup):
            self.warm = True
            if self._on_warm is not None:
                self._on_warm()

    def take(self, seq: int, created: float, received: float) -> bool:
        """Record one event; False if it was a repeat or a warm-up event."""
        if self.base is None:
            self.base = self.cursor = seq - 1
        if seq <= self.cursor:
            return False
        self.cursor = seq
        number = seq - self.base - self.warmup
        if number < 1:
            self._check_warm()
            return False
        if not self.done:
            self.result.recorder.record(number, created, received)
        return True

    def count_request(self) -> None:
        if self.warm:
            self.result.requests += 1
        else:
            self.result.setup_requests += 1


def _events(body: bytes) -> tuple[list[dict[str, Any]], int]:
    data = json.loads(body)
    return data["events"], int(data["cursor"])


async def _poll(run: _Timed, http: HttpConnection, long: bool, interval: float) -> None:
    # Where is "now"? One short poll first (a page's initial load): set-up.
    run.count_request()
    body, _ = await http.get("/poll?since=now")
    events, cursor = _events(body)
    run.ready(cursor - len(events))
    loop = asyncio.get_running_loop()
    start, tick = loop.time(), 0
    while not run.done:
        run.count_request()
        if long:
            body, received = await http.get(f"/longpoll?since={run.cursor}&timeout={LONGPOLL_HOLD:g}")
        else:
            body, received = await http.get(f"/poll?since={run.cursor}")
        events, _ = _events(body)
        if not events and run.warm:
            run.result.empty_responses += 1
        for e in events:
            run.take(int(e["seq"]), float(e["created"]), received)
        if not long:
            tick += 1
            await asyncio.sleep(max(0.0, start + tick * interval - loop.time()))


async def _sse(run: _Timed, http: HttpConnection) -> None:
    run.count_request()
    http.accept = "text/event-stream"  # what EventSource sends
    http.send("/events?since=now")
    status, headers = await http.head()
    if status != 200:
        raise DeliveryError(f"GET /events got {status}: {(await http.body(headers))[:300]!r}")
    chunked = headers.get("transfer-encoding", "").lower() == "chunked"
    assert http.reader is not None
    pending = b""
    while not run.done:
        data = await http.chunk() if chunked else await http.reader.read(65536)
        received = CLOCK()  # stamped when read, before parsing
        if not data:
            raise DeliveryError("the SSE stream ended before every event arrived")
        pending += data
        # text/event-stream (HTML Living Standard, 9.2.6): an event ends at a blank line
        *blocks, pending = pending.split(b"\n\n")
        for block in blocks:
            seq = data_line = None
            for line in block.split(b"\n"):
                if line.startswith(b"id:"):
                    seq = int(line[3:].strip())
                elif line.startswith(b"data:"):
                    data_line = line[5:].strip()
            if data_line is None:
                if seq is not None:
                    run.ready(seq)  # the preamble's id: where "now" was
                continue
            event = json.loads(data_line)
            run.take(int(event["seq"]), float(event["created"]), received)


async def _websocket(run: _Timed, url: str, compression: str | None) -> None:
    run.count_request()
    async with ws_connect(f"{url.rstrip('/')}/?since=now", compression=compression, open_timeout=10) as ws:
        run.ready(None)  # open: the server pushes from "now"; the first message tells where that was
        while not run.done:
            message = await ws.recv()
            received = CLOCK()  # stamped when read, before parsing
            event = json.loads(message)
            run.take(int(event["seq"]), float(event["created"]), received)


async def receive(
    transport: str,
    url: str,
    n_events: int,
    *,
    warmup: int = 5,
    interval: float = 0.25,
    on_ready: Callable[[], Any] | None = None,
    on_warm: Callable[[], Any] | None = None,
    timeout: float = 60.0,
) -> LightResult:
    """Read ``n_events`` timed events (after ``warmup`` untimed ones) from a lab server URL.

    ``url`` is the lab's (or a relay's) ``http://`` URL for the HTTP
    transports, ``ws://`` URL for the WebSocket ones. A WebSocket client
    learns where "now" is from its first message, so for it ``on_ready``
    runs when the connection is open and the warm-up begins at once.
    """
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown transport {transport!r}: choose one of {', '.join(TRANSPORTS)}")
    result = LightResult(transport)
    run = _Timed(result, n_events, warmup, on_ready, on_warm)
    parts = urlsplit(url)
    http = None
    try:
        async with asyncio.timeout(timeout):
            if transport.startswith("websocket"):
                compression = "deflate" if transport == "websocket_deflate" else None
                await _websocket(run, url, compression)
            else:
                http = HttpConnection(parts.hostname or "127.0.0.1", parts.port or 80)
                await http.open()
                if transport == "sse":
                    await _sse(run, http)
                else:
                    await _poll(run, http, transport == "long_poll", interval)
    except TimeoutError:
        result.errors.append(f"{transport}: got {len(result.recorder)} of {n_events} events in {timeout:g} s")
    finally:
        if http is not None:
            http.close()
    return result


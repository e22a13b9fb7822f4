"""A wiretap: a TCP relay that records every byte between a client and a server.

    tap = await wslab.wiretap(srv)            # or srv.url, "http://127.0.0.1:8000/x", (host, port)
    async with connect(tap.url) as ws: ...    # same scheme and path, the tap's own port
    tap.http()          # the HTTP messages (the upgrade handshake, polling requests)
    tap.frames()        # the WebSocket frames after the 101
    tap.hexdump()       # every chunk, hex and ASCII
    tap.bytes_up, tap.bytes_down              # what crossed the wire, per direction

    tap = await wslab.wiretap(srv, rtt_ms=100)   # through a 100 ms round trip (wslab/lab/link.py)

Design note
-----------
The tap listens on ``127.0.0.1`` port 0. For each client it accepts, it opens
one connection to the target and runs two pumps, one per direction: read a
chunk, record it, write it unchanged to the other side, ``drain()``. Nothing
is parsed on the way: the relay is byte-identical, and every view (hex, HTTP,
frames) is computed afterwards from the recorded chunks (the capture and its
views live in :mod:`wslab.lab.capture`; a chunk's ``t`` is when the tap read it).

With a link (``link=``, ``rtt_ms=``, ``rate_kbps=``: :mod:`wslab.lab.link`) each
pump hands its chunks to a per-direction :class:`~wslab.lab.link.Pipe` instead of
writing them: the pipe writes each chunk when the link says it is due, in
order, and EOF or a reset follows the bytes before it. The pump keeps
reading while the pipe has room (its bound in flight), then waits: a slow
link pushes back on the sender. When both pumps end, the relay waits for the
pipes to deliver what is still on the link before it closes the connection.

*Reads of 64 KiB, not 256.* asyncio's socket transport reads with
``recv(256 KiB)`` and shrinks the bytes to what arrived; in a thread of its
own, glibc then hands the freed tail back to the kernel
(``madvise(MADV_DONTNEED)``), and the next read faults those pages in again:
27 page faults per 64 KiB chunk, twice the relay's CPU per byte, in runs that
come and go (issue 25: ``benchmarks/bench_link.py`` counts them). The pump
never takes more than ``READ_SIZE`` at once anyway, so the relay asks each
transport to read no more (:func:`_read_at_most`).

* **task mode** (``await wiretap(target)``): the relay lives on the running
  loop (the kernel's). Like a task-mode server, it stalls while a cell blocks
  that loop: a synchronous client in a cell must go through a thread-mode tap.
* **thread mode** (``wiretap_in_thread(target)``): a :class:`~wslab.server.background.LoopThread`
  owns the relay; only that thread touches its sockets. Other threads read
  the counters and the capture (plain ints and a list that is only appended
  to), never the sockets.

Closing propagates: an EOF from one side becomes ``write_eof()`` on the other
(half-close); a reset or an error on one side aborts the other. When the
target refuses the connection, the client's connection is closed at once.

Every relayed connection holds two sockets: past ``MAX_CONNECTIONS`` at once,
or when the process's guarded sockets reach :func:`wslab.server.limits.fd_budget`
(the count every wslab listener shares), a newcomer is closed at once with a
``!`` note, before the tap dials the target, so a flood of idle connections
through a tap cannot use up the process's file descriptors.

What must never happen: a tap that cannot be stopped (``stop()`` closes the
listener and aborts every relayed connection, bounded in time), a tap that
holds unbounded memory (``max_capture`` bounds payload and bookkeeping, then
capture stops with a note while the byte counters stay exact; a link's pipes
hold a bounded amount in flight), a tap listening beyond loopback.

Direction vocabulary, as everywhere in wslab: ``>`` client to server (up),
``<`` server to client (down), ``=`` state change, ``!`` error.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any, Awaitable
from urllib.parse import urlsplit

from ..server import limits as _limits
from ..server import background as servers
from .capture import DEFAULT_MAX_CAPTURE, DOWN, ERROR, STATE, UP, Capture, Chunk, Connection, View, load
from .link import Link, Pipe, Shaper, resolve as _resolve_link
from ..server.background import Background
from ..course.i18n import N_
from ..server.serve import _PendingServer

__all__ = ["Chunk", "Connection", "Capture", "Tap", "View", "wiretap", "wiretap_in_thread", "load"]

#: Bytes read from a socket at once.
READ_SIZE = 65536
#: Seconds to wait for the target to accept a connection.
CONNECT_TIMEOUT = 5.0
#: Seconds ``stop()`` waits for the relay to wind down.
STOP_TIMEOUT = 3.0


# The relay


def _read_at_most(transport: asyncio.BaseTransport, size: int) -> None:
    """Make ``transport`` read at most ``size`` bytes per ``recv()`` (see the design note).

    ``max_size`` is an attribute of asyncio's selector transports (the
    ``recv()`` size, 256 KiB); a transport without it (another event loop's)
    is left as it is: this only saves memory traffic.
    """
    if isinstance(getattr(transport, "max_size", None), int):
        transport.max_size = size  # type: ignore[attr-defined]


def _parse_target(target: Any) -> tuple[str, str, int, str]:
    """-> (scheme, host, port, path-and-query) from a server, a URL or (host, port)."""
    if hasattr(target, "url") and not isinstance(target, str):
        target = target.url
    if isinstance(target, tuple):
        host, port = target
        return "tcp", str(host), int(port), ""
    if not isinstance(target, str):
        raise TypeError(f"wiretap target must be a server, a URL or (host, port), got {target!r}")
    parts = urlsplit(target)
    if not parts.scheme or parts.hostname is None:
        raise ValueError(f"cannot tap {target!r}: give a URL like 'ws://127.0.0.1:8765/' or (host, port)")
    default = {"ws": 80, "http": 80, "wss": 443, "https": 443}.get(parts.scheme)
    port = parts.port or default
    if port is None:
        raise ValueError(f"cannot tell the port of {target!r}: write it in the URL")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.scheme, parts.hostname, port, path


#: Relayed connections one tap holds at once (each costs two sockets).
MAX_CONNECTIONS = 512


class Tap(Capture, Background):
    """A running wiretap: the relay, its counters and its capture.

    Attributes: ``name``, ``host``/``port`` (where the tap listens),
    ``url`` (connect here: the target's scheme and path, the tap's port),
    ``target`` (the target URL), ``mode``, ``running``, ``connections`` (open
    now), ``uptime``, ``errors``, ``bytes_up``/``bytes_down`` (totals),
    ``conns`` (per connection: :class:`Connection`), ``log``/``chunks``,
    ``link`` (the :class:`wslab.Link` between client and server, or None).
    ``stop()`` / ``await aclose()`` close its port and abort every relayed
    connection (see :class:`wslab.server.background.Background`); the capture stays
    readable.
    """

    stop_timeout = STOP_TIMEOUT

    def __init__(
        self,
        name: str,
        scheme: str,
        target_host: str,
        target_port: int,
        path: str,
        mode: str,
        *,
        max_capture: int,
        connect_timeout: float,
        link: Link | None = None,
    ) -> None:
        super().__init__(max_capture=max_capture)
        self.link = link
        self._shapers = None if link is None else {UP: Shaper(link, UP), DOWN: Shaper(link, DOWN)}
        self.name = name
        self.scheme = scheme
        self.target_host = target_host
        self.target_port = target_port
        self.path = path
        self.mode = mode
        self.host = "127.0.0.1"
        self.port = 0
        self.connect_timeout = connect_timeout
        self.max_connections = MAX_CONNECTIONS
        self.refused = 0  # newcomers closed at once: too many connections (see the design note)
        self.started = time.time()
        self.errors: list[BaseException] = []
        th = f"[{target_host}]" if ":" in target_host else target_host
        self.target = f"{scheme}://{th}:{target_port}{path}"
        self._t0 = time.perf_counter()
        self._ids = 0
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._transports: set[asyncio.BaseTransport] = set()

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.path}"

    @property
    def connections(self) -> int:
        # list() first: in thread mode the relay's thread adds and drops records while another reads this
        return sum(1 for c in list(self.conns.values()) if c.closed is None)

    def _now(self) -> float:
        return time.perf_counter() - self._t0

    # One relayed connection

    async def _relay(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        accepted = time.monotonic()
        self._ids += 1
        peer = cwriter.get_extra_info("peername") or ("?", 0)
        conn = self._open(self._ids, f"{peer[0]}:{peer[1]}", self._now())
        self._transports.add(cwriter.transport)
        self._record(conn, STATE, conn.opened, note=f"client {conn.client} connected")
        try:
            async with asyncio.timeout(self.connect_timeout):
                sreader, swriter = await asyncio.open_connection(self.target_host, self.target_port)
        except (OSError, TimeoutError) as exc:
            reason = f"cannot reach {self.target_host}:{self.target_port}: {exc or type(exc).__name__}"
            conn.error = reason
            self.errors.append(exc)
            self._record(conn, ERROR, self._now(), note=f"{reason}; closing the client's connection")
            print(
                f"! wiretap {self.name!r}: {reason}; closed the client's connection. "
                f"Is the server still running? (wslab.status() shows what runs)",
                file=sys.stderr,
                flush=True,
            )
            cwriter.close()
            self._transports.discard(cwriter.transport)
            self._closed(conn, self._now())
            return
        self._transports.add(swriter.transport)
        for writer in (cwriter, swriter):
            _read_at_most(writer.transport, READ_SIZE)
        pipes: list[Pipe] = []
        if self._shapers is not None:
            loop = asyncio.get_running_loop()
            pipes = [Pipe(self._shapers[UP], swriter.transport, loop), Pipe(self._shapers[DOWN], cwriter.transport, loop)]
            if self.link is not None and self.link.handshake:  # SYN, SYN-ACK: then the client's bytes may leave
                pipes[0].hold(accepted + (self.link.round_trip_ms + self.link.up_delay_ms) / 1000)
                # ... and the ACK: a server that speaks first does so once accept() returns, one way later
                pipes[1].hold(accepted + 2 * self.link.round_trip_ms / 1000)
        try:
            await asyncio.gather(
                self._pump(conn, creader, cwriter, swriter, UP, pipes[0] if pipes else None),
                self._pump(conn, sreader, swriter, cwriter, DOWN, pipes[1] if pipes else None),
            )
            for pipe in pipes:  # what is still on the link arrives before the connection closes
                await pipe.flushed()
        finally:
            for pipe in pipes:
                pipe.close()
            for writer in (cwriter, swriter):
                writer.close()
                self._transports.discard(writer.transport)
            now = self._now()
            self._record(conn, STATE, now, note="connection closed")
            self._closed(conn, now)

    async def _pump(
        self,
        conn: Connection,
        reader: asyncio.StreamReader,
        source: asyncio.StreamWriter,
        writer: asyncio.StreamWriter,
        direction: str,
        pipe: Pipe | None = None,
    ) -> None:
        """Copy ``reader`` to ``writer`` until EOF; ``source`` is the reader's own socket.

        With a link, ``pipe`` holds each chunk until the link delivers it (in order).
        """
        side = "client" if direction == UP else "server"
        other = "server" if direction == UP else "client"
        while True:  # until EOF or an error; each turn waits for data
            try:
                data = await reader.read(READ_SIZE)
            except OSError as exc:  # a reset: pass the abrupt close on
                self._record(conn, ERROR, self._now(), note=f"{side} reset the connection ({exc}); aborting the {other}'s")
                if pipe is not None:
                    pipe.send_abort()
                else:
                    writer.transport.abort()
                return
            if not data:
                self._record(conn, STATE, self._now(), note=f"{side} sent EOF (half-close); passing it to the {other}")
                if pipe is not None:
                    pipe.send_eof()
                elif not writer.is_closing() and writer.can_write_eof():
                    try:
                        writer.write_eof()
                    except OSError:
                        pass
                return
            self._record(conn, direction, self._now(), data)
            if writer.is_closing():
                continue  # the other side is gone: drain the reader until EOF
            try:
                if pipe is None:
                    writer.write(data)
                else:
                    pipe.send(data)  # the link delivers it when due
                    if pipe.queued >= pipe.limit:
                        await pipe.room()
                await writer.drain()
            except OSError as exc:
                self._record(conn, ERROR, self._now(), note=f"writing to the {other} failed ({exc}); aborting the {side}'s connection")
                source.transport.abort()
                return

    # Stopping (stop() and aclose() come from Background): stop() closes the
    # tap's port and aborts every relayed connection; the capture stays readable.

    def _abort_all(self) -> None:
        """Close the listener and abort every relayed connection (on the relay's loop)."""
        if self._server is not None:
            self._server.close()
        for transport in list(self._transports):
            transport.abort()
        for task in list(self._tasks):
            task.cancel()

    async def _close(self) -> None:
        # Stop accepting first, then let a connection accepted a moment ago
        # reach accept() (it is still inside asyncio, without a transport),
        # then close the listener and abort everything. Closing the listener
        # while asyncio is still making a transport for an accepted socket
        # loses that socket (CPython 3.11: Server._attach asserts), and its
        # client waits for a close that never comes.
        loop = asyncio.get_running_loop()
        for sock in self._server.sockets if self._server is not None else ():
            try:
                loop.remove_reader(sock.fileno())
            except (NotImplementedError, ValueError, OSError):
                pass
        for _ in range(5):
            await asyncio.sleep(0)
        self._abort_all()
        tasks = [t for t in self._tasks if not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=self.stop_timeout)

    def _begin_close(self) -> None:
        self._abort_all()

    def _release(self) -> None:
        self._abort_all()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        link = f", link {self.link}" if self.link is not None else ""
        return (
            f"<wslab.Tap {self.name!r} {self.url} -> {self.target}{link}, {self.mode} mode, {state}, "
            f"{len(self.conns)} connection(s), {self.bytes_up:,} bytes up, {self.bytes_down:,} bytes down>"
        )


async def _start(tap: Tap) -> Tap:
    def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        full = len(tap._tasks) >= tap.max_connections
        if not full and _limits.count_open(+2) > _limits.fd_budget():
            _limits.count_open(-2)
            full = True
        if full:
            tap.refused += 1
            if tap.refused == 1 or tap.refused % 100 == 0:
                print(f"! wiretap {tap.name!r}: {len(tap._tasks)} connections open (at most "
                      f"{tap.max_connections}, and the process's file budget): refused a newcomer "
                      f"({tap.refused} so far)", file=sys.stderr, flush=True)
            writer.transport.abort()
            return
        tap._transports.add(writer.transport)  # now, so a stop before the task runs still closes it
        task = asyncio.ensure_future(tap._relay(reader, writer))
        tap._tasks.add(task)
        task.add_done_callback(tap._tasks.discard)
        task.add_done_callback(lambda _task: _limits.count_open(-2))

    tap._server = await asyncio.start_server(accept, tap.host, 0)
    tap._loop = asyncio.get_running_loop()
    tap.port = tap._server.sockets[0].getsockname()[1]
    return tap


def _make(target: Any, name: str, mode: str, max_capture: int, connect_timeout: float, link: Link | None) -> Tap:
    scheme, host, port, path = _parse_target(target)
    return Tap(name, scheme, host, port, path, mode, max_capture=max_capture, connect_timeout=connect_timeout, link=link)


class _PendingTap(_PendingServer):
    """What ``wslab.lab.wiretap()`` returns: something to ``await`` (a forgotten await says so)."""

    _what = N_("tap")
    _call = "wslab.wiretap"
    _variable = "tap"
    _instead = N_(", or use wslab.wiretap_in_thread(...)")


def wiretap(
    target: Any,
    name: str = "wiretap",
    *,
    # The network between client and server (link.py)
    link: Link | str | None = None,
    rtt_ms: float | None = None,
    rate_kbps: float | None = None,
    # Capture and timeouts
    max_capture: int = DEFAULT_MAX_CAPTURE,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> Awaitable[Tap]:
    """Start a wiretap in front of ``target`` on the running loop; connect to ``tap.url``.

    ``target`` is a wslab server, a URL (``ws://``, ``http://``, with a path)
    or ``(host, port)``. A tap already running under ``name`` is stopped first.

    >>> tap = await wslab.wiretap(srv)
    >>> async with websockets.asyncio.client.connect(tap.url) as ws: ...
    >>> tap.http()

    ``link`` puts a network between client and server: a :class:`wslab.Link`
    (``Link(rtt_ms=100, jitter_ms=5, rate_kbps=1000)``) or a preset name
    (``"same-city"``, ``"cross-ocean"``, ``"3g"``: :data:`wslab.lab.link.PRESETS`);
    ``rtt_ms=`` and ``rate_kbps=`` are shortcuts (and override the link's).
    Every byte is then delayed per direction, in order; the counts stay
    exact. Raises ``ValueError`` for a bad value or an unknown preset.
    """
    tap = _make(target, name, "task", max_capture, connect_timeout, _resolve_link(link, rtt_ms=rtt_ms, rate_kbps=rate_kbps))

    async def start() -> Tap:
        await servers.release(name)
        await _start(tap)
        servers.register(tap)
        return tap

    return _PendingTap(start())


def wiretap_in_thread(
    target: Any,
    name: str = "wiretap",
    *,
    # The network between client and server (link.py)
    link: Link | str | None = None,
    rtt_ms: float | None = None,
    rate_kbps: float | None = None,
    # Capture and timeouts
    max_capture: int = DEFAULT_MAX_CAPTURE,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> Tap:
    """Like :func:`wiretap`, with the relay on its own loop in a daemon thread (no ``await``).

    Use it when the clients block (a synchronous client in a cell, another thread).
    ``link``, ``rtt_ms`` and ``rate_kbps`` as for :func:`wiretap`.
    """
    tap = _make(target, name, "thread", max_capture, connect_timeout, _resolve_link(link, rtt_ms=rtt_ms, rate_kbps=rate_kbps))
    return servers.start_in_thread(name, lambda: _start(tap))

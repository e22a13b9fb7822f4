"""One set of limits for every listener wslab starts, and the guard that applies them.

Public API
----------
* :class:`Limits`: a frozen dataclass of listener defaults (see the table in
  README, "Limits"). ``Limits()`` is the default; ``limits.replace(...)``
  changes some. Fields: ``open_timeout``, ``ping_interval``, ``ping_timeout``,
  ``close_timeout``, ``max_size``, ``max_queue``, ``write_limit`` (all passed
  to websockets), ``max_buffer`` and ``stall_timeout`` (enforced here),
  ``max_connections``, ``max_handshakes``, ``handshake_grace`` (enforced here),
  ``origins``, ``local_origins``, ``allow_no_origin`` (the Origin policy).
* :class:`Guard`: one per listener. ``Guard(limits, name=..., on_close=...)``; then
  ``websockets.asyncio.server.serve(handler, host, port,
  **guard.serve_kwargs(process_request=mine))`` gives that listener every
  limit: the websockets arguments, ``create_connection`` (a connection class
  that bounds its write buffer and counts itself) and a ``process_request``
  that refuses extra connections with HTTP 503 and foreign pages with HTTP 403
  before calling ``mine``. ``guard.check(connection)`` re-checks one
  connection's buffer (call it after writing to many, e.g. after
  ``broadcast()``); ``guard.stats`` counts what was refused or closed and why;
  ``guard.origins`` is the explicit allow-list (the listener's owner may append
  to it; requests never do).
* :func:`writable`: is this connection open and its transport not closing
  (skip the others when fanning out).
* :func:`origin_allowed`, :func:`env_origins`: the Origin policy on its own
  (in :mod:`wslab.server.origins`, importable from here too), for listeners
  not built on websockets (the from-scratch server, tornado).
* :func:`fd_budget`, :func:`open_connections`, :func:`count_open`: the
  process-wide cap on guarded sockets, derived from the open-file limit
  (``count_open(+1)`` / ``count_open(-1)`` for a listener of one's own).

Design note
-----------
websockets' security guide lists the limits a server needs: message size
(``max_size``), the receive queue (``max_queue``), the write buffer's
high-water mark (``write_limit``), the opening handshake's duration
(``open_timeout``) and keepalive pings (``ping_interval``, ``ping_timeout``).
wslab passes them all, with the same values for every listener, and closes
the gaps websockets leaves:

* **Pongs are queued without backpressure.** websockets answers every ping in
  ``data_received`` and writes the pong to the transport at once, whether or
  not the peer reads: a client that floods pings and never reads grows the
  server's write buffer without bound (issue 14: 297 MB held for 300 MB sent).
  The keepalive does not help: its ping is written through ``drain()``, which
  waits while writing is paused, so ``ping_timeout`` never starts. (Node's
  ``ws`` fixed the same attack in 8.23.0 with ``maxPendingAutoPongs``.) So
  the guarded connection checks its transport's write buffer every time
  anything is written (``send_data``, which pongs, ``send()``, ``ping()`` and
  ``broadcast()`` all go through): past ``max_buffer`` bytes it fails the
  connection with 1008 (the close frame is queued, the protocol then discards
  what the peer sends, so no more pongs) and aborts the TCP connection after
  ``close_timeout``. Memory per client is bounded by ``max_buffer`` plus one
  read (asyncio reads at most 256 KiB at a time).
* **Writes to a dead transport.** websockets writes each pong of a read
  separately; when the peer resets the connection in the middle, every
  further write logs asyncio's "socket.send() raised exception" (thousands
  per read of a ping flood). The guarded connection writes what is due in one
  ``write()`` and nothing once the transport is closing; fan-out skips such
  connections too (:func:`writable`).
* **A peer that neither reads nor answers.** When the write buffer is over
  ``write_limit`` (writing paused) for ``stall_timeout`` seconds in a row, the
  connection is closed the same way: the keepalive cannot catch it (see above).
  A peer that stops reading with less buffered than that gets the keepalive
  ping and does not answer: websockets closes it after ``ping_timeout``.
* **Connections and handshakes are not capped.** Every accepted socket costs a
  file descriptor before any HTTP is read; with the common limit of 1,024 open
  files, about 1,000 slow-loris connections stop every server in the process
  from accepting. The guard counts sockets per listener and for the whole
  process: a socket that arrives when the listener has ``max_connections``, or
  the process :func:`fd_budget` sockets, is refused: HTTP 503 with
  ``Retry-After`` if it sends its request within ``handshake_grace`` seconds,
  cut otherwise (and cut at once when ``max_handshakes`` refused sockets
  already wait for their 503). At most ``max_handshakes`` sockets per listener may be still
  waiting for their request: a newcomer beyond that cuts the oldest one if it
  has waited more than ``handshake_grace`` (a real client sends its request at
  once), and is itself cut at once if none has, so a flood of idle sockets
  holds at most ``max_handshakes`` descriptors and cannot lock out a
  well-behaved client for longer than ``handshake_grace``.

The Origin policy (which pages may open a socket) is :mod:`wslab.server.origins`;
the guard applies it with the listener's ``origins``, ``local_origins`` and
``allow_no_origin``.
"""

from __future__ import annotations

import asyncio
import collections
import re
try:
    import resource
except ImportError:  # Windows: no open-file limit to read
    resource = None  # type: ignore[assignment]
import threading
import traceback
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable

from websockets.asyncio.server import ServerConnection
from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.protocol import CONNECTING, OPEN

from ..course.i18n import gettext as _
from .origins import LOCAL_ORIGIN, env_origins, origin_allowed

__all__ = [
    "Limits",
    "DEFAULT_LIMITS",
    "Guard",
    "writable",
    "origin_allowed",
    "env_origins",
    "LOCAL_ORIGIN",
    "fd_budget",
    "open_connections",
    "count_open",
]


@dataclass(frozen=True)
class Limits:
    """The defaults every wslab listener applies; ``Limits().replace(max_size=...)`` changes one."""

    #: Seconds for the opening handshake (websockets' ``open_timeout``).
    open_timeout: float | None = 10.0
    #: Keepalive: a ping every ``ping_interval`` s; no pong within ``ping_timeout`` s closes (1011).
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    #: Seconds to wait for the closing handshake before the TCP connection is aborted.
    close_timeout: float = 2.0
    #: Largest incoming message in bytes; bigger closes with 1009 (websockets' default: 1 MiB).
    max_size: int | None = 1 << 20
    #: Incoming frames buffered before websockets stops reading (its default, 16).
    max_queue: int | None = 16
    #: Write buffer high-water mark in bytes: past it, ``send()`` waits (websockets' default, 32 KiB).
    write_limit: int = 32 * 1024
    #: Bytes buffered for one client (pongs included) before it is closed with 1008.
    max_buffer: int = 1 << 20
    #: Seconds a client may keep writing paused (not reading) before it is closed with 1008.
    stall_timeout: float | None = 30.0
    #: Sockets per listener, in the handshake or open; more get HTTP 503.
    max_connections: int = 1024
    #: Sockets per listener still waiting for their HTTP request.
    max_handshakes: int = 128
    #: Seconds a refused or waiting socket has to send its request before it may be cut.
    handshake_grace: float = 1.0
    #: The explicit Origin allow-list: exact strings or compiled patterns (``fullmatch``).
    origins: tuple[Any, ...] = ()
    #: Allow pages from this computer (127.0.0.1, localhost, [::1], any port).
    local_origins: bool = True
    #: Allow requests without an Origin header (Python clients; browsers always send one).
    allow_no_origin: bool = True

    def __post_init__(self) -> None:
        for name in ("max_buffer", "write_limit", "max_connections", "max_handshakes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(_("Limits.{name} must be a whole number of at least 1, got {value}").format(
                    name=name, value=repr(value)))
        for name in ("open_timeout", "ping_interval", "ping_timeout", "stall_timeout"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(_("Limits.{name} must be a positive number of seconds or None, got {value}").format(
                    name=name, value=repr(value)))
        if not (isinstance(self.close_timeout, (int, float)) and self.close_timeout > 0):
            raise ValueError(_("Limits.close_timeout must be a positive number of seconds, got {value}").format(
                value=repr(self.close_timeout)))
        if isinstance(self.origins, (str, bytes)) or not isinstance(self.origins, Iterable):
            raise TypeError(_("Limits.origins is a tuple of origins, got {value}").format(value=repr(self.origins)))
        for origin in self.origins:
            if not isinstance(origin, (str, re.Pattern)):
                raise TypeError(
                    _("Limits.origins holds origins like 'https://hub.example.org' or re.compile(...), "
                      "got {value}").format(value=repr(origin))
                )
        object.__setattr__(self, "origins", tuple(self.origins))

    def replace(self, **changes: Any) -> Limits:
        """A copy with ``changes`` applied (unknown names raise TypeError)."""
        return replace(self, **changes)

    def websockets_kwargs(self) -> dict[str, Any]:
        """The arguments of :func:`websockets.asyncio.server.serve` these limits set."""
        return {
            "open_timeout": self.open_timeout,
            "ping_interval": self.ping_interval,
            "ping_timeout": self.ping_timeout,
            "close_timeout": self.close_timeout,
            "max_size": self.max_size,
            "max_queue": self.max_queue,
            "write_limit": self.write_limit,
        }


DEFAULT_LIMITS = Limits()

#: websockets.serve() arguments that a Limits field replaces.
_WS_KEYS = tuple(DEFAULT_LIMITS.websockets_kwargs())


# The process-wide budget of guarded sockets

_lock = threading.Lock()
_open_total = 0


def fd_budget() -> int:
    """How many guarded sockets the whole process may hold: the open-file limit minus a reserve.

    The reserve (200 files, or a quarter of a small limit) keeps room for the
    kernel's own files, clients and other libraries' listeners.
    """
    if resource is None:
        return 1 << 30
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 30
    return max(16, soft - min(200, soft // 4))


def open_connections() -> int:
    """Guarded sockets open in this process, over every listener."""
    return _open_total


def count_open(delta: int) -> int:
    """Add ``delta`` to the process-wide count of guarded sockets; return the new count.

    For listeners not built on websockets (the from-scratch server): +1 when
    a socket is accepted, -1 when it is closed, and refuse it when the count
    passes :func:`fd_budget`. :class:`Guard` counts its own.
    """
    global _open_total
    with _lock:
        _open_total += delta
        return _open_total


def writable(connection: Any) -> bool:
    """True if ``connection`` is open and its transport is not closing: worth writing to.

    ``broadcast()`` already skips connections that are not OPEN; a transport
    that failed or was aborted stays OPEN until its ``connection_lost`` runs,
    and every write to it logs asyncio's "socket.send() raised exception".
    """
    if connection.protocol.state is not OPEN:
        return False
    transport = connection.transport
    return transport is not None and not transport.is_closing()


class Guard:
    """The limits of one listener, applied to a websockets server.

    ``Guard(limits)``; ``serve(handler, host, port, **guard.serve_kwargs(process_request=...))``.
    See the module docstring for what it enforces; :attr:`stats` counts it.
    """

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        name: str = "listener",
        on_close: Callable[[ServerConnection, str], None] | None = None,
    ) -> None:
        self.limits = DEFAULT_LIMITS if limits is None else limits
        if not isinstance(self.limits, Limits):
            raise TypeError(_("limits must be a wslab.Limits, got {value}").format(value=repr(self.limits)))
        self.name = name
        #: Called as ``on_close(connection, why)`` when the guard closes an open
        #: connection (``why``: "closed: overflow" or "closed: stalled"). It runs
        #: in the middle of a write, even inside ``broadcast()``: update state,
        #: never write from it.
        self.on_close = on_close
        #: The explicit allow-list: Limits.origins, then the environment's. Code may append; requests never do.
        self.origins: list[Any] = [*self.limits.origins, *env_origins()]
        #: Counts: refused (busy, origin), cut (idle handshakes), closed (overflow, stalled).
        self.stats: collections.Counter[str] = collections.Counter()
        self.connections: set[ServerConnection] = set()
        self._pending: dict[ServerConnection, float] = {}  # waiting for their request, oldest first
        self._refusing: set[ServerConnection] = set()  # over a cap, waiting for their 503
        self.connection_class = type(f"GuardedConnection[{name}]", (GuardedConnection,), {"guard": self})

    def __repr__(self) -> str:
        return f"<wslab.Guard {self.name!r} {len(self.connections)} open, {dict(self.stats)}>"

    # What a listener passes to websockets

    def serve_kwargs(
        self,
        *,
        process_request: Callable[..., Any] | None = None,
        **overrides: Any,
    ) -> dict[str, Any]:
        """Keyword arguments for :func:`websockets.asyncio.server.serve`.

        ``process_request`` runs after the guard's own checks. ``overrides``
        (any websockets argument) win over the limits; ``origins=`` given
        here replaces the guard's Origin policy by websockets' own exact list
        (``origins=None``: every site).
        """
        kwargs = self.limits.websockets_kwargs()
        self._check_origin_policy = "origins" not in overrides
        kwargs.update(overrides)
        kwargs["create_connection"] = self.connection_class
        kwargs["process_request"] = self._process_request_chain(process_request)
        return kwargs

    _check_origin_policy = True

    def _process_request_chain(self, inner: Callable[..., Any] | None) -> Callable[..., Any]:
        guard = self

        def process_request(connection: ServerConnection, request: Request) -> Any:
            refusal = guard.process_request(connection, request)
            if refusal is not None or inner is None:
                return refusal
            return inner(connection, request)

        return process_request

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """503 for a connection over the caps, 403 for an upgrade from a page not allowed; else None."""
        self._pending.pop(connection, None)
        reason = getattr(connection, "_wslab_refused", None)
        if reason is not None:
            response = connection.respond(
                503,
                f"{reason}: try again in a few seconds\n",
            )
            response.headers["Retry-After"] = "5"
            return response
        if self._check_origin_policy and "upgrade" in request.headers.get("Connection", "").lower():
            try:
                origin = request.headers.get("Origin")
            except Exception:  # several Origin headers: websockets answers 400 itself
                return None
            sockname = connection.transport.get_extra_info("sockname") if connection.transport else None
            if not origin_allowed(origin, limits=self.limits, allow=self.origins, sockname=sockname):
                self.stats["refused: origin"] += 1
                return connection.respond(
                    403,
                    f"Origin {origin[:100]!r} is not allowed to open this WebSocket (RFC 6455 section 10.2). "
                    f"Allow it with origins=[...] or WSLAB_ORIGINS\n",
                )
        return None

    def check(self, connection: ServerConnection) -> bool:
        """Close ``connection`` (1008) if it buffers more than ``max_buffer``; True if it was."""
        transport = connection.transport
        if transport is None or transport.is_closing():
            return False
        if transport.get_write_buffer_size() > self.limits.max_buffer:
            _close(connection, "closed: overflow",
                   f"too slow: more than {self.limits.max_buffer} bytes waiting to be sent")
            return True
        return False

    # Admission (called by GuardedConnection)

    def _admit(self, connection: GuardedConnection) -> None:
        global _open_total
        loop = connection.loop
        now = loop.time()
        with _lock:
            _open_total += 1
            total = _open_total
        self.connections.add(connection)
        limits = self.limits
        if len(self.connections) > limits.max_connections:
            connection._wslab_refused = f"server busy: {limits.max_connections} connections open"
        elif total > fd_budget():
            connection._wslab_refused = "server busy: the process is near its open-file limit"
        if connection._wslab_refused is not None:
            self.stats["refused: busy"] += 1
            if len(self._refusing) >= limits.max_handshakes:
                connection.transport.abort()  # enough are waiting for their 503 already
                return
            # A client that sends its request in time gets the 503; a silent one is cut.
            self._refusing.add(connection)
            connection._wslab_timer = loop.call_later(limits.handshake_grace, _cut_if_waiting, connection)
            return
        if len(self._pending) >= limits.max_handshakes:
            oldest, since = next(iter(self._pending.items()))
            if now - since <= limits.handshake_grace:
                # Every waiting socket is young: this one waits its turn outside.
                self.stats["refused: handshakes"] += 1
                connection.transport.abort()
                return
            del self._pending[oldest]
            self.stats["cut: idle handshake"] += 1
            oldest.transport.abort()
        self._pending[connection] = now

    def _forget(self, connection: GuardedConnection) -> None:
        global _open_total
        if connection in self.connections:
            self.connections.discard(connection)
            with _lock:
                _open_total -= 1
        self._pending.pop(connection, None)
        self._refusing.discard(connection)


def _cut_if_waiting(connection: ServerConnection) -> None:
    if connection.protocol.state is CONNECTING and connection.transport is not None:
        connection.transport.abort()


def _close(connection: Any, stat: str, reason: str) -> None:
    """Fail the connection with 1008 now; abort the TCP connection after close_timeout."""
    if getattr(connection, "_wslab_closing", False):
        return
    connection._wslab_closing = True
    guard = getattr(connection, "guard", None)
    if guard is not None:
        guard.stats[stat] += 1
        if guard.on_close is not None:
            try:
                guard.on_close(connection, stat)
            except Exception:  # noqa: BLE001 - a broken callback must not keep the buffer
                traceback.print_exc()
    protocol = connection.protocol
    if protocol.state is OPEN:
        # The close frame is queued behind what is buffered; the protocol now
        # discards what the peer sends (no more pongs).
        protocol.fail(CloseCode.POLICY_VIOLATION, reason[:120])
        try:
            ServerConnection.send_data(connection)
        except Exception:  # noqa: BLE001 - the transport is broken: abort below
            pass
    transport = connection.transport
    if transport is not None and not transport.is_closing():
        # Nothing the peer sends matters now (the protocol discards it): stop
        # reading, so a flood costs this process no CPU and TCP holds the peer
        # back (reading resumes if the peer drains its backlog: resume_writing).
        transport.pause_reading()
        delay = connection.close_timeout if connection.close_timeout is not None else 0
        connection.loop.call_later(delay, transport.abort)
    elif transport is not None:
        transport.abort()


class GuardedConnection(ServerConnection):
    """A websockets server connection that enforces its :class:`Guard`'s limits.

    Subclassed per guard (``guard.connection_class``); pass it to websockets
    as ``create_connection``.
    """

    guard: Guard
    _wslab_refused: str | None = None
    _wslab_timer: asyncio.TimerHandle | None = None
    _wslab_stall: asyncio.TimerHandle | None = None
    _wslab_closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.guard._admit(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard._forget(self)
        for timer in (self._wslab_timer, self._wslab_stall):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

    def send_data(self) -> None:
        # Every write goes through here: pongs (data_received), send(), ping(),
        # close(), broadcast(). See the design note. As websockets' own
        # send_data (an empty chunk means: half-close), except that what is
        # due goes out in one write, and nothing is written to a transport
        # that is closing (its write() would only log a warning per chunk).
        transport = self.transport
        due: list[bytes] = []
        for data in self.protocol.data_to_send():
            if data:
                due.append(data)
                continue
            self._write(due)
            due = []
            if transport.is_closing():
                continue
            if transport.can_write_eof():
                try:
                    transport.write_eof()
                except Exception:  # noqa: BLE001 - as websockets: write_eof() documents no exceptions
                    pass
            else:  # pragma: no cover - TLS
                transport.close()
        self._write(due)
        if (not self._wslab_closing and transport is not None
                and transport.get_write_buffer_size() > self.guard.limits.max_buffer):
            _close(self, "closed: overflow",
                   f"too slow: more than {self.guard.limits.max_buffer} bytes waiting to be sent")

    def _write(self, due: list[bytes]) -> None:
        if due and not self.transport.is_closing():
            self.transport.write(due[0] if len(due) == 1 else b"".join(due))

    def pause_writing(self) -> None:
        super().pause_writing()
        timeout = self.guard.limits.stall_timeout
        if timeout is not None and self._wslab_stall is None:
            self._wslab_stall = self.loop.call_later(timeout, self._stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._wslab_stall is not None:
            self._wslab_stall.cancel()
            self._wslab_stall = None
        if self._wslab_closing and self.transport is not None and not self.transport.is_closing():
            # A peer the guard failed has read its backlog after all: read
            # again, so its close frame and EOF end the connection now.
            self.transport.resume_reading()

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Close as websockets does, but never wait longer than ``close_timeout`` for a peer that does not read.

        websockets writes the close frame through ``drain()``, which waits
        while writing is paused and has no deadline of its own: with a peer
        that stopped reading, ``close()`` (and so a cancelled handler, a
        server's shutdown, a script's exit) would wait forever.
        """
        timer = None
        if self.close_timeout is not None and self.transport is not None:
            timer = self.loop.call_later(self.close_timeout, self._abort_if_open)
        try:
            await super().close(code, reason)
        finally:
            if timer is not None:
                timer.cancel()

    def _abort_if_open(self) -> None:
        if self.transport is not None and not self.connection_lost_waiter.done():
            self.transport.abort()

    def _stalled(self) -> None:
        self._wslab_stall = None
        if self.paused:
            _close(self, "closed: stalled",
                   f"not reading: nothing sent could be delivered for {self.guard.limits.stall_timeout:g} s")

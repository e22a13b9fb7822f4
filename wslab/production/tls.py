"""wss:// on loopback: a throwaway certificate authority and TLS servers that use it.

    ca = wslab.tls.make_ca()                       # a new CA, in memory, for this session
    srv = await wslab.tls.serve_tls(handler, ca=ca, name="secure")
    async with connect(srv.url, ssl=ca.client_context()) as ws: ...   # srv.url is wss://

Design note
-----------
Certificates come from trustme: a CA made in memory when :func:`make_ca` runs,
and one leaf certificate it signs for ``127.0.0.1`` and ``localhost``. No key
or certificate is ever written to the repository; :meth:`CA.write_ca_pem`
writes the CA's *public* certificate to a path you give (a browser or ``curl``
can trust it), nothing else.

* Trust is never switched off. A client trusts this CA and nothing else
  (:meth:`CA.client_context`: hostname checks on, certificate required); a
  client that does not know the CA fails with ``SSLCertVerificationError``.
* Chromium is told about the leaf certificate's public key with
  ``--ignore-certificate-errors-spki-list=<base64 SHA-256 of its
  SubjectPublicKeyInfo>`` (:meth:`CA.chromium_args`): only a certificate with
  that key is accepted; every other site keeps full checks.
* The server context issues no TLS 1.3 session tickets (``num_tickets = 0``):
  with them the server sends a ticket right after the client's Finished, and
  the flights the wiretap sees (:func:`flights`) depend on a race. Without
  them, a TLS 1.3 connection is always: client hello, server hello ...
  finished, client finished + the upgrade request, the 101.
* :func:`serve_tls` is :func:`wslab.serve` with ``ssl=``: the same registry,
  the same stop rules, the same limits; the handle is a :class:`TLSServer`,
  whose ``url`` says ``wss://``.

*Memory after half-open handshakes.* asyncio gives every accepted TLS socket
an ``SSLProtocol`` with a 256 KiB read buffer (``asyncio.sslproto``,
``max_size``) and OpenSSL state, about 300 KiB in all, before the handshake.
A socket that never finishes it is closed after ``open_timeout`` (websockets
passes it as ``ssl_handshake_timeout``), but on CPython 3.11 its objects are
then held by a reference cycle (the exception that ended the handshake, its
traceback, the frame of asyncio's ``_accept_connection2`` and the waiter
future holding that exception), so only the cyclic garbage collector frees
them, and its full collections are rare. Measured here before this module
handled it (1,100 half-open sockets, Python 3.11.7): RSS 44 MB -> 379 MB,
still 381 MB once they were closed, 99 MB after ``gc.collect()``, 47 MB
after glibc's ``malloc_trim(0)`` gave the freed pages back to the system. So a TLS listener counts the
handshakes it began and finished (:class:`Handshakes`); ``open_timeout + 1``
seconds after a handshake began, if some never finished, it runs
``gc.collect()`` and, on glibc, ``malloc_trim(0)`` once
(``srv.guard.stats["reclaimed: failed handshakes"]`` counts the runs), and
again later while handshakes keep failing; within a second when the listener
cut sockets in their handshake (see below).

*Sockets before their handshake.* The guard (:class:`wslab.server.limits.Guard`)
sees a connection only once TLS is done (asyncio calls ``connection_made``
after the handshake), so by itself it neither caps nor counts half-open TLS
sockets: 1,100 of them, with the default 10 s timeout, filled a 1,024-file
process. The TLS listener therefore listens on a socket of its own
(:class:`GatedSocket`) whose ``accept()`` admits each TCP socket before
asyncio starts its handshake, with the guard's policy: at most
``max_handshakes`` sockets in their handshake (a newcomer cuts the oldest one
that has waited more than ``handshake_grace``, else is cut itself), and none
beyond ``max_connections`` or the process's :func:`~wslab.server.limits.fd_budget`
(each counts there until its handshake ends). Before TLS there is no way to
answer HTTP 503, so a refused socket is closed at once (``guard.stats``
counts it). A flood then holds at most ``max_handshakes`` sockets, about
300 KiB each, at a time, and what the cut ones held comes back within about
a second (``benchmarks/bench_tls_flood.py``: 1,100 half-open sockets, RSS
44 MB -> 84-92 MB at the peak -> 46-47 MB after).
"""

from __future__ import annotations

import asyncio
import base64
import ctypes
import gc
import hashlib
import socket
import ssl
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable

from ..server import limits as _limits
from ..course.display import Table
from ..course.i18n import gettext as _
from ..server.limits import Guard, Limits
from ..server.background import _check_host, _check_port, release, release_sync
from ..server.serve import Server, serve, serve_in_thread
from ..server.stream_server import _listening_socket

__all__ = [
    "CA",
    "make_ca",
    "TLSServer",
    "serve_tls",
    "serve_tls_in_thread",
    "Handshakes",
    "Gate",
    "GatedSocket",
    "flights",
    "round_trips",
    "handshake_times",
    "compare_handshakes",
]


class CA:
    """A throwaway certificate authority and the one server certificate it signed.

    ``ca_pem`` is the CA certificate (public, PEM text); ``names`` the names
    the server certificate is valid for; ``spki_sha256`` the base64 SHA-256
    of the server certificate's public key (what Chromium's
    ``--ignore-certificate-errors-spki-list`` takes).
    """

    def __init__(self, names: tuple[str, ...] = ("127.0.0.1", "localhost")) -> None:
        import trustme

        if not names:
            raise ValueError(_("a certificate needs at least one name, e.g. make_ca(('127.0.0.1',))"))
        self.names = tuple(names)
        self._ca = trustme.CA(organization_name="wslab throwaway test CA")
        self._leaf = self._ca.issue_cert(*self.names)

    @property
    def ca_pem(self) -> str:
        return self._ca.cert_pem.bytes().decode()

    @property
    def cert_pem(self) -> str:
        """The server's certificate (public, PEM text)."""
        return self._leaf.cert_chain_pems[0].bytes().decode()

    @property
    def spki_sha256(self) -> str:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        cert = x509.load_pem_x509_certificate(self.cert_pem.encode())
        spki = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(hashlib.sha256(spki).digest()).decode()

    def server_context(self) -> ssl.SSLContext:
        """A server-side context holding the certificate and its key."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._leaf.configure_cert(ctx)
        ctx.num_tickets = 0  # see the design note
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A client-side context that trusts this CA only (checks on: certificate and hostname)."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=self.ca_pem)
        assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
        return ctx

    def chromium_args(self) -> list[str]:
        """Command-line flags that make Chromium accept this server certificate, and only it."""
        return [f"--ignore-certificate-errors-spki-list={self.spki_sha256}"]

    def write_ca_pem(self, path: str | Path) -> Path:
        """Write the CA certificate (public, no key) to ``path``; returns the path."""
        path = Path(path)
        path.write_text(self.ca_pem)
        return path

    def __repr__(self) -> str:
        return f"<wslab.tls.CA for {', '.join(self.names)}, SPKI sha256 {self.spki_sha256[:12]}...>"


def make_ca(names: tuple[str, ...] = ("127.0.0.1", "localhost")) -> CA:
    """A new throwaway CA and a server certificate for ``names`` (in memory only)."""
    return CA(names)


@dataclass(eq=False)
class TLSServer(Server):
    """A :class:`wslab.Server` that speaks TLS: its ``url`` is ``wss://``."""

    @property
    def url(self) -> str:
        return "wss" + super().url[2:]

    @property
    def page_url(self) -> str:
        return "https" + super().url[2:]

    def __repr__(self) -> str:
        return super().__repr__().replace("<wslab.Server", "<wslab.tls.TLSServer", 1)

    async def _close(self) -> None:
        handshakes = getattr(self.guard, "handshakes", None)
        if handshakes is not None:
            handshakes.cancel()  # no collection after the server is gone
        await super()._close()
        gate = getattr(self.guard, "gate", None)
        if gate is not None:
            gate.close()  # sockets still in their handshake were closed with the server


def _malloc_trim() -> None:
    """Give freed heap pages back to the system (glibc only; elsewhere nothing)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
            pass


class Handshakes:
    """TLS handshakes a listener began and finished; reclaims the memory of those that failed.

    See the module's design note. ``begun`` and ``done`` count since the last
    reclaim; ``reclaims`` counts the runs of ``gc.collect()``.
    """

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self.begun = self.done = self.reclaims = 0
        #: The listener's gate: it forgets closed sockets at each reclaim.
        self.gate: Gate | None = None
        self._owed = False
        self._timer: asyncio.TimerHandle | None = None

    @property
    def delay(self) -> float:
        """Seconds after a handshake began when it has surely finished or failed."""
        return (self.guard.limits.open_timeout or 10.0) + 1.0

    def begin(self, loop: asyncio.AbstractEventLoop) -> None:
        self.begun += 1
        if self._timer is None:
            self._timer = loop.call_later(self.delay, self._reclaim, loop)

    def _reclaim(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        unfinished = self.begun > self.done  # some handshakes of this window failed, or are still going
        self.begun = self.done = 0
        if self.gate is not None:
            self.gate.purge()  # sockets closed since the last accept leave the budget now
        if unfinished or self._owed:
            gc.collect()
            _malloc_trim()
            self.reclaims += 1
            self.guard.stats["reclaimed: failed handshakes"] += 1
        # Those still in their handshake now end within `delay`: collect once more then.
        self._owed = unfinished
        if unfinished and not loop.is_closed():
            self._timer = loop.call_later(self.delay, self._reclaim, loop)

    def soon(self, loop: asyncio.AbstractEventLoop) -> None:
        """Sockets were cut in their handshake: collect within a second, not after the whole timeout."""
        if self._timer is not None and self._timer.when() > loop.time() + 1.0:
            self._timer.cancel()
            self._timer = None
        self._owed = True
        if self._timer is None:
            self._timer = loop.call_later(1.0, self._reclaim, loop)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class Gate:
    """The TLS listener's admission of TCP sockets before their handshake (see the design note)."""

    def __init__(self, guard: Guard, handshakes: Handshakes) -> None:
        self.guard = guard
        self.handshakes = handshakes
        #: Sockets in their TLS handshake, by file descriptor, oldest first: (socket, accepted at).
        self.waiting: dict[int, tuple[socket.socket, float]] = {}

    def admit(self, conn: socket.socket) -> bool:
        """Count ``conn`` in, or say it must be closed (over a cap)."""
        limits, stats, now = self.guard.limits, self.guard.stats, time.monotonic()
        self.purge()
        if len(self.waiting) >= limits.max_handshakes:
            oldest, (sock, since) = next(iter(self.waiting.items()))
            if now - since <= limits.handshake_grace:
                stats["refused: handshakes"] += 1
                return False
            self._forget(oldest)
            stats["cut: idle handshake"] += 1
            try:
                sock.shutdown(socket.SHUT_RDWR)  # its transport reads EOF and closes it
            except OSError:
                pass
            self.handshakes.soon(asyncio.get_running_loop())  # accept() runs on the listener's loop
        if (len(self.guard.connections) + len(self.waiting) >= limits.max_connections
                or _limits.open_connections() + 1 > _limits.fd_budget()):
            stats["refused: busy"] += 1
            return False
        _limits.count_open(+1)
        self.waiting[conn.fileno()] = (conn, now)
        return True

    def purge(self) -> None:
        """Forget the sockets asyncio closed (their handshake failed or timed out)."""
        for fd, (sock, _) in list(self.waiting.items()):
            if sock.fileno() == -1:
                self._forget(fd)

    def done(self, transport: asyncio.BaseTransport) -> None:
        """The handshake on ``transport`` finished: from now on the guard counts the socket."""
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self._forget(sock.fileno())

    def _forget(self, fd: int) -> None:
        if self.waiting.pop(fd, None) is not None:
            _limits.count_open(-1)

    def close(self) -> None:
        for fd in list(self.waiting):
            self._forget(fd)


class GatedSocket(socket.socket):
    """A listening socket whose ``accept()`` asks its :class:`Gate` before a socket reaches asyncio."""

    gate: Gate

    def accept(self) -> tuple[socket.socket, Any]:
        for _ in range(1024):  # bounded: each turn takes one socket off the backlog
            conn, address = super().accept()  # BlockingIOError once the backlog is empty
            if self.gate.admit(conn):
                return conn, address
            conn.close()
        raise BlockingIOError("refused a full backlog; more on the next turn")


def _gated_socket(gate: Gate, host: str, port: int) -> GatedSocket:
    sock = _listening_socket(host, port, GatedSocket)
    sock.gate = gate  # type: ignore[attr-defined]
    return sock  # type: ignore[return-value]


def _tls_guard(limits: Limits | Guard | None, name: str | None) -> Guard:
    """A guard whose connections count their TLS handshakes (see :class:`Handshakes`)."""
    guard = limits if isinstance(limits, Guard) else Guard(limits, name=name or "tls")
    handshakes = Handshakes(guard)
    gate = handshakes.gate = Gate(guard, handshakes)
    base = guard.connection_class

    class TLSConnection(base):  # type: ignore[valid-type, misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)  # at accept, before the TLS handshake
            handshakes.begin(self.loop)

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            handshakes.done += 1  # after the TLS handshake
            gate.done(transport)
            super().connection_made(transport)

    TLSConnection.__name__ = TLSConnection.__qualname__ = f"TLS{base.__name__}"
    guard.connection_class = TLSConnection
    guard.handshakes = handshakes  # type: ignore[attr-defined]
    guard.gate = gate  # type: ignore[attr-defined]
    return guard


def _tls_kwargs(ca: CA, kwargs: dict[str, Any], name: str | None) -> dict[str, Any]:
    if not isinstance(ca, CA):
        raise TypeError(_("ca must be a wslab.tls.CA (from wslab.production.tls.make_ca()), got {value}").format(
            value=repr(ca)))
    if "ssl" in kwargs:
        raise TypeError(_("pass ca=..., not ssl=...: serve_tls builds the server's context from the CA"))
    limits = kwargs.get("limits")
    if limits is not None and not isinstance(limits, (Limits, Guard)):
        raise TypeError(_("limits must be a wslab.Limits, got {value}").format(value=repr(limits)))
    if "sock" in kwargs:
        raise TypeError(_("serve_tls listens on a socket of its own (see wslab.tls): give `host=` and `port=`, "
                          "not `sock=`"))
    _check_host(kwargs.get("host", "127.0.0.1"), kwargs.get("allow_network", False))
    _check_port(kwargs.get("port", 0))
    return {**kwargs, "ssl": ca.server_context(), "limits": _tls_guard(limits, name)}


def _listen(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with the listener's gated socket (call once the name's old server is released)."""
    gate = kwargs["limits"].gate
    return {**kwargs, "sock": _gated_socket(gate, kwargs.get("host", "127.0.0.1"), kwargs.get("port", 0))}


def _as_tls(server: Server) -> TLSServer:
    server.__class__ = TLSServer  # same fields; only url and repr differ
    return server  # type: ignore[return-value]


def serve_tls(handler: Any, name: str | None = None, *, ca: CA, **kwargs: Any) -> Awaitable[TLSServer]:
    """Like :func:`wslab.serve`, over TLS with ``ca``'s certificate; ``await`` it.

    Other keyword arguments go to :func:`wslab.serve` (``process_request``,
    ``ping_interval``, ``limits``, ...). ``srv.guard.handshakes`` counts TLS
    handshakes (see the module's design note).
    """
    tls_kwargs = _tls_kwargs(ca, kwargs, name)

    async def start() -> TLSServer:
        if name is not None:
            await release(name)  # its port is free again before this one binds
        return _as_tls(await serve(handler, name, **_listen(tls_kwargs)))

    return start()


def serve_tls_in_thread(handler: Any, name: str | None = None, *, ca: CA, **kwargs: Any) -> TLSServer:
    """Like :func:`wslab.serve_in_thread`, over TLS with ``ca``'s certificate."""
    tls_kwargs = _tls_kwargs(ca, kwargs, name)
    if name is not None:
        release_sync(name)
    return _as_tls(serve_in_thread(handler, name, **_listen(tls_kwargs)))


# What the handshake costs


def flights(capture: Any, conn: int) -> list[tuple[str, int]]:
    """The wiretap's chunks of connection ``conn`` grouped into flights: ``[(">", bytes), ("<", bytes), ...]``.

    A flight is what one side sent before the other answered: consecutive
    chunks in the same direction. Each change of direction is half a round trip.
    """
    out: list[tuple[str, int]] = []
    for chunk in capture.chunks:
        if chunk.conn != conn:
            continue
        if out and out[-1][0] == chunk.direction:
            out[-1] = (chunk.direction, out[-1][1] + len(chunk.data))
        else:
            out.append((chunk.direction, len(chunk.data)))
    return out


def round_trips(capture: Any, conn: int) -> int:
    """How many times the client spoke and then waited for the server, on connection ``conn``.

    Read it right after the connection opened, before anything else is sent:
    then it counts the round trips the opening took after TCP's own (which the
    wiretap does not see): 1 for ``ws://`` (the upgrade request and its 101),
    2 for ``wss://`` with TLS 1.3 (client hello; then client finished with the
    upgrade request right behind it), 3 with TLS 1.2.
    """
    return sum(1 for direction, _ in flights(capture, conn) if direction == ">")


async def _one_handshake(url: str, ssl_ctx: ssl.SSLContext | None) -> float:
    from websockets.asyncio.client import connect

    started = time.perf_counter()
    ws = await connect(url, ssl=ssl_ctx, compression=None, open_timeout=10)
    elapsed = time.perf_counter() - started
    await ws.close()
    return elapsed


async def handshake_times(url: str, *, ssl: ssl.SSLContext | None = None, n: int = 20) -> list[float]:
    """Open and close ``n`` connections to ``url``; each one's time to open (TCP, TLS, upgrade), seconds."""
    if n < 1:
        raise ValueError(_("n must be at least 1 connection, got {value}").format(value=repr(n)))
    return [await _one_handshake(url, ssl) for _attempt in range(n)]


async def compare_handshakes(ws_url: str, wss_url: str, *, ca: CA, n: int = 20) -> Table:
    """Time ``n`` openings of each, interleaved so both see the same load; min / median / max in ms."""
    plain: list[float] = []
    secure: list[float] = []
    ctx = ca.client_context()
    for _ in range(n):
        plain.append(await _one_handshake(ws_url, None))
        secure.append(await _one_handshake(wss_url, ctx))
    rows = []
    for label, times in (("ws://", plain), ("wss://", secure)):
        ms = sorted(t * 1000 for t in times)
        rows.append([label, f"{ms[0]:.2f}", f"{statistics.median(ms):.2f}", f"{ms[-1]:.2f}"])
    ratio = statistics.median(secure) / statistics.median(plain)
    table = Table(["scheme", "min ms", "median ms", "max ms"], rows,
                  title=f"time to open a connection on loopback, {n} each (wss/ws median: {ratio:.1f}x)",
                  align_right={1, 2, 3})
    table.raw = {"ws": plain, "wss": secure}  # type: ignore[attr-defined]
    table.ratio = ratio  # type: ignore[attr-defined]
    return table

"""Run ``async def connection(reader, writer)`` for every TCP client, under the kit's limits.

:func:`serve_streams` is how wslab runs a from-scratch server: the reference
one (:func:`wslab.serve_scratch`) and yours in lesson 06. It returns a
:class:`ScratchServer` handle, listed by ``wslab.status()`` and stopped by
``wslab.stop_all()`` like every other wslab listener.

Design note
-----------
* Task mode only: the server runs on the loop that called
  :func:`serve_streams` (a notebook kernel's), on ``127.0.0.1`` with a port
  the OS picks. Each client gets a task of this module's own.
* It accepts sockets itself (a reader callback on the listening socket, not
  :func:`asyncio.start_server`) to apply the kit's limits (:mod:`wslab.server.limits`)
  before any connection code runs: at most ``limits.max_connections`` per
  server and the process's :func:`~wslab.server.limits.fd_budget` of sockets (more
  get HTTP 503 with ``Retry-After`` if they send a request within
  ``limits.handshake_grace``, else are cut); once ``limits.max_handshakes``
  sockets wait for the server's first byte (its 101), a newcomer cuts the
  oldest one that has waited longer than ``handshake_grace`` (a real client
  sends its request at once), or is itself cut if none has, so a flood of idle
  sockets holds at most ``max_handshakes`` descriptors and never locks out a
  well-behaved client for longer than about ``handshake_grace`` (the policy of
  :class:`wslab.server.limits.Guard`, so every listener behaves alike). The sockets
  count against the same process-wide budget as the Guard's.
* When the process runs out of file descriptors anyway (other listeners),
  accepting pauses and retries with a growing delay (up to 2 s), and says so
  once: asyncio's own accept loop logs a traceback for each failed
  ``accept()``, up to 100 per loop iteration.
* Accepted sockets get ``TCP_NODELAY`` (the listening socket is created with
  ``IPPROTO_TCP``, as :func:`asyncio.start_server` does), so two small replies
  never wait for a delayed ACK.
* An exception in the connection code is printed once, kept in
  ``srv.errors``, and the client's TCP connection is closed.
* What must never happen: a stop that hangs, or prints a traceback per
  client. ``aclose()`` stops listening, cancels every connection and aborts
  whatever is left after ``stop_timeout``; a cancelled connection task ends
  quietly (Python 3.11's ``start_server`` printed a 20-line
  ``CancelledError`` traceback for each). Sockets are closed by a task's
  done callback, so even a task cancelled before its first step closes its
  socket and frees its place in the budget.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import inspect
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from ..course.i18n import gettext as _
from . import limits as _limits
from .limits import DEFAULT_LIMITS, Limits, fd_budget
from .background import DEFAULT_STOP_TIMEOUT, Background, PortInUseError, _check_host, _check_port, register, release

__all__ = ["serve_streams", "ScratchServer", "Connection"]

#: What :func:`serve_streams` runs for each client.
Connection = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, limits: Limits) -> None:
    """Half-close after what is written, then read and discard until the client's EOF or a timeout."""
    try:
        if writer.can_write_eof() and not writer.is_closing():
            writer.write_eof()  # FIN after the buffered bytes
        async with asyncio.timeout(limits.close_timeout):
            for _ in range(1 << 20):  # bounded: each round reads at least one byte
                if not await reader.read(65536):
                    return
    except (TimeoutError, ConnectionError, OSError):
        pass


class _Writer(asyncio.StreamWriter):
    """A StreamWriter that tells the server when the connection code first writes (its 101)."""

    _first_write: Callable[[], None] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._first_write is not None:
            first, self._first_write = self._first_write, None
            first()
        super().write(data)


#: Add to the process-wide count of guarded sockets (shared with wslab.limits' Guard).
_count = _limits.count_open


_OUT_OF_FILES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


@dataclass(eq=False)
class ScratchServer(Background):
    """A handle on a server started by :func:`serve_streams` or :func:`serve_scratch`.

    ``name``, ``host``, ``port``, ``url``, ``mode`` (always ``"task"``),
    ``connections``, ``uptime``, ``errors``, ``running``; ``limits`` (the
    :class:`wslab.Limits` it applies), ``stats`` (what it refused or cut, and
    why); ``stop()`` and ``await aclose()`` stop it within about
    ``stop_timeout`` seconds.
    """

    name: str
    host: str
    port: int
    mode: str = "task"
    started: float = field(default_factory=time.time)
    errors: list[BaseException] = field(default_factory=list)
    stop_timeout: float = DEFAULT_STOP_TIMEOUT
    limits: Limits = DEFAULT_LIMITS
    stats: collections.Counter[str] = field(default_factory=collections.Counter)
    _sock: socket.socket | None = field(default=None, repr=False)
    _code: Connection | None = field(default=None, repr=False)
    _tasks: dict[asyncio.Task[Any], asyncio.StreamWriter] = field(default_factory=dict, repr=False)
    _waiting: dict[asyncio.Task[Any], float] = field(default_factory=dict, repr=False)
    _refusing: dict[asyncio.Task[Any], asyncio.StreamWriter] = field(default_factory=dict, repr=False)
    _cut: set[asyncio.Task[Any]] = field(default_factory=set, repr=False)  # aborted, not yet done
    _retry: asyncio.TimerHandle | None = field(default=None, repr=False)
    _backoff: float = 0.0
    _shown: set[str] = field(default_factory=set, repr=False)

    @property
    def connections(self) -> int:
        return len(self._tasks)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<wslab.ScratchServer {self.name!r} {self.url} {state}, {self.connections} connection(s)>"

    # Accepting

    def _listen(self, sock: socket.socket, code: Connection) -> None:
        assert self._loop is not None
        self._sock, self._code = sock, code
        self._loop.add_reader(sock.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        assert self._sock is not None and self._loop is not None
        for _ in range(100):  # at most this many per loop iteration, like asyncio
            try:
                conn, _addr = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                self._pause_accepting(exc)
                return
            self._backoff = 0.0
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small frames go at once
            self._admit(conn)

    def _pause_accepting(self, exc: OSError) -> None:
        """Out of file descriptors (or another accept error): stop reading the socket, retry later."""
        assert self._sock is not None and self._loop is not None
        self._loop.remove_reader(self._sock.fileno())
        self._backoff = min(2.0, max(0.05, self._backoff * 2))
        self.stats["accept paused: " + (errno.errorcode.get(exc.errno or 0, "error"))] += 1
        if exc.errno in _OUT_OF_FILES and "out of files" not in self._shown:
            self._shown.add("out of files")
            print(
                f"! server {self.name!r}: cannot accept connections: {exc.strerror} "
                f"(the process has too many open files); retrying, with pauses up to 2 s. "
                f"srv.stats counts the pauses",
                file=sys.stderr, flush=True,
            )
        self._retry = self._loop.call_later(self._backoff, self._resume_accepting)

    def _resume_accepting(self) -> None:
        self._retry = None
        if self._sock is not None and self.running and self._loop is not None:
            self._loop.add_reader(self._sock.fileno(), self._on_readable)

    def _admit(self, conn: socket.socket) -> None:
        assert self._loop is not None
        limits, now = self.limits, self._loop.time()
        if len(self._waiting) >= limits.max_handshakes:
            # A flood of idle sockets: the oldest one that has waited past the
            # grace goes; if none has, the newcomer waits its turn outside (as
            # wslab.limits.Guard does), so idle sockets never hold more than
            # max_handshakes descriptors.
            oldest, since = next(iter(self._waiting.items()))
            if now - since <= limits.handshake_grace:
                self.stats["refused: handshakes"] += 1
                conn.close()
                return
            del self._waiting[oldest]
            self.stats["cut: idle handshake"] += 1
            self._cut.add(oldest)  # its socket closes in a moment: count it free now
            writer = self._tasks.get(oldest)
            if writer is not None:
                writer.transport.abort()
            else:
                oldest.cancel()
        total = _count(+1) - len(self._cut)
        served = len(self._tasks) - len(self._cut)
        if served >= limits.max_connections or total > fd_budget():
            reason = (f"server busy: {limits.max_connections} connections open" if served >= limits.max_connections
                      else "server busy: the process is near its open-file limit")
            self.stats["refused: busy"] += 1
            if len(self._refusing) >= limits.max_handshakes:
                _count(-1)
                conn.close()  # refusing too many already: cut at once
                return
            task = self._loop.create_task(self._refuse(conn, reason))
            self._refusing[task] = None  # type: ignore[assignment]
        else:
            task = self._loop.create_task(self._serve(conn))
            self._tasks[task] = None  # type: ignore[assignment]  # the writer comes once it is wrapped
            self._waiting[task] = now
        # Clean up in a callback, not a `finally`: a task cancelled before its
        # first step never runs its body, and its socket must still close.
        task.add_done_callback(lambda task: self._done(task, conn))

    def _done(self, task: asyncio.Task[Any], conn: socket.socket) -> None:
        _count(-1)
        self._cut.discard(task)
        self._waiting.pop(task, None)
        writer = self._tasks.pop(task, None) or self._refusing.pop(task, None)
        if writer is not None:
            writer.close()
        else:
            conn.close()

    async def _streams(self, conn: socket.socket) -> tuple[asyncio.StreamReader, _Writer]:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2**16, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock=conn)
        return reader, _Writer(transport, protocol, reader, loop)

    async def _refuse(self, conn: socket.socket, reason: str) -> None:
        """503 for a client that sends its request within the grace; cut a silent one."""
        task = asyncio.current_task()
        assert task is not None
        writer = None
        try:
            reader, writer = await self._streams(conn)
            self._refusing[task] = writer  # _done() closes it
            async with asyncio.timeout(self.limits.handshake_grace):
                await reader.readuntil(b"\r\n\r\n")
            body = f"{reason}: try again in a few seconds\n".encode()
            writer.write(
                b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Type: text/plain\r\n"
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
            )
            await _linger(reader, writer, self.limits.replace(close_timeout=self.limits.handshake_grace))
        except (TimeoutError, ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            if writer is not None:
                writer.transport.abort()
        except asyncio.CancelledError:
            pass  # the server is stopping

    async def _serve(self, conn: socket.socket) -> None:
        task = asyncio.current_task()
        assert task is not None and self._code is not None
        try:
            reader, writer = await self._streams(conn)
            self._tasks[task] = writer  # _done() closes it
            writer._first_write = lambda: self._waiting.pop(task, None)
            await self._code(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        except asyncio.CancelledError:
            pass  # the server is stopping: end quietly (no traceback per client)
        except Exception as exc:  # noqa: BLE001 - reported, kept, never lost
            self._report(exc)

    def _report(self, exc: BaseException) -> None:
        self.errors.append(exc)
        key = f"{type(exc).__name__}: {exc}"
        if key in self._shown:
            return  # the same error on every connection: say it once
        self._shown.add(key)
        detail = "" if isinstance(exc, NotImplementedError) else "".join(traceback.format_exception(exc))
        print(
            _("! server {name}: the connection code raised {error}\n"
              "! the client's TCP connection was closed; the exception is kept in srv.errors").format(
                name=repr(self.name), error=key) + "\n" + detail,
            file=sys.stderr,
            flush=True,
        )

    # Stopping

    def _stop_listening(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        sock, self._sock = self._sock, None
        if sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(sock.fileno())
            sock.close()

    async def _close(self) -> None:
        self._stop_listening()
        tasks = [*self._tasks, *self._refusing]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self.stop_timeout)
        for writer in [*self._tasks.values(), *self._refusing.values()]:
            if writer is not None:
                writer.transport.abort()  # stragglers that ignored the cancel

    def _begin_close(self) -> None:
        self._stop_listening()  # stop listening now
        super()._begin_close()  # _close() as a task, when the cell returns

    def _release(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()  # interpreter exit: release the port


def _listening_socket(host: str, port: int, kind_of_socket: type[socket.socket] = socket.socket) -> socket.socket:
    """A listening socket on ``host``/``port`` (an instance of ``kind_of_socket``); PortInUseError if taken."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    # proto from getaddrinfo (IPPROTO_TCP), as asyncio.start_server does: asyncio turns Nagle's
    # algorithm off (TCP_NODELAY) only for sockets whose proto says TCP, and accepted sockets
    # inherit it. With proto 0, two small frames written back to back wait ~40 ms for an ACK.
    sock = kind_of_socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio does; never SO_REUSEPORT
        sock.bind(address)
        sock.listen(1024)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(host, port) from None
        raise
    return sock


async def serve_streams(
    code: Connection,
    name: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    allow_network: bool = False,
    stop_timeout: float = DEFAULT_STOP_TIMEOUT,
    limits: Limits | None = None,
) -> ScratchServer:
    """Run ``async def code(reader, writer)`` for every TCP client, in the background.

    ``srv = await wslab.serve_streams(my_connection, name="mine")``: the
    server listens on ``host`` (``127.0.0.1``) and a port the OS picks
    (``srv.url``); a server already running under ``name`` is stopped first.
    ``limits`` (:class:`wslab.Limits`, the kit's defaults) caps connections
    and idle sockets before ``code`` runs (HTTP 503 beyond the cap); the
    handshake itself, and with it the Origin check, is ``code``'s.
    """
    if not inspect.iscoroutinefunction(code):
        raise TypeError(
            f"{getattr(code, '__name__', code)!r} must be an async function: "
            f"write `async def connection(reader, writer): ...`"
        )
    _check_host(host, allow_network)
    _check_port(port)
    limits = DEFAULT_LIMITS if limits is None else limits
    if not isinstance(limits, Limits):
        raise TypeError(f"limits must be a wslab.Limits, got {limits!r}")
    name = name or getattr(code, "__name__", "streams")
    await release(name)
    handle = ScratchServer(name, host, 0, stop_timeout=stop_timeout, limits=limits)
    sock = _listening_socket(host, port)
    handle._loop = asyncio.get_running_loop()
    handle.port = sock.getsockname()[1]
    handle._listen(sock, code)
    register(handle)
    return handle

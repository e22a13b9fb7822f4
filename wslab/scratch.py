"""A WebSocket echo server from scratch: asyncio streams, ``wslab.handshake``, ``wslab.frames``.

This is the reference for lesson 06, where you write the same server
yourself. Read :func:`connection` top to bottom: it is the whole protocol.

    srv = await wslab.serve_scratch()          # an echo server on 127.0.0.1
    report = await wslab.check_server(srv)     # the battery: every case passes

Design note
-----------
* :func:`connection` serves one client on one ``(reader, writer)`` pair: it
  reads the upgrade request (within ``limits.open_timeout``, else 408),
  answers 101 or a refusal (400, 403 for a page the Origin policy does not
  allow, 426, 431), then feeds every byte it reads to a
  :class:`wslab.frames.Reader`, which unmasks, reassembles fragments, checks
  UTF-8 and the size limit. When a frame is bad the reader raises
  :class:`~wslab.frames.ProtocolError`; ``error.events`` holds what it decoded
  before the bad frame in the same read, and the server answers those first
  (echoes, pongs), as websockets, wsproto and Node's ``ws`` do, then fails the
  connection with the error's close code.
* Failing the connection (RFC 6455 7.1.7) and refusing a handshake both end
  in :func:`fail`/``_linger``: write the close frame (or the HTTP refusal),
  half-close (TCP FIN after it), then read and discard whatever the client
  still sends until it closes too, or ``limits.close_timeout``. Closing a
  socket while unread bytes wait in it makes the kernel answer with a reset,
  and a reset can wipe the client's copy of the close frame before it is read:
  a client still writing a 1 MiB message would see "connection reset" instead
  of 1009. The discarded bytes are never parsed (7.1.7: "MUST NOT continue to
  attempt to process data (including a responding Close frame)"). websockets'
  own server does the same (half-close, then discard until EOF).
* Keepalive: after ``limits.ping_interval`` seconds without a byte from the
  client the server pings; no byte within ``limits.ping_timeout`` more closes
  with 1011. Every write waits for the client to read (``drain``) for at most
  ``limits.stall_timeout`` seconds, then the TCP connection is cut: a client
  that never reads cannot make the server buffer without bound (pongs
  included: each one is drained before the next frame is read).
* :func:`serve_streams` runs *any* ``async def connection(reader, writer)``
  (yours in lesson 06) like wslab's other servers: on the running loop (task
  mode), on ``127.0.0.1`` with a port the OS picks, listed by
  ``wslab.status()``, stopped by ``wslab.stop_all()``. It accepts sockets
  itself (not with :func:`asyncio.start_server`) to apply the kit's limits
  (:mod:`wslab.limits`) before any code runs: at most
  ``limits.max_connections`` per server and the process's
  :func:`~wslab.limits.fd_budget` of sockets (more get HTTP 503 with
  ``Retry-After`` if they send a request within ``limits.handshake_grace``,
  else are cut); once ``limits.max_handshakes`` sockets wait for the server's
  first byte (its 101), a newcomer cuts the oldest one that has waited longer
  than ``handshake_grace`` (a real client sends its request at once), so a
  flood of idle sockets never locks out a well-behaved client. When the
  process runs out of file descriptors anyway (other listeners), accepting
  pauses and retries with a growing delay, and says so once: asyncio's own
  accept loop logs a traceback up to 100 times per loop iteration there.
* An exception in the connection code is printed once, kept in
  ``srv.errors``, and the client's TCP connection is closed.
* What must never happen: a stop that hangs, or prints a traceback per
  client. ``aclose()`` stops listening, cancels every connection (the
  reference server answers a cancel with close code 1001, going away) and
  aborts whatever is left after ``stop_timeout``. The connection tasks are
  this module's own: a cancelled one ends quietly (Python 3.11's
  ``start_server`` printed a 20-line ``CancelledError`` traceback for each).
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
from typing import Any, Awaitable, Callable, Sequence, Union

from . import frames, handshake
from . import limits as _limits
from .frames import CloseCode, Frame, Message, Opcode, ProtocolError
from .limits import DEFAULT_LIMITS, Limits, env_origins, fd_budget, origin_allowed
from .servers import DEFAULT_STOP_TIMEOUT, Background, PortInUseError, _check_host, _check_port, register, release

__all__ = ["connection", "fail", "echo", "serve_scratch", "serve_streams", "ScratchServer", "DEFAULT_MAX_SIZE"]

#: The largest message the reference server accepts, in bytes (1009 beyond it): the kit's default.
DEFAULT_MAX_SIZE = DEFAULT_LIMITS.max_size

Data = Union[str, bytes]
MessageHandler = Callable[[Data], Union[Data, None, Awaitable[Union[Data, None]]]]
Connection = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def echo(message: Data) -> Data:
    """The default message handler: the reply is the message itself."""
    return message


# -- The server: one client, start to finish ----------------------------------


async def connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    handler: MessageHandler = echo,
    max_size: int | None = DEFAULT_MAX_SIZE,
    limits: Limits = DEFAULT_LIMITS,
    origins: Sequence[Any] = (),
) -> None:
    """Serve one WebSocket client: handshake, then frames until one side closes.

    ``handler(message)`` gets each text (``str``) or binary (``bytes``)
    message and returns the reply (``None``: no reply); it may be async.
    ``limits``: timeouts and the Origin policy (:class:`wslab.Limits`);
    ``origins``: more pages allowed to connect besides the policy's own.
    """
    # 1. The opening handshake (RFC 6455 section 4.2): read until the blank
    #    line that ends the request head, check it, answer 101 or refuse.
    sockname = writer.get_extra_info("sockname")

    def allowed(origin: str | None) -> bool:  # 10.2: which pages may connect
        return origin_allowed(origin, limits=limits, allow=origins, sockname=sockname)

    data = b""
    try:
        async with asyncio.timeout(limits.open_timeout):
            while (request := handshake.parse_request(data)) is None:
                chunk = await reader.read(4096)
                if not chunk:
                    return  # the client left before finishing its request
                data += chunk
        handshake.check_request(request, origins=allowed)
    except (handshake.HandshakeError, TimeoutError) as error:
        if isinstance(error, TimeoutError):
            error = handshake.HandshakeError(
                f"no complete request head within {limits.open_timeout:g} s: send the whole "
                f"request at once", status=408, section="RFC 9110 section 15.5.9",
            )
        writer.write(handshake.refusal(error))  # 400, 403, 408, 426, 431 with a body that says why
        await _linger(reader, writer, limits)
        return
    writer.write(handshake.response_101(request))

    # 2. Frames (section 5). The reader unmasks client frames and checks them;
    #    what it returns is whole messages and control frames.
    incoming = frames.Reader("server", max_size=max_size)
    data = request.rest  # bytes the client sent right after its request
    try:
        while True:
            try:
                events, error = incoming.feed(data), None
            except ProtocolError as exc:
                # What came before the bad frame still counts: answer it first.
                events, error = exc.events, exc
            for event in events:
                if isinstance(event, Message):
                    try:
                        reply = handler(event.data)
                        if inspect.isawaitable(reply):
                            reply = await reply
                        answer = _reply_frame(reply)
                    except Exception:
                        # A bug in the handler: 1011, internal error (7.4.1).
                        await fail(reader, writer, CloseCode.INTERNAL_ERROR, "internal error", limits)
                        raise
                    if answer is not None:
                        await send(writer, answer, limits)
                elif event.opcode == Opcode.PING:
                    # 5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send
                    # a Pong frame in response", with the same application data.
                    await send(writer, Frame.pong(event.payload), limits)
                elif event.opcode == Opcode.CLOSE:
                    # 5.5.1: answer with a close frame, typically echoing the
                    # code; then the server closes TCP first (7.1.1).
                    code, reason = frames.parse_close(event.payload)
                    echoed = None if code == CloseCode.NO_STATUS_RCVD else code
                    await send(writer, Frame.close(echoed, reason), limits)
                    return
                # A PONG needs no answer (5.5.3).
            if error is not None:
                # 7.1.7 "Fail the WebSocket Connection": a close frame with the
                # code (1002, 1007, 1009...), then close TCP.
                await fail(reader, writer, error.code, str(error), limits)
                return
            data = await _receive(reader, writer, limits)
            if not data:
                return  # TCP closed without a close frame: 1006 for the client
    except asyncio.CancelledError:
        # The server is stopping: tell the client why (1001, going away),
        # unless a close frame has gone already (then we half-closed).
        if writer.can_write_eof() and not writer.transport.is_closing():
            try:
                writer.write(frames.encode(Frame.close(CloseCode.GOING_AWAY, "server stopping")))
            except RuntimeError:
                pass  # "Cannot call write() after write_eof()": our close frame went first
        raise


async def send(writer: asyncio.StreamWriter, frame: Frame, limits: Limits = DEFAULT_LIMITS) -> None:
    """Write one frame, unmasked: servers never mask (section 5.1).

    Waits until the client has read enough (``drain``) for at most
    ``limits.stall_timeout`` seconds; then the client is not reading, and the
    TCP connection is cut (``ConnectionAbortedError``).
    """
    writer.write(frames.encode(frame))
    try:
        async with asyncio.timeout(limits.stall_timeout):
            await writer.drain()
    except TimeoutError:
        writer.transport.abort()
        raise ConnectionAbortedError(
            f"the client read nothing for {limits.stall_timeout:g} s: connection cut"
        ) from None


async def fail(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    code: int,
    reason: str,
    limits: Limits = DEFAULT_LIMITS,
) -> None:
    """7.1.7 "Fail the WebSocket Connection": a close frame with ``code``, then close cleanly.

    After the close frame the server half-closes and discards what the client
    still sends until it closes too (or ``limits.close_timeout``), so the
    client reads the close frame instead of a TCP reset (see the design note).
    """
    writer.write(frames.encode(Frame.close(code, _reason(reason))))
    await _linger(reader, writer, limits)


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


async def _receive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, limits: Limits) -> bytes:
    """The next bytes from the client; a keepalive ping when it has been quiet (b"": close)."""
    try:
        async with asyncio.timeout(limits.ping_interval):
            return await reader.read(65536)
    except TimeoutError:
        pass
    await send(writer, Frame.ping(b"keepalive"), limits)  # 5.5.2: a ping "may serve as a keepalive"
    try:
        async with asyncio.timeout(limits.ping_timeout):
            return await reader.read(65536)  # its pong, or anything else: it is alive
    except TimeoutError:
        await fail(reader, writer, CloseCode.INTERNAL_ERROR, "keepalive ping timeout", limits)
        return b""


def _reply_frame(reply: Any) -> Frame | None:
    """The frame that carries a handler's reply: text for str, binary for bytes."""
    if reply is None:
        return None
    if isinstance(reply, str):
        return Frame.text(reply)
    if isinstance(reply, (bytes, bytearray, memoryview)):
        return Frame.binary(bytes(reply))
    raise TypeError(f"the handler returned {type(reply).__name__}; return str, bytes or None")


def _reason(text: str) -> str:
    """A close reason fits in 123 bytes of UTF-8 (section 5.5)."""
    return text.encode()[:123].decode(errors="ignore")


# -- Accepting sockets under the kit's limits -----------------------------------


class _Writer(asyncio.StreamWriter):
    """A StreamWriter that tells the server when the connection code first writes (its 101)."""

    _first_write: Callable[[], None] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._first_write is not None:
            first, self._first_write = self._first_write, None
            first()
        super().write(data)


def _count(delta: int) -> int:
    """Add to the process-wide count of guarded sockets (shared with wslab.limits' Guard)."""
    with _limits._lock:
        _limits._open_total += delta
        return _limits._open_total


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
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/"

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
            # A flood of idle sockets: the oldest one that has waited past the grace goes.
            oldest, since = next(iter(self._waiting.items()))
            if now - since > limits.handshake_grace:
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
            f"! server {self.name!r}: the connection code raised {key}\n"
            f"! the client's TCP connection was closed; the exception is kept in srv.errors\n{detail}",
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


def _listening_socket(host: str, port: int) -> socket.socket:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    # proto from getaddrinfo (IPPROTO_TCP), as asyncio.start_server does: asyncio turns Nagle's
    # algorithm off (TCP_NODELAY) only for sockets whose proto says TCP, and accepted sockets
    # inherit it. With proto 0, two small frames written back to back wait ~40 ms for an ACK.
    sock = socket.socket(family, kind, proto)
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


async def serve_scratch(
    handler: MessageHandler = echo,
    name: str = "scratch",
    *,
    max_size: int | None = DEFAULT_MAX_SIZE,
    limits: Limits | None = None,
    origins: Sequence[Any] = (),
    **kwargs: Any,
) -> ScratchServer:
    """Start the reference from-scratch server: :func:`connection` with ``handler``.

    ``handler(message)`` returns the reply (default: :func:`echo`);
    ``max_size`` is the largest message in bytes (1009 beyond it).
    ``limits`` (:class:`wslab.Limits`) sets the timeouts, caps and Origin
    policy every wslab listener shares: pages from this computer and from the
    server's own address may connect, and ``origins`` (plus
    ``WSLAB_ORIGINS``); others get 403. Other keyword arguments go to
    :func:`serve_streams`.

    >>> srv = await wslab.serve_scratch()
    >>> report = await wslab.check_server(srv)
    """
    limits = DEFAULT_LIMITS if limits is None else limits
    stop_timeout = kwargs.get("stop_timeout", DEFAULT_STOP_TIMEOUT)
    limits = limits.replace(close_timeout=max(0.05, min(limits.close_timeout, stop_timeout)))
    allowed = (*origins, *env_origins())

    async def scratch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await connection(reader, writer, handler=handler, max_size=max_size, limits=limits, origins=allowed)

    return await serve_streams(scratch, name, limits=limits, **kwargs)

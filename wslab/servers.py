"""WebSocket servers that run in the background of a notebook.

Design note
-----------
Two ways to run a server, one handle (:class:`Server`) for both:

* **task mode** (``await serve(handler)``): the websockets server lives on the
  loop that is already running, the Jupyter kernel's loop or the one
  ``asyncio.run()`` made. It serves between cells because ipykernel keeps
  running its loop while it waits for the next cell. Anything that blocks
  that loop (``time.sleep``, a synchronous client) blocks this server too.
* **thread mode** (``serve_in_thread(handler)``): a daemon thread owns a new
  event loop and the server on it. Cells may block freely. Every call into
  that loop goes through ``asyncio.run_coroutine_threadsafe``; the thread is
  the only one that touches its loop's objects.

What must never happen:

* binding a fixed port or all interfaces by default: thirty students on one
  hub host share one network namespace, so the default is ``127.0.0.1`` and
  port 0 (the OS picks a free port, ``srv.port`` tells which);
* a server a learner cannot stop: ``stop()`` / ``await aclose()`` close every
  client with 1001 (going away) and return within ``stop_timeout`` seconds
  even when a handler misbehaves (stragglers are aborted);
* a handler exception that vanishes: it is printed with its traceback, kept in
  ``srv.errors``, and the client gets close code 1011 (internal error);
* a listener without limits: every server gets :class:`wslab.limits.Guard`
  (``srv.guard``) with :class:`wslab.Limits` (handshake timeout, keepalive,
  message size, a bound on bytes buffered per client, pongs included, a cap
  on connections answered with HTTP 503, the Origin policy answered with
  HTTP 403); ``limits=`` changes them. See ``wslab/limits.py``.

A registry maps names to running servers: starting a server under a name that
is taken stops the old one first, so re-running a cell just works. At
interpreter exit every server still running is stopped.

Every background thing (this module's :class:`Server`, the lab server, the
wiretap, the from-scratch server, the raw TCP pusher) shares one lifecycle,
:class:`Background`: a subclass says how to close itself on its own loop
(``_close()``, bounded in time) and the base decides, in ``stop()`` and
``aclose()``, on which loop or thread that runs. :func:`start_in_thread` is
the thread-mode start sequence they share (release the name, start a
:class:`LoopThread`, run the start coroutine there, register the handle).
"""

from __future__ import annotations

import asyncio
import atexit
import errno
import inspect
import ipaddress
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Generator, TypeVar

from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as _ws_serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

from .display import Table
from .limits import Guard, Limits

__all__ = [
    "Server",
    "Background",
    "start_in_thread",
    "serve",
    "serve_in_thread",
    "status",
    "stop_all",
    "aclose_all",
    "PortInUseError",
    "NoRunningLoopError",
    "LoopThread",
    "register",
    "unregister",
    "release",
    "release_sync",
    "close_listener",
    "servers",
]

Handler = Callable[[ServerConnection], Awaitable[None]]

#: How long ``stop()`` waits for clients to finish the closing handshake
#: before it aborts them, in seconds.
DEFAULT_STOP_TIMEOUT = 3.0

_registry: dict[str, Server] = {}
_registry_lock = threading.Lock()


class LoopThread:
    """An event loop of its own, running in a daemon thread.

    ``run(coro)`` runs a coroutine there and returns its result (or raises
    its exception); ``stop()`` stops the loop, joins the thread and closes
    the loop. Thread-mode servers (and the wiretap, the lab server) use it.
    """

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"wslab-{name}", daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[Any], timeout: float = 10) -> Any:
        """Run ``coro`` on this thread's loop; wait at most ``timeout`` seconds."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def stop(self, timeout: float = 5) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout)
        if not self.thread.is_alive() and not self.loop.is_closed():
            self.loop.close()


class PortInUseError(OSError):
    """The requested port is taken by another program."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        super().__init__(
            errno.EADDRINUSE,
            f"port {port} on {host} is already in use by another program; "
            f"pass port=0 (the default) so the OS picks a free port, then read srv.port",
        )

    def __str__(self) -> str:
        return self.strerror


class NoRunningLoopError(RuntimeError):
    """``wslab.serve()`` was called where no event loop runs."""


class Background:
    """The lifecycle of a background thing: a server, a relay, a pusher.

    A subclass has ``name``, ``mode`` (``"task"`` or ``"thread"``),
    ``started`` (a ``time.time()``) and ``stop_timeout`` (seconds); in task
    mode it sets ``_loop`` to the loop it runs on, in thread mode
    :func:`start_in_thread` sets ``_thread``. It provides:

    * ``async def _close()``: close everything, on its own loop, within about
      ``stop_timeout`` seconds (then cut stragglers loose);
    * optionally ``_begin_close()``: what ``stop()`` does when called on the
      thing's own loop, where it cannot wait (default: run ``_close()`` as a
      task, so the closing finishes as soon as the cell returns);
    * optionally ``_release()``: what ``stop()`` does when the loop no longer
      runs (interpreter exit): release the port (default: nothing).

    The base provides ``running``, ``uptime``, ``stop()`` and ``aclose()``,
    and unregisters the handle when it stops.
    """

    name: str
    mode: str
    started: float
    stop_timeout: float = DEFAULT_STOP_TIMEOUT
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: LoopThread | None = None
    _stopped: bool = False
    _closing: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return not self._stopped

    @property
    def uptime(self) -> float:
        return time.time() - self.started

    # What a subclass provides

    async def _close(self) -> None:
        """Close on the thing's own loop; bounded by ``stop_timeout``."""
        raise NotImplementedError

    def _begin_close(self) -> None:
        """``stop()`` on the thing's own loop: start closing, finish later."""
        assert self._loop is not None
        self._closing = self._loop.create_task(self._close())  # keep a reference until done

    def _release(self) -> None:
        """``stop()`` when the loop does not run (interpreter exit)."""

    # Stopping

    async def aclose(self) -> None:
        """Stop it and wait until it is down; returns within about ``stop_timeout`` seconds.

        Calling it twice is fine.
        """
        if self._mark_stopped():
            return
        if self.mode == "thread":
            await asyncio.to_thread(self._stop_thread)
        else:
            await self._close()

    def stop(self) -> None:
        """Stop it (see :meth:`aclose`).

        In thread mode, or from another thread, this waits until it is down.
        In task mode, called from a cell on its own loop, it starts closing at
        once (stops listening) and finishes as soon as the cell returns;
        ``await aclose()`` waits for that. Calling it twice is fine.
        """
        if self._mark_stopped():
            return
        if self.mode == "thread":
            self._stop_thread()
            return
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if _running_loop() is loop:
            self._begin_close()
        elif loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self._close(), loop)
            future.result(self.stop_timeout + 1)
        else:
            self._release()  # the loop is not running (interpreter exit)

    def _mark_stopped(self) -> bool:
        """Mark as stopped and unregister; return True if it already was."""
        with _registry_lock:
            if self._stopped:
                return True
            self._stopped = True
        unregister(self)
        return False

    def _stop_thread(self) -> None:
        """Thread mode: run ``_close()`` on the thread's loop, then stop the thread."""
        runner = self._thread
        if runner is None:
            return
        try:
            if runner.loop.is_running():
                runner.run(self._close(), self.stop_timeout + 1)
        finally:
            runner.stop(self.stop_timeout + 1)


@dataclass(eq=False)
class Server(Background):
    """A handle on a WebSocket server running in the background.

    Attributes: ``name``, ``host``, ``port``, ``url`` (``ws://host:port/``),
    ``mode`` (``"task"`` or ``"thread"``), ``started`` (a ``time.time()``),
    ``errors`` (exceptions raised by the handler, newest last).
    """

    name: str
    host: str
    port: int
    mode: str
    started: float = field(default_factory=time.time)
    errors: list[BaseException] = field(default_factory=list)
    stop_timeout: float = DEFAULT_STOP_TIMEOUT
    #: The listener's :class:`wslab.limits.Guard`: its limits, Origin allow-list and counts.
    guard: Guard | None = field(default=None, repr=False)
    _ws_server: Any = field(default=None, repr=False)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}/"

    @property
    def connections(self) -> int:
        """The number of open WebSocket connections."""
        if self._ws_server is None or self._stopped:
            return 0
        return len(self._ws_server.connections)

    # Stopping (stop() and aclose() come from Background): clients get 1001

    async def _close(self) -> None:
        """Close the server on its own loop; bounded by ``stop_timeout``."""
        ws_server = self._ws_server
        ws_server.close(close_connections=True)  # clients get 1001 going away
        try:
            async with asyncio.timeout(self.stop_timeout):
                await ws_server.wait_closed()
        except TimeoutError:
            # A client that never answers the closing handshake, or a handler
            # that ignores the closed connection: cut them loose.
            for connection in list(ws_server.connections):
                connection.transport.abort()
            for task in list(ws_server.handler_tasks):
                task.cancel()

    def _begin_close(self) -> None:
        # Closes the listening socket at once; websockets closes the clients
        # in a task of its own.
        self._ws_server.close(close_connections=True)

    def _release(self) -> None:
        self._ws_server.server.close()

    # Display

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (
            f"<wslab.Server {self.name!r} {self.url} {self.mode} mode, {state}, "
            f"{self.connections} connection(s)>"
        )

    def _report(self, exc: BaseException) -> None:
        self.errors.append(exc)
        if isinstance(exc, NotImplementedError):  # an exercise's stub: nothing to debug yet
            print(
                f"! server {self.name!r}: the handler is not written yet (NotImplementedError: {exc}); "
                f"the client got close code 1011 (internal error)",
                file=sys.stderr,
                flush=True,
            )
            return
        # Skip wslab's own frame: the learner's handler is what matters.
        tb = exc.__traceback__.tb_next if exc.__traceback__ else None
        lines = traceback.format_exception(type(exc), exc, tb)
        print(
            f"! server {self.name!r}: the handler raised {type(exc).__name__}: {exc}\n"
            f"! the client got close code 1011 (internal error); "
            f"the exception is kept in srv.errors\n" + "".join(lines),
            file=sys.stderr,
            flush=True,
        )


# Starting


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _check_handler(handler: Any) -> None:
    if not callable(handler):
        raise TypeError(f"handler must be an async function, got {handler!r}")
    try:
        params = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):  # builtins, some callables
        return
    required = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    if len(required) >= 2:
        names = ", ".join(p.name for p in required)
        raise TypeError(
            f"handler({names}) takes {len(required)} arguments, but websockets >= 14 "
            f"(its new asyncio implementation, the default since 14.0) calls handler(connection) "
            f"with one. The legacy (websocket, path) signature is gone: write `async def handler(connection):` and read the "
            f"path from connection.request.path"
        )
    if not (
        inspect.iscoroutinefunction(handler)
        or inspect.iscoroutinefunction(getattr(handler, "__call__", None))
    ):
        raise TypeError(
            f"handler {getattr(handler, '__name__', handler)!r} must be an async function: "
            f"write `async def {getattr(handler, '__name__', 'handler')}(connection): ...`"
        )


def _check_port(port: Any) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(
            f"port must be a whole number from 0 to 65535, got {port!r}; "
            f"keep the default port=0 so the OS picks a free port, then read srv.port"
        )


def _check_host(host: str, allow_network: bool) -> None:
    if allow_network:
        return
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"refusing to listen on {host!r}: that lets other machines connect to a server "
            f"in your notebook. Keep the default host='127.0.0.1', or pass "
            f"allow_network=True if you really mean to accept connections from the network"
        )


def _wrap(server: Server, handler: Handler) -> Handler:
    async def run_handler(connection: ServerConnection) -> None:
        try:
            await handler(connection)
        except ConnectionClosed:
            pass  # the client went away: not an error in the handler
        except Exception as exc:
            server._report(exc)
            await connection.close(CloseCode.INTERNAL_ERROR, "internal error")

    run_handler.__name__ = getattr(handler, "__name__", "handler")
    return run_handler


_names = iter(range(1, 1_000_000))


def _default_name(handler: Any) -> str:
    return getattr(handler, "__name__", None) or f"server-{next(_names)}"


async def _start(
    handler: Handler,
    name: str,
    host: str,
    port: int,
    mode: str,
    stop_timeout: float,
    kwargs: dict[str, Any],
    limits: Limits | Guard | None = None,
) -> Server:
    server = Server(name=name, host=host, port=0, mode=mode, stop_timeout=stop_timeout)
    guard = limits if isinstance(limits, Guard) else Guard(limits, name=name)
    if "origins" in kwargs and kwargs["origins"] is not None:
        # websockets' list (None: no Origin header) becomes the guard's explicit policy.
        origins = kwargs.pop("origins")
        guard.limits = guard.limits.replace(local_origins=False, allow_no_origin=None in origins)
        guard.origins[:0] = [o for o in origins if o is not None]
    if "close_timeout" not in kwargs:
        guard.limits = guard.limits.replace(
            close_timeout=max(0.05, min(guard.limits.close_timeout, stop_timeout)))
    server.guard = guard
    process_request = kwargs.pop("process_request", None)
    ws_kwargs = guard.serve_kwargs(process_request=process_request, **kwargs)
    try:
        # A listener may bring its own listening socket (sock=, e.g. the TLS listener's gate).
        where = (None, None) if "sock" in ws_kwargs else (host, port)
        ws_server = await _ws_serve(_wrap(server, handler), *where, **ws_kwargs)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(host, port) from None
        raise
    server._ws_server = ws_server
    server._loop = asyncio.get_running_loop()
    server.port = ws_server.sockets[0].getsockname()[1]
    return server


# The registry: every background thing a learner started, by name. Other
# modules (the wiretap, the polling lab server) register their handles too; a
# handle has name, url, mode, connections, uptime, errors, running, stop()
# and aclose() (a Background subclass has the last four from the base).


def register(handle: Any) -> None:
    """Add ``handle`` so ``status()`` shows it and ``stop_all()`` stops it.

    Call :func:`release` (or :func:`release_sync`) for the name first.
    """
    with _registry_lock:
        _registry[handle.name] = handle


def unregister(handle: Any) -> None:
    """Forget ``handle`` (its ``stop()`` calls this)."""
    with _registry_lock:
        if _registry.get(handle.name) is handle:
            del _registry[handle.name]


def _holder(name: str) -> Any:
    with _registry_lock:
        return _registry.get(name)


async def release(name: str) -> None:
    """Stop whatever runs under ``name``, so a re-run cell can take the name."""
    previous = _holder(name)
    if previous is not None:
        await previous.aclose()


def release_sync(name: str) -> None:
    """Like :func:`release`, for code that is not async."""
    previous = _holder(name)
    if previous is not None:
        previous.stop()


async def close_listener(server: asyncio.AbstractServer | None, tasks: Any = (), *, timeout: float = 5) -> None:
    """Close an asyncio listener, cancel its connections' ``tasks``, and wait for it.

    The ``_close()`` of a :class:`Background` built on :func:`asyncio.start_server`:
    bounded by ``timeout`` seconds (stopping must never hang or fail).
    """
    if server is None:
        return
    server.close()
    for task in list(tasks):
        task.cancel()
    try:
        async with asyncio.timeout(timeout):
            await server.wait_closed()
    except TimeoutError:
        pass


H = TypeVar("H", bound=Background)


def start_in_thread(name: str, start: Callable[[], Awaitable[H]]) -> H:
    """Start a background thing in thread mode; return its registered handle.

    Stops what runs under ``name``, starts a :class:`LoopThread`, runs
    ``start()`` (a coroutine that starts listening and returns the handle)
    there, and registers the handle. If ``start()`` fails, the thread is
    stopped and the exception raised.
    """
    release_sync(name)
    runner = LoopThread(name)
    try:
        handle = runner.run(start())
    except BaseException:
        runner.stop()
        raise
    handle._thread = runner
    register(handle)
    return handle


class _PendingServer:
    """What ``wslab.serve()`` returns: something to ``await``.

    It exists to turn a forgotten ``await`` into a clear message.
    """

    def __init__(self, coro: Awaitable[Server]) -> None:
        self._coro = coro
        self._awaited = False

    def __await__(self) -> Generator[Any, None, Server]:
        self._awaited = True
        return self._coro.__await__()  # type: ignore[attr-defined]

    def __getattr__(self, attr: str) -> Any:
        raise AttributeError(
            f"this is not a server yet (no attribute {attr!r}): wslab.serve() must be "
            f"awaited. Write `srv = await wslab.serve(...)`"
        )

    def __repr__(self) -> str:
        return "<wslab.serve(...) not awaited yet: write `srv = await wslab.serve(...)`>"

    def __del__(self) -> None:
        if not self._awaited:
            self._coro.close()  # type: ignore[attr-defined]


def serve(
    handler: Handler,
    name: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    allow_network: bool = False,
    stop_timeout: float = DEFAULT_STOP_TIMEOUT,
    limits: Limits | Guard | None = None,
    **kwargs: Any,
) -> Awaitable[Server]:
    """Start a WebSocket server on the running event loop; await the result.

    ``srv = await wslab.serve(handler, name="echo")`` returns as soon as the
    server listens; it keeps serving between notebook cells. ``handler`` is
    ``async def handler(connection)`` (websockets' modern API). Other keyword
    arguments go to :func:`websockets.asyncio.server.serve`
    (``compression=None``, ``subprotocols=[...]``, ``max_size=...``, ...).

    Every server gets wslab's listener limits (:class:`wslab.Limits`: handshake
    timeout, keepalive, message size, a bound on bytes buffered per client,
    a cap on connections answered with HTTP 503, the Origin policy answered
    with HTTP 403); pass ``limits=wslab.Limits(...)`` to change them.
    ``origins=[...]`` replaces the Origin policy by websockets' exact list
    (``origins=None`` lets every web page in). ``srv.guard`` counts what was
    refused or closed.

    A server already running under ``name`` is stopped first.

    Raises :class:`NoRunningLoopError` outside a running loop,
    :class:`PortInUseError` when ``port`` is taken, :class:`ValueError` for a
    non-loopback ``host`` without ``allow_network=True``, :class:`TypeError`
    for a handler with the legacy ``(websocket, path)`` signature.
    """
    _check_handler(handler)
    _check_host(host, allow_network)
    _check_port(port)
    if _running_loop() is None:
        raise NoRunningLoopError(
            "wslab.serve() needs a running event loop. In a notebook write "
            "`srv = await wslab.serve(handler)`; in a script call it inside "
            "`async def main()` run by `asyncio.run(main())`; or use "
            "wslab.serve_in_thread(handler), which brings its own loop"
        )
    name = name or _default_name(handler)

    async def start() -> Server:
        await release(name)
        server = await _start(handler, name, host, port, "task", stop_timeout, kwargs, limits)
        register(server)
        return server

    return _PendingServer(start())


def serve_in_thread(
    handler: Handler,
    name: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    allow_network: bool = False,
    stop_timeout: float = DEFAULT_STOP_TIMEOUT,
    limits: Limits | Guard | None = None,
    **kwargs: Any,
) -> Server:
    """Start a WebSocket server on its own event loop in a daemon thread.

    Use it when cells run blocking code (``time.sleep``, a synchronous
    client): the server keeps answering while the notebook's loop is blocked.
    Same arguments, errors and handle as :func:`serve`; no ``await`` needed.
    """
    _check_handler(handler)
    _check_host(host, allow_network)
    _check_port(port)
    name = name or _default_name(handler)
    return start_in_thread(name, lambda: _start(handler, name, host, port, "thread", stop_timeout, kwargs, limits))


# Looking after all servers


def servers() -> list[Any]:
    with _registry_lock:
        return list(_registry.values())


def status() -> Table:
    """What runs: name, url, mode, connections, uptime, handler errors.

    Shows as a table in Jupyter and as text elsewhere.
    """
    rows = [
        [s.name, s.url, s.mode, s.connections, f"{s.uptime:.0f} s", len(s.errors)]
        for s in servers()
    ]
    return Table(
        ["name", "url", "mode", "connections", "uptime", "errors"],
        rows,
        empty="no wslab servers running",
    )


def stop_all() -> None:
    """Stop every server wslab started (see :meth:`Server.stop`)."""
    for server in servers():
        server.stop()


async def aclose_all() -> None:
    """Stop every server wslab started and wait until all are down."""
    await asyncio.gather(*(server.aclose() for server in servers()))


@atexit.register
def _stop_at_exit() -> None:
    for server in servers():
        try:
            server.stop()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass

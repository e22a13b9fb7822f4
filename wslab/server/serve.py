"""WebSocket servers that run in the background of a notebook: ``serve``, ``serve_in_thread``.

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
* a listener without limits: every server gets :class:`wslab.server.limits.Guard`
  (``srv.guard``) with :class:`wslab.Limits` (handshake timeout, keepalive,
  message size, a bound on bytes buffered per client, pongs included, a cap
  on connections answered with HTTP 503, the Origin policy answered with
  HTTP 403); ``limits=`` changes them. See ``wslab/server/limits.py``.

The lifecycle (stop, the registry, ``status()``) is :mod:`wslab.server.background`'s.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Generator

from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as _ws_serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

from .background import (
    DEFAULT_STOP_TIMEOUT,
    Background,
    PortInUseError,
    _check_host,
    _check_port,
    _running_loop,
    register,
    release,
    start_in_thread,
)
from ..course.i18n import N_
from ..course.i18n import gettext as _
from .limits import Guard, Limits

__all__ = ["Server", "serve", "serve_in_thread", "NoRunningLoopError"]

Handler = Callable[[ServerConnection], Awaitable[None]]


class NoRunningLoopError(RuntimeError):
    """``wslab.serve()`` was called where no event loop runs."""


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
    #: The listener's :class:`wslab.server.limits.Guard`: its limits, Origin allow-list and counts.
    guard: Guard | None = field(default=None, repr=False)
    _ws_server: Any = field(default=None, repr=False)

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
                _("! server {name}: the handler is not written yet (NotImplementedError: {error}); "
                  "the client got close code 1011 (internal error)").format(name=repr(self.name), error=exc),
                file=sys.stderr,
                flush=True,
            )
            return
        # Skip wslab's own frame: the learner's handler is what matters.
        tb = exc.__traceback__.tb_next if exc.__traceback__ else None
        lines = traceback.format_exception(type(exc), exc, tb)
        print(
            _("! server {name}: the handler raised {type}: {error}\n"
              "! the client got close code 1011 (internal error); "
              "the exception is kept in srv.errors").format(name=repr(self.name), type=type(exc).__name__,
                                                             error=exc) + "\n" + "".join(lines),
            file=sys.stderr,
            flush=True,
        )


# Starting


def _check_handler(handler: Any) -> None:
    if not callable(handler):
        raise TypeError(_("handler must be an async function, got {handler}").format(handler=repr(handler)))
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
            _("handler({names}) takes {count} arguments, but websockets >= 14 "
              "(its new asyncio implementation, the default since 14.0) calls handler(connection) "
              "with one. The legacy (websocket, path) signature is gone: write `async def handler(connection):` "
              "and read the path from connection.request.path").format(names=names, count=len(required))
        )
    if not (
        inspect.iscoroutinefunction(handler)
        or inspect.iscoroutinefunction(getattr(handler, "__call__", None))
    ):
        raise TypeError(
            _("handler {handler} must be an async function: write `async def {name}(connection): ...`").format(
                handler=repr(getattr(handler, "__name__", handler)), name=getattr(handler, "__name__", "handler"))
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


class _PendingServer:
    """What ``wslab.serve()`` returns: something to ``await``.

    It exists to turn a forgotten ``await`` into a clear message. A subclass
    for another call (``wslab.wiretap()``) names it in the four fields below.
    """

    #: What the await gives, the call, the variable a lesson writes, and another way (or "").
    _what = N_("server")
    _call = "wslab.serve"
    _variable = "srv"
    _instead = ""

    def __init__(self, coro: Awaitable[Server]) -> None:
        self._coro = coro
        self._awaited = False

    def __await__(self) -> Generator[Any, None, Server]:
        self._awaited = True
        return self._coro.__await__()  # type: ignore[attr-defined]

    def __getattr__(self, attr: str) -> Any:
        raise AttributeError(
            _("this is not a {what} yet (no attribute {attr}): {call}() must be "
              "awaited. Write `{variable} = await {call}(...)`{instead}").format(
                what=_(self._what), attr=repr(attr), call=self._call, variable=self._variable,
                instead=_(self._instead) if self._instead else "")
        )

    def __repr__(self) -> str:
        return f"<{self._call}(...) not awaited yet: write `{self._variable} = await {self._call}(...)`>"

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
            _("wslab.serve() needs a running event loop. In a notebook write "
              "`srv = await wslab.serve(handler)`; in a script call it inside "
              "`async def main()` run by `asyncio.run(main())`; or use "
              "`wslab.serve_in_thread(handler)`, which brings its own loop")
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


"""The lifecycle every background thing shares: a loop thread, a registry by name, stop.

Design note
-----------
Every background thing (the WebSocket servers of :mod:`wslab.server.serve`,
the lab server, the wiretap, the from-scratch server, the raw TCP pusher)
shares one lifecycle, :class:`Background`: a subclass says how to close
itself on its own loop (``_close()``, bounded in time) and the base decides,
in ``stop()`` and ``aclose()``, on which loop or thread that runs.
:func:`start_in_thread` is the thread-mode start sequence they share (release
the name, start a :class:`LoopThread`, run the start coroutine there,
register the handle).

A registry maps names to running things: starting one under a name that is
taken stops the old one first, so re-running a cell just works.
:func:`status` shows them, :func:`stop_all` stops them, and at interpreter
exit every one still running is stopped. A listener never binds a fixed port
or all interfaces by default (:func:`_check_port`, :func:`_check_host`):
thirty students on one hub host share one network namespace.
"""

from __future__ import annotations

import asyncio
import atexit
import errno
import ipaddress
import threading
import time
from typing import Any, Awaitable, Callable, TypeVar


from ..course.display import Table
from ..course.i18n import gettext as _

__all__ = [
    "Background",
    "LoopThread",
    "PortInUseError",
    "start_in_thread",
    "register",
    "unregister",
    "release",
    "release_sync",
    "close_listener",
    "servers",
    "status",
    "stop_all",
    "aclose_all",
]

#: How long ``stop()`` waits for clients to finish the closing handshake
#: before it aborts them, in seconds.
DEFAULT_STOP_TIMEOUT = 3.0

_registry: dict[str, Any] = {}
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
            _("port {port} on {host} is already in use by another program; "
              "pass port=0 (the default) so the OS picks a free port, then read srv.port").format(port=port, host=host),
        )

    def __str__(self) -> str:
        return self.strerror


class Background:
    """The lifecycle of a background thing: a server, a relay, a pusher.

    A subclass has ``name``, ``mode`` (``"task"`` or ``"thread"``),
    ``started`` (a ``time.time()``) and ``stop_timeout`` (seconds); in task
    mode it sets ``_loop`` to the loop it runs on, in thread mode
    :func:`start_in_thread` sets ``_thread``. (A thing with no loop of its
    own, a Redis server process, has ``mode = "process"`` and its own
    ``stop()``, which calls ``_mark_stopped()`` first.) It provides:

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

    #: Where a client connects, for a thing that listens on ``host`` and ``port`` (``url``).
    scheme = "ws"

    @property
    def url(self) -> str:
        """``ws://host:port/`` (an IPv6 host in brackets); a relay or an HTTP server says its own."""
        host = f"[{self.host}]" if ":" in self.host else self.host  # type: ignore[attr-defined]
        return f"{self.scheme}://{host}:{self.port}/"  # type: ignore[attr-defined]


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


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _check_port(port: Any) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(
            _("port must be a whole number from 0 to 65535, got {port}; "
              "keep the default port=0 so the OS picks a free port, then read srv.port").format(port=repr(port))
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
            _("refusing to listen on {host}: that lets other machines connect to a server "
              "in your notebook. Keep the default host='127.0.0.1', or pass "
              "allow_network=True if you really mean to accept connections from the network").format(host=repr(host))
        )


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
        [_("name"), "url", _("mode"), _("connections"), _("uptime"), _("errors")],
        rows,
        empty=_("no wslab servers running"),
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

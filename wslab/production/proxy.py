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

Limits (the same policy as every wslab listener, :mod:`wslab.server.limits`):

* **Connections.** A proxied connection holds two descriptors (the client's
  and the target's), both counted in the process-wide budget
  (:func:`wslab.server.limits.fd_budget`, shared with every guarded listener). A
  client that arrives when the proxy already relays ``limits.max_connections``
  connections, or when two more sockets would pass the budget, gets
  ``503 Service Unavailable`` with ``Retry-After: 5`` if it sends its request
  head within ``limits.handshake_grace`` seconds, and is cut otherwise (at once
  when ``limits.max_handshakes`` refused sockets already wait): the proxy
  never connects to the target for it, so descriptors run out neither here
  nor at the target.
* **Idle heads.** At most ``limits.max_handshakes`` clients may be still
  sending their request head; a newcomer beyond that cuts the oldest one if it
  has waited longer than ``limits.handshake_grace``, else is itself cut.
  A head must arrive within 5 s and hold at most 64 KiB.
* **Memory.** ``access_log`` keeps the last ``LOG_LINES`` lines, each cut to
  ``LOG_LINE_MAX`` characters (with "..." and the original length);
  ``errors`` and ``idle_closed`` keep their last ``LOG_LINES`` entries;
  ``stats`` counts everything that was refused, cut or dropped.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any, Awaitable

from ..course.i18n import gettext as _
from ..server import limits as _limits
from ..server import background as servers
from ..server.limits import DEFAULT_LIMITS, Limits
from ..server.background import Background

__all__ = ["Proxy", "reverse_proxy", "HOP_BY_HOP", "LOG_LINES", "LOG_LINE_MAX"]

#: Hop-by-hop headers (RFC 9110 section 7.6.1 and its list of examples).
HOP_BY_HOP = ("connection", "upgrade", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding")
MAX_HEAD = 64 * 1024
HEAD_TIMEOUT = 5.0
#: Entries kept in ``access_log``, ``errors`` and ``idle_closed`` (the oldest go first).
LOG_LINES = 1000
#: Characters kept of one access-log line (nginx's own log buffer is a few KiB).
LOG_LINE_MAX = 2048


def _bounded_line(line: str) -> str:
    if len(line) <= LOG_LINE_MAX:
        return line
    return f"{line[:LOG_LINE_MAX - 40]}... ({len(line)} characters)"


class _Refused(Exception):
    """This client is over a cap: it gets a 503 (or is cut)."""


class Proxy(Background):
    """A running reverse proxy in front of ``target``; ``url`` is where clients connect."""

    mode = "task"

    def __init__(self, name: str, host: str, port: int, *, forward_upgrade: bool,
                 idle_timeout: float | None, limits: Limits = DEFAULT_LIMITS) -> None:
        self.name = name
        self.target_host, self.target_port = host, port
        self.forward_upgrade = forward_upgrade
        self.idle_timeout = idle_timeout
        self.limits = limits
        self.port = 0
        self.started = time.time()
        #: The last LOG_LINES errors (failed connections to the target).
        self.errors: collections.deque[BaseException] = collections.deque(maxlen=LOG_LINES)
        #: The last LOG_LINES request lines, nginx-style, each at most LOG_LINE_MAX characters.
        self.access_log: collections.deque[str] = collections.deque(maxlen=LOG_LINES)
        #: Connections closed for being idle (one line each, the last LOG_LINES).
        self.idle_closed: collections.deque[str] = collections.deque(maxlen=LOG_LINES)
        #: Counts: refused (busy), cut (idle heads), dropped log lines.
        self.stats: collections.Counter[str] = collections.Counter()
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._relaying = 0  # clients admitted (reading their head or relayed)
        self._pending: dict[asyncio.StreamWriter, float] = {}  # still sending their head, oldest first
        self._refusing = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def connections(self) -> int:
        """Clients admitted: sending their request head or relayed."""
        return self._relaying

    def _log(self, entries: collections.deque[Any], entry: Any) -> None:
        if len(entries) == entries.maxlen:
            self.stats["dropped: oldest log entry"] += 1
        entries.append(entry)

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
        _limits.count_open(+1)  # the client's socket, in the process-wide budget
        counted = 1
        swriter = None
        admitted = False
        try:
            reason = self._over_cap()
            if reason is not None:
                await self._refuse(creader, cwriter, reason)
                return
            if not self._may_wait(cwriter):
                return
            self._relaying, admitted = self._relaying + 1, True
            try:
                async with asyncio.timeout(HEAD_TIMEOUT):
                    head = await creader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
                return
            finally:
                self._pending.pop(cwriter, None)
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            self._log(self.access_log, _bounded_line(f'127.0.0.1 "{request_line}"'))
            _limits.count_open(+1)  # the target's socket
            counted += 1
            try:
                sreader, swriter = await asyncio.open_connection(self.target_host, self.target_port)
            except OSError as exc:
                # Kept without its traceback: that would hold this frame, the request head included.
                self._log(self.errors, exc.with_traceback(None))
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
            if admitted:
                self._relaying -= 1
            _limits.count_open(-counted)
            for writer in (cwriter, swriter):
                if writer is not None:
                    writer.close()
                    self._writers.discard(writer)

    # Limits (see the design note)

    def _over_cap(self) -> str | None:
        """Why a new client must be refused, or None."""
        if self._relaying >= self.limits.max_connections:
            return f"proxy busy: {self.limits.max_connections} connections relayed"
        if _limits.open_connections() + 1 > _limits.fd_budget():  # +1: the target's socket
            return "proxy busy: the process is near its open-file limit"
        return None

    def _may_wait(self, writer: asyncio.StreamWriter) -> bool:
        """Admit one more client still sending its head, cutting the oldest idle one if needed."""
        now = time.monotonic()
        if len(self._pending) >= self.limits.max_handshakes:
            oldest, since = next(iter(self._pending.items()))
            if now - since <= self.limits.handshake_grace:
                self.stats["refused: heads"] += 1
                writer.transport.abort()
                return False
            del self._pending[oldest]
            self.stats["cut: idle head"] += 1
            oldest.transport.abort()
        self._pending[writer] = now
        return True

    async def _refuse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, reason: str) -> None:
        """503 with Retry-After for a client that sends its head within the grace; cut a silent one."""
        self.stats["refused: busy"] += 1
        if self._refusing >= self.limits.max_handshakes:
            writer.transport.abort()  # enough are waiting for their 503 already
            return
        self._refusing += 1
        try:
            async with asyncio.timeout(self.limits.handshake_grace):
                await reader.readuntil(b"\r\n\r\n")
                body = f"{reason}: try again in a few seconds\n".encode()
                writer.write(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Type: text/plain\r\n"
                             + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError):
            writer.transport.abort()
        finally:
            self._refusing -= 1

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
                target = head.split(b" ", 2)[1].decode("latin-1")
                self._log(self.idle_closed, _bounded_line(f"idle {self.idle_timeout:g} s: {target}"))
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
                  idle_timeout: float | None = None, limits: Limits | None = None) -> Awaitable[Proxy]:
    """Start a reverse proxy in front of ``target`` (a wslab server or ``(host, port)``); ``await`` it.

    ``limits`` (:class:`wslab.Limits`, the kit's defaults): ``max_connections``
    relayed at once, ``max_handshakes`` clients still sending their head,
    ``handshake_grace``; see the module's design note.
    """
    limits = DEFAULT_LIMITS if limits is None else limits
    if not isinstance(limits, Limits):
        raise TypeError(_("limits must be a wslab.Limits, got {value}").format(value=repr(limits)))
    if hasattr(target, "port") and not isinstance(target, tuple):
        host, port = getattr(target, "host", "127.0.0.1"), target.port
    else:
        host, port = target
    if idle_timeout is not None and idle_timeout <= 0:
        raise ValueError(_("idle_timeout must be a positive number of seconds or None, got {value}").format(
            value=repr(idle_timeout)))
    proxy = Proxy(name, host, int(port), forward_upgrade=forward_upgrade, idle_timeout=idle_timeout, limits=limits)

    async def start() -> Proxy:
        await servers.release(name)
        proxy._loop = asyncio.get_running_loop()
        proxy._server = await asyncio.start_server(proxy._handle, "127.0.0.1", 0, limit=MAX_HEAD)
        proxy.port = proxy._server.sockets[0].getsockname()[1]
        servers.register(proxy)
        return proxy

    return start()

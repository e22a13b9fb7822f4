"""A wiretap: a TCP relay that records every byte between a client and a server.

    tap = await wslab.wiretap(srv)            # or srv.url, "http://127.0.0.1:8000/x", (host, port)
    async with connect(tap.url) as ws: ...    # same scheme and path, the tap's own port
    tap.http()          # the HTTP messages (the upgrade handshake, polling requests)
    tap.frames()        # the WebSocket frames after the 101
    tap.hexdump()       # every chunk, hex and ASCII
    tap.bytes_up, tap.bytes_down              # what crossed the wire, per direction

Design note
-----------
The tap listens on ``127.0.0.1`` port 0. For each client it accepts, it opens
one connection to the target and runs two pumps, one per direction: read a
chunk, record it, write it unchanged to the other side, ``drain()``. Nothing
is parsed on the way: the relay is byte-identical, and every view (hex, HTTP,
frames) is computed afterwards from the recorded chunks.

* **task mode** (``await wiretap(target)``): the relay lives on the running
  loop (the kernel's). Like a task-mode server, it stalls while a cell blocks
  that loop: a synchronous client in a cell must go through a thread-mode tap.
* **thread mode** (``wiretap_in_thread(target)``): a :class:`~wslab.servers.LoopThread`
  owns the relay; only that thread touches its sockets. Other threads read
  the counters and the capture (plain ints and a list that is only appended
  to), never the sockets.

Closing propagates: an EOF from one side becomes ``write_eof()`` on the other
(half-close); a reset or an error on one side aborts the other. When the
target refuses the connection, the client's connection is closed at once.

What must never happen: a tap that cannot be stopped (``stop()`` closes the
listener and aborts every relayed connection, bounded in time), a tap that
holds unbounded memory (``max_capture`` bytes are kept, then capture stops
with a note, while the byte counters stay exact), a tap listening beyond
loopback.

Direction vocabulary, as everywhere in wslab: ``>`` client to server (up),
``<`` server to client (down), ``=`` state change, ``!`` error.
"""

from __future__ import annotations

import asyncio
import base64
import html
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Iterable
from urllib.parse import urlsplit

from . import servers
from .display import Table
from .link import Link, Pipe, Shaper, resolve as _resolve_link
from .servers import Background

__all__ = ["Chunk", "Connection", "Capture", "Tap", "View", "wiretap", "wiretap_in_thread", "load"]

#: Bytes of payload kept in memory before capture stops (the counters go on).
DEFAULT_MAX_CAPTURE = 64 * 1024 * 1024
#: Bytes read from a socket at once.
READ_SIZE = 65536
#: Seconds to wait for the target to accept a connection.
CONNECT_TIMEOUT = 5.0
#: Seconds ``stop()`` waits for the relay to wind down.
STOP_TIMEOUT = 3.0

UP, DOWN, STATE, ERROR = ">", "<", "=", "!"


@dataclass(frozen=True)
class Chunk:
    """One recorded event on one relayed connection.

    ``direction`` is ``>`` (client to server), ``<`` (server to client),
    ``=`` (a state change: opened, EOF, closed) or ``!`` (an error);
    ``t`` is seconds since the tap started; ``data`` the bytes as they
    crossed (empty for ``=`` and ``!``), ``note`` the text for those.
    """

    conn: int
    direction: str
    t: float
    data: bytes = b""
    note: str = ""

    def __str__(self) -> str:
        what = f"{len(self.data)} bytes" if self.direction in (UP, DOWN) else self.note
        return f"{self.t * 1000:10.3f} ms  #{self.conn} {self.direction} {what}"


@dataclass
class Connection:
    """What the tap knows about one relayed connection."""

    id: int
    client: str
    opened: float
    closed: float | None = None
    bytes_up: int = 0
    bytes_down: int = 0
    error: str = ""

    @property
    def state(self) -> str:
        if self.error:
            return f"error: {self.error}"
        return "open" if self.closed is None else "closed"


class View:
    """Text in a monospace block: ``<pre>`` in Jupyter, plain text elsewhere."""

    def __init__(self, title: str, text: str) -> None:
        self.title = title
        self.text = text

    def __str__(self) -> str:
        return f"{self.title}\n{self.text}" if self.title else self.text

    __repr__ = __str__

    def _repr_html_(self) -> str:
        title = f"<b>{html.escape(self.title)}</b>" if self.title else ""
        return (
            f"{title}<pre style=\"font-family: monospace; white-space: pre; "
            f"line-height: 1.25\">{html.escape(self.text)}</pre>"
        )


# The capture and its views


class Capture:
    """Recorded chunks and the views on them (a :class:`Tap` is one; so is a loaded file)."""

    def __init__(self, *, max_capture: int = DEFAULT_MAX_CAPTURE) -> None:
        self.max_capture = max_capture
        self.log: list[Chunk] = []
        self.conns: dict[int, Connection] = {}
        self.bytes_up = 0
        self.bytes_down = 0
        self.captured = 0  # payload bytes kept in self.log
        self.dropped = 0  # payload bytes counted but not kept (capture full)
        self.target = ""

    # Recording (called on the relay's loop only)

    def _record(self, conn: Connection, direction: str, t: float, data: bytes = b"", note: str = "") -> None:
        if direction == UP:
            self.bytes_up += len(data)
            conn.bytes_up += len(data)
        elif direction == DOWN:
            self.bytes_down += len(data)
            conn.bytes_down += len(data)
        if data and self.captured + len(data) > self.max_capture:
            self.dropped += len(data)
            return
        self.captured += len(data)
        self.log.append(Chunk(conn.id, direction, t, bytes(data), note))

    @property
    def chunks(self) -> list[Chunk]:
        """The data chunks (``>`` and ``<``), in the order they were read."""
        return [c for c in self.log if c.direction in (UP, DOWN)]

    @property
    def truncated(self) -> bool:
        """True when the capture filled up and later bytes were counted but not kept."""
        return self.dropped > 0

    def clear(self) -> None:
        """Forget every recorded chunk and reset all byte counters to zero.

        Connections still open stay listed (with zeroed counters); closed ones go.
        """
        self.log = []
        self.captured = self.dropped = 0
        self.bytes_up = self.bytes_down = 0
        for cid, conn in list(self.conns.items()):
            if conn.closed is not None:
                del self.conns[cid]
            else:
                conn.bytes_up = conn.bytes_down = 0

    def streams(self, conn: int) -> tuple[bytes, bytes]:
        """The bytes of connection ``conn`` as two streams: (client to server, server to client)."""
        up = b"".join(c.data for c in self.log if c.conn == conn and c.direction == UP)
        down = b"".join(c.data for c in self.log if c.conn == conn and c.direction == DOWN)
        return up, down

    def after_upgrade(self, conn: int) -> tuple[bytes, bytes] | None:
        """The WebSocket bytes of ``conn`` (after the request and the 101), or None if it never upgraded."""
        up, down = self.streams(conn)
        req_end, resp_end = up.find(b"\r\n\r\n"), down.find(b"\r\n\r\n")
        if req_end < 0 or resp_end < 0 or not down.startswith(b"HTTP/1.1 101"):
            return None
        return up[req_end + 4 :], down[resp_end + 4 :]

    def _conn_ids(self, conn: int | None) -> list[int]:
        ids = sorted({c.conn for c in self.log} | set(self.conns))
        if conn is None:
            return ids
        if conn not in ids:
            raise KeyError(f"no connection #{conn} in this capture; connections: {ids}")
        return [conn]

    def _note(self) -> str:
        if not self.truncated:
            return ""
        return (
            f"! capture full: kept the first {self.captured:,} bytes (max_capture={self.max_capture:,}); "
            f"{self.dropped:,} later bytes were relayed and counted but not kept. "
            f"Call tap.clear() before the part you want to see, or pass a larger max_capture\n"
        )

    # Views

    def summary(self) -> Table:
        """One row per connection: client, state, bytes each way."""
        rows = [
            [f"#{c.id}", c.client, c.state, f"{c.bytes_up:,}", f"{c.bytes_down:,}"]
            for c in sorted(self.conns.values(), key=lambda c: c.id)
        ]
        rows.append(["all", "", "", f"{self.bytes_up:,}", f"{self.bytes_down:,}"])
        return Table(
            ["conn", "client", "state", "bytes up (>)", "bytes down (<)"],
            rows,
            title=f"wiretap to {self.target}" if self.target else "",
            align_right={3, 4},
        )

    def hexdump(self, conn: int | None = None, *, limit: int | None = 512) -> View:
        """Every event, data chunks as hex + ASCII (at most ``limit`` bytes per chunk; None for all)."""
        ids = set(self._conn_ids(conn))
        lines: list[str] = []
        for chunk in self.log:
            if chunk.conn not in ids:
                continue
            lines.append(str(chunk))
            if chunk.direction in (UP, DOWN):
                lines.extend(hexdump_lines(chunk.data, limit=limit))
        return View("hex dump", self._note() + ("\n".join(lines) or "(nothing captured yet)"))

    def http(self, conn: int | None = None, *, body_limit: int = 200) -> View:
        """The HTTP messages: request and response heads in full, bodies summarized.

        After a ``101 Switching Protocols`` the rest of the connection is
        WebSocket frames: see :meth:`frames`.
        """
        out: list[str] = []
        for cid in self._conn_ids(conn):
            up, down = self.streams(cid)
            out.append(f"= connection #{cid}")
            requests = list(_http_messages(up, body_limit, is_response=False))
            responses = list(_http_messages(down, body_limit, is_response=True))
            for i in range(max(len(requests), len(responses))):
                for sign, messages in ((UP, requests), (DOWN, responses)):
                    if i < len(messages):
                        out.extend(f"{sign} {line}" for line in messages[i].splitlines())
            out.append("")
        return View("HTTP messages", self._note() + ("\n".join(out).rstrip() or "(nothing captured yet)"))

    # Frame decoding lives in wslab/frames.py (issue 4); the frames helper
    # owns this method and the frames section of show(). Keep it the one place
    # that knows about frames: it imports wslab.frames lazily.
    def frames(self, conn: int | None = None) -> View:
        """The WebSocket frames after the upgrade, in the order their bytes arrived.

        ``>`` client to server (masked), ``<`` server to client (unmasked), each
        frame decoded by :mod:`wslab.frames`; with permessage-deflate negotiated,
        RSV1 shows as "compressed" and each message follows inflated (``=``).
        """
        from . import frames as _frames

        out: list[str] = []
        for cid in self._conn_ids(conn):
            streams = self.after_upgrade(cid)
            if streams is None:
                continue
            up, down = self.streams(cid)
            skip = {UP: len(up) - len(streams[0]), DOWN: len(down) - len(streams[1])}
            head = down[: skip[DOWN]].decode("latin-1").split("\r\n")
            extensions = ", ".join(
                line.split(":", 1)[1].strip()
                for line in head[1:]
                if line.lower().startswith("sec-websocket-extensions:")
            )
            chunks = []
            for chunk in self.log:
                if chunk.conn != cid or chunk.direction not in (UP, DOWN):
                    continue
                data = chunk.data
                cut = min(skip[chunk.direction], len(data))
                skip[chunk.direction] -= cut
                if data[cut:]:
                    chunks.append((chunk.direction, chunk.t, data[cut:]))
            out.append(f"= connection #{cid}" + (f", extensions: {extensions}" if extensions else ""))
            out.extend(_frames.transcript(chunks, extensions=extensions))
        return View("WebSocket frames", self._note() + ("\n".join(out) or "(no upgraded connection)"))

    def show(self, conn: int | None = None) -> View:
        """Everything at once: the summary, the HTTP messages and the frames."""
        parts = [str(self.summary()), "", str(self.http(conn))]
        try:
            parts += ["", str(self.frames(conn))]
        except NotImplementedError as exc:
            parts += ["", f"WebSocket frames\n({exc})"]
        return View("", "\n".join(parts))

    # Saving and loading

    def save(self, path: str | Path) -> Path:
        """Write the capture to ``path`` as JSON (data in base64); :func:`load` reads it back."""
        path = Path(path)
        doc = {
            "wslab_capture": 1,
            "target": self.target,
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "dropped": self.dropped,
            "max_capture": self.max_capture,
            "connections": [
                {k: getattr(c, k) for k in ("id", "client", "opened", "closed", "bytes_up", "bytes_down", "error")}
                for c in self.conns.values()
            ],
            "log": [
                {"conn": c.conn, "dir": c.direction, "t": c.t, "data": base64.b64encode(c.data).decode(), "note": c.note}
                for c in self.log
            ],
        }
        path.write_text(json.dumps(doc, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Capture:
        """Read a capture written by :meth:`save`."""
        doc = json.loads(Path(path).read_text())
        if doc.get("wslab_capture") != 1:
            raise ValueError(f"{path} is not a wslab capture (no 'wslab_capture': 1 in it)")
        capture = Capture(max_capture=doc.get("max_capture", DEFAULT_MAX_CAPTURE))
        capture.target = doc["target"]
        capture.bytes_up, capture.bytes_down = doc["bytes_up"], doc["bytes_down"]
        capture.dropped = doc["dropped"]
        for c in doc["connections"]:
            capture.conns[c["id"]] = Connection(**c)
        for c in doc["log"]:
            data = base64.b64decode(c["data"])
            capture.log.append(Chunk(c["conn"], c["dir"], c["t"], data, c["note"]))
            capture.captured += len(data)
        return capture

    def __repr__(self) -> str:
        return (
            f"<wslab.Capture of {self.target or '?'}: {len(self.conns)} connection(s), "
            f"{self.bytes_up:,} bytes up, {self.bytes_down:,} bytes down>"
        )

    def _repr_html_(self) -> str:
        return self.show()._repr_html_()


def load(path: str | Path) -> Capture:
    """Read a capture written by ``tap.save(path)``."""
    return Capture.load(path)


def hexdump_lines(data: bytes, *, limit: int | None = None, width: int = 16) -> list[str]:
    """``0000  47 45 54 20 ...  GET ...`` lines, like ``hexdump -C``."""
    shown = data if limit is None else data[:limit]
    lines = []
    for offset in range(0, len(shown), width):
        row = shown[offset : offset + width]
        hexes = " ".join(f"{b:02x}" for b in row)
        if len(row) > 8:
            hexes = hexes[:23] + " " + hexes[23:]
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in row)
        lines.append(f"    {offset:04x}  {hexes:<49} {text}")
    if len(shown) < len(data):
        lines.append(f"    ... {len(data) - len(shown):,} more bytes (hexdump(limit=None) shows all)")
    return lines


def _summarize_body(body: bytes, limit: int) -> str:
    if not body:
        return ""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return f"[{len(body):,} bytes of binary body]"
    if len(text) > limit:
        text = text[:limit] + f"... [{len(body):,} bytes in all]"
    return text


def _http_messages(data: bytes, body_limit: int, *, is_response: bool) -> Iterable[str]:
    """Split one direction of a connection into HTTP messages, shown as text."""
    pos = 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            yield f"[{len(data) - pos:,} bytes: not a complete HTTP head]"
            return
        head = data[pos:end].decode("latin-1")
        pos = end + 4
        headers = {}
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        first = head.split("\r\n", 1)[0]
        upgrade = not is_response and headers.get("upgrade", "").lower() == "websocket"
        if upgrade or (is_response and first.split(" ")[1:2] == ["101"]):
            rest = len(data) - pos
            yield head + (f"\n\n[then {rest:,} bytes of WebSocket frames: tap.frames() decodes them]" if rest else "")
            return
        if headers.get("content-length", "").isdigit():
            length = int(headers["content-length"])
            body, pos = data[pos : pos + length], pos + length
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body, pos = _dechunk(data, pos)
        elif is_response and not first.split(" ")[1:2] in (["204"], ["304"]):
            body, pos = data[pos:], len(data)  # read until the server closed
        else:
            body = b""
        summary = _summarize_body(body, body_limit)
        yield head + (f"\n\n{summary}" if summary else "")


def _dechunk(data: bytes, pos: int) -> tuple[bytes, int]:
    body = bytearray()
    for _ in range(len(data)):  # bounded: each chunk consumes at least 3 bytes
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            break
        try:
            size = int(data[pos:eol].split(b";")[0], 16)
        except ValueError:
            break
        pos = eol + 2
        if size == 0:
            end = data.find(b"\r\n\r\n", pos - 2)
            return bytes(body), (end + 4 if end >= 0 else len(data))
        body += data[pos : pos + size]
        pos += size + 2
    return bytes(body), len(data)


# The relay


def _parse_target(target: Any) -> tuple[str, str, int, str]:
    """-> (scheme, host, port, path-and-query) from a server, a URL or (host, port)."""
    if hasattr(target, "url") and not isinstance(target, str):
        target = target.url
    if isinstance(target, tuple):
        host, port = target
        return "tcp", str(host), int(port), ""
    if not isinstance(target, str):
        raise TypeError(f"wiretap target must be a server, a URL or (host, port), got {target!r}")
    parts = urlsplit(target)
    if not parts.scheme or parts.hostname is None:
        raise ValueError(f"cannot tap {target!r}: give a URL like 'ws://127.0.0.1:8765/' or (host, port)")
    default = {"ws": 80, "http": 80, "wss": 443, "https": 443}.get(parts.scheme)
    port = parts.port or default
    if port is None:
        raise ValueError(f"cannot tell the port of {target!r}: write it in the URL")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.scheme, parts.hostname, port, path


class Tap(Capture, Background):
    """A running wiretap: the relay, its counters and its capture.

    Attributes: ``name``, ``host``/``port`` (where the tap listens),
    ``url`` (connect here: the target's scheme and path, the tap's port),
    ``target`` (the target URL), ``mode``, ``running``, ``connections`` (open
    now), ``uptime``, ``errors``, ``bytes_up``/``bytes_down`` (totals),
    ``conns`` (per connection: :class:`Connection`), ``log``/``chunks``.
    ``stop()`` / ``await aclose()`` close its port and abort every relayed
    connection (see :class:`wslab.servers.Background`); the capture stays
    readable.
    """

    stop_timeout = STOP_TIMEOUT

    def __init__(
        self,
        name: str,
        scheme: str,
        target_host: str,
        target_port: int,
        path: str,
        mode: str,
        *,
        max_capture: int,
        connect_timeout: float,
        link: Link | None = None,
    ) -> None:
        super().__init__(max_capture=max_capture)
        self.link = link
        self._shapers = None if link is None else {UP: Shaper(link, UP), DOWN: Shaper(link, DOWN)}
        self.name = name
        self.scheme = scheme
        self.target_host = target_host
        self.target_port = target_port
        self.path = path
        self.mode = mode
        self.host = "127.0.0.1"
        self.port = 0
        self.connect_timeout = connect_timeout
        self.started = time.time()
        self.errors: list[BaseException] = []
        th = f"[{target_host}]" if ":" in target_host else target_host
        self.target = f"{scheme}://{th}:{target_port}{path}"
        self._t0 = time.perf_counter()
        self._ids = 0
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._transports: set[asyncio.BaseTransport] = set()

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.path}"

    @property
    def connections(self) -> int:
        return sum(1 for c in self.conns.values() if c.closed is None)

    def _now(self) -> float:
        return time.perf_counter() - self._t0

    # One relayed connection

    async def _relay(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        self._ids += 1
        peer = cwriter.get_extra_info("peername") or ("?", 0)
        conn = Connection(self._ids, f"{peer[0]}:{peer[1]}", self._now())
        self.conns[conn.id] = conn
        self._transports.add(cwriter.transport)
        self._record(conn, STATE, conn.opened, note=f"client {conn.client} connected")
        try:
            async with asyncio.timeout(self.connect_timeout):
                sreader, swriter = await asyncio.open_connection(self.target_host, self.target_port)
        except (OSError, TimeoutError) as exc:
            reason = f"cannot reach {self.target_host}:{self.target_port}: {exc or type(exc).__name__}"
            conn.error = reason
            self.errors.append(exc)
            self._record(conn, ERROR, self._now(), note=f"{reason}; closing the client's connection")
            print(
                f"! wiretap {self.name!r}: {reason}; closed the client's connection. "
                f"Is the server still running? (wslab.status() shows what runs)",
                file=sys.stderr,
                flush=True,
            )
            cwriter.close()
            conn.closed = self._now()
            self._transports.discard(cwriter.transport)
            return
        self._transports.add(swriter.transport)
        pipes: list[Pipe] = []
        if self._shapers is not None:
            loop = asyncio.get_running_loop()
            pipes = [Pipe(self._shapers[UP], swriter.transport, loop), Pipe(self._shapers[DOWN], cwriter.transport, loop)]
        try:
            await asyncio.gather(
                self._pump(conn, creader, cwriter, swriter, UP, pipes[0] if pipes else None),
                self._pump(conn, sreader, swriter, cwriter, DOWN, pipes[1] if pipes else None),
            )
            for pipe in pipes:  # what is still on the link arrives before the connection closes
                await pipe.flushed()
        finally:
            for pipe in pipes:
                pipe.close()
            for writer in (cwriter, swriter):
                writer.close()
                self._transports.discard(writer.transport)
            conn.closed = self._now()
            self._record(conn, STATE, conn.closed, note="connection closed")

    async def _pump(
        self,
        conn: Connection,
        reader: asyncio.StreamReader,
        source: asyncio.StreamWriter,
        writer: asyncio.StreamWriter,
        direction: str,
        pipe: Pipe | None = None,
    ) -> None:
        """Copy ``reader`` to ``writer`` until EOF; ``source`` is the reader's own socket.

        With a link, ``pipe`` holds each chunk until the link delivers it (in order).
        """
        side = "client" if direction == UP else "server"
        other = "server" if direction == UP else "client"
        while True:  # until EOF or an error; each turn waits for data
            try:
                data = await reader.read(READ_SIZE)
            except OSError as exc:  # a reset: pass the abrupt close on
                self._record(conn, ERROR, self._now(), note=f"{side} reset the connection ({exc}); aborting the {other}'s")
                if pipe is not None:
                    pipe.send_abort()
                else:
                    writer.transport.abort()
                return
            if not data:
                self._record(conn, STATE, self._now(), note=f"{side} sent EOF (half-close); passing it to the {other}")
                if pipe is not None:
                    pipe.send_eof()
                elif not writer.is_closing() and writer.can_write_eof():
                    try:
                        writer.write_eof()
                    except OSError:
                        pass
                return
            self._record(conn, direction, self._now(), data)
            if writer.is_closing():
                continue  # the other side is gone: drain the reader until EOF
            try:
                if pipe is None:
                    writer.write(data)
                else:
                    pipe.send(data)  # the link delivers it when due
                    if pipe.queued >= pipe.limit:
                        await pipe.room()
                await writer.drain()
            except OSError as exc:
                self._record(conn, ERROR, self._now(), note=f"writing to the {other} failed ({exc}); aborting the {side}'s connection")
                source.transport.abort()
                return

    # Stopping (stop() and aclose() come from Background): stop() closes the
    # tap's port and aborts every relayed connection; the capture stays readable.

    def _abort_all(self) -> None:
        """Close the listener and abort every relayed connection (on the relay's loop)."""
        if self._server is not None:
            self._server.close()
        for transport in list(self._transports):
            transport.abort()
        for task in list(self._tasks):
            task.cancel()

    async def _close(self) -> None:
        self._abort_all()
        # A connection the listener accepted a moment ago is still inside
        # asyncio (no transport handed to us yet): let it reach accept(), then
        # abort it too, or its client would wait for a close that never comes.
        for _ in range(5):
            await asyncio.sleep(0)
        self._abort_all()
        tasks = [t for t in self._tasks if not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=self.stop_timeout)

    def _begin_close(self) -> None:
        self._abort_all()

    def _release(self) -> None:
        self._abort_all()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        link = f", link {self.link}" if self.link is not None else ""
        return (
            f"<wslab.Tap {self.name!r} {self.url} -> {self.target}{link}, {self.mode} mode, {state}, "
            f"{len(self.conns)} connection(s), {self.bytes_up:,} bytes up, {self.bytes_down:,} bytes down>"
        )


async def _start(tap: Tap) -> Tap:
    def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tap._transports.add(writer.transport)  # now, so a stop before the task runs still closes it
        task = asyncio.ensure_future(tap._relay(reader, writer))
        tap._tasks.add(task)
        task.add_done_callback(tap._tasks.discard)

    tap._server = await asyncio.start_server(accept, tap.host, 0)
    tap._loop = asyncio.get_running_loop()
    tap.port = tap._server.sockets[0].getsockname()[1]
    return tap


def _make(target: Any, name: str, mode: str, max_capture: int, connect_timeout: float, link: Link | None) -> Tap:
    scheme, host, port, path = _parse_target(target)
    return Tap(name, scheme, host, port, path, mode, max_capture=max_capture, connect_timeout=connect_timeout, link=link)


class _PendingTap(servers._PendingServer):
    """What ``wslab.wiretap()`` returns: something to ``await`` (a forgotten await says so)."""

    def __getattr__(self, attr: str) -> Any:
        raise AttributeError(
            f"this is not a tap yet (no attribute {attr!r}): wslab.wiretap() must be "
            f"awaited. Write `tap = await wslab.wiretap(...)`, or use wslab.wiretap_in_thread(...)"
        )

    def __repr__(self) -> str:
        return "<wslab.wiretap(...) not awaited yet: write `tap = await wslab.wiretap(...)`>"


def wiretap(
    target: Any,
    name: str = "wiretap",
    *,
    # The network between client and server (link.py)
    link: Link | str | None = None,
    rtt_ms: float | None = None,
    rate_kbps: float | None = None,
    # Capture and timeouts
    max_capture: int = DEFAULT_MAX_CAPTURE,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> Awaitable[Tap]:
    """Start a wiretap in front of ``target`` on the running loop; connect to ``tap.url``.

    ``target`` is a wslab server, a URL (``ws://``, ``http://``, with a path)
    or ``(host, port)``. A tap already running under ``name`` is stopped first.

    >>> tap = await wslab.wiretap(srv)
    >>> async with websockets.asyncio.client.connect(tap.url) as ws: ...
    >>> tap.http()

    ``link`` puts a network between client and server: a :class:`wslab.Link`
    (``Link(rtt_ms=100, jitter_ms=5, rate_kbps=1000)``) or a preset name
    (``"same-city"``, ``"cross-ocean"``, ``"3g"``: :data:`wslab.link.PRESETS`);
    ``rtt_ms=`` and ``rate_kbps=`` are shortcuts (and override the link's).
    Every byte is then delayed per direction, in order; the counts stay
    exact. Raises ``ValueError`` for a bad value or an unknown preset.
    """
    tap = _make(target, name, "task", max_capture, connect_timeout, _resolve_link(link, rtt_ms=rtt_ms, rate_kbps=rate_kbps))

    async def start() -> Tap:
        await servers.release(name)
        await _start(tap)
        servers.register(tap)
        return tap

    return _PendingTap(start())


def wiretap_in_thread(
    target: Any,
    name: str = "wiretap",
    *,
    # The network between client and server (link.py)
    link: Link | str | None = None,
    rtt_ms: float | None = None,
    rate_kbps: float | None = None,
    # Capture and timeouts
    max_capture: int = DEFAULT_MAX_CAPTURE,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> Tap:
    """Like :func:`wiretap`, with the relay on its own loop in a daemon thread (no ``await``).

    Use it when the clients block (a synchronous client in a cell, another thread).
    ``link``, ``rtt_ms`` and ``rate_kbps`` as for :func:`wiretap`.
    """
    tap = _make(target, name, "thread", max_capture, connect_timeout, _resolve_link(link, rtt_ms=rtt_ms, rate_kbps=rate_kbps))
    return servers.start_in_thread(name, lambda: _start(tap))

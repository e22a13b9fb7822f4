"""The capture: recorded chunks of relayed connections, and the views on them.

A :class:`Capture` is what a wiretap records (a :class:`wslab.Tap` is one)
or what :func:`load` reads back from a file: a log of :class:`Chunk`
events (data ``>`` up and ``<`` down, state changes ``=``, errors ``!``),
per-connection :class:`Connection` records, and byte counters. The views
(``hexdump()``, ``http()``, ``frames()``, ``summary()``, ``show()``) are
computed from the log when asked; nothing is parsed while relaying.

Memory is bounded by ``max_capture``: payload bytes *and* the bookkeeping
around them (about :data:`CHUNK_COST` bytes per chunk kept, and
:data:`CONNECTION_COST` per connection record) count against it. When the
next chunk would not fit, it is counted but not kept (``dropped`` bytes,
``dropped_events`` for state notes), and a connection that closes while the
capture is full is forgotten too (its bytes stay in the totals; the summary
says how many were forgotten). What stays beyond ``max_capture`` is one
record per connection still open, which the operating system's file limit
bounds. The byte counters are always exact.

The HTTP view reads the captured bytes with :mod:`wslab.lab.http_messages`,
which never raises on hostile bytes.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ..course.display import Table
from .http_messages import http_messages

__all__ = ["Chunk", "Connection", "Capture", "View", "load", "hexdump_lines", "DEFAULT_MAX_CAPTURE"]

#: Bytes kept in memory (payload and bookkeeping) before capture stops (the counters go on).
DEFAULT_MAX_CAPTURE = 64 * 1024 * 1024

UP, DOWN, STATE, ERROR = ">", "<", "=", "!"


#: Bytes of bookkeeping per chunk kept, beyond its payload and note (measured
#: with tracemalloc on CPython 3.11: the slotted object, its float, its
#: ``bytes`` header and its slot in the log take about 136).
CHUNK_COST = 160
#: Bytes per connection record (the slotted object, its strings, its entry in ``conns``).
CONNECTION_COST = 480


@dataclass(frozen=True, slots=True)
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


@dataclass(slots=True)
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
        if isinstance(max_capture, bool) or not isinstance(max_capture, int) or max_capture < 0:
            raise ValueError(f"max_capture={max_capture!r}: give a number of bytes, 0 or more")
        self.max_capture = max_capture
        self.log: list[Chunk] = []
        self.conns: dict[int, Connection] = {}
        self.bytes_up = 0
        self.bytes_down = 0
        self.captured = 0  # payload bytes kept in self.log
        self.dropped = 0  # payload bytes counted but not kept (capture full)
        self.dropped_events = 0  # state and error notes not kept (capture full)
        self.forgotten = 0  # closed connections whose record was let go (capture full)
        self.held = 0  # estimated bytes held: payload + CHUNK_COST per chunk + CONNECTION_COST per record
        self.target = ""
        self.link: Any = None  # a wslab.Link when the capture was taken through one

    # Recording (called on the relay's loop only)

    def _open(self, conn_id: int, client: str, t: float) -> Connection:
        """A new connection's record: always kept while it is open (its socket bounds how many)."""
        conn = Connection(conn_id, client, t)
        self.conns[conn_id] = conn
        self.held += CONNECTION_COST
        return conn

    def _closed(self, conn: Connection, t: float) -> None:
        """Mark ``conn`` closed; when the capture is full, let its record go (totals keep its bytes)."""
        conn.closed = t
        if self.held > self.max_capture and self.conns.get(conn.id) is conn:
            del self.conns[conn.id]
            self.held -= CONNECTION_COST
            self.forgotten += 1

    def _record(self, conn: Connection, direction: str, t: float, data: bytes = b"", note: str = "") -> None:
        if direction == UP:
            self.bytes_up += len(data)
            conn.bytes_up += len(data)
        elif direction == DOWN:
            self.bytes_down += len(data)
            conn.bytes_down += len(data)
        cost = len(data) + len(note) + CHUNK_COST
        if self.held + cost > self.max_capture:
            if data:
                self.dropped += len(data)
            else:
                self.dropped_events += 1
            return
        self.held += cost
        self.captured += len(data)
        self.log.append(Chunk(conn.id, direction, t, bytes(data), note))

    @property
    def chunks(self) -> list[Chunk]:
        """The data chunks (``>`` and ``<``), in the order they were read."""
        return [c for c in self.log if c.direction in (UP, DOWN)]

    @property
    def truncated(self) -> bool:
        """True when the capture filled up and later bytes or events were counted but not kept."""
        return self.dropped > 0 or self.dropped_events > 0 or self.forgotten > 0

    def clear(self) -> None:
        """Forget every recorded chunk and reset all byte counters to zero.

        Connections still open stay listed (with zeroed counters); closed ones go.
        """
        self.log = []
        self.captured = self.dropped = self.dropped_events = self.forgotten = 0
        self.bytes_up = self.bytes_down = 0
        for cid, conn in list(self.conns.items()):
            if conn.closed is not None:
                del self.conns[cid]
            else:
                conn.bytes_up = conn.bytes_down = 0
        self.held = CONNECTION_COST * len(self.conns)

    def streams(self, conn: int) -> tuple[bytes, bytes]:
        """The bytes of connection ``conn`` as two streams: (client to server, server to client)."""
        return _split([c for c in self.log if c.conn == conn])

    def after_upgrade(self, conn: int) -> tuple[bytes, bytes] | None:
        """The WebSocket bytes of ``conn`` (after the request and the 101), or None if it never upgraded."""
        return _after_upgrade(*self.streams(conn))

    def _grouped(self, ids: list[int]) -> dict[int, list[Chunk]]:
        """The log's chunks of each connection in ``ids``, in order: one pass over the log, not one per connection."""
        groups: dict[int, list[Chunk]] = {cid: [] for cid in ids}
        for chunk in self.log[:]:  # a copy: a thread-mode relay may append meanwhile
            group = groups.get(chunk.conn)
            if group is not None:
                group.append(chunk)
        return groups

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
        lost = [f"{self.dropped:,} later bytes"]
        if self.dropped_events:
            lost.append(f"{self.dropped_events:,} state notes")
        if self.forgotten:
            lost.append(f"the records of {self.forgotten:,} closed connections")
        return (
            f"! capture full: kept the first {self.captured:,} bytes and their bookkeeping "
            f"(max_capture={self.max_capture:,}); {', '.join(lost)} were relayed and counted but not kept. "
            f"Call tap.clear() before the part you want to see, or pass a larger max_capture\n"
        )

    # Views

    def summary(self) -> Table:
        """One row per connection: client, state, bytes each way."""
        rows = [
            [f"#{c.id}", c.client, c.state, f"{c.bytes_up:,}", f"{c.bytes_down:,}"]
            for c in sorted(self.conns.values(), key=lambda c: c.id)
        ]
        if self.forgotten:
            rows.append([f"+{self.forgotten:,}", "", "closed, not kept (capture full)", "", ""])
        rows.append(["all", "", "", f"{self.bytes_up:,}", f"{self.bytes_down:,}"])
        return Table(
            ["conn", "client", "state", "bytes up (>)", "bytes down (<)"],
            rows,
            title=(f"wiretap to {self.target}" + (f" over {self.link}" if self.link is not None else ""))
            if self.target else "",
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
        WebSocket frames: see :meth:`frames`. Never raises on what a peer
        sent: a ``Content-Length`` that is not ``1*DIGIT`` (``²``, ``-5``,
        ``5, 6``; RFC 9110 section 8.6) or a chunk size that is not hex (RFC
        9112 section 7.1) ends that direction's parse with a ``!`` note; a
        length of more digits than any capture holds reads as "the rest".
        """
        out: list[str] = []
        for cid, chunks in self._grouped(self._conn_ids(conn)).items():
            up, down = _split(chunks)
            out.append(f"= connection #{cid}")
            requests = list(http_messages(up, body_limit, is_response=False))
            responses = list(http_messages(down, body_limit, is_response=True))
            for i in range(max(len(requests), len(responses))):
                for sign, messages in ((UP, requests), (DOWN, responses)):
                    if i < len(messages):
                        out.extend(f"{sign} {line}" for line in messages[i].splitlines())
            out.append("")
        return View("HTTP messages", self._note() + ("\n".join(out).rstrip() or "(nothing captured yet)"))

    # Frame decoding lives in wslab/protocol/frames.py (issue 4); the frames helper
    # owns this method and the frames section of show(). Keep it the one place
    # that knows about frames: it imports wslab.frames lazily.
    def frames(self, conn: int | None = None) -> View:
        """The WebSocket frames after the upgrade, in the order their bytes arrived.

        ``>`` client to server (masked), ``<`` server to client (unmasked), each
        frame decoded by :mod:`wslab.protocol.frames`; with permessage-deflate negotiated,
        RSV1 shows as "compressed" and each message follows inflated (``=``).
        """
        from ..protocol import frames as _frames

        out: list[str] = []
        for cid, log in self._grouped(self._conn_ids(conn)).items():
            up, down = _split(log)
            streams = _after_upgrade(up, down)
            if streams is None:
                continue
            skip = {UP: len(up) - len(streams[0]), DOWN: len(down) - len(streams[1])}
            head = down[: skip[DOWN]].decode("latin-1").split("\r\n")
            extensions = ", ".join(
                line.split(":", 1)[1].strip()
                for line in head[1:]
                if line.lower().startswith("sec-websocket-extensions:")
            )
            chunks = []
            for chunk in log:
                if chunk.direction not in (UP, DOWN):
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
            "dropped_events": self.dropped_events,
            "forgotten": self.forgotten,
            "max_capture": self.max_capture,
            "link": dataclasses.asdict(self.link) if self.link is not None else None,
            "connections": [
                {k: getattr(c, k) for k in ("id", "client", "opened", "closed", "bytes_up", "bytes_down", "error")}
                for c in list(self.conns.values())  # a copy: a thread-mode relay may add one meanwhile
            ],
            "log": [
                {"conn": c.conn, "dir": c.direction, "t": c.t, "data": base64.b64encode(c.data).decode(), "note": c.note}
                for c in self.log[:]
            ],
        }
        path.write_text(json.dumps(doc, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Capture:
        """Read a capture written by :meth:`save`.

        Raises ``ValueError`` that names the file (and the field) when it is
        not a capture or is damaged; ``OSError`` when it cannot be read.
        """
        try:
            doc = json.loads(Path(path).read_bytes())
        except ValueError as exc:  # not JSON, or not UTF-8
            raise ValueError(f"{path} is not a wslab capture: not JSON ({exc})") from None
        except RecursionError:  # json's parser recurses once per [ or {: about 1,000 deep is its end
            raise ValueError(f"{path} is not a wslab capture: JSON nested too deeply") from None
        if not isinstance(doc, dict) or doc.get("wslab_capture") != 1:
            raise ValueError(f"{path} is not a wslab capture (no 'wslab_capture': 1 in it)")
        try:
            return cls._from_doc(doc)
        except RecursionError:  # a field nested hundreds deep, shown in a message
            raise ValueError(f"{path} is a damaged wslab capture: a field is nested too deeply; "
                             f"save the capture again with tap.save(path)") from None
        except (KeyError, TypeError, ValueError) as exc:
            what = f"no {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ValueError(f"{path} is a damaged wslab capture: {what}; save the capture again with tap.save(path)") from None

    @classmethod
    def _from_doc(cls, doc: dict[str, Any]) -> Capture:
        capture = Capture(max_capture=_field(doc, "max_capture", int, DEFAULT_MAX_CAPTURE))
        capture.target = _field(doc, "target", str)
        capture.bytes_up, capture.bytes_down = _field(doc, "bytes_up", int), _field(doc, "bytes_down", int)
        capture.dropped = _field(doc, "dropped", int)
        capture.dropped_events = _field(doc, "dropped_events", int, 0)
        capture.forgotten = _field(doc, "forgotten", int, 0)
        link = doc.get("link")
        if link:
            from .link import Link

            if not isinstance(link, dict):
                raise ValueError(f"'link' is {link!r}, not the fields of a wslab.Link")
            capture.link = Link(**link)
        for i, c in enumerate(_field(doc, "connections", list)):
            where = f"connections[{i}]"
            closed = _field(c, "closed", (int, float, type(None)), where=where)
            capture.conns[_field(c, "id", int, where=where)] = Connection(
                c["id"], _field(c, "client", str, where=where), _field(c, "opened", (int, float), where=where), closed,
                _field(c, "bytes_up", int, where=where), _field(c, "bytes_down", int, where=where),
                _field(c, "error", str, where=where),
            )
        capture.held = CONNECTION_COST * len(capture.conns)
        for i, c in enumerate(_field(doc, "log", list)):
            where = f"log[{i}]"
            direction = _field(c, "dir", str, where=where)
            if direction not in (UP, DOWN, STATE, ERROR):
                raise ValueError(f"{where}: direction {direction[:20]!r} is not one of > < = !")
            try:
                data = base64.b64decode(_field(c, "data", str, where=where), validate=True)
            except ValueError as exc:
                raise ValueError(f"{where}: data is not base64 ({exc})") from None
            note = _field(c, "note", str, where=where)
            capture.log.append(Chunk(_field(c, "conn", int, where=where), direction, _field(c, "t", (int, float), where=where), data, note))
            capture.captured += len(data)
            capture.held += len(data) + len(note) + CHUNK_COST
        return capture

    def __repr__(self) -> str:
        return (
            f"<wslab.Capture of {self.target or '?'}: {len(self.conns)} connection(s), "
            f"{self.bytes_up:,} bytes up, {self.bytes_down:,} bytes down>"
        )

    def _repr_html_(self) -> str:
        return self.show()._repr_html_()


def load(path: str | Path) -> Capture:
    """Read a capture written by ``tap.save(path)`` (``ValueError`` naming the file if it is not one)."""
    return Capture.load(path)


_MISSING = object()


def _field(doc: Any, name: str, kind: type | tuple[type, ...], default: Any = _MISSING, *, where: str = "") -> Any:
    """``doc[name]`` of a loaded capture, checked to be ``kind`` (a bool is not a number here)."""
    if not isinstance(doc, dict):
        raise ValueError(f"{where or 'the file'} is {type(doc).__name__}, not an object")
    value = doc.get(name, default)
    if value is _MISSING:
        raise ValueError(f"{where + ': ' if where else ''}no {name!r}")
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"{where + ': ' if where else ''}{name!r} is {str(value)[:40]!r}, of the wrong type")
    return value


#: Bytes shown as themselves in a hex dump's text column (printable ASCII); every other byte is ".".
_PRINTABLE = bytes(b if 0x20 <= b < 0x7F else 0x2E for b in range(256))


def _split(chunks: Iterable[Chunk]) -> tuple[bytes, bytes]:
    """The data of one connection's chunks as two streams: (client to server, server to client)."""
    up: list[bytes] = []
    down: list[bytes] = []
    for c in chunks:
        if c.direction == UP:
            up.append(c.data)
        elif c.direction == DOWN:
            down.append(c.data)
    return b"".join(up), b"".join(down)


def _after_upgrade(up: bytes, down: bytes) -> tuple[bytes, bytes] | None:
    req_end, resp_end = up.find(b"\r\n\r\n"), down.find(b"\r\n\r\n")
    if req_end < 0 or resp_end < 0 or not down.startswith(b"HTTP/1.1 101"):
        return None
    return up[req_end + 4 :], down[resp_end + 4 :]


def hexdump_lines(data: bytes, *, limit: int | None = None, width: int = 16) -> list[str]:
    """``0000  47 45 54 20 ...  GET ...`` lines, like ``hexdump -C``."""
    shown = data if limit is None else data[:limit]
    lines = []
    for offset in range(0, len(shown), width):
        row = shown[offset : offset + width]
        hexes = row.hex(" ")
        if len(row) > 8:
            hexes = hexes[:23] + " " + hexes[23:]
        text = row.translate(_PRINTABLE).decode("ascii")
        lines.append(f"    {offset:04x}  {hexes:<49} {text}")
    if len(shown) < len(data):
        lines.append(f"    ... {len(data) - len(shown):,} more bytes (hexdump(limit=None) shows all)")
    return lines

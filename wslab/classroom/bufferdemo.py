"""The browser's ``bufferedAmount``, live: a page sends fast to a server that stops reading.

Design note
-----------
The browser's ``ws.send()`` never waits: what the network cannot take yet is
queued, and ``ws.bufferedAmount`` counts the bytes queued and not yet sent.
To make that number grow, the server here stops reading for ``pause``
seconds after its greeting:

* websockets pauses reading the socket once ``max_queue`` messages wait
  unread (here 1), so the kernel's receive buffer fills;
* the receive buffer of each accepted socket is set small (``SO_RCVBUF``,
  16 KiB; Linux otherwise lets loopback buffers grow to megabytes and hides
  the effect for a while), so TCP's window closes soon and the browser's
  own queue (``bufferedAmount``) takes the rest;
* compression is off, so the bytes the page counts are the bytes on the wire.

The page (:func:`demo_html`, in a cell's output or served at
``http://127.0.0.1:<port>/``) sends ``chunk``-byte binary messages on a timer
until it has sent ``total`` bytes, samples ``bufferedAmount`` every 50 ms and
draws it with what it has sent. After ``pause`` s the server reads
everything, says so, and the page's line falls to 0. The samples are also
left in ``window.wslabBuffered[<id>]`` for tests. The kernel side
(:class:`BufferDemo`) counts what the server received, per page.

Through jupyter-server-proxy (JupyterHub, Binder; the figure picks that URL
as lesson 05's client does) the line stays low: the proxy reads everything
at once and holds it in the Jupyter server's memory, so ``bufferedAmount``
shows the queue to the proxy (tests/test_jupyter_proxy.py measures it).
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection

from .browser import ServesPage, html_page_responder, output_script, url_plan
from ..server.limits import Limits
from ..server.serve import Server, serve

__all__ = ["BufferDemo", "PageStats", "buffered_amount_demo", "demo_html"]

# The figure's script; browser.output_script() gives it cfg, root and state.
_JS = r"""
  const svg = root.querySelector("svg");
  const NS = "http://www.w3.org/2000/svg";
  const rec = {samples: [], sent: 0, events: [], done: false, error: null};
  window.wslabBuffered = window.wslabBuffered || {};
  window.wslabBuffered[cfg.id] = rec;
  function pickUrl() {
    if (cfg.same_origin) { const u = new URL(".", location.href); u.protocol = "ws:"; return u.href; }
    const local = ["127.0.0.1", "localhost", "[::1]", "::1", ""].includes(location.hostname);
    if (local && !cfg.prefer_proxy) { return cfg.direct_url; }
    let base = cfg.base_url;
    const el = document.getElementById("jupyter-config-data");
    if (el) { try { base = JSON.parse(el.textContent).baseUrl || base; } catch (e) {} }
    if (!cfg.proxy_available || !base) { return null; }
    const u = new URL(base + "proxy/" + cfg.port + "/", location.href);
    u.protocol = location.protocol === "https:" ? "wss:" : "ws:"; u.search = "";
    return u.href;
  }
  function say(text) { state.textContent = text; }
  function kib(n) { return (n / 1024).toFixed(0) + " KiB"; }
  function draw() {
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    const W = 600, H = 160, tmax = Math.max(cfg.pause * 1000 + 1500, ...rec.samples.map(s => s[0]));
    const ymax = Math.max(cfg.total, 1);
    function line(points, color) {
      const p = document.createElementNS(NS, "polyline");
      p.setAttribute("fill", "none"); p.setAttribute("stroke", color); p.setAttribute("stroke-width", "2");
      p.setAttribute("points", points.map(([t, y]) => (40 + t / tmax * (W - 50)).toFixed(1) + "," + (H - 20 - y / ymax * (H - 30)).toFixed(1)).join(" "));
      svg.appendChild(p);
    }
    function text(x, y, s, color) {
      const t = document.createElementNS(NS, "text");
      t.setAttribute("x", x); t.setAttribute("y", y); t.setAttribute("font-size", "11");
      t.setAttribute("fill", color || "#333"); t.textContent = s; svg.appendChild(t);
    }
    line(rec.samples.map(s => [s[0], s[2]]), "#999");
    line(rec.samples.map(s => [s[0], s[1]]), "#c0392b");
    const x = 40 + cfg.pause * 1000 / tmax * (W - 50);
    const v = document.createElementNS(NS, "line");
    v.setAttribute("x1", x); v.setAttribute("x2", x); v.setAttribute("y1", 10); v.setAttribute("y2", H - 20);
    v.setAttribute("stroke", "#2980b9"); v.setAttribute("stroke-dasharray", "4 3"); svg.appendChild(v);
    text(x + 4, H - 26, "server reads again", "#2980b9");
    text(44, H - 4, "bufferedAmount", "#c0392b"); text(150, H - 4, "bytes send() was given", "#777");
    text(2, H - 20, "0"); text(2, 14, kib(ymax)); text(W - 60, H - 4, (tmax / 1000).toFixed(1) + " s");
  }
  const url = pickUrl();
  if (!url) { rec.error = "no URL"; say("cannot reach the kernel's server from this page (see lesson 05: jupyter-server-proxy)"); return; }
  say("connecting to " + url + " ...");
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  const chunk = new Uint8Array(cfg.chunk);
  let t0 = null, timer = null, sampler = null;
  ws.onmessage = function (event) {
    const msg = JSON.parse(event.data);
    rec.events.push([t0 === null ? 0 : performance.now() - t0, msg.event]);
    if (msg.event === "paused") {
      t0 = performance.now();
      say("sending " + kib(cfg.total) + " while the server does not read ...");
      timer = setInterval(function () {
        for (let i = 0; i < cfg.per_tick && rec.sent < cfg.total; i++) { ws.send(chunk); rec.sent += cfg.chunk; }
        if (rec.sent >= cfg.total) { clearInterval(timer); }
      }, 20);
      sampler = setInterval(function () {
        rec.samples.push([performance.now() - t0, ws.bufferedAmount, rec.sent]);
        draw();
        if (rec.done && ws.bufferedAmount === 0) { clearInterval(sampler); ws.close(1000, "done"); }
      }, 50);
    } else if (msg.event === "reading") {
      say("the server reads again: bufferedAmount falls as the queue drains ...");
    } else if (msg.event === "drained") {
      rec.done = true;
      const peak = Math.max(...rec.samples.map(s => s[1]));
      say("done: the server received " + kib(msg.bytes) + "; bufferedAmount peaked at " + kib(peak) + " and is back to " + ws.bufferedAmount);
    }
  };
  ws.onclose = function (e) { if (!rec.done) { say("closed (" + e.code + ") before the end"); } if (timer) { clearInterval(timer); } };
"""


def demo_html(config: dict[str, Any]) -> str:
    """The figure's HTML fragment (a ``<div>`` with an SVG, and its ``<script>``)."""
    cfg = {"id": f"wslab-buffered-{os.getpid()}-{int(time.time() * 1e6)}", **config}
    return (
        f'<div id="{html.escape(cfg["id"])}" class="wslab-buffered" style="font-family:monospace;'
        'font-size:13px;border:1px solid #999;border-radius:4px;padding:6px;max-width:620px">'
        "<div><b>bufferedAmount, live</b> &middot; <span class=\"wslab-state\">not started: "
        "JavaScript did not run in this output (run the cell again)</span></div>"
        '<svg width="600" height="160" style="background:#f7f7f7"></svg>'
        f"</div>{output_script(_JS, cfg)}"
    )


@dataclass
class PageStats:
    """What the server got from one page: bytes, messages, and whether all ``total`` bytes came."""

    received: int = 0
    messages: int = 0
    done: bool = False


@dataclass
class BufferDemo(ServesPage):
    """The server of the demo, and what it received from each page (:attr:`pages`)."""

    pause: float
    chunk: int
    total: int
    server: Server | None = None
    pages: list[PageStats] = field(default_factory=list)

    def _config(self) -> dict[str, Any]:
        per_tick = 8
        return {"pause": self.pause, "chunk": self.chunk, "total": self.total, "per_tick": per_tick}

    def client(self) -> Any:
        """The figure for this cell's output (``IPython.display.HTML``); it runs in your browser."""
        assert self.server is not None
        fragment = demo_html({**self._config(), **url_plan(self.server.port)})
        try:
            from IPython.display import HTML
        except ImportError:  # pragma: no cover
            return fragment
        return HTML(fragment)

    def page(self) -> str:
        return (
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>bufferedAmount</title></head>"
            f"<body>{demo_html({**self._config(), 'same_origin': True})}</body></html>"
        )

    async def handler(self, connection: ServerConnection) -> None:
        stats = PageStats()
        self.pages.append(stats)
        await connection.send(json.dumps({"event": "paused"}))
        # Not reading: websockets stops reading the socket after max_queue messages.
        await asyncio.sleep(self.pause)
        await connection.send(json.dumps({"event": "reading"}))
        async for message in connection:
            stats.received += len(message)
            stats.messages += 1
            if stats.received >= self.total and not stats.done:
                stats.done = True
                await connection.send(json.dumps({"event": "drained", "bytes": stats.received}))

    def __repr__(self) -> str:
        if not self.pages:
            return (f"<wslab.BufferDemo {self.url}: no page connected yet "
                    "(the figure runs in your browser, not in the kernel)>")
        rows = "; ".join(
            f"page {i}: {p.received:,} bytes in {p.messages} messages"
            + (" (all of them)" if p.done else " (still arriving)")
            for i, p in enumerate(self.pages, 1)
        )
        return f"<wslab.BufferDemo {self.url}: {rows}>"


async def buffered_amount_demo(
    name: str = "buffered", *, pause: float = 3.0, chunk: int = 64 * 1024, total: int = 16 << 20
) -> BufferDemo:
    """Start the demo's server on the notebook's loop; ``demo.client()`` shows the figure.

    The server greets, reads nothing for ``pause`` seconds, then reads all;
    the page sends ``total`` bytes in ``chunk``-byte messages meanwhile.
    """
    if not 0 < pause <= 60:
        raise ValueError(f"pause must be between 0 and 60 seconds, got {pause!r}")
    if not 1024 <= chunk <= 1 << 20 or not chunk <= total <= 64 << 20:
        raise ValueError(f"need 1 KiB <= chunk <= 1 MiB and chunk <= total <= 64 MiB, got {chunk!r}, {total!r}")
    demo = BufferDemo(pause=pause, chunk=chunk, total=total)
    limits = Limits().replace(max_queue=1, max_size=chunk)
    demo.server = await serve(
        demo.handler, name, limits=limits, compression=None,
        process_request=html_page_responder(demo.page),
    )
    # A small receive window for every connection accepted from now on (Linux
    # copies the listener's buffer sizes to each new connection): see the design note.
    for listener in demo.server._ws_server.sockets:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    return demo

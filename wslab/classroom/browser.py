"""A live WebSocket client in the browser, connected to a server in the kernel.

Design note
-----------
Three places run code here:

* the **kernel** (Python) runs the server (:func:`wslab.serve` or
  :func:`wslab.serve_in_thread`) and builds a small HTML + JavaScript client
  (:func:`browser_client`) that goes into a cell's output;
* the **browser** (JavaScript in that output, or in a page the server itself
  serves over HTTP on the same port) opens the WebSocket, shows every message
  as text and sends what you type;
* on a hub or Binder, **jupyter-server-proxy** (>= 4.1.1, CVE-2024-28179)
  relays the browser's WebSocket to ``127.0.0.1:<port>`` on the kernel's
  machine at ``<base_url>proxy/<port>/``.

Which URL the browser uses is decided in the browser, where the page's own
address is known: straight to ``ws://127.0.0.1:<port>/`` when the page comes
from this computer (a laptop), through the proxy when the kernel says it runs
under JupyterHub (``JUPYTERHUB_SERVICE_PREFIX``) or when the page comes from
elsewhere, and a clear message when neither can work. The base URL is read
from the page's ``<script id="jupyter-config-data">`` (JupyterLab, Notebook 7),
with the kernel's guess (the `jpserver-*.json` runtime file of the Jupyter server,
the entry whose pid is the kernel's parent) as a fallback.

What must never happen:

* a message shown as HTML: the client only ever sets ``textContent``, so a
  ``<script>`` sent by a peer shows as text and does not run;
* a token in a URL the client builds, shows or logs: the proxy is reached
  with the page's session cookie, and URLs are built from the page's path;
* "connected" shown before the server has spoken: through the proxy
  ``onopen`` fires even for a dead port, so the servers here greet first and
  the client says "connected" only on the first message.

A server that pushes what Python says to every page (``wslab.push_channel``)
is :mod:`wslab.classroom.push`; it serves this module's page.
"""

from __future__ import annotations

import html
import importlib.util
import itertools
import json
import os
import re
import time
from typing import Any, Callable

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from ..server.serve import Server

__all__ = [
    "browser_client",
    "client_html",
    "page_html",
    "url_plan",
    "jupyter_server",
    "proxy_url",
    "html_page_responder",
    "ServesPage",
    "output_script",
]

_ids = itertools.count(1)

_LOOPBACK = ("127.0.0.1", "::1", "localhost")

# How every script in a cell's output starts (the client here, the buffer
# demo's figure): its config from the kernel, the element it runs in (by id)
# and that element's state line.
_SCRIPT_HEAD = r"""
(function () {
  const cfg = __CONFIG__;
  const root = document.getElementById(cfg.id);
  if (!root) { return; }
  const state = root.querySelector(".wslab-state");
"""


def output_script(body: str, config: dict[str, Any]) -> str:
    """A ``<script>`` that runs ``body`` (JavaScript) with ``cfg`` (``config``), ``root`` and ``state`` defined.

    ``config["id"]`` is the id of the element the script runs in; its
    ``.wslab-state`` is ``state``. The script is a function of its own, run
    once (nothing leaks into the page's globals).
    """
    # JSON inside <script>: "</script>" or "<!--" in a value would end or
    # confuse the script element, so no "<" appears literally (\u003c is JSON).
    head = _SCRIPT_HEAD.replace("__CONFIG__", json.dumps(config).replace("<", "\\u003c"))
    return f"<script>{head}{body}}})();\n</script>"


# The client. It reads CONFIG (JSON from the kernel) and never uses innerHTML
# for anything a peer sent. Log lines use the kit's vocabulary: > sent,
# < received, = state change, ! error.
_CLIENT_JS = r"""
  const log = root.querySelector(".wslab-log");
  const input = root.querySelector(".wslab-input");
  const sendButton = root.querySelector(".wslab-send");
  const closeButton = root.querySelector(".wslab-close");
  let greeted = false;
  let ws = null;

  function line(mark, text, cls) {
    const div = document.createElement("div");
    div.className = "wslab-line" + (cls ? " " + cls : "");
    if (cls === "wslab-instructor") { div.style.fontWeight = "bold"; div.style.color = "#8a2be2"; }
    div.textContent = mark + " " + text;      // text, never HTML
    log.appendChild(div);
    while (log.childNodes.length > cfg.max_lines) { log.removeChild(log.firstChild); }
    log.scrollTop = log.scrollHeight;
  }
  function setState(name, text) {
    root.dataset.state = name;
    state.textContent = text;
  }
  function wsScheme() { return location.protocol === "https:" ? "wss:" : "ws:"; }
  function pageBaseUrl() {
    const el = document.getElementById("jupyter-config-data");
    if (el) {
      try { const base = JSON.parse(el.textContent).baseUrl; if (base) { return base; } } catch (e) {}
    }
    return cfg.base_url;
  }
  function viaProxy(base) {
    const url = new URL(base + "proxy/" + cfg.port + "/", location.href);
    url.protocol = wsScheme();
    url.search = "";
    return url.href;
  }
  function pickUrl() {
    if (cfg.url) { return {url: cfg.url, how: "as given"}; }
    if (cfg.same_origin) {
      const url = new URL(cfg.path || ".", location.href);
      url.protocol = wsScheme();
      url.search = cfg.query || "";
      return {url: url.href, how: "to the server that served this page"};
    }
    const base = pageBaseUrl();
    const local = ["127.0.0.1", "localhost", "[::1]", "::1", ""].includes(location.hostname);
    const proxyOk = cfg.proxy_available && base;
    if (cfg.prefer_proxy && proxyOk) {
      return {url: viaProxy(base) + (cfg.query || ""), how: "through jupyter-server-proxy"};
    }
    if (local && !cfg.prefer_proxy) {
      return {url: cfg.direct_url + (cfg.query || ""), how: "straight to the kernel's server"};
    }
    if (proxyOk) {
      return {url: viaProxy(base) + (cfg.query || ""), how: "through jupyter-server-proxy"};
    }
    return {error: "cannot reach the kernel's server: this page comes from " + location.host +
      ", not from the computer the kernel runs on, and " +
      (cfg.proxy_available ? "the page does not say its Jupyter base URL"
                           : "jupyter-server-proxy is not installed where Jupyter runs") +
      ". Install it (pip install 'jupyter-server-proxy>=4.1.1'), restart Jupyter, and run the cell again"};
  }
  function show(data) {
    if (cfg.format !== "chat") { line("<", data); return; }
    let event;
    try { event = JSON.parse(data); } catch (e) { line("<", data); return; }
    const render = function (ev, earlier) {
      const tag = earlier ? "(earlier) " : "";
      if (ev.type === "message" && ev.role === "instructor") {
        line("*", tag + "[instructor] " + ev.nick + ": " + ev.text, "wslab-instructor");
      }
      else if (ev.type === "message") { line("<", tag + ev.nick + ": " + ev.text); }
      else if (ev.type === "join") { line("=", tag + ev.nick + " joined"); }
      else if (ev.type === "leave") { line("=", tag + ev.nick + " left"); }
      else if (ev.type === "system") { line("!", ev.text); }
      else if (ev.type === "welcome") {
        line("=", "welcome to " + ev.room + ", " + ev.nick + " (" + ev.members.length + " here: " + ev.members.join(", ") + ")");
      }
      else if (ev.type === "history") { ev.events.forEach(function (e) { render(e, true); }); }
      else { line("<", data); }
    };
    render(event, false);
  }
  function connect() {
    const plan = pickUrl();
    if (plan.error) { setState("error", "cannot connect"); line("!", plan.error); return; }
    setState("connecting", "connecting " + plan.how + " ...");
    line("=", "connecting to " + plan.url + " (" + plan.how + ")");
    try { ws = new WebSocket(plan.url); } catch (e) { setState("error", "error"); line("!", String(e)); return; }
    ws.onopen = function () {
      setState("open", "open, waiting for the server's greeting ...");
      line("=", "open (not proven yet: the server greets first)");
    };
    ws.onmessage = function (event) {
      if (!greeted) { greeted = true; setState("connected", "connected"); line("=", "connected: the server spoke first"); }
      show(typeof event.data === "string" ? event.data : "(binary message, " + (event.data.size || event.data.byteLength) + " bytes)");
    };
    ws.onerror = function () { line("!", "WebSocket error (the browser gives no details; see the close code below)"); };
    ws.onclose = function (event) {
      setState("closed", "closed (" + event.code + ")");
      line("=", "closed: code " + event.code + (event.reason ? " " + event.reason : "") + (event.wasClean ? "" : " (not clean)"));
      if (!greeted) {
        line("!", "the server never spoke: is it running (wslab.status())? " +
          "If Jupyter runs on another machine, it needs jupyter-server-proxy");
      }
    };
  }
  function send() {
    const text = input.value;
    if (cfg.ask_nick && !ws) {
      const nick = text.trim();
      if (!nick) { return; }
      cfg.query = "?" + new URLSearchParams({nick: nick}).toString();
      input.value = ""; input.placeholder = "type a message, press Enter";
      connect(); return;
    }
    if (!ws || ws.readyState !== WebSocket.OPEN) { line("!", "not connected: nothing sent"); return; }
    if (!text) { return; }
    ws.send(text);
    line(">", text);
    input.value = "";
  }
  sendButton.addEventListener("click", send);
  input.addEventListener("keydown", function (e) { if (e.key === "Enter") { send(); } });
  closeButton.addEventListener("click", function () { if (ws) { ws.close(1000, "closed from the page"); } });
  if (cfg.ask_nick) {
    setState("nick", "choose a nickname");
    input.placeholder = "your nickname, then Enter";
    line("=", "type your nickname below and press Enter to join");
  } else { connect(); }
"""

_CSS = (
    "font-family:monospace;font-size:13px;border:1px solid #999;border-radius:4px;"
    "padding:6px;max-width:720px"
)


def client_html(config: dict[str, Any], *, title: str = "WebSocket client") -> str:
    """The client's HTML fragment (a ``<div>`` and a ``<script>``) for ``config``.

    ``config`` keys: ``port``, ``direct_url``, ``prefer_proxy``,
    ``proxy_available``, ``base_url``; or ``url`` (use as is); or
    ``same_origin`` (connect back to the page's own server); and ``format``
    (``"text"`` or ``"chat"``), ``query``, ``max_lines``.
    """
    cfg = {"max_lines": 200, "format": "text", **config}
    cfg.setdefault("id", f"wslab-client-{os.getpid()}-{next(_ids)}-{int(time.time() * 1000)}")
    return (
        f'<div id="{html.escape(cfg["id"])}" class="wslab-client" data-state="not-started" style="{_CSS}">'
        f"<div><b>{html.escape(title)}</b> &middot; <span class=\"wslab-state\">"
        "not started: JavaScript did not run in this output (run the cell again; "
        "saved outputs do not run scripts)</span></div>"
        '<div class="wslab-log" style="height:180px;overflow-y:auto;background:#f7f7f7;'
        'color:#222;margin:4px 0;padding:2px 4px;white-space:pre-wrap"></div>'
        '<input class="wslab-input" placeholder="type a message, press Enter" style="width:70%"> '
        '<button class="wslab-send">send</button> <button class="wslab-close">close</button>'
        f"</div>{output_script(_CLIENT_JS, cfg)}"
    )


def page_html(*, title: str, format: str = "text", intro: str = "") -> str:
    """A whole HTML page with a client that connects back to the server that served it.

    With ``format="chat"`` the page asks for a nickname first and sends it in
    the query string (``/?nick=ada``).
    """
    config = {"same_origin": True, "format": format, "ask_nick": format == "chat"}
    return (
        "<!doctype html><html><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>"
        f"{client_html(config, title=title)}</body></html>"
    )


def html_page_responder(
    page: str | Callable[[], str],
) -> Callable[[ServerConnection, Request], Response | None]:
    """A websockets ``process_request`` that serves ``page`` to plain HTTP GETs.

    A browser opening ``http://127.0.0.1:<port>/`` gets the page; WebSocket
    upgrades pass through to the handler; other paths get 404.
    """

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        if "upgrade" in request.headers.get("Connection", "").lower():
            return None
        path = request.path.split("?", 1)[0]
        if path not in ("/", "/index.html"):
            return connection.respond(404, f"not found: {path}; the page is at /\n")
        text = page() if callable(page) else page
        response = connection.respond(200, text)
        headers = Headers(response.headers)
        del headers["Content-Type"]
        headers["Content-Type"] = "text/html; charset=utf-8"
        headers["Cache-Control"] = "no-store"
        return Response(response.status_code, response.reason_phrase, headers, response.body)

    return process_request


class ServesPage:
    """A handle whose ``server`` also serves a page: its ``url`` and the ``page_url`` to open.

    Mixed into :class:`wslab.PushChannel`, :class:`wslab.ChatRoom` and the
    buffer demo, whose servers answer plain HTTP GETs with a page
    (:func:`html_page_responder`) and upgrades with the WebSocket.
    """

    server: Any  # a wslab.Server once started, else None

    @property
    def url(self) -> str:
        """The server's WebSocket URL (``ws://127.0.0.1:<port>/``), or "(not started)"."""
        return self.server.url if self.server else "(not started)"

    @property
    def page_url(self) -> str:
        """``http://127.0.0.1:<port>/`` (``https`` for ``wss``): the page, for a browser on this computer."""
        url = self.url
        return "http" + url[2:] if url.startswith(("ws://", "wss://")) else url


# Where the browser can reach a kernel's server


def _runtime_dir() -> str:
    """Jupyter's runtime directory (``JUPYTER_RUNTIME_DIR``, else jupyter_core's default)."""
    env = os.environ.get("JUPYTER_RUNTIME_DIR")
    if env:
        return env
    try:
        from jupyter_core.paths import jupyter_runtime_dir  # light: no server code
    except ImportError:
        return os.path.join(os.path.expanduser("~"), ".local", "share", "jupyter", "runtime")
    return jupyter_runtime_dir()


def _running_servers(runtime_dir: str | None) -> list[dict[str, Any]]:
    """The ``jpserver-*.json`` files in ``runtime_dir`` whose process still runs.

    What ``jupyter_server.serverapp.list_running_servers()`` reads, without
    importing Jupyter's server application (about 2 s and 28 MiB on first
    import, issue 15) and without deleting anyone's files.
    """
    directory = runtime_dir or _runtime_dir()
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    found = []
    for file_name in names:
        if not re.fullmatch(r"jpserver-.+\.json", file_name):
            continue
        try:
            with open(os.path.join(directory, file_name), encoding="utf-8") as f:
                info = json.load(f)
        except (OSError, ValueError):  # being written, unreadable: skip it
            continue
        if isinstance(info, dict) and isinstance(info.get("pid"), int) and _pid_runs(info["pid"]):
            found.append(info)
    return found


def _pid_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as someone else
        return True
    except (OSError, OverflowError):
        return False
    return True


def jupyter_server(pid: int | None = None, *, runtime_dir: str | None = None) -> dict[str, Any] | None:
    """The running Jupyter server whose process is ``pid`` (default: the kernel's parent).

    ``runtime_dir`` is where Jupyter servers write their ``jpserver-*.json``
    (default: Jupyter's own, ``JUPYTER_RUNTIME_DIR``). The files are read
    directly (the same ones ``jupyter_server.serverapp.list_running_servers()``
    reads), so this costs milliseconds, not an import of Jupyter's server.

    Returns the file's entry (keys ``url``, ``base_url``, ``port``, ``pid``,
    ...; the ``token`` key is dropped so nothing here can print it), or None
    outside Jupyter.
    """
    pid = os.getppid() if pid is None else pid
    for info in _running_servers(runtime_dir):
        if info.get("pid") == pid:
            return {k: v for k, v in info.items() if k != "token"}
    return None


def proxy_url(port: int, *, server: dict[str, Any] | None = None, pid: int | None = None) -> str:
    """The WebSocket URL of ``127.0.0.1:<port>`` through jupyter-server-proxy.

    On JupyterHub/Binder this is a path (``/user/<name>/proxy/<port>/``; the
    browser adds the hub's address); next to a local Jupyter server it is a
    full URL (``ws://127.0.0.1:8888/proxy/<port>/``). It never contains a
    token: a client adds one in a header, a browser sends its session cookie.

    Raises :class:`LookupError` when no Jupyter server can be found.
    """
    if not 0 < int(port) < 65536:
        raise ValueError(f"port must be 1-65535, got {port!r}")
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
    if server is None and pid is None and prefix:
        return f"{prefix.rstrip('/')}/proxy/{port}/"
    info = server if server is not None else jupyter_server(pid)
    if info is None:
        raise LookupError(
            "no Jupyter server found for this process (not under JupyterHub, and no entry of "
            "Jupyter runtime file (jpserver-*.json) has the kernel's parent pid); "
            "on a laptop connect straight to ws://127.0.0.1:<port>/"
        )
    url = info["url"].rstrip("/")
    scheme = "wss" if url.startswith("https") else "ws"
    host = url.split("://", 1)[1].split("/", 1)[0]
    base = "/" + info.get("base_url", "/").strip("/")
    base = base.rstrip("/") + "/"
    return f"{scheme}://{host}{base}proxy/{port}/"


def url_plan(port: int) -> dict[str, Any]:
    """What the browser client needs to pick a URL for a server on ``port``."""
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
    base_url = prefix
    if base_url is None:
        info = jupyter_server()
        base_url = info.get("base_url") if info else None
    return {
        "port": int(port),
        "direct_url": f"ws://127.0.0.1:{int(port)}/",
        "prefer_proxy": bool(prefix),
        "proxy_available": importlib.util.find_spec("jupyter_server_proxy") is not None,
        "base_url": base_url,
    }


def _target_port(target: Any) -> tuple[int | None, str | None, str]:
    """(port, explicit url, format) for what browser_client was given.

    Any handle in wslab's registry works (a :class:`wslab.Server`, a
    from-scratch server, a push channel's or chat room's ``.server``): it has
    ``name``, ``host``, ``port``, ``url`` and ``running``.
    """
    fmt = getattr(target, "client_format", "text")
    server = getattr(target, "server", target)
    if isinstance(server, Server) or all(hasattr(server, a) for a in ("host", "port", "running", "url")):
        if not server.running:
            name = getattr(server, "name", "this server")
            raise ValueError(f"server {name!r} is stopped: start it again, then call browser_client")
        if server.host not in _LOOPBACK and server.host not in ("0.0.0.0", "::"):
            return None, server.url, fmt
        return int(server.port), None, fmt
    if isinstance(target, int) and not isinstance(target, bool):
        return target, None, fmt
    if isinstance(target, str) and target.startswith(("ws://", "wss://")):
        return None, target, fmt
    raise TypeError(
        f"browser_client needs a wslab server (from wslab.serve), a push channel, a chat room, "
        f"a port number or a ws:// URL, got {target!r}"
    )


def browser_client(target: Any, *, title: str | None = None, nick: str | None = None) -> Any:
    """Show a live WebSocket client in this cell's output, connected to ``target``.

    ``target`` is a :class:`wslab.Server`, a :class:`wslab.PushChannel`, a chat room
    (:func:`wslab.chat_room`; pass ``nick``), a port, or a ``ws://`` URL. The
    client shows every message as text as it arrives, has a box to send, and
    shows open/close events with close codes. It connects straight to
    ``ws://127.0.0.1:<port>/`` on a laptop and through jupyter-server-proxy on
    JupyterHub or Binder.

    >>> chan = await wslab.push_channel()
    >>> wslab.browser_client(chan)
    >>> chan.push("hello, page")

    Returns an ``IPython.display.HTML`` (text outside Jupyter: nothing runs there).
    """
    port, url, fmt = _target_port(target)
    query = ""
    if fmt == "chat":
        if not nick:
            raise ValueError("a chat room needs a nickname: browser_client(room, nick='ada')")
        from urllib.parse import urlencode

        query = "?" + urlencode({"nick": nick})
    config: dict[str, Any] = {"format": fmt, "query": query}
    if url is not None:
        config["url"] = url + (query if fmt == "chat" else "")
    else:
        config.update(url_plan(port))  # type: ignore[arg-type]
    fragment = client_html(config, title=title or f"WebSocket client for port {port or url}")
    try:
        from IPython.display import HTML
    except ImportError:  # pragma: no cover - IPython comes with the kernel
        return fragment
    return HTML(fragment)

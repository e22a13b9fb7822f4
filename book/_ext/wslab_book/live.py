"""Screenshots of the parts of the lessons that only work live, taken by Chromium during the build.

Design note
-----------
A lesson's live outputs (lesson 05's page talking to the kernel and the class chat, lesson 06's
client of a from-scratch server, lesson 07's bufferedAmount figure) are HTML clients that open a WebSocket to a server in the
kernel. The kernel is gone once the lesson has run, so the book shows pictures instead, made
here: real wslab servers started in this process (each on its own loop thread, 127.0.0.1, port
0), the same client HTML the lesson shows (``wslab.classroom.browser.client_html``) served from a throwaway
HTTP server on 127.0.0.1 (a page at about:blank cannot reach loopback), and Debian's Chromium
driven by Playwright (never ``playwright install``). Every server is stopped before returning.

The pictures are taken again only when the code that draws them changed (a hash of this file
and of the wslab modules behind the clients, kept beside the PNGs), so a build with nothing
changed does not start a browser.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import http.server
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

__all__ = ["Shot", "SHOTS", "CHROMIUM", "CHROMIUM_ARGS", "take_all", "taken_at", "up_to_date"]

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = "/usr/bin/chromium"
#: The launch flags of tests/conftest.py.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
#: What the pictures depend on.
SOURCES = [Path(__file__), *(ROOT / "wslab" / m for m in (
    "classroom/browser.py", "classroom/chat.py", "server/scratch.py", "classroom/bufferdemo.py"))]
TIMEOUT_MS = 15_000


@dataclass(frozen=True)
class Shot:
    caption: str
    take: Callable[[Any, Path], None]  # (playwright browser, png path)


class _Page(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


def _serve_page(fragment: str) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = type("Page", (_Page,), {"body": (
        "<!doctype html><html><head><meta charset='utf-8'><title>wslab</title></head>"
        f"<body style='margin:8px;background:#fff'>{fragment}</body></html>").encode()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/"


def _wait_for_line(page: Any, text: str) -> None:
    page.locator(".wslab-log .wslab-line", has_text=text).first.wait_for(timeout=TIMEOUT_MS)


def _open(browser: Any, url: str, state: str = "connected") -> Any:
    """A new page at ``url`` whose client has reached ``state``."""
    page = browser.new_page()
    page.goto(url)
    page.wait_for_selector(f'.wslab-client[data-state="{state}"]', timeout=TIMEOUT_MS)
    return page


def _type(page: Any, text: str, expect: str | None = None) -> None:
    """Type ``text`` in the client's box, press Enter, and wait for ``expect`` in its log."""
    page.fill(".wslab-input", text)
    page.press(".wslab-input", "Enter")
    if expect is not None:
        _wait_for_line(page, expect)


def _snap(page: Any, png: Path, selector: str = ".wslab-client") -> None:
    page.locator(selector).first.screenshot(path=str(png))


def _client(target: Any, **kwargs: Any) -> str:
    from wslab.classroom.browser import browser_client

    shown = browser_client(target, **kwargs)
    return getattr(shown, "data", shown)


def _push(browser: Any, png: Path) -> None:
    import wslab

    chan = wslab.push_channel_in_thread(name="book-push")
    httpd, url = _serve_page(_client(chan, title="messages from the kernel"))
    try:
        page = _open(browser, url)
        for i in range(1, 4):
            chan.push(f"tick {i} from the kernel")
        _wait_for_line(page, "tick 3 from the kernel")
        _type(page, "hello, kernel", "> hello, kernel")
        _snap(page, png)
    finally:
        httpd.shutdown()
        chan.stop()


def _chat(browser: Any, png: Path) -> None:
    import wslab

    room = wslab.chat_room_in_thread(name="book-chat", history=20)
    httpd, url = _serve_page(_client(room, nick="me", title="the chat room"))
    try:
        ada = _open(browser, room.page_url, "nick")  # the room's own page asks for a nickname
        _type(ada, "ada")
        ada.wait_for_selector('.wslab-client[data-state="connected"]', timeout=TIMEOUT_MS)
        page = _open(browser, url)
        _type(ada, "hi everyone, ada here")
        _wait_for_line(page, "ada: hi everyone")
        _type(page, "hello ada", "me: hello ada")
        room.say("the exercise starts in two minutes")
        _wait_for_line(page, "the exercise starts")
        _snap(page, png)
    finally:
        httpd.shutdown()
        room.stop()


class _LoopThread:
    """An asyncio loop in a daemon thread, for the servers that start on a running loop."""

    def __enter__(self) -> "_LoopThread":
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        return self

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _echo(browser: Any, png: Path) -> None:
    import wslab

    with _LoopThread() as loop:
        server = loop.run(wslab.serve_scratch(name="scratch"))
        httpd, url = _serve_page(_client(server.port, title=f"{server.name}: from the browser"))
        try:
            page = _open(browser, url, "open")  # this server does not greet: its echo is its first word
            _type(page, "hello, server from scratch", "< hello, server from scratch")
            _snap(page, png)
        finally:
            httpd.shutdown()
            loop.run(server.aclose())


def _buffered(browser: Any, png: Path) -> None:
    import wslab.classroom.bufferdemo

    with _LoopThread() as loop:
        demo = loop.run(wslab.bufferdemo.buffered_amount_demo("buffered", pause=3))
        try:
            page = browser.new_page()
            page.goto(demo.page_url)
            page.locator(".wslab-buffered .wslab-state", has_text="done:").wait_for(timeout=4 * TIMEOUT_MS)
            _snap(page, png, ".wslab-buffered")
        finally:
            loop.run(demo.server.aclose())


SHOTS: dict[str, Shot] = {
    "push": Shot("the page's client receiving what the kernel pushes (lesson 05)", _push),
    "chat": Shot("the class chat, seen from one member's page, with another member and the "
                 "instructor talking (lesson 05)", _chat),
    "echo": Shot("the page's client talking to the from-scratch echo server (lesson 06)", _echo),
    "buffered": Shot("the page's bufferedAmount while it sends 16 MiB to a server that reads "
                     "nothing for 3 s, then everything (lesson 07)", _buffered),
}


def _key() -> str:
    digest = hashlib.sha256()
    for path in SOURCES:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def up_to_date(outdir: Path) -> bool:
    key = outdir / "key.txt"
    return (key.exists() and key.read_text().split("\n")[0] == _key()
            and all((outdir / f"{k}.png").exists() for k in SHOTS))


def taken_at(outdir: Path) -> str:
    """When the pictures in ``outdir`` were taken (UTC), as written beside them."""
    lines = (outdir / "key.txt").read_text().split("\n")
    return lines[1] if len(lines) > 1 else "an earlier build"


def take_all(outdir: Path, *, chromium: str = CHROMIUM, log: Callable[[str], None] = print) -> None:
    """Take every picture in :data:`SHOTS` into ``outdir`` (unless they are up to date)."""
    if up_to_date(outdir):
        return
    from playwright.sync_api import sync_playwright

    outdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            for kind, shot in SHOTS.items():
                context = browser.new_context(viewport={"width": 800, "height": 400}, device_scale_factor=1)
                try:
                    shot.take(context, outdir / f"{kind}.png")
                finally:
                    context.close()
        finally:
            browser.close()
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    (outdir / "key.txt").write_text(f"{_key()}\n{when}\n")
    log(f"live parts: {len(SHOTS)} screenshots by Chromium in {time.monotonic() - started:.1f} s")

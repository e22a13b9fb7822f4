"""The browser's bufferedAmount in Debian's Chromium: it grows while the server does not read,
never exceeds what the page gave send(), and falls to 0 once the server reads again
(wslab/classroom/bufferdemo.py; lesson 08, section 3). Through jupyter-server-proxy: tests/test_jupyter_proxy.py."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any, Callable, Iterator

from wslab import bufferdemo

from .conftest import seconds

#: True in the page once the server has drained everything and bufferedAmount is back to 0.
FINISHED = (
    "() => { const r = Object.values(window.wslabBuffered || {})[0]; return r && r.done "
    "&& r.samples.length && r.samples[r.samples.length - 1][1] === 0; }"
)


@contextlib.contextmanager
def running_demo(**options: Any) -> Iterator[bufferdemo.BufferDemo]:
    """The demo's server on a loop of its own in a thread (Playwright's sync API owns this one)."""
    started = threading.Event()
    holder: dict[str, Any] = {}

    def serve_forever() -> None:
        async def main() -> None:
            holder["demo"] = await bufferdemo.buffered_amount_demo("b-buffered", **options)
            holder["loop"] = asyncio.get_running_loop()
            holder["stop"] = asyncio.Event()
            started.set()
            await asyncio.wait_for(holder["stop"].wait(), seconds(60))

        asyncio.run(main())

    thread = threading.Thread(target=serve_forever, daemon=True)
    thread.start()
    assert started.wait(seconds(10)), "the demo's server did not start"
    try:
        yield holder["demo"]
    finally:
        holder["loop"].call_soon_threadsafe(holder["stop"].set)
        thread.join(seconds(10))


def record_of(chromium, url: str, during: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """Open ``url`` in a new context, wait until the page is done, return its record."""
    context = chromium.new_context()
    try:
        page = context.new_page()
        page.goto(url)
        if during is not None:
            during(page)
        page.wait_for_function(FINISHED, timeout=seconds(20) * 1000)
        return page.evaluate("() => Object.values(window.wslabBuffered)[0]")
    finally:
        context.close()


def test_buffered_amount_grows_while_the_server_does_not_read_and_drains_to_zero(chromium):
    with running_demo(pause=1.5, total=16 << 20) as demo:
        rec = record_of(chromium, demo.page_url)
    samples = rec["samples"]  # [ms since the server paused, bufferedAmount, bytes given to send()]
    paused = [s for s in samples if s[0] < demo.pause * 1000 - 100]
    assert all(0 <= amount <= sent for _, amount, sent in samples)
    assert max(a for _, a, _ in paused) > 1 << 20  # over 1 MiB queued in the browser while unread
    grow = [a for t, a, _ in paused]
    assert grow[-1] >= grow[len(grow) // 2] > 0
    assert samples[-1][1] == 0 and samples[-1][2] == demo.total
    (stats,) = demo.pages
    assert stats.done and stats.received == demo.total
    assert stats.messages == demo.total // demo.chunk

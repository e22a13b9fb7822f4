"""The browser's bufferedAmount in Debian's Chromium: it grows while the server does not read,
never exceeds what the page gave send(), and falls to 0 once the server reads again
(wslab/bufferdemo.py; lesson 07, section 6)."""

from __future__ import annotations

import asyncio
import threading

import wslab
from wslab import bufferdemo

from .conftest import seconds


def test_buffered_amount_grows_while_the_server_does_not_read_and_drains_to_zero(chromium):
    started = threading.Event()
    holder = {}

    def serve_forever():
        async def main():
            holder["demo"] = await bufferdemo.buffered_amount_demo("b-buffered", pause=1.5, total=16 << 20)
            holder["loop"] = asyncio.get_running_loop()
            holder["stop"] = asyncio.Event()
            started.set()
            await asyncio.wait_for(holder["stop"].wait(), seconds(60))

        asyncio.run(main())

    thread = threading.Thread(target=serve_forever, daemon=True)
    thread.start()
    assert started.wait(seconds(10))
    demo = holder["demo"]
    context = chromium.new_context()
    try:
        page = context.new_page()
        page.goto(demo.page_url)
        page.wait_for_function(
            "() => { const r = Object.values(window.wslabBuffered || {})[0]; return r && r.done "
            "&& r.samples.length && r.samples[r.samples.length - 1][1] === 0; }",
            timeout=seconds(20) * 1000,
        )
        rec = page.evaluate("() => Object.values(window.wslabBuffered)[0]")
    finally:
        context.close()
        holder["loop"].call_soon_threadsafe(holder["stop"].set)
        thread.join(seconds(10))
    samples = rec["samples"]  # [ms since the server paused, bufferedAmount, bytes given to send()]
    pause_ms = demo.pause * 1000
    paused = [s for s in samples if s[0] < pause_ms - 100]
    assert all(0 <= amount <= sent for _, amount, sent in samples)
    assert max(a for _, a, _ in paused) > 1 << 20  # over 1 MiB queued in the browser while unread
    grow = [a for t, a, _ in paused]
    assert grow[-1] >= grow[len(grow) // 2] > 0
    assert samples[-1][1] == 0 and samples[-1][2] == demo.total
    (stats,) = demo.pages
    assert stats.done and stats.received == demo.total
    assert stats.messages == demo.total // demo.chunk

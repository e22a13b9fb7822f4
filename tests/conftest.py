"""Shared test helpers: one time unit, a bounded asyncio runner, no servers left behind,
and Debian's Chromium for the browser tests (skipped with a how-to, or failed when required)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from typing import Any, Coroutine

import pytest

import wslab

#: Multiply every timeout by this on a slow machine: WSLAB_TIME_SCALE=3 pytest
TIME_SCALE = float(os.environ.get("WSLAB_TIME_SCALE", "1"))


def seconds(value: float) -> float:
    """A timeout, scaled for slow machines."""
    return value * TIME_SCALE


def run(coro: Coroutine[Any, Any, Any], timeout: float = 10) -> Any:
    """Run ``coro`` on a new loop, failing if it takes longer than ``timeout`` (scaled)."""

    async def bounded() -> Any:
        async with asyncio.timeout(seconds(timeout)):
            return await coro

    return asyncio.run(bounded())


def end_child(child: "subprocess.Popen[str]") -> str:
    """Close a child's stdin (its cue to stop), wait for it (kill it after 10 s); its stderr if piped."""
    child.stdin.close()
    try:
        child.wait(seconds(10))
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait(5)
    return child.stderr.read() if child.stderr is not None else ""


@pytest.fixture(autouse=True)
def _no_servers_left_behind():
    yield
    wslab.stop_all()


# Browser tests: Debian's Chromium driven by Playwright (never `playwright install`).

#: WSLAB_CHROMIUM points elsewhere (a test checks the skip/fail policy with a missing path).
CHROMIUM = os.environ.get("WSLAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def need_chromium() -> None:
    """Skip with how to get Chromium, or fail when browser tests are required.

    They are required with WSLAB_REQUIRE_BROWSER=1 or CI=true: in CI a browser
    test never skips silently.
    """
    problem = None
    try:
        import playwright  # noqa: F401
    except ImportError:
        problem = "the playwright package is missing: pip install -r requirements-test.txt"
    if problem is None and not os.path.exists(CHROMIUM):
        problem = (
            f"no Chromium at {CHROMIUM}: install Debian's (apt-get install chromium); "
            f"do not run `playwright install`"
        )
    if problem is None:
        return
    if os.environ.get("WSLAB_REQUIRE_BROWSER") == "1" or os.environ.get("CI") == "true":
        pytest.fail(f"browser tests are required here (WSLAB_REQUIRE_BROWSER=1 or CI=true): {problem}")
    pytest.skip(problem)


@pytest.fixture(scope="module")
def chromium():
    """A headless Chromium (Playwright's sync API) shared by a test module."""
    need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()

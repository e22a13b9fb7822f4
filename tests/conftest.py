"""Shared test helpers: one time unit, a bounded asyncio runner, bounded reads of a child's
output, no servers left behind, a bound on a test's Python allocations, compressed payloads
(permessage-deflate bodies, deflate bombs), and what some tests need from outside the repository
(Debian's Chromium, ../shared/rfc6455.txt): skipped with a how-to, or failed when required (CI)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import queue
import random
import subprocess
import sys
import threading
import tracemalloc
import zlib
from pathlib import Path
from typing import Any, Callable, Coroutine, Iterator, TypeVar

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

    try:
        asyncio.get_running_loop()
    except RuntimeError:  # the usual case: no loop in this thread
        return asyncio.run(bounded())
    # A loop already runs in this thread (Playwright's sync API, held by a module's browser
    # fixture, runs one): asyncio.run would refuse, so the coroutine gets a thread of its own.
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="wslab-test-run") as pool:
        return pool.submit(asyncio.run, bounded()).result()


def end_child(child: "subprocess.Popen[str]") -> str:
    """Close a child's stdin (its cue to stop), wait for it (kill it after 10 s); its stderr if piped."""
    child.stdin.close()
    try:
        child.wait(seconds(10))
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait(5)
    return child.stderr.read() if child.stderr is not None else ""


async def eventually(condition: Callable[[], bool], what: str, timeout: float = 5) -> None:
    """Wait until ``condition()`` holds, checking every 10 ms; fail saying ``what`` after ``timeout`` (scaled)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds(timeout)
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"not within {seconds(timeout):g} s: {what}")
        await asyncio.sleep(0.01)


T = TypeVar("T")


def within(read: Callable[[], T], timeout: float, what: str) -> T:
    """``read()`` (a blocking read of a child's output), failing if it takes longer than ``timeout`` (scaled).

    ``within(proc.stdout.readline, 20, "the server's port")``: the read runs in
    a daemon thread; on a timeout the test fails, and the thread ends when the
    test's clean-up stops the child (its pipe closes). Read a stream through one
    call at a time, never beside a plain ``proc.stdout`` read.
    """
    box: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)

    def reader() -> None:
        try:
            box.put((True, read()))
        except BaseException as exc:  # handed to the caller
            box.put((False, exc))

    threading.Thread(target=reader, name="wslab-test-read", daemon=True).start()
    try:
        ok, value = box.get(timeout=seconds(timeout))
    except queue.Empty:
        pytest.fail(f"{what}: nothing within {seconds(timeout):g} s")
    if not ok:
        raise value
    return value


@pytest.fixture
def bounded_memory(request):
    """Fail if the test's Python allocations ever peak above its module's ``PEAK_BYTES``."""
    limit = request.module.PEAK_BYTES
    tracemalloc.start()
    try:
        yield
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < limit, f"peak {peak:,} bytes"


def compressed(data: bytes) -> bytes:
    """``data`` as a permessage-deflate body (RFC 7692 section 7.2): raw deflate, sync-flushed, the
    ``00 00 ff ff`` tail removed."""
    c = zlib.compressobj(wbits=-15)
    return (c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]


def deflate_bomb(mebibytes: int) -> bytes:
    """About 1 KB per MiB of zeros once inflated: one full-flushed block, repeated (the sync tail stripped)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return ((c.compress(bytes(2**20)) + c.flush(zlib.Z_FULL_FLUSH)) * mebibytes)[:-4]


def random_edits(rng: random.Random, out: bytearray, *, kinds: int) -> Iterator[tuple[int, int]]:
    """One to three edits of ``out`` for a fuzzer's mutator: (which of ``kinds`` edits, at which index).

    The caller edits ``out`` in place before asking for the next, so each index is drawn within
    the edited length: ``for what, at in random_edits(rng, out, kinds=8): ...``.
    """
    for _ in range(rng.randint(1, 3)):
        yield rng.randrange(kinds), rng.randrange(len(out) + 1)


async def serve_one_answer(answer: Callable[[bytes], bytes]) -> asyncio.base_events.Server:
    """A raw HTTP server on 127.0.0.1, port 0: on each connection it reads one request head, writes
    ``answer(head)`` and closes (a client that goes away first is no error)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(answer(await reader.readuntil(b"\r\n\r\n")))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


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
    if problem is not None:
        skip_unless_required(problem, "WSLAB_REQUIRE_BROWSER", "browser tests")


def one_test_in_a_child(test: str, *, unset: tuple[str, ...] = (), **env: str) -> str:
    """Run one ``test`` (``path::name``) in a child pytest, with ``unset`` gone from its environment
    and ``env`` added; return its report (stdout, with the reasons for skips, failures and errors)."""
    child_env = {k: v for k, v in os.environ.items() if k not in unset}
    child_env.update(env)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rsfE", "-p", "no:cacheprovider", test],
        cwd=Path(__file__).resolve().parent.parent, env=child_env, capture_output=True, text=True,
        timeout=seconds(60),
    )
    return result.stdout


def skips_unless_required(flag: str, *, otherwise: str) -> pytest.MarkDecorator:
    """Parametrize a test of the skip policy with ``required, outcome``: nothing set, the test skips;
    with CI=true or ``flag``=1 it ends ``otherwise`` ("failed", or "error" when a fixture fails)."""
    return pytest.mark.parametrize("required, outcome", [({}, "skipped"), ({"CI": "true"}, otherwise),
                                                         ({flag: "1"}, otherwise)])


def ends_without(test: str, flag: str, required: dict[str, str], outcome: str, **missing: str) -> str:
    """Run one ``test`` in a child pytest with ``missing`` pointing it at nothing, CI and ``flag`` unset
    but for what ``required`` sets; fail unless it ended ``outcome`` (its report's tail then shown)."""
    report = one_test_in_a_child(test, unset=("CI", flag), **missing, **required)
    assert f"1 {outcome}" in report, report[-2000:]
    return report


def skip_unless_required(problem: str, flag: str, what: str) -> None:
    """Skip with ``problem`` (which says how to fix it), or fail when ``flag``=1 or CI=true."""
    if os.environ.get(flag) == "1" or os.environ.get("CI") == "true":
        pytest.fail(f"{what} are required here ({flag}=1 or CI=true): {problem}")
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

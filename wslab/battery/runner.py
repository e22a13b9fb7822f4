"""Running the battery: one fresh connection per case, each bounded in time.

``check_server`` runs on the caller's loop, so it can test a server that
runs on that same loop (a notebook's task-mode server). The blocking
:func:`check_server_sync` runs the battery on a loop of its own in a thread:
use it from a script or for a server in another thread or process, never for
a server that needs the calling thread's loop.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from typing import Any, Sequence

from .case import MUST, Case, Outcome, Settings
from .cases import CASES, by_name
from .report import CaseResult, Report
from .wire import Eof, Failed, Probe, Unreachable

__all__ = ["check_server", "check_server_sync", "run_case", "DEFAULT_MAX_SIZE", "DEFAULT_TIMEOUT"]

#: The message size limit the battery assumes, in bytes (websockets' default).
DEFAULT_MAX_SIZE = 2**20

#: How long one case may take before it fails with "no answer", in seconds.
DEFAULT_TIMEOUT = 5.0


def _target(url: str) -> tuple[str, int, str]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "ws":
        raise ValueError(f"the battery speaks plain ws:// only, got {url!r}: pass the server's ws:// url (srv.url)")
    if parts.hostname is None:
        raise ValueError(f"no host in {url!r}: write ws://127.0.0.1:PORT/")
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    return parts.hostname, parts.port or 80, path


async def run_case(case: Case, host: str, port: int, path: str, settings: Settings) -> CaseResult:
    """Run one case on a fresh connection; whatever happens, the connection is closed."""
    probe = Probe(host, port, path)
    out = Outcome()
    unreachable = False
    started = time.monotonic()
    try:
        async with asyncio.timeout(settings.timeout):
            if case.opens:
                await probe.open()
            happened = await case.run(probe, settings, out)
        held = True
    except TimeoutError:
        held, happened = False, f"no answer within {settings.timeout:g} s"
        if probe.seen:
            happened += f" (received only: {', '.join(probe.seen)})"
    except Unreachable as exc:
        held, happened, unreachable = False, str(exc), True
    except Failed as exc:
        held, happened = False, str(exc)
    except Eof as exc:
        held, happened = False, f"the server closed the TCP connection ({exc})"
    except OSError as exc:
        held, happened = False, f"connection error: {exc}"
    finally:
        await probe.aclose()
    result = CaseResult(
        case.name,
        passed=held or case.level != MUST,
        expected=case.expected,
        happened=happened,
        rfc=case.section,
        seconds=time.monotonic() - started,
        level=case.level,
        quote=case.quote,
        held=held,
        skipped=out.skipped,
        notes=out.notes,
        unreachable=unreachable,
    )
    return result


async def check_server(
    server: Any,
    *,
    max_size: int | None = DEFAULT_MAX_SIZE,
    timeout: float = DEFAULT_TIMEOUT,
    cases: Sequence[str] | None = None,
) -> Report:
    """Run the battery against an echo server; return a :class:`Report`.

    ``server`` is a ``ws://`` URL or a handle with ``.url`` (``wslab.serve``,
    ``wslab.serve_scratch``...): then exceptions its code raised during the
    battery go into ``report.server_errors``. ``max_size`` is the server's
    message size limit in bytes: every case whose message is over it expects
    a refusal, and ``None`` skips the oversized case; ``timeout`` bounds each
    case, in seconds; ``cases`` picks cases by name. When nothing listens,
    the report says so in one line (``report.error``).

    >>> report = await wslab.check_server(srv.url, max_size=2**20)
    >>> report.failed
    []
    """
    url = server if isinstance(server, str) else server.url
    host, port, path = _target(url)
    chosen = by_name(list(cases) if cases is not None else None)
    errors = getattr(server, "errors", None)
    errors_before = len(errors) if errors is not None else 0
    settings = Settings(max_size, timeout)
    musts = [c.name for c in chosen if c.level == MUST]
    results = []
    for case in chosen:
        result = await run_case(case, host, port, path, settings)
        if not results and result.unreachable:
            # Nothing listens: one line, not a row per case.
            return Report(url, [], max_size, error=f"{result.happened}: is the server running?", must_cases=musts)
        results.append(result)
    report = Report(url, results, max_size)
    if errors is not None:
        report.server_errors = list(errors[errors_before:])
    return report


def check_server_sync(
    server: Any,
    *,
    max_size: int | None = DEFAULT_MAX_SIZE,
    timeout: float = DEFAULT_TIMEOUT,
    cases: Sequence[str] | None = None,
) -> Report:
    """Like :func:`check_server`, blocking, on an event loop in a thread of its own.

    For a script, or a server in another thread or process
    (``wslab.serve_in_thread``). A task-mode server on the calling thread's
    loop cannot answer while this blocks: for that, ``await check_server(...)``.
    """
    loop = _running_loop()
    if loop is not None and getattr(server, "_loop", None) is loop:
        raise RuntimeError(
            f"{getattr(server, 'name', 'this server')!r} runs on this cell's event loop, which "
            f"check_server_sync() would block: write `report = await wslab.check_server(srv)`"
        )
    from ..servers import LoopThread

    runner = LoopThread("battery")
    try:
        budget = timeout * (len(cases) if cases is not None else len(CASES)) + 5
        return runner.run(check_server(server, max_size=max_size, timeout=timeout, cases=cases), budget)
    finally:
        runner.stop()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None

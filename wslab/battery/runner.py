"""Running the battery: one fresh connection per case, each bounded in time, the whole run too.

Design note
-----------
* **Bounded in time.** Each case gets ``timeout`` seconds; the run as a
  whole gets :func:`budget` (``timeout`` per case, plus one for a
  heartbeat): cases that would start after it is spent are reported "not
  run", with the reason. ``timeout`` must be finite, positive and at most
  :data:`MAX_TIMEOUT`.
* **A silent server is recognised early.** When a case times out without
  one byte from the server (nothing at all, or nothing after the 101), a
  heartbeat follows: a fresh connection, a valid handshake, one text
  message. A server that answers it is alive and the battery goes on; one
  that stays silent gets the rest of the cases reported "not run" instead
  of one timeout each. Silent from the first byte, it is reported like
  an unreachable server (``report.error``; the command exits 2).
* **Rules on every frame.** Violations seen on any connection of the run
  (:mod:`.watch`) fail the case that names the rule (``Case.watches``).

``check_server`` runs on the caller's loop, so it can test a server that
runs on that same loop (a notebook's task-mode server). The blocking
:func:`check_server_sync` runs the battery on a loop of its own in a thread:
use it from a script or for a server in another thread or process, never for
a server that needs the calling thread's loop.
"""

from __future__ import annotations

import asyncio
import math
import time
import urllib.parse
from typing import Any, Sequence

from ..course.i18n import N_
from ..course.i18n import gettext as _
from .case import MUST, Case, Outcome, Settings
from .cases import CASES, by_name
from .phrase import Phrase, said
from .report import CaseResult, Report
from .craft import TEXT, encode_frame
from .wire import Eof, Failed, Probe, Unreachable

__all__ = [
    "check_server",
    "check_server_sync",
    "run_case",
    "budget",
    "check_timeout",
    "DEFAULT_MAX_SIZE",
    "DEFAULT_TIMEOUT",
    "MAX_TIMEOUT",
]

#: The message size limit the battery assumes, in bytes (websockets' default).
DEFAULT_MAX_SIZE = 2**20

#: How long one case may take before it fails with "no answer", in seconds.
DEFAULT_TIMEOUT = 5.0

#: The longest ``timeout`` the battery takes, in seconds (a whole run then stays within hours, not forever).
MAX_TIMEOUT = 120.0


def check_timeout(timeout: float, *, name: str = "timeout") -> float:
    """``timeout`` as a float, or ValueError naming it when it is not finite, positive, at most MAX_TIMEOUT."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise ValueError(_("{name} {value} is not a number: give the seconds per case, e.g. {example}").format(
            name=name, value=repr(timeout), example=f"{DEFAULT_TIMEOUT:g}"))
    if not (math.isfinite(timeout) and 0 < timeout <= MAX_TIMEOUT):
        raise ValueError(_("{name} {value} is not a number of seconds above 0 and at most {most}: "
                           "give the seconds per case, e.g. {example}").format(
            name=name, value=repr(timeout), most=f"{MAX_TIMEOUT:g}", example=f"{DEFAULT_TIMEOUT:g}"))
    return float(timeout)


def budget(timeout: float, cases: int) -> float:
    """The most a run of ``cases`` cases may take, in seconds: ``timeout`` each, and one heartbeat."""
    return timeout * (cases + 1)


def _target(url: str) -> tuple[str, int, str]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "ws":
        raise ValueError(_("the battery speaks plain ws:// only, got {url}: pass the server's ws:// url "
                           "(srv.url)").format(url=repr(url)))
    if parts.hostname is None:
        raise ValueError(_("no host in {url}: write ws://127.0.0.1:PORT/").format(url=repr(url)))
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    return parts.hostname, parts.port or 80, path


async def run_case(case: Case, host: str, port: int, path: str, settings: Settings) -> CaseResult:
    """Run one case on a fresh connection; whatever happens, the connection is closed."""
    probe = Probe(host, port, path)
    out = Outcome()
    unreachable = silent = False
    started = time.monotonic()
    try:
        async with asyncio.timeout(settings.timeout):
            if case.opens:
                await probe.open()
            happened = await case.run(probe, settings, out)
        held = True
    except TimeoutError:
        held, happened = False, Phrase(N_("no answer within {seconds:g} s"), seconds=settings.timeout)
        if probe.seen:
            happened = Phrase(N_("no answer within {seconds:g} s (received only: {frames})"),
                              seconds=settings.timeout, frames=_listed(probe.seen))
        silent = probe.received == probe.received_at_open
    except Unreachable as exc:
        held, happened, unreachable = False, said(exc), True
    except Failed as exc:
        held, happened = False, said(exc)
    except Eof as exc:
        held, happened = False, Phrase(N_("the server closed the TCP connection ({reason})"), reason=str(exc))
    except OSError as exc:
        held, happened = False, Phrase(N_("connection error: {error}"), error=str(exc))
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
    result.silent = silent
    result.answered = probe.received > 0
    result.violations = list(probe.violations)
    return result


async def heartbeat(host: str, port: int, path: str, timeout: float) -> str | None:
    """None when the server answers a valid handshake and a text message; else what it did not answer.

    Any answer counts: an HTTP refusal, a frame, a closed connection. Only
    silence until ``timeout`` (or nothing accepting connections) does not.
    """
    probe = Probe(host, port, path)
    try:
        async with asyncio.timeout(timeout):
            await probe.open()
            await probe.send(encode_frame(TEXT, b"are you there?"))
            await probe.next_frame()
    except TimeoutError:
        if probe.received == 0:
            return Phrase(N_("a valid handshake got no answer within {seconds:g} s"), seconds=timeout)
        return Phrase(N_("after its 101, a text message got no answer within {seconds:g} s"), seconds=timeout)
    except Unreachable as exc:
        return said(exc)
    except (Failed, Eof, OSError):
        pass  # it answered, if only to refuse or hang up
    finally:
        await probe.aclose()
    return None


def _listed(items: Sequence[str]) -> Phrase:
    """``items`` joined with ", ", each shown in the learner's language where it can be."""
    names = [f"item{i}" for i in range(len(items))]
    return Phrase(", ".join("{%s}" % name for name in names), **dict(zip(names, items)))


def not_run(case: Case, why: str) -> CaseResult:
    """The row of a case the battery did not run: a MUST counts as failed."""
    return CaseResult(case.name, passed=case.level != MUST, expected=case.expected,
                      happened=Phrase(N_("not run: {why}"), why=why),
                      rfc=case.section, level=case.level, quote=case.quote, held=False, unreachable=True)


def apply_watches(chosen: list[Case], results: list[CaseResult]) -> None:
    """A violation seen on any connection fails the case that watches its kind (see :mod:`.watch`)."""
    for case, result in zip(chosen, results):
        if not case.watches or not result.held or result.skipped:
            continue
        found = next(((other.name, text) for other in results
                      for kind, text in other.violations if kind in case.watches), None)
        if found is not None:
            result.held, result.passed = False, case.level != MUST
            result.happened = Phrase(N_("the server sent {what} (in case {case!r})"), what=found[1],
                                     case=Phrase(found[0]))


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
    timeout = check_timeout(timeout)
    if max_size is not None and (isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1):
        raise ValueError(_("max_size {value} is not a positive number of bytes: give the server's limit, "
                           "or None for no limit").format(value=repr(max_size)))
    chosen = by_name(list(cases) if cases is not None else None)
    errors = getattr(server, "errors", None)
    errors_before = len(errors) if errors is not None else 0
    settings = Settings(max_size, timeout)
    musts = [c.name for c in chosen if c.level == MUST]
    deadline = time.monotonic() + budget(timeout, len(chosen))
    results: list[CaseResult] = []
    for i, case in enumerate(chosen):
        if time.monotonic() + timeout > deadline:
            why = Phrase(N_("the battery's time budget ({seconds:g} s) is spent"),
                         seconds=budget(timeout, len(chosen)))
            results += [not_run(c, why) for c in chosen[i:]]
            break
        result = await run_case(case, host, port, path, settings)
        if not results and result.unreachable:
            # Nothing listens: every case not run, and one line of text.
            error = Phrase(N_("{what}: is the server running?"), what=result.happened)
            return Report(url, [not_run(c, error) for c in chosen], max_size, error=error, must_cases=musts)
        results.append(result)
        if time.monotonic() + timeout > deadline:
            continue  # no time for a heartbeat: the next round reports the rest not run
        if result.silent and (why := await heartbeat(host, port, path, timeout)) is not None:
            if not any(r.answered for r in results):
                error = Phrase(N_("the server accepts TCP connections but answers nothing: {why}; is a WebSocket "
                                  "server listening at {url}?"), why=why, url=url)
                return Report(url, [not_run(c, error) for c in chosen], max_size, error=error, must_cases=musts)
            why = Phrase(N_("the server went silent ({case!r} timed out, then {why})"), case=Phrase(case.name), why=why)
            results += [not_run(c, why) for c in chosen[i + 1:]]
            break
    apply_watches(chosen, results)
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
            _("{name} runs on this cell's event loop, which check_server_sync() would block: "
              "write `report = await wslab.check_server(srv)`").format(name=repr(getattr(server, "name", "this server")))
        )
    from ..server.background import LoopThread

    runner = LoopThread("battery")
    try:
        limit = budget(check_timeout(timeout), len(cases) if cases is not None else len(CASES)) + 5
        return runner.run(check_server(server, max_size=max_size, timeout=timeout, cases=cases), limit)
    finally:
        runner.stop()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None

"""``python -m wslab battery URL``: the battery from a shell, for a person or a grading script.

Exit status: 0 when every MUST holds (SHOULD notes never fail), 1 when a
MUST fails, 2 when the server cannot be tested (nothing listens, or it
answers nothing at all) or the arguments are wrong: a bad url, a
``--timeout`` that is not a finite number of seconds in (0, 120], a
negative ``--max-size``, a ``--junit`` file that cannot be written (checked
before any case runs). ``--json`` prints the report as JSON instead of a
table; ``--junit FILE`` also writes JUnit XML (one test case per case) for
CI or nbgrader-style tools.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from ..course.i18n import ArgumentParser
from ..course.i18n import gettext as _
from .runner import DEFAULT_MAX_SIZE, DEFAULT_TIMEOUT, MAX_TIMEOUT, _target, check_server, check_timeout

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """``python -m wslab battery ws://HOST:PORT/ [--max-size N] [--timeout S] [--json] [--junit FILE]``."""
    parser = ArgumentParser(
        prog="python -m wslab battery",
        description=_("Run the RFC 6455 protocol battery against a WebSocket echo server. "
                      "Exit status: 0 every MUST holds, 1 a MUST fails, 2 the server cannot be reached."),
    )
    parser.add_argument("url", help=_("the server's ws:// url, e.g. ws://127.0.0.1:8765/"))
    parser.add_argument("--max-size", type=int, default=DEFAULT_MAX_SIZE,
                        help=_("the server's message size limit in bytes (default {default}): "
                               "messages over it must be refused; 0 means no limit: every message must "
                               "come back, and the oversized case is skipped").format(default=DEFAULT_MAX_SIZE))
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=_("seconds per case (default {default}, at most {most})").format(
                            default=f"{DEFAULT_TIMEOUT:g}", most=f"{MAX_TIMEOUT:g}"))
    parser.add_argument("--json", action="store_true", help=_("print the report as JSON"))
    parser.add_argument("--junit", metavar="FILE", type=Path,
                        help=_("also write the report as JUnit XML to FILE"))
    args = parser.parse_args(argv)
    if args.max_size < 0:
        parser.error(_("--max-size {value} is negative: give the limit in bytes, or 0 to skip").format(
            value=args.max_size))
    try:
        _target(args.url)  # a bad url is an argument error; nothing else the battery raises is
        check_timeout(args.timeout, name="--timeout")
    except ValueError as exc:
        parser.error(str(exc))
    junit = None
    if args.junit is not None:
        try:  # refused now, not after the run: a grading loop must not lose a report to a typo
            junit = args.junit.open("w", encoding="utf-8")
        except OSError as exc:
            parser.error(_("--junit {file} cannot be written ({reason}): "
                           "give a file in a directory that exists and is writable").format(
                file=repr(str(args.junit)), reason=exc.strerror or exc))
    try:
        report = asyncio.run(check_server(args.url, max_size=args.max_size or None, timeout=args.timeout))
        print(report.to_json(indent=2) if args.json else report)
        if junit is not None:
            junit.write(report.to_junit())
    finally:
        if junit is not None:
            junit.close()
    if report.error is not None:
        return 2
    return 0 if report.passed else 1

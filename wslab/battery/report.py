"""The battery's report: one row per case, MUST failures apart from SHOULD notes; JSON, JUnit XML.

A row's mark says how its rule fared:

* ``✓`` the case held (notes of a lower level may still be attached);
* ``✗`` a MUST failed: the server breaks RFC 6455 (``report.failed``);
* ``!`` a SHOULD was not followed: a note, the server still passes;
* ``~`` something usual but not required was not done: a remark;
* ``-`` skipped, not applicable: ``max_size=None`` skips the oversized case,
  and a server that declines binary messages with close 1003 (7.4.1) skips
  the binary echoes;
* ``?`` not run (nothing listens, the server went silent, or the run's time
  budget is spent): a MUST not run counts as failed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
import re
from xml.sax.saxutils import escape as _escape
from xml.sax.saxutils import quoteattr as _quoteattr

from ..course.checks import CheckFailed
from ..course.display import Table
from ..course.i18n import gettext as _
from .case import MUST, SHOULD, USUAL, Note, Rule
from .phrase import shown

__all__ = ["CaseResult", "Report", "MARKS"]

# Characters XML 1.0 cannot hold at all, even escaped (NUL, most C0 controls, lone surrogates).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_safe(text: str) -> str:
    return _NOT_XML.sub(lambda m: repr(m.group())[1:-1], text)


def escape(text: str) -> str:
    """XML text: escaped, and any character XML cannot hold shown as ``\\xNN``."""
    return _escape(_xml_safe(text))


def quoteattr(text: str) -> str:
    """An XML attribute value, quoted, as :func:`escape`."""
    return _quoteattr(_xml_safe(text))


MARKS = {"pass": "✓", "fail": "✗", SHOULD: "!", USUAL: "~", "skipped": "-", "error": "?"}


@dataclass
class CaseResult:
    """What one case expected and what happened.

    ``passed`` is false only for a MUST that failed. A SHOULD or usual case
    that did not hold has ``held`` false and ``passed`` true.
    """

    name: str
    passed: bool
    expected: str
    happened: str
    rfc: str = ""  # the section, e.g. "5.5.1"
    seconds: float = 0.0
    level: str = MUST
    quote: str = ""
    held: bool = True
    skipped: bool = False
    notes: list[Note] = field(default_factory=list)
    unreachable: bool = False  # the case did not run: nothing listened, or the server went silent before it
    # What the runner needs to know about the case's connection (not part of the report):
    silent: bool = field(default=False, repr=False, compare=False)  # timed out with nothing from the server
    answered: bool = field(default=False, repr=False, compare=False)  # the server sent at least one byte
    violations: list[tuple[str, str]] = field(default_factory=list, repr=False, compare=False)

    @property
    def section(self) -> str:
        return self.rfc

    @property
    def mark(self) -> str:
        if self.unreachable:
            return MARKS["error"]
        if self.skipped:
            return MARKS["skipped"]
        if not self.passed:
            return MARKS["fail"]
        levels = {n.level for n in self.notes} | (set() if self.held else {self.level})
        if SHOULD in levels:
            return MARKS[SHOULD]
        if USUAL in levels:
            return MARKS[USUAL]
        return MARKS["pass"]

    @property
    def status(self) -> str:
        """``pass``, ``fail`` (a MUST), ``note`` (a lower level did not hold), ``skipped``, ``error`` (not run)."""
        if self.unreachable:
            return "error"
        if self.skipped:
            return "skipped"
        if not self.passed:
            return "fail"
        return "pass" if self.held else "note"

    def all_notes(self) -> list[Note]:
        """The notes, with the case's own rule first when a SHOULD or usual case did not hold."""
        own = [] if self.held or self.level == MUST or self.unreachable else [
            Note(Rule(self.level, self.rfc, self.quote), self.happened)]
        return own + self.notes

    def __str__(self) -> str:
        """One line in the learner's language; the RFC's words stay English (a quote)."""
        text = _("{mark} {name}: {happened}").format(mark=self.mark, name=shown(self.name),
                                                     happened=shown(self.happened))
        if not self.passed:
            text += _(" (expected {expected}; RFC 6455 {section}: {quote})").format(
                expected=shown(self.expected), section=self.rfc, quote=self.quote)
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "level": self.level,
            "section": self.rfc,
            "quote": self.quote,
            "status": self.status,
            "passed": self.passed,
            "expected": self.expected,
            "happened": self.happened,
            "notes": [{"level": n.level, "section": n.rule.section, "quote": n.rule.quote, "text": n.text}
                      for n in self.all_notes()],
            "seconds": round(self.seconds, 4),
        }


@dataclass
class Report:
    """The battery's results: a table in Jupyter, text elsewhere.

    ``report.passed`` is true when every MUST held; ``report.failed`` names
    the cases whose MUST failed; ``report.notes`` are the SHOULD notes and
    usual-behaviour remarks (never failures); ``report["text echo"]`` is one
    :class:`CaseResult`; ``report.assert_passed()`` raises
    :class:`wslab.CheckFailed` naming the failures. ``report.error`` is set
    when the server could not be reached at all (then there are no rows).
    """

    url: str
    results: list[CaseResult]
    max_size: int | None = 2**20
    server_errors: list[BaseException] = field(default_factory=list)
    error: str | None = None
    must_cases: list[str] = field(default_factory=list)  # what would have run, when error is set

    # Verdicts

    @property
    def passed(self) -> bool:
        return self.error is None and all(r.passed for r in self.results)

    @property
    def failed(self) -> list[str]:
        """The cases whose MUST failed (every MUST case when nothing could be reached)."""
        if self.error is not None:
            return list(self.must_cases)
        return [r.name for r in self.results if not r.passed]

    @property
    def musts(self) -> tuple[int, int]:
        """(MUST cases that held, MUST cases run); skipped cases are not counted."""
        if self.error is not None:
            return 0, len(self.must_cases)
        run = [r for r in self.results if r.level == MUST and not r.skipped]
        return sum(r.passed for r in run), len(run)

    @property
    def notes(self) -> list[tuple[str, Note]]:
        """(case name, note) for every SHOULD note and usual remark, SHOULD first."""
        found = [(r.name, n) for r in self.results for n in r.all_notes()]
        return sorted(found, key=lambda item: item[1].level != SHOULD)

    @property
    def should_notes(self) -> list[tuple[str, Note]]:
        return [(name, n) for name, n in self.notes if n.level == SHOULD]

    def __getitem__(self, name: str) -> CaseResult:
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(_("no case named {name}; the cases are {names}").format(
            name=repr(name), names=[r.name for r in self.results]))

    def __len__(self) -> int:
        return len(self.results)

    @property
    def summary(self) -> str:
        if self.error is not None:
            return _("could not test {url}: {error}").format(url=self.url, error=shown(self.error))
        held, total = self.musts
        should = len(self.should_notes)
        usual = len(self.notes) - should
        text = _("{held} of {total} MUSTs hold against {url}; {should} SHOULD note(s), "
                 "{usual} remark(s) on usual behaviour").format(
            held=held, total=total, url=self.url, should=should, usual=usual)
        skipped = [shown(r.name) for r in self.results if r.skipped and not r.unreachable]
        if skipped:
            text += _("; not applicable: {cases}").format(cases=", ".join(skipped))
        not_run = [r for r in self.results if r.unreachable]
        if not_run:
            text += _("; {count} case(s) {happened}").format(count=len(not_run), happened=shown(not_run[0].happened))
        if self.server_errors:
            first = self.server_errors[0]
            text += _("; the server's code raised {count} exception(s), first: {type}: {error}").format(
                count=len(self.server_errors), type=type(first).__name__, error=first)
        return text

    # Shown

    def table(self, *, quotes: bool = True) -> Table:
        columns = ["", _("case"), _("level"), "RFC 6455", _("what happened")] + ([_("the RFC's words")] if quotes else [])
        rows = []
        for r in self.results:  # in the learner's language; the RFC's words stay English (a quote)
            happened = shown(r.happened) if r.passed else _("{happened}; expected {expected}").format(
                happened=shown(r.happened), expected=shown(r.expected))
            happened += "".join(f" [{n.shown()}]" for n in r.notes)
            rows.append([r.mark, shown(r.name), r.level, r.rfc, happened] + ([r.quote] if quotes else []))
        return Table(columns, rows, title=self.summary, empty=self.summary)

    def __str__(self) -> str:
        if self.error is not None:
            return self.summary
        lines = [str(self.table(quotes=False))]
        failed = [r for r in self.results if not r.passed]
        if failed:
            lines.append("")
            lines.append(_("MUST failures:"))
            lines += ["  ✗ " + _("{name}: RFC 6455 {section}: \"{quote}\"").format(
                name=shown(r.name), section=r.rfc, quote=r.quote) for r in failed]
        if self.notes:
            lines.append("")
            lines.append(_("Notes (not failures):"))
            lines += [f"  {MARKS[n.level]} " + _("{name}: {text} (RFC 6455 {section}: \"{quote}\")").format(
                name=shown(name), text=shown(n.text), section=n.rule.section, quote=n.rule.quote)
                      for name, n in self.notes]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()

    # For graders

    def as_dict(self) -> dict[str, Any]:
        held, total = self.musts
        return {
            "url": self.url,
            "passed": self.passed,
            "musts_held": held,
            "musts_total": total,
            "failed": self.failed,
            "should_notes": [{"case": name, "section": n.rule.section, "text": n.text} for name, n in self.should_notes],
            "error": self.error,
            "max_size": self.max_size,
            "cases": [r.as_dict() for r in self.results],
        }

    def to_json(self, **kwargs: Any) -> str:
        """The report as JSON: ``passed``, ``musts_held``/``musts_total``, ``failed``, one object per case."""
        return json.dumps(self.as_dict(), ensure_ascii=False, **kwargs)

    def to_junit(self, suite: str | None = None) -> str:
        """The report as JUnit XML: one ``<testcase>`` per case; only MUST failures are ``<failure>``.

        SHOULD notes and remarks go in the test case's ``<system-out>``;
        a skipped case is ``<skipped/>``; a case not run (an unreachable or
        silent server, a spent time budget) is an ``<error>``, as in
        :meth:`to_json` (``"status": "error"``).
        """
        name = suite or f"wslab battery {self.url}"
        cases = []
        for r in self.results:
            body = ""
            if r.unreachable:
                body += f"<error message={quoteattr(r.happened)} type=\"not run\"/>"
            elif r.skipped:
                body += f"<skipped message={quoteattr(r.happened)}/>"
            elif not r.passed:
                message = f"{r.happened}; expected {r.expected}"
                body += (f"<failure message={quoteattr(message)} type=\"MUST\">"
                         f"{escape(f'RFC 6455 {r.rfc}: {r.quote}')}</failure>")
            notes = r.all_notes()
            out = [f"{r.level} (RFC 6455 {r.rfc}): {r.happened}"] + [
                f"{n.level} note (RFC 6455 {n.rule.section}): {n.text}" for n in notes
            ]
            body += f"<system-out>{escape(chr(10).join(out))}</system-out>"
            section = r.rfc.split(",")[0].replace(".", "_")
            cases.append(
                f'  <testcase classname="rfc6455.section_{section}" name={quoteattr(r.name)} '
                f'time="{r.seconds:.3f}">{body}</testcase>'
            )
        errors = sum(r.unreachable for r in self.results)
        failures = sum(not r.passed and not r.unreachable for r in self.results)
        skipped = sum(r.skipped and not r.unreachable for r in self.results)
        total_time = sum(r.seconds for r in self.results)
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<testsuite name={quoteattr(name)} tests="{len(self.results)}" failures="{failures}" '
            f'errors="{errors}" skipped="{skipped}" time="{total_time:.3f}">\n' + "\n".join(cases) + "\n</testsuite>\n"
        )

    def assert_passed(self) -> None:
        """Raise unless every MUST held (SHOULD notes never raise).

        A server whose code raised ``NotImplementedError`` (an exercise stub)
        re-raises it, so ``wslab.exercise`` reports "not done yet".
        """
        for exc in self.server_errors:
            if isinstance(exc, NotImplementedError):
                raise exc
        if self.error is not None:
            raise CheckFailed(self.summary)
        if not self.passed:
            failing = [r for r in self.results if not r.passed]
            listed = "; ".join(
                _("{name} (RFC 6455 {section}): {happened}, expected {expected}").format(
                    name=shown(r.name), section=r.rfc, happened=_clip(shown(r.happened)),
                    expected=_clip(shown(r.expected)))
                for r in failing[:3]
            )
            more = _("; and {count} more").format(count=len(failing) - 3) if len(failing) > 3 else ""
            held, total = self.musts
            raise CheckFailed(
                _("{failed} of {total} MUSTs failed: {shown}{more}. The report's table lists every case "
                  "with the RFC's words: show it with `report` in a cell, and fix the first failure first").format(
                    failed=total - held, total=total, shown=listed, more=more)
            )


def _clip(text: str, limit: int = 160) -> str:
    """One case's words for a one-paragraph failure message: at most ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."

"""Instant self-checks for exercises.

A check says what is wrong in a sentence that names the values: "your accept
key for 'dGhl...' was 'abc'; expected 's3pP...'", never a bare
``AssertionError``. Three pieces:

* ``check(condition, message)`` and ``check_equal(actual, expected, what)``
  raise :class:`CheckFailed` with that sentence; a sentence that names values
  takes them as keywords, ``check(ok, "your key was {key!r}", key=key)``
  (``str.format`` fields: the sentence is looked up, then filled);
* ``with exercise("2.1"):`` wraps an exercise's checks: it prints
  ``✓ Exercise 2.1 passed``, or, when the learner has not written the code
  yet (the stub raises ``NotImplementedError``), says plainly that it is not
  done yet *without* failing, so the rest of the lesson still runs;
* ``with expect(SomeError):`` is for cells that must fail: it shows the error
  and fails only when nothing (or something else) was raised.

``assert_done("2.1")`` fails unless the exercise passed; the lessons put it in
nbgrader's hidden tests, so graders (and the test suite, on the solution
notebooks) see an unsolved exercise as a failure.

Every sentence a learner reads goes through :mod:`wslab.course.i18n`: a
lesson run from ``notebooks/zh-CN/`` (or with ``WSLAB_LANG=zh_CN``) answers in
Chinese while its code cells stay byte-identical to the English lesson's. The
sentence a code cell passes to ``check`` or ``check_equal`` is looked up too:
:func:`wslab.course.translation.update` extracts those literals from the
lessons into the package catalog. An f-string cannot be looked up (its text is
made before the check sees it): a lesson writes the sentence with ``{fields}``
and passes the values as keywords instead.
"""

from __future__ import annotations

import re
import sys
from types import TracebackType
from typing import Any, Self

from .i18n import N_
from .i18n import gettext as _

__all__ = ["CheckFailed", "check", "check_equal", "exercise", "expect", "assert_done", "LEGACY_ATTRIBUTES"]

#: Exercise label -> "passed" | "not done" | "failed".
results: dict[str, str] = {}
#: The states above as a learner reads them (translated when shown).
_STATES = {"passed": N_("passed"), "not done": N_("not done"), "failed": N_("failed"),
           "not checked": N_("not checked")}


class CheckFailed(AssertionError):
    """A self-check failed; the message says what was wrong."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows this instead of a traceback: the message is the point.
        return [f"\x1b[31m✗ {self}\x1b[0m"]


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _lesson_text(text: str, values: dict[str, Any]) -> str:
    """A sentence a lesson's code cell wrote, in the learner's language when the catalog has it.

    With ``values``, the sentence is a ``str.format`` template, filled after the lookup.
    """
    translated = _(text) if text else text  # gettext("") would be the catalog's header
    return translated.format(**values) if values else translated


def check(condition: Any, message: str, /, **values: Any) -> None:
    """Fail with ``message`` unless ``condition`` is true.

    ``values`` fill the ``{fields}`` of ``message`` (after it is translated):
    ``check(n < 5, "{n} clients are still connected", n=n)``.
    """
    if not condition:
        raise CheckFailed(_lesson_text(message, values))


def check_equal(actual: Any, expected: Any, what: str, /, **values: Any) -> None:
    """Fail unless ``actual == expected``; the message reads "<what> was X; expected Y".

    ``values`` fill the ``{fields}`` of ``what``, as for :func:`check`.
    """
    if actual != expected:
        raise CheckFailed(_("{what} was {actual}; expected {expected}").format(
            what=_lesson_text(what, values), actual=_short(actual), expected=_short(expected)))


class _Judged:
    """A ``with`` block judged when it ends (``_judge``): :class:`exercise` and :class:`expect`."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        return self._judge(exc)

    def _judge(self, exc: BaseException | None) -> bool:
        raise NotImplementedError


class exercise(_Judged):
    """Run an exercise's checks and report in one line.

    >>> with exercise("2.1"):
    ...     check_equal(my_accept_key(KEY), ACCEPT, f"your accept key for {KEY!r}")
    """

    def __init__(self, label: str) -> None:
        self.label = label

    def _judge(self, exc: BaseException | None) -> bool:
        label = self.label
        if exc is None:
            results[label] = "passed"
            print(_("✓ Exercise {label} passed").format(label=label))
            return False
        if isinstance(exc, NotImplementedError):
            results[label] = "not done"
            print(_(
                "◻ Exercise {label} is not done yet: replace `raise NotImplementedError` "
                "in the exercise cell with your code, run that cell, then run this one again"
            ).format(label=label))
            return True  # not done is not an error: the lesson goes on
        results[label] = "failed"
        if isinstance(exc, CheckFailed):
            raise CheckFailed(_failed(label, str(exc))) from None
        if isinstance(exc, AssertionError):
            detail = str(exc) or _("an assert in the check cell failed")
            raise CheckFailed(_failed(label, detail)) from exc
        legacy = _legacy_api(exc)
        if legacy:
            raise CheckFailed(_failed(label, legacy)) from None
        return False  # a bug in the learner's code: show its traceback


#: Attributes of the legacy websockets connection (websockets 10, the article's API) that the
#: new asyncio implementation (the default since 14.0) does not have, and what replaced them
#: (websockets' "Upgrade to the new asyncio implementation" guide).
LEGACY_ATTRIBUTES = {
    "request_headers": "connection.request.headers",
    "response_headers": "connection.response.headers",
    "path": "connection.request.path",
    "open": "connection.state is State.OPEN (from websockets.protocol import State)",
    "closed": "connection.state is State.CLOSED (from websockets.protocol import State)",
    "messages": "connection.recv() or async for message in connection",
}


def _failed(label: str, detail: str) -> str:
    return _("Exercise {label}: {detail}").format(label=label, detail=detail)


def _legacy_api(exc: BaseException) -> str | None:
    """A sentence for an AttributeError that comes from the article's (legacy) websockets API."""
    if not isinstance(exc, AttributeError) or exc.name not in LEGACY_ATTRIBUTES:
        return None
    try:
        from websockets.asyncio.connection import Connection
    except ImportError:  # pragma: no cover - websockets is a dependency
        return None
    if not isinstance(exc.obj, Connection):
        return None
    return _("your code reads `.{name}` on a connection, an attribute of the legacy websockets API "
             "(websockets 10, the article's); today's connections have {modern} instead").format(
        name=exc.name, modern=LEGACY_ATTRIBUTES[exc.name])


def assert_done(label: str) -> None:
    """Fail unless exercise ``label`` passed its check in this kernel."""
    state = results.get(label, "not checked")
    check(state == "passed", _("exercise {label} is {state}").format(label=label, state=_(_STATES.get(state, state))))


class expect(_Judged):
    """A block that must raise ``error`` (optionally with ``match`` in its message).

    ``hint`` says what to do when nothing was raised.

    >>> with expect(ValueError, match="port"):
    ...     int("port")
    """

    def __init__(self, error: type[BaseException], match: str | None = None, *, hint: str | None = None) -> None:
        self.error = error
        self.match = match
        self.hint = hint  # what to do when nothing was raised, for a learner
        self.caught: BaseException | None = None

    def _judge(self, exc: BaseException | None) -> bool:
        name = self.error.__name__
        if exc is None:
            raise CheckFailed(_("expected {name}, but nothing was raised").format(name=name)
                              + (_(": {hint}").format(hint=self.hint) if self.hint else ""))
        if not isinstance(exc, self.error):
            return False  # something else went wrong: let it show
        if self.match is not None and not re.search(self.match, str(exc)):
            raise CheckFailed(
                _("{name} was raised, but its message {message} does not mention {match}").format(
                    name=name, message=repr(str(exc)), match=repr(self.match))
            ) from exc
        self.caught = exc
        print(_("✓ raised {name}: {error}").format(name=type(exc).__name__, error=exc), file=sys.stdout)
        return True

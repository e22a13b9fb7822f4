"""The battery's sentences: English for the machines, the learner's language on screen.

Design note
-----------
A case's result is read twice: by a grader (``report.to_json()``, JUnit
XML, ``report.failed``), which needs the same English text in every
language, and by a learner (the text report, the notebook table), who
should read it in their language. A :class:`Phrase` serves both: it *is*
the English string (a ``str``, so JSON, comparisons and ``in`` see exactly
the text of before), and it keeps the template it was made from and its
values, so :func:`shown` can look the template up with gettext and fill
it again. Values stay as given (a close reason, a header value, a payload:
what the server sent is shown as sent), except values that are phrases
themselves (a server frame is kept as its :meth:`phrase`, a few words):
those are shown in the learner's language too.

Mark a template with ``N_`` where it is written, so it is extracted into
``wslab.po``: ``Phrase(N_("HTTP {status} {reason}"), status=status, reason=reason)``.
A case's name and its fixed "expected" text are plain strings marked with
``N_``: :func:`shown` looks any plain string up as it is.
"""

from __future__ import annotations

from typing import Any

from ..course.i18n import gettext

__all__ = ["Phrase", "shown", "said"]


class Phrase(str):
    """The English text of ``template.format(**values)``, remembering ``template`` and ``values``."""

    template: str
    values: dict[str, Any]

    def __new__(cls, template: str, /, **values: Any) -> Phrase:
        # A value that can say itself in a phrase (a server frame) is kept as that phrase: a few words,
        # never the frame's payload (up to a MiB), so a report of many cases stays small.
        values = {key: value.phrase() if callable(getattr(value, "phrase", None)) else value
                  for key, value in values.items()}
        self = super().__new__(cls, template.format(**values) if values else template)
        self.template, self.values = template, values
        return self

    def shown(self) -> str:
        """The text in the current language (:func:`wslab.course.i18n.language`)."""
        template = gettext(self.template)
        if not self.values:
            return template
        return template.format(**{key: _value(value) for key, value in self.values.items()})


def _value(value: Any) -> Any:
    return value.shown() if isinstance(value, Phrase) else value


def shown(text: str) -> str:
    """``text`` as a learner reads it: a :class:`Phrase` filled in their language, a plain string looked up.

    A plain string is a case's name or a fixed sentence marked with ``N_``;
    one with no translation (or nothing to translate) is returned unchanged.
    """
    if isinstance(text, Phrase):
        return text.shown()
    return gettext(text) if text else text


def said(exc: BaseException) -> str:
    """What an exception says: its :class:`Phrase` when it was raised with one, else ``str(exc)``."""
    if len(exc.args) == 1 and isinstance(exc.args[0], Phrase):
        return exc.args[0]
    return str(exc)

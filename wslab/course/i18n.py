"""The package's messages in the learner's language (standard library gettext only).

A lesson's code cells are byte-identical in every language, so a message a
check prints cannot be chosen by the notebook: the package picks the language
when it looks a message up. The first of these that says something wins:

1. ``WSLAB_LANG`` (``zh_CN``; ``en`` or ``C`` forces English);
2. the working directory: a Jupyter kernel starts in its notebook's folder, so
   a kernel running a lesson from ``notebooks/zh-CN/`` (any folder named
   ``zh-CN`` on the way up) answers in Chinese;
3. gettext's own environment: ``LANGUAGE``, ``LC_ALL``, ``LC_MESSAGES``, ``LANG``.

Design note: the choice is made on every lookup (a learner may ``%cd`` or set
``WSLAB_LANG`` in a running kernel) and cached on those inputs, so a lookup
costs one ``os.getcwd()`` and a dict hit. The catalog is
``wslab/course/locale/<lang>/LC_MESSAGES/wslab.mo``, compiled from the ``.po`` beside
it by :func:`wslab.course.translation.update` and committed (as Django does);
a test checks it matches the ``.po``. English is the source text: with no
catalog for the language, a message is returned unchanged.

:func:`ArgumentParser` is argparse with its own words ("usage:", "options",
the commonest errors) looked up here too: argparse asks gettext's global
``messages`` domain, which a library must not take over.
"""

from __future__ import annotations

import argparse
import gettext as _gettext
import os
import re
import sys
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["DOMAIN", "LOCALEDIR", "LESSON_FOLDERS", "language", "gettext", "ngettext", "N_",
           "ArgumentParser", "_"]

DOMAIN = "wslab"
LOCALEDIR = Path(__file__).resolve().parent / "locale"
#: Lesson folder name -> gettext language: a kernel whose working directory is inside one
#: speaks that language.
LESSON_FOLDERS = {"zh-CN": "zh_CN"}
_ENGLISH = {"en", "en_US", "en_GB", "C", "POSIX"}
_ENV = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")

_choice_cache: dict[tuple[Any, ...], str | None] = {}
_catalogs: dict[str | None, _gettext.NullTranslations] = {}


def _cwd() -> str:
    try:
        return os.getcwd()
    except OSError:  # the working directory was removed
        return ""


def _normalise(value: str) -> str:
    # zh_CN.UTF-8 -> zh_CN, zh-CN -> zh_CN
    return value.split(".", 1)[0].split("@", 1)[0].replace("-", "_")


def language() -> str | None:
    """The language messages are shown in now: ``"zh_CN"``, ..., or None for English."""
    env = tuple(os.environ.get(name) for name in ("WSLAB_LANG", *_ENV))
    key = (*env, _cwd())
    if key not in _choice_cache:
        if len(_choice_cache) > 64:  # bounded: a long session that keeps changing folders
            _choice_cache.clear()
        _choice_cache[key] = _choose(env[0], key[-1], env[1:])
    return _choice_cache[key]


def _choose(forced: str | None, cwd: str, env: tuple[str | None, ...]) -> str | None:
    if forced:
        lang = _normalise(forced)
        return None if lang in _ENGLISH else lang
    for part in reversed(Path(cwd).parts):
        if part in LESSON_FOLDERS:
            return LESSON_FOLDERS[part]
    for value in env:  # gettext's order; LANGUAGE may list several, colon-separated
        if value:
            for item in value.split(":"):  # the first one named wins; English is a language too
                lang = _normalise(item)
                if lang:
                    return None if lang in _ENGLISH else lang
            return None
    return None


def _catalog() -> _gettext.NullTranslations:
    lang = language()
    if lang not in _catalogs:
        if lang is None:
            _catalogs[lang] = _gettext.NullTranslations()
        else:  # zh_CN falls back to zh, then to the English text
            _catalogs[lang] = _gettext.translation(DOMAIN, LOCALEDIR, languages=[lang], fallback=True)
    return _catalogs[lang]


def gettext(message: str) -> str:
    """``message`` in the current :func:`language` (unchanged when it has no translation)."""
    return _catalog().gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The singular or plural form for ``n``, in the current language."""
    return _catalog().ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Mark ``message`` for extraction without translating it yet (translate when shown)."""
    return message


_ = gettext

# argparse's own words, as its source writes them (Python 3.11-3.13): marked here so they are
# extracted into the catalog, looked up by ArgumentParser below.
_ARGPARSE_ERRORS = [
    (N_("the following arguments are required: %s"), r"the following arguments are required: (.+)"),
    (N_("unrecognized arguments: %s"), r"unrecognized arguments: (.+)"),
    (N_("argument %s: invalid %s value: %s"), r"argument (\S+): invalid (\w+) value: (.+)"),
    (N_("argument %s: expected one argument"), r"argument (\S+): expected one argument"),
    (N_("argument %s: invalid choice: %s"), r"argument (\S+): invalid choice: (.+)"),
]


def _translated_argparse_error(message: str) -> str:
    for msgid, pattern in _ARGPARSE_ERRORS:
        match = re.fullmatch(pattern, message, re.S)
        if match:
            return gettext(msgid) % match.groups()
    return message


class _HelpFormatter(argparse.HelpFormatter):
    def add_usage(self, usage: Any, actions: Any, groups: Any, prefix: str | None = None) -> None:
        super().add_usage(usage, actions, groups, gettext("usage: ") if prefix is None else prefix)


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose own words are in the current language.

    Give it help texts already passed through :func:`gettext`; the language is
    the one in force when the parser is made.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        add_help = kwargs.pop("add_help", True)
        super().__init__(*args, add_help=False, **kwargs)
        self._positionals.title = gettext("positional arguments")
        self._optionals.title = gettext("options")
        if add_help:
            self.add_argument("-h", "--help", action="help", default=argparse.SUPPRESS,
                              help=gettext("show this help message and exit"))

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, gettext("%(prog)s: error: %(message)s\n")
                  % {"prog": self.prog, "message": _translated_argparse_error(message)})

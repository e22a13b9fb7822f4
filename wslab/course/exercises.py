"""Learner copies of the lessons: solutions out, stubs in.

The lessons are written once, in ``instructor/source/``, the way nbgrader
expects a source notebook: an exercise's solution sits between
``# BEGIN SOLUTION`` and ``# END SOLUTION`` in a cell whose metadata says
``nbgrader.solution = true``, and the check cell after it may hold hidden
tests between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``.

From a source notebook this module makes a learner copy:

* each solution region becomes a stub that raises ``NotImplementedError``, so
  the lesson still runs top to bottom and the check says "not done yet";
* hidden tests are removed;
* outputs and execution counts are cleared;
* with ``solutions=True`` (the self-study edition in ``notebooks/``), a
  folded "Solution" block follows each exercise cell; without it (copies for
  a class) there is no solution code anywhere, and the sentence that promises
  folded solutions (``SOLUTIONS_NOTE``) says the instructor has them instead.

``python -m wslab exercises`` rebuilds ``notebooks/`` from the sources;
``python -m wslab exercises --no-solutions --out DIR`` makes class copies.
``python -m wslab exercises --translations`` then also merges the English
into the translation catalogs and builds the translated lessons
(``notebooks/zh-CN/``; see :mod:`wslab.course.translation`).
It never writes over a learner's answers: a copy that changed since wslab
wrote it is left alone and named, unless ``--force`` (see :mod:`wslab.course.safewrite`).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import nbformat

from .i18n import ArgumentParser
from .i18n import gettext as _
from .safewrite import LearnerWorkError, write_files

__all__ = ["learner_copy", "build"]

BEGIN_SOLUTION = "# BEGIN SOLUTION"
END_SOLUTION = "# END SOLUTION"
BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"
END_HIDDEN = "### END HIDDEN TESTS"

_REGION = re.compile(
    rf"^(?P<indent>[ \t]*){re.escape(BEGIN_SOLUTION)}[^\n]*\n(?P<body>.*?)^[ \t]*{re.escape(END_SOLUTION)}[^\n]*(\n|$)",
    re.M | re.S,
)
#: The sentence each lesson's exercise intro uses for the self-study edition, and what a
#: class copy (no solutions) says instead.
SOLUTIONS_NOTE = "A folded solution follows each check."
CLASS_NOTE = "Your instructor has the solutions."

_HIDDEN = re.compile(
    rf"^[ \t]*{re.escape(BEGIN_HIDDEN)}[^\n]*\n.*?^[ \t]*{re.escape(END_HIDDEN)}[^\n]*(\n|$)",
    re.M | re.S,
)


def _label(cell: Any) -> str:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "this exercise")


def _stub(match: re.Match[str]) -> str:
    indent = match["indent"]
    return f'{indent}# YOUR CODE HERE\n{indent}raise NotImplementedError("not done yet")\n'


def _without_markers(source: str) -> str:
    """The solution cell as the instructor wrote it, minus the marker lines."""
    lines = [
        line
        for line in source.splitlines()
        if line.strip() not in (BEGIN_SOLUTION, END_SOLUTION)
    ]
    return "\n".join(lines)


def _has_solution(cell: Any) -> bool:
    return cell.cell_type == "code" and BEGIN_SOLUTION in cell.source


def learner_copy(nb: Any, *, solutions: bool) -> Any:
    """Return a learner copy of source notebook ``nb`` (see the module doc)."""
    out = copy.deepcopy(nb)
    cells = []
    pending = None  # a solution block waiting for its check cell to pass by
    for cell in out.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            if BEGIN_HIDDEN in cell.source:
                cell.source = _HIDDEN.sub("", cell.source).rstrip("\n")
        elif not solutions and cell.cell_type == "markdown":
            cell.source = cell.source.replace(SOLUTIONS_NOTE, CLASS_NOTE)
        if _has_solution(cell):
            original = cell.source
            if END_SOLUTION not in original:
                raise ValueError(f"cell {_label(cell)!r}: {BEGIN_SOLUTION} without {END_SOLUTION}")
            cell.source = _REGION.sub(_stub, original).rstrip("\n")
            cells.append(cell)
            if solutions:
                pending = nbformat.v4.new_markdown_cell(
                    "<details><summary><b>Solution</b> (try first; click to open)</summary>\n\n"
                    f"```python\n{_without_markers(original).strip()}\n```\n\n</details>",
                    metadata={"wslab": {"solution_for": _label(cell)}},
                )
                pending.id = f"{cell.get('id', _label(cell))}-solution"[-64:]
            continue
        cells.append(cell)
        if pending is not None:
            # Show the solution after the check cell that follows the exercise.
            cells.append(pending)
            pending = None
    if pending is not None:
        cells.append(pending)
    out.cells = cells
    return out


def _notebook_bytes(nb: Any) -> bytes:
    text = nbformat.writes(nb)
    return (text if text.endswith("\n") else text + "\n").encode("utf-8")


def build(source_dir: Path, out_dir: Path, *, solutions: bool, force: bool = False) -> list[Path]:
    """Write a learner copy of every ``*.ipynb`` in ``source_dir`` to ``out_dir``.

    Raises :class:`wslab.course.safewrite.LearnerWorkError`, writing nothing, when a
    copy in ``out_dir`` changed since wslab wrote it (a learner's answers),
    unless ``force``.
    """
    files = {
        path.name: _notebook_bytes(learner_copy(nbformat.read(path, as_version=4), solutions=solutions))
        for path in sorted(source_dir.glob("*.ipynb"))
    }
    if not files:
        return []
    return write_files(out_dir, files, force=force)


def main(argv: list[str] | None = None) -> int:
    """``python -m wslab exercises [--source DIR] [--out DIR] [--no-solutions] [--translations]``."""
    import sys

    root = Path.cwd()
    parser = ArgumentParser(
        prog="python -m wslab exercises",
        description=_("Make learner copies of the lesson notebooks (solutions replaced by stubs)."),
    )
    parser.add_argument("--source", type=Path, default=root / "instructor" / "source",
                        help=_("folder of source notebooks (default: instructor/source)"))
    parser.add_argument("--out", type=Path, default=None,
                        help=_("where to write the copies (default: notebooks/, or class-copies/ "
                               "with --no-solutions)"))
    parser.add_argument("--no-solutions", action="store_true",
                        help=_("leave out the folded solutions: copies to hand out in a class"))
    parser.add_argument("--force", action="store_true",
                        help=_("overwrite copies that changed since wslab wrote them (a learner's "
                               "answers are lost)"))
    parser.add_argument("--translations", action="store_true",
                        help=_("also update the translation catalogs (translations/LANG/*.po, the package's "
                               "wslab.po and .mo) and build the translated lessons in notebooks/zh-CN/ "
                               "(every lesson whose translation has started; refused while an entry is "
                               "untranslated or fuzzy)"))
    parser.add_argument("--lang", default="zh_CN", help=_("the language for --translations (default zh_CN)"))
    parser.add_argument("--partial", action="store_true",
                        help=_("with --translations: build unfinished translations too, their untranslated "
                               "and fuzzy paragraphs left in English (a translator's draft; never commit it)"))
    args = parser.parse_args(argv)
    if args.partial and not args.translations:
        parser.error(_("--partial goes with --translations: add --translations"))
    if not args.source.is_dir():
        parser.error(_("no source folder {folder}: run this from the repository's top folder "
                       "or pass --source").format(folder=args.source))
    out = args.out or root / ("class-copies" if args.no_solutions else "notebooks")
    try:
        written = build(args.source, out, solutions=not args.no_solutions, force=args.force)
    except LearnerWorkError as exc:
        print(f"! {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"= wrote {path}")
    if not written:
        print(_("! no notebooks in {folder}").format(folder=args.source))
        return 1
    if args.translations:
        if args.out is not None or args.no_solutions:
            print(_("! --translations builds from notebooks/: leave out --out and --no-solutions"), file=sys.stderr)
            return 1
        return _translations(root, lang=args.lang, partial=args.partial, force=args.force)
    return 0


def _translations(root: Path, *, lang: str, partial: bool, force: bool) -> int:
    """Update the catalogs of ``lang``, build its lessons and pages, print what is left to translate."""
    import sys

    from . import pages, translation

    for path in [*translation.update(lang, root=root), *pages.update(lang, root=root)]:
        print(f"= updated {path}")
    try:
        written = translation.build(lang, root=root, partial=partial, force=force)
        written += pages.build(lang, root=root, partial=partial, force=force)  # after the lessons: it links them
    except (translation.TranslationIncomplete, LearnerWorkError) as exc:
        print(f"! {exc}", file=sys.stderr)
        print(translation.check(lang, root=root))
        return 1
    for path in written:
        print(f"= wrote {path}")
    print(translation.check(lang, root=root))
    return 0

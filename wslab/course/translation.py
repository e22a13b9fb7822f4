"""Translated lessons and messages: gettext PO catalogs beside the English source.

The English learner copies in ``notebooks/`` stay the only source of code and
structure. Their prose is cut into units, one gettext entry each, in a catalog
per lesson, ``translations/<lang>/<lesson stem>.po`` (the layout of the CPython
documentation's translations, which Poedit, Weblate and Transifex read):

* a markdown cell is cut into blocks: paragraphs separated by blank lines; a
  heading line is a block of its own; a table (consecutive lines) stays one
  block; a fenced code block is code and is never translated, nor is a block
  with no words outside code, tags and link targets (``</details>``);
* ``msgid`` is the English block exactly; ``#.`` names the cell id and block,
  ``#:`` the notebook and cell index;
* code cells are not in the catalogs: the translated notebook has them byte
  for byte, with the same cell ids.

Three steps, the gettext ones:

* :func:`update` extracts the units into a template and merges it into each
  catalog with Babel's ``Catalog.update``: a changed English block makes its
  entry fuzzy (the old translation kept, to be reviewed), a removed one
  obsolete (``#~``, kept); no translation is ever dropped. It does the same for
  the package's messages (``wslab/course/locale/<lang>/LC_MESSAGES/wslab.po``,
  extracted with Babel's Python extractor, with the literal sentences the
  lessons' code cells pass to ``check`` and ``check_equal``: the code stays
  English, :mod:`wslab.course.checks` looks the sentence up) and compiles the ``.mo``;
* :func:`build` writes ``notebooks/<folder>/<stem>.ipynb`` (``zh-CN``) from the
  English copy and the catalog, for every lesson whose translation has
  started; it raises :class:`TranslationIncomplete`, naming the entries and
  writing nothing, while one is untranslated or fuzzy (``partial=True`` keeps
  their English, for drafting). Links are rewritten for a folder one level
  down: a lesson with a translated copy stays a sibling, anything else gets
  ``../``, and a page of :data:`PAGES` (``../README.md``) becomes its translation
  when there is one (:mod:`wslab.course.pages` builds those);
* :func:`check` reports untranslated, fuzzy and obsolete entries per catalog.

Design note: a learner's copy is never overwritten (:mod:`wslab.safewrite`,
as ``python -m wslab exercises`` does); catalogs are merged, never replaced,
and rewritten only when their bytes change, so running ``update`` twice leaves
git clean. Babel is needed here only, by whoever updates catalogs (it is in
requirements-test.txt); the package reads ``.mo`` files with the standard
library (:mod:`wslab.course.i18n`).
"""

from __future__ import annotations

import contextlib
import copy
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import nbformat

try:
    from babel.messages.catalog import Catalog
    from babel.messages.extract import DEFAULT_KEYWORDS, extract, extract_from_file
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po, write_po
except ImportError as exc:  # pragma: no cover - Babel is in requirements-test.txt
    raise ImportError("the translation tools need Babel: python -m pip install babel") from exc

from .safewrite import write_files
from .i18n import DOMAIN, LESSON_FOLDERS

__all__ = ["TranslationIncomplete", "Unit", "CatalogReport", "Report", "split_blocks", "lesson_units",
           "update", "build", "check", "folder_for", "catalog_path", "messages_path", "compile_mo",
           "PAGES", "page_name"]

#: The repository this module belongs to (an editable install, or a checkout on PYTHONPATH).
ROOT = Path(__file__).resolve().parent.parent.parent
#: The Markdown pages a learner reads, translated like the lessons (:mod:`wslab.course.pages`):
#: ``translations/<lang>/<file stem>.po`` -> :func:`page_name` beside the English page.
PAGES = ("README.md", "instructor/GUIDE.md", "instructor/CLASSROOM.md")

_FENCE = re.compile(r"^[ \t]*(```|~~~)")
_HEADING = re.compile(r"^#{1,6}[ \t]")
_NOT_WORDS = re.compile(r"`[^`]*`|<[^>]+>|\]\([^)]*\)|https?://\S+")
_LINK = re.compile(r"(\]\(|(?:href|src)=\")([^)\"\s]+)")
#: The self-checks whose sentence a lesson's code cell writes (wslab.course.checks looks it up in the
#: package catalog, so the code cell stays English and the learner reads Chinese): argument numbers.
#: An f-string with substitutions cannot be looked up, and stays English.
CHECK_KEYWORDS = {"check": (2,), "check_equal": (3,)}


class TranslationIncomplete(ValueError):
    """Entries a complete build needs: ``error.entries`` lists ``(stem, state, where, English)``."""

    def __init__(self, entries: list[tuple[str, str, str, str]]) -> None:
        self.entries = entries
        shown = "; ".join(f"{stem} {where} {state}: {_preview(text)!r}" for stem, state, where, text in entries[:12])
        more = f"; and {len(entries) - 12} more" if len(entries) > 12 else ""
        super().__init__(f"{len(entries)} entries untranslated or fuzzy: {shown}{more}; translate them "
                         f"(and clear the fuzzy flag once reviewed), or build with partial=True "
                         f"(--partial) for a draft")


def _preview(text: str, limit: int = 60) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def folder_for(lang: str) -> str:
    """The lessons folder of gettext language ``lang``: ``zh_CN`` -> ``zh-CN``."""
    for folder, code in LESSON_FOLDERS.items():
        if code == lang:
            return folder
    return lang.replace("_", "-")


def page_name(page: str, lang: str) -> str:
    """The translated copy of English ``page``, beside it: ``instructor/GUIDE.md`` -> ``instructor/GUIDE.zh-CN.md``."""
    stem, dot, suffix = page.rpartition(".")
    return f"{stem}.{folder_for(lang)}{dot}{suffix}"


def catalog_path(root: Path, lang: str, stem: str) -> Path:
    """``translations/<lang>/<stem>.po`` under ``root``."""
    return root / "translations" / lang / f"{stem}.po"


def messages_path(root: Path, lang: str) -> Path:
    """The package catalog, ``wslab/course/locale/<lang>/LC_MESSAGES/wslab.po``, under ``root``."""
    return root / "wslab" / "course" / "locale" / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


# -- Cutting markdown into units ------------------------------------------------------------

def split_blocks(source: str) -> list[tuple[str, str]]:
    """Cut markdown ``source`` into ``(kind, text)`` pieces whose texts join back to ``source``.

    ``kind`` is ``"unit"`` (prose to translate), ``"code"`` (a fenced block),
    ``"keep"`` (a wordless block) or ``"space"`` (the line breaks between).

    >>> split_blocks("# Title\\nSome *prose*.\\n\\n</details>")
    [('unit', '# Title'), ('space', '\\n'), ('unit', 'Some *prose*.'), ('space', '\\n\\n'), ('keep', '</details>')]
    """
    pieces: list[tuple[str, str]] = []
    block: list[str] = []

    def space(text: str) -> None:
        if pieces and pieces[-1][0] == "space":
            pieces[-1] = ("space", pieces[-1][1] + text)
        else:
            pieces.append(("space", text))

    def flush(kind: str | None = None) -> None:
        if not block:
            return
        text = "".join(block)
        body = text.rstrip("\n")
        if kind is None:
            kind = "unit" if re.search(r"[^\W\d_]", _NOT_WORDS.sub(" ", body)) else "keep"
        pieces.append((kind, body))
        if len(text) > len(body):
            space(text[len(body):])
        block.clear()

    lines = source.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            flush()
            block.append(line)
            i += 1
            while i < len(lines):  # bounded by the cell's lines; an unclosed fence runs to the end
                block.append(lines[i])
                i += 1
                if lines[i - 1].strip().startswith(fence[1]):
                    break
            flush("code")
            continue
        if not line.strip():
            flush()
            space(line)
        elif _HEADING.match(line):
            flush()
            block.append(line)
            flush()
        else:
            block.append(line)
        i += 1
    flush()
    assert "".join(text for _, text in pieces) == source
    return pieces


@dataclass(frozen=True)
class Unit:
    """One translatable block of a lesson."""

    text: str
    cell_id: str
    index: int  # the cell's position in the notebook
    block: int  # the unit's position in the cell, from 1

    @property
    def where(self) -> str:
        return f"cell {self.cell_id} block {self.block}"


def lesson_units(nb: Any) -> Iterator[Unit]:
    """Every translatable block of notebook ``nb``, in order."""
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        number = 0
        for kind, text in split_blocks(cell.source):
            if kind == "unit":
                number += 1
                yield Unit(text, cell.get("id", str(index)), index, number)


def _lessons(root: Path) -> list[Path]:
    return sorted((root / "notebooks").glob("*.ipynb"))


# -- update ---------------------------------------------------------------------------------

def _new_catalog(lang: str, project: str) -> Catalog:
    return Catalog(locale=lang, domain=DOMAIN, project="wslab", version=project,
                   copyright_holder="the wslab authors", language_team=f"wslab {lang}",
                   header_comment=f"# wslab {project}: the {lang} translation.\n"
                                  f"# This file is distributed under the same license as wslab.\n#",
                   fuzzy=False)


def _read(path: Path, lang: str) -> Catalog:
    with path.open("rb") as fh:
        return read_po(fh, locale=lang, domain=DOMAIN)


def _po_bytes(catalog: Catalog) -> bytes:
    out = io.BytesIO()
    write_po(out, catalog, width=76, include_previous=True)
    return out.getvalue()


def _merge(path: Path, lang: str, template: Catalog, project: str) -> bool:
    """Merge ``template`` into the catalog at ``path`` (made if missing); True if it changed."""
    old = path.read_bytes() if path.exists() else None
    catalog = _read(path, lang) if old is not None else _new_catalog(lang, project)
    catalog.update(template, update_creation_date=False)  # the header changes only when a message does
    data = _po_bytes(catalog)
    if data == old:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return True


def _lesson_template(path: Path) -> Catalog:
    template = Catalog(domain=DOMAIN, project=path.stem, fuzzy=False)
    for unit in lesson_units(nbformat.read(path, as_version=4)):
        template.add(unit.text, locations=[(f"notebooks/{path.name}", unit.index)],
                     auto_comments=[unit.where])
    return template


def _messages_template(package: Path, lessons: list[Path]) -> Catalog:
    """The package's marked strings, and the sentences the lessons' code cells give the checks."""
    template = Catalog(domain=DOMAIN, project="wslab", fuzzy=False)
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent).as_posix()
        for lineno, message, comments, context in extract_from_file(
                "python", path, keywords=DEFAULT_KEYWORDS, comment_tags=("Translators:",),
                strip_comment_tags=True):
            # The file, not the line: a message that moves within its module is not a change.
            template.add(message, locations=[(rel, None)], auto_comments=comments, context=context,
                         flags=("python-format",) if "%" in str(message) else ())
    for path in lessons:
        for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
            if cell.cell_type != "code":
                continue
            with contextlib.redirect_stderr(io.StringIO()):  # Babel warns of each f-string it skips
                found = list(extract("python", io.BytesIO(cell.source.encode("utf-8")), keywords=CHECK_KEYWORDS))
            for _lineno, message, _comments, _context in found:
                template.add(message, locations=[(f"notebooks/{path.name}", None)],
                             auto_comments=[f"a check's sentence in lesson {path.stem[:2]}, cell {cell.get('id')}"])
    return template


def compile_mo(po: Path) -> bytes:
    """The ``.mo`` bytes for catalog ``po`` (fuzzy entries left out, as msgfmt does)."""
    with po.open("rb") as fh:
        catalog = read_po(fh)
    out = io.BytesIO()
    write_mo(out, catalog, use_fuzzy=False)
    return out.getvalue()


def update(lang: str = "zh_CN", *, root: Path = ROOT) -> list[Path]:
    """Merge the current English into every catalog of ``lang``; return the files changed.

    One catalog per lesson in ``root/notebooks``, and the package's message
    catalog (when ``root/wslab`` exists), whose ``.mo`` is recompiled.
    """
    changed = []
    for path in _lessons(root):
        po = catalog_path(root, lang, path.stem)
        if _merge(po, lang, _lesson_template(path), path.stem):
            changed.append(po)
    if (root / "wslab").is_dir():
        po = messages_path(root, lang)
        if _merge(po, lang, _messages_template(root / "wslab", _lessons(root)), "wslab messages"):
            changed.append(po)
        mo = po.with_suffix(".mo")
        data = compile_mo(po)
        if not mo.exists() or mo.read_bytes() != data:
            mo.write_bytes(data)
            changed.append(mo)
    return changed


# -- check ----------------------------------------------------------------------------------

@dataclass
class CatalogReport:
    """The state of one catalog: entries by state, each as "where: English"."""

    name: str
    total: int = 0
    untranslated: list[str] = field(default_factory=list)
    fuzzy: list[str] = field(default_factory=list)
    obsolete: list[str] = field(default_factory=list)

    @property
    def translated(self) -> int:
        return self.total - len(self.untranslated) - len(self.fuzzy)

    @property
    def complete(self) -> bool:
        return not self.untranslated and not self.fuzzy


@dataclass
class Report:
    """:func:`check`'s answer; ``str(report)`` is a table, one catalog a line."""

    lang: str
    catalogs: list[CatalogReport]

    def __str__(self) -> str:
        lines = [f"{'catalog':<55} {'done':>9} {'untransl.':>9} {'fuzzy':>6} {'obsolete':>8}"]
        for c in self.catalogs:
            lines.append(f"{c.name:<55} {c.translated:>4}/{c.total:<4} {len(c.untranslated):>9} "
                         f"{len(c.fuzzy):>6} {len(c.obsolete):>8}")
        return "\n".join(lines)


def _entries(catalog: Catalog) -> Iterator[Any]:
    return (m for m in catalog if m.id)  # the header is the entry with an empty msgid


def _where(message: Any) -> str:
    return message.auto_comments[0] if message.auto_comments else ", ".join(f"{f}:{n}" for f, n in message.locations)


def _report(name: str, catalog: Catalog) -> CatalogReport:
    report = CatalogReport(name)
    for message in _entries(catalog):
        report.total += 1
        text = message.id if isinstance(message.id, str) else message.id[0]
        if message.fuzzy:
            report.fuzzy.append(f"{_where(message)}: {text}")
        elif not (message.string if isinstance(message.string, str) else all(message.string)):
            report.untranslated.append(f"{_where(message)}: {text}")
    report.obsolete = [m.id if isinstance(m.id, str) else m.id[0] for m in catalog.obsolete.values()]
    return report


def check(lang: str = "zh_CN", *, root: Path = ROOT) -> Report:
    """Untranslated, fuzzy and obsolete entries of every catalog of ``lang`` (run :func:`update` first)."""
    reports = []
    for po in sorted((root / "translations" / lang).glob("*.po")):
        reports.append(_report(po.stem, _read(po, lang)))
    messages = messages_path(root, lang)
    if messages.exists():
        reports.append(_report(messages.relative_to(root).as_posix(), _read(messages, lang)))
    return Report(lang, reports)


# -- build ----------------------------------------------------------------------------------

def _localize_links(text: str, siblings: set[str], pages: dict[str, str]) -> str:
    """Rewrite ``text``'s relative links for a copy one folder below the English lesson
    (``pages``: an English page's link from the lesson -> its translation's)."""

    def fix(match: re.Match[str]) -> str:
        target = match[2]
        path, hash_, fragment = target.partition("#")
        if not path or re.match(r"^[a-z][a-z0-9+.-]*:|^/", path):
            return match[0]  # a url, an anchor in this page, or an absolute path
        if path in siblings:
            return match[0]
        path = pages.get(path, path)
        return f"{match[1]}../{path}{hash_}{fragment}"

    return _LINK.sub(fix, text)


def _translate_cell(source: str, lookup: Any, siblings: set[str], pages: dict[str, str]) -> str:
    out = []
    for kind, text in split_blocks(source):
        if kind == "unit":
            text = lookup(text)
        if kind != "code":
            text = _localize_links(text, siblings, pages)
        out.append(text)
    return "".join(out)


def _translation(catalog: Catalog, text: str) -> str | None:
    message = catalog.get(text)
    if message is None or message.fuzzy or not message.string:
        return None
    return message.string


def build(lang: str = "zh_CN", *, root: Path = ROOT, partial: bool = False,
          force: bool = False) -> list[Path]:
    """Write the translated copy of every lesson whose translation has started; return the paths.

    Raises :class:`TranslationIncomplete` (writing nothing) while an entry of
    such a lesson is untranslated or fuzzy, unless ``partial`` (those blocks
    stay English); :class:`wslab.safewrite.LearnerWorkError` when a copy
    changed since wslab wrote it, unless ``force``.
    """
    out_dir = root / "notebooks" / folder_for(lang)
    pages = {f"../{page}": f"../{page_name(page, lang)}" for page in PAGES if (root / page_name(page, lang)).exists()}
    started: dict[Path, Catalog] = {}
    for path in _lessons(root):
        po = catalog_path(root, lang, path.stem)
        if po.exists():
            catalog = _read(po, lang)
            if any(_translation(catalog, m.id) for m in _entries(catalog)):
                started[path] = catalog
    siblings = {path.name for path in started}
    files: dict[str, bytes] = {}
    missing: list[tuple[str, str, str, str]] = []
    for path, catalog in started.items():
        nb = nbformat.read(path, as_version=4)
        for unit in lesson_units(nb):
            if _translation(catalog, unit.text) is None:
                message = catalog.get(unit.text)
                state = "fuzzy" if message is not None and message.fuzzy else "untranslated"
                missing.append((path.stem, state, unit.where, unit.text))

        def lookup(text: str, catalog: Catalog = catalog) -> str:
            return _translation(catalog, text) or text

        copy_ = copy.deepcopy(nb)
        for cell in copy_.cells:
            if cell.cell_type == "markdown":
                cell.source = _translate_cell(cell.source, lookup, siblings, pages)
            elif cell.cell_type == "code":
                cell.outputs = []
                cell.execution_count = None
        text = nbformat.writes(copy_)
        files[path.name] = (text if text.endswith("\n") else text + "\n").encode("utf-8")
    if missing and not partial:
        raise TranslationIncomplete(missing)
    if not files:
        return []
    return write_files(out_dir, files, force=force)

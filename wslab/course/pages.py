"""Translated Markdown pages: README.md and the instructor pages through catalogs, like the lessons.

A page of :data:`~wslab.course.translation.PAGES` (``README.md``,
``instructor/GUIDE.md``, ``instructor/CLASSROOM.md``) is one markdown text cut
into the lessons' units (:func:`~wslab.course.translation.split_blocks`:
paragraphs, headings, tables; fenced code never translated), one entry each in
``translations/<lang>/<page stem>.po`` (``README.po``, ``GUIDE.po``,
``CLASSROOM.po``); ``#.`` names the block, ``#:`` the page and line.

* :func:`update` merges today's English into each page's catalog, as the
  lessons' are merged: a changed block is fuzzy, a removed one obsolete;
* :func:`build` writes the translated page beside the English one
  (:func:`~wslab.course.translation.page_name`: ``README.zh-CN.md``) for every
  page whose translation has started, only when its catalog is complete
  (:class:`~wslab.course.translation.TranslationIncomplete` otherwise, writing
  nothing; ``partial=True`` keeps the English of what is missing, for a draft).

Links are rewritten to the translated counterpart where one exists, relative to
the page's own folder: a lesson with a copy in ``notebooks/<folder>/``, a page
whose translation is built. A link to a translated page (the English README's
``[简体中文](README.zh-CN.md)``) is the language switch: in the translation it
points back at the English page, so the translator keeps the English target
as for every other link.

Design note: a built page is generated, like ``notebooks/zh-CN/``: it ends with
an HTML comment saying so (invisible on GitHub and in the book), and it is
rewritten only when its bytes change, never over hand edits (:mod:`.safewrite`). The lessons are built first
(:func:`wslab.course.translation.build`), so that the pages know which lessons
have a translated copy; the lessons read which pages have one from the disk.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .safewrite import write_files
from .translation import (PAGES, ROOT, Catalog, TranslationIncomplete, _LINK, _entries, _merge, _read,
                          _translation, catalog_path, folder_for, page_name, split_blocks)

__all__ = ["PageUnit", "page_units", "page_catalog", "started", "update", "build", "localize_links", "FOOTER"]

#: The last line of a built page (``{page}``, ``{catalog}``: paths from the repository's root).
FOOTER = ("<!-- Built from {page} and {catalog} by `python -m wslab exercises --translations`: "
          "translate in the catalog (translations/README.md), not in this file. -->\n")


@dataclass(frozen=True)
class PageUnit:
    """One translatable block of a page."""

    text: str
    block: int  # from 1
    line: int  # its first line in the page, from 1

    @property
    def where(self) -> str:
        return f"block {self.block}"


def page_units(text: str) -> Iterator[PageUnit]:
    """Every translatable block of markdown ``text``, in order."""
    line, number = 1, 0
    for kind, piece in split_blocks(text):
        if kind == "unit":
            number += 1
            yield PageUnit(piece, number, line)
        line += piece.count("\n")


def page_catalog(root: Path, lang: str, page: str) -> Path:
    """``translations/<lang>/<stem>.po`` of English ``page`` (``instructor/GUIDE.md`` -> ``GUIDE.po``)."""
    return catalog_path(root, lang, Path(page).stem)


def _template(root: Path, page: str) -> Catalog:
    template = Catalog(project=Path(page).stem, fuzzy=False)
    for unit in page_units((root / page).read_text(encoding="utf-8")):
        comments = [unit.where]
        if re.search(r"\]\([^)]*\.[A-Za-z]{2}-[A-Z]{2}\.md\)", unit.text):
            comments.append("a link to a translated page is the language switch: keep its target, "
                            "the build points it at the English page")
        template.add(unit.text, locations=[(page, unit.line)], auto_comments=comments)
    return template


def update(lang: str = "zh_CN", *, root: Path = ROOT) -> list[Path]:
    """Merge each page's current English into its catalog (made if missing); return the files changed."""
    changed = []
    for page in PAGES:
        if (root / page).exists():
            po = page_catalog(root, lang, page)
            if _merge(po, lang, _template(root, page), Path(page).stem):
                changed.append(po)
    return changed


def started(lang: str = "zh_CN", *, root: Path = ROOT) -> dict[str, Catalog]:
    """The pages whose translation has started (a catalog with one translated entry): page -> catalog."""
    found = {}
    for page in PAGES:
        po = page_catalog(root, lang, page)
        if (root / page).exists() and po.exists():
            catalog = _read(po, lang)
            if any(_translation(catalog, m.id) for m in _entries(catalog)):
                found[page] = catalog
    return found


def _counterparts(root: Path, lang: str, pages: set[str]) -> dict[str, str]:
    """English path -> translated path (from the repository's root), for what has a translation."""
    folder = folder_for(lang)
    found = {page: page_name(page, lang) for page in PAGES
             if page in pages or (root / page_name(page, lang)).exists()}
    for lesson in sorted((root / "notebooks" / folder).glob("*.ipynb")):
        found[f"notebooks/{lesson.name}"] = f"notebooks/{folder}/{lesson.name}"
    return found


def localize_links(text: str, page: str, counterparts: dict[str, str]) -> str:
    """``text`` of ``page`` with its relative links pointed at the translated counterparts.

    >>> localize_links("[00](../notebooks/00-a.ipynb), [en](GUIDE.zh-CN.md)", "instructor/GUIDE.md",
    ...                {"notebooks/00-a.ipynb": "notebooks/zh-CN/00-a.ipynb", "instructor/GUIDE.md": "instructor/GUIDE.zh-CN.md"})
    '[00](../notebooks/zh-CN/00-a.ipynb), [en](GUIDE.md)'
    """
    here = posixpath.dirname(page)
    english = {translated: source for source, translated in counterparts.items()}

    def fix(match: re.Match[str]) -> str:
        path, hash_, fragment = match[2].partition("#")
        if not path or re.match(r"^[a-z][a-z0-9+.-]*:|^/", path):
            return match[0]  # a url, an anchor in this page, or an absolute path
        target = posixpath.normpath(posixpath.join(here, path))
        other = counterparts.get(target) or english.get(target)
        if other is None:
            return match[0]
        return f"{match[1]}{posixpath.relpath(other, here or '.')}{hash_}{fragment}"

    return _LINK.sub(fix, text)


def build(lang: str = "zh_CN", *, root: Path = ROOT, partial: bool = False, force: bool = False) -> list[Path]:
    """Write the translation of every started page beside its English page; return the paths written.

    Raises :class:`~wslab.course.translation.TranslationIncomplete` (writing
    nothing) while an entry of such a page is untranslated or fuzzy, unless
    ``partial`` (those blocks stay English). Build the lessons first: a link
    to a lesson is rewritten when its translated copy exists. Like every
    command, it never writes over a page someone edited by hand
    (:class:`~wslab.course.safewrite.LearnerWorkError`, unless ``force``).
    """
    catalogs = started(lang, root=root)
    counterparts = _counterparts(root, lang, set(catalogs))
    texts: dict[Path, str] = {}
    missing: list[tuple[str, str, str, str]] = []
    for page, catalog in catalogs.items():
        english = (root / page).read_text(encoding="utf-8")
        out = []
        number = 0
        for kind, text in split_blocks(english):
            if kind == "unit":
                number += 1
                translated = _translation(catalog, text)
                if translated is None:
                    message = catalog.get(text)
                    state = "fuzzy" if message is not None and message.fuzzy else "untranslated"
                    missing.append((Path(page).stem, state, f"block {number}", text))
                text = translated or text
            if kind != "code":
                text = localize_links(text, page, counterparts)
            out.append(text)
        body = "".join(out).rstrip("\n") + "\n\n"
        po = page_catalog(root, lang, page).relative_to(root).as_posix()
        texts[root / page_name(page, lang)] = body + FOOTER.format(page=page, catalog=po)
    if missing and not partial:
        raise TranslationIncomplete(missing)
    changed = {path.relative_to(root).as_posix(): text.encode("utf-8") for path, text in texts.items()
               if not path.exists() or path.read_text(encoding="utf-8") != text}
    return write_files(root, changed, force=force) if changed else []

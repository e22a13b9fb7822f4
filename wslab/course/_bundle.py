"""Which repository files make up the lessons a learner gets: the bundle.

The bundle is every file under ``notebooks/`` (the lessons and the article's
scripts) plus every file a lesson links to, and every file those link to, in
turn (``README.md``, ``docs/reference.md``, ``instructor/CLASSROOM.md``, the
few package sources and tests a lesson points at). Paths keep their place in
the repository, so a relative link that opens in the repository opens in the
bundle too.

Design note: this module imports nothing but the standard library and nothing
from ``wslab``, because the build (``setup.py``) loads it by file path, before
the package's dependencies exist, to copy the bundle into the wheel as
``wslab/_lessons/``. :mod:`wslab.course.lessons` uses the same function on a checkout,
so a wheel and a clone hand out the same files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

__all__ = ["LESSONS_DIR", "SKIP", "bundle", "relative_links"]

#: Where the lessons live, relative to the repository's root.
LESSONS_DIR = "notebooks"
#: Names never bundled: caches, checkpoints, the record of what wslab wrote.
SKIP = ("__pycache__", ".ipynb_checkpoints", ".wslab-written.json")

_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _markdown(path: Path) -> str:
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
        return "\n".join(
            "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for c in cells if c.get("cell_type") == "markdown"
        )
    return path.read_text(encoding="utf-8")


def relative_links(path: Path) -> list[str]:
    """The relative link targets in a notebook's markdown cells or a markdown file.

    Web addresses (``https:``, ``mailto:``) and in-page anchors (``#...``) are
    left out; a ``#fragment`` after a file name is cut off.
    """
    links = []
    for target in _LINK.findall(_markdown(path)):
        if not re.match(r"[a-z][a-z0-9+.-]*:|#", target):
            links.append(target.split("#", 1)[0])
    return links


def bundle(root: Path) -> list[str]:
    """The bundle's files under repository ``root``, as sorted POSIX paths relative to it.

    Raises ``FileNotFoundError`` when ``root`` has no ``notebooks/`` folder.
    """
    root = root.resolve()
    lessons = root / LESSONS_DIR
    if not lessons.is_dir():
        raise FileNotFoundError(f"no lessons folder {lessons}: run this from the repository's top folder")
    todo = [p for p in lessons.rglob("*") if p.is_file() and not set(p.relative_to(root).parts) & set(SKIP)]
    found: set[Path] = set()
    while todo:  # bounded: each file enters once, and there are finitely many
        path = todo.pop()
        if path in found:
            continue
        found.add(path)
        if path.suffix in (".ipynb", ".md"):
            for target in relative_links(path):
                linked = (path.parent / target).resolve()
                if linked.is_relative_to(root) and linked.is_file() and linked not in found:
                    todo.append(linked)
    return sorted(p.relative_to(root).as_posix() for p in found)

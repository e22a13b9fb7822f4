"""Every link and file a lesson names opens from the JupyterLab that README.md starts.

README's first command starts JupyterLab with the repository as its root and lesson 00
open, so a lesson (in ``notebooks/``) can link to ``article/...``, ``../wslab/...``,
``../instructor/...`` and ``../README.md``. Two checks: every relative link resolves
to a file inside that root, and a file of the repository named in a lesson's prose is
a link, not just text; then Chromium clicks every link in JupyterLab and sees the
file open. The same holds for README.md and the pages it links to (``docs/``,
``instructor/``), on GitHub and in the Lab: no in-page anchors (the Lab cannot
scroll to them), no hidden files.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path, PurePosixPath
from typing import Iterator

import nbformat
import pytest

from .test_browser import APPS, JupyterProcess, ms, page  # noqa: F401 (page is a fixture)

ROOT = Path(__file__).resolve().parent.parent
LESSONS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SOURCES = sorted((ROOT / "instructor" / "source").glob("*.ipynb"))

_LINK = re.compile(r"\]\(([^)\s]+)\)")
#: A repository file named in backticks: `wslab/protocol/frames.py`, `instructor/CLASSROOM.md`.
_NAMED_FILE = re.compile(r"`((?:wslab|instructor|notebooks|benchmarks|tests)/[\w./-]+\.\w+)`")


def relative_links(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    links = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for target in _LINK.findall(cell.source):
                if not re.match(r"[a-z]+:|#", target):
                    links.append(target.split("#", 1)[0])
    return links


def test_readme_starts_jupyterlab_with_the_repository_as_its_root():
    first = (ROOT / "README.md").read_text().split("```")[1]
    assert "jupyter lab --ServerApp.root_dir=. notebooks/00-" in first


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_every_relative_link_in_a_lesson_points_at_a_file_in_the_labs_root(path):
    for target in relative_links(path):
        resolved = (path.parent / target).resolve()
        assert resolved.is_relative_to(ROOT), f"{path.name}: {target} leaves the Lab's root"
        assert resolved.is_file(), f"{path.name}: {target} does not exist"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_a_repository_file_named_in_a_lesson_is_a_link(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for name in _NAMED_FILE.findall(cell.source):
            assert f"[`{name}`](" in cell.source or f"[{name}](" in cell.source, (
                f"{path.name}: `{name}` is named but not linked; write [`{name}`](../{name})"
            )


#: The pages a learner reads besides the lessons: README and what it links to.
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "CONTRIBUTING.md",
         *sorted((ROOT / "instructor").glob("*.md"))]


def page_links(path: Path) -> list[str]:
    return _LINK.findall(path.read_text())


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_of_a_page_opens_a_file_on_github_and_in_the_lab(path):
    """A link resolves to a file of the repository, relative to the page (as GitHub and the Lab do).

    No in-page anchors (`#section`, `page.md#section`): the Lab cannot scroll to them. No hidden
    files (`.ci/run`): the Lab's file browser refuses them.
    """
    for target in page_links(path):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):
            continue
        assert "#" not in target, f"{path.name}: {target} is an anchor the Lab cannot scroll to"
        resolved = (path.parent / target).resolve()
        assert resolved.is_relative_to(ROOT), f"{path.name}: {target} leaves the repository"
        assert resolved.is_file(), f"{path.name}: {target} does not exist"
        hidden = [part for part in resolved.relative_to(ROOT).parts if part.startswith(".")]
        assert not hidden, f"{path.name}: {target} is hidden from the Lab"


def test_readme_links_to_every_lesson_and_to_the_reference_pages():
    links = set(page_links(ROOT / "README.md"))
    assert {f"notebooks/{p.name}" for p in LESSONS} <= links
    assert {"docs/reference.md", "docs/limits.md", "instructor/GUIDE.md", "instructor/CLASSROOM.md"} <= links


def _lab(tmp_path: Path, parts: tuple[str, ...]) -> JupyterProcess:
    """JupyterLab on a copy of the repository, ready; every cell rendered (no windowing), so every link is in the page."""
    root = tmp_path / "repo"
    for part in parts:
        shutil.copytree(ROOT / part, root / part, ignore=shutil.ignore_patterns("__pycache__", "node_modules"))
    for name in ROOT.glob("*.md"):  # README.md and the pages it links to: ARCHITECTURE.md, CONTRIBUTING.md, ...
        shutil.copy(name, root / name.name)
    settings = tmp_path / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    os.environ["JUPYTERLAB_SETTINGS_DIR"] = str(tmp_path / "settings")
    options, route = APPS["lab"]
    try:
        lab = JupyterProcess("lab", root, *options, f"--LabApp.workspaces_dir={tmp_path / 'ws'}")
    finally:
        del os.environ["JUPYTERLAB_SETTINGS_DIR"]
    lab.wait_ready()
    return lab


@contextlib.contextmanager
def _lab_page(page, tmp_path: Path) -> Iterator[JupyterProcess]:
    """JupyterLab on a copy of the repository, README.md open in ``page``; stopped at the end."""
    lab = _lab(tmp_path, ("notebooks", "wslab", "instructor", "tests", "benchmarks", "docs"))
    _options, route = APPS["lab"]
    try:
        page.set_default_timeout(ms(60))
        page.goto(f"http://127.0.0.1:{lab.port}/{route}/README.md?token={lab.token}")
        page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget")
        yield lab
    finally:
        lab.stop()


_CURRENT_IS = (
    "(p) => { const w = window.jupyterapp.shell.currentWidget;"
    " return w && w.context && w.context.path === p; }"
)


@pytest.mark.browser
def test_chromium_opens_every_link_of_the_readme_and_the_docs_in_jupyterlab(page, tmp_path):
    """Each page rendered in the Lab's Markdown preview; a click on each relative link opens that file."""
    with _lab_page(page, tmp_path):
        clicked = 0
        for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
            here = path.relative_to(ROOT).as_posix()
            targets = [t for t in dict.fromkeys(page_links(path)) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]
            for target in targets:
                page.evaluate("(p) => { window.jupyterapp.commands.execute('docmanager:open',"
                              " {path: p, factory: 'Markdown Preview'}); }", here)
                page.wait_for_function(
                    "(p) => { const w = window.jupyterapp.shell.currentWidget;"
                    " return w && w.context && w.context.path === p && w.node.querySelector('.jp-RenderedMarkdown a'); }",
                    arg=here,
                )
                expected = os.path.normpath(str(PurePosixPath(here).parent / target))
                current = page.evaluate("() => window.jupyterapp.shell.currentWidget.id")
                anchor = page.locator(f"[id='{current}'] .jp-RenderedMarkdown a[href*='/files/{expected}?']").first
                anchor.scroll_into_view_if_needed()
                anchor.click()
                page.wait_for_function(_CURRENT_IS, arg=expected)
                clicked += 1
        assert clicked >= 15
        assert not page.errors, page.errors


@pytest.mark.browser
def test_chromium_opens_every_link_of_every_lesson_in_jupyterlab(page, tmp_path):
    """Click each relative link in the rendered lessons; JupyterLab opens that file."""
    with _lab_page(page, tmp_path):
        clicked = 0
        for lesson in LESSONS:
            here = f"notebooks/{lesson.name}"
            page.evaluate("(p) => { window.jupyterapp.commands.execute('docmanager:open', {path: p}); }", here)
            page.wait_for_function(
                "(p) => { const w = window.jupyterapp.shell.currentWidget;"
                " return w && w.context && w.context.path === p && w.node.querySelector('.jp-MarkdownCell a'); }",
                arg=here,
            )
            for target in dict.fromkeys(relative_links(lesson)):
                expected = os.path.normpath(str(PurePosixPath("notebooks") / target))
                # JupyterLab resolves a relative link against the notebook's folder and
                # rewrites it to the file's /files/ URL; a click opens it in the Lab.
                anchor = page.locator(
                    f".jp-NotebookPanel:not(.lm-mod-hidden) .jp-MarkdownCell a[href*='/files/{expected}?']"
                ).first
                anchor.scroll_into_view_if_needed()
                anchor.click()
                page.wait_for_function(
                    "(p) => { const w = window.jupyterapp.shell.currentWidget;"
                    " return w && w.context && w.context.path === p; }",
                    arg=expected,
                )
                clicked += 1
                page.evaluate("(p) => { window.jupyterapp.commands.execute('docmanager:open', {path: p}); }", here)
                page.wait_for_function(
                    "(p) => { const w = window.jupyterapp.shell.currentWidget; return w && w.context && w.context.path === p; }",
                    arg=here,
                )
        assert clicked >= len(LESSONS)
        assert not page.errors, page.errors

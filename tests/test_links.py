"""Every link and file a lesson names opens from the JupyterLab that README.md starts.

README's first command starts JupyterLab with the repository as its root and lesson 00
open, so a lesson (in ``notebooks/``) can link to ``article/...``, ``../wslab/...``,
``../instructor/...`` and ``../README.md``. Two checks: every relative link resolves
to a file inside that root, and a file of the repository named in a lesson's prose is
a link, not just text; then Chromium clicks every link in JupyterLab and sees the
file open.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path, PurePosixPath

import nbformat
import pytest

from .test_browser import APPS, JupyterProcess, ms, page  # noqa: F401 (page is a fixture)

ROOT = Path(__file__).resolve().parent.parent
LESSONS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SOURCES = sorted((ROOT / "instructor" / "source").glob("*.ipynb"))

_LINK = re.compile(r"\]\(([^)\s]+)\)")
#: A repository file named in backticks: `wslab/frames.py`, `instructor/CLASSROOM.md`.
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


@pytest.mark.browser
def test_chromium_opens_every_link_of_every_lesson_in_jupyterlab(page, tmp_path):
    """Click each relative link in the rendered lessons; JupyterLab opens that file."""
    root = tmp_path / "repo"
    for part in ("notebooks", "wslab", "instructor", "tests", "benchmarks"):
        shutil.copytree(ROOT / part, root / part, ignore=shutil.ignore_patterns("__pycache__", "node_modules"))
    shutil.copy(ROOT / "README.md", root / "README.md")
    # Render every cell (no windowing), so every link is in the page.
    settings = tmp_path / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    os.environ["JUPYTERLAB_SETTINGS_DIR"] = str(tmp_path / "settings")
    options, route = APPS["lab"]
    try:
        lab = JupyterProcess("lab", root, *options, f"--LabApp.workspaces_dir={tmp_path / 'ws'}")
    finally:
        del os.environ["JUPYTERLAB_SETTINGS_DIR"]
    try:
        lab.wait_ready()
        page.set_default_timeout(ms(60))
        page.goto(f"http://127.0.0.1:{lab.port}/{route}/README.md?token={lab.token}")
        page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget")
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
    finally:
        lab.stop()

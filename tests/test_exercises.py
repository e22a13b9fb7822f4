"""Learner copies (wslab/course/exercises.py)."""

from __future__ import annotations

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from wslab.__main__ import main
from wslab.course.exercises import learner_copy

from .conftest import seconds

SOLUTION = '''def accept_key(key):
    """Compute Sec-WebSocket-Accept."""
    # BEGIN SOLUTION
    digest = hashlib.sha1((key + GUID).encode()).digest()
    return base64.b64encode(digest).decode()
    # END SOLUTION'''

CHECK = '''with wslab.exercise("2.1"):
    wslab.check_equal(accept_key(K), A, "accept key")
### BEGIN HIDDEN TESTS
wslab.assert_done("2.1")
### END HIDDEN TESTS'''


def source_notebook():
    nb = new_notebook(
        cells=[
            new_markdown_cell("# Lesson"),
            new_code_cell(SOLUTION, metadata={"nbgrader": {"solution": True, "grade_id": "ex-2-1"}}),
            new_code_cell(CHECK, metadata={"nbgrader": {"grade": True, "grade_id": "ex-2-1-check"}}),
            new_markdown_cell("## Summary"),
        ]
    )
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="old output")]
    nb.cells[1].execution_count = 3
    return nb


def test_solution_region_becomes_an_indented_stub():
    copy = learner_copy(source_notebook(), solutions=False)
    assert copy.cells[1].source == (
        'def accept_key(key):\n    """Compute Sec-WebSocket-Accept."""\n'
        '    # YOUR CODE HERE\n    raise NotImplementedError("not done yet")'
    )


def test_hidden_tests_outputs_and_counts_are_removed():
    copy = learner_copy(source_notebook(), solutions=False)
    assert copy.cells[2].source == 'with wslab.exercise("2.1"):\n    wslab.check_equal(accept_key(K), A, "accept key")'
    assert copy.cells[1].outputs == [] and copy.cells[1].execution_count is None
    assert copy.cells[1].metadata["nbgrader"]["grade_id"] == "ex-2-1"


def test_self_study_copy_folds_the_solution_after_the_check_cell():
    copy = learner_copy(source_notebook(), solutions=True)
    kinds = [c.cell_type for c in copy.cells]
    assert kinds == ["markdown", "code", "code", "markdown", "markdown"]
    folded = copy.cells[3].source
    assert folded.startswith("<details>") and "hashlib.sha1" in folded
    assert "BEGIN SOLUTION" not in folded


def test_learner_copy_is_deterministic():
    source = source_notebook()
    a = learner_copy(source, solutions=True)
    b = learner_copy(source, solutions=True)
    assert nbformat.writes(a) == nbformat.writes(b)


def test_cli_writes_class_copies(tmp_path, capsys):
    src = tmp_path / "source"
    src.mkdir()
    nbformat.write(source_notebook(), src / "02-lesson.ipynb")
    assert main(["exercises", "--source", str(src), "--out", str(tmp_path / "out"), "--no-solutions"]) == 0
    written = nbformat.read(tmp_path / "out" / "02-lesson.ipynb", as_version=4)
    assert "hashlib" not in nbformat.writes(written)
    assert "= wrote" in capsys.readouterr().out


def test_class_copies_of_the_real_lessons_promise_no_folded_solutions():
    """`--no-solutions` copies have no solutions, so they must not say one follows each check."""
    from pathlib import Path

    from wslab.course.exercises import CLASS_NOTE, SOLUTIONS_NOTE

    sources = sorted((Path(__file__).resolve().parent.parent / "instructor" / "source").glob("*.ipynb"))
    promised = [p.name for p in sources if SOLUTIONS_NOTE in nbformat.writes(nbformat.read(p, as_version=4))]
    assert promised, "the lessons' exercise intros should promise folded solutions in the self-study edition"
    for path in sources:
        copy = nbformat.writes(learner_copy(nbformat.read(path, as_version=4), solutions=False))
        assert "folded solution" not in copy.lower(), path.name
        if path.name in promised:
            assert CLASS_NOTE in copy


# Never over a learner's work (wslab/course/safewrite.py)


def _cli(tmp_path, *flags):
    return main(["exercises", "--source", str(tmp_path / "source"), "--out", str(tmp_path / "out"), *flags])


def _source(tmp_path, title="# Lesson"):
    src = tmp_path / "source"
    src.mkdir(exist_ok=True)
    nb = source_notebook()
    nb.cells[0].source = title
    nbformat.write(nb, src / "02-lesson.ipynb")
    nbformat.write(nb, src / "03-lesson.ipynb")


def test_a_learner_copy_edited_after_it_was_written_survives_a_rebuild(tmp_path, capsys):
    _source(tmp_path)
    assert _cli(tmp_path) == 0
    mine = tmp_path / "out" / "02-lesson.ipynb"
    nb = nbformat.read(mine, as_version=4)
    nb.cells[1].source = nb.cells[1].source.replace('raise NotImplementedError("not done yet")', "return 'my answer'")
    nbformat.write(nb, mine)
    answered = mine.read_bytes()
    _source(tmp_path, "# Lesson, revised")  # the instructor changes the source
    capsys.readouterr()
    assert _cli(tmp_path) == 1
    err = capsys.readouterr().err
    assert str(mine) in err and "--force" in err and "03-lesson" not in err
    assert mine.read_bytes() == answered
    # nothing was written, not even the untouched lesson
    assert "revised" not in (tmp_path / "out" / "03-lesson.ipynb").read_text()


def test_force_overwrites_an_edited_copy_and_unedited_copies_refresh_without_it(tmp_path, capsys):
    _source(tmp_path)
    assert _cli(tmp_path) == 0
    _source(tmp_path, "# Lesson, revised")
    assert _cli(tmp_path) == 0  # nothing edited: both copies are refreshed
    assert "revised" in (tmp_path / "out" / "02-lesson.ipynb").read_text()
    mine = tmp_path / "out" / "02-lesson.ipynb"
    mine.write_text(mine.read_text().replace("revised", "my notes"))
    assert _cli(tmp_path) == 1
    assert _cli(tmp_path, "--force") == 0
    assert "my notes" not in mine.read_text()


def test_a_copy_unchanged_since_git_holds_it_is_rebuilt_without_a_record(tmp_path):
    """A fresh clone's notebooks/ has no record of what wslab wrote; git's copy stands for it."""
    import subprocess

    _source(tmp_path)
    assert _cli(tmp_path) == 0
    (tmp_path / "out" / ".wslab-written.json").unlink()
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], check=True, timeout=seconds(30))
    subprocess.run([*git, "add", "out"], check=True, timeout=seconds(30))
    subprocess.run([*git, "commit", "-qm", "lessons"], check=True, timeout=seconds(30))
    _source(tmp_path, "# Lesson, revised")
    assert _cli(tmp_path) == 0
    assert "revised" in (tmp_path / "out" / "03-lesson.ipynb").read_text()
    # ...but an edit git does not hold is refused
    (tmp_path / "out" / ".wslab-written.json").unlink()
    mine = tmp_path / "out" / "02-lesson.ipynb"
    mine.write_text(mine.read_text().replace("revised", "my notes"))
    _source(tmp_path, "# Lesson, revised twice")
    assert _cli(tmp_path) == 1
    assert "my notes" in mine.read_text()

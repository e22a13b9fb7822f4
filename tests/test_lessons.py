"""`python -m wslab lessons DIR` (wslab/course/lessons.py, wslab/course/_bundle.py): the lessons in a folder of one's own."""

from __future__ import annotations

from pathlib import Path

from wslab.__main__ import main
from wslab.course._bundle import bundle, relative_links

ROOT = Path(__file__).resolve().parent.parent


def test_the_bundle_is_the_lessons_and_every_file_they_link_to():
    files = bundle(ROOT)
    lessons = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert set(lessons) <= set(files)
    assert {"README.md", "docs/reference.md", "notebooks/article/web_server.py", "wslab/protocol/frames.py"} <= set(files)
    assert not [f for f in files if f.startswith("instructor/source/")], "no solutions' sources in the bundle"


def test_every_relative_link_of_the_handed_out_lessons_opens_in_the_folder(tmp_path, capsys):
    assert main(["lessons", str(tmp_path / "mine")]) == 0
    out = capsys.readouterr().out
    assert "--ServerApp.root_dir=" in out and "00-start-a-websocket-server-in-a-notebook.ipynb" in out
    mine = (tmp_path / "mine").resolve()
    checked = 0
    for path in [*mine.rglob("*.ipynb"), *mine.rglob("*.md")]:
        for target in relative_links(path):
            resolved = (path.parent / target).resolve()
            assert resolved.is_relative_to(mine) and resolved.is_file(), f"{path}: {target}"
            checked += 1
    assert checked > 20


def test_handing_out_again_keeps_a_lesson_the_learner_changed(tmp_path, capsys):
    mine = tmp_path / "mine"
    assert main(["lessons", str(mine)]) == 0
    lesson = mine / "notebooks" / "02-shake-hands-by-hand.ipynb"
    answered = lesson.read_text().replace("# YOUR CODE HERE", "# my answer", 1)
    lesson.write_text(answered)
    (mine / "README.md").unlink()
    capsys.readouterr()
    assert main(["lessons", str(mine)]) == 1
    err = capsys.readouterr().err
    assert str(lesson) in err and "--force" in err
    assert lesson.read_text() == answered and not (mine / "README.md").exists()
    assert main(["lessons", str(mine), "--force"]) == 0
    assert "# my answer" not in lesson.read_text() and (mine / "README.md").is_file()

"""The front door: README's two commands, requirements, CI."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_readme_opens_with_two_commands_install_and_open_then_install_and_test():
    first, second = readme_commands()[:2]
    assert "requirements.txt" in first and "jupyter lab --ServerApp.root_dir=. notebooks/00-" in first
    assert "requirements-test.txt" in second and "pytest" in second


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text()
    assert readme_commands()[1] in ci.splitlines()


def test_requirements_install_the_package_for_binder_and_keep_test_tools_out():
    reqs = (ROOT / "requirements.txt").read_text().splitlines()
    assert "-e ." in reqs
    names = {re.split(r"[<>=\[ ]", line)[0] for line in reqs if line and not line.startswith(("#", "-"))}
    assert {"jupyterlab", "websockets", "matplotlib", "nest-asyncio2"} <= names
    assert "nest-asyncio" not in names  # archived; the fork is nest-asyncio2
    assert not names & {"pytest", "nbclient", "hypothesis", "playwright"}


def test_package_needs_python_311_and_websockets_up_to_17():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"
    ws = [d for d in project["dependencies"] if d.startswith("websockets")][0]
    assert "<18" in ws


def test_ipykernel_is_pinned_where_it_depends_on_nest_asyncio2():
    """The lessons say ipykernel depends on nest-asyncio2: true from ipykernel 7.3.0 only."""
    from importlib.metadata import requires, version

    lines = (ROOT / "requirements.txt").read_text().splitlines()
    assert "ipykernel>=7.3" in lines
    assert any(r.startswith("nest-asyncio2") for r in requires("ipykernel") or [])
    assert tuple(int(p) for p in version("ipykernel").split(".")[:2]) >= (7, 3)


def test_readme_is_for_learners_short_with_quick_mode_root_and_the_lessons_command():
    text = (ROOT / "README.md").read_text()
    assert len(text) < 10_000, f"README.md has {len(text)} characters; the reference lives in docs/"
    for needed in ("WSLAB_QUICK=1", "--allow-root", "python -m wslab lessons", "Binder", "JupyterHub",
                   "docs/reference.md", "docs/limits.md", "instructor/GUIDE.md"):
        assert needed in text, needed


def test_readme_lesson_table_gives_each_lessons_own_time():
    """The table's time is the one the lesson's first cell states (**Time:** about N minutes)."""
    import json

    text = (ROOT / "README.md").read_text()
    lessons = sorted((ROOT / "notebooks").glob("*.ipynb"))
    for path in lessons:
        first = "".join(json.loads(path.read_text())["cells"][0]["source"])
        minutes = re.search(r"\*\*Time:\*\* about (\d+) minutes", first)[1]
        row = [ln for ln in text.splitlines() if ln.startswith(f"| [{path.name[:2]}](notebooks/{path.name})")]
        assert len(row) == 1, f"no row for {path.name}"
        assert f"| {minutes} min |" in row[0], f"{path.name}: the lesson says about {minutes} minutes"

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

"""The package as pip installs it from a wheel, not from this checkout.

The README's editable install (``-e .``) reads the package from the
repository, so it hides a wheel that lacks a subpackage or the lessons. Here
the repository's files are copied away, built the way a PEP 517 frontend
without isolation builds them (an sdist, then a wheel from the unpacked sdist),
and the wheel is installed without ``-e`` into a fresh virtual environment that
borrows this interpreter's dependencies (``--system-site-packages``: fast and
offline). Every command then runs with the venv's Python, from an empty folder,
with no ``PYTHONPATH``, and first proves it imports the venv's copy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from wslab.course._bundle import bundle

from .conftest import seconds

ROOT = Path(__file__).resolve().parent.parent
LESSON = "06-build-a-server-from-scratch.ipynb"


def _repository_files() -> list[str]:
    """What a clean clone holds: tracked files and new ones git does not ignore."""
    done = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, check=False, timeout=seconds(30),
    )
    if done.returncode != 0:
        pytest.skip("not a git checkout: the wheel test builds from what git holds")
    names = [n for n in done.stdout.decode().split("\0") if n]
    return sorted(n for n in names if (ROOT / n).is_file())


def _hook(where: Path, hook: str, out: Path) -> Path:
    """Call one PEP 517 hook of setuptools in ``where``; return the file it built."""
    done = subprocess.run(
        [sys.executable, "-c",
         f"import sys; from setuptools import build_meta as b; print(b.{hook}(sys.argv[1]))", str(out)],
        cwd=where, capture_output=True, text=True, timeout=seconds(180), env=_clean_env(),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out / done.stdout.strip().splitlines()[-1]


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WSLAB_QUICK")}
    env.update(extra)
    return env


class Installed:
    def __init__(self, base: Path) -> None:
        src = base / "clone"
        for name in _repository_files():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
        dist = base / "dist"
        self.sdist = _hook(src, "build_sdist", dist)
        with tarfile.open(self.sdist) as tar:
            # the "data" filter (Python 3.11.4+) refuses links and paths outside the folder
            tar.extractall(base / "unpacked", **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        (unpacked,) = (base / "unpacked").iterdir()
        self.wheel = _hook(unpacked, "build_wheel", dist)
        self.venv = base / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(self.venv)],
                       check=True, timeout=seconds(120))
        self.python = str(self.venv / "bin" / "python")
        # pip comes from the system site-packages and installs into the venv.
        self.run("-m", "pip", "install", "--no-deps", "--no-index", "--quiet", str(self.wheel), timeout=180)
        self.cwd = base / "learner"
        self.cwd.mkdir()

    def run(self, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.python, *args], cwd=getattr(self, "cwd", None), env=_clean_env(**env),
                              capture_output=True, text=True, timeout=seconds(timeout))

    def script(self, code: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        return self.run("-c", code, timeout=timeout, **env)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    return Installed(tmp_path_factory.mktemp("wheel"))


def test_the_wheel_carries_every_module_of_the_package_and_the_lessons(installed):
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    modules = {n for n in _repository_files() if n.startswith("wslab/") and n.endswith(".py")}
    assert modules - names == set(), "modules missing from the wheel"
    assert {"wslab/battery/__init__.py", "wslab/lab/experiment/__init__.py"} <= names
    lessons = {f"wslab/_lessons/{rel}" for rel in bundle(ROOT)}
    assert lessons - names == set(), "lesson files missing from the wheel"
    assert f"wslab/_lessons/notebooks/{LESSON}" in names
    assert not any("instructor/source" in n for n in names), "the solutions' sources stay out of the wheel"


def test_the_sdist_holds_what_the_wheel_and_the_tests_are_built_from(installed):
    with tarfile.open(installed.sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    wanted = {"setup.py", "pyproject.toml", "README.md", f"notebooks/{LESSON}", f"instructor/source/{LESSON}",
              "docs/reference.md", "tests/test_wheel.py", "wslab/battery/__init__.py", "requirements.txt"}
    assert wanted - names == set()
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_the_venv_imports_every_module_from_the_installed_wheel(installed):
    done = installed.script(
        "import importlib, json, pkgutil, sys, wslab\n"
        "mods = sorted(m.name for m in pkgutil.walk_packages(wslab.__path__, 'wslab.'))\n"
        "for m in mods: importlib.import_module(m)\n"
        "print(json.dumps({'file': wslab.__file__, 'prefix': sys.prefix, 'modules': mods}))"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.splitlines()[-1])
    assert Path(got["file"]).is_relative_to(installed.venv), f"imported {got['file']}, not the wheel's copy"
    expected = sorted(
        "wslab." + n.removeprefix("wslab/").removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        for n in _repository_files()
        if n.startswith("wslab/") and n.endswith(".py") and n not in ("wslab/__init__.py", "wslab/__main__.py")
    )
    assert set(expected) - set(got["modules"]) == set()


def test_the_battery_command_of_the_installed_copy_grades_a_server(installed):
    done = installed.script(
        "import asyncio, subprocess, sys, wslab\n"
        "async def main():\n"
        "    srv = await wslab.serve_scratch()\n"
        "    try:\n"
        "        cmd = [sys.executable, '-m', 'wslab', 'battery', srv.url]\n"
        f"        done = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True, timeout={seconds(120)})\n"
        "    finally:\n"
        "        await srv.aclose()\n"
        "    print(done.stdout, done.stderr)\n"
        "    return done.returncode\n"
        "sys.exit(asyncio.run(main()))\n",
        timeout=150,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "MUST" in done.stdout


def test_the_installed_copy_speaks_chinese_under_wslab_lang(installed):
    """The compiled catalog (wslab/course/locale/zh_CN/LC_MESSAGES/wslab.mo) ships in the wheel."""
    done = installed.run("-m", "wslab", "battery", "--help", WSLAB_LANG="zh_CN")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("用法：python -m wslab battery") and "显示帮助信息并退出" in done.stdout


def test_bench_quick_of_the_installed_copy_writes_its_results(installed):
    out = installed.cwd / "bench"
    done = installed.run("-m", "wslab", "bench", "--quick", "--out", str(out), timeout=180)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert (out / "results.json").is_file() and list(out.glob("*.png"))


@pytest.mark.notebook
def test_the_lessons_command_hands_out_lessons_that_run_on_the_installed_copy(installed):
    """`python -m wslab lessons DIR` from the wheel, then lesson 06 in quick mode in a kernel of the venv."""
    done = installed.run("-m", "wslab", "lessons", "mine")
    assert done.returncode == 0, done.stderr
    lessons = installed.cwd / "mine"
    assert (lessons / "notebooks" / LESSON).is_file() and (lessons / "README.md").is_file()
    assert "jupyter lab --ServerApp.root_dir=mine" in done.stdout
    code = (
        "import sys, nbformat\n"
        "from nbclient import NotebookClient\n"
        "nb = nbformat.read(sys.argv[1], as_version=4)\n"
        "nb.cells.append(nbformat.v4.new_code_cell('import wslab; print(\"wslab from\", wslab.__file__)'))\n"
        f"NotebookClient(nb, timeout={int(seconds(300))}, kernel_name='python3',\n"
        "               resources={'metadata': {'path': sys.argv[2]}}).execute()\n"
        "print(nb.cells[-1].outputs[0]['text'])\n"
    )
    run = installed.run("-c", code, str(lessons / "notebooks" / LESSON), str(lessons / "notebooks"),
                        timeout=400, WSLAB_QUICK="1")
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    used = run.stdout.split("wslab from", 1)[1].strip().splitlines()[0]
    assert Path(used).is_relative_to(installed.venv), f"the kernel imported {used}, not the wheel's copy"

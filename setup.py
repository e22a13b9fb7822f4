"""Build step: the wheel carries the lessons as package data, ``wslab/_lessons/``.

Everything else about the package is declared in ``pyproject.toml``. The
lessons live once in git, in ``notebooks/`` (and the files they link to); when
setuptools builds the package, this copies that bundle (``wslab/course/_bundle.py``
says which files) into the build, so ``python -m wslab lessons DIR`` works
where only the package is installed. An editable install skips it: there
``wslab.course.lessons`` reads the repository itself.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def _bundle_module():
    # By file path: importing the package would need its dependencies, absent while building.
    spec = importlib.util.spec_from_file_location("_wslab_bundle", ROOT / "wslab" / "course" / "_bundle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class build_py_with_lessons(build_py):
    """``build_py``, then copy the lesson bundle into ``<build>/wslab/_lessons/``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "wslab" / "_lessons"
        shutil.rmtree(target, ignore_errors=True)
        for rel in _bundle_module().bundle(ROOT):
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / rel, dest)


setup(cmdclass={"build_py": build_py_with_lessons})

"""The lessons as a folder of the learner's own: ``python -m wslab lessons DIR``.

A learner who installed only the package (a wheel, ``pip install git+...``,
a Hub image) has no ``notebooks/`` folder; this command writes one:
``DIR/notebooks/`` with every lesson and the article's scripts, and beside it
every file the lessons link to (``DIR/README.md``, ``DIR/docs/reference.md``,
``DIR/instructor/CLASSROOM.md``, ...), in the places the links expect, so
every link opens in JupyterLab started with ``--ServerApp.root_dir=DIR``.

Design note: one copy in git, two ways in. The files are the bundle that
:func:`wslab.course._bundle.bundle` computes from the repository. Building a wheel
(``setup.py``) copies that bundle into the wheel as package data,
``wslab/_lessons/``; a checkout (the editable install of the README) has no
such folder and reads the bundle from the repository itself. Nothing is
duplicated in git. Writing goes through :func:`wslab.course.safewrite.write_files`,
so running the command again refreshes the lessons but never writes over a
lesson the learner changed (``--force`` does).
"""

from __future__ import annotations

import sys
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from ._bundle import LESSONS_DIR, bundle
from .i18n import ArgumentParser
from .i18n import gettext as _
from .safewrite import LearnerWorkError, write_files

__all__ = ["SHIPPED", "lesson_files", "copy_lessons", "open_command", "main"]

#: The folder of package data a wheel carries the bundle in.
SHIPPED = "_lessons"
_CHECKOUT = Path(__file__).resolve().parents[2]  # wslab/course/lessons.py -> the repository
FIRST_LESSON = f"{LESSONS_DIR}/00-start-a-websocket-server-in-a-notebook.ipynb"


def _walk(folder: Traversable, prefix: str = "") -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for item in folder.iterdir():
        rel = f"{prefix}{item.name}"
        if item.is_dir():
            files.update(_walk(item, rel + "/"))
        elif item.is_file():
            files[rel] = item.read_bytes()
    return files


def lesson_files() -> dict[str, bytes]:
    """The bundle: relative POSIX path -> bytes, from the wheel's package data or the checkout.

    Raises ``FileNotFoundError`` when this installation has neither.
    """
    shipped = resources.files("wslab") / SHIPPED
    if shipped.is_dir():
        return dict(sorted(_walk(shipped).items()))
    if (_CHECKOUT / LESSONS_DIR).is_dir() and (_CHECKOUT / "pyproject.toml").is_file():
        return {rel: (_CHECKOUT / rel).read_bytes() for rel in bundle(_CHECKOUT)}
    raise FileNotFoundError(
        _("this wslab ({where}) carries no lessons: install it from a wheel or "
          "a clone of the repository (pip install git+URL), or clone the repository").format(
            where=Path(__file__).parent)
    )


def copy_lessons(dest: Path, *, force: bool = False) -> list[Path]:
    """Write the lessons and the files they link to under ``dest``; return the paths written.

    Raises :class:`wslab.course.safewrite.LearnerWorkError` (writing nothing) when a
    file there changed since wslab wrote it, unless ``force``.
    """
    return write_files(Path(dest), lesson_files(), force=force)


def open_command(dest: Path) -> str:
    """The shell command that opens lesson 00 in JupyterLab with ``dest`` as the Lab's root."""
    return f"python -m jupyter lab --ServerApp.root_dir={dest} {dest / FIRST_LESSON}"


def main(argv: list[str] | None = None) -> int:
    """``python -m wslab lessons [DIR] [--force]``."""
    parser = ArgumentParser(
        prog="python -m wslab lessons",
        description=_("Write the lesson notebooks, and every file they link to, into a folder of your own."),
    )
    parser.add_argument("dir", nargs="?", type=Path, default=Path("wslab-lessons"),
                        help=_("where to write them (default: wslab-lessons)"))
    parser.add_argument("--force", action="store_true",
                        help=_("overwrite lessons you changed (your answers in them are lost)"))
    args = parser.parse_args(argv)
    try:
        written = copy_lessons(args.dir, force=args.force)
    except (LearnerWorkError, FileNotFoundError) as exc:
        print(f"! {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(_("! cannot write to {folder}: {reason}; pass a folder you can write").format(
            folder=repr(str(args.dir)), reason=exc.strerror), file=sys.stderr)
        return 2
    lessons = sum(1 for p in written if p.suffix == ".ipynb")
    print(_("= wrote {lessons} lessons and {files} files they link to into {folder}").format(
        lessons=lessons, files=len(written) - lessons, folder=args.dir))
    print(_("open the first lesson with:"))
    print(f"  {open_command(args.dir)}")
    return 0

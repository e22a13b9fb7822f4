"""Build the wslab book: ``python book/build.py`` (from anywhere; ``--help`` for the options).

Runs Sphinx with this folder's conf.py over the repository, once per edition: English into
``book/_build/html/`` (home page ``book/_build/html/book/index.html``), then Chinese (``-t zh_CN``:
the lessons of ``notebooks/zh-CN/`` and the translated pages) into ``book/_build/html/zh-CN/``
(home page ``zh-CN/book/zh-CN/index.html``). Every lesson is executed in a fresh kernel (quick
mode unless ``--full``) through jupyter-cache, one cache per edition and mode, so a lesson whose
code did not change since the last build is not run again; the kernels have ``WSLAB_LANG`` set to
the edition's language, so a Chinese lesson's self-checks answer in Chinese. No network is used.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["main", "HTML", "INDEX", "EDITIONS"]

BOOK = Path(__file__).resolve().parent
ROOT = BOOK.parent
HTML = BOOK / "_build" / "html"
INDEX = HTML / "book" / "index.html"
#: edition -> (its Sphinx tags, its HTML folder, its doctrees, its jupyter-cache prefix, its WSLAB_LANG)
EDITIONS = {
    "en": ([], HTML, BOOK / "_build" / "doctrees", ".jupyter_cache-", "en"),
    "zh_CN": (["-t", "zh_CN"], HTML / "zh-CN", BOOK / "_build" / "doctrees-zh_CN", ".jupyter_cache-zh_CN-", "zh_CN"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python book/build.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true",
                        help="run the lessons in full mode (the learner's measurements; slower) instead of quick mode")
    parser.add_argument("--fresh", action="store_true",
                        help="start from an empty output (the HTML and Sphinx's saved state); "
                             "the executed lessons stay cached")
    parser.add_argument("--no-cache", action="store_true",
                        help="run every lesson again: delete this mode's jupyter-caches first")
    parser.add_argument("--edition", choices=["all", *EDITIONS], default="all",
                        help="build one edition only (default: all; the language switch links the other)")
    args = parser.parse_args(argv)
    mode = "full" if args.full else "quick"
    env = dict(os.environ)
    if args.full:
        env.pop("WSLAB_QUICK", None)
    else:
        env["WSLAB_QUICK"] = "1"
    # The kernels and autodoc import this checkout's wslab, whatever `pip install -e` points at.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    if args.fresh:  # viewcode keeps a source page that is newer than its module: remove them all
        for folder in (HTML, *(doctrees for _, _, doctrees, _, _ in EDITIONS.values())):
            shutil.rmtree(folder, ignore_errors=True)
    for edition, (tags, out, doctrees, cache, language) in EDITIONS.items():
        if args.edition not in ("all", edition):
            continue
        if args.no_cache:
            shutil.rmtree(BOOK / "_build" / f"{cache}{mode}", ignore_errors=True)
        edition_env = {**env, "WSLAB_LANG": language}  # the lessons' messages, whatever the locale says
        command = [sys.executable, "-m", "sphinx", "-b", "html", "-c", str(BOOK), "-d", str(doctrees), *tags,
                   "-j", "1", "-q", str(ROOT), str(out)]
        started = time.monotonic()
        code = subprocess.run(command, env=edition_env, cwd=ROOT).returncode
        elapsed = time.monotonic() - started
        if code != 0:
            print(f"book build failed after {elapsed:.0f} s ({edition} edition, {mode} mode, exit status {code})",
                  file=sys.stderr)
            return code
        home = INDEX if edition == "en" else out / "book" / "zh-CN" / "index.html"
        print(f"book built in {elapsed:.0f} s ({edition} edition, {mode} mode): {home}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

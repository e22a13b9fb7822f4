"""Build the wslab book: ``python book/build.py`` (from anywhere; ``--help`` for the options).

Runs Sphinx with this folder's conf.py over the repository: every lesson in ``notebooks/`` is
executed in a fresh kernel (quick mode unless ``--full``) through jupyter-cache, so a lesson whose
code did not change since the last build is not run again; the HTML goes to
``book/_build/html/`` (home page ``book/_build/html/book/index.html``). No network is used.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["main", "HTML", "INDEX"]

BOOK = Path(__file__).resolve().parent
ROOT = BOOK.parent
HTML = BOOK / "_build" / "html"
INDEX = HTML / "book" / "index.html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python book/build.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true",
                        help="run the lessons in full mode (the learner's measurements; slower) instead of quick mode")
    parser.add_argument("--fresh", action="store_true",
                        help="start from an empty output (the HTML and Sphinx's saved state); "
                             "the executed lessons stay cached")
    parser.add_argument("--no-cache", action="store_true",
                        help="run every lesson again: delete this mode's jupyter-cache first")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    if args.full:
        env.pop("WSLAB_QUICK", None)
    else:
        env["WSLAB_QUICK"] = "1"
    # The kernels and autodoc import this checkout's wslab, whatever `pip install -e` points at.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    if args.no_cache:
        cache = BOOK / "_build" / (".jupyter_cache-full" if args.full else ".jupyter_cache-quick")
        shutil.rmtree(cache, ignore_errors=True)
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-c", str(BOOK), "-d", str(BOOK / "_build" / "doctrees"),
               "-j", "1", "-q", str(ROOT), str(HTML)]
    if args.fresh:  # viewcode keeps a source page that is newer than its module: remove them all
        for folder in (HTML, BOOK / "_build" / "doctrees"):
            shutil.rmtree(folder, ignore_errors=True)
    started = time.monotonic()
    code = subprocess.run(command, env=env, cwd=ROOT).returncode
    elapsed = time.monotonic() - started
    mode = "full" if args.full else "quick"
    if code == 0:
        print(f"book built in {elapsed:.0f} s ({mode} mode): {INDEX}")
    else:
        print(f"book build failed after {elapsed:.0f} s ({mode} mode, exit status {code})", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())

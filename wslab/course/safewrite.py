"""Write lesson files without ever writing over a learner's work.

``python -m wslab exercises`` and ``python -m wslab lessons DIR`` write
notebooks into folders where a learner works. Both write through
:func:`write_files`, which overwrites a file only when it holds nothing of the
learner's:

* the file does not exist, or already holds exactly the new bytes;
* or it is byte for byte what wslab last wrote there: each folder keeps a
  record, ``.wslab-written.json``, of the SHA-256 of every file written;
* or, in a git checkout, it is the copy git holds (tracked and unchanged, so
  git can give it back): a fresh clone's ``notebooks/`` has no record yet.

Anything else is refused as a whole, before a single file is written: a
:class:`LearnerWorkError` names the files and the way out (another folder, or
``--force``).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from .i18n import gettext as _

__all__ = ["RECORD", "LearnerWorkError", "write_files", "changed_files"]

#: The record of what wslab wrote into a folder, relative path -> SHA-256 hex digest.
RECORD = ".wslab-written.json"


class LearnerWorkError(FileExistsError):
    """Files that differ from what wslab last wrote: perhaps a learner's answers.

    ``error.paths`` lists them; nothing was written.
    """

    def __init__(self, paths: list[Path], *, force_flag: str = "--force") -> None:
        self.paths = paths
        names = ", ".join(str(p) for p in paths)
        super().__init__(
            _("not overwritten: {count} file(s) changed since wslab wrote them "
              "(your answers?): {names}; copy them elsewhere first, write to another folder, "
              "or pass {flag} to overwrite them").format(count=len(paths), names=names, flag=force_flag)
        )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _git_blob(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _read_record(root: Path) -> dict[str, str]:
    try:
        files = json.loads((root / RECORD).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # no record (or a damaged one): fewer files count as ours, never more
    return {k: v for k, v in files.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(files, dict) else {}


def _git_tracked(root: Path, names: list[str]) -> dict[str, str]:
    """Relative path -> blob id of what git's index holds, for the tracked ones of ``names``."""
    if not names:
        return {}
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-s", "-z", "--", *names],
            capture_output=True, timeout=30, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if done.returncode != 0:
        return {}
    tracked = {}
    for entry in done.stdout.split(b"\0"):
        if entry:
            meta, _tab, path = entry.partition(b"\t")
            rel = path.decode("utf-8", "surrogateescape")
            tracked[rel] = meta.split()[1].decode()  # paths come relative to root
    return tracked


def changed_files(root: Path, files: dict[str, bytes]) -> list[Path]:
    """Which of ``files`` (relative path -> new bytes) exist under ``root`` holding work of their own."""
    record = _read_record(root)
    suspects: dict[str, bytes] = {}
    for rel, data in files.items():
        target = root / rel
        if not target.exists():
            continue
        current = target.read_bytes()
        if current != data and record.get(rel) != _sha256(current):
            suspects[rel] = current
    tracked = _git_tracked(root, sorted(suspects))
    return [root / rel for rel, current in sorted(suspects.items()) if tracked.get(rel) != _git_blob(current)]


def write_files(root: Path, files: dict[str, bytes], *, force: bool = False,
                force_flag: str = "--force") -> list[Path]:
    """Write ``files`` (relative POSIX path -> bytes) under ``root``; return the paths written.

    Raises :class:`LearnerWorkError` (and writes nothing) when a target holds
    something wslab did not write, unless ``force``.
    """
    if not force:
        changed = changed_files(root, files)
        if changed:
            raise LearnerWorkError(changed, force_flag=force_flag)
    record = _read_record(root)
    written = []
    for rel, data in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        record[rel] = _sha256(data)
        written.append(target)
    root.mkdir(parents=True, exist_ok=True)
    (root / RECORD).write_text(json.dumps({"files": dict(sorted(record.items()))}, indent=1) + "\n",
                               encoding="utf-8")
    return written

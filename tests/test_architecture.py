"""The package's layering holds: the import contracts in pyproject.toml ([tool.importlinter]).

import-linter (on grimp) reads every module's imports and checks each contract;
a change that makes the protocol core do I/O, or the battery share code with
what it grades, fails here with the chain of imports that broke it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

RUN = "from importlinter.cli import lint_imports; raise SystemExit(lint_imports(no_cache=True, no_logo=True))"


def _lint(cwd: Path, config: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run import-linter in ``cwd`` (on ``config``, else ``cwd``'s pyproject.toml)."""
    code = RUN if config is None else RUN.replace("no_cache=True", f"no_cache=True, config_filename={str(config)!r}")
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120, env=env)


def test_every_import_contract_in_pyproject_is_kept():
    out = _lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "broken" in out.stdout and " 0 broken" in out.stdout


def _lint_a_copy_where(tmp_path: Path, module: str, add: str) -> subprocess.CompletedProcess[str]:
    """Lint a copy of the package (same contracts) in which ``module`` (a path under wslab/) gains ``add``."""
    import shutil

    copy = tmp_path / "wslab"
    shutil.copytree(ROOT / "wslab", copy, ignore=shutil.ignore_patterns("__pycache__", "_lessons"))
    path = copy / module
    text = path.read_text()
    anchor = "from __future__ import annotations\n"
    assert anchor in text, f"{module} has no {anchor!r} to add an import after"
    path.write_text(text.replace(anchor, anchor + add + "  # noqa\n", 1))
    config = tmp_path / "pyproject.toml"
    config.write_text((ROOT / "pyproject.toml").read_text())
    return _lint(tmp_path, config, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize(
    ("module", "add", "said"),
    [
        # the protocol core does no I/O
        ("protocol/frame_codec.py", "import asyncio", "wslab.protocol.frame_codec -> asyncio"),
        # layers: a lower folder never imports a higher one
        ("server/limits.py", "from ..classroom import chat", "wslab.server.limits -> wslab.classroom.chat"),
        # no cycles inside a folder: the reader already imports the codec
        ("protocol/frame_codec.py", "from . import frame_reader", "No cycles are allowed in wslab.protocol."),
        # the battery shares no code with what it grades
        ("battery/wire.py", "from ..protocol import frames", "wslab.battery.wire -> wslab.protocol.frames"),
    ],
    ids=["io-in-protocol", "upward-import", "cycle", "battery-uses-protocol"],
)
def test_each_contract_fails_on_a_copy_that_breaks_it(tmp_path, module, add, said):
    """The checks can fail: one import added to a copy of the package breaks one contract, named."""
    out = _lint_a_copy_where(tmp_path, module, add)
    assert out.returncode == 1, out.stdout + out.stderr
    assert said in out.stdout, out.stdout

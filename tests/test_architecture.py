"""The package's layering holds: the import contracts in pyproject.toml ([tool.importlinter]).

import-linter (on grimp) reads every module's imports and checks each contract;
a change that makes the protocol core do I/O, or the battery share code with
what it grades, fails here with the chain of imports that broke it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def test_a_protocol_module_that_imports_asyncio_breaks_the_contract(tmp_path):
    """The check can fail: the same contract over a copy of the package whose codec imports asyncio."""
    import shutil

    copy = tmp_path / "wslab"
    shutil.copytree(ROOT / "wslab", copy, ignore=shutil.ignore_patterns("__pycache__"))
    codec = copy / "protocol" / "frame_codec.py"
    codec.write_text(codec.read_text().replace("import struct\n", "import struct\nimport asyncio  # noqa\n", 1))
    config = tmp_path / "pyproject.toml"
    config.write_text((ROOT / "pyproject.toml").read_text())
    out = _lint(tmp_path, config, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 1, out.stdout + out.stderr
    assert "wslab.protocol.frame_codec -> asyncio" in out.stdout

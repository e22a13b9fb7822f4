"""Start zoo servers in processes of their own and grade them with the battery."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

#: Where `npm install ws` goes (outside the repository); WSLAB_ZOO_CACHE overrides it.
NODE_CACHE = Path(os.environ.get("WSLAB_ZOO_CACHE", Path.home() / ".cache" / "wslab-zoo"))
WS_VERSION = "8"


def node_ws() -> Path | None:
    """The cache directory holding npm's ``ws`` (installed on first use); None without node."""
    if shutil.which("node") is None:
        return None
    if not (NODE_CACHE / "node_modules" / "ws" / "package.json").exists():
        if shutil.which("npm") is None:
            raise RuntimeError("node is installed but npm is not: install npm to run Node's ws in the zoo")
        NODE_CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(NODE_CACHE), f"ws@{WS_VERSION}"],
            check=True, timeout=180, capture_output=True,
        )
    return NODE_CACHE


def command(name: str, max_size: int) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    if name == "node-ws":
        cache = node_ws()
        assert cache is not None, "node is not installed"
        env["NODE_PATH"] = str(cache / "node_modules")
        return ["node", str(HERE / "ws_server.js"), str(max_size)], env
    return [sys.executable, "-m", "tests.zoo.servers", name, str(max_size)], env


@asynccontextmanager
async def running(name: str, max_size: int = 2**20, start_timeout: float = 30) -> AsyncIterator[str]:
    """Start zoo server ``name`` in a process of its own; yield its ws:// url; stop it after."""
    argv, env = command(name, max_size)
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(start_timeout):
            line = (await proc.stdout.readline()).decode()
        if not line.startswith("PORT "):
            raise RuntimeError(f"zoo server {name!r} did not start: printed {line!r}, exit code {proc.returncode}")
        yield f"ws://127.0.0.1:{int(line.split()[1])}/"
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()

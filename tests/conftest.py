"""Shared test helpers: one time unit, a bounded asyncio runner, no servers left behind."""

from __future__ import annotations

import asyncio
import os
from typing import Any, Coroutine

import pytest

import wslab

#: Multiply every timeout by this on a slow machine: WSLAB_TIME_SCALE=3 pytest
TIME_SCALE = float(os.environ.get("WSLAB_TIME_SCALE", "1"))


def seconds(value: float) -> float:
    """A timeout, scaled for slow machines."""
    return value * TIME_SCALE


def run(coro: Coroutine[Any, Any, Any], timeout: float = 10) -> Any:
    """Run ``coro`` on a new loop, failing if it takes longer than ``timeout`` (scaled)."""

    async def bounded() -> Any:
        async with asyncio.timeout(seconds(timeout)):
            return await coro

    return asyncio.run(bounded())


@pytest.fixture(autouse=True)
def _no_servers_left_behind():
    yield
    wslab.stop_all()

"""``python -m wslab classroom``, run as a real process, joined by websockets' client."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from wslab.__main__ import COMMANDS
from wslab.classroom.cli import network_address

from .conftest import run, seconds

ROOT = Path(__file__).resolve().parent.parent


class Classroom:
    """The command in a subprocess; its output read line by line in a thread."""

    def __init__(self, *args: str, sigint: str = "default") -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # The child's SIGINT disposition is set here, never inherited from
        # whoever started pytest (a background shell job ignores SIGINT).
        disposition = signal.SIG_IGN if sigint == "ignored" else signal.SIG_DFL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wslab", "classroom", *args],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, disposition),
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pattern: str, timeout: float = 20) -> re.Match[str]:
        for _ in range(1000):
            line = self.lines.get(timeout=seconds(timeout))
            if line is None:
                raise AssertionError(f"the command ended without printing {pattern!r}: {self.seen}")
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"no {pattern!r} in {self.seen}")

    def interrupt(self, signum: int = signal.SIGINT) -> int:
        self.proc.send_signal(signum)
        return self.proc.wait(timeout=seconds(15))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=seconds(5))


@pytest.fixture
def classroom():
    started: list[Classroom] = []

    def start(*args: str, sigint: str = "default") -> Classroom:
        started.append(Classroom(*args, sigint=sigint))
        return started[-1]

    yield start
    for c in started:
        c.kill()


def test_classroom_is_a_registered_command():
    assert COMMANDS["classroom"][0] == "wslab.classroom.cli"


@pytest.mark.parametrize("signum, sigint", [
    (signal.SIGINT, "default"),
    (signal.SIGTERM, "default"),
    (signal.SIGINT, "ignored"),  # started in the background: Ctrl-C must still stop it
], ids=["ctrl-c", "sigterm", "ctrl-c-with-sigint-ignored-at-start"])
def test_classroom_starts_on_loopback_prints_how_to_join_and_stops_cleanly_on_a_signal(classroom, signum, sigint):
    room = classroom("--room", "Monday class", sigint=sigint)
    url = room.wait_for(r"is open at (http://127\.0\.0\.1:\d+/)")[1]
    room.wait_for(r"Ctrl-C stops the room")
    assert not any("WARNING" in line for line in room.seen)
    assert any(f"await wslab.join_classroom({url!r}, 'your name')" in line for line in room.seen)
    ws_url = url.replace("http://", "ws://")

    async def join():
        ws = await connect(ws_url + "?nick=ada")
        welcome = json.loads(await asyncio.wait_for(ws.recv(), seconds(5)))
        return ws, welcome

    async def closed(ws):
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await asyncio.wait_for(ws.recv(), seconds(10))
        return info.value.rcvd.code

    async def main():
        ws, welcome = await join()
        await asyncio.wait_for(ws.recv(), seconds(5))  # ada's own join notice
        code = await asyncio.to_thread(room.interrupt, signum)
        return welcome, code, await closed(ws)

    welcome, exit_code, close_code = run(main(), timeout=30)
    assert welcome["room"] == "Monday class" and welcome["nick"] == "ada"
    assert exit_code == 0
    assert close_code == 1001  # going away, RFC 6455 section 7.4.1
    room.wait_for(r"classroom stopped: 1 still joined got 1001")


def test_the_banner_gives_non_browser_clients_a_ws_address_that_joins(classroom):
    room = classroom("--room", "banner")
    ws_url = room.wait_for(r"other clients:\s+(ws://127\.0\.0\.1:\d+/\?nick=yourname)")[1]
    room.wait_for(r"Ctrl-C stops the room")

    async def join():
        async with connect(ws_url.replace("yourname", "bob")) as ws:
            return json.loads(await asyncio.wait_for(ws.recv(), seconds(5)))

    welcome = run(join(), timeout=15)
    assert welcome["type"] == "welcome" and welcome["nick"] == "bob" and welcome["room"] == "banner"
    assert room.interrupt() == 0


def test_listen_on_network_warns_and_accepts_pages_from_its_network_address(classroom):
    room = classroom("--listen-on-network")
    warning = room.wait_for(r"WARNING: listening on ALL network interfaces")
    url = room.wait_for(r"is open at (http://[\d.]+:(\d+)/)")
    assert warning
    port = int(url[2])
    origin = f"http://{network_address()}:{port}"

    async def main():
        # Traffic stays on loopback; only the Origin header names the network address.
        async with connect(f"ws://127.0.0.1:{port}/?nick=lab", origin=origin) as ws:
            welcome = json.loads(await asyncio.wait_for(ws.recv(), seconds(5)))
        with pytest.raises(InvalidStatus) as info:
            await connect(f"ws://127.0.0.1:{port}/?nick=eve", origin="https://evil.example")
        return welcome["nick"], info.value.response.status_code

    assert run(main()) == ("lab", 403)
    assert room.interrupt() == 0


def test_extra_origins_are_accepted(classroom):
    room = classroom("--origin", "https://hub.example.org")
    port = int(room.wait_for(r"is open at http://127\.0\.0\.1:(\d+)/")[1])

    async def main():
        async with connect(f"ws://127.0.0.1:{port}/?nick=hub", origin="https://hub.example.org") as ws:
            return json.loads(await asyncio.wait_for(ws.recv(), seconds(5)))["nick"]

    assert run(main()) == "hub"
    assert room.interrupt() == 0


@pytest.mark.parametrize("args, message", [
    (["--port", "70000"], "--port must be 0-65535, got 70000"),
    (["--history", "-1"], "--history must be 0 or more, got -1"),
])
def test_bad_arguments_are_named_with_exit_code_2(args, message):
    result = subprocess.run(
        [sys.executable, "-m", "wslab", "classroom", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=seconds(30),
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_a_taken_port_is_reported_not_hung(classroom):
    first = classroom()
    port = first.wait_for(r"is open at http://127\.0\.0\.1:(\d+)/")[1]
    result = subprocess.run(
        [sys.executable, "-m", "wslab", "classroom", "--port", port],
        cwd=ROOT, capture_output=True, text=True, timeout=seconds(30),
    )
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr

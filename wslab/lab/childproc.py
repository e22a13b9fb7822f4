"""A helper process for measurements: clients that must not share the GIL with the server.

Design note
-----------
The fan-out and scaling measurements (:mod:`wslab.classroom.fanout`, :mod:`wslab.lab.scaling`)
run their simulated clients in a child process started with multiprocessing's
"spawn" context (safe from a Jupyter kernel: no fork of a process that has
threads). Parent and child talk over one :func:`multiprocessing.Pipe`, one
request and one answer at a time, each a ``(kind, value)`` pair: the child
answers ``("hello", pid)`` first, ``("error", traceback_text)`` when it fails,
and stops on ``("stop", None)``.

What must never happen: a parent that waits forever. Every wait is bounded in
time and checks that the child is alive; :meth:`ChildProcess.close` asks,
then terminates, then kills, and joins in a few seconds at most.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
import traceback
from typing import Any, AsyncIterator, Awaitable, Callable

try:
    import resource
except ImportError:  # Windows: no open-file limit to raise
    resource = None  # type: ignore[assignment]

__all__ = ["ChildProcess", "child_side", "commands", "raise_fd_limit"]


class ChildProcess:
    """The parent's end of a "spawn" child: bounded requests, a bounded stop.

    ``target(conn, *args)`` runs in the child (a module-level function:
    "spawn" imports its module); ``who`` names the child in error messages.
    """

    def __init__(self, target: Callable[..., None], args: tuple[Any, ...], *, who: str, name: str,
                 start_timeout: float) -> None:
        self.who = who
        ctx = multiprocessing.get_context("spawn")
        self._conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(target=target, args=(child_conn, *args), name=name, daemon=True)
        self.process.start()
        child_conn.close()  # the child has its own copy: EOF here if it dies
        self.pid = self.request(None, None, start_timeout, expect="hello")

    def send(self, command: str, arg: Any = None) -> None:
        self._conn.send((command, arg))

    def request(self, command: str | None, arg: Any, timeout: float, *, expect: str | None = None) -> Any:
        """Send ``(command, arg)`` (unless ``command`` is None), return the answer's value.

        Bounded by ``timeout`` seconds; with ``expect``, the answer's kind must be that.
        """
        if command is not None:
            self.send(command, arg)
        waited_for = expect or command
        deadline = time.monotonic() + timeout
        while not self._conn.poll(min(0.2, max(0.0, deadline - time.monotonic()))):
            if not self.process.is_alive():
                raise RuntimeError(f"{self.who}' process exited (code {self.process.exitcode}) "
                                   f"while waiting for {waited_for!r}")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.who} did not answer {waited_for!r} within {timeout:.0f} s: "
                                   f"try fewer clients or a longer timeout")
        try:
            kind, value = self._conn.recv()
        except EOFError:
            self.process.join(1)
            hint = ("; in a script, call it under `if __name__ == \"__main__\":` (the clients' process "
                    "is started with multiprocessing's \"spawn\" and imports your script)"
                    if expect == "hello" else "")
            raise RuntimeError(f"{self.who}' process ended (exit code {self.process.exitcode}) "
                               f"while waiting for {waited_for!r}{hint}") from None
        if kind == "error":
            last = value.strip().splitlines()[-1] if value.strip() else "no details"
            raise RuntimeError(f"{self.who} failed ({last}); their traceback:\n{value}")
        if expect is not None and kind != expect:
            raise RuntimeError(f"{self.who} answered {kind!r}, expected {expect!r}")
        return value

    def expect(self, what: str, timeout: float) -> Any:
        """The child's next answer, which must be ``what``; bounded by ``timeout`` seconds."""
        return self.request(None, None, timeout, expect=what)

    def close(self) -> None:
        """Stop the child: ask, then terminate, then kill; joined in a few seconds at most."""
        try:
            try:
                self._conn.send(("stop", None))
            except (OSError, ValueError):
                pass
            self.process.join(3)
            if self.process.is_alive():
                self.process.terminate()
                self.process.join(2)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(2)
        finally:
            self._conn.close()


def child_side(conn: Any, main: Callable[[Any], Awaitable[None]], files: int) -> None:
    """The child's end: raise the open-file limit to ``files``, say hello, run ``main(conn)``.

    Call it from the module-level target of a :class:`ChildProcess`; any error is
    sent back as ``("error", traceback)`` before the process exits.
    """
    try:
        raise_fd_limit(files)
        conn.send(("hello", os.getpid()))
        asyncio.run(main(conn))
    except BaseException:
        try:
            conn.send(("error", traceback.format_exc()))
        except (OSError, ValueError):
            pass
    finally:
        conn.close()


async def commands(conn: Any) -> AsyncIterator[tuple[str, Any]]:
    """The child's requests, ``(command, arg)``, until the parent says ``"stop"`` or is gone.

    The ``main(conn)`` of :func:`child_side` runs ``async for command, arg in
    commands(conn):`` and answers each with ``conn.send((kind, value))``.
    The pipe is read in a worker thread, so the child's loop (its clients)
    runs while it waits.
    """
    while True:
        try:
            command, arg = await asyncio.to_thread(conn.recv)
        except EOFError:  # the parent is gone
            return
        if command == "stop":
            return
        yield command, arg


def raise_fd_limit(needed: int) -> int:
    """Raise this process's soft limit on open files to ``needed`` (up to the hard limit).

    Each simulated client costs one file descriptor in the room's process (the
    server's socket) and one in the clients' process (its own socket);
    :func:`measure_fanout` raises the limit in both. Returns the new soft limit.
    """
    if resource is None:
        return needed
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft

"""Draining a server during a deploy, and the check of exercise 8.3.

A deploy replaces a server process. Done well, the old process stops accepting
connections (the load balancer sends new clients to the new one), closes each
open connection with 1012 (service restart, IANA "WebSocket Close Code Number
Registry") or 1001 (going away, RFC 6455 section 7.4.1), waits for each closing
handshake, and only then exits; clients reconnect, to another process.

Design note: :func:`check_drain` runs the learner's ``drain(server, code=...)``
against a real websockets server (``websockets.asyncio.server.serve``, not a
wslab one: the exercise uses websockets' own ``Server``) with real clients on
this loop, once with 1012 and once with 1001. Everything it waits for has a
deadline; the servers are closed at the end whatever the learner's code did.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from ..course import checks
from ..course.i18n import gettext as _

__all__ = ["Drained", "check_drain", "greeter"]


def greeter(name: str) -> Callable[[Any], Awaitable[None]]:
    """A handler that sends ``"hello from <name>"``, then waits for the connection to close."""

    async def handler(connection: Any) -> None:
        await connection.send(f"hello from {name}")
        await connection.wait_closed()

    return handler


@dataclass
class Drained:
    """What :func:`check_drain` saw for one close code."""

    code: int
    clients: int
    seconds: float

    def __str__(self) -> str:
        return _("{clients} clients closed with {code} in {ms} ms; new connections refused").format(
            clients=self.clients, code=self.code, ms=f"{self.seconds * 1000:.0f}")


async def _one(drain: Callable[..., Awaitable[Any]], code: int, clients: int, timeout: float) -> Drained:
    server = await serve(greeter("old"), "127.0.0.1", 0, ping_interval=None)
    url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    opened = []
    try:
        for _client in range(clients):
            ws = await connect(url, ping_interval=None, open_timeout=timeout)
            await asyncio.wait_for(ws.recv(), timeout)
            opened.append(ws)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await asyncio.wait_for(drain(server, code=code), timeout)
        except TimeoutError:
            raise checks.CheckFailed(_("`drain(server, code={code})` did not return within {seconds} s").format(
                code=code, seconds=f"{timeout:g}")) from None
        seconds = loop.time() - started
        waiting = [ws for ws in opened if ws.protocol.close_rcvd is None]
        checks.check(not waiting, _(
            "drain() returned while {waiting} of {clients} clients had not got a close frame yet: "
            "wait for the closing handshakes (`await server.wait_closed()`) before the process may exit").format(
            waiting=len(waiting), clients=clients))
        codes = sorted({ws.protocol.close_rcvd.code for ws in opened})
        checks.check(codes == [code], _(
            "`drain(server, code={code})` closed the clients with {codes}; close each one with code "
            "(websockets: `server.close(code=code, reason=...)`)").format(code=code, codes=codes))
        try:
            late = await connect(url, open_timeout=timeout)
        except OSError:
            pass  # refused: the listener is closed, as it should be
        else:
            await late.close()
            raise checks.CheckFailed(
                _("a new client could still connect after drain(): stop listening first (`server.close()` "
                  "closes the listening socket), or the load balancer's new clients keep landing here"))
        return Drained(code=code, clients=clients, seconds=seconds)
    finally:
        for ws in opened:
            ws.transport.abort()
        server.close()
        try:
            await asyncio.wait_for(server.wait_closed(), timeout)
        except TimeoutError:
            pass  # handlers that ignore the closed connection: nothing more to do here


async def check_drain(drain: Callable[..., Awaitable[Any]], *, clients: int = 5,
                      timeout: float = 5.0) -> list[Drained]:
    """Exercise 8.3's check: ``await drain(server, code=...)`` must stop listening, close every
    client with ``code`` (1012, then 1001) and return once every closing handshake is done.

    Raises :class:`wslab.CheckFailed` naming what went wrong.
    """
    return [await _one(drain, code, clients, timeout) for code in (1012, 1001)]

"""Draining a server during a deploy (wslab/production/drain.py; lesson 08, exercise 8.3): the check passes
a drain that stops listening, closes every client with the code asked for (1012 service restart,
1001 going away: RFC 6455 section 7.4.1 and the IANA registry) and waits; it fails the sloppy ones."""

from __future__ import annotations

import asyncio

import pytest

import wslab
from wslab.production.drain import check_drain

from .conftest import run, seconds


async def good_drain(server, code=1012):
    server.close(code=code, reason="restarting: reconnect")
    await server.wait_closed()


async def default_close(server, code=1012):
    server.close()
    await server.wait_closed()


async def no_wait(server, code=1012):
    server.close(code=code)


async def abort_everyone(server, code=1012):
    server.close(close_connections=False)
    for connection in list(server.connections):
        connection.transport.abort()


async def keeps_listening(server, code=1012):
    await asyncio.gather(*(c.close(code) for c in list(server.connections)))


def check(drain):
    return run(check_drain(drain, timeout=seconds(5)), timeout=seconds(60))


def test_the_check_passes_a_drain_that_stops_listening_closes_with_the_code_and_waits():
    seen = check(good_drain)
    assert [d.code for d in seen] == [1012, 1001] and all(d.clients == 5 for d in seen)


@pytest.mark.parametrize(("drain", "says"), [
    (default_close, r"closed the clients with \[1001\]"),
    (no_wait, "had not got a close frame"),
    (abort_everyone, "had not got a close frame"),
    (keeps_listening, "could still connect"),
], ids=["server.close() without the code", "no wait", "transports aborted", "the listener left open"])
def test_the_check_fails_a_sloppy_drain_and_says_what_to_fix(drain, says):
    with pytest.raises(wslab.CheckFailed, match=says):
        check(drain)

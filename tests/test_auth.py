"""Tokens for WebSockets: refused before the upgrade (401/403), 1008 after it, never logged.

The peer is websockets' own client; the checks are run on a right answer and on wrong ones."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import InvalidStatus

import wslab
from wslab import auth

from .conftest import run, seconds

TOKEN = auth.make_token()


def _refuse_unless(accepted):
    """A gate built on ``accepted(value, request)``: 401 without a token, 403 unless accepted."""

    def gate(connection, request):
        values = parse_qs(urlsplit(request.path).query).get("token", [])
        if not values or not values[0]:
            return connection.respond(HTTPStatus.UNAUTHORIZED, "a token is required\n")
        if not accepted(values[0], request):
            return connection.respond(HTTPStatus.FORBIDDEN, "this token is not accepted\n")
        return None

    return gate


#: The lesson's reference (exercise 7.2): compare bytes, the whole token.
require_token = _refuse_unless(lambda value, request: hmac.compare_digest(value.encode(), TOKEN.encode()))


async def first_message(connection):
    try:
        async with asyncio.timeout(1.0):
            token = json.loads(await connection.recv())["token"]
    except (TimeoutError, ValueError, KeyError, TypeError):
        await connection.close(1008, "send {\"token\": ...} first")
        return
    if not isinstance(token, str) or not hmac.compare_digest(token.encode(), TOKEN.encode()):
        await connection.close(1008, "token not accepted")
        return
    await connection.send("welcome")


def test_a_token_gate_refuses_401_and_403_before_the_upgrade_and_lets_the_right_token_in():
    table = run(auth.check_token_gate(require_token, TOKEN), timeout=20)
    assert [row[2] for row in table.rows] == [401, 403, 401, 403, 403, 403, 403, 101]


def test_a_gate_that_lets_everyone_in_fails_the_check_naming_the_case():
    with pytest.raises(wslab.CheckFailed, match="with no token, the client got 101; expected 401"):
        run(auth.check_token_gate(lambda connection, request: None, TOKEN), timeout=20)


@pytest.mark.parametrize("level, words", [
    (logging.WARNING, "the token appeared in the logs"),
    (logging.DEBUG, "DEBUG myapp: request /\\?token="),  # websockets' own DEBUG lines aside, every level counts
])
def test_a_gate_that_logs_the_token_fails_the_check(level, words):
    def leaky(connection, request):
        logging.getLogger("myapp").log(level, "request %s", request.path)
        return require_token(connection, request)

    with pytest.raises(wslab.CheckFailed, match=words):
        run(auth.check_token_gate(leaky, TOKEN), timeout=20)


def test_a_gate_that_prints_the_token_fails_the_check():
    def chatty(connection, request):
        print("path:", request.path)
        return require_token(connection, request)

    with pytest.raises(wslab.CheckFailed, match="printed: path: /\\?token="):
        run(auth.check_token_gate(chatty, TOKEN), timeout=20)


def test_a_stub_is_not_done_yet_not_a_server_error():
    def stub(connection, request):
        raise NotImplementedError

    with pytest.raises(NotImplementedError):
        run(auth.check_token_gate(stub, TOKEN), timeout=20)


def test_a_first_message_handler_closes_1008_on_every_bad_first_message():
    """RFC 6455 section 7.4.1: 1008 is policy violation."""
    table = run(auth.check_first_message(first_message, TOKEN), timeout=30)
    assert [row[2] for row in table.rows] == ["answer 'welcome'"] + ["close 1008"] * 9


def test_a_handler_that_closes_1000_on_a_bad_token_fails_the_check():
    async def lax(connection):
        first = await connection.recv()
        if TOKEN not in first:
            await connection.close(1000)
            return
        await connection.send("welcome")

    with pytest.raises(wslab.CheckFailed, match="a wrong token, it got close 1000; expected close 1008"):
        run(auth.check_first_message(lax, TOKEN, wait=0.3), timeout=30)


# Insecure answers the checks used to pass (issue 19)


@pytest.mark.parametrize(
    "accepted, case",
    [
        (lambda value, request: TOKEN in request.path, "the right one in another parameter, the client got 101"),
        (lambda value, request: value[:6] == TOKEN[:6], "sharing all but the last character, the client got 101"),
        (lambda value, request: value.startswith(TOKEN), "a longer token starting with the right one, the client got 101"),
        (lambda value, request: hmac.compare_digest(value, TOKEN), "a non-ASCII token, the client got 500.*compare bytes"),
    ],
    ids=["anywhere-in-the-url", "prefix", "startswith", "compare-text"],
)
def test_an_insecure_token_gate_fails_the_check_naming_the_case(accepted, case):
    with pytest.raises(wslab.CheckFailed, match=case):
        run(auth.check_token_gate(_refuse_unless(accepted), TOKEN), timeout=20)


def _login_unless(accepted):
    async def handler(connection):
        first = await connection.recv()
        try:
            token = json.loads(first)["token"]
        except (ValueError, KeyError, TypeError):
            await connection.close(1008, "token required")
            return
        if not accepted(token, first):
            await connection.close(1008, "token not accepted")
            return
        await connection.send("welcome")

    return handler


@pytest.mark.parametrize(
    "accepted, case",
    [
        (lambda token, first: TOKEN in first, "the right one in another field, it got answer"),
        (lambda token, first: str(token)[:6] == TOKEN[:6], "sharing all but the last character, it got answer"),
        (lambda token, first: str(token).startswith(TOKEN), "starting with the right one, it got answer"),
        (lambda token, first: hmac.compare_digest(str(token), TOKEN), "raised TypeError: .*compare bytes"),
    ],
    ids=["anywhere-in-the-message", "prefix", "startswith", "compare-text"],
)
def test_an_insecure_first_message_check_fails_naming_the_case(accepted, case):
    with pytest.raises(wslab.CheckFailed, match=case):
        run(auth.check_first_message(_login_unless(accepted), TOKEN, wait=0.3), timeout=40)


def test_websockets_logs_query_cookie_and_first_message_only_at_debug_level():
    """The lesson's claim: at DEBUG websockets logs the request line, headers and frames (every
    token then; a frame's text elided in the middle past 75 characters); at INFO that the server
    listens, each connection opened or closed, a refusal's status, and the server closing."""

    async def handler(connection):
        await connection.recv()
        await connection.send("ok")

    def refuse_some(connection, request):
        return connection.respond(HTTPStatus.FORBIDDEN, "no\n") if request.path == "/deny" else None

    async def main():
        async with serve(handler, "127.0.0.1", 0, process_request=refuse_some) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}/?token=QUERYSECRET",
                               additional_headers={"Cookie": "session=COOKIESECRET"}) as ws:
                await ws.send(json.dumps({"token": "FIRSTSECRET"}))
                await ws.send("x" * 60 + "LONGSECRET" + "y" * 60)
                await asyncio.wait_for(ws.recv(), seconds(5))
            with pytest.raises(InvalidStatus):
                await connect(f"ws://127.0.0.1:{port}/deny")

    secrets = ("QUERYSECRET", "COOKIESECRET", "FIRSTSECRET")
    with auth.capture_logs(logging.INFO) as info:
        run(main())
    with auth.capture_logs(logging.DEBUG) as debug:
        run(main())
    assert all(not info.leaks(s) for s in secrets)
    assert all(debug.leaks(s) for s in secrets)
    assert "DEBUG websockets.server: < GET /?token=QUERYSECRET HTTP/1.1" in debug.lines
    assert "DEBUG websockets.server: < Cookie: session=COOKIESECRET" in debug.lines
    assert not debug.leaks("LONGSECRET")  # elided: "TEXT 'xxx...yyy' [130 bytes]"
    said = {line.rsplit(" on 127.0.0.1:", 1)[0] for line in info.lines if line.startswith("INFO websockets.")}
    assert said == {f"INFO websockets.server: {m}" for m in (
        "server listening", "connection open", "connection closed", "HTTP response sent (403 Forbidden)",
        "server closing", "server closed")}


def test_a_cookie_from_a_foreign_origin_is_refused_with_403():
    """Cross-site WebSocket hijacking (RFC 6455 section 10.2; lesson 02, section 5): the browser may
    send the cookie with a handshake from another site, so the Origin allow-list is what refuses
    the foreign page."""

    async def echo(connection):
        await connection.send("hello " + connection.request.headers.get("Cookie", ""))

    async def main():
        srv = await wslab.serve(echo, "cookie-room", origins=["http://127.0.0.1:8000"])
        cookie = {"Cookie": "session=abc"}
        async with connect(srv.url, origin="http://127.0.0.1:8000", additional_headers=cookie) as ws:
            greeting = await asyncio.wait_for(ws.recv(), seconds(5))
        with pytest.raises(InvalidStatus) as info:
            await connect(srv.url, origin="https://evil.example", additional_headers=cookie)
        await srv.aclose()
        return greeting, info.value.response.status_code

    assert run(main()) == ("hello session=abc", 403)

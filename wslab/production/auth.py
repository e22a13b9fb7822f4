"""Who is connecting? Tokens for WebSockets, and checks that they are refused and never logged.

A browser's ``new WebSocket(url)`` cannot set an ``Authorization`` header (its
only options are the URL and subprotocols), so a WebSocket server sees a
credential in one of three places: the query string (``?token=...``), a cookie
the browser sends by itself, or the first message after the upgrade. The
lesson compares them; this module gives it a token maker, a log capture, and
the checks for its exercises, which use websockets' own client as the peer.

Design note
-----------
The checks start the learner's function in a real websockets server on
``127.0.0.1`` (``wslab.serve``), connect with ``websockets.asyncio.client``,
and read what a client sees: an HTTP status from ``InvalidStatus``, or a close
code from ``ConnectionClosed``. A learner's stub raises
``NotImplementedError`` inside the server, where websockets would turn it into
a 500 (or a 1011); the wrappers keep it and re-raise it in the check, so the
exercise says "not done yet" instead of printing a server traceback. While a
check runs, every log record at every level, DEBUG included, is captured (and
so is anything the learner's code prints): a token in any of them fails the
check. One exception: websockets' own DEBUG trace (loggers ``websockets.*``),
which writes every request line (``> GET /?token=...``), header and frame
whatever the server's code does; that is why DEBUG logging stays off in
production, and the lesson says so.

The cases are the mistakes a gate makes: the token carried in another
parameter (``/?token=nope&x=<TOKEN>``: a gate that searches the whole URL lets
it in), a wrong token that shares all but the last character of the right one
(a gate that compares a prefix), a longer token that starts with the right
one (a gate that uses ``startswith``), and a non-ASCII token (``é``:
``hmac.compare_digest`` raises ``TypeError`` for a ``str`` that is not ASCII,
so a gate that compares text answers 500 or closes 1011 instead of 403 or 1008;
compare bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import secrets
from typing import Any, Iterator
from urllib.parse import quote

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ..course.checks import CheckFailed
from ..course.i18n import N_
from ..course.i18n import gettext as _
from ..course.display import Table
from ..server.serve import serve

__all__ = ["make_token", "LogCapture", "capture_logs", "check_token_gate", "check_first_message", "LIBRARY_TRACE"]

#: The verdict column of the tables the checks return.
_OK, _WRONG = "ok", "WRONG"


def make_token(nbytes: int = 16) -> str:
    """A random, URL-safe token (``secrets.token_urlsafe``): ``nbytes`` of randomness."""
    if nbytes < 16:
        raise ValueError(f"a token needs at least 16 random bytes to resist guessing, got {nbytes}")
    return secrets.token_urlsafe(nbytes)


class LogCapture(logging.Handler):
    """Every log record (at ``level`` and above, from every logger) while active, as text lines.

    ``lines`` holds ``"LEVEL logger: message"``; ``printed`` what went to
    stdout/stderr meanwhile (when ``stdout=True``); ``leaks(secret)`` the lines
    that contain ``secret``.
    """

    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.lines: list[str] = []
        self.printed = ""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken log call is not our failure
            message = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            message += f" ({record.exc_info[1]!r})"
        self.lines.append(f"{record.levelname} {record.name}: {message}")

    def leaks(self, secret: str) -> list[str]:
        found = [line for line in self.lines if secret in line]
        found += [f"printed: {line}" for line in self.printed.splitlines() if secret in line]
        return found


@contextlib.contextmanager
def capture_logs(level: int = logging.INFO, *, stdout: bool = False) -> Iterator[LogCapture]:
    """Collect every log record at ``level`` and above while the block runs.

    >>> with wslab.auth.capture_logs(logging.DEBUG) as logs:
    ...     ...
    >>> logs.lines[:3]

    The root logger's level is lowered for the block (and restored), so
    records of libraries such as websockets reach the capture. With
    ``stdout=True`` what is printed meanwhile is captured too (and not shown).
    """
    handler = LogCapture(level)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(min(level, old_level) if old_level else level)
    out, err = io.StringIO(), io.StringIO()
    try:
        if stdout:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                yield handler
        else:
            yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.printed = out.getvalue() + err.getvalue()


# The exercises' checks


def _near_miss(token: str) -> str:
    """``token`` with its last character changed: a gate that compares a prefix lets it in."""
    return token[:-1] + ("A" if token[-1:] != "A" else "B")


class _Stub:
    """Keeps a NotImplementedError raised in the server, to re-raise it in the check."""

    def __init__(self) -> None:
        self.error: NotImplementedError | None = None

    def reraise(self) -> None:
        if self.error is not None:
            raise self.error


async def _status(url: str, **kwargs: Any) -> int | str:
    """101 if the upgrade succeeded (then closes), else the HTTP status of the refusal."""
    try:
        ws = await connect(url, open_timeout=5, **kwargs)
    except InvalidStatus as exc:
        return exc.response.status_code
    await ws.close()
    return 101


#: websockets' own DEBUG trace: every request line, header and frame, whatever the server's code does.
LIBRARY_TRACE = ("DEBUG websockets.",)


def _no_leak(logs: LogCapture, token: str) -> None:
    leaked = [line for line in logs.leaks(token) if not line.startswith(LIBRARY_TRACE)]
    if leaked:
        raise CheckFailed(
            _("the token appeared in the logs or the output while the server ran: {line}; "
              "never log or print a credential (log who connected, not their token)").format(line=repr(leaked[0][:160]))
        )


async def check_token_gate(process_request: Any, token: str) -> Table:
    """Check a ``process_request(connection, request)`` that guards the upgrade with ``?token=``.

    Expected, before any upgrade: no token -> 401, a wrong token -> 403 (also
    with the right one in another parameter, a near miss, a longer token, a
    non-ASCII one: see the module note), the right one -> the upgrade goes
    through (101). Raises :class:`CheckFailed` naming the first case that
    differs, or when the token shows up in a log record of any level (except
    websockets' own DEBUG trace) or in printed output; returns the table of
    cases otherwise.
    """
    stub = _Stub()

    def guarded(connection: Any, request: Any) -> Any:
        try:
            return process_request(connection, request)
        except NotImplementedError as exc:
            stub.error = exc
            return connection.respond(500, "not done yet\n")

    async def echo(connection: Any) -> None:
        async for message in connection:
            await connection.send(message)

    cases = [
        (N_("no token"), "/", 401),
        (N_("a wrong token"), f"/?token={make_token()}", 403),
        (N_("an empty token"), "/?token=", 401),
        (N_("a wrong token and the right one in another parameter"), f"/?token=nope&x={quote(token)}", 403),
        (N_("a wrong token sharing all but the last character"), f"/?token={quote(_near_miss(token))}", 403),
        (N_("a longer token starting with the right one"), f"/?token={quote(token)}x", 403),
        (N_("a non-ASCII token"), "/?token=%C3%A9", 403),
        (N_("the right token"), f"/?token={quote(token)}", 101),
    ]
    rows = []
    with capture_logs(logging.DEBUG, stdout=True) as logs:
        server = await serve(echo, "token-gate", process_request=guarded)
        try:
            for label, path, expected in cases:
                got = await _status(server.url.rstrip("/") + path)
                stub.reraise()
                rows.append([_(label), expected, got, _OK if got == expected else _WRONG])
        finally:
            await server.aclose()
    table = Table([_("client sends"), _("expected"), _("got"), ""], rows, title=_("process_request, case by case"))
    for label, expected, got, verdict in rows:
        if verdict != _OK:
            hint = _(" (a 500 means process_request raised: hmac.compare_digest raises TypeError on text "
                     "that is not ASCII, so compare bytes: value.encode())") if got == 500 else ""
            raise CheckFailed(_("with {case}, the client got {got}; expected {expected} "
                                "(401: no credential, 403: a credential that is not accepted){hint}").format(
                case=label, got=got, expected=expected, hint=hint))
    _no_leak(logs, token)
    return table


async def check_first_message(handler: Any, token: str, *, wait: float = 1.0) -> Table:
    """Check a handler that wants ``{"token": ...}`` as the first message, within ``wait`` seconds.

    Expected: the right token -> the handler answers (any message); a wrong
    token (also with the right one in another field, a near miss, a longer
    token, a non-ASCII one, a number), a message that is not that JSON, or
    silence for ``wait`` seconds -> close code 1008 (policy violation, RFC
    6455 section 7.4.1). A handler that says nothing for ``2 * wait + 2``
    seconds counts as hanging. Logs are captured as by :func:`check_token_gate`.
    """
    stub = _Stub()

    async def guarded(connection: Any) -> None:
        try:
            await handler(connection)
        except NotImplementedError as exc:
            stub.error = exc
            await connection.close(1011, "not done yet")

    async def attempt(url: str, first: str | None) -> str:
        async with connect(url, open_timeout=5, close_timeout=2) as ws:
            try:
                if first is not None:
                    await ws.send(first)
                async with asyncio.timeout(wait * 2 + 2):
                    reply = await ws.recv()
                return f"answer {reply[:40]!r}" if isinstance(reply, str) else "answer (bytes)"
            except ConnectionClosed as exc:
                return f"close {exc.rcvd.code}" if exc.rcvd else "close (no close frame)"
            except TimeoutError:
                return "nothing (the handler hangs)"

    cases = [
        (N_("the right token"), json.dumps({"token": token}), "answer"),
        (N_("a wrong token"), json.dumps({"token": make_token()}), "close 1008"),
        (N_("a wrong token and the right one in another field"), json.dumps({"token": "nope", "x": token}), "close 1008"),
        (N_("a wrong token sharing all but the last character"), json.dumps({"token": _near_miss(token)}), "close 1008"),
        (N_("a longer token starting with the right one"), json.dumps({"token": token + "x"}), "close 1008"),
        (N_("a non-ASCII token"), json.dumps({"token": "é"}, ensure_ascii=False), "close 1008"),
        (N_("a token that is not text"), json.dumps({"token": 12345}), "close 1008"),
        (N_("plain text, not JSON"), "hello", "close 1008"),
        (N_("JSON without a token"), json.dumps({"user": "ada"}), "close 1008"),
        (N_("nothing at all"), None, "close 1008"),
    ]
    rows = []
    with capture_logs(logging.DEBUG, stdout=True) as logs:
        server = await serve(guarded, "first-message")
        try:
            for label, first, expected in cases:
                got = await attempt(server.url, first)
                stub.reraise()
                rows.append([_(label), expected, got, _OK if got.startswith(expected) else _WRONG])
        finally:
            await server.aclose()
        errors = list(server.errors)
    table = Table([_("client sends first"), _("expected"), _("got"), ""], rows,
                  title=_("first-message token, case by case"))
    if errors:
        hint = _(" (hmac.compare_digest raises TypeError on text that is not ASCII: compare bytes, "
                 "token.encode())") if "non-ASCII" in str(errors[0]) else ""
        raise CheckFailed(_("the handler raised {type}: {error}; "
                            "a bad first message should close the connection with 1008, not crash{hint}").format(
            type=type(errors[0]).__name__, error=errors[0], hint=hint))
    for label, expected, got, verdict in rows:
        if verdict != _OK:
            raise CheckFailed(_("when the client sends {case}, it got {got}; expected {expected}").format(
                case=label, got=got, expected=expected))
    _no_leak(logs, token)
    return table

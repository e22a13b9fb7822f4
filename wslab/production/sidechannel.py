"""The compression side channel: a compressed message's size tells whether a guess matches a secret.

CRIME (2012, TLS and SPDY compression) and BREACH (2013, HTTP body compression)
share one idea: when a secret and text an attacker chooses travel in the same
compressed stream, DEFLATE (RFC 1951) replaces the attacker's text by a short
back-reference wherever it repeats the secret, so the message shrinks when the
guess is right. TLS hides the bytes, not their number: an eavesdropper who can
make the victim's page send guesses reads the answer from the lengths.
WebSocket's permessage-deflate (RFC 7692) is DEFLATE too, and by default keeps
its window from one message to the next ("context takeover", RFC 7692
section 7.1.1), so even a secret sent in a message of its own stays in the window
that compresses the next one.

Design note: the measurement is real. :func:`wire_sizes` puts a wiretap
(``wslab.lab.wiretap``) between a client and the server, sends one guess at a time
on one connection, reads the whole answer (a ``"csrf"`` and an ``"echo"`` key,
in one JSON message or two), and counts the bytes the server put on the wire
for it, as an eavesdropper on the path would. The client offers
permessage-deflate (websockets' default); the server decides whether to use it.
"""

from __future__ import annotations

import json
import random
import secrets as _secrets
import statistics
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from websockets.asyncio.client import connect

from ..course import checks
from ..course.i18n import gettext as _
from ..server import background as servers
from ..lab.wiretap import wiretap as _wiretap

__all__ = ["ALPHABET", "Leak", "check_no_leak", "make_secret", "reflecting_handler", "wire_sizes"]

#: The characters of a secret (hex, like many CSRF tokens and session ids).
ALPHABET = "0123456789abcdef"

#: Bytes a right guess must save against the median wrong one to count as a leak.
LEAK_BYTES = 8


def make_secret(length: int = 32, *, rng: random.Random | None = None) -> str:
    """A random hex secret of ``length`` characters (``rng`` for a repeatable one)."""
    if length < 1:
        raise ValueError(f"length must be at least 1, got {length}")
    if rng is None:
        return _secrets.token_hex((length + 1) // 2)[:length]
    return "".join(rng.choice(ALPHABET) for _ in range(length))


def reflecting_handler(secret: str, *, separate: bool = False) -> Callable[[Any], Awaitable[None]]:
    """A handler that answers each message with the secret and the message itself.

    ``{"csrf": secret, "echo": text}`` in one message, or with ``separate=True``
    ``{"csrf": secret}`` then ``{"echo": text}``: the shape of a page that puts a
    token beside text taken from the request (BREACH's case).
    """

    async def handler(connection: Any) -> None:
        async for text in connection:
            if separate:
                await connection.send(json.dumps({"csrf": secret}))
                await connection.send(json.dumps({"echo": text}))
            else:
                await connection.send(json.dumps({"csrf": secret, "echo": text}))

    return handler


async def _answer(ws: Any, timeout: float) -> dict[str, Any]:
    """Read messages until both "csrf" and "echo" arrived (one JSON message or several)."""
    got: dict[str, Any] = {}
    while not {"csrf", "echo"} <= got.keys():
        message = await _recv(ws, timeout)
        try:
            value = json.loads(message)
        except ValueError:
            raise checks.CheckFailed(_("the server sent {message}, which is not JSON").format(
                message=repr(message[:60]))) from None
        if not isinstance(value, dict):
            raise checks.CheckFailed(_("the server sent {message}: expected a JSON object").format(
                message=repr(message[:60])))
        got.update(value)
    return got


async def _recv(ws: Any, timeout: float) -> Any:
    import asyncio

    try:
        return await asyncio.wait_for(ws.recv(), timeout)
    except TimeoutError:
        raise checks.CheckFailed(
            _("no complete answer within {seconds} s: answer each message with "
              '{{"csrf": <secret>, "echo": <the message>}} (one JSON message, or one per key)').format(
                seconds=f"{timeout:g}")
        ) from None


async def wire_sizes(server: Any, guesses: list[str], *, secret: str | None = None,
                     name: str = "sidechannel-tap", timeout: float = 5.0) -> list[int]:
    """Bytes the server put on the wire to answer each guess, measured by a wiretap.

    One connection (the client offers permessage-deflate), one guess at a time;
    raises :class:`wslab.CheckFailed` when an answer does not echo the guess,
    or (given ``secret``) does not carry the secret under ``"csrf"``.
    """
    tap = await _wiretap(server, name=name)
    sizes = []
    try:
        async with connect(tap.url, max_size=None) as ws:
            conn = max(tap.conns) if getattr(tap, "conns", None) else 1
            for guess in guesses:
                before = len((tap.after_upgrade(conn) or (b"", b""))[1])
                await ws.send(guess)
                answer = await _answer(ws, timeout)
                if answer.get("echo") != guess:
                    raise checks.CheckFailed(_("the echo of {guess}... came back as {echo}").format(
                        guess=repr(guess[:12]), echo=repr(str(answer.get("echo"))[:40])))
                if secret is not None and answer.get("csrf") != secret:
                    raise checks.CheckFailed(
                        _("the answer's \"csrf\" is {csrf}, not the secret: the page "
                          "still needs its token; keep it, and keep it away from the client's text").format(
                            csrf=repr(str(answer.get("csrf"))[:40])))
                sizes.append(len((tap.after_upgrade(conn) or (b"", b""))[1]) - before)
    finally:
        await tap.aclose()
    return sizes


@dataclass
class Leak:
    """What :func:`check_no_leak` measured: the right guess's bytes against wrong ones."""

    right: int
    wrong: list[int] = field(default_factory=list)

    @property
    def saved(self) -> float:
        """Bytes the right guess saved against the median wrong guess (positive: it leaks)."""
        return statistics.median(self.wrong) - self.right

    @property
    def leaks(self) -> bool:
        return self.right < min(self.wrong) and self.saved >= LEAK_BYTES

    def __str__(self) -> str:
        return _("right guess: {right} bytes on the wire; {count} wrong guesses: "
                 "{least}-{most} (median {median}); {verdict} ({saved} bytes)").format(
            right=self.right, count=len(self.wrong), least=min(self.wrong), most=max(self.wrong),
            median=f"{statistics.median(self.wrong):g}", verdict=_("LEAKS") if self.leaks else _("no leak"),
            saved=f"{self.saved:+g}")

    def _repr_html_(self) -> str:
        return f"<pre>{self}</pre>"


async def measure_leak(server: Any, secret: str, *, wrong: int = 20, seed: int = 0,
                       name: str = "sidechannel-tap") -> Leak:
    """Send ``wrong`` random guesses of the secret's length and the right one, interleaved; compare sizes."""
    rng = random.Random(seed)
    guesses = [make_secret(len(secret), rng=rng) for _ in range(wrong)]
    at = rng.randrange(wrong + 1)
    guesses.insert(at, secret)
    sizes = await wire_sizes(server, guesses, secret=secret, name=name)
    return Leak(right=sizes[at], wrong=sizes[:at] + sizes[at + 1:])


async def check_no_leak(start: Callable[[str], Awaitable[Any]], *, wrong: int = 20) -> Leak:
    """Exercise 7.4's check: ``start(secret)`` starts a server; its answers must not leak the secret.

    The server must answer each message with the secret (key ``"csrf"``) and
    the message (key ``"echo"``); a client that offers permessage-deflate then
    sends wrong guesses and the right one. Fails (:class:`wslab.CheckFailed`)
    when the right guess costs fewer bytes on the wire than every wrong one.
    """
    secret = make_secret(32)
    server = await start(secret)
    try:
        leak = await measure_leak(server, secret, wrong=wrong, name="check-sidechannel-tap")
    finally:
        await servers.release(getattr(server, "name", ""))
    if leak.leaks:
        raise checks.CheckFailed(
            _("the right guess cost {saved} bytes less on the wire than a wrong one ({leak}): "
              "an eavesdropper learns the secret; do not compress the secret with the client's text: "
              "compression=None, or the two in separate messages with no context shared between them").format(
                saved=f"{leak.saved:g}", leak=leak)
        )
    return leak

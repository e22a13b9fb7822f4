"""Per-client rate limits: a token bucket per connection, and the check of exercise 7.5.

A token bucket holds at most ``burst`` tokens and gains ``rate`` tokens a second;
each message takes one. A client may send a burst at once, then ``rate`` a
second for as long as it likes; past that the server refuses: it drops the
message, or closes with 1008 (policy violation, RFC 6455 section 7.4.1). One
bucket per *connection*: a shared bucket lets one flooding client silence
everyone else.

Design note: :func:`check_rate_limit` starts the learner's handler on a real
server and runs three real clients on this loop: a polite one (half the rate,
spread out), a flooding one (messages back to back) and the polite one again
*while* the flood runs. Time comes from the loop's clock; every wait has a
deadline.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ..course import checks
from ..course.i18n import gettext as _
from ..server.background import release
from ..server.serve import serve

__all__ = ["Flood", "TokenBucket", "check_rate_limit", "limited_echo"]


class TokenBucket:
    """``burst`` tokens at most, ``rate`` more each second; :meth:`take` spends one.

    >>> bucket = TokenBucket(rate=10, burst=2, clock=iter([0.0, 0.0, 0.0, 0.5]).__next__)
    >>> [bucket.take(), bucket.take(), bucket.take(), bucket.take()]
    [True, True, False, True]
    """

    def __init__(self, *, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1, got rate={rate!r}, burst={burst!r}")
        self.rate, self.burst, self._clock = rate, burst, clock
        self.tokens = float(burst)
        self._last: float | None = None

    def take(self) -> bool:
        """Spend a token if there is one (True), else False; refills first."""
        now = self._clock()
        if self._last is not None:
            self.tokens = min(self.burst, self.tokens + (now - self._last) * self.rate)
        self._last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def limited_echo(*, rate: float, burst: int) -> Callable[[Any], Awaitable[None]]:
    """An echo handler with a bucket per connection; closes with 1008 when it is empty."""

    async def handler(connection: Any) -> None:
        bucket = TokenBucket(rate=rate, burst=burst)
        async for message in connection:
            if not bucket.take():
                await connection.close(1008, "rate limit exceeded")
                return
            await connection.send(message)

    return handler


@dataclass
class Flood:
    """What one client of :func:`check_rate_limit` saw: echoes received and the close code."""

    sent: int
    echoed: int
    code: int | None
    seconds: float
    #: Seconds until the last message was handed to the connection.
    sending: float = 0.0

    def __str__(self) -> str:
        closed = _("closed with {code}").format(code=self.code) if self.code is not None else _("still open")
        return _("{sent} sent in {seconds} s, {echoed} echoed, {closed}").format(
            sent=self.sent, seconds=f"{self.seconds:.2f}", echoed=self.echoed, closed=closed)


async def _client(url: str, n: int, gap: float, timeout: float) -> Flood:
    """Send n messages, gap seconds apart (0: back to back), reading echoes meanwhile."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    echoed, sent = 0, 0
    every_echo = asyncio.Event()
    async with connect(url, ping_interval=None, compression=None) as ws:

        async def read() -> None:
            nonlocal echoed
            try:
                async for _message in ws:
                    echoed += 1
                    if echoed == n:
                        every_echo.set()
            except ConnectionClosed:
                pass  # how it closed is read from ws.protocol below

        reader = asyncio.ensure_future(read())
        for k in range(n):
            if gap and k:
                await asyncio.sleep(gap)  # pacing, never catching up: a stall only widens the gaps
            try:
                await ws.send(f"message {k}")
            except ConnectionClosed:
                break
            sent += 1
        sending = loop.time() - started
        # Wait for every echo, or for the server to close, whichever comes first (bounded).
        echoes = asyncio.ensure_future(every_echo.wait())
        await asyncio.wait({reader, echoes}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        echoes.cancel()
        seconds = loop.time() - started
        if not reader.done():
            await ws.close()
        await asyncio.wait_for(reader, timeout)
        protocol = ws.protocol
        server_closed = protocol.close_rcvd is not None and protocol.close_rcvd_then_sent
        return Flood(sent=sent, echoed=echoed, code=protocol.close_rcvd.code if server_closed else None,
                     seconds=seconds, sending=sending)


async def check_rate_limit(handler: Callable[[Any], Awaitable[None]], *, rate: float = 20, burst: int = 5,
                           timeout: float = 10.0) -> dict[str, Flood]:
    """Exercise 7.5's check: ``handler`` must limit each connection to ``rate``/s with bursts of ``burst``.

    A polite client (``rate / 2`` a second) must get every echo, before and
    during a flood on another connection; the flooder (200 messages back to
    back) must be closed with 1008 after at most about ``burst`` echoes.
    Raises :class:`wslab.CheckFailed` naming what went wrong.
    """
    raised: list[BaseException] = []

    async def watched(connection: Any) -> None:
        try:
            await handler(connection)
        except Exception as exc:  # shown to the learner below, not buried in the server's log
            raised.append(exc)
            raise

    def reraise() -> None:
        if raised and isinstance(raised[0], NotImplementedError):
            raise raised[0]  # the exercise is not done yet
        if raised:
            raise checks.CheckFailed(_("your handler raised {error}").format(error=repr(raised[0]))) from raised[0]

    server = await serve(watched, "check-rate-limit", compression=None)
    try:
        n_polite = 3 * burst
        gap = 2 / rate
        polite = await _client(server.url, n_polite, gap, timeout)
        reraise()
        checks.check(polite.echoed == n_polite and polite.code is None,
                     _("a client sending {half} messages a second (half the limit) got {polite}: "
                       "it should get every echo; does your bucket refill ({rate} tokens a second)?").format(
                         half=f"{rate / 2:g}", polite=polite, rate=f"{rate:g}"))
        flood, polite2 = await asyncio.gather(_client(server.url, 200, 0, min(timeout, 3.0)),
                                              _client(server.url, n_polite, gap, timeout))
        reraise()
        checks.check(flood.code == 1008,
                     _("a client that sent 200 messages back to back: {flood}; "
                       "close it with 1008 (policy violation) once its bucket is empty").format(flood=flood))
        allowed = burst + rate * (flood.sending + 0.5) + 2  # its bucket refills while it sends, and a little after
        checks.check(flood.echoed <= allowed,
                     _("the flooder got {echoed} echoes; at most about {allowed} "
                       "({burst} at once, then {rate} a second) should get through").format(
                         echoed=flood.echoed, allowed=f"{allowed:.0f}", burst=burst, rate=f"{rate:g}"))
        checks.check(polite2.echoed == n_polite and polite2.code is None,
                     _("a polite client during the flood: {polite}; it should get every echo: "
                       "give each connection its own bucket (one bucket for the server lets a flooder "
                       "silence everyone)").format(polite=polite2))
        return {"polite": polite, "flood": flood, "polite during the flood": polite2}
    finally:
        await release("check-rate-limit")

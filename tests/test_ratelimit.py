"""Per-client rate limits (wslab/production/ratelimit.py; lesson 07, exercise 7.5): a token bucket per
connection, and a check that passes a correct limiter and fails the sloppy ones. A flooder is
closed with 1008, policy violation (RFC 6455 section 7.4.1)."""

from __future__ import annotations

import pytest

import wslab
from wslab.production.ratelimit import TokenBucket, check_rate_limit, limited_echo

from .conftest import run, seconds


def ticks(*values):
    return iter(values).__next__


def test_a_bucket_allows_a_burst_then_refuses_then_refills_at_its_rate():
    bucket = TokenBucket(rate=10, burst=3, clock=ticks(0, 0, 0, 0, 0.05, 0.1, 10))
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    assert bucket.take() is False  # half a token after 50 ms
    assert bucket.take() is True  # a whole one after 100 ms
    bucket.take()
    assert bucket.tokens == pytest.approx(2)  # ten seconds refill to the burst, never past it


def test_a_bucket_refuses_a_rate_or_burst_that_cannot_work():
    with pytest.raises(ValueError, match="rate=0"):
        TokenBucket(rate=0, burst=1)
    with pytest.raises(ValueError, match="burst=0"):
        TokenBucket(rate=1, burst=0)


def check(handler):
    async def main():
        try:
            return await check_rate_limit(handler, timeout=seconds(10))
        finally:
            await wslab.aclose_all()

    return run(main(), timeout=seconds(60))


def test_the_check_passes_an_echo_with_a_bucket_per_connection_that_closes_with_1008():
    seen = check(limited_echo(rate=20, burst=5))
    assert seen["flood"].code == 1008 and seen["flood"].echoed <= 5 + 20 * (seen["flood"].sending + 0.5) + 2
    assert seen["polite during the flood"].echoed == seen["polite during the flood"].sent


def bucket_handler(bucket_for_connection, code=1008):
    """A limiter whose bucket comes from bucket_for_connection() and closes with code: the mutants."""

    async def handler(connection):
        bucket = bucket_for_connection()
        async for message in connection:
            if not bucket.take():
                await connection.close(code, "too fast")
                return
            await connection.send(message)

    return handler


def one_bucket_for_everyone():
    shared = TokenBucket(rate=20, burst=5)
    return bucket_handler(lambda: shared)


async def counter_that_never_refills(connection):
    count = 0
    async for message in connection:
        count += 1
        if count > 5:
            await connection.close(1008, "rate limit exceeded")
            return
        await connection.send(message)


@pytest.mark.parametrize(("handler", "says"), [
    (one_bucket_for_everyone(), "its own bucket"),
    (counter_that_never_refills, "refill"),
    (bucket_handler(lambda: TokenBucket(rate=20, burst=5), code=1011), "1008"),
    (bucket_handler(lambda: TokenBucket(rate=20, burst=50)), "at most about"),
    (wslab.handlers.echo, "1008"),
], ids=["one bucket for the server", "a counter that never refills", "closes with 1011", "a burst of 50",
        "no limit"])
def test_the_check_fails_a_sloppy_limiter_and_says_what_to_fix(handler, says):
    with pytest.raises(wslab.CheckFailed, match=says):
        check(handler)


async def not_done_yet(connection):
    raise NotImplementedError("not done yet")


async def crashes(connection):
    async for message in connection:
        await connection.send(message.nope)


def test_the_check_lets_not_implemented_through_so_the_exercise_says_not_done_yet():
    with pytest.raises(NotImplementedError):
        check(not_done_yet)


def test_the_check_shows_the_error_the_handler_raised():
    with pytest.raises(wslab.CheckFailed, match="your handler raised AttributeError"):
        check(crashes)

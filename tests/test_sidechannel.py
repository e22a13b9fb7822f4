"""The compression side channel (wslab/production/sidechannel.py; lesson 07, exercise 7.4): with
permessage-deflate (RFC 7692) a right guess beside the secret costs fewer bytes on the wire; the
check catches every server that compresses the two together, across messages too (context
takeover, RFC 7692 section 7.1.1)."""

from __future__ import annotations

import random

import pytest
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

import wslab
from wslab import sidechannel
from wslab.production.sidechannel import check_no_leak, make_secret, reflecting_handler

from .conftest import run, seconds

NO_TAKEOVER = {"compression": None, "extensions": [ServerPerMessageDeflateFactory(server_no_context_takeover=True)]}


def measure(separate, options):
    async def main():
        secret = make_secret(32, rng=random.Random(7))  # seeded: the sizes repeat
        server = await wslab.serve(reflecting_handler(secret, separate=separate), "account", **options)
        try:
            return await sidechannel.measure_leak(server, secret)
        finally:
            await wslab.aclose_all()

    return run(main(), timeout=seconds(30))


@pytest.mark.parametrize(("separate", "options"), [(False, {}), (True, {}), (False, NO_TAKEOVER)],
                         ids=["one message", "two messages, one context", "one message, no context takeover"])
def test_a_right_guess_costs_fewer_bytes_when_it_shares_a_compressor_with_the_secret(separate, options):
    leak = measure(separate, options)
    assert leak.leaks and leak.saved >= 16, leak


@pytest.mark.parametrize(("separate", "options"), [(False, {"compression": None}), (True, NO_TAKEOVER)],
                         ids=["compression off", "two messages, a context each"])
def test_a_right_guess_costs_what_a_wrong_one_does_when_they_are_compressed_apart(separate, options):
    leak = measure(separate, options)
    assert not leak.leaks and abs(leak.saved) <= 2, leak


def starter(separate, options, *, drop_secret=False):
    async def start(secret):
        return await wslab.serve(reflecting_handler("" if drop_secret else secret, separate=separate),
                                 "exercise-account", **options)
    return start


def check(start):
    async def main():
        try:
            return await check_no_leak(start)
        finally:
            await wslab.aclose_all()

    return run(main(), timeout=seconds(30))


@pytest.mark.parametrize(("separate", "options"), [(False, {"compression": None}), (True, NO_TAKEOVER)],
                         ids=["compression off", "two messages, a context each"])
def test_the_check_passes_a_server_that_keeps_the_secret_and_the_guess_apart(separate, options):
    assert not check(starter(separate, options)).leaks


@pytest.mark.parametrize(("separate", "options"), [(False, {}), (True, {})],
                         ids=["the default server", "separate messages sharing a context"])
def test_the_check_fails_a_server_that_compresses_the_secret_with_the_guess(separate, options):
    with pytest.raises(wslab.CheckFailed, match="eavesdropper learns the secret"):
        check(starter(separate, options))


def test_the_check_fails_a_server_that_hides_the_secret_by_leaving_it_out():
    with pytest.raises(wslab.CheckFailed, match="not the secret"):
        check(starter(False, {}, drop_secret=True))


def test_make_secret_refuses_an_empty_secret():
    with pytest.raises(ValueError, match="length must be at least 1, got 0"):
        make_secret(0)

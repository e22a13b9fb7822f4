"""The battery grades a zoo of servers, each in its own process, the same way every time.

The zoo (``tests/zoo/``): servers nobody in this project wrote (websockets,
aiohttp, tornado, a wsproto server, Node's ``ws`` from npm), wslab's own
reference server, variants that do something unusual the RFC allows, and
mutants that each break exactly one rule. :data:`EXPECTED` holds the verdict
of every (server, case) pair; each server is graded :data:`RUNS` times and
any disagreement, in any run, fails.

Verdicts: ``pass`` (the rule held, nothing to note), ``note`` (it held, or a
lower-level rule did not: a SHOULD note or a remark), ``fail`` (a MUST failed).
"""

from __future__ import annotations

import asyncio
import os
import shutil

import pytest

from wslab.battery import CASES, KNOWN_BREAKS, check_server

from .conftest import run, seconds
from .zoo.harness import node_ws, running
from .zoo.raw import MUTANTS, VARIANTS

#: How often each server is graded (a server process is started once).
RUNS = 3
#: Seconds per case: a correct server's cases take milliseconds; mutants that never answer cost it.
TIMEOUT = 2.0
#: Servers graded at once.
PARALLEL = 4

NAMES = [c.name for c in CASES]
FAILING_CONNECTION = [
    "continuation frame with no message", "new message inside a fragmented one", "unmasked client frame",
    "reserved opcode 0x3", "RSV1 set with no extension", "ping longer than 125 bytes", "fragmented ping",
    "invalid UTF-8 in a text message", "oversized message",
]
BAD_CLOSES = ["close code 1005", "close code 1006", "close code 1015", "close code 999", "1-byte close payload"]


def verdicts(fail=(), note=()) -> dict[str, str]:
    """A full row of the table: every case, ``pass`` unless named."""
    unknown = (set(fail) | set(note)) - set(NAMES)
    assert not unknown, f"no such cases: {unknown}"
    return {name: "fail" if name in fail else "note" if name in note else "pass" for name in NAMES}


#: The expected verdict of every (server, case) pair.
EXPECTED: dict[str, dict[str, str]] = {
    # Libraries, as installed (websockets 17.4, aiohttp 3.14, tornado 6.6, wsproto 1.3, ws 8).
    "websockets": verdicts(fail=["handshake with version 25 (unknown)"]),
    "aiohttp": verdicts(
        fail=["handshake with version 25 (unknown)", "unmasked client frame"],
        note=["close code echoed", "close code 1006"],
    ),
    "tornado": verdicts(
        fail=["unmasked client frame", "close code 1005", "close code 1006", "close code 1015", "close code 999"],
        note=[n for n in FAILING_CONNECTION if n not in ("unmasked client frame", "oversized message")]
        + ["1-byte close payload"],
    ),
    "wsproto": verdicts(),
    "node-ws": verdicts(note=["handshake with version 25 (unknown)"]),
    # wslab's reference server (wslab.scratch), out of process, with branch handshake's fixes merged
    # (bf58374: it answers what came before a bad frame, drains after 1009; ba33703: 400 for the
    # handshake gaps). Every MUST holds, with no note.
    "scratch": verdicts(),
    # Legal but unusual.
    "raw": verdicts(),
    "raw:close-1000": verdicts(note=["close code echoed"]),
    "raw:accepts-version-8": verdicts(),
    "raw:pings-first": verdicts(),
    "raw:pings-often": verdicts(),
    "raw:echoes-in-fragments": verdicts(),
    "raw:drops-tcp-on-error": verdicts(note=FAILING_CONNECTION),
    "raw:426-for-missing-key": verdicts(note=["handshake without Sec-WebSocket-Key"]),
    # Mutants: one broken rule each.
    "raw:bad-accept": verdicts(fail=["101 Switching Protocols"]),
    "raw:no-upgrade-header": verdicts(fail=["101 Switching Protocols"]),
    "raw:no-connection-header": verdicts(fail=["101 Switching Protocols"]),
    "raw:accepts-missing-key": verdicts(fail=["handshake without Sec-WebSocket-Key"]),
    "raw:accepts-any-version": verdicts(fail=["handshake with version 25 (unknown)"]),
    "raw:no-version-header": verdicts(fail=["handshake with version 25 (unknown)"]),
    "raw:keeps-the-mask": verdicts(fail=[
        "binary echo", "200 bytes (16-bit length)", "70,000 bytes (64-bit length)",  # every binary echo
        "server frames unmasked", "server lengths minimal", "server frames without RSV bits",
        "server control frames",  # is garbage, and these cases echo binary messages first
    ]),
    "raw:text-as-binary": verdicts(fail=[
        "text echo", "fragmented message", "ping inside a fragmented message", "valid UTF-8 split across fragments",
    ]),
    "raw:one-frame-per-read": verdicts(fail=[
        "two frames in one write", "fragmented message", "ping inside a fragmented message",
        "valid UTF-8 split across fragments", "new message inside a fragmented one",  # all sent in one write
    ]),
    "raw:no-reassembly": verdicts(fail=[
        "fragmented message", "ping inside a fragmented message", "valid UTF-8 split across fragments",
        "new message inside a fragmented one",  # it echoed the first fragment before the second came
    ]),
    "raw:accepts-unmasked": verdicts(fail=["unmasked client frame"]),
    "raw:ignores-reserved-opcode": verdicts(fail=["reserved opcode 0x3"]),
    "raw:ignores-rsv": verdicts(fail=["RSV1 set with no extension"]),
    "raw:accepts-orphan-continuation": verdicts(fail=["continuation frame with no message"]),
    "raw:accepts-interleaved": verdicts(fail=["new message inside a fragmented one"]),
    "raw:masks-frames": verdicts(fail=["server frames unmasked"]),
    "raw:long-lengths": verdicts(fail=["server lengths minimal"]),
    "raw:sets-rsv": verdicts(fail=["server frames without RSV bits"]),
    "raw:ignores-pings": verdicts(fail=["ping -> pong", "ping inside a fragmented message", "server control frames"]),
    "raw:accepts-long-ping": verdicts(fail=["ping longer than 125 bytes"]),
    "raw:accepts-fragmented-ping": verdicts(fail=["fragmented ping"]),
    "raw:pong-without-fin": verdicts(fail=["server control frames"]),
    "raw:no-close-answer": verdicts(
        fail=["close with a code", "TCP closed after the closing handshake"],
        note=["close code echoed", *BAD_CLOSES],
    ),
    "raw:keeps-tcp-open": verdicts(fail=["TCP closed after the closing handshake"]),
    "raw:echoes-close-payload": verdicts(fail=BAD_CLOSES),
    "raw:per-frame-utf8": verdicts(fail=["valid UTF-8 split across fragments"]),
    "raw:no-utf8-check": verdicts(fail=["invalid UTF-8 in a text message"]),
    "raw:no-size-limit": verdicts(fail=["oversized message"]),
}

LIBRARIES = ["websockets", "aiohttp", "tornado", "wsproto", "node-ws", "scratch"]
CORRECT = ["raw", *(f"raw:{q}" for q in VARIANTS)]
BROKEN = [f"raw:{q}" for q in MUTANTS]


def status(result) -> str:
    if not result.passed:
        return "fail"
    return "note" if result.all_notes() else "pass"


async def _grade(name: str, gate: asyncio.Semaphore) -> list[str]:
    """Grade ``name`` RUNS times; return one line per disagreement with :data:`EXPECTED`."""
    expected = EXPECTED[name]
    problems = []
    async with gate:
        async with running(name) as url:
            for attempt in range(1, RUNS + 1):
                report = await check_server(url, timeout=seconds(TIMEOUT))
                if report.error is not None:
                    problems.append(f"{name} run {attempt}: {report.error}")
                    continue
                for result in report.results:
                    got = status(result)
                    if got != expected[result.name]:
                        problems.append(f"{name} run {attempt}: {result.name!r} was {got}, expected "
                                        f"{expected[result.name]}: {result} {[str(n) for n in result.notes]}")
    return problems


def grade_all(names: list[str]) -> None:
    async def main():
        gate = asyncio.Semaphore(PARALLEL)
        return await asyncio.gather(*(_grade(n, gate) for n in names))

    problems = [p for found in run(main(), timeout=110) for p in found]
    assert problems == [], "\n".join(problems)


def test_the_table_covers_every_server_and_every_case():
    assert set(EXPECTED) == set(LIBRARIES) | set(CORRECT) | set(BROKEN)
    assert all(list(row) == NAMES for row in EXPECTED.values())


def test_every_must_case_has_a_mutant_that_fails_it_and_every_mutant_fails_something():
    must = {c.name for c in CASES if c.level == "MUST"}
    caught = {case for name in BROKEN for case, v in EXPECTED[name].items() if v == "fail"}
    assert must - caught == set()
    assert all("fail" in EXPECTED[name].values() for name in BROKEN)


def test_correct_servers_pass_every_must_in_every_run():
    """Legal variants (RFC 6455 4.2.1 'such as', 4.2.2 any version understood, 5.4, 5.5.2-5.5.3 MAY,
    5.5.1 'typically', 7.1.7 SHOULD): no MUST fails, ever."""
    assert all("fail" not in EXPECTED[name].values() for name in CORRECT)
    grade_all(CORRECT)


def test_each_mutant_fails_exactly_the_cases_of_its_rule_in_every_run():
    grade_all(BROKEN)


def test_libraries_get_the_same_verdicts_in_every_run():
    names = list(LIBRARIES)
    if shutil.which("node") is None:
        if os.environ.get("WSLAB_REQUIRE_NODE") == "1":
            pytest.fail("node is required here (WSLAB_REQUIRE_NODE=1): install nodejs and npm (.ci/run does)")
        names.remove("node-ws")  # the rest still run; the skip is named below
    else:
        node_ws()  # npm install ws into the cache on first use, before any clock runs
    grade_all(names)
    if "node-ws" not in names:
        pytest.skip("node is not installed: Node's ws was not graded (the other libraries were)")


def test_the_documented_breaks_are_what_the_zoo_finds():
    """wslab.battery.KNOWN_BREAKS is the docs' list of which library breaks which MUST."""
    found = {
        name: sorted(case for case, v in EXPECTED[name].items() if v == "fail")
        for name in LIBRARIES
        if "fail" in EXPECTED[name].values()
    }
    assert {name: sorted(cases) for name, cases in KNOWN_BREAKS.items()} == found


@pytest.mark.parametrize("name", ["aiohttp", "tornado", "scratch", "websockets"])
def test_the_oversized_case_passes_20_of_20_against_a_server_in_another_process(name):
    """RFC 6455 10.4: the server refuses max_size + 1 bytes with 1009 and hangs up while the battery
    still writes; the battery must see the refusal every time, whatever the kernel does with the rest."""

    async def main():
        async with running(name) as url:
            results = []
            for _ in range(20):
                report = await check_server(url, cases=["oversized message"], timeout=seconds(5))
                results.append(report["oversized message"])
            return results

    results = run(main(), timeout=60)  # all 20 within 60 s (scaled), or run() fails
    bad = [str(r) for r in results if not r.passed or "1009" not in r.happened]
    assert bad == [], f"{len(bad)} of 20 runs: {bad[:3]}"

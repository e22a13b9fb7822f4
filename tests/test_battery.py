"""The battery states each rule at the RFC's level, reports MUSTs apart from notes, and never hangs.

Fast checks, in process: the frame encoder against the RFC's vectors and
websockets' parser, the quotes against the RFC's text, the report's levels,
JSON and JUnit output, the command line's exit status, the exercise checks.
The grading of real servers, each in its own process, is in
``test_battery_zoo.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from websockets.asyncio.server import serve as ws_serve
from websockets.frames import Frame, Opcode

import wslab
from wslab import battery
from wslab.battery import CASES, MUST, SHOULD, USUAL, check_server, check_server_sync, encode_frame
from wslab.battery.case import CLOSE_FRAME_FIRST, UNSUPPORTED_DATA, Rule
from wslab.server.background import LoopThread

from .conftest import ends_without, run, seconds, skip_unless_required, skips_unless_required
from .zoo.raw import RawServer

MUST_CASES = [c.name for c in CASES if c.level == MUST]
#: RFC 6455's text, a data file kept beside the repository (../shared/), not in it;
#: WSLAB_RFC6455 points elsewhere (a test checks the skip/fail policy with a missing path).
RFC_TEXT = Path(os.environ.get("WSLAB_RFC6455") or Path(__file__).resolve().parents[2] / "shared" / "rfc6455.txt")


async def pure_echo(connection):
    async for message in connection:
        await connection.send(message)


# Encoding: RFC 6455 section 5.7 vectors, read back by websockets


def test_encode_frame_matches_the_rfc_examples():
    """RFC 6455 5.7: masked "Hello", unmasked "Hello", and the 16/64-bit headers."""
    key = bytes.fromhex("37fa213d")
    assert encode_frame(0x1, b"Hello", mask_key=key).hex() == "818537fa213d7f9f4d5158"
    assert encode_frame(0x1, b"Hello", mask=False).hex() == "810548656c6c6f"
    assert encode_frame(0x2, bytes(256), mask=False)[:4].hex() == "827e0100"
    assert encode_frame(0x2, bytes(65536), mask=False)[:10].hex() == "827f0000000000010000"
    assert encode_frame(0x1, b"Hel", fin=False, mask=False).hex() == "010348656c"


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70_000])
def test_websockets_parses_encoded_frames_at_every_length_form(size):
    payload = bytes(i % 251 for i in range(size))
    data = encode_frame(0x2, payload)

    def read_exact(n):
        chunk = data[read_exact.at : read_exact.at + n]
        read_exact.at += n
        return chunk
        yield  # a generator, as Frame.parse expects

    read_exact.at = 0
    parser = Frame.parse(read_exact, mask=True)
    try:
        next(parser)
    except StopIteration as done:
        frame = done.value
    assert frame.opcode is Opcode.BINARY and frame.data == payload and frame.fin


# Levels: the RFC's words, at the RFC's level


def _normalised_rfc() -> str:
    if not RFC_TEXT.is_file():
        skip_unless_required(
            f"no RFC 6455 text at {RFC_TEXT}: put the RFC Editor's rfc6455.txt in ../shared/ beside the "
            f"repository (https://www.rfc-editor.org/rfc/rfc6455.txt) to check the quotes",
            "WSLAB_REQUIRE_RFC", "the RFC quote checks")
    lines = [
        line for line in RFC_TEXT.read_text().splitlines()
        if not line.startswith(("Fette & Melnikov", "RFC 6455                 The WebSocket Protocol"))
    ]
    return re.sub(r"\s+", " ", " ".join(lines).replace("\f", " "))


def test_lesson_02s_account_of_the_drafts_versions_is_the_rfcs_registry():
    """Lesson 02: versions 0-8 were drafts 00-08, 9-12 are reserved, 13 is RFC 6455 (section 11.6)."""
    text = _normalised_rfc()
    for version in range(9):
        assert f"| {version} + draft-ietf-hybi-thewebsocketprotocol-0{version} | Interim |" in text
    for version in range(9, 13):
        assert f"| {version} + Reserved |" in text
    assert "| 13 + RFC 6455 | Standard |" in text


def _rules():
    yield from ((c.name, c.rule) for c in CASES)
    yield "(notes)", CLOSE_FRAME_FIRST
    yield "(not applicable)", UNSUPPORTED_DATA
    for module in (battery.cases.handshake, battery.cases.framing, battery.cases.control, battery.cases.payload):
        for value in vars(module).values():
            if isinstance(value, Rule):
                yield module.__name__, value


def test_every_quote_is_the_rfcs_exact_words():
    text = _normalised_rfc()
    for where, rule in _rules():
        for piece in re.split(r"\s*\[(?:\.\.\.|7\.4\.2)\]\s*", rule.quote):
            piece = re.sub(r"\s+", " ", piece.strip()).strip("()")
            assert piece and piece in text, f"{where}: not in RFC 6455 {rule.section}: {piece!r}"


@skips_unless_required("WSLAB_REQUIRE_RFC", otherwise="failed")
def test_without_the_rfc_text_the_quote_check_skips_with_where_to_put_it_unless_required(required, outcome):
    report = ends_without(f"{__file__}::test_every_quote_is_the_rfcs_exact_words", "WSLAB_REQUIRE_RFC", required,
                          outcome, WSLAB_RFC6455="/nonexistent/rfc6455.txt")
    assert "/nonexistent/rfc6455.txt" in report and "../shared/" in report


def test_every_rule_is_quoted_at_its_own_level():
    """A MUST case quotes a MUST; a SHOULD note a SHOULD; a usual remark neither."""
    for where, rule in _rules():
        words = set(re.findall(r"\b(MUST|SHOULD)\b", rule.quote))
        if rule.level == MUST:
            assert "MUST" in words, (where, rule)
        elif rule.level == SHOULD:
            assert "SHOULD" in words, (where, rule)
        else:
            assert rule.level == USUAL and not words, (where, rule)


def test_cases_are_named_uniquely_and_follow_the_rfcs_order_of_sections():
    assert len({c.name for c in CASES}) == len(CASES)
    assert CASES[0].section.startswith("4.") and CASES[-1].section == "10.4"
    assert [c.name for c in CASES if c.level != MUST] == [
        "close code echoed", "close code 2999 (unassigned)", "close reason not UTF-8"]


def test_the_battery_shares_no_code_with_what_it_judges():
    """It crafts its own frames and handshakes: wslab.frames and wslab.handshake never judge themselves."""
    package = Path(battery.__file__).parent
    imports = re.compile(
        r"^\s*(?:(?:from|import)\s+(?:wslab\.|\.\.\.?)(?:frames|handshake)\b"
        r"|from\s+(?:wslab|\.\.\.?)\s+import\s+.*\b(?:frames|handshake)\b)",
        re.MULTILINE,
    )
    for path in package.rglob("*.py"):
        found = imports.findall(path.read_text())
        assert found == [], f"{path.relative_to(package)} imports {found}"
    assert imports.search("from ..frames import Reader") and imports.search("from wslab import frames")


def test_the_docs_state_the_battery_as_it_is():
    root = Path(__file__).resolve().parent.parent
    cases, musts = len(CASES), len(MUST_CASES)
    assert f"a battery of {cases} protocol cases ({musts} RFC 6455 MUSTs)" in (root / "README.md").read_text()
    assert f"a battery of {cases} named" in (root / "docs" / "reference.md").read_text()
    assert f"({musts} of the {cases} cases are MUSTs;" in (root / "instructor" / "GUIDE.md").read_text()
    lesson = (root / "instructor" / "source" / "06-build-a-server-from-scratch.ipynb").read_text()
    assert f"a battery of {cases} protocol cases" in lesson and "COVERAGE.md" in lesson


def test_the_coverage_table_names_every_case():
    """wslab/battery/COVERAGE.md: every server requirement a client can observe, with its case or why none."""
    text = (Path(battery.__file__).parent / "COVERAGE.md").read_text()
    assert [c.name for c in CASES if f"`{c.name}`" not in text] == []
    for where, rule in _rules():
        assert rule.section.split(",")[0] in text, (where, rule.section)


# A correct server, a variant, a mutant: what the report says


async def _raw(quirk: str = "", **kwargs):
    server = RawServer(quirk)
    port = await server.start()
    try:
        return await check_server(f"ws://127.0.0.1:{port}/", timeout=seconds(kwargs.pop("timeout", 2)), **kwargs)
    finally:
        server.server.close()


def test_a_correct_server_holds_every_must_and_says_so():
    report = run(_raw(), timeout=60)
    assert report.passed and report.failed == [] and report.notes == [], str(report)
    assert report.musts == (len(MUST_CASES), len(MUST_CASES))
    assert f"{len(MUST_CASES)} of {len(MUST_CASES)} MUSTs hold" in report.summary
    html = report._repr_html_()
    assert "<table>" in html and "level" in html and "the RFC&#x27;s words" in html
    assert "MUST NOT mask any frames" in html  # the quote is in the notebook's table


def test_should_notes_are_listed_apart_and_never_fail_the_server():
    """RFC 6455 7.1.7: failing the connection, a server SHOULD send a close frame first."""
    report = run(_raw("drops-tcp-on-error"), timeout=60)
    assert report.passed and report.failed == [], str(report)
    noted = {name for name, note in report.should_notes}
    assert "unmasked client frame" in noted and "invalid UTF-8 in a text message" in noted
    assert all(note.rule is CLOSE_FRAME_FIRST for _, note in report.should_notes)
    assert report["unmasked client frame"].mark == "!"
    assert "Notes (not failures):" in str(report) and "SHOULD note" in report.summary


def test_a_usual_behaviour_not_followed_is_a_remark_not_a_failure():
    """RFC 6455 5.5.1: the endpoint "typically echos the status code it received"."""
    report = run(_raw("close-1000", cases=["close with a code", "close code echoed"]))
    assert report.passed, str(report)
    echoed = report["close code echoed"]
    assert echoed.status == "note" and echoed.mark == "~" and "1000" in echoed.happened


def test_a_mutant_fails_only_its_must_and_the_failure_quotes_the_rfc():
    report = run(_raw("accepts-unmasked"), timeout=60)
    assert report.failed == ["unmasked client frame"], str(report)
    with pytest.raises(wslab.CheckFailed, match=r"1 of \d+ MUSTs failed: unmasked client frame \(RFC 6455 5\.1") as info:
        report.assert_passed()
    assert "show it with `report` in a cell" in str(info.value)  # the table has the RFC's words


def test_max_size_applies_to_every_case_whose_message_is_over_it():
    """RFC 6455 10.4: a websockets server with max_size=65536 rightly refuses 70,000 bytes."""

    async def main():
        async with ws_serve(pure_echo, "127.0.0.1", 0, max_size=65536) as server:
            url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
            return await check_server(url, max_size=65536, timeout=seconds(5))

    report = run(main(), timeout=60)
    assert "70,000 bytes (64-bit length)" not in report.failed and "oversized message" not in report.failed
    assert "1009" in report["70,000 bytes (64-bit length)"].happened
    assert "up to 65,536 bytes" in report["server lengths minimal"].happened


def test_a_smaller_limit_than_the_server_has_fails_the_oversized_case():
    async def main():
        async with ws_serve(pure_echo, "127.0.0.1", 0, max_size=2**20) as server:
            url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
            return await check_server(url, max_size=1000, cases=["oversized message"], timeout=seconds(5))

    result = run(main())["oversized message"]
    assert not result.passed and "accepted a message of 1,001 bytes" in result.happened


def test_max_size_none_skips_the_oversized_case():
    report = run(_raw(max_size=None, cases=["oversized message"]))
    assert report.passed and report["oversized message"].skipped and report.musts == (0, 0)


def test_a_text_only_server_gets_its_binary_echoes_not_applicable_with_the_reason():
    """RFC 6455 7.4.1: "an endpoint that understands only text data MAY send [1003] if it receives a binary
    message". Its binary echoes do not apply; it fails no rule it did not break."""
    report = run(_raw("text-only"), timeout=60)
    binary = ["binary echo", "200 bytes (16-bit length)", "70,000 bytes (64-bit length)"]
    assert report.passed and report.failed == []
    assert [report[n].status for n in binary] == ["skipped"] * 3
    assert all("not applicable" in report[n].happened and "1003" in report[n].happened for n in binary)
    assert "not applicable: " + ", ".join(binary) in report.summary
    skipped = [c.get("name") for c in ET.fromstring(report.to_junit()).findall("testcase") if c.find("skipped") is not None]
    assert skipped == binary


def test_a_break_seen_on_any_connection_fails_the_case_of_its_rule_and_names_where():
    """RFC 6455 7.4.1: 1005 MUST NOT be set in a close frame. The server sends it only when it answers a
    valid close, which the case "close code 1005" never sends: the case watches every connection."""
    report = run(_raw("answers-close-1005"), timeout=60)
    assert report.failed == ["close code 1005"]
    assert "code 1005" in report["close code 1005"].happened and "(in case " in report["close code 1005"].happened


# Nothing hangs, nothing floods


async def _silent(answer_handshake: bool, **kwargs) -> tuple[battery.Report, int]:
    """Grade a server that says nothing at all (or only its 101); return the report and its connections."""
    handlers = []

    async def silent(reader, writer):
        handlers.append(asyncio.current_task())
        request = await reader.readuntil(b"\r\n\r\n")
        if answer_handshake:
            key = next((line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
                        if line.lower().startswith(b"sec-websocket-key")), b"")
            from websockets.utils import accept_key

            writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Accept: " + accept_key(key.decode()).encode() + b"\r\n\r\n")
        await reader.read()  # reads until the client gives up, never answers
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    try:
        return await check_server(url, timeout=seconds(0.3), **kwargs), len(handlers)
    finally:
        server.close()
        await asyncio.wait(handlers, timeout=seconds(2))  # each ends once the battery hangs up


def test_a_silent_server_is_recognised_after_one_case_and_a_heartbeat():
    """Nothing in answer to a valid handshake: one timeout, one heartbeat, then "could not test" (exit 2),
    not one timeout per case."""
    report, connections = run(_silent(False), timeout=20)
    assert connections == 2 and report.error and "answers nothing" in report.error
    assert [r.status for r in report.results] == ["error"] * len(CASES) and report.failed == MUST_CASES
    assert str(report).startswith("could not test") and "\n" not in str(report)


def test_a_server_silent_after_its_101_gets_the_rest_not_run_with_the_reason():
    report, connections = run(_silent(True), timeout=20)
    names = [c.name for c in CASES]
    echo = names.index("text echo")
    assert connections == echo + 2  # every case up to the first echo, and a heartbeat
    assert report.error is None and "no answer within" in report["text echo"].happened
    rest = report.results[echo + 1:]
    assert rest and all(r.status == "error" and "not run: the server went silent" in r.happened for r in rest)
    assert report["101 Switching Protocols"].passed and "text echo" in report.failed


def test_a_case_that_times_out_on_a_live_server_costs_no_more_than_its_timeout():
    """A timeout with nothing received is followed by a heartbeat; a server that answers it is graded on."""
    report = run(_raw("ignores-pings", cases=["ping -> pong", "text echo"], timeout=0.3), timeout=20)
    assert report.failed == ["ping -> pong"] and report["text echo"].passed


def _free_port() -> int:
    async def main():
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        return port

    return run(main())


def test_nothing_listening_is_one_clear_line_not_a_row_per_case():
    url = f"ws://127.0.0.1:{_free_port()}/"
    report = run(check_server(url, timeout=seconds(2)))
    assert not report.passed and report.error
    assert [r.status for r in report.results] == ["error"] * len(CASES)  # every case: not run
    assert report.failed == MUST_CASES
    assert str(report).count("\n") == 0 and "is the server running?" in str(report)
    with pytest.raises(wslab.CheckFailed, match="could not test"):
        report.assert_passed()


def test_assert_passed_reraises_a_stub_so_the_exercise_is_not_done():
    report = battery.Report("ws://127.0.0.1:1/", [], server_errors=[NotImplementedError("not done yet")])
    with pytest.raises(NotImplementedError):
        report.assert_passed()


# The blocking variant, bad arguments


def test_check_server_sync_tests_a_server_in_a_thread():
    srv = wslab.serve_in_thread(pure_echo, name="threaded")
    try:
        report = check_server_sync(srv, cases=["text echo", "ping -> pong"], timeout=seconds(5))
    finally:
        srv.stop()
    assert report.passed and report.failed == []


def test_check_server_sync_refuses_a_server_on_the_calling_loop():
    async def main():
        srv = await wslab.serve(pure_echo, name="same-loop")
        try:
            with pytest.raises(RuntimeError, match="await wslab.check_server"):
                check_server_sync(srv)
        finally:
            await srv.aclose()

    run(main())


@pytest.mark.parametrize("url", ["wss://127.0.0.1:1/", "http://127.0.0.1:1/", "ws:///path"])
def test_a_url_the_battery_cannot_use_is_refused_with_the_fix(url):
    with pytest.raises(ValueError, match="ws://"):
        run(check_server(url))


def test_an_unknown_case_name_lists_the_cases():
    with pytest.raises(ValueError, match="text echo"):
        run(check_server("ws://127.0.0.1:1/", cases=["txt echo"]))


# The command line: exit status, --json, --junit


@pytest.fixture
def raw_in_thread():
    """Start RawServer(quirk) on a loop in a thread; yields a function quirk -> url."""
    threads: list[tuple[LoopThread, RawServer]] = []

    def start(quirk: str = "") -> str:
        thread = LoopThread("zoo-raw")
        server = RawServer(quirk)
        port = thread.run(server.start())
        threads.append((thread, server))
        return f"ws://127.0.0.1:{port}/"

    yield start
    for thread, server in threads:
        thread.loop.call_soon_threadsafe(server.server.close)
        thread.stop()


def test_the_exit_status_follows_must_failures_only(raw_in_thread, capsys):
    timeout = str(seconds(2))
    assert battery.main([raw_in_thread(""), "--timeout", timeout]) == 0
    assert battery.main([raw_in_thread("drops-tcp-on-error"), "--timeout", timeout]) == 0  # SHOULD notes only
    assert battery.main([raw_in_thread("no-utf8-check"), "--timeout", timeout]) == 1
    assert battery.main([f"ws://127.0.0.1:{_free_port()}/", "--timeout", timeout]) == 2
    out = capsys.readouterr().out
    assert f"{len(MUST_CASES)} of {len(MUST_CASES)} MUSTs hold" in out
    assert "✗ invalid UTF-8 in a text message: RFC 6455 8.1" in out
    assert out.strip().splitlines()[-1].startswith("could not test ws://127.0.0.1:")


def test_json_output_for_graders(raw_in_thread, capsys):
    url = raw_in_thread("426-for-missing-key")
    assert battery.main([url, "--json", "--timeout", str(seconds(2))]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["passed"] is True and data["failed"] == [] and data["url"] == url
    assert data["musts_held"] == data["musts_total"] == len(MUST_CASES)
    row = next(c for c in data["cases"] if c["name"] == "handshake without Sec-WebSocket-Key")
    assert row["level"] == "MUST" and row["section"] == "4.2.1" and row["status"] == "pass"
    assert row["notes"][0]["level"] == "usual" and "426" in row["notes"][0]["text"]
    assert {c["name"] for c in data["cases"]} == {c.name for c in CASES}


def test_junit_output_has_one_testcase_per_case_and_fails_musts_only(raw_in_thread, tmp_path, capsys):
    path = tmp_path / "battery.xml"
    url = raw_in_thread("echoes-close-payload")
    assert battery.main([url, "--junit", str(path), "--timeout", str(seconds(2))]) == 1
    suite = ET.parse(path).getroot()
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [c.name for c in CASES]
    failed = sorted(c.get("name") for c in cases if c.find("failure") is not None)
    assert failed == sorted(["close code 1005", "close code 1006", "close code 1015", "close code 999",
                             "1-byte close payload"])
    assert suite.get("failures") == "5" and suite.get("tests") == str(len(CASES))
    assert "MUST NOT be set" in cases[[c.name for c in CASES].index("close code 1005")].find("failure").text
    capsys.readouterr()


def test_only_a_bad_url_is_an_argument_error(monkeypatch, capsys):
    """Exit 2 with usage for a url the battery cannot speak to; a bug inside the battery is not disguised as one."""
    with pytest.raises(SystemExit) as exit_:
        battery.main(["http://127.0.0.1:1/"])
    assert exit_.value.code == 2 and "plain ws:// only" in capsys.readouterr().err

    async def broken(*args, **kwargs):
        raise ValueError("a bug in a case")

    monkeypatch.setattr(battery.cli, "check_server", broken)
    with pytest.raises(ValueError, match="a bug in a case"):
        battery.main(["ws://127.0.0.1:1/"])


@pytest.mark.parametrize("value", ["nan", "inf", "1e308", "-1", "0", "121"])
def test_a_timeout_that_is_not_a_sane_number_of_seconds_is_an_argument_error(value, capsys):
    """nan, inf, 1e308, negative and zero timeouts once ran for ever or failed every case "within nan s"."""
    with pytest.raises(SystemExit) as exit_:
        battery.main(["ws://127.0.0.1:1/", "--timeout", value])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "error: --timeout" in err and "at most 120" in err
    with pytest.raises(ValueError, match="give the seconds per case"):
        run(check_server("ws://127.0.0.1:1/", timeout=float(value)))


def test_an_unwritable_junit_file_is_refused_before_any_case_runs(tmp_path, capsys):
    """Exit 2 and no connection made: a grading loop learns of the typo before the run, not after it."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    try:
        url = f"ws://127.0.0.1:{listener.getsockname()[1]}/"
        for bad in [tmp_path / "no-such-dir" / "x.xml", tmp_path]:  # a missing directory, a directory
            with pytest.raises(SystemExit) as exit_:
                battery.main([url, "--junit", str(bad)])
            assert exit_.value.code == 2 and "cannot be written" in capsys.readouterr().err
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
    finally:
        listener.close()


def test_json_and_junit_of_an_unreachable_server_say_the_same(tmp_path, capsys):
    """Both list every case as not run, with the reason; JSON's failed MUSTs are JUnit's errors."""
    path = tmp_path / "battery.xml"
    assert battery.main([f"ws://127.0.0.1:{_free_port()}/", "--json", "--junit", str(path)]) == 2
    data = json.loads(capsys.readouterr().out)
    suite = ET.parse(path).getroot()
    cases = suite.findall("testcase")
    assert [c["name"] for c in data["cases"]] == [c.get("name") for c in cases] == [c.name for c in CASES]
    assert {c["status"] for c in data["cases"]} == {"error"} and data["passed"] is False and data["error"]
    assert suite.get("errors") == str(len(CASES)) and suite.get("failures") == "0"
    assert all(c.find("error").get("message").startswith("not run: nothing accepts connections") for c in cases)
    assert data["failed"] == MUST_CASES and (data["musts_held"], data["musts_total"]) == (0, len(MUST_CASES))


# The checks for the pieces of a server (lesson 06's exercises)


def respond(request: bytes, *, accept=None, version_header=True, case_sensitive=False, method_check=True) -> bytes:
    """A handshake answer written for the test, with optional bugs."""
    from websockets.utils import accept_key

    lines = request.decode("latin-1").split("\r\n")
    pairs = [(k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in lines[1:]) if _]
    headers = {k if case_sensitive else k.lower(): v for k, v in pairs}
    key = headers.get("Sec-WebSocket-Key" if case_sensitive else "sec-websocket-key")
    version = headers.get("Sec-WebSocket-Version" if case_sensitive else "sec-websocket-version")
    if key is None or (method_check and not request.startswith(b"GET ")):
        return b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
    if version != "13":
        extra = b"Sec-WebSocket-Version: 13\r\n" if version_header else b""
        return b"HTTP/1.1 426 Upgrade Required\r\n" + extra + b"Content-Length: 0\r\n\r\n"
    key = accept or accept_key(key)
    return (f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {key}\r\n\r\n").encode()


def test_check_handshake_response_passes_a_correct_answer():
    battery.check_handshake_response(respond)


@pytest.mark.parametrize(
    "bug, message",
    [
        ({"accept": "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="}, "its client refused"),
        ({"version_header": False}, "Sec-WebSocket-Version: 13"),
        ({"case_sensitive": True}, "lowercase header names.*case-insensitive"),
        ({"method_check": False}, "for a POST request .*expected 'HTTP/1.1 400"),
    ],
)
def test_check_handshake_response_names_what_is_wrong(bug, message):
    with pytest.raises(wslab.CheckFailed, match=message):
        battery.check_handshake_response(lambda request: respond(request, **bug))


def test_a_wrong_accept_is_answered_with_the_right_one_and_how_it_is_made():
    """Lesson 06, exercise 6.1: the message names the value the key needed (websockets' own
    accept_key agrees) and the RFC's recipe (4.2.2), not only that the client refused."""
    from websockets.utils import accept_key

    with pytest.raises(wslab.CheckFailed) as info:
        battery.check_handshake_response(lambda request: respond(request, accept="abc="))
    message = str(info.value)
    key = re.search(r"For the key (\S+) the answer needs Sec-WebSocket-Accept: (\S+) ", message)
    assert key and key.group(2) == accept_key(key.group(1)), message
    assert "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" in message and message.endswith("yours was abc=")


def test_a_server_failing_many_musts_gets_one_short_paragraph():
    """Lesson 06, exercise 6.3: at most three failures spelled out, each clipped, then where the table is."""
    report = run(_raw("accepts-unmasked"), timeout=60)
    for result in report.results:  # as if every case had failed, with long words
        result.passed, result.happened = False, "x " * 500
    with pytest.raises(wslab.CheckFailed) as info:
        report.assert_passed()
    message = str(info.value)
    assert len(message) < 1200 and "\n" not in message and "more. The report's table" in message


def test_check_handshake_response_wants_bytes():
    with pytest.raises(wslab.CheckFailed, match="return bytes"):
        battery.check_handshake_response(lambda request: respond(request).decode())


class ProtocolViolation(Exception):
    def __init__(self, code):
        super().__init__(f"close with {code}")
        self.code = code


def make_read_frame(*, check_mask=True, check_size_first=True, check_control=True, check_rsv=True):
    async def read_frame(reader, max_size):
        b0, b1 = await reader.readexactly(2)
        fin, opcode, n = bool(b0 & 0x80), b0 & 0x0F, b1 & 0x7F
        if check_mask and not b1 & 0x80:
            raise ProtocolViolation(1002)
        if check_rsv and b0 & 0x70:
            raise ProtocolViolation(1002)
        if check_control and opcode not in (0, 1, 2, 8, 9, 10):
            raise ProtocolViolation(1002)
        if n == 126:
            (n,) = struct.unpack("!H", await reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await reader.readexactly(8))
        if check_control and opcode >= 8 and (n > 125 or not fin):
            raise ProtocolViolation(1002)
        if check_size_first and n > max_size:
            raise ProtocolViolation(1009)
        key = await reader.readexactly(4) if b1 & 0x80 else b"\0\0\0\0"
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(await reader.readexactly(n)))
        return fin, opcode, payload

    return read_frame


def test_check_read_frame_passes_a_correct_reader():
    run(battery.check_read_frame(make_read_frame(), 2**20))


@pytest.mark.parametrize(
    "bug, message",
    [
        ({"check_mask": False}, "unmasked frame"),
        ({"check_size_first": False}, "check the length against max_size before reading"),
        ({"check_control": False}, "reserved opcode"),
        ({"check_rsv": False}, "RSV1 set"),
    ],
)
def test_check_read_frame_names_the_rule_a_reader_misses(bug, message):
    with pytest.raises(wslab.CheckFailed, match=message):
        run(battery.check_read_frame(make_read_frame(**bug), 2**20, timeout=seconds(0.5)))


def test_check_read_frame_catches_a_reader_that_accepts_a_fragmented_ping():
    """RFC 6455 5.5: control frames MUST NOT be fragmented; exercise 6.2 lists it."""

    async def no_fin_check(reader, max_size):
        fin, opcode, payload = await make_read_frame(check_control=False)(reader, max_size)
        if opcode in (0x3,) or (opcode >= 8 and len(payload) > 125):
            raise ProtocolViolation(1002)
        return fin, opcode, payload

    with pytest.raises(wslab.CheckFailed, match="ping without FIN"):
        run(battery.check_read_frame(no_fin_check, 2**20, timeout=seconds(0.5)))


def test_check_read_frame_names_the_valid_frame_a_reader_raises_on():
    async def refuses_continuations(reader, max_size):
        fin, opcode, payload = await make_read_frame()(reader, max_size)
        if opcode == 0:
            raise ProtocolViolation(1002)
        return fin, opcode, payload

    with pytest.raises(wslab.CheckFailed, match="two frames of a fragmented message.*this frame is valid"):
        run(battery.check_read_frame(refuses_continuations, 2**20))


def test_check_handshake_response_names_the_request_its_function_raised_on():
    def no_key_crashes(request):
        if b"sec-websocket-key" not in request.lower():
            raise KeyError("sec-websocket-key")
        return respond(request)

    with pytest.raises(wslab.CheckFailed, match="without Sec-WebSocket-Key.*raised KeyError"):
        battery.check_handshake_response(no_key_crashes)


def test_check_read_frame_catches_a_reader_that_ignores_the_mask():
    async def no_unmasking(reader, max_size):
        fin, opcode, payload = await make_read_frame()(reader, max_size)
        return fin, opcode, b"\x7f\x9f\x4d\x51\x58" if payload == b"Hello" else payload

    with pytest.raises(wslab.CheckFailed, match="masked 'Hello'"):
        run(battery.check_read_frame(no_unmasking, 2**20))


def test_lesson_06s_claims_about_the_websockets_server_hold():
    """Lesson 06 shows wslab.serve (websockets) failing RFC 6455 4.4's MUST and nothing else, and the
    article's handler failing the echo cases on top of it."""

    async def main():
        library = await wslab.serve(pure_echo, name="library")
        article = await wslab.serve(wslab.handlers.echo, name="article")
        try:
            return (await check_server(library, timeout=seconds(5)), await check_server(article, timeout=seconds(5)))
        finally:
            await library.aclose()
            await article.aclose()

    library, article = run(main(), timeout=60)
    assert library.failed == ["handshake with version 25 (unknown)"], str(library)
    assert "no Sec-WebSocket-Version header" in library["handshake with version 25 (unknown)"].happened
    assert set(article.failed) == {"handshake with version 25 (unknown)", "text echo", "two frames in one write",
                                   "fragmented message", "ping inside a fragmented message",
                                   "valid UTF-8 split across fragments"}, str(article)

"""Self-checks (wslab/course/checks.py)."""

from __future__ import annotations

import pytest

from wslab.course.checks import CheckFailed, assert_done, check, check_equal, exercise, expect


def test_check_equal_names_what_was_wrong():
    with pytest.raises(CheckFailed, match=r"^your accept key for 'k' was 'abc'; expected 'xyz'$"):
        check_equal("abc", "xyz", "your accept key for 'k'")


def test_check_equal_shortens_long_values():
    with pytest.raises(CheckFailed) as info:
        check_equal("a" * 500, "b", "x")
    assert len(str(info.value)) < 200


def test_check_passes_silently_and_fails_with_the_message():
    check(True, "never shown")
    with pytest.raises(CheckFailed, match="^frame too long$"):
        check(False, "frame too long")


def test_a_sentence_with_fields_is_filled_from_the_keywords_and_a_plain_one_keeps_its_braces():
    with pytest.raises(CheckFailed, match=r"^a write buffer reached 70,000 bytes; it should stay near the limit$"):
        check(False, "a write buffer reached {peak:,} bytes; it should stay near the limit", peak=70_000)
    with pytest.raises(CheckFailed, match=r"^your accept key for 'k' was 'abc'; expected 'xyz'$"):
        check_equal("abc", "xyz", "your accept key for {key!r}", key="k")
    with pytest.raises(CheckFailed, match=r"^close_code_for a ping \(8903...\) was 1000; expected 1002$"):
        check_equal(1000, 1002, "close_code_for {what} ({start}...)", what="a ping", start="8903")
    with pytest.raises(CheckFailed, match=r"^return a dict like \{'A': 'Host'\}$"):
        check(False, "return a dict like {'A': 'Host'}")  # no keywords: the sentence is not a template


def test_check_failed_renders_without_a_traceback_in_ipython():
    assert CheckFailed("bad key")._render_traceback_() == ["\x1b[31m✗ bad key\x1b[0m"]


def test_exercise_reports_passed(capsys):
    with exercise("t.1"):
        check_equal(1, 1, "one")
    assert capsys.readouterr().out == "✓ Exercise t.1 passed\n"
    assert_done("t.1")


def test_exercise_with_a_stub_says_not_done_and_does_not_raise(capsys):
    def learner():
        raise NotImplementedError("not done yet")

    with exercise("t.2"):
        learner()
    assert "Exercise t.2 is not done yet" in capsys.readouterr().out
    with pytest.raises(CheckFailed, match="exercise t.2 is not done"):
        assert_done("t.2")


def test_exercise_failure_is_labelled():
    with pytest.raises(CheckFailed, match=r"^Exercise t.3: x was 2; expected 3$"):
        with exercise("t.3"):
            check_equal(2, 3, "x")
    with pytest.raises(CheckFailed, match="exercise t.3 is failed"):
        assert_done("t.3")


def test_exercise_turns_a_plain_assert_into_a_labelled_failure():
    with pytest.raises(CheckFailed, match=r"^Exercise t.4: the port must be positive$"):
        with exercise("t.4"):
            raise AssertionError("the port must be positive")


def test_exercise_lets_a_bug_in_the_learners_code_show_its_own_traceback():
    with pytest.raises(ZeroDivisionError):
        with exercise("t.5"):
            1 / 0


def test_assert_done_on_an_unchecked_exercise_fails():
    with pytest.raises(CheckFailed, match="exercise never.1 is not checked"):
        assert_done("never.1")


def test_expect_shows_the_expected_error(capsys):
    with expect(ValueError, match="port"):
        raise ValueError("bad port")
    assert capsys.readouterr().out == "✓ raised ValueError: bad port\n"


def test_expect_fails_when_nothing_is_raised():
    with pytest.raises(CheckFailed, match="expected ValueError, but nothing was raised"):
        with expect(ValueError):
            pass


def test_expect_fails_when_the_message_does_not_match():
    with pytest.raises(CheckFailed, match="does not mention 'port'"):
        with expect(ValueError, match="port"):
            raise ValueError("bad key")


def test_expect_lets_another_error_through():
    with pytest.raises(KeyError):
        with expect(ValueError):
            raise KeyError("x")


def test_the_articles_legacy_attributes_get_a_sentence_naming_todays_api():
    """Exercise 0.2 answered the article's way (``connection.request_headers``) used to show a raw
    AttributeError naming an internal class; the check names the attribute and its replacement."""
    import asyncio

    from websockets.asyncio.client import connect
    from websockets.asyncio.server import ServerConnection, serve

    from wslab.course.checks import LEGACY_ATTRIBUTES

    for name in LEGACY_ATTRIBUTES:  # gone from the installed websockets' connections
        assert not hasattr(ServerConnection, name), name

    seen = []

    async def main():
        async def handler(connection):
            seen.append(connection)

        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}/", user_agent_header="ua/1.0"):
                pass

    asyncio.run(main())
    with pytest.raises(CheckFailed) as info:
        with exercise("0.2"):
            seen[0].request_headers["User-Agent"]
    message = str(info.value)
    assert "`.request_headers`" in message and "connection.request.headers" in message
    assert "Connection[" not in message and seen[0].request.headers["User-Agent"] == "ua/1.0"
    for replacement in LEGACY_ATTRIBUTES.values():  # every replacement the table names exists today
        path = replacement.split()[0].removesuffix("()").split(".")[1:]
        value = seen[0]
        for attribute in path:
            value = getattr(value, attribute)
        assert value is not None, replacement
    with pytest.raises(AttributeError):  # any other attribute error is the learner's own bug: its traceback shows
        with exercise("0.2"):
            seen[0].no_such_thing


def test_expect_with_a_hint_says_what_to_do_when_nothing_is_raised():
    with pytest.raises(CheckFailed, match=r"^expected ValueError, but nothing was raised: keep the checks on$"):
        with expect(ValueError, hint="keep the checks on"):
            pass

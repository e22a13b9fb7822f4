"""The event source: numbered, timestamped events read by cursor (wslab/lab/events.py)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from wslab.lab.events import CursorError, Event, EventSource, parse_cursor, poisson

from .conftest import run, seconds


def test_publish_numbers_events_from_one_and_stamps_them_with_the_clock():
    source = EventSource(seed=1)
    before = time.time()
    first = source.publish({"a": 1})
    second = source.publish()
    after = time.time()
    assert (first.seq, second.seq) == (1, 2)
    assert before <= first.created <= second.created <= after
    assert first.payload == {"a": 1}
    assert "value" in second.payload  # a seeded default payload
    assert source.newest == 2


def test_a_source_can_stamp_events_with_another_clock():
    ticks = iter([10.0, 11.0])
    source = EventSource(clock=lambda: next(ticks))
    assert [source.publish(i).created for i in range(2)] == [10.0, 11.0]


def test_default_payloads_are_the_same_for_the_same_seed():
    a, b, c = EventSource(seed=3), EventSource(seed=3), EventSource(seed=4)
    pa = [a.publish().payload for _ in range(5)]
    assert pa == [b.publish().payload for _ in range(5)]
    assert pa != [c.publish().payload for _ in range(5)]


def test_since_returns_the_events_after_a_cursor_oldest_first():
    source = EventSource()
    source.publish_many(range(5))
    assert [e.seq for e in source.since(0)] == [1, 2, 3, 4, 5]
    assert [e.seq for e in source.since(3)] == [4, 5]
    assert source.since(5) == []


@pytest.mark.parametrize(
    "cursor, problem",
    [("abc", "not a whole number"), ("1.5", "not a whole number"), ("-1", "negative"),
     ("0x1", "not a whole number"), ("٣", "not a whole number"), ("4", "from the future")],
)
def test_a_bad_cursor_is_refused_with_the_value_and_what_to_send(cursor, problem):
    with pytest.raises(CursorError) as info:
        parse_cursor(cursor, newest=3)
    error = info.value
    assert error.value == cursor and error.newest == 3 and error.status == 400
    assert problem in str(error)
    assert repr(cursor) in str(error) and "from 0 to 3" in str(error)
    assert error.to_json()["value"] == cursor


def test_since_refuses_a_cursor_from_the_future():
    source = EventSource()
    source.publish()
    with pytest.raises(CursorError, match="from the future"):
        source.since(2)


def test_now_and_empty_cursors_mean_newest_and_everything():
    assert parse_cursor("now", newest=7) == 7
    assert parse_cursor(None, newest=7) == 0
    assert parse_cursor("", newest=7) == 0
    assert parse_cursor(" 5 ", newest=7) == 5


def test_events_round_trip_through_json():
    event = Event(3, 1700000000.25, {"x": [1, 2]})
    assert Event.from_json(event.dumps()) == event
    assert event.to_json() == {"seq": 3, "created": 1700000000.25, "data": {"x": [1, 2]}}
    assert str(event).startswith("#3 at 1700000000.250000")


@pytest.mark.parametrize(
    "text, words",
    [
        ("123", "a JSON object, got int"),
        ("[" * 100_000, "nested too deeply"),
        ('{"seq": 1}', "needs 'created'"),
        ('{"seq": "1", "created": 0}', "whole-number seq"),
        ('{"seq": true, "created": 0}', "whole-number seq"),
        ("not json", "Expecting value"),
    ],
)
def test_reading_an_event_back_raises_only_value_error_naming_what_is_wrong(text, words):
    with pytest.raises(ValueError, match=words):
        Event.from_json(text)


def test_wait_after_returns_at_once_when_events_are_there():
    async def main():
        source = EventSource()
        source.publish_many("ab")
        return [e.seq for e in await source.wait_after(0, timeout=seconds(5))]

    assert run(main()) == [1, 2]


def test_wait_after_returns_nothing_when_its_timeout_passes():
    async def main():
        source = EventSource()
        return await source.wait_after(0, timeout=0.05)

    assert run(main()) == []


def test_wait_after_wakes_when_another_thread_publishes():
    async def main():
        source = EventSource()
        loop = asyncio.get_running_loop()
        waiting = asyncio.ensure_future(source.wait_after(0, timeout=seconds(5)))
        while not source._waiters:  # bounded by run()'s timeout
            await asyncio.sleep(0)
        thread = threading.Thread(target=source.publish, args=("from a thread",))
        thread.start()
        events = await waiting
        await loop.run_in_executor(None, thread.join)
        return events

    events = run(main())
    assert [(e.seq, e.payload) for e in events] == [(1, "from a thread")]


def test_wait_after_refuses_a_cursor_from_the_future_at_once():
    async def main():
        source = EventSource()
        await source.wait_after(1, timeout=seconds(5))

    with pytest.raises(CursorError):
        run(main(), timeout=2)


def test_poisson_gaps_are_seeded_and_positive():
    gaps = poisson(0.1, 50, seed=1)
    assert gaps == poisson(0.1, 50, seed=1) != poisson(0.1, 50, seed=2)
    assert len(gaps) == 50 and all(g > 0 for g in gaps)
    with pytest.raises(ValueError, match="mean_gap_s must be positive"):
        poisson(0, 3)


def test_run_schedule_publishes_one_event_per_gap_in_order():
    async def main():
        source = EventSource()
        return await source.run_schedule([0.0, 0.01, 0.0], payloads=["a", "b", "c"])

    events = run(main())
    assert [(e.seq, e.payload) for e in events] == [(1, "a"), (2, "b"), (3, "c")]
    assert events[0].created <= events[1].created <= events[2].created


from hypothesis import given, strategies as st  # noqa: E402


@given(st.text(max_size=12), st.integers(min_value=0, max_value=50))
def test_a_cursor_is_accepted_exactly_when_it_is_a_whole_number_up_to_the_newest(text, newest):
    stripped = text.strip()
    valid = (stripped.isascii() and stripped.isdigit() and int(stripped) <= newest) or text in ("", "now")
    try:
        value = parse_cursor(text, newest)
    except CursorError as error:
        assert not valid and error.value == text
    else:
        assert valid and 0 <= value <= newest


def test_a_cursor_of_more_than_4300_digits_is_refused_without_int():
    """Python's int() refuses strings of more than 4,300 digits: the digits are counted first."""
    with pytest.raises(CursorError) as info:
        parse_cursor("1" * 4301, newest=3)
    assert "from the future" in str(info.value) and "(4301 characters)" in str(info.value)
    assert len(str(info.value)) < 400 and info.value.to_json()["value"].endswith("(4301 characters)")
    assert parse_cursor("0" * 5000 + "2", newest=3) == 2  # leading zeros are still a number
    with pytest.raises(CursorError, match="negative"):
        parse_cursor("-" + "1" * 4301, newest=3)
    with pytest.raises(CursorError, match="not a whole number"):
        parse_cursor("\x00", newest=3)

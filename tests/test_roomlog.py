"""The entries of a room's log: sealed by the room's processes, checked by every reader (wslab.roomlog).

The broker's tests (tests/test_broker.py) write such entries into a real Redis; these check the
rules one by one, with the standard library's hmac as the independent oracle for the MAC."""

from __future__ import annotations

import hashlib
import hmac
import json
import random

import pytest

from wslab import roomlog

SECRET = b"a-secret-of-the-room-0123456789"
KEY = "wslab:room:test"
MESSAGE = {"type": "message", "nick": "ada", "text": "hello", "time": 1.5}


def _fields(payload: bytes, secret: bytes = SECRET, key: str = KEY) -> dict[bytes, bytes]:
    mac = hmac.new(secret, key.encode() + b"\n" + payload, hashlib.sha256).hexdigest().encode()
    return {b"p": payload, b"h": mac}


def _as_read(fields: dict[str, bytes]) -> dict[bytes, bytes]:
    return {k.encode(): v for k, v in fields.items()}


def test_a_sealed_event_opens_with_its_origin_and_sequence_number():
    sealed = roomlog.seal(SECRET, KEY, "p1", 7, MESSAGE)
    assert sealed["h"] == _fields(sealed["p"])[b"h"]
    assert roomlog.open_entry(SECRET, KEY, _as_read(sealed), max_size=4096) == ("p1", 7, MESSAGE)


@pytest.mark.parametrize("fields, reason", [
    ({b"p": b"{}"}, "shape"),
    ({b"p": b"{}", b"h": b"", b"x": b""}, "shape"),
    ([b"p", b"h"], "shape"),
    ({b"p": b"x" * (8 * 1024 * 1024), b"h": b"00"}, "too big"),
    ({b"p": b"{}", b"h": b"0" * 64}, "bad signature"),
    (_fields(b"\xff{", secret=b"another-secret-0123456789"), "bad signature"),
    (_fields(json.dumps({"o": "p", "s": 1, "e": MESSAGE}).encode(), key="wslab:room:other"), "bad signature"),
    (_fields(b"\xff{"), "not json"),
    (_fields(b"[" * 20_000), "not json"),  # nested past the recursion limit
    (_fields(b"null"), "bad schema"),
    (_fields(json.dumps({"o": "p", "s": 0, "e": MESSAGE}).encode()), "bad schema"),
    (_fields(json.dumps({"o": "p", "s": True, "e": MESSAGE}).encode()), "bad schema"),
    (_fields(json.dumps({"o": "p" * 33, "s": 1, "e": MESSAGE}).encode()), "bad schema"),
])
def test_an_entry_that_is_not_a_sealed_envelope_is_refused_with_its_reason(fields, reason):
    with pytest.raises(roomlog.BadEntry) as caught:
        roomlog.open_entry(SECRET, KEY, fields, max_size=4096)
    assert caught.value.reason == reason
    assert reason in roomlog.REASONS


@pytest.mark.parametrize("event", [
    None, [1, 2], 123, "text",
    {"type": "welcome", "room": "x", "nick": "eve", "members": []},
    {"type": "history", "events": []},
    {"type": "system", "text": "the room is split", "time": 1.0},
    {"type": "message", "nick": "eve", "text": "x", "time": float("inf")},
    {"type": "message", "nick": "eve", "text": "x"},
    {"type": "message", "nick": "eve", "text": "x" * 4097, "time": 1.0},
    {"type": "message", "nick": "eve", "text": "é" * 2049, "time": 1.0},  # 4,098 bytes
    {"type": "message", "nick": "eve", "text": "x", "time": 1.0, "role": "admin"},
    {"type": "message", "nick": "eve", "text": "x", "time": 1.0, "extra": 1},
    {"type": "message", "nick": "", "text": "x", "time": 1.0},
    {"type": "message", "nick": ["eve"], "text": "x", "time": 1.0},
    {"type": "leave", "nick": "ada", "time": 1.0, "why": "kicked"},
    {"type": "join", "nick": "ada", "nicks": "ada", "time": 1.0},
    {"type": "join", "nick": "ada", "nicks": ["x"] * 1001, "time": 1.0},
])
def test_a_sealed_entry_whose_event_the_room_would_not_make_is_refused_as_bad_schema(event):
    payload = json.dumps({"o": "p", "s": 1, "e": event}, allow_nan=True).encode()
    with pytest.raises(roomlog.BadEntry) as caught:
        roomlog.open_entry(SECRET, KEY, _fields(payload), max_size=4096)
    assert caught.value.reason == "bad schema"


@pytest.mark.parametrize("event", [
    MESSAGE,
    {"type": "message", "nick": "teacher", "text": "x" * 4096, "time": 2, "role": "instructor"},
    {"type": "message", "nick": "ada", "text": "\x00\x1f" * 2048, "time": 1.0},  # escaped: 6 bytes each
    {"type": "leave", "nick": "bob", "time": 1.0, "why": "too slow"},
    {"type": "join", "nick": "ada, bob, cy and 2 others", "nicks": ["ada", "bob", "cy", "d", "e"], "time": 1.0},
])
def test_every_event_the_room_makes_passes_its_own_check(event):
    sealed = roomlog.seal(SECRET, KEY, "p1", 1, event)
    assert roomlog.open_entry(SECRET, KEY, _as_read(sealed), max_size=4096)[2] == event


def test_seen_delivers_each_origin_and_number_once_in_any_order_and_forgets_within_bounds():
    seen = roomlog.Seen(window=100, origins=3)
    head, numbers = list(range(1, 51)), list(range(51, 501))
    random.Random(1).shuffle(head)
    numbers = head + numbers
    assert all(seen.add("a", n) for n in numbers)
    assert not any(seen.add("a", n) for n in (500, 450, 401, 3))  # in the window, or below it
    assert seen.add("b", 1) and seen.add("c", 1) and seen.add("d", 1)
    assert seen.add("a", 500)  # "a" was the oldest of four origins: forgotten
    assert len(seen._seen) == 3 and all(len(r) <= 200 for _, r in seen._seen.values())


def test_backoff_grows_to_its_cap_with_jitter_and_starts_again_after_reset():
    backoff = roomlog.Backoff(0.1, 2.0, rng=random.Random(3))
    delays = [backoff.next() for _ in range(40)]
    assert all(0.05 <= d <= 2.0 for d in delays)
    assert max(delays[:3]) <= 0.4 and max(delays[10:]) > 1.0 and len(set(delays[10:])) == 30
    backoff.reset()
    assert backoff.next() <= 0.1
    with pytest.raises(ValueError, match="backoff needs 0 < first <= cap"):
        roomlog.Backoff(3, 2)


def test_a_short_room_secret_is_refused_and_the_process_secret_is_made_once(monkeypatch):
    monkeypatch.delenv(roomlog.SECRET_ENV, raising=False)
    assert roomlog.room_secret() == roomlog.room_secret() and len(roomlog.room_secret()) == 64
    monkeypatch.setenv(roomlog.SECRET_ENV, "s" * 20)
    assert roomlog.room_secret() == b"s" * 20
    with pytest.raises(ValueError, match="room secret too short: 5 characters"):
        roomlog.room_secret("short")

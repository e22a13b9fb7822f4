"""The entries of a room's log in Redis: sealed by the room's processes, checked by every reader.

Design note
-----------
A room that spans processes keeps its log in a Redis stream (``wslab.production.broker``).
Anyone who can reach that Redis can write to the stream, so every entry a
reader takes from it is untrusted input, checked here in this order, cheapest
first, and refused with :class:`BadEntry` (its ``reason`` is one of
:data:`REASONS`, the counter the broker increments):

1. **shape and size**: exactly the fields ``p`` (the payload) and ``h`` (its
   MAC); the payload at most :func:`payload_limit` bytes, so an 8 MiB entry
   is refused before anything parses it;
2. **origin**: ``h`` is HMAC-SHA256 over the stream's key and the payload with
   the secret the room's processes share (``WSLAB_ROOM_SECRET``); compared
   with :func:`hmac.compare_digest` on bytes. An entry from anyone without
   the secret (a forged ``role: instructor``, a fake ``leave``) stops here;
   the key in the MAC stops an entry of one room being replayed in another;
3. **schema**: the payload is a JSON object ``{"o": origin, "s": seq, "e":
   event}`` and the event one the room itself makes (``message``, ``join``,
   ``leave``), field by field, the text at most the room's message limit.

A valid entry replayed later, or written twice (a retry after a timeout
whose first attempt did reach Redis), is caught by :class:`Seen`: every
process numbers its events (``origin``, ``seq``) and a reader delivers each
pair once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import random
import secrets
from collections import OrderedDict
from typing import Any

__all__ = ["BadEntry", "REASONS", "EVENT_TYPES", "payload_limit", "seal", "open_entry", "check_event",
           "Seen", "Backoff", "SECRET_ENV", "room_secret"]

#: Why an entry was refused: the keys of the broker's ``stats["dropped"]``.
REASONS = ("shape", "too big", "bad signature", "not json", "bad schema")
#: Event types that travel through the log (welcome, history and system notices never do).
EVENT_TYPES = ("message", "join", "leave")

MAX_NICK_FIELD = 64  # a nick is at most 24 characters (chat.MAX_NICK); slack for "ada-2"
MAX_NICKS = 1000  # nicks in one batched join or leave notice
MAX_ORIGIN = 32


class BadEntry(ValueError):
    """An entry of the room's log that a reader refuses; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


def payload_limit(max_size: int) -> int:
    """The largest payload a room whose messages hold ``max_size`` bytes accepts, in bytes.

    JSON may escape one byte of text as six (``\\u001f``); the rest is the
    envelope (nick, time, origin, sequence number).
    """
    return 6 * max_size + 2048


def _mac(secret: bytes, key: str, payload: bytes) -> bytes:
    return hmac.new(secret, key.encode() + b"\n" + payload, hashlib.sha256).hexdigest().encode()


def seal(secret: bytes, key: str, origin: str, seq: int, event: dict[str, Any]) -> dict[str, bytes]:
    """The fields of the stream entry that carries ``event``: ``{"p": payload, "h": mac}``."""
    payload = json.dumps({"o": origin, "s": seq, "e": event}, ensure_ascii=False,
                         separators=(",", ":")).encode()
    return {"p": payload, "h": _mac(secret, key, payload)}


def open_entry(secret: bytes, key: str, fields: Any, *, max_size: int) -> tuple[str, int, dict[str, Any]]:
    """``(origin, seq, event)`` from an entry's fields; raises :class:`BadEntry` saying why not."""
    if not isinstance(fields, dict) or set(fields) != {b"p", b"h"}:
        names = sorted(fields)[:5] if isinstance(fields, dict) else type(fields).__name__
        raise BadEntry("shape", f"fields {names!r}, expected p and h")
    payload, mac = fields[b"p"], fields[b"h"]
    if len(payload) > payload_limit(max_size):
        raise BadEntry("too big", f"{len(payload):,} bytes (max {payload_limit(max_size):,})")
    if not hmac.compare_digest(_mac(secret, key, payload), bytes(mac[:128])):
        raise BadEntry("bad signature", "not sealed with this room's secret (WSLAB_ROOM_SECRET)")
    try:
        envelope = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise BadEntry("not json", str(exc)[:80]) from None
    if not (isinstance(envelope, dict) and set(envelope) == {"o", "s", "e"}
            and isinstance(envelope["o"], str) and 0 < len(envelope["o"]) <= MAX_ORIGIN
            and type(envelope["s"]) is int and envelope["s"] > 0):
        raise BadEntry("bad schema", "the envelope is not {o: origin, s: seq, e: event}")
    check_event(envelope["e"], max_size=max_size)
    return envelope["o"], envelope["s"], envelope["e"]


def _is_nick(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_NICK_FIELD


def _is_nick_list(value: Any) -> bool:
    return isinstance(value, list) and 0 < len(value) <= MAX_NICKS and all(_is_nick(v) for v in value)


def check_event(event: Any, *, max_size: int) -> None:
    """Raise :class:`BadEntry` ("bad schema") unless ``event`` is one a room makes itself."""

    def bad(why: str) -> BadEntry:
        return BadEntry("bad schema", why)

    if not isinstance(event, dict):
        raise bad(f"an event is a JSON object, got {type(event).__name__}")
    kind = event.get("type")
    if kind not in EVENT_TYPES:
        raise bad(f"event type {str(kind)[:20]!r} does not travel through the log")
    stamp = event.get("time")
    if type(stamp) not in (int, float) or not math.isfinite(stamp):
        raise bad("time is not a finite number")
    if kind == "message":
        if set(event) - {"type", "nick", "text", "time", "role"} or not _is_nick(event.get("nick")):
            raise bad("a message has type, nick, text, time and maybe role")
        text = event.get("text")
        if not isinstance(text, str) or len(text.encode("utf-8", "surrogatepass")) > max_size:
            raise bad(f"text is not a string of at most {max_size} bytes")
        if "role" in event and event["role"] != "instructor":
            raise bad("role can only be 'instructor'")
        return
    if set(event) - {"type", "nick", "nicks", "time", "why", "dropped"}:
        raise bad("a join or leave has type, nick, time and maybe nicks, why, dropped")
    nick = event.get("nick")
    if not isinstance(nick, str) or not 0 < len(nick) <= 4 * MAX_NICK_FIELD:
        raise bad("nick is not a short string")
    if "nicks" in event and not _is_nick_list(event["nicks"]):
        raise bad("nicks is not a list of nicknames")
    if "dropped" in event and not _is_nick_list(event["dropped"]):
        raise bad("dropped is not a list of nicknames")
    if "why" in event and event["why"] != "too slow":
        raise bad("why can only be 'too slow'")


class Seen:
    """Which ``(origin, seq)`` pairs were delivered: each once, bounded memory.

    Per origin: the highest sequence number and the last ``window`` numbers
    seen. A number at or below ``highest - window`` counts as seen (a replay
    or a very late retry); at most ``origins`` origins are remembered.
    """

    def __init__(self, *, window: int = 4096, origins: int = 256) -> None:
        self.window = window
        self.origins = origins
        self._seen: OrderedDict[str, tuple[int, set[int]]] = OrderedDict()

    def add(self, origin: str, seq: int) -> bool:
        """Mark ``(origin, seq)`` seen; False if it was seen already."""
        highest, recent = self._seen.get(origin, (0, set()))
        if seq in recent or seq <= highest - self.window:
            return False
        recent.add(seq)
        highest = max(highest, seq)
        if len(recent) > 2 * self.window:
            recent = {s for s in recent if s > highest - self.window}
        self._seen[origin] = (highest, recent)
        self._seen.move_to_end(origin)
        while len(self._seen) > self.origins:
            self._seen.popitem(last=False)
        return True


class Backoff:
    """Capped exponential backoff with full jitter: ``next()`` is a delay in seconds.

    Delays are drawn from ``[first / 2, min(cap, first * 2**n)]`` (n =
    failures so far), so processes that lost Redis together do not retry
    together, and none retries in a tight loop.
    """

    def __init__(self, first: float = 0.1, cap: float = 2.0, *, rng: random.Random | None = None) -> None:
        if not 0 < first <= cap:
            raise ValueError(f"backoff needs 0 < first <= cap, got first={first!r}, cap={cap!r}")
        self.first = first
        self.cap = cap
        self.failures = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        ceiling = min(self.cap, self.first * 2 ** min(self.failures, 30))
        self.failures += 1
        return self._rng.uniform(self.first / 2, ceiling)

    def reset(self) -> None:
        self.failures = 0


#: The environment variable that holds a room's secret, the same in every process of the room.
SECRET_ENV = "WSLAB_ROOM_SECRET"
MIN_SECRET = 16
_process_secret: bytes | None = None


def room_secret(secret: str | bytes | None = None) -> bytes:
    """The secret that seals a room's log entries: ``secret``, else ``WSLAB_ROOM_SECRET``, else this process's own.

    This process's own is random, made once: every room of this process, and
    every room process it starts (:func:`wslab.production.broker.room_processes` passes
    it on), shares it. Raises :class:`ValueError` for a secret shorter than
    16 characters.
    """
    global _process_secret
    value = secret if secret is not None else os.environ.get(SECRET_ENV)
    if value is None:
        if _process_secret is None:
            _process_secret = secrets.token_hex(32).encode()
        return _process_secret
    raw = value.encode() if isinstance(value, str) else bytes(value)
    if len(raw) < MIN_SECRET:
        raise ValueError(f"room secret too short: {len(raw)} characters (at least {MIN_SECRET}); make one with "
                         f"python -c 'import secrets; print(secrets.token_hex(32))'")
    return raw

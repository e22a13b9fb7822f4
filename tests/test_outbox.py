"""The room's outbox on its own: bounded, in order, an event kept until Redis confirmed it.

The broker's behaviour with a real Redis (splits, restarts, refusals told to the sender) is
tests/test_broker.py; these check the bookkeeping underneath, with no I/O.
"""

from __future__ import annotations

from wslab.production.outbox import Outbox, Pending


def event(seq: int, size: int = 10) -> Pending:
    return Pending(seq, {"p": b"x" * size, "h": b"mac"}, {"type": "message", "text": str(seq)})


def test_the_outbox_refuses_past_its_count_or_its_bytes_and_says_why():
    outbox = Outbox(max_pending=2, max_pending_bytes=25)
    assert outbox.fits(25) and not outbox.fits(26)
    outbox.add(event(1))
    assert outbox.fits(15) and not outbox.fits(16)  # bytes: 10 + 16 > 25
    outbox.add(event(2))
    assert not outbox.fits(1)  # count: 2 of 2
    assert (len(outbox), outbox.bytes) == (2, 20)
    assert outbox.refusal(split=True) == (
        "2 messages already wait for Redis (the room is split): yours was not kept; "
        "send it again when the room is whole")
    assert "in a moment" in outbox.refusal(split=False)


def test_an_event_leaves_the_outbox_only_when_redis_confirmed_it_oldest_first():
    outbox = Outbox(max_pending=10, max_pending_bytes=1000)
    for seq in range(1, 6):
        outbox.add(event(seq))
    batch = outbox.batch(3)
    assert [p.seq for p in batch] == [1, 2, 3]
    assert len(outbox) == 5  # a batch not yet confirmed stays (a failed XADD is sent again)
    outbox.confirmed(batch, now=100.0)
    assert [p.seq for p in outbox] == [4, 5]
    assert outbox.bytes == 20
    assert all(p.acked == 100.0 for p in batch)


def test_events_confirmed_lately_go_back_in_front_in_order_when_redis_lost_the_log():
    outbox = Outbox(max_pending=10, max_pending_bytes=1000)
    for seq in range(1, 5):
        outbox.add(event(seq))
    outbox.confirmed(outbox.batch(1), now=10.0)  # old: not resent
    outbox.confirmed(outbox.batch(2), now=50.0)  # seq 2 and 3: recent
    assert outbox.resend(since=40.0) == 2
    assert [p.seq for p in outbox] == [2, 3, 4]
    assert outbox.bytes == 30
    assert outbox.resend(since=0.0) == 0  # each confirmed event is resent once at most


def test_the_events_kept_for_a_resend_are_bounded_by_max_pending():
    outbox = Outbox(max_pending=3, max_pending_bytes=1000)
    for seq in range(1, 11):
        outbox.add(event(seq))
        outbox.confirmed(outbox.batch(1), now=float(seq))
    assert len(outbox) == 0 and outbox.bytes == 0
    assert outbox.resend(since=0.0) == 3
    assert [p.seq for p in outbox] == [8, 9, 10]

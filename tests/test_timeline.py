"""The timeline figure is drawn from the timestamps of a real run (wslab/lab/timeline.py)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from wslab import timeline  # noqa: E402
from wslab.lab.events import poisson  # noqa: E402
from wslab.lab.labserver import lab_server  # noqa: E402
from wslab.lab.transports import deliver  # noqa: E402

from .conftest import run  # noqa: E402


def real_results():
    async def main():
        lab = await lab_server()
        try:
            gaps = poisson(0.01, 4, seed=1)
            return [
                await deliver("short_poll", lab, gaps, interval=0.02),
                await deliver("long_poll", lab, gaps),
                await deliver("sse", lab, gaps),
            ]
        finally:
            await lab.aclose()

    return run(main(), timeout=20)


def test_marks_hold_one_dot_per_event_one_bar_per_request_one_line_per_delivery():
    results = real_results()
    for result in results:
        m = timeline.marks(result)
        assert len(m.created) == len(m.deliveries) == 4
        assert len(m.requests) == len(result.exchanges)
        assert m.created[0] == 0.0  # time runs from the first event
        assert all(received >= created for created, received in m.deliveries)
        assert all(end >= start for start, end, _ in m.requests)
    poll, long_poll, sse = (timeline.marks(r) for r in results)
    assert sum(kind == "empty" for *_, kind in poll.requests) == results[0].empty_responses
    assert [kind for *_, kind in long_poll.requests][0] == "setup"
    assert [kind for *_, kind in sse.requests] == ["stream"]


def test_draw_makes_one_row_per_transport_with_every_mark():
    results = real_results()
    fig = timeline.draw(results)
    rows = [ax for ax in fig.axes]
    assert len(rows) == 3
    for ax, result in zip(rows, results):
        assert ax.get_title(loc="left").startswith(result.label)
        deliveries = [line for line in ax.lines if line.get_gid() == "delivery"]
        bars = [c for c in ax.collections if (c.get_gid() or "").startswith("request-")]
        assert len(deliveries) == len(result.deliveries)
        assert len(bars) == len(result.exchanges)


def test_draw_without_results_says_what_to_do():
    with pytest.raises(ValueError, match="run wslab.receive"):
        timeline.draw([])


def test_over_a_link_every_poll_bar_spans_a_round_trip_and_every_delivery_the_way_down():
    """Through a 60 ms round trip: each short poll's bar lasts at least 60 ms, each event takes at least 30 ms to arrive."""
    import wslab

    async def main():
        lab = await lab_server()
        tap = await wslab.wiretap(lab.http_url, name="timeline-link", rtt_ms=60)
        try:
            return await deliver("short_poll", lab, poisson(0.05, 3, seed=2), interval=0.1, tap=tap)
        finally:
            await tap.aclose()
            await lab.aclose()

    result = run(main(), timeout=20)
    m = timeline.marks(result)
    assert all(end - start >= 60 - 0.5 for start, end, _ in m.requests)
    assert all(received - created >= 30 - 0.5 for created, received in m.deliveries)
    assert result.bytes_up and result.bytes_down  # counted through the link

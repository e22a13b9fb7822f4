"""The "why WebSockets" curve (wslab/lab/scaling.py): orderings only, small sizes.

The clients run in a process of their own (raw asyncio HTTP and the websockets
client, no wslab transport code); the server's CPU is read from the OS. Timings
are never compared with absolute figures, only with each other.
"""

from __future__ import annotations

import pytest

import wslab
from wslab.lab.scaling import TRANSPORTS, measure_scaling

from .conftest import seconds


#: The short pollers' interval, in seconds.
POLL_INTERVAL = 0.2


@pytest.fixture(scope="module")
def table():
    return measure_scaling((4, 24), events=12, mean_gap=0.03, poll_interval=POLL_INTERVAL, timeout=seconds(30))


def point(table, transport, clients):
    (found,) = [p for p in table.points if p.transport == transport and p.clients == clients]
    return found


def test_every_client_gets_every_event_once_over_every_transport(table):
    assert [(p.transport, p.clients) for p in table.points] == [(t, n) for t in TRANSPORTS for n in (4, 24)]
    for p in table.points:
        assert (p.lost, p.duplicated) == (0, 0), p
        assert p.deliveries == p.events * p.clients


def test_websocket_costs_the_server_least_per_delivery_and_a_framework_adds_to_long_polling(table):
    """Per delivered event: a frame in a buffer < a request parsed and answered, on servers of equal weight.

    tornado runs more Python per request than the light server: its row costs more than the light one.
    """
    ws, long_poll = point(table, "websocket", 24), point(table, "long polling", 24)
    tornado = point(table, "long polling, tornado", 24)
    assert ws.us_per_delivery < long_poll.us_per_delivery < tornado.us_per_delivery
    # A long poll answers with what came since the last one, then asks again: one event per answer
    # on an idle machine, several when the clients fall behind (a busy machine), so only the bounds
    # hold for sure: some requests, never more than one per delivery (plus each client's last).
    assert ws.requests == 0 < long_poll.requests <= long_poll.deliveries + long_poll.clients


def test_push_is_faster_than_polling_and_short_polling_waits_about_half_an_interval(table):
    for n in (4, 24):
        short, push = point(table, "short polling", n), point(table, "websocket", n)
        assert push.p50_ms < short.p50_ms
        assert point(table, "long polling", n).p50_ms < short.p50_ms
        # An event waits for the next poll (interval/2 at the median), then for what push takes too:
        # load only adds to the first bound; the second compares with push, measured alongside.
        interval_ms = POLL_INTERVAL * 1000
        assert interval_ms * 0.2 < short.p50_ms < push.p50_ms + interval_ms * 1.5, (short, push)


def test_more_clients_cost_the_server_more_for_polling(table):
    for transport in ("short polling", "long polling"):
        assert point(table, transport, 24).server_cpu_s > point(table, transport, 4).server_cpu_s


def test_the_table_and_the_figure_show_every_point(table):
    assert len(table.rows) == 8 and "server cores" in str(table)
    fig = wslab.plot_scaling(table)
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 4
    assert fig._repr_png_().startswith(b"\x89PNG")  # a notebook shows it as an image
    assert "scaling" not in str(wslab.status())


def test_polling_is_served_by_the_light_server_and_tornado_only_in_its_own_row(table):
    """The headline rows compare protocols on servers of equal weight; tornado is a row of its own."""
    from wslab.lab.scaling import PROTOCOLS

    assert PROTOCOLS == ("short polling", "long polling", "websocket")
    for transport in ("short polling", "long polling", "long polling, tornado"):
        assert point(table, transport, 24).requests > 0, transport  # counted by the server that served them


def test_nonsense_arguments_are_refused():
    with pytest.raises(ValueError, match="counts must be positive"):
        measure_scaling([0])
    with pytest.raises(ValueError, match="unknown transport"):
        measure_scaling([1], transports=["carrier pigeon"])

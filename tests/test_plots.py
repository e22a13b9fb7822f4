"""Figures of a latency run (wslab/lab/plots.py), drawn from saved results without any server."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

import wslab
from wslab import plots
from wslab.lab.experiment import TRANSPORTS, ExperimentConfig, Results, TransportResult, load_results, short_poll_interval

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def saved(tmp_path):
    """Results for every transport, written to results.json and read back."""
    rng = np.random.default_rng(11)
    n = 80
    results = Results(ExperimentConfig(events=n))
    for i, key in enumerate(TRANSPORTS):
        interval = short_poll_interval(key)
        if interval:
            latencies = rng.uniform(0.5, interval * 1000, n)
            requests = int(n * 0.02 / interval) + 1
            up, down = 110 * requests, 90 * requests + 60 * n
        else:
            latencies = rng.lognormal(np.log(0.3 + 0.2 * i), 0.3, n)
            requests = n if key == "long_poll" else 0
            up, down = 150 * requests, 60 * n + 100 * requests
        results.transports[key] = TransportResult(
            key, n, list(latencies), list(range(1, n + 1)), requests=requests, bytes_up=up, bytes_down=down,
            setup_ms=1.0, interval_ms=interval and interval * 1000,
        )
    results.save(tmp_path / "results.json")
    return load_results(tmp_path / "results.json")


DRAW = [plots.latency_cdf, plots.latency_boxes, plots.bytes_per_event, plots.bandwidth_projection,
        plots.short_poll_delay]


@pytest.mark.parametrize("draw", DRAW, ids=lambda f: f.__name__)
def test_every_plot_draws_a_labelled_figure_from_saved_results(draw, saved, tmp_path):
    fig = draw(saved)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_title() and ax.get_xlabel()
    assert "ms" in ax.get_xlabel() + ax.get_ylabel() or "bytes" in ax.get_xlabel() or "Mbps" in ax.get_ylabel()
    path = tmp_path / f"{draw.__name__}.png"
    fig.savefig(path)
    assert path.read_bytes().startswith(PNG)
    assert wslab.servers.servers() == []  # no server was needed


def test_cdf_marks_p50_p90_p99_for_every_transport(saved):
    ax = plots.latency_cdf(saved).axes[0]
    assert ax.get_xscale() == "log"
    labels = ax.get_legend().get_texts()
    text = " ".join(t.get_text() for t in labels)
    for r in saved:
        assert r.label in text
    assert "p50" in text and "p90" in text and "p99" in text
    # a marker at y = 0.5 / 0.9 / 0.99 at each transport's percentile
    points = {(round(float(x), 6), round(float(y), 2)) for line in ax.get_lines()
              for x, y in zip(line.get_xdata(), line.get_ydata()) if len(line.get_xdata()) == 1}
    ws = saved["websocket"]
    assert (round(ws.p50_ms, 6), 0.5) in points and (round(ws.p99_ms, 6), 0.99) in points


def test_bandwidth_projection_puts_measured_bytes_beside_the_2010_table(saved):
    table = plots.projection(saved)
    text = str(table)
    assert "871" in text and "665" in text and "1.526" in text
    ws = saved["websocket"].bytes_per_event["total"]
    expected = ws * 8 * 100_000 / 2**20
    assert f"{expected:.3g}" in text
    fig = plots.bandwidth_projection(saved)
    assert fig.axes[0].get_yscale() == "log"


def test_short_poll_plot_draws_interval_over_two(saved):
    ax = plots.short_poll_delay(saved).axes[0]
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert dashed
    xs, ys = dashed[0].get_xdata(), dashed[0].get_ydata()
    assert np.allclose(ys, xs / 2)


def test_short_poll_plot_without_short_polling_says_so():
    results = Results(ExperimentConfig(events=3, transports=["websocket"]))
    results.transports["websocket"] = TransportResult("websocket", 3, [0.3, 0.4, 0.5], [1, 2, 3])
    with pytest.raises(ValueError, match="no short polling"):
        plots.short_poll_delay(results)
    assert set(plots.figures(results)) == {"latency_cdf", "latency_boxes", "bytes_per_event",
                                           "bandwidth_projection"}


def test_empty_results_cannot_be_plotted_and_say_why():
    with pytest.raises(ValueError, match="no received events"):
        plots.latency_cdf(Results(ExperimentConfig(events=1)))


def test_save_figures_writes_one_png_per_figure(saved, tmp_path):
    paths = plots.save_figures(saved, tmp_path / "figs")
    assert sorted(p.stem for p in paths) == sorted(plots.figures(saved))
    assert all(p.read_bytes().startswith(PNG) for p in paths)

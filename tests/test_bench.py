"""``python -m wslab bench`` (wslab/lab/bench.py): the whole comparison, headless."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from wslab.lab.experiment import TRANSPORTS, load_results

from .conftest import seconds

ROOT = Path(__file__).resolve().parent.parent


def bench(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wslab", "bench", *args],
        cwd=cwd, capture_output=True, text=True, timeout=seconds(120),
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"},
    )


def test_quick_bench_writes_results_json_csv_and_figures(tmp_path):
    out = tmp_path / "run"
    done = bench("--quick", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads((out / "results.json").read_text())
    assert list(data["transports"]) == list(TRANSPORTS)
    for key, summary in data["transports"].items():
        assert summary["received"] == summary["events"] == data["config"]["events"], key
        for field in ("p50_ms", "p90_ms", "p99_ms", "requests_per_event"):
            assert isinstance(summary[field], (int, float)), (key, field)
        assert set(summary["bytes_per_event"]) == {"up", "down", "total"}
    assert {"python", "cpus"} <= set(data["machine"])
    assert {"websockets", "tornado", "httpx"} <= set(data["versions"])
    assert {"seed", "events", "mean_gap_ms", "payload_bytes"} <= set(data["config"])
    for name in ("summary.csv", "latencies.csv", "latency_cdf.png", "latency_boxes.png",
                 "bytes_per_event.png", "bandwidth_projection.png", "short_poll_delay.png"):
        assert (out / name).stat().st_size > 0, name
    assert "WebSocket" in done.stdout and "p50 ms" in done.stdout  # the text table
    assert load_results(out)["websocket"].received == data["config"]["events"]


def test_bench_without_out_makes_a_dated_folder_here(tmp_path):
    done = bench("--quick", "--transports", "tcp_floor,websocket", "--no-plots", "--no-bytes", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    folders = list(tmp_path.glob("wslab-results-*"))
    assert len(folders) == 1 and (folders[0] / "results.json").exists()
    assert not list(folders[0].glob("*.png"))


@pytest.mark.parametrize("args, message", [
    (["--transports", "pigeon"], "unknown transport 'pigeon'"),
    (["--events", "0"], "events must be at least 1"),
])
def test_bad_options_exit_2_and_say_what_was_wrong(tmp_path, args, message):
    done = bench(*args, "--out", str(tmp_path / "x"), cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr


def test_bench_through_a_link_writes_the_round_trip_and_rate_into_results_json(tmp_path):
    out = tmp_path / "far"
    done = bench("--quick", "--rtt-ms", "40", "--rate-kbps", "2000", "--transports", "tcp_floor,websocket",
                 "--no-plots", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads((out / "results.json").read_text())
    assert data["config"]["rtt_ms"] == 40 and data["config"]["rate_kbps"] == 2000
    assert data["link"]["text"] == "40 ms round trip, 2000 kbit/s"
    # Pushed events cross the link once: at least the one-way delay each.
    assert data["transports"]["websocket"]["p50_ms"] >= 20
    assert "40 ms round trip" in done.stderr


def test_the_docs_promise_no_quicker_bench_quick_than_its_own_estimate():
    """The reference says how long `bench --quick` takes; the schedule alone must fit in it, with room.

    The wall time itself is measured, not asserted (it depends on the machine): 17.6-19.1 s here on
    2 busy cores, of which the estimate below is the schedule's share.
    """
    import re

    from wslab.lab.bench import QUICK_CONFIG
    from wslab.lab.experiment import ExperimentConfig, expected_seconds

    text = (ROOT / "docs" / "reference.md").read_text()
    (line,) = [ln for ln in text.splitlines() if "bench --quick " in ln and "#" in ln]
    stated = float(re.search(r"about (\d+) seconds", line)[1])
    assert stated >= expected_seconds(ExperimentConfig(**QUICK_CONFIG)) * 1.25, line

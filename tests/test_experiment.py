"""The latency lab (wslab/lab/experiment.py): plain-data results, the raw TCP floor, the runner.

The orderings checked here are the ones physics demands (an event waits for
the next short poll; long polling pays a request per event; push pays
neither), measured in one quick run; no absolute timings.
"""

from __future__ import annotations

import asyncio
import csv
import json
import math
from dataclasses import replace

import numpy as np
import pytest

import wslab
from wslab.lab.events import Event
from wslab.lab.experiment import (
    ExperimentConfig,
    Recorder,
    Results,
    TransportResult,
    link_fields,
    load_results,
    measure_tcp_floor,
    measure_transport,
    percentile,
    run_experiment,
    schedule,
)

from .conftest import run, seconds

QUICK = dict(events=40, mean_gap_ms=10.0, seed=3)


@pytest.fixture(scope="module")
def quick_run() -> Results:
    config = ExperimentConfig(
        transports=["tcp_floor", "websocket", "sse", "long_poll", "long_poll_httpx", "short_poll_250ms"], **QUICK
    )
    results = run(run_experiment(config), timeout=90)
    wslab.stop_all()
    return results


def synthetic(n: int = 50) -> Results:
    rng = np.random.default_rng(7)
    results = Results(ExperimentConfig(events=n, transports=["websocket", "short_poll_50ms"]))
    results.transports["websocket"] = TransportResult(
        "websocket", n, list(rng.lognormal(-1, 0.3, n)), list(range(1, n + 1)), bytes_down=60 * n, setup_ms=1.5
    )
    results.transports["short_poll_50ms"] = TransportResult(
        "short_poll_50ms", n, list(rng.uniform(0, 50, n - 1)), list(range(1, n)), requests=n // 2,
        empty_responses=3, bytes_up=100 * n, bytes_down=150 * n, interval_ms=50.0, errors=["one lost"],
    )
    return results


# Statistics and plain data


@pytest.mark.parametrize("q", [0, 1, 10, 50, 90, 99, 100])
def test_percentile_interpolates_like_numpy(q):
    values = list(np.random.default_rng(1).exponential(1.0, 101)) + [0.5, 0.5]
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_of_nothing_is_nan_and_bad_q_is_refused():
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1.0], 150)


def test_config_refuses_unknown_transport_and_names_the_choices():
    with pytest.raises(ValueError, match="unknown transport 'carrier_pigeon'.*websocket"):
        ExperimentConfig(transports=["carrier_pigeon"])
    assert ExperimentConfig(transports=["short_poll_100ms"]).transports == ["short_poll_100ms"]
    with pytest.raises(ValueError, match="events must be at least 1"):
        ExperimentConfig(events=0)


def test_schedule_is_seeded_and_the_same_for_every_caller():
    config = ExperimentConfig(events=20, seed=5)
    assert schedule(config) == schedule(ExperimentConfig(events=20, seed=5))
    assert schedule(config) != schedule(ExperimentConfig(events=20, seed=6))
    gaps, payloads = schedule(ExperimentConfig(events=2000, mean_gap_ms=20, payload_bytes=8))
    assert 17 < 1000 * sum(gaps) / len(gaps) < 23  # Poisson with mean gap 20 ms
    assert all(p["pad"] == "x" * 8 for p in payloads)


def test_transport_result_counts_missing_and_duplicate_events():
    r = TransportResult("websocket", 5, [1.0, 2.0, 3.0, 4.0], [1, 2, 2, 5])
    assert r.missing == [3, 4]
    assert r.duplicates == 1
    assert r.p50_ms == 2.5


def test_results_round_trip_through_json(tmp_path):
    results = synthetic()
    path = results.save(tmp_path)
    assert path.name == "results.json"
    loaded = load_results(tmp_path)
    assert loaded.to_dict() == json.loads(path.read_text())
    assert loaded.config == results.config
    for key, r in results.transports.items():
        again = loaded[key]
        assert again.seqs == r.seqs
        assert again.latencies_ms == pytest.approx(r.latencies_ms, abs=1e-4)
        assert again.bytes_per_event == r.bytes_per_event
        assert again.requests == r.requests and again.errors == r.errors


def test_results_json_has_the_documented_summary_per_transport(tmp_path):
    data = json.loads(synthetic().save(tmp_path / "r.json").read_text())
    assert {"config", "machine", "versions", "transports"} <= set(data)
    assert {"seed", "events", "mean_gap_ms", "payload_bytes"} <= set(data["config"])
    assert data["versions"]["websockets"] != "-"
    ws = data["transports"]["websocket"]
    for field in ("events", "p50_ms", "p90_ms", "p99_ms", "requests_per_event", "bytes_per_event"):
        assert field in ws
    assert set(ws["bytes_per_event"]) == {"up", "down", "total"}
    assert ws["bytes_per_event"]["down"] == 60


def test_results_csv_has_a_row_per_transport_and_per_event(tmp_path):
    summary, latencies = synthetic(30).save_csv(tmp_path)
    rows = list(csv.DictReader(summary.open()))
    assert [r["transport"] for r in rows] == ["websocket", "short_poll_50ms"]
    assert len(list(csv.DictReader(latencies.open()))) == 30 + 29


def test_loading_something_else_says_what_to_load(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="not wslab results"):
        load_results(tmp_path)
    with pytest.raises(FileNotFoundError, match="python -m wslab bench"):
        load_results(tmp_path / "nowhere")


def test_results_table_shows_every_transport():
    text = str(synthetic().table())
    assert "WebSocket" in text and "short poll 50 ms" in text and "49/50" in text


def test_recorder_keeps_what_it_is_given():
    rec = Recorder()
    rec.record(1, 10.0, 10.5)
    rec.record(2, 11.0)
    assert rec.seqs == [1, 2] and rec.latencies_ms()[0] == pytest.approx(500.0)


# The floor


def test_tcp_floor_delivers_every_event_in_order_with_its_bytes():
    config = ExperimentConfig(events=30, mean_gap_ms=5.0, seed=2, payload_bytes=4)
    result = run(measure_tcp_floor(config), timeout=30)
    assert result.seqs == list(range(1, 31)) and result.missing == [] and result.errors == []
    assert all(ms > 0 for ms in result.latencies_ms)
    # Each event is one JSON line: its length is known without the server's help.
    gaps, payloads = schedule(config)
    lengths = [len(json.dumps({"seq": i + 1, "created": 0.0, "data": p}, separators=(",", ":")))
               for i, p in enumerate(payloads)]
    per_event = result.bytes_down / 30
    # the created stamp's digits vary; the rest is exact
    assert sum(lengths) / 30 < per_event < sum(lengths) / 30 + 25
    assert wslab.servers.servers() == []


def test_the_progress_bar_never_counts_past_the_events_it_expects():
    """A long warm-up (200 events, 2 ms apart) is not counted: the bar ends at events x passes, never beyond."""
    calls: list[tuple[str, int]] = []
    config = ExperimentConfig(events=10, mean_gap_ms=5.0, warmup=200, transports=["websocket", "sse"])
    run(run_experiment(config, bytes_pass=True, progress=lambda key, n: calls.append((key, n))), timeout=60)
    for key in config.transports:
        counted = 0
        for k, n in calls:
            if k == key:
                counted += n
                assert counted <= 2 * config.events, f"{key}: counted {counted} of {2 * config.events}"
        assert counted == 2 * config.events, key


# The runner, one quick run


def test_every_event_is_accounted_for_on_every_transport(quick_run):
    for r in quick_run:
        assert r.events == QUICK["events"]
        assert r.missing == [] and r.duplicates == 0, r.key
        assert sorted(r.seqs) == list(range(1, QUICK["events"] + 1)), r.key
        assert r.errors == [], r.key
        assert all(ms > 0 for ms in r.latencies_ms), r.key


def test_latency_ordering_is_what_the_physics_demands(quick_run):
    short, long_, ws = quick_run["short_poll_250ms"], quick_run["long_poll"], quick_run["websocket"]
    # On loopback a long poll's next request is waiting long before the next
    # event (the round trip hides in the gap), so only short polling is slower.
    assert short.p50_ms > long_.p50_ms and short.p50_ms > ws.p50_ms
    # An event waits for the next poll: at the median about half the interval more than push
    # (measured alongside, so the machine's load is in both), within two intervals.
    assert short.p(50) < ws.p(50) + 2 * 250


def test_httpx_is_a_row_of_its_own_and_costs_more_than_the_light_client(quick_run):
    """What a heavier client adds is shown beside the transport, never mixed into it."""
    light, heavy = quick_run["long_poll"], quick_run["long_poll_httpx"]
    assert heavy.label == "long polling, httpx client" and light.label == "long polling"
    assert heavy.p50_ms > light.p50_ms
    assert heavy.missing == [] and 0.5 <= heavy.requests_per_event <= 1.0


def test_bytes_per_event_websocket_below_sse_below_long_polling(quick_run):
    total = {k: quick_run[k].bytes_per_event["total"] for k in ("websocket", "sse", "long_poll")}
    assert 0 < total["websocket"] < total["sse"] < total["long_poll"]
    assert quick_run["long_poll"].bytes_per_event["up"] > quick_run["websocket"].bytes_per_event["up"]


def test_requests_per_event_push_none_long_poll_about_one(quick_run):
    assert quick_run["websocket"].requests == 0 and quick_run["sse"].requests == 0
    assert 0.5 <= quick_run["long_poll"].requests_per_event <= 1.0
    assert quick_run["short_poll_250ms"].requests_per_event < quick_run["long_poll"].requests_per_event
    for r in quick_run:
        if r.key != "tcp_floor":
            assert r.setup_bytes_up > 0 and r.setup_bytes_down > 0, r.key  # a handshake or a first request
        assert r.setup_ms > 0


def test_run_leaves_no_server_running(quick_run):
    names = [s.name for s in wslab.servers.servers()]
    assert not any(n.startswith(("latency-", "tcp-floor")) for n in names)


def test_only_sub_millisecond_latency_passes_need_the_machine_to_themselves():
    from wslab.lab.experiment import expected_seconds, quiet_needed

    loopback = ExperimentConfig(transports=["websocket", "long_poll", "short_poll_250ms"])
    assert quiet_needed("websocket", loopback) and quiet_needed("long_poll", loopback)
    assert not quiet_needed("short_poll_250ms", loopback)
    assert not quiet_needed("websocket", ExperimentConfig(rtt_ms=20))
    assert expected_seconds(loopback, overlap=True) < expected_seconds(loopback, overlap=False)


def test_an_overlapping_run_measures_short_polls_side_by_side_and_loses_nothing():
    running: list[set[str]] = []

    def progress(key, n):
        running.append({s.name for s in wslab.servers.servers() if s.name.startswith("latency-http")})

    results = run(run_experiment(events=20, mean_gap_ms=20, seed=4, transports=["short_poll_50ms", "short_poll_250ms"],
                                 bytes_pass=False, progress=progress), timeout=seconds(60))
    assert max(len(names) for names in running) == 2  # both pollers' servers at once
    for r in results:
        assert r.missing == [] and r.errors == [], r.key
    assert list(results.transports) == ["short_poll_50ms", "short_poll_250ms"]  # the config's order


def test_a_sweep_pays_the_link_and_its_figure_shows_as_an_image():
    from wslab.lab.experiment import sweep_rtt

    sweep = run(sweep_rtt([0, 40], events=6, mean_gap_ms=60, seed=2, transports=["websocket", "long_poll"],
                          progress=False), timeout=seconds(60))
    assert sweep.rtts == [0.0, 40.0]
    near, far = sweep.p50("websocket")
    assert near < 20 <= far  # over the link an event needs at least the one-way delay, 20 ms
    for run_ in sweep.runs.values():
        assert all(r.missing == [] for r in run_), run_.config.rtt_ms
    figure = sweep.plot()
    assert figure._repr_png_().startswith(b"\x89PNG")  # a notebook shows it as an image, not "<Figure ...>"


def test_blocking_the_server_loop_shows_in_the_tail():
    """A time.sleep on the server's loop delays every event that arrives meanwhile.

    The loop sleeps 15 ms, then runs 30 ms: whatever the phase, one of these 40 events lands in
    the first half of a block and waits at least 7.5 ms for its end. Load only adds to that, so
    this floor holds on a busy machine, where a comparison with an unblocked run did not (its
    p90 was 41 ms once, the blocked run's 6 ms).
    """
    config = dict(events=40, mean_gap_ms=10.0, seed=4, transports=["websocket"])
    blocked = run(run_experiment(bytes_pass=False, block_ms=15.0, block_every_ms=30.0, **config), timeout=60)
    blocked = blocked["websocket"]
    assert blocked.missing == []
    assert max(blocked.latencies_ms) >= 15 / 2, blocked.latencies_ms


def test_overrides_build_the_config_and_are_checked():
    with pytest.raises(ValueError, match="unknown transport"):
        run(run_experiment(transports=["nope"]))


def test_event_lines_read_back_as_events():
    """The floor carries exactly the events' JSON: one Event per line."""
    event = Event(1, 2.5, {"value": 1.0})
    assert Event.from_json(event.dumps() + "\n") == event


def test_timed_events_start_after_the_warm_up_and_are_numbered_from_one():
    """The warm-up events reach the client but are not timed; the schedule's events are 1..N."""
    config = ExperimentConfig(events=12, mean_gap_ms=5.0, seed=2, warmup=4, transports=["long_poll"])
    result = run(measure_transport("long_poll", config, bytes_pass=False), timeout=30)
    assert result.seqs == list(range(1, 13)) and result.errors == []
    assert 6 <= result.requests <= 12  # the timed requests only: not the set-up or warm-up ones
    floor = run(measure_tcp_floor(config), timeout=30)
    assert floor.seqs == list(range(1, 13))


def test_config_keeps_the_link_and_reads_files_with_fields_it_does_not_know(tmp_path):
    config = ExperimentConfig(events=5, rtt_ms=100, rate_kbps=1000)
    assert config.linked and config.link_text() == "100 ms round trip, 1000 kbit/s"
    assert not ExperimentConfig().linked and ExperimentConfig().link_text() == "loopback"
    data = json.loads(Results(config).save(tmp_path / "r.json").read_text())
    assert data["link"] == {"rtt_ms": 100, "jitter_ms": 0.0, "rate_kbps": 1000, "up_kbps": None,
                            "down_kbps": None, "text": config.link_text()}
    data["config"]["from_the_future"] = 1
    assert ExperimentConfig.from_dict(data["config"]) == config
    with pytest.raises(ValueError, match="rate_kbps must be positive"):
        ExperimentConfig(rate_kbps=0)
    assert link_fields({"rtt_ms": 20}) == {"rtt_ms": 20.0, "jitter_ms": 0.0, "rate_kbps": None,
                                           "up_kbps": None, "down_kbps": None}
    three_g = ExperimentConfig(**link_fields("3g"))
    assert three_g.rtt_ms == 300 and three_g.link_text() == "300 ms round trip, 1600 kbit/s down, 768 kbit/s up"


def test_quick_mode_compares_short_polls_with_interval_over_2_only_over_enough_polls():
    from wslab.lab.bench import comparisons

    results = synthetic(40)  # 40 events x 20 ms: 0.8 s, so a 50 ms poll ran 16 times
    results.config = ExperimentConfig(events=40, mean_gap_ms=20, transports=["websocket", "short_poll_50ms", "short_poll_1000ms"])
    slow = replace(results["short_poll_50ms"], key="short_poll_1000ms", interval_ms=1000.0)
    results.transports["short_poll_1000ms"] = slow
    lines = comparisons(results)
    assert any(line.startswith("short poll 50 ms: p50") and "interval/2 = 25 ms" in line for line in lines)
    assert not any("interval/2 = 500" in line for line in lines)
    assert any(line.startswith("short poll 1 s: not compared") for line in lines)


def test_over_a_link_the_short_poll_expectation_adds_the_one_way_delay_and_the_round_trip_bound():
    from wslab.lab.bench import comparisons

    results = synthetic(40)
    results.config = ExperimentConfig(events=40, mean_gap_ms=100, rtt_ms=100, transports=["websocket", "short_poll_50ms"])
    (line,) = [ln for ln in comparisons(results) if ln.startswith("short poll 50 ms")]
    # polls at most once per round trip (100 ms): 100/2 = 50 ms of waiting, plus 50 ms on the way down
    assert "first principles 100 ms" in line and "one-way delay 50 ms" in line and "round trip" in line


def test_a_ratio_to_the_floor_below_the_noise_is_printed_as_within_noise_and_quick_prints_no_ratio():
    from wslab.lab.bench import comparisons

    rng = np.random.default_rng(1)
    results = Results(ExperimentConfig(events=300, transports=["tcp_floor", "websocket", "sse"]))
    same = list(rng.lognormal(-1.5, 0.2, 300))
    results.transports["tcp_floor"] = TransportResult("tcp_floor", 300, same, list(range(1, 301)))
    results.transports["websocket"] = TransportResult("websocket", 300, [x * 1.001 for x in same], list(range(1, 301)))
    results.transports["sse"] = TransportResult("sse", 300, [x * 3 for x in same], list(range(1, 301)))
    lines = comparisons(results)
    (ws,) = [ln for ln in lines if ln.startswith("WebSocket")]
    assert "within noise" in ws and "x (" not in ws, ws
    assert any(ln.startswith("SSE p50 / raw TCP p50 = 3.00x") for ln in lines), lines
    quick = comparisons(results, quick=True)
    assert len(quick) == 1 and "smoke test" in quick[0] and "x (" not in quick[0]


# The light HTTP server and client, each against an independent peer


def test_light_http_server_answers_httpx_like_the_lab_server_and_refuses_clearly():
    import httpx

    from wslab.lab.experiment.httpserver import light_http_server

    server = light_http_server("test-light-http")
    server.source.publish_many([{"value": 1}, {"value": 2}])

    async def main():
        async with httpx.AsyncClient(base_url=server.http_url, timeout=seconds(5)) as client:
            polled = (await client.get("/poll", params={"since": 0})).json()
            held = (await client.get("/longpoll", params={"since": 2, "timeout": 0.05})).json()
            bad = await client.get("/poll", params={"since": "-3"})
            missing = await client.get("/nowhere")
            posted = await client.post("/poll")
            lines = []
            async with client.stream("GET", "/events", params={"since": 1}) as stream:
                assert stream.headers["content-type"] == "text/event-stream"
                async for line in stream.aiter_lines():
                    lines.append(line)
                    if line.startswith("data:"):
                        break
            return polled, held, bad, missing, posted, lines

    try:
        polled, held, bad, missing, posted, lines = run(main(), timeout=20)
    finally:
        server.stop()
    assert [e["seq"] for e in polled["events"]] == [1, 2] and polled["cursor"] == 2
    assert polled["events"][1]["data"] == {"value": 2}
    assert held == {"events": [], "cursor": 2}  # held, then answered empty on time
    assert bad.status_code == 400 and "-3" in bad.json()["error"]
    assert missing.status_code == 404 and posted.status_code == 405
    assert lines[:3] == ["retry: 1000", "id: 1", ""] and lines[-2] == "id: 2"
    assert wslab.servers.servers() == [] or "test-light-http" not in [s.name for s in wslab.servers.servers()]


def test_light_http_client_reads_content_length_and_chunked_bodies_from_aiohttp():
    from aiohttp import web

    from wslab.lab.experiment.clients import REQUEST_HEADERS, HttpConnection

    seen = {}

    async def fixed(request):
        seen.update(request.headers)
        return web.Response(body=b'{"events":[],"cursor":0}', content_type="application/json")

    async def chunked(request):
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b"id: 1\n", b"data: {}\n\n"):
            await response.write(part)
        await response.write_eof()
        return response

    async def main():
        app = web.Application()
        app.router.add_get("/fixed", fixed)
        app.router.add_get("/chunked", chunked)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        http = HttpConnection("127.0.0.1", port)
        await http.open()
        try:
            first, _ = await http.get("/fixed")
            second, _ = await http.get("/chunked")  # the same keep-alive connection
            third, _ = await http.get("/fixed")
        finally:
            http.close()
            await runner.cleanup()
        return first, second, third

    first, second, third = run(main(), timeout=20)
    assert first == third == b'{"events":[],"cursor":0}'
    assert second == b"id: 1\ndata: {}\n\n"
    for name, value in REQUEST_HEADERS:
        assert seen[name] == value


# Import time


def test_import_wslab_loads_httpx_tornado_and_matplotlib_only_when_first_used():
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, wslab\n"
        "heavy = ('httpx', 'tornado', 'matplotlib', 'wslab.lab.experiment', 'wslab.lab.labserver')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "wslab.receive, wslab.lab_server_in_thread, wslab.run_experiment\n"
        "print(sorted(m for m in heavy[:2] if m in sys.modules))\n"
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=seconds(60),
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "['httpx', 'tornado']"]


# TCP_NODELAY: what lesson 04 says about Nagle's algorithm, on the installed versions


def _nodelay(sock) -> int:
    import socket

    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def _server_side_socket(client_sock):
    """The accepted socket of ``client_sock``'s connection, found in this process's open files."""
    import os
    import socket

    want = client_sock.getsockname()
    for fd in os.listdir("/proc/self/fd"):
        try:
            sock = socket.socket(fileno=os.dup(int(fd)))
        except OSError:
            continue
        try:
            if sock.type == socket.SOCK_STREAM and sock.getpeername() == want:
                return sock
        except OSError:
            pass
        sock.close()
    raise AssertionError(f"no server-side socket for {want}")


def test_asyncio_sets_tcp_nodelay_on_its_own_tcp_transports():
    """asyncio's selector transport calls base_events._set_nodelay: Nagle is off both ends."""
    async def main():
        accepted = asyncio.get_running_loop().create_future()

        async def handle(reader, writer):
            accepted.set_result(_nodelay(writer.get_extra_info("socket")))
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        client = _nodelay(writer.get_extra_info("socket"))
        serverside = await asyncio.wait_for(accepted, seconds(5))
        writer.close()
        server.close()
        return client, serverside

    client, serverside = run(main(), timeout=10)
    assert client != 0 and serverside != 0


def test_tornado_streams_are_not_asyncio_transports_and_keep_nagle_on_between_responses():
    """tornado 6 turns TCP_NODELAY on only to finish a response, then off again; a flush() does not."""
    import socket

    import tornado.iostream
    import tornado.netutil
    import tornado.web
    from tornado.httpserver import HTTPServer

    seen = {}

    class Stream(tornado.web.RequestHandler):
        async def get(self):
            stream = self.request.connection.stream
            seen["iostream"] = isinstance(stream, tornado.iostream.IOStream)
            seen["asyncio transport"] = isinstance(stream, asyncio.BaseTransport)
            seen["at start"] = _nodelay(stream.socket)
            self.write("part")
            await self.flush()
            seen["after flush"] = _nodelay(stream.socket)
            self.finish()

    async def main():
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        server = HTTPServer(tornado.web.Application([(r"/", Stream)]))
        server.add_sockets(sockets)
        port = sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(2):  # two requests on one keep-alive connection
            writer.write(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            await reader.readuntil(b"0\r\n\r\n")
        theirs = _server_side_socket(writer.get_extra_info("socket"))
        between = theirs.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        theirs.close()
        writer.close()
        server.stop()
        return between

    between = run(main(), timeout=15)
    assert seen == {"iostream": True, "asyncio transport": False, "at start": 0, "after flush": 0}
    assert between == 0


def test_wslab_lab_server_sets_tcp_nodelay_on_its_sse_streams():
    from wslab.lab.labserver import lab_server_in_thread

    lab = lab_server_in_thread("test-nodelay-lab")

    async def main():
        host, port = "127.0.0.1", int(lab.http_url.rsplit(":", 1)[1].strip("/"))
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"GET /events HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        await reader.readuntil(b"\n\n")  # the preamble has been flushed
        theirs = _server_side_socket(writer.get_extra_info("socket"))
        value = _nodelay(theirs)
        theirs.close()
        writer.close()
        return value

    try:
        assert run(main(), timeout=15) != 0
    finally:
        lab.stop()


def test_tcp_nodelay_leaves_delayed_acks_alone():
    """tcp(7): TCP_NODELAY disables Nagle's algorithm; delayed ACKs are TCP_QUICKACK's, a separate option."""
    import socket

    if not hasattr(socket, "TCP_QUICKACK"):
        pytest.skip("TCP_QUICKACK is Linux's")
    with socket.create_server(("127.0.0.1", 0)) as server, \
            socket.create_connection(server.getsockname()) as sock:
        before = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK) == before
    assert socket.TCP_NODELAY != socket.TCP_QUICKACK


def test_a_difference_of_medians_smaller_than_their_noise_is_said_to_be_within_noise():
    from wslab.lab.bench import comparisons, median_noise_ms

    rng = np.random.default_rng(3)
    results = Results(ExperimentConfig(events=200, transports=["long_poll", "long_poll_httpx"]))
    same = list(rng.lognormal(0, 0.5, 200))
    for key, shift in (("long_poll", 0.0), ("long_poll_httpx", -0.01)):
        results.transports[key] = TransportResult(key, 200, [v + shift for v in same], list(range(1, 201)))
    (line,) = [ln for ln in comparisons(results) if "httpx" in ln]
    noise = median_noise_ms(results["long_poll"]) * 2
    assert "within noise" in line and f"±{noise:.2f} ms" in line and "adds" not in line
    results.transports["long_poll_httpx"] = TransportResult(
        "long_poll_httpx", 200, [v + 1.0 for v in same], list(range(1, 201)))
    (line,) = [ln for ln in comparisons(results) if "httpx" in ln]
    assert line.startswith("httpx adds 1.00 ms") and "within noise" not in line

"""``python -m wslab bench``: push against polling, measured headless.

Runs the latency lab (:func:`wslab.experiment.run_experiment`) over every
transport with a progress bar, prints a short table, and writes into
``--out DIR`` (default: a new ``wslab-results-YYYYmmdd-HHMMSS`` folder here):

* ``results.json``: configuration, machine, library versions, and per
  transport p50/p90/p99, requests and bytes per event, set-up cost and every
  latency (reload it with ``wslab.load_results(DIR)``);
* ``summary.csv`` and ``latencies.csv``;
* one PNG per figure of :mod:`wslab.plots`.

``--quick`` runs a small schedule in seconds (a smoke test, not a measurement).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from .experiment import TRANSPORTS, ExperimentConfig, Results, expected_seconds, run_experiment, short_poll_interval

__all__ = ["main", "QUICK_CONFIG"]

#: What ``--quick`` runs: every transport, few and frequent events.
QUICK_CONFIG = {"events": 50, "mean_gap_ms": 10.0}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wslab bench",
        description="measure WebSocket push against SSE, long polling, short polling and raw TCP "
        "on this machine; write results.json, CSV and PNG figures",
    )
    parser.add_argument("--out", metavar="DIR", help="folder for the results (default: a new "
                        "wslab-results-YYYYmmdd-HHMMSS folder in the current one)")
    parser.add_argument("--quick", action="store_true",
                        help=f"a small run in seconds ({QUICK_CONFIG['events']} events, "
                        f"mean gap {QUICK_CONFIG['mean_gap_ms']:g} ms)")
    parser.add_argument("--events", type=int, help="events per transport (default 900)")
    parser.add_argument("--mean-gap-ms", type=float, help="mean gap between Poisson events (default 20)")
    parser.add_argument("--payload-bytes", type=int, help="padding added to each event (default 0)")
    parser.add_argument("--seed", type=int, help="seed of the schedule (default 1)")
    parser.add_argument("--transports", help="comma-separated keys; default all: " + ",".join(TRANSPORTS))
    parser.add_argument("--no-bytes", action="store_true",
                        help="skip the second run through a wiretap that counts bytes (twice as fast)")
    parser.add_argument("--no-plots", action="store_true", help="write results.json and CSV only")
    return parser


def _config(args: argparse.Namespace) -> ExperimentConfig:
    fields: dict = dict(QUICK_CONFIG) if args.quick else {}
    for name in ("events", "mean_gap_ms", "payload_bytes", "seed"):
        value = getattr(args, name)
        if value is not None:
            fields[name] = value
    if args.transports:
        fields["transports"] = [t.strip() for t in args.transports.split(",") if t.strip()]
    return ExperimentConfig(**fields)


def _out_dir(args: argparse.Namespace) -> Path:
    if args.out:
        return Path(args.out)
    return Path.cwd() / time.strftime("wslab-results-%Y%m%d-%H%M%S")


async def _run(config: ExperimentConfig, bytes_pass: bool) -> Results:
    return await run_experiment(config, bytes_pass=bytes_pass, progress=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = _config(args)
    except (ValueError, TypeError) as exc:
        print(f"! {exc}", file=sys.stderr)
        return 2
    out = _out_dir(args)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"! cannot write to {str(out)!r}: {exc.strerror}; pass --out DIR with a folder you can write",
              file=sys.stderr)
        return 2
    bytes_pass = not args.no_bytes
    estimate = expected_seconds(config, bytes_pass=bytes_pass)
    print(f"= {len(config.transports)} transports x {config.events} Poisson events "
          f"(mean gap {config.mean_gap_ms:g} ms, seed {config.seed}), about {estimate:.0f} s; "
          f"results in {out}", file=sys.stderr)
    try:
        results = asyncio.run(_run(config, bytes_pass))
    except KeyboardInterrupt:
        print("! interrupted: nothing written", file=sys.stderr)
        return 130
    finally:
        from .servers import stop_all

        stop_all()
    written = [results.save(out / "results.json"), *results.save_csv(out)]
    if not args.no_plots:
        import matplotlib

        matplotlib.use("Agg")
        from .plots import save_figures

        written += save_figures(results, out)
    print()
    print(results.table())
    problems = [(r.key, r.errors, len(r.missing)) for r in results if r.errors or r.missing]
    for key, errors, missing in problems:
        print(f"! {key}: {missing} event(s) missing; {'; '.join(errors)}", file=sys.stderr)
    floor, ws = results.transports.get("tcp_floor"), results.transports.get("websocket")
    if floor and ws and floor.received and ws.received:
        print(f"\nWebSocket p50 / raw TCP p50 = {ws.p50_ms / floor.p50_ms:.2f}x")
    polls = [r for r in results if short_poll_interval(r.key) and r.received]
    for r in polls:
        print(f"{r.label}: p50 {r.p50_ms:.0f} ms (interval/2 = {short_poll_interval(r.key) * 500:.0f} ms)")
    print(f"\nwrote {len(written)} files to {out} in {results.seconds:.0f} s:")
    for path in written:
        print(f"  {path.name}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

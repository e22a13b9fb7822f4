"""``python -m wslab bench``: push against polling, measured headless.

Runs the latency lab (:func:`wslab.lab.experiment.run_experiment`) over every
transport with a progress bar, prints a short table, and writes into
``--out DIR`` (default: a new ``wslab-results-YYYYmmdd-HHMMSS`` folder here):

* ``results.json``: configuration, machine, library versions, and per
  transport p50/p90/p99, requests and bytes per event, set-up cost and every
  latency (reload it with ``wslab.load_results(DIR)``);
* ``summary.csv`` and ``latencies.csv``;
* one PNG per figure of :mod:`wslab.lab.plots`.

``--quick`` runs a small schedule in seconds (a smoke test, not a measurement).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from pathlib import Path

from ..course.i18n import ArgumentParser
from ..course.i18n import gettext as _
from .experiment import (
    TRANSPORTS,
    ExperimentConfig,
    Results,
    TransportResult,
    expected_ms,
    expected_seconds,
    percentile,
    run_experiment,
    schedule,
    short_poll_interval,
)

__all__ = ["main", "QUICK_CONFIG", "comparisons", "median_noise_ms", "MIN_POLLS"]

#: What ``--quick`` runs: every transport, few and frequent events.
QUICK_CONFIG = {"events": 50, "mean_gap_ms": 10.0}


#: A short poll's p50 is compared with interval/2 only when the schedule spans this many polls.
MIN_POLLS = 10


def median_noise_ms(result: TransportResult) -> float:
    """How far a median may move by chance: the half-width of a box plot's notch, ms.

    ``1.57 * IQR / sqrt(n)`` (McGill, Tukey and Larsen, "Variations of Box
    Plots", 1978): two medians whose notches overlap, that is whose difference
    is below the sum of the two half-widths, are not told apart by the run.
    """
    values = result.latencies_ms
    if len(values) < 2:
        return math.inf
    iqr = percentile(values, 75) - percentile(values, 25)
    return 1.57 * iqr / math.sqrt(len(values))


def _versus(mine: TransportResult, theirs: TransportResult) -> tuple[float, float, str]:
    """(difference of the p50s, its noise, "(p50 against p50 ms)")."""
    noise = median_noise_ms(mine) + median_noise_ms(theirs)
    return mine.p50_ms - theirs.p50_ms, noise, f"({mine.p50_ms:.3f} against {theirs.p50_ms:.3f} ms"


def _unless_noise(diff: float, noise: float, within: str, above: str, digits: int = 2) -> str:
    """``above`` when ``diff`` is larger than its ``noise``; else ``within`` said to be within noise."""
    if abs(diff) < noise:
        return (f"{within} within noise: {diff:+.{digits}f} ms, "
                f"smaller than the medians' spread of ±{noise:.{digits}f} ms")
    return above


def comparisons(results: Results, *, quick: bool = False) -> list[str]:
    """The ratios and expectations this run's schedule can support, one line each.

    A difference of two medians smaller than their noise
    (:func:`median_noise_ms`) is said to be within noise, never as a ratio or
    as "adds -0.05 ms". A short poll's
    median is set beside what first principles predict (half an interval,
    plus the one-way delay over a link, and never faster than one poll per
    round trip: the client waits for each answer) only when the schedule
    lasted at least :data:`MIN_POLLS` intervals: over one or two polls the
    phase of the first poll decides it. ``quick``: a smoke test; no ratios.
    """
    if quick:
        return [f"a quick run ({results.config.events} events) is a smoke test: it prints no ratios, "
                f"its schedule is too short to support them; run without --quick to measure"]
    lines = []
    floor = results.transports.get("tcp_floor")
    if floor and floor.received:
        for key in ("websocket", "sse", "long_poll"):
            r = results.transports.get(key)
            if r and r.received:
                diff, noise, both = _versus(r, floor)
                lines.append(_unless_noise(diff, noise, f"{r.label} and raw TCP: p50 {both})",
                                           f"{r.label} p50 / raw TCP p50 = {r.p50_ms / floor.p50_ms:.2f}x {both}, "
                                           f"± {noise:.3f} ms)", digits=3))
    for key, heavy_key, who in (("long_poll", "long_poll_httpx", "httpx"),
                                ("long_poll", "long_poll_tornado", "tornado"),
                                ("sse", "sse_tornado", "tornado")):
        light, heavy = results.transports.get(key), results.transports.get(heavy_key)
        if not (light and heavy and light.received and heavy.received):
            continue
        diff, noise, both = _versus(heavy, light)
        both += " with the light client and server)"
        lines.append(_unless_noise(diff, noise, f"{who} and the light one: {light.label} p50 {both}",
                                   f"{who} adds {diff:.2f} ms (± {noise:.2f}) to the {light.label} p50 {both}: "
                                   f"its own, not the transport's (as delay: not all of it is {who}'s CPU)"))
    span = sum(schedule(results.config)[0])
    rtt = results.config.rtt_ms
    for r in results:
        interval = short_poll_interval(r.key)
        if not interval or not r.received:
            continue
        if span < MIN_POLLS * max(interval, rtt / 1000):
            lines.append(f"{r.label}: not compared with first principles: the schedule lasted {span:.1f} s, "
                         f"{span / interval:.1f} polls (at least {MIN_POLLS} needed)")
            continue
        expected, _formula = expected_ms(r.key, rtt, results.config.mean_gap_ms)
        if rtt:
            why = (f"max(interval, round trip)/2 = {max(interval * 1000, rtt) / 2:.0f} ms, plus the one-way delay "
                   f"{rtt / 2:.0f} ms: the client waits for each answer, so it polls at most once per round trip")
        else:
            why = f"interval/2 = {interval * 500:.0f} ms"
        lines.append(f"{r.label}: p50 {r.p50_ms:.0f} ms; first principles {expected:.0f} ms ({why})")
    return lines


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m wslab bench",
        description=_("measure WebSocket push against SSE, long polling, short polling and raw TCP "
                      "on this machine; write results.json, CSV and PNG figures"),
    )
    parser.add_argument("--out", metavar="DIR", help=_("folder for the results (default: a new "
                                                       "wslab-results-YYYYmmdd-HHMMSS folder in the current one)"))
    parser.add_argument("--quick", action="store_true",
                        help=_("a small run in seconds ({events} events, mean gap {gap} ms)").format(
                            events=QUICK_CONFIG["events"], gap=f"{QUICK_CONFIG['mean_gap_ms']:g}"))
    parser.add_argument("--events", type=int, help=_("events per transport (default 900)"))
    parser.add_argument("--mean-gap-ms", type=float, help=_("mean gap between Poisson events (default 20)"))
    parser.add_argument("--payload-bytes", type=int, help=_("padding added to each event (default 0)"))
    parser.add_argument("--seed", type=int, help=_("seed of the schedule (default 1)"))
    parser.add_argument("--transports", help=_("comma-separated keys; default all: {keys}").format(
        keys=",".join(TRANSPORTS)))
    parser.add_argument("--rtt-ms", type=float, help=_("put every transport through an emulated link "
                                                       "with this round trip, ms (default 0: loopback)"))
    parser.add_argument("--jitter-ms", type=float, help=_("the link's jitter, ms (with --rtt-ms)"))
    parser.add_argument("--rate-kbps", type=float, help=_("cap the link at this many kbit/s per direction"))
    parser.add_argument("--link", metavar="PRESET", help=_("a link preset of wslab.link.PRESETS (for example "
                                                           "cross-ocean, 3g); --rtt-ms and --rate-kbps override "
                                                           "its fields"))
    parser.add_argument("--no-bytes", action="store_true",
                        help=_("skip the second run through a wiretap that counts bytes (twice as fast)"))
    parser.add_argument("--no-plots", action="store_true", help=_("write results.json and CSV only"))
    return parser


def _config(args: argparse.Namespace) -> ExperimentConfig:
    fields: dict = dict(QUICK_CONFIG) if args.quick else {}
    for name in ("events", "mean_gap_ms", "payload_bytes", "seed"):
        value = getattr(args, name)
        if value is not None:
            fields[name] = value
    if args.link:
        from .experiment import link_fields

        fields.update(link_fields(args.link))
    for name in ("rtt_ms", "jitter_ms", "rate_kbps"):
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
    except (ValueError, TypeError, ImportError) as exc:
        print(f"! {exc}", file=sys.stderr)
        return 2
    out = _out_dir(args)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(_("! cannot write to {folder}: {reason}; pass --out DIR with a folder you can write").format(
            folder=repr(str(out)), reason=exc.strerror), file=sys.stderr)
        return 2
    bytes_pass = not args.no_bytes
    estimate = expected_seconds(config, bytes_pass=bytes_pass)
    print(_("= {transports} transports x {events} Poisson events (mean gap {gap} ms, seed {seed}, {link}), "
            "about {seconds} s; results in {out}").format(
        transports=len(config.transports), events=config.events, gap=f"{config.mean_gap_ms:g}", seed=config.seed,
        link=config.link_text(), seconds=f"{estimate:.0f}", out=out), file=sys.stderr)
    try:
        results = asyncio.run(_run(config, bytes_pass))
    except KeyboardInterrupt:
        print(_("! interrupted: nothing written"), file=sys.stderr)
        return 130
    finally:
        from ..server.background import stop_all

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
        print(_("! {transport}: {missing} event(s) missing; {errors}").format(
            transport=key, missing=missing, errors="; ".join(errors)), file=sys.stderr)
    print()
    for line in comparisons(results, quick=args.quick):
        print(line)
    print("\n" + _("wrote {count} files to {out} in {seconds} s:").format(
        count=len(written), out=out, seconds=f"{results.seconds:.0f}"))
    for path in written:
        print(f"  {path.name}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

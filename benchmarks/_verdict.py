"""PASS or MISS against a stated target, with min / median / max over repeats: one line for every benchmark.

    from _verdict import spread, verdict
    verdict("decode 1 MiB, wslab / websockets", ratios, at_most=2.0)
    # PASS decode 1 MiB, wslab / websockets: 0.45 / 0.48 / 0.55 (min / median / max of 5; target: median <= 2)

The median is what is judged (one slow repeat on a shared machine does not
decide); min and max show the spread. A benchmark's script imports this with
its own folder on ``sys.path`` (``python benchmarks/bench_x.py`` puts it there).
"""

from __future__ import annotations

import os
import statistics
from typing import Sequence

__all__ = ["spread", "verdict", "difference", "machine_load"]


def spread(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    """``"min / median / max"`` of ``values``, each formatted with ``fmt``."""
    if not values:
        return "no values"
    return " / ".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def verdict(label: str, values: Sequence[float], *, at_most: float | None = None, at_least: float | None = None,
            fmt: str = "{:.2f}", unit: str = "", why: str = "") -> bool:
    """Print ``PASS``/``MISS label: min / median / max (target)`` and return whether the median meets it."""
    if at_most is None and at_least is None:
        raise ValueError("a verdict needs a target: at_most=, at_least= or both")
    values = list(values)
    median = statistics.median(values) if values else float("nan")
    ok = bool(values) and (at_most is None or median <= at_most) and (at_least is None or median >= at_least)
    bounds = []
    if at_least is not None:
        bounds.append(f">= {fmt.format(at_least)}{unit}")
    if at_most is not None:
        bounds.append(f"<= {fmt.format(at_most)}{unit}")
    line = (f"{'PASS' if ok else 'MISS'} {label}: {spread(values, fmt)}{unit} "
            f"(min / median / max of {len(values)}; target: median {' and '.join(bounds)})")
    print(line + (f"; {why}" if why else ""), flush=True)
    return ok


def difference(label: str, diffs: Sequence[float], baseline: Sequence[float], *, fmt: str = "{:+.3f}",
               unit: str = " ms") -> str:
    """A paired difference, printed as a figure only when it is larger than the noise.

    ``diffs``: per round, (thing) - (baseline) measured side by side;
    ``baseline``: the baseline's own value in each round. The noise is how
    far the baseline alone moved between rounds (max - min): a median
    difference smaller than that is printed as "within noise", with the
    spread, never as a figure that reads like a measurement.
    """
    diffs = list(diffs)
    median = statistics.median(diffs)
    rounds = spread(diffs, fmt) + unit
    if len(baseline) < 2:
        line = f"{label}: not judged ({fmt.format(median)}{unit} in one round: its noise is unknown; run more rounds)"
        print(line, flush=True)
        return line
    noise = max(baseline) - min(baseline)
    if abs(median) < noise:
        line = (f"{label}: within noise (median {fmt.format(median)}{unit}, per round {rounds}; "
                f"the baseline alone moved {noise:.3f}{unit} between rounds)")
    else:
        line = f"{label}: {fmt.format(median)}{unit} (per round {rounds}; the baseline moved {noise:.3f}{unit})"
    print(line, flush=True)
    return line


def machine_load() -> str:
    """``"2 CPUs, load 3.10 / 2.80 / 2.50"``: how busy the machine was (say it beside wall-clock figures)."""
    one, five, fifteen = os.getloadavg()
    return f"{os.cpu_count()} CPUs, load {one:.2f} / {five:.2f} / {fifteen:.2f}"

"""The command line the push-latency benchmarks share: the seeded Poisson schedule and the rounds.

    from _options import schedule_parser
    parser = schedule_parser(__doc__, events=900, rounds=5)
    parser.add_argument("--compare", action="store_true")

``bench_latency.py``, ``bench_reference.py`` and ``bench_swap.py`` time pushes on
the same kind of schedule (``--events`` Poisson events, ``--mean-gap-ms`` apart
on average, from ``--seed``, after ``--warmup`` untimed ones) over ``--rounds``
alternating rounds; one parser keeps those options and their defaults alike.
"""

from __future__ import annotations

import argparse

__all__ = ["schedule_parser"]


def schedule_parser(doc: str, *, events: int, rounds: int, seeded: bool = True) -> argparse.ArgumentParser:
    """A parser described by ``doc``'s first line with --events, --mean-gap-ms (20), --rounds and,
    when ``seeded``, --seed (1) and --warmup (5); the caller adds its own options."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--events", type=int, default=events)
    parser.add_argument("--mean-gap-ms", type=float, default=20.0)
    if seeded:
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=rounds)
    return parser

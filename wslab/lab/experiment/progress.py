"""A progress line for a long measurement: how far it is, and how long it should take.

In Jupyter it is one output updated in place (``display_id``), so a saved
notebook keeps the last state ("measured 4,190 events in 42 s (expected
about 42 s)"), never a widget frozen at "0%"; in a terminal it is a line on
stderr, rewritten with ``\\r``. The latency lab (:func:`wslab.run_experiment`,
:func:`wslab.lab.experiment.sweep_rtt`) and :func:`wslab.measure_scaling` use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any, Callable, Iterator

from .timing import CLOCK

__all__ = ["progress_line", "count_progress"]


@contextlib.contextmanager
def progress_line(total: int, expected: float, unit: str = "events") -> Iterator[Callable[[str, int], None]]:
    """A progress line over ``total`` events (or other ``unit``), with the time it should take.

    Yields ``progress(key, n)``: ``n`` more done, ``key`` what is being measured (``n == 0``: starting it).

    In Jupyter it is one output that is updated in place (so a saved
    notebook keeps the last state, never a stuck "0%"), in a terminal a line
    rewritten with ``\\r`` on stderr.
    """
    started = CLOCK()
    state = {"done": 0, "key": "", "shown": 0.0}
    show = _progress_output()

    def line(final: bool = False) -> str:
        elapsed = CLOCK() - started
        if final:
            return f"measured {state['done']:,} {unit} in {elapsed:.0f} s (expected about {expected:.0f} s)"
        left = max(0.0, expected - elapsed)
        return (f"measuring {state['key']}: {state['done']:,} of {total:,} {unit}, {elapsed:.0f} s so far, "
                f"about {left:.0f} s left of {expected:.0f} s")

    def progress(key: str, n: int) -> None:
        state["done"] += n
        if not n:
            state["key"] = key
        now = CLOCK()
        if now - state["shown"] >= 0.5 or not n:
            state["shown"] = now
            show(line())

    show(line())
    try:
        yield progress
    finally:
        show(line(final=True), final=True)


def _progress_output() -> Callable[..., None]:
    """``show(text, final=False)``: one Jupyter output updated in place, or a ``\\r`` line on stderr."""
    try:
        from IPython import get_ipython
        from IPython.display import display, update_display

        shell = get_ipython()
    except ImportError:
        shell = None
    if shell is not None and getattr(shell, "kernel", None) is not None:
        handle: dict[str, Any] = {}

        def show_in_jupyter(text: str, final: bool = False) -> None:
            if "id" not in handle:
                handle["id"] = display({"text/plain": text}, raw=True, display_id=True).display_id
            else:
                update_display({"text/plain": text}, raw=True, display_id=handle["id"])

        return show_in_jupyter

    def show_in_terminal(text: str, final: bool = False) -> None:
        sys.stderr.write("\r" + text.ljust(100)[:160] + ("\n" if final else ""))
        sys.stderr.flush()

    return show_in_terminal


async def count_progress(read: Callable[[], int], report: Callable[[int], Any] | None, every: float = 0.25) -> None:
    """Report how many more events ``read()`` says are done, every ``every`` seconds (for a progress bar)."""
    if report is None:
        return
    done = 0
    try:
        while True:
            await asyncio.sleep(every)
            now = read()
            if now > done:
                report(now - done)
                done = now
    except asyncio.CancelledError:
        pass

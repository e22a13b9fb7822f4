"""A matplotlib Figure that shows itself as a PNG image, without pyplot.

Every figure of the latency lab (:mod:`wslab.lab.plots`, :meth:`wslab.lab.experiment.Sweep.plot`,
:func:`wslab.lab.scaling.plot_scaling`) is a :class:`LabFigure`: the value of a
notebook cell shows as an image (IPython calls ``_repr_png_``), and a saved
notebook keeps that image, whatever backend pyplot would have picked, or
whether pyplot was ever imported. Nothing leaks between cells (pyplot keeps
every figure it made), and it works headless (the Agg canvas).

This module imports matplotlib: import it where a figure is drawn, not at
the top of a module that ``import wslab`` loads.
"""

from __future__ import annotations

import io
from typing import Any, Iterable

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["LabFigure", "new_figure", "finish_axes"]


class LabFigure(Figure):
    """A matplotlib Figure that shows itself as PNG when it is a cell's value (no pyplot needed)."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()


def new_figure(width: float = 8.0, height: float = 4.5, **subplots: Any) -> tuple[LabFigure, Any]:
    """A :class:`LabFigure` on an Agg canvas and its axes (``subplots(**subplots)``; one Axes by default)."""
    fig = LabFigure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes: Axes | Any = fig.subplots(**subplots) if subplots else fig.add_subplot()
    return fig, axes


def finish_axes(axes: Iterable[Axes], *, xlabel: str, **legend: Any) -> None:
    """Give each of ``axes`` the x label, a light grid and a legend (``legend``: its options, e.g. ``loc``)."""
    for ax in axes:
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.legend(**legend)

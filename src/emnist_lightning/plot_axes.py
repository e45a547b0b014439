"""Axes that count whole things (epochs, trials) and say so: shared by every figure here."""

from __future__ import annotations

from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator


def integer_x_axis(axes: Axes, values: list[int]) -> None:
    """Whole-number ticks on the x axis; a single value gets its one tick and some room
    (not matplotlib's fractional sliver around it, nor a tick at epoch 1.5)."""
    if values and min(values) == max(values):
        axes.set_xticks([values[0]])
        axes.set_xlim(values[0] - 0.5, values[0] + 0.5)
    else:
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))

"""Plots of schedules (and, from other modules, of learning-rate studies), with matplotlib.

matplotlib is an optional dependency (the ``plot`` extra: ``pip install ".[plot]"`` from a
clone). Figures are built with ``matplotlib.figure.Figure`` rather than pyplot, so plotting
works without a display and leaves pyplot's global state alone; show one in a notebook by
returning it, save it with ``path=``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

import numpy as np

from .extras import install_hint
from .schedules import Schedule

__all__ = ["figure", "figure_and_axes", "finish", "schedules"]

Path = Union[str, "os.PathLike[str]"]


def figure(width: float = 7.0, height: float = 4.0) -> Any:
    """A new ``matplotlib.figure.Figure``; a clear ImportError names the extra when missing."""
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(
            f"plotting needs matplotlib, which is optional: {install_hint('plot')}"
        ) from err
    return Figure(figsize=(width, height), layout="constrained")


def figure_and_axes(ax: Any = None) -> tuple[Any, Any]:
    """``(figure, axes)``: a new figure with one axes, or the given axes and its figure."""
    if ax is None:
        fig = figure()
        return fig, fig.subplots()
    return ax.figure, ax


def finish(
    ax: Any,
    title: str,
    xlabel: str,
    ylabel: str,
    *,
    log_x: bool = False,
    log_y: bool = False,
    legend: bool = True,
) -> None:
    """The look every lrfast plot shares: a title, labelled axes (logarithmic where the values
    span decades, said in the label), a light grid, and the legend outside the axes on the
    right, where it covers no curve."""
    ax.set_title(title)
    if log_x:
        ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel + (" (log scale)" if log_x else ""))
    ax.set_ylabel(ylabel + (" (log scale)" if log_y else ""))
    ax.grid(True, alpha=0.3, which="both" if (log_x or log_y) else "major")
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


# Line styles cycled with the colours, so that curves that coincide (Adam and AdamW on a
# problem without weight decay) stay distinguishable.
LINESTYLES = ("-", "--", "-.", ":")


def schedules(
    named: Union[Schedule, Sequence[Schedule], Mapping[str, Schedule]],
    steps: Union[int, Sequence[int], np.ndarray] = 1000,
    *,
    path: Optional[Path] = None,
    log: bool = False,
    title: Optional[str] = None,
    ax: Any = None,
) -> Any:
    """Draws one or several schedules over a range of steps; returns the figure.

    ``named`` is a schedule, a list of them (labelled by ``repr``) or a mapping of label to
    schedule. ``steps`` is a count (steps ``0 .. steps - 1``) or an array of steps; each schedule
    is evaluated over it in one Rust call, so a million steps draw as fast as a thousand.
    ``log`` uses a logarithmic rate axis. ``path`` saves a PNG (or any format matplotlib knows
    from the suffix). ``ax`` draws into an existing axes instead of a new figure. ``title``
    defaults to "learning-rate schedules".
    """
    if isinstance(named, Schedule):
        items = {repr(named): named}
    elif isinstance(named, Mapping):
        items = dict(named)
    else:
        items = {repr(s): s for s in named}
    if not items:
        raise ValueError("no schedules to plot")
    for label, schedule in items.items():
        if not isinstance(schedule, Schedule):
            raise TypeError(f"{label!r} is not an lrfast schedule: {schedule!r}")
    x = np.arange(steps) if isinstance(steps, (int, np.integer)) else np.asarray(steps)
    fig, ax = figure_and_axes(ax)
    for i, (label, schedule) in enumerate(items.items()):
        style = LINESTYLES[i % len(LINESTYLES)]
        ax.plot(x, schedule.evaluate(x), label=label, linewidth=1.5, linestyle=style)
    finish(ax, title or "learning-rate schedules", "step", "learning rate", log_y=log)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig

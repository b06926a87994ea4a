"""Figures of the book: samples, trajectories, velocity fields and marginal paths.

Each function draws on a matplotlib ``Axes`` (or creates a figure) and returns what it drew
on, so that chapters can compose panels. Inputs are batch-first tensors on any device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from ._validation import (
    check_box,
    check_callable,
    check_model_output,
    check_points,
    check_positive_float,
    check_positive_int,
    check_tensor,
    check_unit_interval,
)

Box = tuple[float, float, float, float]
#: The default drawing box (x_min, x_max, y_min, y_max) for the planar data sets.
DEFAULT_BOX: Box = (-3.5, 3.5, -3.5, 3.5)
SOURCE_COLOR = "#4c72b0"
DATA_COLOR = "#dd8452"
MODEL_COLOR = "#55a868"


def _np(x: Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float64).numpy()


def _axes(ax: Axes | None) -> Axes:
    """The given axes, or those of a new 4 x 4 inch figure."""
    if ax is None:
        return plt.subplots(figsize=(4, 4))[1]
    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")
    return ax


def _finish(ax: Axes, box: Box | None, title: str | None) -> None:
    if box is not None:
        ax.set_xlim(box[0], box[1])
        ax.set_ylim(box[2], box[3])
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)


def plot_samples(
    x: Tensor,
    ax: Axes | None = None,
    color: str = DATA_COLOR,
    title: str | None = None,
    box: Box | None = DEFAULT_BOX,
    size: float = 2.0,
    alpha: float = 0.5,
    label: str | None = None,
) -> Axes:
    """Scatter plot of 2-D points ``x`` ``(B, 2)``."""
    x = check_points(x, "x", dim=2)
    check_positive_float(size, "size")
    check_unit_interval(alpha, "alpha")
    box = None if box is None else check_box(box)
    ax = _axes(ax)
    p = _np(x)
    ax.scatter(p[:, 0], p[:, 1], s=size, alpha=alpha, color=color, label=label, linewidths=0)
    _finish(ax, box, title)
    return ax


def plot_trajectories(
    trajectory: Tensor,
    ax: Axes | None = None,
    n: int = 200,
    title: str | None = None,
    box: Box | None = DEFAULT_BOX,
) -> Axes:
    """Paths of ``n`` points from a trajectory ``(B, T + 1, 2)``: start in blue, end in orange."""
    trajectory = check_tensor(trajectory, "trajectory")
    if trajectory.ndim != 3 or trajectory.shape[2] != 2 or trajectory.shape[0] == 0 or trajectory.shape[1] == 0:
        raise ValueError(
            f"trajectory must have shape (batch, times, 2) with batch, times >= 1, got {tuple(trajectory.shape)}"
        )
    check_positive_int(n, "n")
    box = None if box is None else check_box(box)
    ax = _axes(ax)
    p = _np(trajectory[:n])
    for path in p:
        ax.plot(path[:, 0], path[:, 1], color="0.4", alpha=0.35, linewidth=0.7)
    ax.scatter(p[:, 0, 0], p[:, 0, 1], s=4, color=SOURCE_COLOR, zorder=3, label="start (t = 0)")
    ax.scatter(p[:, -1, 0], p[:, -1, 1], s=4, color=DATA_COLOR, zorder=3, label="end (t = 1)")
    _finish(ax, box, title)
    return ax


def plot_velocity_field(
    velocity: Callable[[Tensor, Tensor], Tensor],
    t: float | Tensor,
    ax: Axes | None = None,
    box: Box = DEFAULT_BOX,
    grid: int = 21,
    title: str | None = None,
    color: str = "0.2",
) -> Axes:
    """Quiver plot of ``velocity(x, t)`` at one time ``t`` on a ``grid x grid`` lattice."""
    check_callable(velocity, "velocity", "velocity(x, t)")
    if isinstance(t, Tensor) and t.ndim == 0:
        t = t.item()
    t = check_unit_interval(t, "t")
    check_positive_int(grid, "grid", minimum=2)
    box = check_box(box)
    ax = _axes(ax)
    xs, ys = np.linspace(box[0], box[1], grid), np.linspace(box[2], box[3], grid)
    gx, gy = np.meshgrid(xs, ys)
    pts = torch.tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=torch.float32)
    with torch.no_grad():
        out = check_model_output(velocity(pts, torch.full((pts.shape[0],), t)), pts.shape, "velocity(x, t)")
        v = _np(out)
    ax.quiver(gx, gy, v[:, 0].reshape(gx.shape), v[:, 1].reshape(gx.shape), color=color, angles="xy")
    _finish(ax, box, title)
    return ax


def plot_path_histograms(
    rows: Sequence[tuple[str, Sequence[Tensor]]],
    times: Sequence[float],
    box: Box = DEFAULT_BOX,
    bins: int = 80,
    cell: float = 2.2,
) -> Figure:
    """A grid of 2-D histograms: one row per ``(label, samples at each time)``, one column per time.

    For example ``rows=[("true path", true_samples), ("model", model_samples)]`` with each
    list holding tensors ``(B, 2)`` at the ``times``.
    """
    if not isinstance(times, Sequence) or len(times) == 0:
        raise ValueError(f"times must be a non-empty sequence of times in [0, 1], got {times!r}")
    for t in times:
        check_unit_interval(t, "times")
    if (
        not isinstance(rows, Sequence)
        or not rows
        or any(not isinstance(row, (tuple, list)) or len(row) != 2 or len(row[1]) != len(times) for row in rows)
    ):
        raise ValueError("rows must be a non-empty list of (label, one sample set per time)")
    box = check_box(box)
    check_positive_int(bins, "bins")
    check_positive_float(cell, "cell")
    fig, axes = plt.subplots(len(rows), len(times), figsize=(cell * len(times), cell * len(rows)), squeeze=False)
    for r, (label, samples) in enumerate(rows):
        for c, (t, x) in enumerate(zip(times, samples)):
            p = _np(check_points(x, "samples", dim=2))
            ax = axes[r, c]
            ax.hist2d(p[:, 0], p[:, 1], bins=bins, range=[box[:2], box[2:]], cmap="magma")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_aspect("equal")
            if r == 0:
                ax.set_title(f"t = {t:g}")
            if c == 0:
                ax.set_ylabel(label)
    fig.tight_layout()
    return fig

"""The book's figure style, and the figures of the plane: samples, trajectories, velocity
fields, transport plans and training curves.

Each function draws on a matplotlib ``Axes`` (or creates a figure) and returns what it drew
on, so that chapters can compose panels. Inputs are batch-first tensors on any device.
Pictures made of pixels (densities on a grid, histograms of a path, digit images) are in
:mod:`fmbook.grids`; animations and sliders, which play in the browser, in
:mod:`fmbook.interactive`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from cycler import cycler
from matplotlib.axes import Axes
from torch import Tensor

from ._checks import (
    check_box,
    check_callable,
    check_model_output,
    check_points,
    check_positive_float,
    check_positive_int,
    check_tensor,
    check_text,
    check_trajectory,
    check_unit_interval,
)

Box = tuple[float, float, float, float]
#: The default drawing box (x_min, x_max, y_min, y_max) for the planar data sets.
DEFAULT_BOX: Box = (-3.5, 3.5, -3.5, 3.5)

# --------------------------------------------------------------------------- the book's figure style

#: The colours of the book, by role: every figure draws the source (noise, t = 0) in ``source``,
#: data samples (t = 1) in ``data``, a trained model's samples in ``model``, paths between them
#: in ``trajectory``, and an exact or reference curve in ``reference``.
PALETTE: dict[str, str] = {
    "source": "#4c72b0",  # blue
    "data": "#dd8452",  # orange
    "model": "#55a868",  # green
    "trajectory": "#7f7f7f",  # grey
    "reference": "#222222",  # near black
}
SOURCE_COLOR = PALETTE["source"]
DATA_COLOR = PALETTE["data"]
MODEL_COLOR = PALETTE["model"]
TRAJECTORY_COLOR = PALETTE["trajectory"]
REFERENCE_COLOR = PALETTE["reference"]
#: Colours for several curves of one plot (schedulers, solvers, seeds), in this order: it is
#: matplotlib's colour cycle under :func:`use_book_style`, so ``ax.plot`` picks them in turn.
#: It starts with the source, data and model colours and tells its first colours apart for
#: the common colour-vision deficiencies (seaborn's "deep" palette).
SEQUENCE: tuple[str, ...] = (
    "#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd",
)
#: The width in inches of a figure that spans the book's content column (at the figure dpi
#: of :data:`BOOK_STYLE`, 100, that is 700 pixels, which the column shows unscaled at 1280 px).
FULL_WIDTH = 7.0
#: The matplotlib settings of every figure of the book (:func:`use_book_style` applies them).
BOOK_STYLE: dict[str, object] = {
    "figure.figsize": (6.0, 3.6),
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "font.family": "DejaVu Sans",
    "font.size": 10.0,
    "axes.titlesize": 11.0,
    "axes.labelsize": 10.0,
    "xtick.labelsize": 9.0,
    "ytick.labelsize": 9.0,
    "legend.fontsize": 9.0,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#b0b0b0",
    "grid.linewidth": 0.5,
    "grid.alpha": 0.5,
    "axes.axisbelow": True,
    "lines.linewidth": 1.6,
    "image.cmap": "viridis",
    "image.interpolation": "nearest",
}


def use_book_style() -> None:
    """Set matplotlib's ``rcParams`` to the book's figure style (:data:`BOOK_STYLE`).

    Sizes that fit the content column (6 x 3.6 inches by default, at most :data:`FULL_WIDTH`),
    10-point fonts, a light grid under the data, no top and right spines, and the colour
    cycle :data:`SEQUENCE`. Importing ``fmbook.viz`` applies it; call it again after anything
    that resets matplotlib's settings (``plt.rcdefaults()``, a style sheet).
    """
    plt.rcParams.update(BOOK_STYLE)
    plt.rcParams["axes.prop_cycle"] = cycler(color=list(SEQUENCE))


use_book_style()


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
    ax.grid(False)  # a point cloud in a box: framed on four sides, no grid behind it
    for side in ax.spines.values():
        side.set_visible(True)
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
    """Paths of ``n`` points from a trajectory ``(B, T + 1, 2)``: the paths in the trajectory colour,
    their starts in the source colour and their ends in the data colour (:data:`PALETTE`)."""
    trajectory = check_trajectory(trajectory, "trajectory")
    check_positive_int(n, "n")
    box = None if box is None else check_box(box)
    ax = _axes(ax)
    p = _np(trajectory[:n])
    for path in p:
        ax.plot(path[:, 0], path[:, 1], color=TRAJECTORY_COLOR, alpha=0.35, linewidth=0.7)
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
    color: str = REFERENCE_COLOR,
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




def plot_model_samples(
    samples: Tensor,
    reference: Tensor | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    size: float = 2.0,
    reference_size: float = 1.0,
    box: Box | None = DEFAULT_BOX,
) -> Axes:
    """A model's samples ``(B, 2)`` in the model colour over ``reference`` samples ``(N, 2)``
    (e.g. of the data, or of an accurate solve) in the trajectory grey, so that where the
    model misses the reference shows."""
    check_points(samples, "samples", dim=2)
    if reference is not None:
        check_points(reference, "reference", dim=2)
    ax = _axes(ax)
    if reference is not None:
        plot_samples(reference, ax=ax, color=TRAJECTORY_COLOR, size=reference_size, box=box)
    return plot_samples(samples, ax=ax, color=MODEL_COLOR, size=size, box=box, title=title)


def plot_coupling(
    x0: Tensor,
    x1: Tensor,
    plan: Tensor,
    ax: Axes | None = None,
    title: str | None = None,
    width: float = 3.0,
    threshold: float = 1e-3,
) -> Axes:
    """A transport plan between two point clouds: source points ``x0`` ``(n, 2)`` in the source
    colour, targets ``x1`` ``(m, 2)`` in the data colour, and a segment from ``x0[i]`` to
    ``x1[j]`` as wide as the mass ``plan[i, j]`` it carries (``width`` points for the largest).

    ``plan`` ``(n, m)`` holds non-negative masses (a coupling of chapter 4's section on
    static optimal transport, e.g. :func:`fmbook.ot.exact_plan`); masses below ``threshold``
    times the largest are not drawn.
    """
    x0 = check_points(x0, "x0", dim=2)
    x1 = check_points(x1, "x1", dim=2)
    plan = check_tensor(plan, "plan")
    if plan.shape != (x0.shape[0], x1.shape[0]):
        raise ValueError(
            f"plan must have shape (n, m) = {(x0.shape[0], x1.shape[0])} for x0 (n, 2) and x1 (m, 2), "
            f"got {tuple(plan.shape)}"
        )
    if bool((plan < 0).any()) or not bool((plan > 0).any()):
        raise ValueError("plan must hold non-negative masses, not all zero")
    check_positive_float(width, "width")
    check_unit_interval(threshold, "threshold")
    ax = _axes(ax)
    share = _np(plan / plan.max())
    a, b = _np(x0), _np(x1)
    for i, j in zip(*np.nonzero(share > threshold)):
        ax.plot([a[i, 0], b[j, 0]], [a[i, 1], b[j, 1]], color=TRAJECTORY_COLOR, lw=width * share[i, j], alpha=0.8)
    ax.scatter(a[:, 0], a[:, 1], s=30, color=SOURCE_COLOR, zorder=3)
    ax.scatter(b[:, 0], b[:, 1], s=30, color=DATA_COLOR, zorder=3)
    _finish(ax, None, title)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def plot_loss_curve(
    history: Sequence[float] | Tensor | np.ndarray,
    ax: Axes | None = None,
    window: int | None = None,
    label: str | None = None,
    ylabel: str = "loss",
    color: str | None = None,
    linestyle: str = "-",
) -> Axes:
    """The loss of each optimisation step (e.g. ``fit(...).history``) against the step.

    With ``window``, the per-step loss is drawn thin in the trajectory grey and its running
    mean over ``window`` steps (the mean of steps ``k - window + 1, ..., k``, drawn at step
    ``k``) in the model colour; without it, one line in ``color`` (the next colour of
    :data:`SEQUENCE` when None) labelled ``label``, so that several runs can share an axes.
    """
    values = np.asarray(history.detach().cpu() if isinstance(history, Tensor) else history, dtype=float)
    if values.ndim != 1 or values.size == 0 or not np.isfinite(values).all():
        raise ValueError("history must be a non-empty sequence of finite losses, one per step")
    if window is not None:
        check_positive_int(window, "window")
        if window > values.size:
            raise ValueError(f"window must be at most the {values.size} steps of history, got {window}")
    check_text(ylabel, "ylabel")
    check_text(linestyle, "linestyle")
    if ax is None:
        ax = plt.subplots(figsize=(6.0, 2.5))[1]
    ax = _axes(ax)
    if window is None:
        ax.plot(values, linestyle, color=color, label=label)
    else:
        ax.plot(values, lw=0.6, color=TRAJECTORY_COLOR, label=label or "per step")
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        ax.plot(np.arange(window - 1, values.size), smooth, color=MODEL_COLOR, label=f"mean of {window}")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    if any(not line.get_label().startswith("_") for line in ax.get_lines()):
        ax.legend()
    return ax

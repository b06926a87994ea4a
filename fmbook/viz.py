"""Figures of the book: samples, trajectories, velocity fields and marginal paths.

Each function draws on a matplotlib ``Axes`` (or creates a figure) and returns what it drew
on, so that chapters can compose panels. Inputs are batch-first tensors on any device.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import to_hex, to_rgb
from matplotlib.figure import Figure
from torch import Tensor

from ._checks import (
    check_box,
    check_callable,
    check_model_output,
    check_points,
    check_positive_float,
    check_positive_int,
    check_tensor,
    check_unit_interval,
)

if TYPE_CHECKING:
    from types import ModuleType

    import ipywidgets
    from IPython.display import HTML

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
    from cycler import cycler

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
            ax.grid(False)
            if r == 0:
                ax.set_title(f"t = {t:g}")
            if c == 0:
                ax.set_ylabel(label)
    fig.tight_layout()
    return fig


def image_grid_array(images: Tensor, rows: int, gap: int = 1, fill: float = float("nan")) -> np.ndarray:
    """Tile images ``(rows * cols, C, h, w)`` (C = 1) row by row into one array with gaps.

    Image ``k`` goes to row ``k // cols``, column ``k % cols``; between neighbours there are
    ``gap`` pixels of ``fill`` (NaN: drawn as the background by :func:`plot_image_grid`).

    Returns:
        An array of shape ``(rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap)``.
    """
    images = check_tensor(images, "images")
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"images must have shape (N, 1, h, w), got {tuple(images.shape)}")
    check_positive_int(rows, "rows")
    check_positive_int(gap, "gap", minimum=0)
    n, _, h, w = images.shape
    if n % rows:
        raise ValueError(f"the {n} images do not fill {rows} rows: give a multiple of rows")
    cols = n // rows
    out = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap), fill)
    pixels = _np(images)[:, 0]
    for k in range(n):
        r, c = divmod(k, cols)
        out[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = pixels[k]
    return out


def plot_image_grid(
    images: Tensor,
    rows: int,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
    ax: Axes | None = None,
    pixel: float = 0.06,
    value_range: tuple[float, float] = (-1.0, 1.0),
    gap: int = 1,
) -> Axes:
    """Small grey-scale images (digits) as one grid: square pixels, a gap between images, labels.

    The images are tiled by :func:`image_grid_array` and drawn with ``aspect="equal"``, so an
    8 x 8 digit is drawn square whatever the figure's shape; the gaps are drawn white.

    Args:
        images: ``(rows * cols, 1, h, w)`` in ``value_range``, placed row by row.
        rows: the number of rows.
        row_labels, col_labels: optional names of the rows (left) and columns (top), e.g.
            ``["input", "sample", "original"]`` for a super-resolution figure.
        title: the title above the grid.
        ax: the axes to draw on; a new figure sized so that each pixel is ``pixel`` inches square
            when None.
        pixel: the side of one pixel in inches, for a new figure.
        value_range: the values drawn white and black.
        gap: the pixels of white between neighbouring images (>= 0).

    Returns:
        The axes.
    """
    check_positive_int(gap, "gap", minimum=0)
    grid = image_grid_array(images, rows, gap=gap)
    cols = images.shape[0] // rows
    h, w = images.shape[2:]
    for labels, count, name in ((row_labels, rows, "row_labels"), (col_labels, cols, "col_labels")):
        if labels is not None and (isinstance(labels, str) or len(labels) != count):
            raise ValueError(f"{name} must be a sequence of {count} labels, got {labels!r}")
    check_positive_float(pixel, "pixel")
    if (
        not isinstance(value_range, (tuple, list))
        or len(value_range) != 2
        or not float(value_range[0]) < float(value_range[1])
    ):
        raise ValueError(f"value_range must be a pair (low, high) with low < high, got {value_range!r}")
    if ax is None:
        left = 0.8 if row_labels is not None else 0.1
        top = (0.3 if col_labels is not None else 0.0) + (0.3 if title else 0.0) + 0.1
        fig = plt.figure(figsize=(grid.shape[1] * pixel + left + 0.1, grid.shape[0] * pixel + top + 0.1))
        width, height = fig.get_size_inches()
        ax = fig.add_axes((left / width, 0.1 / height, grid.shape[1] * pixel / width, grid.shape[0] * pixel / height))
    ax = _axes(ax)
    cmap = plt.get_cmap("gray_r").with_extremes(bad="white")
    ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=value_range[0], vmax=value_range[1],
              interpolation="nearest", aspect="equal")
    ax.grid(False)
    ax.set_xticks([c * (w + gap) + (w - 1) / 2 for c in range(cols)] if col_labels is not None else [])
    ax.set_yticks([r * (h + gap) + (h - 1) / 2 for r in range(rows)] if row_labels is not None else [])
    if col_labels is not None:
        ax.set_xticklabels(list(col_labels))
        ax.xaxis.tick_top()
    if row_labels is not None:
        ax.set_yticklabels(list(row_labels))
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    if title:
        ax.set_title(title, pad=18 if col_labels is not None else 6)
    return ax


# --------------------------------------------------------------------------- animations and widgets


def _check_trajectory(trajectory: object, name: str = "trajectory") -> Tensor:
    if not isinstance(trajectory, Tensor) or trajectory.ndim != 3 or trajectory.shape[2] != 2:
        shape = tuple(trajectory.shape) if isinstance(trajectory, Tensor) else type(trajectory).__name__
        raise ValueError(f"{name} must be a tensor of shape (batch, times, 2), got {shape}")
    if trajectory.shape[0] == 0 or trajectory.shape[1] < 2:
        raise ValueError(f"{name} must hold at least one point and two times, got shape {tuple(trajectory.shape)}")
    if not bool(torch.isfinite(trajectory).all()):
        raise ValueError(f"{name} must contain only finite values (found NaN or inf)")
    return trajectory


def _check_times(times: Sequence[float] | Tensor | None, count: int, name: str = "times") -> list[float]:
    if times is None:
        return [i / (count - 1) for i in range(count)] if count > 1 else [0.0]
    values = [float(v) for v in (times.tolist() if isinstance(times, Tensor) else times)]
    if len(values) != count:
        raise ValueError(f"{name} must hold {count} values (one per frame), got {len(values)}")
    for v in values:
        check_unit_interval(v, name)
    return values


def _check_size(size: object, name: str = "size") -> tuple[float, float]:
    """A figure size: one positive number (a square) or a pair (width, height) in inches."""
    if isinstance(size, (tuple, list)) and len(size) == 2:
        return (check_positive_float(size[0], name), check_positive_float(size[1], name))
    side = check_positive_float(size, name)
    return (side, side)


def _frame_indices(count: int, max_frames: int) -> list[int]:
    """At most ``max_frames`` indices evenly spread over ``range(count)``, first and last included."""
    if count <= max_frames:
        return list(range(count))
    return sorted({round(i * (count - 1) / (max_frames - 1)) for i in range(max_frames)})


def animate_flow(
    trajectory: Tensor,
    times: Sequence[float] | Tensor | None = None,
    data: Tensor | None = None,
    n: int = 500,
    max_frames: int = 41,
    interval: int = 80,
    box: Box | None = DEFAULT_BOX,
    title: str = "",
    size: float = 4.0,
    dpi: int = 72,
    alt: str = "",
) -> HTML:
    """An animation of points carried by a flow, from noise (t = 0) to data (t = 1).

    The frames are drawn with matplotlib and embedded in JavaScript HTML (``to_jshtml``), so
    the animation plays in a notebook and in the static book alike, with no kernel.

    Args:
        trajectory: states on a time grid, shape ``(B, T + 1, 2)`` (e.g. ``solve_ode(...,
            return_trajectory=True).trajectory``).
        times: the ``T + 1`` times of the grid (uniform in [0, 1] when None).
        data: optional data samples ``(N, 2)`` drawn faintly behind the moving points.
        n: the number of points shown (the first ``n`` rows).
        max_frames: at most this many frames (>= 2), evenly spread, first and last included.
        interval: milliseconds between frames.
        box: the drawing box (x_min, x_max, y_min, y_max), or None to fit the points.
        title: a title shown before the time of each frame.
        size, dpi: the figure's side in inches and its resolution (they set the HTML's size).
        alt: the text alternative of the animation's picture, what it shows (e.g. "Gaussian
            noise flowing onto the two moons"); the book requires one (the browser test).

    Returns:
        ``IPython.display.HTML`` holding the animation (its ``.data`` is the HTML text).
    """
    from IPython.display import HTML
    from matplotlib.animation import FuncAnimation

    trajectory = _check_trajectory(trajectory)
    check_positive_int(n, "n")
    check_positive_int(max_frames, "max_frames", minimum=2)
    check_positive_int(interval, "interval")
    check_positive_int(dpi, "dpi")
    size = _check_size(size)[0]
    box = None if box is None else check_box(box)
    if not isinstance(title, str):
        raise TypeError(f"title must be a str, got {type(title).__name__}")
    _check_alt(alt)
    t_values = _check_times(times, trajectory.shape[1])
    if data is not None:
        data = check_points(data, "data", dim=2)
    frames = _frame_indices(trajectory.shape[1], max_frames)
    p = _np(trajectory[:n])
    fig, ax = plt.subplots(figsize=(size, size), dpi=dpi)
    if data is not None:
        d = _np(data)
        ax.scatter(d[:, 0], d[:, 1], s=2, color=DATA_COLOR, alpha=0.15, linewidths=0)
    dots = ax.scatter(p[:, 0, 0], p[:, 0, 1], s=4, color=SOURCE_COLOR, linewidths=0)
    if box is None:
        lo, hi = p.min(axis=(0, 1)), p.max(axis=(0, 1))
        pad = 0.05 * float((hi - lo).max() or 1.0)
        box = (lo[0] - pad, hi[0] + pad, lo[1] - pad, hi[1] + pad)
    _finish(ax, box, None)
    ax.set_xticks([])
    ax.set_yticks([])
    label = ax.set_title("")

    def update(k: int):
        i = frames[k]
        dots.set_offsets(p[:, i])
        share = i / (len(t_values) - 1)  # the colour goes from source blue to data orange
        dots.set_color(to_hex((1 - share) * np.array(to_rgb(SOURCE_COLOR)) + share * np.array(to_rgb(DATA_COLOR))))
        label.set_text(f"{title + ': ' if title else ''}t = {t_values[i]:.2f}")
        return dots, label

    animation = FuncAnimation(fig, update, frames=len(frames), interval=interval, blit=False)
    try:
        html = animation.to_jshtml(default_mode="once")
    finally:
        plt.close(fig)
    return HTML(_with_alt(_offline_player(html), alt))


def _check_alt(alt: object, name: str = "alt") -> str:
    if not isinstance(alt, str):
        raise TypeError(f"{name} must be a str (what the figure shows), got {type(alt).__name__}")
    return alt


def _with_alt(html: str, alt: str) -> str:
    """The player's picture ``<img id="_anim_img...">`` with the text alternative ``alt``."""
    import html as html_lib

    if not alt:
        return html
    return re.sub(r'<img (id="_anim_img)', lambda m: f'<img alt="{html_lib.escape(alt)}" {m.group(1)}', html, count=1)


#: Text symbols for the icons of matplotlib's JavaScript player (Font Awesome 4 class -> symbol).
_PLAYER_ICONS = {
    "fa fa-minus": "\u2212",
    "fa fa-fast-backward": "|\u25c0\u25c0",
    "fa fa-step-backward": "|\u25c0",
    "fa fa-play fa-flip-horizontal": "\u25c0",
    "fa fa-pause": "\u275a\u275a",
    "fa fa-play": "\u25b6",
    "fa fa-step-forward": "\u25b6|",
    "fa fa-fast-forward": "\u25b6\u25b6|",
    "fa fa-plus": "+",
}


def _offline_player(html: str) -> str:
    """matplotlib's player loads its button icons from a CDN stylesheet (Font Awesome); drop the
    stylesheet and draw the buttons with text symbols, so that the animation needs no network."""
    html = re.sub(r'<link rel="stylesheet"\s+href="https?://[^"]*font-awesome[^"]*">\s*', "", html)
    for icon, symbol in _PLAYER_ICONS.items():
        html = html.replace(f'<i class="{icon}"></i>', symbol)
    return html


def _render_png(draw: Callable[[Axes, object], object], value: object, size: tuple[float, float], dpi: int) -> bytes:
    import io

    fig, ax = plt.subplots(figsize=size, dpi=dpi)
    try:
        draw(ax, value)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
    return buffer.getvalue()


def slider_figure(
    draw: Callable[[Axes, object], object],
    values: Sequence[object],
    label: str = "t",
    fmt: Callable[[object], str] = lambda v: f"{v:g}" if isinstance(v, (int, float)) else str(v),
    control: str = "slider",
    size: tuple[float, float] = (4.0, 4.0),
    dpi: int = 72,
    alt: str | Callable[[object], str] = "",
) -> ipywidgets.VBox:
    """An interactive figure: a control picks one of ``values`` and shows its pre-drawn panel.

    Every panel is drawn once, here, by ``draw(ax, value)``, and stored as a PNG in an
    ``ipywidgets.Stack``; the control is linked to the stack in the browser (``jslink``), so
    the figure keeps working in the static book, where no kernel runs: the saved widget state
    holds all panels.

    Args:
        draw: draws the panel of one value on a matplotlib ``Axes``.
        values: the values to choose from (at least one), e.g. times, schedulers or step counts.
        label: the control's description.
        fmt: turns a value into its label on the control.
        control: ``"slider"`` (a selection slider) or ``"buttons"`` (toggle buttons,
            for a handful of named choices such as solvers or schedulers).
        size, dpi: the size of each panel in inches, and its resolution.
        alt: what the panels show, as one text or as ``alt(value)`` per panel (e.g.
            ``lambda t: f"samples of p_t at t = {t:.2f}"``). A widget's picture has no ``alt``
            attribute; the text becomes its ``tooltip`` (the ``title`` attribute), which is the
            picture's accessible name when it has no ``alt`` (the browser test checks it).

    Returns:
        An ``ipywidgets.VBox``: the control(s) above the ``Stack`` of ``Image`` panels.
    """
    import ipywidgets as widgets

    if not callable(draw):
        raise TypeError(f"draw must be callable as draw(ax, value), got {type(draw).__name__}")
    values = list(values) if not isinstance(values, (str, bytes)) else []
    if not values:
        raise ValueError("values must be a non-empty sequence of values to choose from")
    if control not in ("slider", "buttons"):
        raise ValueError(f"control must be 'slider' or 'buttons', got {control!r}")
    check_positive_int(dpi, "dpi")
    check_callable(fmt, "fmt", "fmt(value) -> str")
    size = _check_size(size)
    labels = [fmt(v) for v in values]
    if len(set(labels)) != len(labels):
        raise ValueError(f"fmt must give each value a different label, got {labels}")
    alts = [alt(v) for v in values] if callable(alt) else [_check_alt(alt)] * len(values)
    for text in alts:
        _check_alt(text, "alt(value)")
    pngs = [_render_png(draw, v, size, dpi) for v in values]
    if control == "buttons":
        chooser = widgets.ToggleButtons(options=labels, description=label)
    else:
        chooser = widgets.SelectionSlider(options=labels, description=label, continuous_update=True)
    if hasattr(widgets, "Stack"):  # ipywidgets >= 8: all panels in the page, switched in the browser
        stack = widgets.Stack([widgets.Image(value=png, format="png", tooltip=text or None)
                               for png, text in zip(pngs, alts)], selected_index=0)
        widgets.jslink((chooser, "index"), (stack, "selected_index"))
        return widgets.VBox([chooser, stack])
    return _kernel_switched_image(widgets, chooser, pngs, alts)


def _kernel_switched_image(
    widgets: ModuleType, chooser: ipywidgets.Widget, pngs: list[bytes], alts: list[str]
) -> ipywidgets.VBox:
    """The fallback of :func:`slider_figure` for ipywidgets 7 (no ``Stack``; e.g. an older Colab).

    One ``Image`` whose PNG the kernel swaps when the control moves: it needs a running kernel,
    which is where ipywidgets 7 is met (the static book is built with ipywidgets 8).
    """
    image = widgets.Image(value=pngs[0], format="png")
    if alts[0] and "description_tooltip" in image.keys:  # ipywidgets 7's name of the tooltip
        image.description_tooltip = alts[0]

    def show(change: dict) -> None:
        image.value = pngs[change["new"]]
        if alts[change["new"]] and "description_tooltip" in image.keys:
            image.description_tooltip = alts[change["new"]]

    chooser.observe(show, names="index")
    return widgets.VBox([chooser, image])


def path_slider(
    samples: Sequence[Tensor] | Tensor,
    times: Sequence[float] | Tensor | None = None,
    data: Tensor | None = None,
    box: Box | None = DEFAULT_BOX,
    max_frames: int = 11,
    color: str = SOURCE_COLOR,
    size: float = 3.5,
    alt: str = "samples of the probability path p_t",
) -> ipywidgets.VBox:
    """A time slider over samples of a probability path: drag it to see p_t change with t.

    Args:
        samples: one tensor ``(B, 2)`` per time, or a trajectory ``(B, T + 1, 2)``.
        times: the time of each sample set (uniform in [0, 1] when None).
        data: optional data samples ``(N, 2)`` drawn faintly in every panel.
        box: the drawing box.
        max_frames: at most this many panels (>= 2), evenly spread, first and last included.
        color: the colour of the samples.
        size: the side of each panel in inches.
        alt: what the panels show; each panel's text alternative is it followed by its time,
            e.g. "samples of the probability path p_t at t = 0.50".

    Returns:
        The ``ipywidgets.VBox`` of :func:`slider_figure` (it works in the static book too).
    """
    if isinstance(samples, Tensor):
        sets = list(_check_trajectory(samples, "samples").unbind(dim=1))
    else:
        sets = [check_points(x, "samples[i]", dim=2) for x in samples]
        if not sets:
            raise ValueError("samples must hold at least one tensor of shape (batch, 2)")
    check_positive_int(max_frames, "max_frames", minimum=2)
    size = _check_size(size)[0]
    box = None if box is None else check_box(box)
    t_values = _check_times(times, len(sets))
    if data is not None:
        data = check_points(data, "data", dim=2)
    chosen = _frame_indices(len(sets), max_frames)

    def draw(ax: Axes, i: int) -> None:
        if data is not None:
            plot_samples(data, ax=ax, color=DATA_COLOR, alpha=0.15, box=box)
        plot_samples(sets[i], ax=ax, color=color, box=box, title=f"t = {t_values[i]:.2f}")
        ax.set_xticks([])
        ax.set_yticks([])

    digits = 2  # enough decimals to tell the chosen times apart
    while digits < 8 and len({f"{t_values[i]:.{digits}f}" for i in chosen}) < len(chosen):
        digits += 1
    _check_alt(alt)
    return slider_figure(draw, chosen, label="t", fmt=lambda i: f"{t_values[i]:.{digits}f}", size=(size, size),
                         alt=lambda i: f"{alt} at t = {t_values[i]:.{digits}f}" if alt else "")

"""Figures on a grid: a function of the plane (a density) drawn on a grid of pixels, a grid of
histograms of a path's marginals (one row per path, one column per time), and a grid of small
grey-scale images (the digits of chapter 8).

They share the book's style and colours (:mod:`fmbook.viz`); each returns what it drew on.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from ._checks import (
    check_box,
    check_flag,
    check_labels,
    check_points,
    check_positive_float,
    check_positive_int,
    check_tensor,
    check_text,
    check_unit_interval,
    check_value_range,
)
from .viz import DEFAULT_BOX, Box, _axes, _np


def plot_density(
    values: Tensor,
    box: Box = DEFAULT_BOX,
    ax: Axes | None = None,
    title: str | None = None,
    cmap: str = "magma",
    colorbar: bool = False,
) -> Axes:
    """A function of the plane on a regular grid, as an image over ``box``: typically a
    density ``p_t(x)``, or a residual.

    Args:
        values: ``(ny, nx)``: ``values[i, j]`` at the ``j``-th of ``nx`` evenly spaced x in
            ``[x_min, x_max]`` and the ``i``-th of ``ny`` evenly spaced y in ``[y_min, y_max]``
            (row 0 at the bottom), which is the layout of ``torch.meshgrid(xs, ys,
            indexing="xy")`` reshaped to ``(ny, nx)``.
        box: the drawing box ``(x_min, x_max, y_min, y_max)``, the image's extent.
        ax: the axes to draw on (a new 4 x 4 inch figure when None).
        title: the title.
        cmap: the colour map (``"magma"`` for densities; a diverging one such as ``"RdBu_r"``
            for a signed residual).
        colorbar: draw a colour bar beside the axes.

    Returns:
        The axes; the image is ``ax.images[0]`` (the last of ``ax.images``).
    """
    values = check_tensor(values, "values")
    if values.ndim != 2 or values.shape[0] < 2 or values.shape[1] < 2:
        raise ValueError(f"values must have shape (ny, nx) with ny, nx >= 2, got {tuple(values.shape)}")
    box = check_box(box)
    check_text(cmap, "cmap")
    check_flag(colorbar, "colorbar")
    ax = _axes(ax)
    image = ax.imshow(_np(values), origin="lower", extent=box, cmap=cmap)
    ax.grid(False)  # no grid over an image
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046)
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
    row_labels = check_labels(row_labels, rows, "row_labels")
    col_labels = check_labels(col_labels, cols, "col_labels")
    check_positive_float(pixel, "pixel")
    value_range = check_value_range(value_range, "value_range")
    if ax is None:
        ax = _grid_axes(grid.shape, pixel, row_labels is not None, col_labels is not None, bool(title))
    ax = _axes(ax)
    cmap = plt.get_cmap("gray_r").with_extremes(bad="white")
    ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=value_range[0], vmax=value_range[1],
              interpolation="nearest", aspect="equal")
    ax.grid(False)
    ax.set_xticks([c * (w + gap) + (w - 1) / 2 for c in range(cols)] if col_labels is not None else [])
    ax.set_yticks([r * (h + gap) + (h - 1) / 2 for r in range(rows)] if row_labels is not None else [])
    if col_labels is not None:
        ax.set_xticklabels(col_labels)
        ax.xaxis.tick_top()
    if row_labels is not None:
        ax.set_yticklabels(row_labels)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    if title:
        ax.set_title(title, pad=18 if col_labels is not None else 6)
    return ax




def _grid_axes(shape: tuple[int, int], pixel: float, row_labels: bool, col_labels: bool, title: bool) -> Axes:
    """Axes on a new figure sized so that each pixel of a ``shape`` grid is ``pixel`` inches
    square, with room on the left for row labels and above for column labels and a title."""
    left = 0.8 if row_labels else 0.1
    top = (0.3 if col_labels else 0.0) + (0.3 if title else 0.0) + 0.1
    fig = plt.figure(figsize=(shape[1] * pixel + left + 0.1, shape[0] * pixel + top + 0.1))
    width, height = fig.get_size_inches()
    return fig.add_axes((left / width, 0.1 / height, shape[1] * pixel / width, shape[0] * pixel / height))

"""Figures that move or answer the reader, and still play in the static book, where no kernel
runs: an animation of a flow (:func:`animate_flow`, matplotlib's JavaScript player, made to
work offline) and figures with a slider or buttons (:func:`slider_figure`, :func:`path_slider`:
every panel drawn beforehand, switched in the browser by ipywidgets).

The static figures they draw with, and the book's colours, are in :mod:`fmbook.viz`.
"""

from __future__ import annotations

import html as html_lib
import io
import re
from collections.abc import Callable, Sequence
from types import ModuleType

import ipywidgets
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import HTML
from matplotlib.animation import FuncAnimation
from matplotlib.axes import Axes
from matplotlib.colors import to_hex, to_rgb
from torch import Tensor

from ._checks import (
    check_box,
    check_callable,
    check_figure_size,
    check_points,
    check_positive_int,
    check_tensor,
    check_text,
    check_unit_interval,
)
from .viz import DATA_COLOR, DEFAULT_BOX, SOURCE_COLOR, Box, _finish, _np, plot_samples

_ALT = "a str (what the figure shows)"


def _check_trajectory(trajectory: object, name: str = "trajectory") -> Tensor:
    """A trajectory to play: ``(B, T + 1, 2)`` with at least two times (a film of one frame is a
    picture); anything else, a tensor or not, is a ValueError on its shape."""
    if not isinstance(trajectory, Tensor) or trajectory.ndim != 3 or trajectory.shape[2] != 2:
        shape = tuple(trajectory.shape) if isinstance(trajectory, Tensor) else type(trajectory).__name__
        raise ValueError(f"{name} must be a tensor of shape (batch, times, 2), got {shape}")
    if trajectory.shape[0] == 0 or trajectory.shape[1] < 2:
        raise ValueError(f"{name} must hold at least one point and two times, got shape {tuple(trajectory.shape)}")
    return check_tensor(trajectory, name)


def _frame_times(times: Sequence[float] | Tensor | None, count: int, name: str = "times") -> list[float]:
    """The time of each of ``count`` frames: ``times`` checked, or a uniform grid of [0, 1]."""
    if times is None:
        return [i / (count - 1) for i in range(count)] if count > 1 else [0.0]
    values = [float(v) for v in (times.tolist() if isinstance(times, Tensor) else times)]
    if len(values) != count:
        raise ValueError(f"{name} must hold {count} values (one per frame), got {len(values)}")
    for v in values:
        check_unit_interval(v, name)
    return values


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
    trajectory = _check_trajectory(trajectory)
    check_positive_int(n, "n")
    check_positive_int(max_frames, "max_frames", minimum=2)
    check_positive_int(interval, "interval")
    check_positive_int(dpi, "dpi")
    size = check_figure_size(size)[0]
    box = None if box is None else check_box(box)
    check_text(title, "title")
    check_text(alt, "alt", _ALT)
    t_values = _frame_times(times, trajectory.shape[1])
    if data is not None:
        data = check_points(data, "data", dim=2)
    frames = _frame_indices(trajectory.shape[1], max_frames)
    p = _np(trajectory[:n])
    fig, ax = plt.subplots(figsize=(size, size), dpi=dpi)
    dots = _flow_stage(ax, p, data, box)
    label = ax.set_title("")

    def update(k: int):
        i = frames[k]
        dots.set_offsets(p[:, i])
        dots.set_color(_source_to_data(i / (len(t_values) - 1)))
        label.set_text(f"{title + ': ' if title else ''}t = {t_values[i]:.2f}")
        return dots, label

    animation = FuncAnimation(fig, update, frames=len(frames), interval=interval, blit=False)
    try:
        html = animation.to_jshtml(default_mode="once")
    finally:
        plt.close(fig)
    return HTML(_with_alt(_offline_player(html), alt))


def _flow_stage(ax: Axes, p: np.ndarray, data: Tensor | None, box: Box | None):
    """The first frame of :func:`animate_flow`: the data faintly, the points ``p[:, 0]`` in the
    source colour, in ``box`` (fitted to all the points when None); returns the points' artist."""
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
    return dots


def _source_to_data(share: float) -> str:
    """The colour ``share`` of the way from the source blue (0) to the data orange (1)."""
    return to_hex((1 - share) * np.array(to_rgb(SOURCE_COLOR)) + share * np.array(to_rgb(DATA_COLOR)))


def _with_alt(html: str, alt: str) -> str:
    """The player's picture ``<img id="_anim_img...">`` with the text alternative ``alt``."""
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
    check_callable(draw, "draw", "draw(ax, value)")
    values = list(values) if not isinstance(values, (str, bytes)) else []
    if not values:
        raise ValueError("values must be a non-empty sequence of values to choose from")
    if control not in ("slider", "buttons"):
        raise ValueError(f"control must be 'slider' or 'buttons', got {control!r}")
    check_positive_int(dpi, "dpi")
    check_callable(fmt, "fmt", "fmt(value) -> str")
    size = check_figure_size(size)
    labels = [fmt(v) for v in values]
    if len(set(labels)) != len(labels):
        raise ValueError(f"fmt must give each value a different label, got {labels}")
    alts = [alt(v) for v in values] if callable(alt) else [check_text(alt, "alt", _ALT)] * len(values)
    for text in alts:
        check_text(text, "alt(value)", _ALT)
    pngs = [_render_png(draw, v, size, dpi) for v in values]
    widgets = ipywidgets
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
    size = check_figure_size(size)[0]
    box = None if box is None else check_box(box)
    t_values = _frame_times(times, len(sets))
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
    check_text(alt, "alt", _ALT)
    return slider_figure(draw, chosen, label="t", fmt=lambda i: f"{t_values[i]:.{digits}f}", size=(size, size),
                         alt=lambda i: f"{alt} at t = {t_values[i]:.{digits}f}" if alt else "")

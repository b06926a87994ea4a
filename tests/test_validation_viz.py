"""Bad input to fmbook.viz: point sets, trajectories, velocity fields, boxes and styles."""

import math

import matplotlib
import matplotlib.pyplot as plt
import pytest
import torch

from fmbook import grids, interactive, viz

matplotlib.use("Agg")
X = torch.randn(10, 2)
TRAJ = torch.randn(10, 5, 2)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


BAD_SAMPLES = [
    (dict(x=X.numpy()), TypeError, r"x must be a torch.Tensor"),
    (dict(x=X.long()), TypeError, r"x must be a floating-point tensor"),
    (dict(x=torch.randn(10, 3)), ValueError, r"x must have 2 columns"),
    (dict(x=torch.randn(0, 2)), ValueError, r"x must hold at least one point"),
    (dict(x=torch.full((10, 2), math.nan)), ValueError, r"x must contain only finite values"),
    (dict(size=0.0), ValueError, r"size must be a finite number > 0"),
    (dict(alpha=1.5), ValueError, r"alpha must lie in \[0, 1\]"),
    (dict(alpha="0.5"), TypeError, r"alpha must be a number"),
    (dict(box=(0, 1, 0)), ValueError, r"box must be a tuple \(x_min, x_max, y_min, y_max\)"),
    (dict(box=(1, 0, 0, 1)), ValueError, r"box must have x_min < x_max"),
    (dict(box=(0, 1, 0, math.inf)), ValueError, r"box must hold four finite numbers"),
    (dict(ax="axes"), TypeError, r"ax must be a matplotlib Axes or None"),
]


@pytest.mark.parametrize("change, exc, match", BAD_SAMPLES, ids=[c[2] for c in BAD_SAMPLES])
def test_plot_samples_bad_input(change, exc, match):
    with pytest.raises(exc, match=match):
        viz.plot_samples(**(dict(x=X) | change))


BAD_TRAJECTORIES = [
    (dict(trajectory=[[0.0, 0.0]]), TypeError, r"trajectory must be a torch.Tensor"),
    (dict(trajectory=TRAJ.int()), TypeError, r"trajectory must be a floating-point tensor"),
    (dict(trajectory=torch.randn(10, 2)), ValueError, r"trajectory must have shape \(batch, times, 2\)"),
    (dict(trajectory=torch.randn(10, 5, 3)), ValueError, r"trajectory must have shape \(batch, times, 2\)"),
    (dict(trajectory=torch.randn(0, 5, 2)), ValueError, r"trajectory must have shape \(batch, times, 2\)"),
    (dict(trajectory=torch.full((3, 4, 2), math.nan)), ValueError, r"trajectory must contain only finite values"),
    (dict(n=0), ValueError, r"n must be >= 1"),
    (dict(n=2.5), TypeError, r"n must be an int"),
    (dict(box=[0, 1]), ValueError, r"box must be a tuple"),
]


@pytest.mark.parametrize("change, exc, match", BAD_TRAJECTORIES, ids=[c[2] for c in BAD_TRAJECTORIES])
def test_plot_trajectories_bad_input(change, exc, match):
    with pytest.raises(exc, match=match):
        viz.plot_trajectories(**(dict(trajectory=TRAJ) | change))


def field(x, t):
    return -x


BAD_FIELD = [
    (dict(velocity=None), TypeError, r"velocity must be callable"),
    (dict(t=1.5), ValueError, r"t must lie in \[0, 1\]"),
    (dict(t=math.nan), ValueError, r"t must lie in \[0, 1\]"),
    (dict(t=torch.tensor([0.5, 0.5])), TypeError, r"t must be a number"),
    (dict(t=torch.tensor(-0.5)), ValueError, r"t must lie in \[0, 1\]"),
    (dict(grid=1), ValueError, r"grid must be >= 2"),
    (dict(grid=10.0), TypeError, r"grid must be an int"),
    (dict(box=(0, 0, 0, 1)), ValueError, r"box must have x_min < x_max"),
    (dict(velocity=lambda x, t: x[:, 0]), ValueError, r"velocity\(x, t\) must return a tensor of shape"),
]


@pytest.mark.parametrize("change, exc, match", BAD_FIELD, ids=[c[2] for c in BAD_FIELD])
def test_plot_velocity_field_bad_input(change, exc, match):
    with pytest.raises(exc, match=match):
        viz.plot_velocity_field(**(dict(velocity=field, t=0.5) | change))


BAD_HIST = [
    (dict(rows=[]), ValueError, r"rows must be a non-empty list"),
    (dict(rows=[("a", [X])]), ValueError, r"rows must be a non-empty list of \(label, one sample set per time\)"),
    (dict(rows=[("a",)]), ValueError, r"rows must be a non-empty list"),
    (dict(times=[]), ValueError, r"times must be a non-empty sequence"),
    (dict(times=[0.0, 1.5]), ValueError, r"times must lie in \[0, 1\]"),
    (dict(rows=[("a", [X, torch.randn(5, 3)])]), ValueError, r"samples must have 2 columns"),
    (dict(rows=[("a", [X, torch.full((5, 2), math.nan)])]), ValueError, r"samples must contain only finite values"),
    (dict(bins=0), ValueError, r"bins must be >= 1"),
    (dict(cell=-1.0), ValueError, r"cell must be a finite number > 0"),
    (dict(box=(0, 1, 1, 0)), ValueError, r"box must have x_min < x_max and y_min < y_max"),
]


@pytest.mark.parametrize("change, exc, match", BAD_HIST, ids=[c[2] for c in BAD_HIST])
def test_plot_path_histograms_bad_input(change, exc, match):
    args = dict(rows=[("data", [X, X])], times=[0.0, 1.0]) | change
    with pytest.raises(exc, match=match):
        grids.plot_path_histograms(**args)


def test_good_calls_draw():
    ax = viz.plot_samples(X.double(), box=None)
    assert len(ax.collections) == 1
    ax = viz.plot_trajectories(TRAJ, n=3, ax=ax)
    assert len(ax.lines) == 3
    viz.plot_velocity_field(field, 1, grid=3)
    viz.plot_velocity_field(field, torch.tensor(0.5), grid=3)
    fig = grids.plot_path_histograms([("data", [X, X])], [0, 1.0], bins=5)
    assert len(fig.axes) == 2


def straight(steps=4):
    t = torch.linspace(0, 1, steps + 1)
    return torch.randn(6, 1, 2) * (1 - t)[None, :, None] + t[None, :, None]


BAD_ANIMATION = [
    (dict(size=0.0), ValueError, r"size must be a finite number > 0"),
    (dict(size="big"), TypeError, r"size must be a number"),
    (dict(box=(0, 1, 2)), ValueError, r"box must be a tuple"),
    (dict(box=(0, 1, 1, 1)), ValueError, r"box must have x_min < x_max and y_min < y_max"),
    (dict(title=3), TypeError, r"title must be a str"),
    (dict(times=[0.0, 0.25, 0.5, 0.75, 1.5]), ValueError, r"times must lie in \[0, 1\]"),
    (dict(times=torch.tensor([0.0, 0.25, math.nan, 0.75, 1.0])), ValueError, r"times must lie in \[0, 1\]"),
    (dict(dpi=0), ValueError, r"dpi must be >= 1"),
]


@pytest.mark.parametrize("change, exc, match", BAD_ANIMATION, ids=[c[2] for c in BAD_ANIMATION])
def test_animate_flow_more_bad_input(change, exc, match):
    with pytest.raises(exc, match=match):
        interactive.animate_flow(**(dict(trajectory=straight()) | change))


BAD_SLIDER = [
    (dict(fmt="{:g}"), TypeError, r"fmt must be callable"),
    (dict(size=(4.0, -1.0)), ValueError, r"size must be a finite number > 0"),
    (dict(size=None), TypeError, r"size must be a number"),
    (dict(dpi=2.5), TypeError, r"dpi must be an int"),
]


@pytest.mark.parametrize("change, exc, match", BAD_SLIDER, ids=[c[2] for c in BAD_SLIDER])
def test_slider_figure_more_bad_input(change, exc, match):
    with pytest.raises(exc, match=match):
        interactive.slider_figure(**(dict(draw=lambda ax, v: None, values=[0.0, 1.0]) | change))


BAD_PATH_SLIDER = [
    (dict(size=-3.0), ValueError, r"size must be a finite number > 0"),
    (dict(box=(math.nan, 1, 0, 1)), ValueError, r"box must hold four finite numbers"),
    (dict(times=[0.0, 0.2, 0.4, 0.6, -0.8]), ValueError, r"times must lie in \[0, 1\]"),
    (dict(samples=torch.full((3, 5, 2), math.inf)), ValueError, r"samples must contain only finite values"),
]


@pytest.mark.parametrize("change, exc, match", BAD_PATH_SLIDER, ids=[c[2] for c in BAD_PATH_SLIDER])
def test_path_slider_more_bad_input(change, exc, match):
    with pytest.raises(exc, match=match):
        interactive.path_slider(**(dict(samples=straight()) | change))

"""The figures that replaced the chapters' own drawing code: transport plans (chapter 4),
densities on a grid (chapter 2), loss curves (chapters 3 and 8) and a model's samples over a
reference (chapter 8). Each draws the artists it should, where it should."""

import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.colors import to_hex

matplotlib.use("Agg")

from fmbook import grids, viz  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


# --------------------------------------------------------------------------- plot_coupling


def test_a_permutation_plan_draws_one_full_width_segment_per_pair():
    x0 = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    x1 = torch.tensor([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0], [3.0, 1.0]])
    partner = [2, 0, 3, 1]
    plan = torch.zeros(4, 4, dtype=torch.float64)
    plan[range(4), partner] = 0.25
    ax = viz.plot_coupling(x0, x1, plan, title="a permutation")
    lines = ax.get_lines()
    assert len(lines) == 4
    drawn = {(tuple(line.get_xdata()), tuple(line.get_ydata())) for line in lines}
    expected = {((float(x0[i, 0]), float(x1[j, 0])), (0.0, 1.0)) for i, j in enumerate(partner)}
    assert drawn == expected
    assert all(line.get_linewidth() == pytest.approx(3.0) for line in lines)
    sources, targets = ax.collections
    assert to_hex(sources.get_facecolor()[0]) == viz.SOURCE_COLOR
    assert to_hex(targets.get_facecolor()[0]) == viz.DATA_COLOR
    assert np.allclose(sources.get_offsets(), x0.numpy()) and np.allclose(targets.get_offsets(), x1.numpy())
    assert ax.get_title() == "a permutation" and list(ax.get_xticks()) == []


def test_segments_are_as_wide_as_their_mass_and_tiny_masses_are_left_out():
    x0 = torch.zeros(1, 2)
    x1 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    plan = torch.tensor([[0.6, 0.3, 1e-5]])  # the third mass is below 1e-3 of the largest
    ax = viz.plot_coupling(x0, x1, plan, width=2.0)
    widths = sorted(line.get_linewidth() for line in ax.get_lines())
    assert widths == pytest.approx([1.0, 2.0])  # 2 * 0.3 / 0.6 and 2 * 0.6 / 0.6
    # control: with no threshold the third segment is drawn, thin
    assert len(viz.plot_coupling(x0, x1, plan, threshold=0.0).get_lines()) == 3


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"plan": torch.ones(3, 2)}, ValueError, r"plan must have shape \(n, m\) = \(2, 3\)"),
        ({"plan": -torch.ones(2, 3)}, ValueError, "plan must hold non-negative masses"),
        ({"plan": torch.zeros(2, 3)}, ValueError, "plan must hold non-negative masses, not all zero"),
        ({"plan": torch.full((2, 3), math.nan)}, ValueError, "plan must contain only finite values"),
        ({"x0": torch.ones(2, 3)}, ValueError, "x0 must have 2 columns"),
        ({"x1": [[0.0, 1.0]]}, TypeError, "x1 must be a torch.Tensor"),
        ({"width": 0.0}, ValueError, "width must be a finite number > 0"),
        ({"threshold": 2.0}, ValueError, r"threshold must lie in \[0, 1\]"),
    ],
)
def test_plot_coupling_bad_input(change, error, match):
    args = {"x0": torch.zeros(2, 2), "x1": torch.ones(3, 2), "plan": torch.ones(2, 3)} | change
    with pytest.raises(error, match=match):
        viz.plot_coupling(**args)


# --------------------------------------------------------------------------- plot_density


def test_a_density_is_drawn_over_its_box_with_row_zero_at_the_bottom():
    xs, ys = torch.linspace(-2, 2, 5), torch.linspace(-1, 1, 3)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")  # (3, 5): rows are y, columns are x
    values = gx + 10 * gy
    box = (-2.0, 2.0, -1.0, 1.0)
    ax = grids.plot_density(values, box=box, title="p")
    (image,) = ax.images
    assert tuple(image.get_extent()) == box
    assert image.origin == "lower"
    assert np.allclose(np.asarray(image.get_array()), values.numpy())
    # the value at (x, y) = (2, -1), which is 2 - 10 = -8, sits in the bottom right pixel: check it
    # against a rendered lookup of matplotlib's own coordinate transform
    ax.figure.canvas.draw()
    pixel = ax.transData.transform((1.9, -0.9))
    assert image.get_cursor_data(type("E", (), {"x": pixel[0], "y": pixel[1]})()) == pytest.approx(-8.0)
    assert ax.get_title() == "p" and not any(line.get_visible() for line in ax.get_xgridlines())
    assert image.get_cmap().name == "magma"


def test_a_residual_with_a_colour_bar():
    fig, ax = plt.subplots()
    grids.plot_density(torch.randn(4, 4), ax=ax, cmap="RdBu_r", colorbar=True)
    assert len(fig.axes) == 2  # the axes and its colour bar
    assert ax.images[0].get_cmap().name == "RdBu_r"


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"values": torch.ones(16)}, ValueError, r"values must have shape \(ny, nx\)"),
        ({"values": torch.ones(1, 4)}, ValueError, r"values must have shape \(ny, nx\) with ny, nx >= 2"),
        ({"values": torch.ones(4, 4).numpy()}, TypeError, "values must be a torch.Tensor"),
        ({"box": (0, 1, 0)}, ValueError, "box must be a tuple"),
        ({"colorbar": "yes"}, TypeError, "colorbar must be True or False"),
        ({"cmap": 3}, TypeError, "cmap must be a str"),
    ],
)
def test_plot_density_bad_input(change, error, match):
    with pytest.raises(error, match=match):
        grids.plot_density(**({"values": torch.ones(4, 4)} | change))


# --------------------------------------------------------------------------- plot_loss_curve


def test_the_loss_curve_and_its_running_mean():
    history = [float(v) for v in torch.rand(100, generator=torch.Generator().manual_seed(0))]
    ax = viz.plot_loss_curve(history, window=10, ylabel="CFM loss")
    raw, mean = ax.get_lines()
    assert np.allclose(raw.get_ydata(), history) and to_hex(raw.get_color()) == viz.TRAJECTORY_COLOR
    # the running mean by cumulative sums (an independent computation)
    sums = np.cumsum([0.0, *history])
    assert np.allclose(mean.get_xdata(), np.arange(9, 100))
    assert np.allclose(mean.get_ydata(), (sums[10:] - sums[:-10]) / 10)
    assert to_hex(mean.get_color()) == viz.MODEL_COLOR
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["per step", "mean of 10"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("step", "CFM loss")


def test_several_runs_share_one_axes_in_the_book_colours():
    fig, ax = plt.subplots()
    viz.plot_loss_curve(torch.ones(5), ax=ax, label="one process")
    viz.plot_loss_curve(np.full(5, 2.0), ax=ax, label="two processes", linestyle="--")
    first, second = ax.get_lines()
    assert [to_hex(first.get_color()), to_hex(second.get_color())] == list(viz.SEQUENCE[:2])
    assert second.get_linestyle() == "--" and np.allclose(second.get_ydata(), 2.0)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["one process", "two processes"]
    # control: an unlabelled curve gets no legend
    assert viz.plot_loss_curve([1.0, 0.5]).get_legend() is None


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"history": []}, ValueError, "history must be a non-empty sequence of finite losses"),
        ({"history": [1.0, math.nan]}, ValueError, "history must be a non-empty sequence of finite losses"),
        ({"history": [[1.0, 2.0]]}, ValueError, "history must be a non-empty sequence"),
        ({"window": 0}, ValueError, "window must be >= 1"),
        ({"window": 4}, ValueError, "window must be at most the 3 steps of history"),
        ({"window": 2.0}, TypeError, "window must be an int"),
        ({"ylabel": None}, TypeError, "ylabel must be a str"),
        ({"ax": "axes"}, TypeError, "ax must be a matplotlib Axes or None"),
    ],
)
def test_plot_loss_curve_bad_input(change, error, match):
    with pytest.raises(error, match=match):
        viz.plot_loss_curve(**({"history": [3.0, 2.0, 1.0]} | change))


# --------------------------------------------------------------------------- plot_model_samples


def test_model_samples_over_a_reference():
    samples, reference = torch.randn(30, 2), torch.randn(50, 2)
    ax = viz.plot_model_samples(samples, reference, title="euler: NFE = 4", size=3.0, reference_size=2.0)
    behind, front = ax.collections
    assert np.allclose(behind.get_offsets(), reference.numpy()) and np.allclose(front.get_offsets(), samples.numpy())
    assert to_hex(behind.get_facecolor()[0]) == viz.TRAJECTORY_COLOR
    assert to_hex(front.get_facecolor()[0]) == viz.MODEL_COLOR
    assert behind.get_sizes()[0] == 2.0 and front.get_sizes()[0] == 3.0
    assert ax.get_title() == "euler: NFE = 4"
    assert len(viz.plot_model_samples(samples).collections) == 1  # control: no reference, one cloud
    with pytest.raises(ValueError, match="reference must have 2 columns"):
        viz.plot_model_samples(samples, torch.randn(5, 3))
    with pytest.raises(TypeError, match="samples must be a torch.Tensor"):
        viz.plot_model_samples(samples.numpy())

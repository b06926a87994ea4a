"""Tests of fmbook.viz: the figures draw what they are given and reject bad input."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from fmbook import grids, viz  # noqa: E402


def test_plot_samples_and_trajectories():
    ax = viz.plot_samples(torch.randn(50, 2), title="samples")
    assert len(ax.collections) == 1 and ax.collections[0].get_offsets().shape == (50, 2)
    ax = viz.plot_trajectories(torch.randn(10, 7, 2), n=5)
    assert len(ax.lines) == 5
    plt.close("all")


def test_velocity_field_quiver_uses_the_field():
    ax = viz.plot_velocity_field(lambda x, t: -x * t[:, None], 0.5, grid=5)
    q = ax.collections[0]
    assert q.U.shape == (25,) or q.U.size == 25
    plt.close("all")


def test_path_histograms_grid():
    xs = [torch.randn(100, 2) for _ in range(3)]
    fig = grids.plot_path_histograms([("a", xs), ("b", xs)], [0.0, 0.5, 1.0])
    assert len(fig.axes) == 6
    plt.close("all")


def test_bad_input():
    with pytest.raises(ValueError, match="x must have 2 columns"):
        viz.plot_samples(torch.randn(5, 3))
    with pytest.raises(ValueError, match="trajectory must have shape"):
        viz.plot_trajectories(torch.randn(5, 2))
    with pytest.raises(ValueError, match="rows must be"):
        grids.plot_path_histograms([("a", [torch.randn(5, 2)])], [0.0, 1.0])

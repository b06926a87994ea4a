"""The figures, animations and widgets of fmbook.viz run, return the right types and check input."""

from __future__ import annotations

import base64
import re

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from IPython.display import HTML

from fmbook import grids, interactive, viz


@pytest.fixture(autouse=True)
def no_figures_left_open():
    before = set(plt.get_fignums())
    yield
    leaked = set(plt.get_fignums()) - before
    plt.close("all")
    assert not leaked, f"figures left open: {leaked}"


def straight_trajectory(b: int = 30, steps: int = 10) -> torch.Tensor:
    """x_t = (1 - t) x0 + t x1 on a grid: shape (b, steps + 1, 2)."""
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(b, 2, generator=g), torch.randn(b, 2, generator=g) + 2
    t = torch.linspace(0, 1, steps + 1)[None, :, None]
    return (1 - t) * x0[:, None] + t * x1[:, None]


def embedded_frames(html: str) -> int:
    return len(re.findall(r"frames\[\d+\] = \"data:image/png;base64", html))


def test_animate_flow_embeds_every_frame_as_javascript_html():
    out = interactive.animate_flow(straight_trajectory(steps=10), data=torch.randn(50, 2), title="flow")
    assert isinstance(out, HTML)
    assert "<script" in out.data and "animation" in out.data.lower()
    assert embedded_frames(out.data) == 11
    # the player needs no network: no stylesheet from a CDN, no icon-font classes left
    assert "http://" not in out.data and "https://" not in out.data
    assert 'class="fa' not in out.data and "\u25b6" in out.data


def test_animate_flow_limits_the_number_of_frames():
    out = interactive.animate_flow(straight_trajectory(steps=100), max_frames=6, box=None)
    assert embedded_frames(out.data) == 6
    assert interactive._frame_indices(101, 6) == [0, 20, 40, 60, 80, 100]
    assert interactive._frame_indices(3, 6) == [0, 1, 2]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"trajectory": torch.zeros(5, 2)}, ValueError, "trajectory must be a tensor of shape"),
        ({"trajectory": torch.zeros(5, 4, 3)}, ValueError, "trajectory must be a tensor of shape"),
        ({"trajectory": torch.zeros(5, 1, 2)}, ValueError, "two times"),
        ({"trajectory": torch.full((5, 3, 2), float("nan"))}, ValueError, "finite"),
        ({"trajectory": [[0.0, 1.0]]}, ValueError, "trajectory must be a tensor"),
        ({"times": [0.0, 1.0]}, ValueError, "times must hold 11 values"),
        ({"n": 0}, ValueError, "n must be >= 1"),
        ({"max_frames": 1}, ValueError, "max_frames must be >= 2"),
        ({"interval": 1.5}, TypeError, "interval must be an int"),
        ({"data": torch.zeros(4, 3)}, ValueError, "data must have 2 columns"),
    ],
)
def test_animate_flow_bad_input(kwargs, error, match):
    args = {"trajectory": straight_trajectory(steps=10)} | kwargs
    with pytest.raises(error, match=match):
        interactive.animate_flow(**args)


def image_panels(box: widgets.VBox) -> list[widgets.Image]:
    stack = box.children[-1]
    assert isinstance(stack, widgets.Stack)
    assert all(isinstance(p, widgets.Image) and p.format == "png" for p in stack.children)
    assert all(bytes(p.value).startswith(b"\x89PNG") for p in stack.children)
    return list(stack.children)


def links_of(model) -> set[tuple[str, str]]:
    """The (source, target) traits of the browser-side links of ``model`` in the saved widget state."""
    state = widgets.Widget.get_manager_state(drop_defaults=False)["state"]
    ref = f"IPY_MODEL_{model.model_id}"
    return {
        (s["state"]["source"][1], s["state"]["target"][1])
        for s in state.values()
        if s["model_name"] == "LinkModel" and ref in (s["state"]["source"][0], s["state"]["target"][0])
    }


def test_slider_figure_prerenders_one_panel_per_value_and_links_them_in_the_browser():
    drawn = []

    def draw(ax, value):
        drawn.append(value)
        ax.plot([0, 1], [0, value])

    box = interactive.slider_figure(draw, [0.0, 0.5, 1.0])
    assert isinstance(box, widgets.VBox)
    assert drawn == [0.0, 0.5, 1.0]
    panels = image_panels(box)
    assert len(panels) == 3 and len({bytes(p.value) for p in panels}) == 3  # three different pictures
    slider = box.children[0]
    assert isinstance(slider, widgets.SelectionSlider) and slider.options == ("0", "0.5", "1")
    # the link runs in the browser (jslink), so the static page stays interactive
    assert links_of(slider) == {("index", "selected_index")}
    # the saved state of the page holds the panels
    state = widgets.Widget.get_manager_state(drop_defaults=True)["state"]
    assert box.children[-1].model_id in state


def test_slider_figure_with_buttons():
    box = interactive.slider_figure(lambda ax, name: ax.set_title(name), ["euler", "midpoint"], label="solver",
                            control="buttons")
    chooser, stack = box.children
    assert isinstance(chooser, widgets.ToggleButtons) and chooser.options == ("euler", "midpoint")
    assert len(image_panels(box)) == 2
    assert links_of(chooser) == {("index", "selected_index")}


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((3, [1]), TypeError, "draw must be callable"),
        ((lambda ax, v: None, []), ValueError, "values must be a non-empty"),
        ((lambda ax, v: None, "abc"), ValueError, "values must be a non-empty"),
        ((lambda ax, v: None, [1], "t", str, "knob"), ValueError, "control must be"),
        ((lambda ax, v: None, [0.1, 0.1]), ValueError, "different label"),
    ],
)
def test_slider_figure_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        interactive.slider_figure(*args)


def test_slider_figure_closes_its_figure_when_draw_fails():
    def draw(ax, value):
        raise RuntimeError("broken panel")

    with pytest.raises(RuntimeError, match="broken panel"):
        interactive.slider_figure(draw, [1])


def test_path_slider_from_sample_sets_and_from_a_trajectory():
    traj = straight_trajectory(steps=20)
    box = interactive.path_slider(traj, data=torch.randn(40, 2))
    assert len(image_panels(box)) == 11
    assert box.children[0].options[0] == "0.00" and box.children[0].options[-1] == "1.00"
    sets = [traj[:, 0], traj[:, -1]]
    box = interactive.path_slider(sets, times=[0.0, 1.0])
    assert len(image_panels(box)) == 2
    close = interactive.path_slider([traj[:, 0], traj[:, 1]], times=[0.5, 0.501])
    assert close.children[0].options == ("0.500", "0.501")


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (([],), {}, "at least one"),
        (([torch.zeros(3, 3)],), {}, r"samples\[i\] must have 2 columns"),
        ((torch.zeros(3, 2),), {}, "samples must be a tensor of shape"),
        (([torch.zeros(3, 2)] * 3,), {"times": [0, 1]}, "times must hold 3 values"),
        (([torch.zeros(3, 2)] * 3,), {"max_frames": 1}, "max_frames must be >= 2"),
    ],
)
def test_path_slider_bad_input(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        interactive.path_slider(*args, **kwargs)


def test_png_panels_decode():
    box = interactive.slider_figure(lambda ax, v: ax.plot([0, v]), [1, 2], dpi=50)
    png = bytes(image_panels(box)[0].value)
    assert base64.b64encode(png)  # a plain PNG that the saved state can carry


def test_image_grid_places_each_image_row_by_row_with_gaps():
    images = torch.arange(6 * 4, dtype=torch.float32).reshape(6, 1, 2, 2)
    grid = grids.image_grid_array(images, rows=2, gap=1)
    assert grid.shape == (2 * 2 + 1, 3 * 2 + 2)
    for k in range(6):
        r, c = divmod(k, 3)
        assert np.array_equal(grid[r * 3: r * 3 + 2, c * 3: c * 3 + 2], images[k, 0].numpy())
    assert np.isnan(grid[2]).all() and np.isnan(grid[:, 2]).all()  # the gaps
    # Negative control: column-major placement (the bug of a wrong permute) puts image 1 elsewhere.
    assert not np.array_equal(grid[3:5, 0:2], images[1, 0].numpy())


def test_plot_image_grid_has_square_pixels_and_labels():
    images = torch.rand(6, 1, 8, 8) * 2 - 1
    ax = grids.plot_image_grid(images, rows=2, row_labels=["a", "b"], col_labels=["input", "sample", "original"])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["input", "sample", "original"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    assert ax.get_aspect() == 1.0
    with pytest.raises(ValueError, match="col_labels must be a sequence of 3 labels"):
        grids.plot_image_grid(images, rows=2, col_labels=["x"])
    with pytest.raises(ValueError, match="do not fill 4 rows"):
        grids.plot_image_grid(images, rows=4)
    plt.close("all")


def test_book_style_is_applied_on_import_and_after_a_reset():
    import matplotlib as mpl

    mpl.rcdefaults()
    assert mpl.rcParams["axes.spines.top"]  # matplotlib's default: the control of the style
    viz.use_book_style()
    for key, value in viz.BOOK_STYLE.items():
        assert mpl.rcParams[key] == mpl.RcParams({key: value})[key], key  # as matplotlib validates it
    assert mpl.rcParams["axes.prop_cycle"].by_key()["color"] == list(viz.SEQUENCE)
    width = mpl.rcParams["figure.figsize"][0]
    assert width * mpl.rcParams["figure.dpi"] <= viz.FULL_WIDTH * 100  # fits the content column


def test_palette_names_each_role_once_and_the_plots_use_it():
    assert set(viz.PALETTE) == {"source", "data", "model", "trajectory", "reference"}
    assert len(set(viz.PALETTE.values())) == len(viz.PALETTE)  # one colour per role
    assert viz.SEQUENCE[:3] == (viz.SOURCE_COLOR, viz.DATA_COLOR, viz.MODEL_COLOR)
    from matplotlib.colors import to_hex

    ax = viz.plot_trajectories(straight_trajectory(b=5, steps=4))
    assert {to_hex(line.get_color()) for line in ax.get_lines()} == {viz.TRAJECTORY_COLOR}
    starts, ends = ax.collections
    assert to_hex(starts.get_facecolor()[0]) == viz.SOURCE_COLOR
    assert to_hex(ends.get_facecolor()[0]) == viz.DATA_COLOR
    plt.close("all")


def rendered_grid(images, rows, gap, **kwargs):
    """The RGB pixels of the grid's axes as rendered, and the axes."""
    ax = grids.plot_image_grid(images, rows=rows, gap=gap, pixel=0.1, **kwargs)
    fig = ax.figure
    fig.set_dpi(100)
    fig.canvas.draw()
    box = ax.get_window_extent()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    height = rgb.shape[0]
    crop = rgb[int(round(height - box.y1)):int(round(height - box.y0)), int(round(box.x0)):int(round(box.x1))]
    return crop, ax


def test_rendered_digits_have_square_pixels_and_white_gaps():
    images = -torch.ones(6, 1, 8, 8)  # all white digits but for a black pixel in each corner cell
    images[:, :, 0, 0] = 1.0
    crop, ax = rendered_grid(images, rows=2, gap=2)
    grid_h, grid_w = 2 * 8 + 2, 3 * 8 + 2 * 2
    # square pixels: the drawn grid's width / height is the pixel count's ratio
    assert abs(crop.shape[1] / crop.shape[0] - grid_w / grid_h) < 0.03
    side = crop.shape[1] / grid_w  # screen pixels per image pixel (10 at pixel=0.1 inch, dpi 100)
    assert abs(side - 10) < 0.5
    dark = crop.mean(axis=2) < 128
    # each black corner pixel is a square of side ~ `side`, and the gaps between images stay white
    first = dark[: int(side * 8), : int(side * 8)]  # the first image
    rows_dark = np.flatnonzero(first.any(axis=1))
    cols_dark = np.flatnonzero(first.any(axis=0))
    assert abs(len(rows_dark) - side) <= 1 and abs(len(cols_dark) - side) <= 1
    gap_columns = crop[:, int(8 * side + 2): int(10 * side - 2)]
    assert (gap_columns > 250).all()  # white
    plt.close("all")
    # Control: without gaps the images touch (the column after image 0 is image 1's black corner).
    crop0, _ = rendered_grid(images, rows=2, gap=0)
    assert (crop0[:10, int(8 * side + 2): int(9 * side - 2)].mean(axis=2) < 128).any()
    plt.close("all")


def test_image_grid_labels_sit_over_their_column_and_row():
    images = torch.rand(6, 1, 8, 8) * 2 - 1
    ax = grids.plot_image_grid(images, rows=2, gap=2, row_labels=["noisy", "clean"],
                             col_labels=["input", "sample", "original"])
    # the column labels are centred on the image columns: 8 pixels + a gap of 2 apart
    assert np.allclose(ax.get_xticks(), [3.5, 13.5, 23.5])
    assert np.allclose(ax.get_yticks(), [3.5, 13.5])
    assert ax.xaxis.get_ticks_position() == "top"
    with pytest.raises(ValueError, match="row_labels must be a sequence of 2 labels"):
        grids.plot_image_grid(images, rows=2, row_labels="ab")
    with pytest.raises(ValueError, match="gap must be"):
        grids.plot_image_grid(images, rows=2, gap=-1)
    with pytest.raises(ValueError, match="value_range must be a pair"):
        grids.plot_image_grid(images, rows=2, value_range=(1.0, -1.0))
    plt.close("all")


def test_animation_and_slider_pictures_carry_their_text_alternative():
    out = interactive.animate_flow(straight_trajectory(steps=4), alt='Noise flowing onto "two moons"')
    assert re.search(r'<img alt="Noise flowing onto &quot;two moons&quot;" id="_anim_img', out.data)
    # control: no alt asked, none added
    assert "alt=" not in interactive.animate_flow(straight_trajectory(steps=4)).data
    box = interactive.slider_figure(lambda ax, v: ax.plot([0, v]), [1, 2], dpi=30, alt=lambda v: f"a line to {v}")
    assert [panel.tooltip for panel in image_panels(box)] == ["a line to 1", "a line to 2"]
    box = interactive.path_slider([torch.randn(20, 2), torch.randn(20, 2)], times=[0.0, 1.0], size=1.0)
    assert [panel.tooltip for panel in image_panels(box)] == [
        "samples of the probability path p_t at t = 0.00", "samples of the probability path p_t at t = 1.00"]
    with pytest.raises(TypeError, match="alt must be a str"):
        interactive.animate_flow(straight_trajectory(steps=4), alt=3)
    plt.close("all")

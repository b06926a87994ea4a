"""scripts/check_figures.py: the quick check of the chapters' figure cells and line widths."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("check_figures", ROOT / "scripts" / "check_figures.py")
check = importlib.util.module_from_spec(spec)
sys.modules["check_figures"] = check
spec.loader.exec_module(check)

GOOD = {"figure": {"caption": "Samples of the model after training.", "name": "fig-ch3-samples"},
        "image": {"alt": "Orange points on two interleaved half-moons"}}


def chapter(tmp_path: Path, *cells: nbformat.NotebookNode) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    path = tmp_path / "03_flow_matching.ipynb"
    nbformat.write(nb, path)
    return path


def test_a_marked_figure_with_short_lines_passes(tmp_path):
    path = chapter(tmp_path, nbformat.v4.new_code_cell("plt.plot(x)\nplt.show()", metadata={"mystnb": GOOD}))
    assert check.check_notebook(path, {}) == []
    assert check.main([str(path)]) == 0


@pytest.mark.parametrize(
    ("source", "mystnb", "message"),
    [
        ("plt.show()", None, "no mystnb.figure metadata"),
        ("interactive.animate_flow(traj)", None, "no mystnb.figure metadata"),
        ("plt.show()", {**GOOD, "image": {"alt": "png"}}, "does not say what the figure shows"),
        ("plt.show()", {**GOOD, "image": {"alt": "Figure"}}, "does not say what the figure shows"),
        ("plt.show()", {**GOOD, "image": {}}, "does not say what the figure shows"),
        ("plt.show()", {**GOOD, "figure": {"name": "fig-ch3-x"}}, "has no caption"),
        ("plt.show()", {**GOOD, "figure": {"caption": "c", "name": "fig-ch4-x"}}, "not of the form fig-ch3-"),
        ("x = 1  # " + "a" * 69, {**GOOD}, "has 78 characters"),
    ],
)
def test_each_problem_is_reported(tmp_path, source, mystnb, message):
    metadata = {"mystnb": mystnb} if mystnb else {}
    path = chapter(tmp_path, nbformat.v4.new_code_cell(source, metadata=metadata))
    problems = check.check_notebook(path, {})
    assert any(message in p for p in problems), problems
    assert check.main([str(path)]) == 1


def test_the_width_limit_is_exact_and_removed_cells_are_skipped(tmp_path):
    fits = "x = 1  # " + "a" * (check.CODE_WIDTH - 9)
    assert len(fits) == check.CODE_WIDTH == 77
    assert check.check_notebook(chapter(tmp_path, nbformat.v4.new_code_cell(fits)), {}) == []
    removed = nbformat.v4.new_code_cell(fits + "a", metadata={"tags": ["remove-cell"]})
    assert check.check_notebook(chapter(tmp_path, removed), {}) == []
    hidden = nbformat.v4.new_code_cell(fits + "a", metadata={"tags": ["hide-input"]})  # a reader can open it
    assert len(check.check_notebook(chapter(tmp_path, hidden), {})) == 1


def test_a_figure_name_used_twice_is_reported(tmp_path):
    one = nbformat.v4.new_code_cell("plt.show()", metadata={"mystnb": GOOD})
    two = nbformat.v4.new_code_cell("plt.show()", metadata={"mystnb": GOOD})
    problems = check.check_notebook(chapter(tmp_path, one, two), {})
    assert len(problems) == 1 and "used in" in problems[0]

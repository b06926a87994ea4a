"""The test command's recording of nbval runs (conftest.py, ``--record-chapters``).

The book build renders the notebooks that nbval executed instead of executing them again, so
what nbval records must be what the build's own executor, nbclient, would have stored: the
same outputs cell by cell (streams, displays, cleared output, results) and the widget state
that the static book needs to draw widgets.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent

CELLS = [
    'print("hello")',
    "from IPython.display import clear_output, display\n"
    'display("shown, then cleared")\nclear_output()\nprint("after the clear")',
    "import ipywidgets\nslider = ipywidgets.IntSlider(value=3)\nslider",
    "1 + 1",
]


def outputs_of(notebook: nbformat.NotebookNode) -> list[list[tuple]]:
    """Each code cell's outputs without their volatile parts (widget model ids)."""
    cells = []
    for cell in notebook.cells:
        summary = []
        for output in cell.outputs:
            data = {k: v for k, v in output.get("data", {}).items() if k != "application/vnd.jupyter.widget-view+json"}
            summary.append((output.output_type, output.get("name"), output.get("text"), data))
        cells.append(summary)
    return cells


def widget_models(notebook: nbformat.NotebookNode) -> dict[str, dict]:
    return notebook.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]


def run_nbval(path: Path, recorded_folder: Path) -> subprocess.CompletedProcess:
    """``pytest --nbval-lax --record-chapters`` on one notebook, with the book's conftest.py as a plugin."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(path),
        "-p",
        "conftest",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:xdist",
        "--nbval-lax",
        "--nbval-current-env",
        "--record-chapters",
        str(recorded_folder),
        "-q",
    ]
    return subprocess.run(command, cwd=path.parent, env=env, capture_output=True, text=True, timeout=300)


def test_recorded_nbval_run_matches_nbclient(tmp_path: Path) -> None:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "tiny.ipynb"
    nbformat.write(notebook, path)
    recorded_folder = tmp_path / "recorded"
    run = run_nbval(path, recorded_folder)
    assert run.returncode == 0, run.stdout + run.stderr
    recorded = nbformat.read(recorded_folder / "tiny.ipynb", as_version=4)

    reference = nbformat.read(path, as_version=4)
    NotebookClient(
        reference, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()

    assert outputs_of(recorded) == outputs_of(reference)
    assert outputs_of(recorded)[1] == [("stream", "stdout", "after the clear\n", {})]
    assert [c.execution_count for c in recorded.cells] == [1, 2, 3, 4]
    assert recorded.metadata["language_info"]["pygments_lexer"] == "ipython3"
    view = recorded.cells[2].outputs[0].data["application/vnd.jupyter.widget-view+json"]
    models = widget_models(recorded)
    assert view["model_id"] in models and models[view["model_id"]]["model_name"] == "IntSliderModel"
    assert models[view["model_id"]]["state"]["value"] == 3
    assert sorted(m["model_name"] for m in models.values()) == sorted(
        m["model_name"] for m in widget_models(reference).values()
    )


def test_a_failing_notebook_is_not_recorded(tmp_path: Path) -> None:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in ("x = 1", "assert x == 2")])
    path = tmp_path / "failing.ipynb"
    nbformat.write(notebook, path)
    run = run_nbval(path, tmp_path / "recorded")
    assert run.returncode == 1, run.stdout + run.stderr
    assert not (tmp_path / "recorded" / "failing.ipynb").exists()

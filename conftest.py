"""pytest configuration shared by the unit tests and the chapters run under nbval.

``--record-chapters DIR`` keeps what nbval executes: each chapter that runs through without a
failed or skipped cell is written to ``DIR`` with its outputs and widget state, exactly as
nbclient (the book build's executor) would have stored them, so that
``scripts/execute_chapters.py --recorded DIR`` can hand it to the build instead of running the
chapter a second time.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import nbformat
import pytest


def pytest_addoption(parser):
    parser.addoption(
        "--record-chapters",
        metavar="DIR",
        default=None,
        help="write every chapter that nbval ran without a failure, with its outputs, to DIR",
    )


def pytest_collection_modifyitems(items):
    # nbval waits only 5 s for a cell's output messages after the cell finishes; on a busy
    # machine that spurious limit can fail a correct chapter, so allow a minute.
    for item in items:
        if hasattr(item, "output_timeout"):
            item.output_timeout = 60


class ChapterRecorder:
    """Collects the kernel messages nbval reads for one notebook, cell by cell."""

    def __init__(self, notebook_item) -> None:
        self.notebook_item = notebook_item
        self.messages: list[dict] = []  # every iopub message nbval has read, in order
        self.by_cell: dict[int, list[dict]] = {}  # cell index -> the messages of its execution
        self.seconds = 0.0
        self.complete = True  # no cell failed or was skipped
        read = notebook_item.get_kernel_message

        def get_kernel_message(timeout=None, stream="iopub"):
            message = read(timeout=timeout, stream=stream)
            if stream == "iopub":
                self.messages.append(message)
            return message

        notebook_item.get_kernel_message = get_kernel_message

    def cell_ran(self, cell, first_message: int, seconds: float) -> None:
        """Assign the messages read since ``first_message`` to ``cell`` (those of its request)."""
        new = self.messages[first_message:]
        request = next((m["parent_header"].get("msg_id") for m in new if m["msg_type"] == "execute_input"), None)
        index = next(i for i, c in enumerate(self.notebook_item.nb.cells) if c is cell)
        self.by_cell[index] = [m for m in new if m["parent_header"].get("msg_id") == request]
        self.seconds += seconds

    def executed_notebook(self):
        """The notebook with the outputs, execution counts and widget state of nbval's run."""
        from ipykernel.ipkernel import IPythonKernel
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionComplete

        notebook = copy.deepcopy(self.notebook_item.nb)
        notebook.metadata["language_info"] = copy.deepcopy(IPythonKernel.language_info)
        client = NotebookClient(notebook, record_timing=False, store_widget_state=True)
        client.reset_execution_trackers()
        count = 0
        for index, cell in enumerate(notebook.cells):
            if cell.cell_type != "code":
                continue
            cell.outputs, cell.execution_count = [], None
            client.clear_before_next_output = False  # as nbclient starts every cell
            for message in self.by_cell[index]:
                try:
                    client.process_message(message, cell, index)
                except CellExecutionComplete:
                    break
            # nbval runs cells without storing history, so the kernel numbers every cell 1:
            # number them as a run of the notebook from the top would.
            count += 1
            cell.execution_count = count
            for output in cell.outputs:
                if output.output_type == "execute_result":
                    output.execution_count = count
        client.set_widgets_metadata()
        return notebook


def _recorder(item) -> ChapterRecorder | None:
    if item.config.getoption("record_chapters") is None or not hasattr(item, "cell"):
        return None  # not recording, or not an nbval cell
    notebook_item = item.parent
    if not hasattr(notebook_item, "_chapter_recorder"):
        notebook_item._chapter_recorder = ChapterRecorder(notebook_item)
    return notebook_item._chapter_recorder


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    recorder = _recorder(item)
    if recorder is None:
        yield
        return
    first, start = len(recorder.messages), time.perf_counter()
    yield
    recorder.cell_ran(item.cell, first, time.perf_counter() - start)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    recorder = _recorder(item)
    report = outcome.get_result()
    if recorder is not None and (report.failed or report.skipped):
        recorder.complete = False


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    recorder = _recorder(item)
    last_cell = nextitem is None or nextitem.parent is not item.parent
    if recorder is not None and last_cell and recorder.complete:
        folder = Path(item.config.getoption("record_chapters"))
        folder.mkdir(parents=True, exist_ok=True)
        notebook = recorder.executed_notebook()
        notebook.metadata["nbval_execution_seconds"] = round(recorder.seconds, 1)
        nbformat.write(notebook, str(folder / Path(str(item.parent.fspath)).name))
    yield

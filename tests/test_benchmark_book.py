"""benchmarks/book.py: the budgets it applies and the verdict of its table."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("book_benchmark", ROOT / "benchmarks" / "book.py")
book = importlib.util.module_from_spec(spec)
spec.loader.exec_module(book)


def row(name, wall, peak, error=None):
    path = str(ROOT / "chapters" / name)
    return {"notebook": path, "wall_s": wall, "cpu_s": wall / 2, "peak_mb": peak, "error": error}


def test_budgets_per_chapter():
    assert book.wall_budget("chapters/03_flow_matching.ipynb") == 240
    assert book.wall_budget("chapters/08_practice.ipynb") == 360
    assert book.wall_budget("chapters/appendix/solutions.ipynb") == 240


def test_verdicts(capsys):
    assert book.report([row("01_a.ipynb", 100, 900), row("08_b.ipynb", 300, 1500)])
    assert not book.report([row("03_a.ipynb", 241, 900)])  # over 4 minutes
    assert not book.report([row("03_a.ipynb", 100, 2100)])  # over 2 GB
    assert not book.report([row("03_a.ipynb", 10, 100, error="CellExecutionError")])
    assert not book.report([row(f"0{i}_c.ipynb", 200, 500) for i in range(1, 6)])  # book over 15 minutes
    assert not book.report([row("03_a.ipynb", float("nan"), float("nan"), error="runner exited 1")])
    out = capsys.readouterr().out
    assert "over time" in out and "over memory" in out and "FAILED" in out


def test_memory_poller_sees_a_child_process():
    # A child that holds 200 MB for two seconds: the poller's peak must include it, and the
    # memory it counts for a process (PSS) is never more than that process's resident set.
    import subprocess
    import sys

    import psutil

    script = "import time, numpy as np; a = np.ones(200 * 2**20 // 8); time.sleep(2)"
    with book.TreeMemoryPoller(interval=0.1) as poller:
        subprocess.run([sys.executable, "-c", script], check=True)
    assert poller.peak_bytes > 200 * 2**20
    me = psutil.Process()
    assert 0 < poller._resident(me) <= me.memory_info().rss

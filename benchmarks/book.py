"""Run every chapter of the book and check its budgets of time and memory.

Usage (from the repository root)::

    python benchmarks/book.py                    # every notebook under chapters/
    python benchmarks/book.py chapters/03_*.ipynb --threads 2 --json times.json

Each chapter is executed with nbclient, one at a time, in a fresh subprocess of its own, so
that the peak memory of each is measured on its own: the memory of the kernel and of any
process it starts (proportional set sizes, so that the libraries they share count once) is
summed, polled with psutil every 0.5 s, and checked against
``getrusage(RUSAGE_CHILDREN).ru_maxrss`` of the runner (the exact peak of the largest process)
once the kernel has exited. CPU time is the kernel's user + system time. (Polling every 50 ms
took 7 % of a core, which slowed the chapters that run two torch threads on two cores.)

Budgets (on a 2-core laptop CPU): each chapter < 4 min of wall time (chapter 8 < 6 min),
peak memory < 2 GB (the Binder limit), the whole book < 15 min. On a shared machine the wall
time is inflated by the other work running there; the CPU time is printed beside it. The exit
status is 1 when a chapter fails or a budget is exceeded.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHAPTER_BUDGET_S = 240.0
LONG_CHAPTERS = {8: 360.0}  # chapter number -> wall-time budget in seconds
PEAK_BUDGET_MB = 2000.0
BOOK_BUDGET_S = 900.0


def chapter_number(path: str) -> int | None:
    match = re.match(r"(\d+)_", Path(path).name)
    return int(match.group(1)) if match else None


def wall_budget(path: str) -> float:
    return LONG_CHAPTERS.get(chapter_number(path), CHAPTER_BUDGET_S)


class TreeMemoryPoller:
    """Polls the summed memory and CPU time of this process's descendants (the kernel) in a thread."""

    def __init__(self, interval: float = 0.5) -> None:
        import psutil

        self.psutil = psutil
        self.me = psutil.Process()
        self.interval = interval
        self.peak_bytes = 0
        self.cpu = {}  # pid -> last user + system seconds seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _resident(self, process) -> int:
        """Bytes of memory that ``process`` holds: its proportional set size (PSS) where Linux
        reports it, in which a page shared by k processes (torch's libraries, say) counts 1/k, as
        a container's memory limit counts it once; its resident set size elsewhere."""
        try:
            return process.memory_full_info().pss
        except (AttributeError, self.psutil.AccessDenied):
            return process.memory_info().rss

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = 0
            for child in self.me.children(recursive=True):
                try:
                    rss += self._resident(child)
                    t = child.cpu_times()
                    self.cpu[child.pid] = t.user + t.system
                except self.psutil.Error:
                    continue
            self.peak_bytes = max(self.peak_bytes, rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeMemoryPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_one(notebook: str, timeout: float) -> dict:
    """Execute one notebook in this process's kernel subprocess; return its measurements."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(Path(notebook).resolve().parent)}},
    )
    error = None
    start = time.perf_counter()
    with TreeMemoryPoller() as poller:
        try:
            client.execute()
        except Exception as exc:  # report the failure in the table, go on with the next chapter
            text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
            error = f"{type(exc).__name__}: {text.splitlines()[-1] if text else ''}"
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the kernel, once it has been waited for
    cpu = max(usage.ru_utime + usage.ru_stime, sum(poller.cpu.values()))
    peak_mb = max(poller.peak_bytes / 2**20, usage.ru_maxrss / 1024)  # ru_maxrss is in KiB on Linux
    return {"notebook": notebook, "wall_s": wall, "cpu_s": cpu, "peak_mb": peak_mb, "error": error}


def measure(notebook: str, timeout: float, threads: int) -> dict:
    """Run :func:`run_one` in a fresh subprocess and read back its JSON line."""
    env = dict(os.environ)
    env.setdefault("MPLBACKEND", "Agg")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if threads > 0:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, __file__, "--run-one", notebook, "--timeout", str(timeout)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    return {"notebook": notebook, "wall_s": float("nan"), "cpu_s": float("nan"), "peak_mb": float("nan"),
            "error": f"runner exited {proc.returncode}: {tail[0]}"}


def report(rows: list[dict]) -> bool:
    """Print the table; return True when every chapter ran and every budget holds."""
    ok = True
    header = f"{'chapter':<34} {'wall s':>8} {'budget':>7} {'CPU s':>8} {'peak MB':>8} {'budget':>7}  status"
    print(header)
    print("-" * len(header))
    for r in rows:
        budget = wall_budget(r["notebook"])
        problems = []
        if r["error"]:
            problems.append("FAILED " + r["error"][:60])
        if not r["wall_s"] <= budget:
            problems.append("over time")
        if not r["peak_mb"] <= PEAK_BUDGET_MB:
            problems.append("over memory")
        ok &= not problems
        name = str(Path(r["notebook"]).relative_to(ROOT)) if Path(r["notebook"]).is_relative_to(ROOT) else r["notebook"]
        print(
            f"{name:<34} {r['wall_s']:>8.1f} {'<' + format(budget, '.0f'):>7} {r['cpu_s']:>8.1f} "
            f"{r['peak_mb']:>8.0f} {'<' + format(PEAK_BUDGET_MB, '.0f'):>7}  {'; '.join(problems) or 'ok'}"
        )
    total_wall = sum(r["wall_s"] for r in rows)
    total_cpu = sum(r["cpu_s"] for r in rows)
    peak = max((r["peak_mb"] for r in rows), default=0.0)
    book_ok = total_wall <= BOOK_BUDGET_S
    ok &= book_ok
    print("-" * len(header))
    label = f"whole book ({len(rows)} notebooks)"
    print(
        f"{label:<34} {total_wall:>8.1f} {'<' + format(BOOK_BUDGET_S, '.0f'):>7} "
        f"{total_cpu:>8.1f} {peak:>8.0f} {'<' + format(PEAK_BUDGET_MB, '.0f'):>7}  {'ok' if book_ok else 'over time'}"
    )
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="notebooks to run (default: every one under chapters/)")
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds per cell before giving up")
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of the kernels (0: leave as is)")
    parser.add_argument("--json", help="also write the measurements to this file")
    parser.add_argument("--run-one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_one:
        print(json.dumps(run_one(args.run_one, args.timeout)))
        return 0
    notebooks = args.notebooks or sorted(glob.glob(str(ROOT / "chapters" / "**" / "*.ipynb"), recursive=True))
    notebooks = [str(Path(n).resolve()) for n in notebooks if ".ipynb_checkpoints" not in n]
    if not notebooks:
        print("no chapter notebooks found under chapters/")
        return 0
    rows = []
    for nb in notebooks:
        print(f"running {Path(nb).name} ...", file=sys.stderr, flush=True)
        rows.append(measure(nb, args.timeout, args.threads))
    ok = report(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""CPU time and peak memory of chapters 6 and 7, each executed in a fresh kernel.

Run from the repository root:  python benchmarks/chapters_6_7_cost.py [--threads N]
Target of the book: under 4 minutes of CPU time (user + sys) and under 2 GB of peak memory
per chapter on a 2-core laptop. CPU time, not wall-clock time, is what is compared, because
wall-clock time depends on whatever else the machine is doing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap

CHAPTERS = ["chapters/06_score_matching_sde.ipynb", "chapters/07_ddpm.ipynb"]

RUNNER = textwrap.dedent(
    """
    import sys, nbformat
    from nbclient import NotebookClient
    nb = nbformat.read(sys.argv[1], as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", allow_errors=False).execute()
    """
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for the kernel")
    args = parser.parse_args()
    env = dict(os.environ, MPLBACKEND="Agg")
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    for path in CHAPTERS:
        # Each chapter in its own child process, so that RUSAGE_CHILDREN measures it alone.
        code = (
            "import resource, subprocess, sys\n"
            f"subprocess.run([sys.executable, '-c', {RUNNER!r}, {path!r}], check=True)\n"
            "r = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
            "print(r.ru_utime + r.ru_stime, r.ru_maxrss)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
        cpu, maxrss_kb = out.stdout.split()[-2:]
        cpu, peak_gb = float(cpu), int(maxrss_kb) / 2**20
        status = "ok" if cpu < 240 and peak_gb < 2 else "OVER TARGET"
        print(f"{path}: CPU {cpu:6.1f} s, peak memory {peak_gb:.2f} GB  [{status}]")


if __name__ == "__main__":
    main()

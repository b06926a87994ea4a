#!/usr/bin/env bash
# Runs every test of the book: lint, the unit tests of fmbook, every chapter under nbval,
# the book build with warnings as errors, the built book read in headless Chromium, and the
# reader notebooks (what Binder, Colab and JupyterLab show) opened in JupyterLab.
# Each chapter is executed once: nbval's run of it, outputs and widget state included, is
# recorded (conftest.py) and handed to the build through its execution cache; a chapter that
# nbval did not record is executed again for the build.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
start=$SECONDS
echo "== ruff"
ruff check .
echo "== unit tests and chapters (nbval)"
# Two workers, one thread each: two small-network chapters side by side fill two cores.
recorded="$root/_build/.nbval_executed"
rm -rf "$recorded"
OMP_NUM_THREADS=1 python -m pytest -n 2 --dist loadfile -q --durations=15 --record-chapters "$recorded"
echo "== the chapters' nbval runs into the book's execution cache (any other chapter executed)"
python "$root/scripts/execute_chapters.py" --jobs 2 --recorded "$recorded"
echo "== book build (warnings are errors)"
"$root/scripts/offline-assets.sh"
rm -rf _build/html
jupyter-book build . -W --keep-going
echo "== reader notebooks (JupyterLab, Binder, Colab), checked against the built pages"
python "$root/scripts/reader_notebooks.py" --out "$root/_build/reader" --html "$root/_build/html"
echo "== browser test (headless Chromium)"
"$root/scripts/browser-test"
echo "== the reader notebooks in JupyterLab (headless Chromium)"
python "$root/scripts/jupyterlab_test.py" --executed "$recorded"
echo "== all tests passed in $((SECONDS - start)) s; the book is at file://$root/_build/html/index.html"

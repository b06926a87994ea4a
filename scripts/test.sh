#!/usr/bin/env bash
# Runs every test of the book: lint, the unit tests of fmbook, every chapter under nbval,
# the book build with warnings as errors (its chapters executed beforehand, two at a time, into
# the build's own execution cache), and the built book read in headless Chromium.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
start=$SECONDS
echo "== ruff"
ruff check .
echo "== unit tests and chapters (nbval)"
# Two workers, one thread each: two small-network chapters side by side fill two cores.
OMP_NUM_THREADS=1 python -m pytest -n 2 --dist loadfile -q --durations=15
echo "== every chapter executed into the book's execution cache, two at a time"
python "$root/scripts/execute_chapters.py" --jobs 2
echo "== book build (warnings are errors)"
"$root/scripts/offline-assets.sh"
rm -rf _build/html
jupyter-book build . -W --keep-going
echo "== browser test (headless Chromium)"
"$root/scripts/browser-test"
echo "== all tests passed in $((SECONDS - start)) s; the book is at file://$root/_build/html/index.html"

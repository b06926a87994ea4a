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
echo "== actionlint (the workflows)"
"$root/scripts/actionlint"
# Chromium: for the browser checks' and the PDF's unit tests, the browser test and the JupyterLab test.
browser_tests=()
if [ -z "${FMBOOK_SKIP_BROWSER:-}" ]; then
  "$root/scripts/install-chromium"
else
  browser_tests=(--ignore=tests/test_browser_checks.py --ignore=tests/test_pdf.py)
  echo "== NOT RUN (FMBOOK_SKIP_BROWSER is set): ${browser_tests[*]}"
fi
echo "== unit tests and chapters (nbval)"
# Two workers, one thread each: two small-network chapters side by side fill two cores.
recorded="$root/_build/.nbval_executed"
rm -rf "$recorded"
OMP_NUM_THREADS=1 python -m pytest -n 2 --dist loadfile -q --durations=15 --record-chapters "$recorded" \
  "${browser_tests[@]}"
echo "== the chapters' nbval runs into the book's execution cache (any other chapter executed)"
python "$root/scripts/execute_chapters.py" --jobs 2 --recorded "$recorded"
# The reader notebooks are opened in JupyterLab while the book builds (the build is one process;
# the JupyterLab test mostly waits on the browser): its report is printed after the browser test.
lab_log="$root/_build/jupyterlab-test.log"
mkdir -p "$root/_build"
lab_pid=""
if [ -z "${FMBOOK_SKIP_BROWSER:-}" ]; then
  python "$root/scripts/jupyterlab_test.py" --executed "$recorded" > "$lab_log" 2>&1 &
  lab_pid=$!
fi
echo "== book build (warnings are errors)"
"$root/scripts/offline-assets.sh"
rm -rf _build/html
jupyter-book build . -W --keep-going
echo "== reader notebooks (JupyterLab, Binder, Colab), checked against the built pages"
python "$root/scripts/reader_notebooks.py" --out "$root/_build/reader" --html "$root/_build/html"
if [ -n "${FMBOOK_SKIP_BROWSER:-}" ]; then
  echo "== NOT RUN: the browser test and the JupyterLab test (FMBOOK_SKIP_BROWSER is set); the book is not fully tested"
else
  echo "== browser test (headless Chromium)"
  "$root/scripts/browser-test"
  echo "== the PDF of the book (Chromium prints the built pages), published with the site"
  python "$root/scripts/build_pdf.py" --html "$root/_build/html" --out "$root/_build/html/fmbook.pdf"
  echo "== the reader notebooks in JupyterLab (headless Chromium), run during the build"
  lab_status=0
  wait "$lab_pid" || lab_status=$?
  cat "$lab_log"
  [ "$lab_status" -eq 0 ] || { echo "the JupyterLab test failed"; exit 1; }
fi
echo "== all tests passed in $((SECONDS - start)) s; the book is at file://$root/_build/html/index.html"

#!/usr/bin/env bash
# Builds the HTML book: sets up .venv, executes every chapter, prints the page to open.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$root/scripts/offline-assets.sh"
# Execute the chapters two at a time into the build's execution cache; the build reuses them.
python "$root/scripts/execute_chapters.py" --jobs 2
jupyter-book build . --keep-going "$@"
# The notebooks a reader opens in JupyterLab, Binder or Colab (plain Jupyter markdown), served
# by the pages' download buttons; their equation numbers are checked against the pages.
python "$root/scripts/reader_notebooks.py" --out "$root/_build/reader" --html "$root/_build/html"
echo
echo "The book is built. Open: file://$root/_build/html/index.html"

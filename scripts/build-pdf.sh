#!/usr/bin/env bash
# Builds the PDF of the whole book from the built HTML book (run scripts/build-book.sh first):
# headless Chromium prints every page once MathJax has typeset it, pypdf joins them after a
# contents page, with a bookmark per chapter. Writes _build/html/fmbook.pdf (published with
# the site) unless --out says otherwise. Installs Chromium when it is missing (CHROMIUM=path
# names one of your own).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$root/scripts/install-chromium"
python "$root/scripts/build_pdf.py" --html "$root/_build/html" --out "$root/_build/html/fmbook.pdf" "$@"

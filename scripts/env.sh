#!/usr/bin/env bash
# Creates (once) the book's virtual environment in .venv and installs the pinned
# requirements and fmbook into it. Sourced by build-book.sh and test.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "== creating the virtual environment .venv"
  "$python" -m venv .venv
fi
stamp=.venv/.fmbook-installed
want="$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "== installing the pinned requirements and fmbook"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r requirements.txt
  .venv/bin/python -m pip install --quiet --no-deps -e .
  echo "$want" > "$stamp"
fi
export PATH="$root/.venv/bin:$PATH"
# Small networks train fastest with the two threads of a laptop-class CPU, not more.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"

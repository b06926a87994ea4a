#!/usr/bin/env bash
# Creates (once) the book's virtual environment in .venv and installs the pinned
# requirements and fmbook into it. Sourced by build-book.sh and test.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
# The pinned requirements (numpy 2.4, the book's toolchain) need Python 3.11 or newer.
check_python() {  # $1: an interpreter; $2: what to do about it
  local found
  if ! found="$("$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)"; then
    echo "error: no Python interpreter '$1'. $2" >&2
    return 1
  fi
  if ! "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "error: the book needs Python >= 3.11; '$1' is Python $found. $2" >&2
    return 1
  fi
}
if [ -x .venv/bin/python ]; then
  check_python .venv/bin/python "Remove .venv (rm -rf .venv) and run again with PYTHON=python3.11 (or newer)." || exit 1
else
  check_python "$python" "Install Python 3.11 or newer (Debian/Ubuntu: apt-get install python3.11 python3.11-venv; or pyenv, uv, conda) and run again with PYTHON=/path/to/python3.11." || exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "== creating the virtual environment .venv"
  "$python" -m venv .venv
fi
stamp=.venv/.fmbook-installed
want="$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "== installing the pinned requirements and fmbook"
  .venv/bin/python -m pip install --quiet --upgrade pip
  if [ -n "${FMBOOK_CPU_TORCH:-}" ]; then
    # The CPU build of the pinned torch (about 0.8 GB installed) instead of the default
    # build, which on Linux brings the CUDA libraries (several GB).
    torch_pin="$(grep -E '^torch==' requirements.txt)"
    .venv/bin/python -m pip install --quiet "$torch_pin" --index-url https://download.pytorch.org/whl/cpu
  fi
  .venv/bin/python -m pip install --quiet -r requirements.txt
  .venv/bin/python -m pip install --quiet --no-deps -e .
  echo "$want" > "$stamp"
fi
export PATH="$root/.venv/bin:$PATH"
# Small networks train fastest with the two threads of a laptop-class CPU, not more.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
# Idle OpenMP threads sleep instead of spinning, so parallel runs do not starve each other.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

"""scripts/env.sh refuses a Python older than 3.11 and says what to do."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fake_python(tmp_path: Path, version: str) -> Path:
    """An interpreter that reports ``version`` and fails the version check as that version would."""
    major, minor = (int(v) for v in version.split("."))
    path = tmp_path / f"python{version}"
    ok = 0 if (major, minor) >= (3, 11) else 1
    path.write_text(f'#!/bin/sh\ncase "$2" in *print*) echo {version};; *) exit {ok};; esac\n')
    path.chmod(0o755)
    return path


def source_env(tmp_path: Path, python: Path) -> subprocess.CompletedProcess:
    (tmp_path / "scripts").mkdir(exist_ok=True)
    shutil.copy(ROOT / "scripts" / "env.sh", tmp_path / "scripts" / "env.sh")
    return subprocess.run(["bash", "-c", "source scripts/env.sh"], cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHON": str(python)})


def test_an_old_python_is_refused_with_what_to_do(tmp_path):
    done = source_env(tmp_path, fake_python(tmp_path, "3.9"))
    assert done.returncode == 1
    assert "needs Python >= 3.11" in done.stderr and "is Python 3.9" in done.stderr and "PYTHON=" in done.stderr
    assert not (tmp_path / ".venv").exists()  # refused before creating anything


def test_the_check_accepts_this_python():
    check = subprocess.run(["sed", "-n", "/^check_python()/,/^}/p", str(ROOT / "scripts" / "env.sh")],
                           capture_output=True, text=True).stdout
    assert "check_python" in check
    done = subprocess.run(["bash", "-c", f"{check}\ncheck_python {sys.executable} 'do this'"], capture_output=True,
                          text=True)
    assert done.returncode == 0 and not done.stderr  # the book's Python (3.11) passes

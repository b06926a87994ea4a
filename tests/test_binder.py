"""Binder's environment (binder/) matches the book's pins, and repo2docker's plan is right."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"


def pins(path: Path) -> tuple[dict[str, str], list[str]]:
    """The ``name==version`` pins of a requirements file (names normalised) and its other lines."""
    found, other = {}, []
    for line in path.read_text().splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line)
        if m:
            found[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
        else:
            other.append(line)
    return found, other


def test_binder_pins_are_the_books_pins_with_the_cpu_build_of_torch():
    book, book_other = pins(ROOT / "requirements.txt")
    binder, binder_other = pins(ROOT / "binder" / "requirements.txt")
    assert book_other == [], f"requirements.txt should hold only name==version pins, found {book_other}"
    assert "torch" in book and "+" not in book["torch"]
    assert binder["torch"] == book["torch"] + "+cpu"
    other_versions = sorted(k for k in binder if k != "torch" and binder[k] != book.get(k))
    assert not other_versions, f"binder/requirements.txt pins other versions than the book: {other_versions}"
    # No local path (such as "-e ."): repo2docker then installs the file before copying the repository.
    assert binder_other == [CPU_INDEX]


def test_binder_holds_the_readers_runtime_and_no_build_or_test_tool():
    binder, _ = pins(ROOT / "binder" / "requirements.txt")
    for needed in ("torch", "torchdiffeq", "numpy", "scipy", "matplotlib", "scikit-learn", "pot", "tqdm",
                   "ipywidgets", "ipykernel"):
        assert needed in binder, f"a reader needs {needed}"
    tools = {"sphinx", "jupyter-book", "myst-nb", "pytest", "nbval", "playwright", "ruff", "hypothesis",
             "jupyter-repo2docker", "docker", "coverage", "pytest-xdist"}
    assert not tools & set(binder), f"build and test tools in Binder's image: {sorted(tools & set(binder))}"


def test_binder_requirements_are_the_closure_of_the_runtime():
    # Every package that the runtime packages require is pinned (the script's --check recomputes
    # the closure from the installed metadata and compares it with the file).
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "binder_requirements.py"), "--check"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_postbuild_installs_fmbook_without_its_dependencies():
    post = ROOT / "binder" / "postBuild"
    assert post.stat().st_mode & 0o111, "postBuild must be executable"
    assert "pip install --no-cache-dir --no-deps ." in post.read_text()


def test_binder_runtime_is_python_3_11():
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == "python-3.11"
    requires = re.search(r'requires-python\s*=\s*">=3\.(\d+)"', (ROOT / "pyproject.toml").read_text())
    assert requires and int(requires.group(1)) <= 11, "fmbook must support the Python of Binder"


def repo2docker_plan() -> str:
    """repo2docker's build plan (the Dockerfile it would build), without building or running."""
    done = subprocess.run(
        [sys.executable, "-m", "repo2docker", "--no-build", "--no-run", "--debug", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout + done.stderr


@pytest.mark.skipif(importlib.util.find_spec("repo2docker") is None, reason="jupyter-repo2docker is not installed")
def test_repo2docker_plan_uses_python_3_11_the_binder_requirements_and_installs_fmbook():
    plan = repo2docker_plan()
    assert "python=3.11" in plan
    install = plan.find('pip install --no-cache-dir -r "binder/requirements.txt"')
    assert install > 0, "the plan does not install binder/requirements.txt"
    # The requirements are installed before the repository is copied (a chapter's edit reuses that
    # layer), and postBuild, which installs fmbook, runs after.
    copy_repo = plan.find("COPY --chown=0:0 src/ ${REPO_DIR}/")
    assert 0 < install < copy_repo
    post_build = plan.find("postBuild", copy_repo)
    assert post_build > copy_repo, "postBuild does not run after the repository is copied"
    assert "requirements.txt" not in plan.replace("binder/requirements.txt", ""), "the root requirements.txt is used"

"""Write binder/requirements.txt: the pins a reader's Binder image needs to run the chapters.

The runtime packages (``RUNTIME`` below: fmbook's dependencies and the Jupyter kernel) and
everything they require, closed under their ``Requires-Dist`` for Linux and Python 3.11, with
the versions pinned in requirements.txt and the CPU build of torch. Nothing that only builds
or tests the book (Sphinx, Jupyter Book, pytest, playwright, ruff, repo2docker, ...) goes in.
The file lists no local path, so repo2docker installs it before it copies the repository, and
a change to a chapter does not rebuild the environment; binder/postBuild installs fmbook.

Run with the book's environment (.venv), whose installed metadata gives the dependency graph:
``python scripts/binder_requirements.py`` (``--check`` fails when the file is out of date).
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
#: What a reader runs: fmbook's own dependencies, and a kernel for the chapters.
RUNTIME = ["torch", "torchdiffeq", "numpy", "scipy", "matplotlib", "scikit-learn", "POT", "tqdm", "ipywidgets",
           "ipykernel"]
#: Installed in every Python environment (Binder's included) and not pinned by the book.
PROVIDED = {"pip", "setuptools", "wheel"}
CPU_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"
#: The environment of Binder's image, for the requirements' markers.
MARKERS = dict(default_environment(), sys_platform="linux", platform_system="Linux", python_version="3.11",
               python_full_version="3.11.9", implementation_name="cpython", platform_python_implementation="CPython")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def book_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[normalise(name)] = version
    return pins


def closure(roots: list[str]) -> set[str]:
    """The normalised names of ``roots`` and of everything they require here (no extras)."""
    seen: set[str] = set()
    todo = [normalise(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for spec in metadata.requires(name) or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate(dict(MARKERS, extra="")):
                todo.append(normalise(req.name))
    return seen


def installed_bytes(name: str) -> int:
    """The bytes of the files that the installed distribution ``name`` lists in its RECORD."""
    files = metadata.distribution(name).files or []
    return sum(f.size or 0 for f in files)


def render() -> str:
    pins = book_pins()
    names = closure(RUNTIME) - PROVIDED
    missing = sorted(names - set(pins))
    if missing:
        raise SystemExit(f"requirements.txt pins none of {missing}, which the runtime needs")
    spelled = {normalise(line.split("==")[0]): line.split("==")[0]
               for line in (ROOT / "requirements.txt").read_text().splitlines() if "==" in line}
    lines = [
        "# Binder's environment: what a reader needs to run the chapters, pinned as in ../requirements.txt,",
        "# with the CPU build of torch. Written by scripts/binder_requirements.py (do not edit by hand);",
        "# no local path here, so repo2docker installs it before copying the repository. postBuild installs",
        "# fmbook. tests/test_binder.py checks it.",
        CPU_INDEX,
    ]
    for name in sorted(names, key=lambda n: spelled[n].lower()):
        version = pins[name] + ("+cpu" if name == "torch" else "")
        lines.append(f"{spelled[name]}=={version}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if binder/requirements.txt is out of date")
    parser.add_argument("--size", action="store_true", help="print the installed size of the pinned packages here")
    args = parser.parse_args(argv)
    if args.size:
        names = closure(RUNTIME) - PROVIDED
        total = sum(installed_bytes(n) for n in names)
        torch_mib = installed_bytes("torch") / 2**20
        print(f"{len(names)} packages, {total / 2**20:.0f} MiB installed (torch {torch_mib:.0f} MiB)")
        return 0
    path = ROOT / "binder" / "requirements.txt"
    text = render()
    if args.check:
        if path.read_text() != text:
            print(f"{path} is out of date: run python scripts/binder_requirements.py", file=sys.stderr)
            return 1
        return 0
    path.write_text(text)
    print(f"wrote {path} ({text.count(chr(10)) - 5} pins)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

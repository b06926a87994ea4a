"""Writes the API reference of the book: one page per public module of fmbook, under chapters/appendix/api/.

A page is a sentence on where the book uses the module, then Sphinx's ``automodule`` of it. The
modules are found by walking the package (every module whose name has no part starting with an
underscore); a module of fmbook that is not in ``USED_IN`` still gets a page, with a plain first
sentence, so adding a module is one line here (its sentence) and a run of this script:

    python scripts/api_pages.py           # writes the pages, removes those of modules that are gone
    python scripts/api_pages.py --check   # exits 1 if a page is missing, stale or left over

The script also writes their entries in _toc.yml, under the page ``chapters/appendix/api/index``
(one ``file:`` each, as the PDF and the reader notebooks read the table of contents).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT / "chapters" / "appendix" / "api"
TOC = ROOT / "_toc.yml"
INDEX = "      - file: chapters/appendix/api/index\n"
SECTIONS = re.compile(re.escape(INDEX) + r"(        sections:\n(          - file: chapters/appendix/api/\S+\n)*)?")

# Which chapters use each module: the first sentence of its page.
USED_IN = {
    "fmbook.conventions": "The conventions every chapter follows (time direction, shapes, randomness).",
    "fmbook.data": "The toy data sets of every chapter: moons, Gaussian mixtures, checkerboards, digits.",
    "fmbook.ddpm": "Chapter 7 (DDPM) trains and samples the discrete-time diffusion model with this module.",
    "fmbook.exercises": "The graders of the readers' exercises: each chapter's exercise cells call the "
                        "``check_*`` functions of its submodule.",
    "fmbook.grids": "Grids of images and densities: chapter 2's densities, chapter 3's path histograms, "
                    "chapter 8's digits.",
    "fmbook.guidance": "Chapter 8 (in practice) samples with classifier-free guidance through this module.",
    "fmbook.interactive": "The animations and sliders of chapters 1, 3 and 5, which play in the static book.",
    "fmbook.marginals": "The exact fields of a finite data set (velocity, score, log-density), against which "
                        "chapters 1, 3, 5 and 6 check what a network learns.",
    "fmbook.parameterizations": "Chapter 5 (affine Gaussian paths) converts between the velocity, x0, x1, noise "
                                "and score parameterizations with this module.",
    "fmbook.scaling": "Chapter 8 (in practice) trains on several processes and resumes from checkpoints with "
                      "this module, which fmbook.train.fit uses.",
    "fmbook.schedulers": "Chapter 5 (affine Gaussian paths) compares the schedulers of this module; chapter 3 "
                         "uses the first of them, CondOT.",
    "fmbook.likelihood": "Chapter 2 (ODEs, flows and CNFs) computes exact log-likelihoods of a flow with this module.",
    "fmbook.losses": "Chapter 3 (flow matching) introduces the conditional flow-matching loss; "
                     "chapters 6 and 7 add the score and noise-prediction losses.",
    "fmbook.metrics": "The sample-quality measures that the chapters report, from chapter 1 on.",
    "fmbook.models": "The velocity and score networks that the chapters train, from chapter 3 on.",
    "fmbook.ot": "Chapter 4 (optimal transport) pairs samples by transport plans, measures straightness and reflows.",
    "fmbook.paths": "Chapter 3 builds the probability paths; chapter 5 (affine Gaussian paths) studies their "
                    "schedulers and conversions.",
    "fmbook.processes": "Chapter 1 (generative paradigms) simulates the processes that take noise to data.",
    "fmbook.solvers": "Chapter 2 (ODEs, flows and CNFs) writes an Euler step by hand and then uses these "
                      "solvers; every later chapter samples with them.",
    "fmbook.train": "Chapter 3 trains its first flow with :func:`fmbook.train.fit`; chapter 8 (in practice) "
                    "scales the training up.",
    "fmbook.viz": "The figures of every chapter.",
}


def public_modules(package: str = "fmbook") -> list[str]:
    """The importable public modules of ``package``: the package itself and every submodule without a private part."""
    root = importlib.import_module(package)
    names = [package]
    for info in pkgutil.walk_packages(root.__path__, prefix=package + "."):
        if not any(part.startswith("_") for part in info.name.split(".")[1:]):
            names.append(info.name)
    return sorted(names)


def documented_modules() -> list[str]:
    """The modules that get a page: all the public ones (the graders of each chapter included)."""
    return public_modules()


def page_text(module: str) -> str:
    sentence = USED_IN.get(module, f"The module ``{module}`` of the book's package.")
    options = "" if module == "fmbook" else "   :members:\n   :undoc-members:\n   :show-inheritance:\n"
    if module.startswith("fmbook.exercises.ch"):
        sentence = USED_IN.get(module, f"The graders of the exercises of chapter {module[-1]}.")
    return (f"# {module}\n\n{sentence}\n\n```{{eval-rst}}\n.. automodule:: {module}\n{options}```\n")


def expected_pages() -> dict[Path, str]:
    return {PAGES / f"{name}.md": page_text(name) for name in documented_modules() if name != "fmbook"}


def toc_text(toc: str, pages: list[Path]) -> str:
    """``toc`` (the text of _toc.yml) with one entry per page under the API index."""
    if INDEX not in toc:
        raise SystemExit(f"_toc.yml has no entry {INDEX.strip()!r}")
    entries = "".join(f"          - file: {p.relative_to(ROOT).with_suffix('').as_posix()}\n" for p in pages)
    return SECTIONS.sub(lambda _: INDEX + "        sections:\n" + entries, toc, count=1)


def main(argv: list[str]) -> int:
    check = "--check" in argv
    expected = expected_pages()
    present = {p for p in PAGES.glob("fmbook.*.md")}
    wrong = sorted([p for p, text in expected.items() if not p.exists() or p.read_text() != text]
                   + [p for p in present if p not in expected])
    toc = TOC.read_text()
    new_toc = toc_text(toc, sorted(expected, key=lambda p: p.stem.split(".")))
    if new_toc != toc:
        wrong.append(TOC)
    if check:
        for path in wrong:
            print(f"stale or missing: {path.relative_to(ROOT)}")
        return 1 if wrong else 0
    PAGES.mkdir(parents=True, exist_ok=True)
    for path in present - set(expected):
        path.unlink()
    for path, text in expected.items():
        path.write_text(text)
    TOC.write_text(new_toc)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1:]))

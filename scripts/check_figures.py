"""Check the chapters' figure cells and line widths without building the book.

A figure drawn by a code cell is marked in the cell's metadata, which myst-nb turns into a
numbered ``<figure>`` with a caption and an ``<img alt=...>`` (and scripts/reader_notebooks.py
into a caption line for notebook readers):

    "mystnb": {"figure": {"caption": "...", "name": "fig-ch3-..."}, "image": {"alt": "..."}}

For each chapter this reports

* a cell that shows a figure (``plt.show()``, or a call of ``interactive.animate_flow``,
  ``interactive.slider_figure`` or ``interactive.path_slider``) without that metadata;
* metadata without a caption, without a name of the form ``fig-ch<N>-...`` (N: the chapter's
  number), or with an alt text that is missing, generic ("figure", "plot", "png", ...) or short;
* a figure name used twice in the book;
* a code line longer than the code box shows at a 1280-pixel window, 77 characters (cells the
  book removes, tagged ``remove-cell`` or ``remove-input``, are skipped; ``hide-input`` ones
  count, as a reader opens them). The browser test fails on a box that scrolls sideways;
  printed lines obey the same width, which only the built page shows, so it checks those.

    python scripts/check_figures.py [chapters/03_flow_matching.ipynb ...]

Exit status 1 when something is reported. The browser test (scripts/browser_test.py) checks
the built pages themselves; this is the quick check while editing.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
#: The most characters of a code or output line that the code box shows at 1280 px (measured in
#: Chromium: a 652-pixel text area, 8.43 pixels per character of its 14-pixel monospace font).
CODE_WIDTH = 77
#: Alt texts that say nothing of what a figure shows.
GENERIC_ALT = {"", "png", "image", "img", "figure", "fig", "plot", "graph", "chart", "picture", "output",
               "image/png", "animation", "widget", "a figure", "the figure", "a plot", "the plot"}
MIN_ALT = 12  # characters: shorter than this cannot say what a figure shows
SHOWS_FIGURE = re.compile(r"plt\.show\(\)|\binteractive\.(animate_flow|slider_figure|path_slider)\(")


def generic_alt(alt: str) -> bool:
    """An alt text that names no content (empty, "figure", "png", a file name ...)."""
    text = alt.strip().lower().rstrip(".")
    return text in GENERIC_ALT or bool(re.fullmatch(r"[\w-]+\.(png|jpe?g|svg|gif)", text))


def chapter_number(path: Path) -> int | None:
    m = re.match(r"(\d+)_", path.name)
    return int(m.group(1)) if m else None


def check_notebook(path: Path, names: dict[str, str]) -> list[str]:
    """The problems of one chapter; ``names`` collects figure names across chapters."""
    nb = nbformat.read(path, as_version=4)
    number = chapter_number(path)
    problems = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        tags = set(cell.metadata.get("tags", []))
        if tags & {"remove-cell", "remove-input"}:
            continue  # the book does not show it
        where = f"{path.name} cell {index} ({cell.get('id', '?')})"
        for k, line in enumerate(cell.source.splitlines(), 1):
            if len(line) > CODE_WIDTH:
                problems.append(f"{where}: line {k} has {len(line)} characters (at most {CODE_WIDTH}): {line[:60]}...")
        meta = cell.metadata.get("mystnb", {})
        figure, image = meta.get("figure"), meta.get("image", {})
        if figure is None:
            if SHOWS_FIGURE.search(cell.source):
                problems.append(f"{where}: shows a figure but has no mystnb.figure metadata (caption, name, alt)")
            continue
        name, caption, alt = str(figure.get("name", "")), str(figure.get("caption", "")), str(image.get("alt", ""))
        if not caption.strip():
            problems.append(f"{where}: mystnb.figure has no caption")
        pattern = rf"fig-ch{number}-[a-z0-9-]+" if number is not None else r"fig-[a-z0-9-]+"
        if not re.fullmatch(pattern, name):
            problems.append(f"{where}: figure name {name!r} is not of the form {pattern}")
        elif name in names:
            problems.append(f"{where}: figure name {name!r} is used in {names[name]} too")
        else:
            names[name] = where
        if generic_alt(alt) or len(alt.strip()) < MIN_ALT:
            problems.append(f"{where}: mystnb.image.alt {alt!r} does not say what the figure shows")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="chapters (default: all of chapters/)")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "chapters").glob("[0-9]*.ipynb"))
    names: dict[str, str] = {}
    problems = [p for path in paths for p in check_notebook(path, names)]
    print("\n".join(problems) if problems else f"{len(paths)} chapter(s): every figure cell is marked, lines fit")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""Write the student edition of the book: the chapters without their solutions, and the solutions apart.

For a course: the instructor hands out the student notebooks and keeps the solutions. Each
chapter becomes a plain Jupyter notebook (as the reader notebooks of
``scripts/reader_notebooks.py``: macros expanded, theorems as headed blocks) in which every
exercise keeps its statement, its "your turn" cell (a stub that raises
``NotImplementedError("your turn")``) and its check cell (which reports "not attempted" until
the stub is filled in), and every solution, text and code, is gone. The solutions of each
chapter go to a separate notebook: each exercise's statement followed by its solution, shown.

    python scripts/student_edition.py --out _build/student

writes ``_build/student/chapters/0N_*.ipynb`` (the student notebooks) and
``_build/student/solutions/0N_*_solutions.ipynb``. Solutions are the cells between the
``{solution-start}`` and ``{solution-end}`` directives of the chapters (markdown lines and whole
code cells); a chapter whose later, non-solution cells read a name that only a solution defines
is an error, since its student edition could not run.
"""

from __future__ import annotations

import argparse
import ast
import copy
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reader_notebooks as rn  # noqa: E402

ROOT = rn.ROOT
FENCE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[^}]+)\}\s*(?P<arg>.*)$")
#: Tags of the cells every coding exercise has before its solution.
STUB_TAG = "your-turn"
CHECK_TAG = "check"


class EditionError(ValueError):
    """A chapter whose student edition would be wrong (an open solution, a dependence on one)."""


@dataclass
class Solution:
    """One exercise's solution: its label, markdown parts and code cells, in order."""

    label: str
    cells: list[nbformat.NotebookNode] = field(default_factory=list)


@dataclass
class Split:
    """A chapter split into its student edition (MyST) and its solutions."""

    student: nbformat.NotebookNode
    solutions: list[Solution]
    statements: dict[str, str]  # exercise label -> the MyST of its statement


def _directive_end(lines: list[str], i: int, fence: str) -> int:
    j = i + 1
    while j < len(lines) and not (set(lines[j].strip()) == {fence[0]} and len(lines[j].strip()) >= len(fence)):
        j += 1
    if j == len(lines):
        raise EditionError(f"a directive opened at line {i + 1} is not closed")
    return j


def _statements(text: str) -> dict[str, str]:
    """The ``{exercise}`` directives of a markdown cell, by label."""
    found = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i].strip())
        if m and m.group("name").strip() == "exercise":
            j = _directive_end(lines, i, m.group("fence"))
            block = "\n".join(lines[i:j + 1])
            label = re.search(r"^:label:\s*(\S+)", block, re.M)
            if label:
                found[label.group(1)] = block
            i = j + 1
            continue
        i += 1
    return found


def split_chapter(nb: nbformat.NotebookNode, page: str = "the chapter") -> Split:
    """Remove the solutions of a chapter notebook (MyST source); return both parts.

    A solution runs from a ``{solution-start} LABEL`` directive to the next ``{solution-end}``,
    across cells: its markdown lines and its code cells go to the solutions, the rest stays.
    """
    student = copy.deepcopy(nb)
    cells = []
    solutions: list[Solution] = []
    statements: dict[str, str] = {}
    current: Solution | None = None
    for cell in student.cells:
        if cell.cell_type == "code":
            if current is not None:
                current.cells.append(copy.deepcopy(cell))
            else:
                cells.append(cell)
            continue
        statements.update(_statements(cell.source))
        kept: list[str] = []
        taken: list[str] = []
        lines = cell.source.split("\n")
        i = 0
        while i < len(lines):
            m = FENCE.match(lines[i].strip())
            name = m.group("name").strip() if m else ""
            if name in ("solution-start", "solution-end"):
                j = _directive_end(lines, i, m.group("fence"))
                if name == "solution-start":
                    if current is not None:
                        raise EditionError(f"{page}: a solution starts inside the solution of {current.label}")
                    current = Solution(m.group("arg").strip())
                    solutions.append(current)
                else:
                    if current is None:
                        raise EditionError(f"{page}: a solution-end without its solution-start")
                    if any(x.strip() for x in taken):
                        current.cells.append(nbformat.v4.new_markdown_cell("\n".join(taken).strip("\n")))
                    taken = []
                    current = None
                i = j + 1
                continue
            (taken if current is not None else kept).append(lines[i])
            i += 1
        if current is not None and any(x.strip() for x in taken):
            current.cells.append(nbformat.v4.new_markdown_cell("\n".join(taken).strip("\n")))
        text = "\n".join(kept).strip("\n")
        if text.strip():
            cell.source = text
            cells.append(cell)
    if current is not None:
        raise EditionError(f"{page}: the solution of {current.label} is not closed by solution-end")
    student.cells = cells
    _check_no_dependence(nb, page)
    return Split(student, solutions, statements)


def _names(source: str) -> tuple[set[str], set[str]]:
    """(names bound, names read) by a code cell; IPython magics and shell lines are ignored."""
    code = "\n".join(line for line in source.split("\n") if not line.lstrip().startswith(("%", "!")))
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set(), set()
    bound, read = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (bound if isinstance(node.ctx, (ast.Store, ast.Del)) else read).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
    return bound, read


def _check_no_dependence(nb: nbformat.NotebookNode, page: str) -> None:
    """Every name a non-solution code cell reads was bound by some non-solution cell before it."""
    in_solution = False
    bound_outside: set[str] = set()
    bound_in_solutions: set[str] = set()
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.split("\n"):
                m = FENCE.match(line.strip())
                if m and m.group("name").strip() == "solution-start":
                    in_solution = True
                elif m and m.group("name").strip() == "solution-end":
                    in_solution = False
            continue
        bound, read = _names(cell.source)
        if in_solution:
            bound_in_solutions |= bound - bound_outside
            continue
        needed = (read - bound - bound_outside) & bound_in_solutions
        if needed:
            raise EditionError(
                f"{page}: a cell outside the solutions reads {sorted(needed)}, defined only in a solution: "
                f"the student edition could not run it\n{cell.source[:300]}"
            )
        bound_outside |= bound


def solutions_notebook(split: Split, title: str) -> nbformat.NotebookNode:
    """A MyST notebook of the chapter's solutions: each exercise's statement, then its solution."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = copy.deepcopy(split.student.metadata)
    nb.cells.append(nbformat.v4.new_markdown_cell(f"# Solutions: {title}"))
    for solution in split.solutions:
        statement = split.statements.get(solution.label)
        if statement is None:
            raise EditionError(f"the solution of {solution.label} has no exercise of that label")
        nb.cells.append(nbformat.v4.new_markdown_cell(statement))
        nb.cells.append(nbformat.v4.new_markdown_cell(f"**Solution** of {{ref}}`{solution.label}`"))
        nb.cells.extend(copy.deepcopy(solution.cells))
    return nb


def write_edition(out: Path, commit: str, root: Path = ROOT) -> list[Path]:
    """Write the student notebooks and the solutions of every chapter under ``out``; return the paths."""
    book = rn.load_book(root)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        student_root, solution_root = Path(tmp) / "student", Path(tmp) / "solutions"
        for page in book.chapters:
            nb = nbformat.read(root / f"{page}.ipynb", as_version=4)
            split = split_chapter(nb, page)
            title = rn._first_heading(nb.cells)
            for base, part in ((student_root, split.student), (solution_root, solutions_notebook(split, title))):
                path = base / f"{page}.ipynb"
                path.parent.mkdir(parents=True, exist_ok=True)
                nbformat.write(part, path)
            name = Path(page).name
            for base, target in ((student_root, out / "chapters" / f"{name}.ipynb"),
                                 (solution_root, out / "solutions" / f"{name}_solutions.ipynb")):
                converted = rn.reader_notebook(book, page, commit, base)
                target.parent.mkdir(parents=True, exist_ok=True)
                nbformat.write(converted, target)
                written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "student", help="folder to write to")
    parser.add_argument("--commit", default=None, help="the commit to install fmbook from (default: HEAD)")
    args = parser.parse_args(argv)
    commit = args.commit or rn.current_commit()
    written = write_edition(args.out, commit)
    chapters = sum(p.parent.name == "chapters" for p in written)
    print(f"wrote {chapters} student notebooks to {args.out / 'chapters'} and their solutions to "
          f"{args.out / 'solutions'} (fmbook at {commit[:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

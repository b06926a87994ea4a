"""The student edition: the chapters without any solution, the solutions apart, and every chapter
still runnable (nothing outside a solution depends on one)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import reader_notebooks as rn  # noqa: E402
import student_edition as se  # noqa: E402

BOOK = rn.load_book(ROOT)


def md(text):
    return nbformat.v4.new_markdown_cell(text)


def code(text, tags=()):
    cell = nbformat.v4.new_code_cell(text)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def toy(*cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    return nb


EXERCISE = "````{exercise} Toy\n:label: ex-toy\n\nWrite f.\n````"


def test_a_solution_across_cells_is_removed_and_kept_apart():
    nb = toy(
        md(EXERCISE),
        code('def f(x):\n    raise NotImplementedError("your turn")', ["your-turn"]),
        code("verdict = check(f)", ["check"]),
        md("```{solution-start} ex-toy\n:class: dropdown\n```\nThe secret idea."),
        code("def f(x):\n    return 2 * x\nassert check(f)"),
        md("More secret text.\n```{solution-end}\n```\nAfter the solution."),
        code("print('the chapter goes on')"),
    )
    split = se.split_chapter(nb)
    text = "\n".join(c.source for c in split.student.cells)
    assert "secret" not in text and "return 2 * x" not in text
    assert "After the solution." in text and "the chapter goes on" in text
    assert [c.metadata.get("tags") for c in split.student.cells if c.cell_type == "code"][:2] == [
        ["your-turn"], ["check"]]
    (solution,) = split.solutions
    assert solution.label == "ex-toy"
    assert [c.source for c in solution.cells] == [
        "The secret idea.", "def f(x):\n    return 2 * x\nassert check(f)", "More secret text."]
    assert "ex-toy" in split.statements


def test_an_unclosed_solution_is_an_error():
    with pytest.raises(se.EditionError, match="not closed"):
        se.split_chapter(toy(md(EXERCISE), md("```{solution-start} ex-toy\n```\ntext"), code("x = 1")))


def test_a_cell_that_needs_a_solution_is_an_error():
    nb = toy(
        md(EXERCISE),
        md("```{solution-start} ex-toy\n```"),
        code("model = train()"),
        md("```{solution-end}\n```"),
        code("print(model)"),
    )
    with pytest.raises(se.EditionError, match=r"reads \['model'\]"):
        se.split_chapter(nb)
    # control: the same cell is fine once the name is bound outside the solution as well
    nb.cells.insert(0, code("model = None"))
    se.split_chapter(nb)


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    se.write_edition(out, "0" * 40, ROOT)
    return out


@pytest.mark.parametrize("page", BOOK.chapters)
def test_no_solution_remains_and_the_solutions_file_holds_them_all(edition, page):
    name = Path(page).name
    chapter = nbformat.read(ROOT / f"{page}.ipynb", as_version=4)
    split = se.split_chapter(chapter, page)
    student = nbformat.read(edition / "chapters" / f"{name}.ipynb", as_version=4)
    solutions = nbformat.read(edition / "solutions" / f"{name}_solutions.ipynb", as_version=4)
    student_text = "\n".join(c.source for c in student.cells)
    solutions_text = "\n".join(c.source for c in solutions.cells)
    n_solutions = chapter_text_count = sum(c.source.count("{solution-start}") for c in chapter.cells)
    assert len(split.solutions) == n_solutions and chapter_text_count > 0
    assert "solution-start" not in student_text and "<summary><b>Solution</b>" not in student_text
    assert solutions_text.count("**Solution** of") == n_solutions
    # reader_notebooks' converter tells solution text from the rest on its own: an independent split
    converter = rn.Converter(BOOK, page)
    inside, outside = [], []
    for cell in chapter.cells:
        if cell.cell_type == "code":
            (inside if converter.in_solution else outside).append(cell.source)
            continue
        for piece in converter.convert(cell.source):
            (inside if piece.in_solution else outside).append(piece.text)
    outside_text = "\n".join(outside)
    solution_lines = {line.strip() for text in inside for line in text.split("\n") if len(line.strip()) > 40}
    secret = [line for line in solution_lines if line not in outside_text]
    assert secret, page
    for line in secret:
        assert line not in student_text, (page, line)
        assert line in solutions_text, (page, line)
    assert sum(cell.cell_type == "code" for s in split.solutions for cell in s.cells) == sum(
        1 for text in inside if text in [c.source for c in chapter.cells if c.cell_type == "code"])
    for solution in split.solutions:
        for cell in solution.cells:
            if cell.cell_type == "code":
                assert cell.source not in student_text, (page, solution.label)
                assert cell.source in solutions_text, (page, solution.label)
    for cell in chapter.cells:  # the stubs and checks stay
        if set(cell.metadata.get("tags", [])) & {se.STUB_TAG, se.CHECK_TAG}:
            assert cell.source in student_text


def test_the_script_runs_from_the_command_line(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "student_edition.py"), "--out", str(tmp_path),
                           "--commit", "1" * 40], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "chapters").glob("*.ipynb"))) == len(BOOK.chapters)
    assert len(list((tmp_path / "solutions").glob("*_solutions.ipynb"))) == len(BOOK.chapters)


def test_the_student_edition_of_chapter_1_runs_top_to_bottom(edition):
    """Executed as a student receives it: no error, and every check cell says "not attempted"."""
    nb = nbformat.read(edition / "chapters" / "01_generative_paradigms.ipynb", as_version=4)
    install = [c for c in nb.cells if c.cell_type == "code" and "%pip install" in c.source]
    for cell in install:  # fmbook is installed here; the cell would reach for the network otherwise
        cell.source = "import fmbook"
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    checks = [c for c in nb.cells if se.CHECK_TAG in c.metadata.get("tags", [])]
    assert len(checks) >= 2
    for cell in checks:
        out = "".join(o.get("text", "") for o in cell.outputs)
        assert "not attempted yet" in out, cell.source

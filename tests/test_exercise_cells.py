"""Every "your turn" cell of the chapters is a stub with a check cell after it and a solution that
defines the same function and passes the same checker (nbval runs the solutions: CI proves every
checker accepts a correct answer)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import nbformat
import pytest

from fmbook import exercises

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import student_edition as se  # noqa: E402

CHAPTERS = sorted((ROOT / "chapters").glob("0*.ipynb"))


def tags(cell):
    return set(cell.metadata.get("tags", []))


def stub_functions(source: str) -> list[str]:
    """The functions a stub cell defines whose body ends in ``raise NotImplementedError("your turn")``."""
    names = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            for inner in ast.walk(node):
                if (isinstance(inner, ast.Raise) and isinstance(inner.exc, ast.Call)
                        and getattr(inner.exc.func, "id", "") == "NotImplementedError"
                        and [getattr(a, "value", None) for a in inner.exc.args] == [exercises.STUB_MESSAGE]):
                    names.append(node.name)
                    break
    return names


def checker_calls(source: str) -> list[tuple[str, list[str]]]:
    """``(checker, [names passed])`` for every call ``exercises.check_...(...)`` in a cell."""
    calls = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and getattr(node.func.value, "id", "") == "exercises" and node.func.attr.startswith("check_")):
            calls.append((node.func.attr, [a.id for a in node.args if isinstance(a, ast.Name)]))
    return calls


def asserted_checks(source: str) -> list[str]:
    """Checkers called inside an ``assert`` of a cell."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assert):
            found += [name for name, _ in checker_calls(ast.unparse(node.test))]
    return found


def defined(source: str) -> set[str]:
    return {n.name for n in ast.parse(source).body if isinstance(n, ast.FunctionDef | ast.ClassDef)}


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_stub_has_a_check_and_a_solution_that_passes_it(path):
    nb = nbformat.read(path, as_version=4)
    split = se.split_chapter(nb, path.stem)
    code = [c for c in split.student.cells if c.cell_type == "code"]
    used = set()
    for k, cell in enumerate(code):
        if se.STUB_TAG not in tags(cell):
            continue
        names = stub_functions(cell.source)
        assert names, f"{path.stem}: a your-turn cell defines no stub raising NotImplementedError('your turn')"
        assert k + 1 < len(code) and se.CHECK_TAG in tags(code[k + 1]), f"{path.stem}: no check cell after {names}"
        calls = checker_calls(code[k + 1].source)
        assert calls, f"{path.stem}: the check cell after {names} calls no exercises.check_..."
        for checker, args in calls:
            assert hasattr(exercises, checker), f"{path.stem}: fmbook.exercises has no {checker}"
            assert set(args) & set(names), f"{path.stem}: {checker} is not given the stub {names}"
            used.add(checker)
            solved = [s for s in split.solutions
                      if any(c.cell_type == "code" and set(names) & defined(c.source) for c in s.cells)
                      and any(c.cell_type == "code" and checker in asserted_checks(c.source) for c in s.cells)]
            assert solved, f"{path.stem}: no solution defines {names} and asserts {checker} on it"
    chapter = int(path.stem[:2])
    assert len(used) >= 2, f"{path.stem}: {len(used)} checker(s) used; every chapter has at least two"
    missing = set(exercises.BY_CHAPTER[chapter]) - used
    assert not missing, f"{path.stem}: checkers of this chapter that no exercise uses: {sorted(missing)}"


def test_the_stub_detector_has_a_negative_control():
    assert stub_functions('def f(x):\n    raise NotImplementedError("your turn")') == ["f"]
    assert stub_functions('def f(x):\n    raise NotImplementedError("todo")') == []
    assert stub_functions("def f(x):\n    return x") == []
    assert asserted_checks("assert exercises.check_euler_step(f)") == ["check_euler_step"]
    assert asserted_checks("exercises.check_euler_step(f)") == []

"""The reader notebooks (scripts/reader_notebooks.py): what JupyterLab, Binder and Colab show.

Every chapter converts; no raw MyST and no macro of the book is left in its markdown; solutions
are collapsed; code cells are the chapter's own; the install cell installs the commit; and a
reader notebook runs top to bottom as it is (chapter 1, the shortest, executed here).
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("reader_notebooks", ROOT / "scripts" / "reader_notebooks.py")
reader = importlib.util.module_from_spec(spec)
sys.modules["reader_notebooks"] = reader
spec.loader.exec_module(reader)

BOOK = reader.load_book()
COMMIT = "0123456789abcdef0123456789abcdef01234567"
RAW_MYST = re.compile(
    r"\{(prf:[a-z]+|exercise|solution-start|solution-end)\}"  # directive names
    r"|\{(cite(:[pt])?|eq|doc|ref|numref|prf:ref)\}`"  # roles (a name in braces, then a backtick)
    r"|^(`{3,}|:{3,})\{|^\([\w-]+\)=\s*$|^:label:|^:class:",  # fences, targets, options
    re.M,
)


@pytest.fixture(scope="module", params=BOOK.chapters)
def converted(request):
    page = request.param
    return page, nbformat.read(ROOT / f"{page}.ipynb", as_version=4), reader.reader_notebook(BOOK, page, COMMIT)


def test_the_book_has_eight_chapters_in_toc_order():
    assert [Path(p).name[:2] for p in BOOK.chapters] == ["01", "02", "03", "04", "05", "06", "07", "08"]


def test_no_raw_myst_and_no_book_macro_is_left(converted):
    page, _, nb = converted
    macro = re.compile(r"\\(" + "|".join(map(re.escape, BOOK.macros)) + r")(?![A-Za-z])")
    for k, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        assert not RAW_MYST.search(cell.source), f"{page} cell {k}: raw MyST {RAW_MYST.search(cell.source).group(0)!r}"
        found = macro.search(cell.source)
        assert not found, f"{page} cell {k}: the book macro {found.group(0)!r} is not expanded"
        assert cell.source.count("$$") % 2 == 0, f"{page} cell {k}: unbalanced display maths"
        assert cell.source.count("<details>") == cell.source.count("</details>")


def test_code_cells_are_the_chapters_own(converted):
    page, source, nb = converted
    theirs = [c for c in source.cells if c.cell_type == "code"]
    ours = [c for c in nb.cells if c.cell_type == "code"]
    assert len(theirs) == len(ours)
    for a, b in zip(theirs, ours):
        if reader._is_install_cell(a):
            assert f'commit = "{COMMIT}"' in b.source and '"fmbook @ {repository}@{commit}"' in b.source
            continue
        if b.metadata.get("jupyter", {}).get("source_hidden"):
            title, _, code = b.source.partition("\n")
            assert title.startswith("#@title Solution code of ") and code == a.source
            assert b.metadata["cellView"] == "form"
        else:
            assert b.source == a.source


def test_every_solution_is_collapsed(converted):
    page, source, nb = converted
    statements = sum(c.source.count("{exercise}") for c in source.cells if c.cell_type == "markdown")
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert text.count("### Exercise: ") == statements
    opened = [c.source for c in nb.cells if c.cell_type == "markdown" and "<b>Solution</b> of" in c.source]
    all_code = text.count("in the collapsed code below")
    assert len(opened) + all_code >= statements, f"{page}: an exercise has no collapsed solution"
    solution_code = sum(1 for c in nb.cells if c.metadata.get("jupyter", {}).get("source_hidden"))
    if all_code:
        assert solution_code >= all_code


def test_references_become_numbers_and_links():
    nb = reader.reader_notebook(BOOK, "chapters/03_flow_matching", COMMIT)
    text = "\n".join(c.source for c in nb.cells)
    label = BOOK.labels["eq-marginal-velocity"]
    assert label.kind == "equation" and re.fullmatch(r"\(3\.\d+\)", label.text)  # numbered in chapter 3
    assert f"[{label.text}]({BOOK.url}chapters/03_flow_matching.html#equation-eq-marginal-velocity)" in text
    assert f"\\tag{{{label.text.strip('()')}}}" in text
    assert "[Sampling and evaluation](" in text  # a {ref} to a section shows the section's heading
    assert re.search(r"\(\[Lipman et al\., 2023\]\(" + re.escape(BOOK.url), text)  # a citation


def test_macros_are_expanded_as_whole_names():
    macros = {"E": r"\mathbb{E}", "div": r"\operatorname{div}", "dd": r"\mathrm{d}"}
    expanded = reader.expand_macros(r"\E[X] + \div(u) \dd t", macros)
    assert expanded == r"\mathbb{E}[X] + \operatorname{div}(u) \mathrm{d} t"
    assert reader.expand_macros(r"\Exp \divide \ddot x", macros) == r"\Exp \divide \ddot x"  # other commands stay


def _one_cell_book(markdown: str):
    converter = reader.Converter(BOOK, "chapters/03_flow_matching")
    return reader._solution_pieces(converter.convert(markdown), converter.solution_title), converter


def test_directives_become_headed_blocks_and_details():
    text, converter = _one_cell_book(
        "```{prf:theorem} Title\n:label: thm-made-up\n\nIt holds: $$a = b$$\n```\n\n"
        "````{exercise} Try\n:label: ex-made-up\n\nDo it.\n````\n\n"
        "```{solution-start} ex-ch3-architecture\n:class: dropdown\n```\nThe answer.\n```{solution-end}\n```\nAfter."
    )
    assert "**Theorem (Title).**" in text and "$$a = b$$" in text
    assert "### Exercise: Try" in text
    assert "<details>\n<summary><b>Solution</b> of Exercise (Network architecture)" in text
    assert text.index("The answer.") < text.index("</details>") < text.index("After.")
    assert not converter.in_solution


@pytest.mark.parametrize(
    ("markdown", "message"),
    [
        ("```{figure-of-speech} x\n```", "has no reader form"),
        ("see {eq}`eq-not-a-label`", "unknown label"),
        ("{cite:p}`nobody2099`", "not in references.bib"),
        ("{kbd}`Ctrl`", "has no reader form"),
        ("```{prf:theorem} Open\n:label: x\nno end", "is not closed"),
    ],
)
def test_constructs_without_a_reader_form_are_errors(markdown, message):
    with pytest.raises(reader.ReaderError, match=message):
        _one_cell_book(markdown)


def test_a_reader_notebook_runs_top_to_bottom(tmp_path):
    from nbclient import NotebookClient

    nb = reader.reader_notebook(BOOK, BOOK.chapters[0], COMMIT)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, "the chapter's figures are missing"
    json.dumps(nb)  # a valid notebook to save


def test_equation_numbers_are_checked_against_the_built_pages(tmp_path):
    label = BOOK.labels["eq-marginal-velocity"]
    page = tmp_path / f"{label.page}.html"
    page.parent.mkdir(parents=True)
    shown = label.text.strip("()")
    page.write_text(f'<div class="math" id="{label.anchor}">\n<span class="eqno">({shown})<a href="#">#</a></span>')
    problems = reader.check_equation_numbers(BOOK, tmp_path)
    assert not any("eq-marginal-velocity" in p for p in problems)
    # Negative control: the page numbers it through the whole book, as the book did before it
    # numbered per chapter (chapter 3's equations started at 10).
    through = sum(1 for lab in BOOK.labels.values() if lab.kind == "equation" and lab.page < label.page)
    wrong = str(through + int(shown.split(".")[1]))
    page.write_text(f'<div class="math" id="{label.anchor}">\n<span class="eqno">({wrong})</span>')
    assert any(f"eq-marginal-velocity is {wrong} in the book, ({shown}) here" in p
               for p in reader.check_equation_numbers(BOOK, tmp_path))


# ----------------------------------------------------------------------------- per-chapter numbers, figures


def test_equations_are_numbered_per_chapter_in_toc_order():
    assert BOOK.numbers == {page: k + 1 for k, page in enumerate(BOOK.chapters)}  # the 8 chapters, 1 to 8
    for page in BOOK.chapters:
        texts = [lab.text for lab in BOOK.labels.values() if lab.kind == "equation" and lab.page == page]
        chapter = BOOK.numbers[page]
        assert texts == [f"({chapter}.{k + 1})" for k in range(len(texts))], page


def test_numbered_amsmath_environments_count_and_those_in_dollars_do_not():
    text = ("$$a = b$$ (eq-one)\n\n\\begin{equation}\nq = r\n\\end{equation}\n\n"
            "$$\n\\begin{aligned} x \\end{aligned}\n$$\n\n\\begin{align*}\ns\n\\end{align*}\n\n$$c = d$$ (eq-two)")
    assert reader._numbered_equations(text) == ["eq-one", None, "eq-two"]


def test_headings_carry_the_book_numbers_in_place_of_hand_written_ones():
    sections = [0]
    text = reader.number_headings("# 3. Flow matching\n\n## 3.1 First\n\n```\n## not a heading\n```", 3, sections)
    assert text.splitlines()[0] == "# 3. Flow matching"
    assert "## 3.1. First" in text and "## not a heading" in text
    assert reader.number_headings("## Second\n### Sub", 3, sections) == "## 3.2. Second\n### Sub"
    nb = reader.reader_notebook(BOOK, "chapters/03_flow_matching", COMMIT)
    headings = [line for c in nb.cells if c.cell_type == "markdown" for line in c.source.splitlines()
                if re.match(r"#{1,2} ", line)]
    assert headings[0].startswith("# 3. ") and not headings[0].startswith("# 3. 3.")
    assert [h.split()[1] for h in headings[1:4]] == ["3.1.", "3.2.", "3.3."]


@pytest.fixture
def figure_book(tmp_path):
    """A book of two numbered chapters; the second has two figure cells and refers to one."""
    import shutil

    shutil.copy(ROOT / "_config.yml", tmp_path / "_config.yml")
    shutil.copy(ROOT / "references.bib", tmp_path / "references.bib")
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nparts:\n  - caption: A\n    numbered: 2\n    chapters:\n"
        "      - file: chapters/one\n      - file: chapters/two\n  - caption: Appendix\n    chapters:\n"
        "      - file: chapters/three\n"
    )
    (tmp_path / "chapters").mkdir()
    for name in ("one", "two", "three"):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_markdown_cell(f"# {name}\n\n$$a = b$$ (eq-{name})")]
        if name == "two":
            nb.cells += [
                nbformat.v4.new_code_cell("plot()", metadata={"mystnb": {
                    "figure": {"caption": "Noise carried to the *moons*, see {eq}`eq-two`.", "name": "fig-two-a"},
                    "image": {"alt": "Five panels of points moving from a Gaussian to two moons"}}}),
                nbformat.v4.new_code_cell("plot()", metadata={"mystnb": {
                    "figure": {"caption": "Second.", "name": "fig-two-b"}, "image": {"alt": "A falling line"}}}),
                nbformat.v4.new_markdown_cell("As {numref}`fig-two-b` and {numref}`Figure %s <fig-two-a>` show."),
            ]
        nbformat.write(nb, tmp_path / "chapters" / f"{name}.ipynb")
    return tmp_path


def test_a_figure_cell_is_followed_by_its_numbered_caption(figure_book):
    book = reader.load_book(figure_book)
    assert book.labels["fig-two-a"].text == "Fig. 2.1" and book.labels["fig-two-b"].text == "Fig. 2.2"
    assert book.labels["eq-two"].text == "(2.1)" and book.labels["eq-three"].text == "(1)"  # appendix: unnumbered
    nb = reader.reader_notebook(book, "chapters/two", COMMIT, root=figure_book)
    kinds = [c.cell_type for c in nb.cells]
    assert kinds == ["markdown", "code", "markdown", "code", "markdown", "markdown"]
    caption = nb.cells[2]
    assert caption.source.startswith('<a name="fig-two-a"></a>')
    assert "*Figure 2.1: Noise carried to the *moons*, see [(2.1)](" in caption.source
    assert caption.metadata["fmbook"]["alt"].startswith("Five panels")
    assert nb.cells[4].source.strip().endswith("*Figure 2.2: Second.*")
    assert len({c.id for c in nb.cells}) == len(nb.cells)  # the caption cells have ids of their own
    nbformat.validate(nb)
    text = nb.cells[5].source
    assert f"[Fig. 2.2]({book.url}chapters/two.html#fig-two-b)" in text
    assert f"[Figure 2.1]({book.url}chapters/two.html#fig-two-a)" in text
    # Control: without the figure metadata, no caption cell is written.
    del nb.cells[1].metadata["mystnb"]
    assert reader.figure_cell(nb.cells[1]) is None


def test_figure_numbers_are_checked_against_the_built_pages(figure_book, tmp_path_factory):
    book = reader.load_book(figure_book)
    html = tmp_path_factory.mktemp("html")
    (html / "chapters").mkdir()

    def page(first: str, second: str) -> None:
        (html / "chapters" / "two.html").write_text(
            '<div class="math" id="equation-eq-two">\n<span class="eqno">(2.1)<a href="#">#</a></span>'
            f'<figure class="align-default" id="fig-two-a">\n<img alt="x" src="a.png" />\n<figcaption>\n'
            f'<p><span class="caption-number">Fig. {first} </span></p></figcaption></figure>'
            f'<figure class="align-default" id="fig-two-b">\n<img alt="y" src="b.png" />\n<figcaption>\n'
            f'<p><span class="caption-number">Fig. {second} </span></p></figcaption></figure>')

    page("2.1", "2.2")
    problems = reader.check_equation_numbers(book, html)
    assert not [p for p in problems if "chapters/two" in p]
    page("3", "4")  # Negative control: figures numbered through the whole book
    problems = reader.check_equation_numbers(book, html)
    assert "chapters/two: figure fig-two-a is 3 in the book, Fig. 2.1 here" in problems
    assert "chapters/two: figure fig-two-b is 4 in the book, Fig. 2.2 here" in problems

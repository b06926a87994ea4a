"""Write the notebooks a reader opens in JupyterLab, Binder or Colab, from the book's chapters.

The chapters are written in MyST for Jupyter Book: macros defined in ``_config.yml``,
directives (``{prf:theorem}``, ``{exercise}``, ``{solution-start}``, admonitions) and roles
(``{cite:p}``, ``{eq}``, ``{doc}``, ``{ref}``, ``{prf:ref}``, ``{numref}``). Plain Jupyter
renders none of them. This script turns each chapter into plain Jupyter markdown:

- the book's LaTeX macros are expanded (``\\E`` becomes ``\\mathbb{E}``, ``\\div`` becomes
  ``\\operatorname{div}``), so the maths typesets in any notebook front end;
- theorems, lemmas, proofs and admonitions become headed blocks between rules; an exercise
  becomes a heading; its solution becomes a collapsed ``<details>`` block, and the solution's
  code cells are collapsed too (``jupyter.source_hidden``, and a Colab form title);
- citations become "(Author et al., year)" linked to the published bibliography; references to
  equations become their numbers, linked, and labelled equations carry ``\\tag{c.n}``, numbered
  per chapter as the book numbers them (equation n of chapter c); references to theorems,
  exercises and sections become links to the published book; ``{doc}`` links point at the
  other reader notebooks;
- a figure drawn by a code cell (cell metadata ``mystnb.figure``: ``caption`` and ``name``;
  ``mystnb.image.alt``) is followed by a markdown cell with its number and caption in italics,
  "*Figure 3.2: ...*", so that a notebook reader sees the caption that the book prints under
  the figure; ``{numref}`` to a figure becomes "Fig. 3.2", linked;
- the chapter's title and its sections carry the book's numbers ("3. ...", "3.1. ..."), in
  place of any number written by hand;
- the install cell installs fmbook at the commit the notebooks were written from.

Code cells are otherwise unchanged. An unknown directive or role is an error, so that a new
construct in a chapter cannot reach readers as raw text.

Where they live: ``python scripts/reader_notebooks.py`` writes them to ``_build/reader/chapters``;
with ``--html _build/html`` it also puts them where the built book's "download .ipynb" button
serves them, and checks the equation numbers against the built pages. The publishing workflow
(``.github/workflows/book.yml``) commits them, over the sources, to the branch ``reader``, which
the Binder and Colab buttons open (``_config.yml``: ``launch_buttons``).
"""

from __future__ import annotations

import argparse
import copy
import html
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = "https://github.com/fmbook/fmbook"

PROOF_KINDS = {
    "theorem": "Theorem", "lemma": "Lemma", "proposition": "Proposition", "corollary": "Corollary",
    "definition": "Definition", "remark": "Remark", "example": "Example", "conjecture": "Conjecture",
    "algorithm": "Algorithm", "criterion": "Criterion", "axiom": "Axiom", "property": "Property",
    "observation": "Observation", "assumption": "Assumption", "notation": "Notation",
}
ADMONITIONS = {
    "admonition": "", "note": "Note", "tip": "Tip", "hint": "Hint", "important": "Important",
    "warning": "Warning", "caution": "Caution", "attention": "Attention", "danger": "Danger",
    "error": "Error", "seealso": "See also",
}
DIRECTIVE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|:{3,})\{(?P<name>[^}]+)\}(?P<arg>.*)$")
ROLE = re.compile(r"\{(?P<name>[a-z:]+)\}`(?P<body>[^`]+)`")
EQUATION = re.compile(r"\$\$(?P<body>(?:(?!\$\$).)+?)\$\$[ \t]*\((?P<label>[^)\s]+)\)", re.S)
#: A display maths block in dollars (labelled or not): an amsmath environment inside one is not numbered.
DOLLARS = re.compile(r"\$\$(?:(?!\$\$).)+?\$\$", re.S)
#: A numbered amsmath environment at the start of a line (myst's amsmath extension): the book numbers it.
AMSMATH = re.compile(r"^[ \t]*\\begin\{(?:equation|align|gather|multline|flalign|alignat)\}", re.M)
TARGET = re.compile(r"^\((?P<label>[^)\s]+)\)=[ \t]*$", re.M)


class ReaderError(ValueError):
    """A construct of a chapter that the reader notebooks cannot show (an unknown directive or role)."""


@dataclass
class Label:
    kind: str  # "equation", "figure", "section", "exercise" or a proof kind such as "Theorem"
    page: str  # the chapter's path without suffix, e.g. "chapters/03_flow_matching"
    text: str  # what a reference shows: "(3.1)", "Fig. 3.2", the heading, "Exercise (title)"
    anchor: str


@dataclass
class Book:
    """What a conversion needs to know of the whole book: labels, titles, macros, citations."""

    url: str
    macros: dict[str, str]
    citations: dict[str, tuple[str, str]]  # key -> (authors, year)
    labels: dict[str, Label] = field(default_factory=dict)
    titles: dict[str, str] = field(default_factory=dict)  # page -> title
    chapters: list[str] = field(default_factory=list)  # pages of the notebooks, in toc order
    numbers: dict[str, int] = field(default_factory=dict)  # page -> its chapter number (numbered parts)
    captions: dict[str, str] = field(default_factory=dict)  # figure name -> caption


# ---------------------------------------------------------------------------------------------
# The book: configuration, table of contents, bibliography, labels
# ---------------------------------------------------------------------------------------------


def _toc_pages(toc: dict) -> list[str]:
    pages: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "file" in node:
                pages.append(str(node["file"]).removesuffix(".ipynb").removesuffix(".md"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(toc)
    return pages


def chapter_numbers(toc: dict) -> dict[str, int]:
    """The chapter number of each page in a numbered part of ``_toc.yml`` (``numbered: true``).

    The book numbers its chapters 1, 2, ... through the numbered parts in order (Jupyter Book's
    ``use_multitoc_numbering``, on by default); the pages of unnumbered parts have no number.
    """
    numbers: dict[str, int] = {}
    for part in toc.get("parts", []):
        if not part.get("numbered"):
            continue
        for chapter in part.get("chapters", []):
            numbers[str(chapter["file"]).removesuffix(".ipynb").removesuffix(".md")] = len(numbers) + 1
    return numbers


def figure_cell(cell: nbformat.NotebookNode) -> tuple[str, str, str] | None:
    """``(name, caption, alt)`` of a code cell marked as a figure (``mystnb.figure``), else None."""
    figure = cell.get("metadata", {}).get("mystnb", {}).get("figure")
    if cell.cell_type != "code" or not figure:
        return None
    alt = cell.metadata["mystnb"].get("image", {}).get("alt", "")
    return str(figure.get("name", "")), str(figure.get("caption", "")), str(alt)


def _numbered_equations(text: str) -> list[str | None]:
    """The equations of a markdown cell that the book numbers, in order: the label of each
    labelled ``$$...$$ (label)``, None for each numbered amsmath environment outside dollars."""
    dollars = [m.span() for m in DOLLARS.finditer(text)]
    found = [(m.start(), m.group("label")) for m in EQUATION.finditer(text)]
    found += [(m.start(), None) for m in AMSMATH.finditer(text)
              if not any(a <= m.start() < b for a, b in dollars)]
    return [label for _, label in sorted(found, key=lambda x: x[0])]


def _latex_to_text(text: str) -> str:
    """A BibTeX name or year as plain text: accents decoded, braces dropped."""
    import latexcodec  # noqa: F401  (registers the "latex" codec)

    return text.encode("utf-8").decode("latex").replace("{", "").replace("}", "")


def _citations(bib: Path) -> dict[str, tuple[str, str]]:
    import pybtex.database

    found = {}
    for key, entry in pybtex.database.parse_file(bib).entries.items():
        people = entry.persons.get("author") or entry.persons.get("editor") or []
        last = [_latex_to_text(" ".join(p.prelast_names + p.last_names)) for p in people]
        if not last:
            authors = _latex_to_text(entry.fields.get("organization", entry.fields.get("title", key)))
        elif len(last) == 1:
            authors = last[0]
        elif len(last) == 2:
            authors = f"{last[0]} and {last[1]}"
        else:
            authors = f"{last[0]} et al."
        found[key] = (authors, _latex_to_text(entry.fields.get("year", "n.d.")))
    return found


def _first_heading(cells: list) -> str:
    for cell in cells:
        if cell.cell_type == "markdown":
            m = re.search(r"^#\s+(.+)$", cell.source, re.M)
            if m:
                return m.group(1).strip()
    return ""


def load_book(root: Path = ROOT) -> Book:
    """Read the configuration, the table of contents, the bibliography and every label."""
    config = yaml.safe_load((root / "_config.yml").read_text())
    tex = config["sphinx"]["config"]["mathjax3_config"]["tex"]["macros"]
    url = config.get("html", {}).get("baseurl", "").rstrip("/") + "/"
    book = Book(url=url, macros={k: str(v) for k, v in tex.items()}, citations=_citations(root / "references.bib"))
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    book.numbers = chapter_numbers(toc)
    for page in _toc_pages(toc):
        path = root / f"{page}.ipynb"
        if path.is_file():
            book.chapters.append(page)
            cells = nbformat.read(path, as_version=4).cells
        elif (root / f"{page}.md").is_file():
            cells = [nbformat.v4.new_markdown_cell((root / f"{page}.md").read_text())]
        else:
            continue
        book.titles[page] = _first_heading(cells)
        chapter = book.numbers.get(page)
        prefix = f"{chapter}." if chapter is not None else ""
        equations = figures = 0  # numbered per chapter, as the book does (numfig_secnum_depth: 1)
        for cell in cells:
            figure = figure_cell(cell)
            if figure is not None:
                figures += 1
                name, caption, _ = figure
                if name:
                    book.labels[name] = Label("figure", page, f"Fig. {prefix}{figures}", name)
                    book.captions[name] = caption
            if cell.cell_type != "markdown":
                continue
            text = cell.source
            for name in _numbered_equations(text):  # in order, labelled or not
                equations += 1
                if name is not None:
                    book.labels[name] = Label("equation", page, f"({prefix}{equations})", f"equation-{name}")
            for m in TARGET.finditer(text):
                heading = re.search(r"^#+\s+(.+)$", text[m.end():], re.M)
                book.labels[m.group("label")] = Label("section", page, heading.group(1).strip() if heading else
                                                      m.group("label"), m.group("label"))
            for m in re.finditer(DIRECTIVE.pattern, text, re.M):
                name, arg = m.group("name").strip(), m.group("arg").strip()
                label = re.search(r"^:label:\s*(\S+)", text[m.end():m.end() + 400], re.M)
                if not label:
                    continue
                if name == "exercise":
                    shown = f"Exercise ({arg})" if arg else "Exercise"
                    book.labels[label.group(1)] = Label("exercise", page, shown, label.group(1))
                elif name.startswith("prf:") and name[4:] in PROOF_KINDS:
                    kind = PROOF_KINDS[name[4:]]
                    book.labels[label.group(1)] = Label(kind, page, f"{kind} ({arg})" if arg else kind, label.group(1))
    return book


# ---------------------------------------------------------------------------------------------
# Markdown: roles, macros, equations, directives
# ---------------------------------------------------------------------------------------------


def _split_target(body: str) -> tuple[str | None, str]:
    """``"text <target>"`` -> ("text", "target"); ``"target"`` -> (None, "target")."""
    m = re.fullmatch(r"(?s)(.*?)\s*<([^<>]+)>", body.strip())
    return (m.group(1).strip(), m.group(2).strip()) if m else (None, body.strip())


def _page_url(book: Book, page: str) -> str:
    return f"{book.url}{page}.html"


def _resolve_doc(book: Book, page: str, target: str) -> str:
    """The page named by a ``{doc}`` target, relative to ``page`` or absolute ('/...')."""
    if target.startswith("/"):
        return target.lstrip("/").removesuffix(".ipynb").removesuffix(".md")
    parts = Path(page).parent.joinpath(target).parts
    resolved: list[str] = []
    for part in parts:
        if part == "..":
            resolved.pop()
        elif part != ".":
            resolved.append(part)
    return "/".join(resolved).removesuffix(".ipynb").removesuffix(".md")


def _role(book: Book, page: str, name: str, body: str) -> str:
    if name in ("cite:p", "cite:t", "cite"):
        keys = [k.strip() for k in body.split(",")]
        unknown = [k for k in keys if k not in book.citations]
        if unknown:
            raise ReaderError(f"{page}: citation keys not in references.bib: {unknown}")
        bibliography = _page_url(book, "chapters/appendix/bibliography")
        if name == "cite:t":
            return "; ".join(f"[{book.citations[k][0]} ({book.citations[k][1]})]({bibliography})" for k in keys)
        return "(" + "; ".join(f"[{book.citations[k][0]}, {book.citations[k][1]}]({bibliography})" for k in keys) + ")"
    if name == "doc":
        text, target = _split_target(body)
        other = _resolve_doc(book, page, target)
        shown = text or book.titles.get(other) or other
        if other in book.chapters:
            return f"[{shown}]({_relative(page, other)})"
        return f"[{shown}]({_page_url(book, other)})"
    if name in ("eq", "ref", "numref", "prf:ref"):
        text, label = _split_target(body)
        if label not in book.labels:
            raise ReaderError(f"{page}: {{{name}}} refers to the unknown label {label!r}")
        target = book.labels[label]
        shown = text or target.text
        if name == "numref" and text and target.kind in ("figure", "equation"):
            number = target.text.removeprefix("Fig. ").strip("()")
            shown = text.replace("%s", number).replace("{number}", number)
        link = f"{_page_url(book, target.page)}#{target.anchor}"
        if name == "eq" and not text:
            return f"[{target.text}]({link})"
        return f"[{shown}]({link})"
    raise ReaderError(f"{page}: the role {{{name}}} has no reader form")


def _relative(page: str, other: str) -> str:
    """The path of notebook ``other`` seen from notebook ``page`` (both as 'chapters/...')."""
    return os.path.relpath(other + ".ipynb", start=str(Path(page).parent))


def expand_macros(text: str, macros: dict[str, str]) -> str:
    """Replace each ``\\name`` of the book's macros (not followed by a letter) by its definition."""
    for name in sorted(macros, key=len, reverse=True):
        text = re.sub(r"\\" + re.escape(name) + r"(?![A-Za-z])", lambda _m, d=macros[name]: d, text)
    return text


def _inline(book: Book, page: str, text: str) -> str:
    """Roles, labelled equations, targets and macros of a piece of markdown outside directives."""

    def equation(m: re.Match) -> str:
        label = book.labels[m.group("label")]
        number = label.text.strip("()")
        return f'<a name="{label.anchor}"></a>\n\n$${m.group("body").rstrip()}\n\\tag{{{number}}}\n$$'

    text = EQUATION.sub(equation, text)
    text = TARGET.sub(lambda m: f'<a name="{m.group("label")}"></a>', text)
    text = ROLE.sub(lambda m: _role(book, page, m.group("name"), m.group("body")), text)
    return expand_macros(text, book.macros)


@dataclass
class Piece:
    text: str
    in_solution: bool
    starts_solution: bool = False


def _parse_options(lines: list[str]) -> tuple[dict[str, str], list[str]]:
    options: dict[str, str] = {}
    i = 0
    while i < len(lines) and re.match(r"^\s*:[\w-]+:", lines[i]):
        key, _, value = lines[i].strip()[1:].partition(":")
        options[key.strip()] = value.strip()
        i += 1
    return options, lines[i:]


def _block(title: str, body: str, end: str = "") -> str:
    """A headed block between rules (no blockquote: display maths inside must stay untouched)."""
    first = f"**{title}.**" if title else ""
    closing = f" {end}" if end else ""
    return f"\n\n***\n\n{first}\n\n{body.strip()}{closing}\n\n***\n\n"


class Converter:
    """Converts the markdown cells of one chapter, tracking whether a solution is open."""

    def __init__(self, book: Book, page: str) -> None:
        self.book = book
        self.page = page
        self.in_solution = False
        self.solution_title = ""

    def convert(self, text: str) -> list[Piece]:
        pieces: list[Piece] = []
        buffer: list[str] = []
        lines = text.split("\n")
        i = 0

        def flush() -> None:
            if buffer:
                pieces.append(Piece(_inline(self.book, self.page, "\n".join(buffer)), self.in_solution))
                buffer.clear()

        while i < len(lines):
            m = DIRECTIVE.match(lines[i])
            if not m:
                buffer.append(lines[i])
                i += 1
                continue
            fence = m.group("fence")
            j = i + 1
            while j < len(lines) and not (
                set(lines[j].strip()) == {fence[0]} and len(lines[j].strip()) >= len(fence)
            ):
                j += 1
            if j == len(lines):
                raise ReaderError(f"{self.page}: the directive {{{m.group('name')}}} is not closed")
            name, arg = m.group("name").strip(), m.group("arg").strip()
            options, body = _parse_options(lines[i + 1:j])
            i = j + 1
            if name == "solution-start":
                flush()
                label = self.book.labels.get(arg)
                self.in_solution = True
                self.solution_title = label.text if label else "the exercise"
                pieces.append(Piece("", True, starts_solution=True))
                continue
            if name == "solution-end":
                flush()
                self.in_solution = False
                continue
            flush()
            pieces.append(Piece(self._directive(name, arg, options, "\n".join(body)), self.in_solution))
        flush()
        return pieces

    def _body(self, body: str) -> str:
        inner = Converter(self.book, self.page)
        parts = inner.convert(body)
        if inner.in_solution:
            raise ReaderError(f"{self.page}: a solution starts inside a directive")
        return "".join(p.text for p in parts)

    def _directive(self, name: str, arg: str, options: dict[str, str], body: str) -> str:
        anchor = f'<a name="{options["label"]}"></a>\n' if "label" in options else ""
        if name.startswith("prf:"):
            kind = name[4:]
            if kind == "proof":
                return anchor + _block("Proof", self._body(body), end="∎")
            if kind not in PROOF_KINDS:
                raise ReaderError(f"{self.page}: the directive {{{name}}} has no reader form")
            title = f"{PROOF_KINDS[kind]} ({_inline(self.book, self.page, arg)})" if arg else PROOF_KINDS[kind]
            return anchor + _block(title, self._body(body))
        if name == "exercise":
            title = _inline(self.book, self.page, arg)
            return f"\n{anchor}\n### Exercise: {title}\n\n{self._body(body).strip()}\n"
        if name in ADMONITIONS:
            title = _inline(self.book, self.page, arg) if name == "admonition" else ADMONITIONS[name]
            if "dropdown" in options.get("class", ""):
                summary = f"<summary>{html.escape(title)}</summary>"
                return f"\n{anchor}<details>\n{summary}\n\n{self._body(body)}\n\n</details>\n"
            return anchor + _block(title, self._body(body))
        if name == "math":
            tag = ""
            if "label" in options:
                tag = f"\n\\tag{{{self.book.labels[options['label']].text.strip('()')}}}"
            return f"{anchor}\n$$\n{expand_macros(body.strip(), self.book.macros)}{tag}\n$$\n"
        if name in ("code-block", "code"):
            return f"\n```{arg}\n{body}\n```\n"
        raise ReaderError(f"{self.page}: the directive {{{name}}} has no reader form")


# ---------------------------------------------------------------------------------------------
# Notebooks
# ---------------------------------------------------------------------------------------------


def install_source(commit: str) -> str:
    return (
        "# On a bare runtime (Colab, for instance), install the book's package at the version\n"
        "# this notebook was written for; where fmbook is installed already (Binder, a clone of\n"
        "# the repository), nothing happens.\n"
        f"# This notebook: fmbook {fmbook_version()}, commit {commit[:12]}.\n"
        "try:\n"
        "    import fmbook  # noqa: F401\n"
        "except ImportError:\n"
        f'    repository = "git+{REPOSITORY}"\n'
        f'    commit = "{commit}"\n'
        '    %pip install --quiet "fmbook @ {repository}@{commit}"\n'
    )


def fmbook_version(root: Path = ROOT) -> str:
    return re.search(r'^__version__ = "([^"]+)"', (root / "fmbook" / "__init__.py").read_text(), re.M).group(1)


HEADING = re.compile(r"^(?P<hashes>#{1,2})[ \t]+(?:\d+(?:\.\d+)*\.?[ \t]+)?(?P<title>\S.*)$")


def number_headings(text: str, chapter: int, sections: list[int]) -> str:
    """Number the chapter's title (``#``) and sections (``##``) as the book does: "3. Title",
    "3.1. Title"; a number written by hand before the title is replaced. ``sections`` holds the
    count of sections so far (one item, updated), so that numbering runs on over the cells."""
    out, fence = [], None
    for line in text.split("\n"):
        stripped = line.lstrip()
        opener = re.match(r"(`{3,}|~{3,})", stripped)
        if opener and (fence is None or stripped.startswith(fence)):
            fence = None if fence is not None else opener.group(1)
        m = HEADING.match(line) if fence is None else None
        if m and len(m.group("hashes")) == 1:
            line = f"# {chapter}. {m.group('title')}"
        elif m:
            sections[0] += 1
            line = f"## {chapter}.{sections[0]}. {m.group('title')}"
        out.append(line)
    return "\n".join(out)


def _is_install_cell(cell: nbformat.NotebookNode) -> bool:
    return cell.cell_type == "code" and "%pip install" in cell.source and "import fmbook" in cell.source


def _solution_pieces(pieces: list[Piece], title: str) -> str:
    """The markdown of one cell: its solution parts collapsed in ``<details>`` blocks."""
    plain_title = html.escape(re.sub(r"[*_`$]", "", title))
    out = []
    for k, piece in enumerate(pieces):
        text = piece.text.strip("\n")
        if piece.starts_solution:
            rest = [p for p in pieces[k + 1:] if p.in_solution and not p.starts_solution]
            if not any(p.text.strip() for p in rest):  # the solution is all code: say where it is
                out.append(f"**Solution** of {plain_title}: in the collapsed code below (click to show).")
            continue
        if not text.strip():
            continue
        if piece.in_solution:
            summary = f"<b>Solution</b> of {plain_title} (click to show)"
            out.append(f"<details>\n<summary>{summary}</summary>\n\n{text}\n\n</details>")
        else:
            out.append(text)
    return "\n\n".join(out)


def reader_notebook(
    book: Book, page: str, commit: str, root: Path = ROOT, executed: Path | None = None
) -> nbformat.NotebookNode:
    """The reader version of chapter ``page`` (e.g. 'chapters/03_flow_matching').

    With ``executed``, a folder of executed copies of the chapters (nbval's recorded runs), the
    copy of that name is converted instead, outputs and widget state included; its cells must be
    the chapter's.
    """
    source = nbformat.read(root / f"{page}.ipynb", as_version=4)
    if executed is not None:
        ran = nbformat.read(executed / f"{Path(page).name}.ipynb", as_version=4)
        if [(c.cell_type, c.source) for c in ran.cells] != [(c.cell_type, c.source) for c in source.cells]:
            raise ReaderError(f"{page}: the executed copy in {executed} is not of the chapter as it is now")
        source = ran
    nb = copy.deepcopy(source)
    converter = Converter(book, page)
    cells = []
    chapter = book.numbers.get(page)
    sections = [0]
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            text = _solution_pieces(converter.convert(cell.source), converter.solution_title)
            if chapter is not None:
                text = number_headings(text, chapter, sections)
            if text.strip():
                text = re.sub(r"\n{3,}", "\n\n", text)
                text = re.sub(r"\*\*\*(\n\n\*\*\*)+", "***", text).strip()  # one rule between two blocks
                cell.source = text + "\n"
                cells.append(cell)
            continue
        figure = figure_cell(cell)
        if figure is not None:
            cells.append(cell)
            cells.append(_caption_cell(book, page, cell, *figure))
            continue
        if _is_install_cell(cell):
            cell.source = install_source(commit)
        elif cell.cell_type == "code" and converter.in_solution:
            cell.source = f"#@title Solution code of {converter.solution_title} (click to show)\n" + cell.source
            cell.metadata["jupyter"] = {"source_hidden": True, "outputs_hidden": True}
            cell.metadata["cellView"] = "form"
        cells.append(cell)
    if converter.in_solution:
        raise ReaderError(f"{page}: a solution is not closed by solution-end")
    nb.cells = cells
    nb.metadata["fmbook"] = {"source": f"{page}.ipynb", "commit": commit, "book": _page_url(book, page)}
    return nb


def _caption_cell(
    book: Book, page: str, cell: nbformat.NotebookNode, name: str, caption: str, alt: str
) -> nbformat.NotebookNode:
    """The markdown cell after a figure cell: its anchor, number and caption, in italics."""
    number = book.labels[name].text.removeprefix("Fig. ") if name in book.labels else ""
    title = f"Figure {number}" if number else "Figure"
    text = _inline(book, page, caption).strip()
    anchor = f'<a name="{name}"></a>\n\n' if name else ""
    out = nbformat.v4.new_markdown_cell(f"{anchor}*{title}: {text}*\n" if text else f"{anchor}*{title}.*\n")
    out.id = f"{cell.get('id', 'figure')}-caption"[:64]
    out.metadata["fmbook"] = {"caption_of": name, "alt": alt}
    return out


def current_commit(root: Path = ROOT) -> str:
    done = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit("not a git checkout: give --commit")
    return done.stdout.strip()


def write_all(out: Path, commit: str, root: Path = ROOT, executed: Path | None = None) -> list[Path]:
    book = load_book(root)
    written = []
    for page in book.chapters:
        nb = reader_notebook(book, page, commit, root, executed)
        path = out / f"{page}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, path)
        written.append(path)
    return written


def check_equation_numbers(book: Book, html_root: Path) -> list[str]:
    """Where the built book numbers a labelled equation or a named figure differently from the
    reader notebooks (equations: ``<span class="eqno">(3.1)``; figures: ``Fig. 3.1`` in the
    caption of ``<figure id="name">``)."""
    problems = []
    for label, target in book.labels.items():
        if target.kind not in ("equation", "figure"):
            continue
        page = html_root / f"{target.page}.html"
        text = page.read_text(encoding="utf-8") if page.is_file() else ""
        if target.kind == "equation":
            m = re.search(r'id="' + re.escape(target.anchor) + r'"[^>]*>\s*<span class="eqno">\((\d[\d.]*)\)', text)
            shown = f"({m.group(1)})" if m else None
        else:
            m = re.search(r'<figure[^>]*id="' + re.escape(target.anchor) + r'"[^>]*>.*?'
                          r'<span class="caption-number">Fig\.\s*(\d[\d.]*)', text, re.S)
            shown = f"Fig. {m.group(1)}" if m else None
        if shown is None:
            problems.append(f"{target.page}: {target.kind} {label} not found in {page}")
        elif shown != target.text:
            number = shown.removeprefix("Fig. ").strip("()")
            problems.append(f"{target.page}: {target.kind} {label} is {number} in the book, {target.text} here")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "reader", help="folder to write to")
    parser.add_argument("--commit", default=None, help="the commit to install fmbook from (default: HEAD)")
    parser.add_argument("--html", type=Path, default=None,
                        help="the built book: serve the reader notebooks from its download buttons, check equations")
    parser.add_argument("--executed", type=Path, default=None,
                        help="convert these executed copies of the chapters instead (outputs kept), for tests")
    args = parser.parse_args(argv)
    commit = args.commit or current_commit()
    written = write_all(args.out, commit, executed=args.executed)
    print(f"wrote {len(written)} reader notebooks to {args.out} (fmbook at {commit[:12]})")
    if args.html is not None:
        book = load_book()
        problems = check_equation_numbers(book, args.html)
        if problems:
            print("\n".join(problems), file=sys.stderr)
            return 1
        for path in written:
            page_html = (args.html / path.relative_to(args.out)).with_suffix(".html")
            link = f"_sources/{path.relative_to(args.out).as_posix()}"
            if link not in page_html.read_text(encoding="utf-8"):
                print(f"{page_html} has no download button for {link}", file=sys.stderr)
                return 1
            served = args.html / "_sources" / path.relative_to(args.out)
            served.parent.mkdir(parents=True, exist_ok=True)
            served.write_bytes(path.read_bytes())
        print(f"the book's download buttons serve them; equation and figure numbers agree with {args.html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

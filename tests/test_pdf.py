"""scripts/build_pdf.py: the PDF of the whole book opens, has every page of the book in order
with a bookmark each, typeset maths (no raw TeX left), figures and a contents page.

The fixture builds the book from this checkout without executing the chapters (the build's
``execute_notebooks: off``; the sources carry no outputs, so the one figure is the landing
page's), which is what the PDF needs to be tested: printing, joining, bookmarks, maths.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("build_pdf", ROOT / "scripts" / "build_pdf.py")
build_pdf = importlib.util.module_from_spec(spec)
sys.modules["build_pdf"] = build_pdf
spec.loader.exec_module(build_pdf)

RAW_TEX = re.compile(r"\$\$|\\frac|\\begin\{|\\mathbb|\\mathcal|\\\(|\\\[")


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    """(sources, built HTML, PDF) of the book built without execution."""
    src = tmp_path_factory.mktemp("book")
    for name in ("_config.yml", "_toc.yml", "intro.md", "references.bib"):
        shutil.copy(ROOT / name, src / name)
    for name in ("chapters", "images", "_ext", "fmbook"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run(["bash", str(ROOT / "scripts" / "offline-assets.sh")], check=True, capture_output=True)
    shutil.copytree(ROOT / "_offline", src / "_offline")
    config = (src / "_config.yml").read_text()
    assert "execute_notebooks: cache" in config
    (src / "_config.yml").write_text(config.replace("execute_notebooks: cache", 'execute_notebooks: "off"'))
    env = {**os.environ, "PYTHONPATH": str(src), "FMBOOK_COMMIT": "0123456789ab"}
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    done = subprocess.run([str(jupyter_book), "build", str(src), "--keep-going"], capture_output=True, text=True,
                          env=env, timeout=1200)
    assert (src / "_build" / "html" / "index.html").exists(), done.stdout[-3000:] + done.stderr[-3000:]
    out = src / "fmbook.pdf"
    parts, pages = build_pdf.build_pdf(src / "_build" / "html", out, root=src)
    return src, parts, pages, out


def titles_of_the_toc(src: Path) -> list[str]:
    """The first heading of each page of the toc, as the page shows it (hand numbers and all)."""
    titles = []
    for path in build_pdf.toc_pages(src):
        stem = str(src / path.removesuffix(".html"))  # not Path.with_suffix: "api/fmbook.ot" has a dot
        if Path(stem + ".ipynb").exists():
            cells = nbformat.read(stem + ".ipynb", as_version=4).cells
            text = "\n".join(c.source for c in cells if c.cell_type == "markdown")
        else:
            text = Path(stem + ".md").read_text()
        titles.append(re.search(r"^#\s+(.+)$", text, re.M).group(1).strip())
    return titles


def test_the_pdf_opens_with_every_page_of_the_book_in_order_and_a_bookmark_each(book):
    from pypdf import PdfReader

    src, parts, pages, out = book
    reader = PdfReader(out)
    assert len(reader.pages) == pages > len(parts) >= 13  # 8 chapters, 5 appendices, the landing page
    assert [p.path for p in parts] == build_pdf.toc_pages(src)
    top = [item for item in reader.outline if not isinstance(item, list)]
    assert [i.title for i in top] == ["Contents", *[p.title for p in parts]]
    for toc_title, item in zip(titles_of_the_toc(src), top[1:]):
        assert toc_title.replace(" ", "") in item.title.replace(" ", ""), (toc_title, item.title)
    starts = [reader.get_destination_page_number(i) for i in top]
    assert starts == sorted(starts) and len(set(starts[1:])) == len(parts)  # each part starts a page, in order
    # the bookmarks of a chapter hold its sections
    chapter = next(i for i, p in enumerate(parts) if p.path.startswith("chapters/03"))
    children = reader.outline[reader.outline.index(top[chapter + 1]) + 1]
    assert isinstance(children, list) and len(children) >= 3


def test_the_contents_page_lists_every_part_with_its_first_page(book):
    from pypdf import PdfReader

    src, parts, pages, out = book
    reader = PdfReader(out)
    top = [item for item in reader.outline if not isinstance(item, list)][1:]
    front = reader.get_destination_page_number(top[0])  # the pages before the first part
    # one page's text per line: the contents fill more than one page, and a page's last number must not run
    # into the next page's first title
    contents = unicodedata.normalize("NFKC", "\n".join(reader.pages[i].extract_text() for i in range(front)))
    for part, item in zip(parts, top):
        first = reader.get_destination_page_number(item) + 1  # as a PDF viewer counts pages
        # the title's last word of plain letters, then its page number at the end of the same line
        # (the extracted text decomposes ligatures such as "fl"; CJK glyphs do not come back)
        # (or a module's dotted name, the title of an API page)
        words = unicodedata.normalize("NFKC", part.title).split()
        word = [w for w in words if re.fullmatch(r"[A-Za-z][A-Za-z0-9.]*", w)][-1]
        assert re.search(re.escape(word) + r"[^\n]*?\s" + str(first) + r"\s*$", contents, re.M), (part.title, first)


def test_the_maths_is_typeset_and_no_raw_tex_is_left(book):
    from pypdf import PdfReader

    _, parts, _, out = book
    reader = PdfReader(out)
    text = "\n".join(page.extract_text() for page in reader.pages)
    raw = RAW_TEX.search(text)
    assert raw is None, text[max(raw.start() - 80, 0): raw.end() + 80]
    # MathJax draws the formulas with its own web fonts, which Chromium embeds as Type 3 fonts: every
    # chapter's pages use them; the bibliography, which has no maths, does not (the control)
    top = [item for item in reader.outline if not isinstance(item, list)][1:]
    starts = [reader.get_destination_page_number(item) for item in top] + [len(reader.pages)]

    def type3_fonts(k: int) -> int:
        count = 0
        for page in reader.pages[starts[k]: starts[k + 1]]:
            fonts = (page.get("/Resources") or {}).get("/Font") or {}
            count += sum(str(f.get_object().get("/Subtype")) == "/Type3" for f in fonts.values())
        return count

    for k, part in enumerate(parts):
        if part.path.startswith("chapters/0"):
            assert type3_fonts(k) > 0, f"no typeset maths in {part.path}"
    assert type3_fonts([p.path for p in parts].index("chapters/appendix/bibliography.html")) == 0
    # Control: the pattern finds TeX where it is left raw
    assert RAW_TEX.search(r"the loss $$\frac{1}{2} \|v\|^2$$")


def test_the_landing_figure_is_in_the_pdf(book):
    from pypdf import PdfReader

    src, parts, _, out = book
    reader = PdfReader(out)
    top = [item for item in reader.outline if not isinstance(item, list)]
    intro = [p.path for p in parts].index("intro.html")
    first = reader.get_destination_page_number(top[intro + 1])
    images = [img for page in reader.pages[first: first + parts[intro].pages] for img in page.images]
    assert images and max(img.image.width for img in images) >= 600  # the 700-px strip of the landing page


def test_the_pdf_is_published_with_the_site():
    script = (ROOT / "scripts" / "test.sh").read_text()
    assert "scripts/build_pdf.py" in script and "_build/html/fmbook.pdf" in script
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    steps = workflow["jobs"]["book"]["steps"]
    assert any(s.get("with", {}).get("path") == "_build/html/fmbook.pdf" for s in steps)
    assert "pypdf" in (ROOT / "requirements.txt").read_text()

"""Print the built HTML book to one PDF: typeset maths, figures, a contents page and bookmarks.

Each page of the book, in the order of ``_toc.yml``, is opened in headless Chromium from a
local HTTP server, as a reader's browser would show it: MathJax has typeset every formula
(the script waits for it), the images and the widgets' saved pictures have loaded. Chromium
prints it (Playwright's ``page.pdf``, the engine of ``chromium --headless --print-to-pdf``)
with the headings as a PDF outline; pypdf joins the pages after a title and contents page
and gives the PDF one bookmark per page of the book (chapter), holding that page's headings.

    python scripts/build_pdf.py [--html _build/html] [--out _build/html/fmbook.pdf]

``scripts/build-pdf.sh`` runs it after the book build; ``scripts/test.sh`` writes the PDF
into the built site, which the workflow publishes (``<site>/fmbook.pdf``).
"""

from __future__ import annotations

import argparse
import html
import io
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from browser_test import CHROMIUM, CHROMIUM_FLAGS, IMAGES, WAIT_FOR_MATHJAX, WIDGETS, serve  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: What the printed pages leave out of the web page: navigation, buttons, the footer's links.
PRINT_CSS = """
@page { size: A4; margin: 16mm 15mm 18mm 15mm; }
.bd-header, .bd-sidebar-primary, .bd-sidebar-secondary, .header-article, .bd-header-article,
.prev-next-area, .prev-next-footer, .bd-footer, .bd-footer-content, .bd-footer-article, #pst-back-to-top,
.headerlink, .skip-link, .search-button, .theme-switch-button, .article-header-buttons,
.sidebar-toggle, .primary-toggle, .secondary-toggle { display: none !important; }
html, body { background: white !important; }
pre { white-space: pre-wrap !important; word-break: break-word; }
img { max-width: 100% !important; page-break-inside: avoid; }
figure, .cell_output img { break-inside: avoid; }
h1, h2, h3 { break-after: avoid; }
"""


@dataclass
class Part:
    """One page of the book, printed."""

    path: str  # relative to the built book, e.g. "chapters/03_flow_matching.html"
    title: str
    pdf: bytes
    pages: int = 0


def toc_pages(root: Path = ROOT) -> list[str]:
    """The book's pages in reading order (``_toc.yml``), as paths of the built HTML."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    found = [str(toc["root"])]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "file" in node:
                found.append(str(node["file"]))
            for key, value in node.items():
                if key != "file":
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk({k: v for k, v in toc.items() if k != "root"})
    return [re.sub(r"\.(ipynb|md)$", "", p) + ".html" for p in found]


def print_page(browser, url: str) -> tuple[str, bytes]:
    """(title, PDF) of one page, once its maths, images and widgets are drawn."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(url, wait_until="load")
        status = page.evaluate(WAIT_FOR_MATHJAX)
        if status not in ("typeset", "no maths on this page"):
            raise RuntimeError(f"{url}: {status}")
        page.evaluate(IMAGES)
        page.evaluate(WIDGETS)
        page.add_style_tag(content=PRINT_CSS)
        page.wait_for_timeout(200)
        title = page.evaluate("""() => {
          const h = ['.bd-article h1', 'article h1', 'h1'].map(q => document.querySelector(q)).find(e => e);
          return h ? h.textContent.replace(/#$/, '').replace(/\\s+/g, ' ').trim() : document.title;
        }""")
        pdf = page.pdf(format="A4", print_background=True, outline=True, tagged=True, scale=0.8,
                       margin={"top": "16mm", "bottom": "18mm", "left": "15mm", "right": "15mm"})
        return title, pdf
    finally:
        page.close()


def front_matter(browser, book_title: str, version: str, parts: list[Part], first_page: int) -> bytes:
    """The title and contents page(s): each page of the book with the PDF page it starts on."""
    rows, page = [], first_page
    for part in parts:
        rows.append(f"<tr><td>{html.escape(part.title)}</td><td class='n'>{page}</td></tr>")
        page += part.pages
    document = f"""<!doctype html><html><head><meta charset="utf-8"><style>
      body {{ font-family: "DejaVu Sans", sans-serif; margin: 0; }}
      h1 {{ font-size: 26pt; margin: 60mm 0 6mm; }} .v {{ color: #555; margin-bottom: 30mm; }}
      h2 {{ break-before: page; font-size: 16pt; }} table {{ width: 100%; border-collapse: collapse; }}
      td {{ padding: 3pt 0; border-bottom: 0.5pt dotted #999; font-size: 11pt; }} td.n {{ text-align: right; }}
    </style></head><body><h1>{html.escape(book_title)}</h1>
    <div class="v">{html.escape(version)}</div><h2>Contents</h2><table>{''.join(rows)}</table></body></html>"""
    page_ = browser.new_page()
    try:
        page_.set_content(document)
        return page_.pdf(format="A4", margin={"top": "20mm", "bottom": "20mm", "left": "20mm", "right": "20mm"})
    finally:
        page_.close()


def merge(front: bytes, parts: list[Part], out: Path) -> int:
    """Join the front matter and the parts; one bookmark per part, its headings beneath. Returns pages."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    writer.append(PdfReader(io.BytesIO(front)), import_outline=False)
    writer.add_outline_item(title="Contents", page_number=1 if len(writer.pages) > 1 else 0)
    for part in parts:
        start = len(writer.pages)
        reader = PdfReader(io.BytesIO(part.pdf))
        writer.append(reader, import_outline=False)
        parent = writer.add_outline_item(title=part.title, page_number=start)
        items = reader.outline
        headings = [item for item in items if not isinstance(item, list)]
        if len(headings) == 1:  # the page's title: the part's bookmark already; its sections go beneath
            items = next((item for item in items if isinstance(item, list)), [])
        _copy_outline(writer, reader, items, parent, start)
    writer.page_mode = "/UseOutlines"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as f:
        writer.write(f)
    return len(writer.pages)


def _heading(text: str) -> str:
    """A heading of Chromium's outline, spaces normalized; a title that it repeats at the end
    ("2.1. Flows and pathsFlows and paths"), once."""
    text = " ".join(text.split())
    for k in range(len(text) // 2, 3, -1):
        if text[-2 * k:-k] == text[-k:]:
            return text[:-k]
    return text


def _copy_outline(writer, reader, items: list, parent, offset: int) -> None:
    """The headings of one printed page (its outline) under ``parent``, pages shifted by ``offset``."""
    last = None
    for item in items:
        if isinstance(item, list):
            _copy_outline(writer, reader, item, last if last is not None else parent, offset)
            continue
        last = writer.add_outline_item(title=_heading(item.title),
                                       page_number=offset + reader.get_destination_page_number(item), parent=parent)


def build_pdf(html_root: Path, out: Path, root: Path = ROOT, chromium: str = CHROMIUM) -> tuple[list[Part], int]:
    from playwright.sync_api import sync_playwright
    from pypdf import PdfReader

    html_root = html_root.resolve()
    if not (html_root / "index.html").exists():
        raise SystemExit(f"no built book at {html_root} (build it first: jupyter-book build .)")
    config = yaml.safe_load((root / "_config.yml").read_text())
    version = re.search(r'^__version__ = "([^"]+)"', (root / "fmbook" / "__init__.py").read_text(), re.M).group(1)
    footer = ""
    index = (html_root / "intro.html").read_text(encoding="utf-8") if (html_root / "intro.html").exists() else ""
    m = re.search(r'class="fmbook-version">(.*?)</p>', index, re.S)
    if m:
        footer = re.sub(r"<[^>]+>", "", m.group(1)).strip()
    server, base = serve(html_root)
    parts: list[Part] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS, headless=True)
            for path in toc_pages(root):
                if not (html_root / path).exists():
                    raise SystemExit(f"the page {path} of _toc.yml is not in {html_root}")
                title, pdf = print_page(browser, f"{base}/{path}")
                parts.append(Part(path, title, pdf, len(PdfReader(io.BytesIO(pdf)).pages)))
                print(f"printed {path}: {parts[-1].pages} pages")
            probe = front_matter(browser, config["title"], footer or f"fmbook {version}", parts, 1)
            first = len(PdfReader(io.BytesIO(probe)).pages) + 1
            front = front_matter(browser, config["title"], footer or f"fmbook {version}", parts, first)
            browser.close()
    finally:
        server.shutdown()
    return parts, merge(front, parts, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", type=Path, default=ROOT / "_build" / "html", help="the built book")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "html" / "fmbook.pdf")
    parser.add_argument("--chromium", default=CHROMIUM, help="the Chromium executable (default: $CHROMIUM)")
    parser.add_argument("--book", type=Path, default=ROOT, help="the book's sources (_toc.yml, _config.yml)")
    args = parser.parse_args(argv)
    parts, pages = build_pdf(args.html, args.out, root=args.book, chromium=args.chromium)
    size = args.out.stat().st_size / 2**20
    print(f"wrote {args.out}: {pages} pages, {len(parts)} parts, {size:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

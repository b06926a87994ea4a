"""Reads the built book in headless Chromium and checks what a reader sees on every page.

Run after the book build (``scripts/browser-test`` installs Chromium when it is missing):

    python scripts/browser_test.py [--html _build/html] [--screenshots _build/screenshots]

Each page is served from a local HTTP server and opened with every request to another host
blocked and recorded. For every page it checks that

* the maths is typeset: MathJax drew ``mjx-container`` elements and no raw TeX (``\\(``,
  ``\\[``, ``$$``, ``\\begin{``) is left in the text outside code;
* every image has loaded (``naturalWidth > 0``), including the frames of animations, and
  every cell that calls ``plt.show()`` shows a figure;
* no cell shows an error or a traceback, and the page raised no JavaScript error;
* every widget view rendered (the widget manager drew it from the saved state), and a
  slider linked to a stack of pictures changes the picture without a kernel;
* exercise solutions are hidden until their button is clicked, and shown after;
* every file the page asks its server for exists (no 404);
* the lines a cell prints share one output box;
* its footer names the version of fmbook and the commit the book was built from;
* layout, at a 1280-pixel-wide window: no code or output block scrolls sideways (hidden code
  cells are opened first, as a reader opens them), naming the block and its longest line;
* every image of the content has a text alternative that says what it shows (its ``alt``, or
  for a widget's picture its ``title``; empty, generic ("png", "image", "figure") or a file
  name fails);
* a chapter's title, sections, equations and figures are numbered per chapter (3., 3.1.,
  (3.1), Fig. 3.1, in order), and no heading keeps a hand-written number ("3. 3. Flow").
* the page asked for nothing from another host, when ``_static/SOURCE`` says that the
  offline assets came from npm (with the CDN fallback, the maths and widgets need it).

A full-page screenshot of each page goes to the screenshots folder. Exit status 0 when every
page passes; otherwise each failure is printed and the status is 1. With ``--report-only`` the
same checks run and print, followed by a count of the failures of each kind per page, and the
status is 0: the list of what the chapters still have to fix. ``--pages`` checks only the
pages named (paths relative to the built book, e.g. ``chapters/03_flow_matching.html``).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import re
import socketserver
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_figures import CODE_WIDTH, MIN_ALT, generic_alt  # noqa: E402

#: The browser: $CHROMIUM when set (scripts/install-chromium then installs nothing), else Debian's.
CHROMIUM = os.environ.get("CHROMIUM") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Page errors that come from the book's toolchain, not from its content, with the reason.
KNOWN_PAGE_ERRORS = {
    # sphinx-thebe 0.3.1 adds its configuration script twice when Jupyter Book reads the
    # sources in two passes; the second copy fails, the first one works.
    "Identifier 'THEBE_JS_URL' has already been declared",
}
#: TeX left in a page's text: delimiters, or a command of the book's maths outside any formula (as
#: where a line of a paragraph that starts with "+" or "-" became a list item and broke the "$...$").
RAW_TEX = re.compile(
    r"\\\(|\\\[|\$\$|\\begin\{"
    r"|\\(frac|lVert|rVert|mathbb|mathcal|mathrm|varepsilon|alpha|sigma|nabla|partial|sqrt|cdot|dalpha|dsigma)(?![A-Za-z])"
)
#: The window in which the layout is checked (the width the code lines are formatted for).
VIEWPORT = {"width": 1280, "height": 900}
SKIP_PAGES = {"genindex.html", "search.html"}


@dataclass
class PageReport:
    path: str
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def check(self, ok: bool, message: str) -> None:
        if not ok:
            self.failures.append(message)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output short
        pass


def serve(root: Path) -> tuple[socketserver.ThreadingTCPServer, str]:
    """Serve ``root`` on a free local port in a background thread; returns (server, base URL)."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def book_pages(root: Path) -> list[Path]:
    """Every HTML page of the book (not the static files, the sources, the index or the search)."""
    pages = []
    for p in sorted(root.rglob("*.html")):
        rel = p.relative_to(root)
        if rel.parts[0] in ("_static", "_sources", "_images") or rel.name in SKIP_PAGES:
            continue
        if "http-equiv=\"Refresh\"" in p.read_text(encoding="utf8", errors="replace")[:2000]:
            continue  # the redirect index.html -> intro.html
        pages.append(p)
    return pages


# JavaScript run in the page ------------------------------------------------------------

WAIT_FOR_MATHJAX = """async () => {
  const mj = window.MathJax;
  if (!document.querySelector('script[src*="mathjax"]')) return "no maths on this page";
  for (let i = 0; i < 200 && !(mj && window.MathJax.startup && window.MathJax.startup.promise); i++)
    await new Promise(r => setTimeout(r, 50));
  if (!(window.MathJax && window.MathJax.startup)) return "MathJax did not start";
  await window.MathJax.startup.promise;
  return "typeset";
}"""

MATHS = """() => {
  const skip = "pre, code, script, style, textarea, mjx-container, .highlight, .cell_input";
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const raw = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (n.parentElement && n.parentElement.closest(skip)) continue;
    raw.push(n.textContent);
  }
  return {
    containers: document.querySelectorAll("mjx-container").length,
    mathNodes: document.querySelectorAll(".math, div.math, span.math").length,
    errors: document.querySelectorAll("mjx-merror, [data-mjx-error]").length,
    text: raw.join(" "),
  };
}"""

IMAGES = """async () => {
  const imgs = Array.from(document.images);
  for (const img of imgs) img.loading = "eager";
  await Promise.all(imgs.map(img => img.complete ? null :
    new Promise(r => { img.addEventListener("load", r); img.addEventListener("error", r);
                       setTimeout(r, 10000); })));
  return imgs.filter(img => !(img.complete && img.naturalWidth > 0))
             .map(img => (img.currentSrc || img.src || "(no src)").slice(0, 120));
}"""

CELL_ERRORS = """() => {
  const bad = Array.from(document.querySelectorAll(
      ".cell_output .traceback, .cell_output .error, .output.traceback, .output.error"));
  const outputs = Array.from(document.querySelectorAll(".cell_output"));
  const tracebacks = outputs.filter(o => /Traceback \\(most recent call last\\)|\\w+Error: /.test(o.innerText));
  return bad.concat(tracebacks).map(e => e.innerText.slice(0, 200));
}"""

SPLIT_STREAMS = """() => {
  // printed lines of one cell must share one box: two stream outputs side by side are a split stream
  const split = [];
  for (const out of document.querySelectorAll(".cell_output")) {
    const kids = Array.from(out.children);
    for (let i = 1; i < kids.length; i++)
      if (kids[i].classList.contains("stream") && kids[i - 1].classList.contains("stream"))
        split.push(kids[i].innerText.slice(0, 80));
  }
  return split;
}"""

WIDGETS = """async () => {
  const views = Array.from(document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]'));
  if (!views.length) return {views: 0, rendered: 0};
  for (let i = 0; i < 200; i++) {
    if (views.every(v => v.parentElement.querySelector(".jupyter-widgets, .widget-subarea > *"))) break;
    await new Promise(r => setTimeout(r, 50));
  }
  const rendered = views.filter(v => {
    const w = v.parentElement.querySelector(".jupyter-widgets");
    return w && w.getBoundingClientRect().height > 0;
  }).length;
  return {views: views.length, rendered: rendered};
}"""

STACK_PICTURE = """(box) => {
  const imgs = Array.from(box.querySelectorAll(".widget-image"));
  const shown = imgs.filter(i => i.offsetParent !== null && i.getBoundingClientRect().height > 0);
  return shown.length ? shown[0].src : null;
}"""

FIGURELESS_CELLS = r"""() => Array.from(document.querySelectorAll(".cell")).filter(cell => {
  const input = cell.querySelector(".cell_input");
  return input && /plt\.show\(\)/.test(input.textContent) && !cell.querySelector(".cell_output img");
}).map(cell => cell.querySelector(".cell_input").textContent.trim().slice(0, 80))"""

SOLUTIONS = """() => Array.from(document.querySelectorAll(".solution.dropdown, details.solution")).map(s => {
  const body = Array.from(s.children).filter(c => !c.classList.contains("admonition-title") &&
                                                  c.tagName !== "SUMMARY" && c.tagName !== "BUTTON");
  const visible = body.some(c => c.getBoundingClientRect().height > 0 && getComputedStyle(c).display !== "none");
  return {id: s.id, visible: visible};
})"""

EXERCISE_CELLS = """() => Array.from(document.querySelectorAll(".cell.tag_your-turn")).map(stub => {
  const shown = el => !!el && el.getBoundingClientRect().height > 0 && getComputedStyle(el).display !== "none";
  let next = stub.nextElementSibling;
  while (next && !next.classList.contains("cell")) next = next.nextElementSibling;
  const check = next && next.classList.contains("tag_check") ? next : null;
  const output = check ? check.querySelector(".cell_output") : null;
  return {stub: stub.querySelector(".cell_input") ? stub.querySelector(".cell_input").innerText.split("\\n")[0] : "",
          stubShown: shown(stub.querySelector(".cell_input")), inSolution: !!stub.closest(".solution"),
          check: !!check, checkShown: !!check && shown(check.querySelector(".cell_input")),
          checkInSolution: !!check && !!check.closest(".solution"), output: output ? output.innerText : ""};
})"""


SIDEWAYS = r"""() => {
  // open every hidden code cell (a reader may), then find the blocks that scroll sideways
  for (const d of document.querySelectorAll(".cell details, details.hide, details.above-input")) d.open = true;
  const content = [".bd-article", "article", "main"].map(s => document.querySelector(s)).find(e => e) || document.body;
  const blocks = Array.from(content.querySelectorAll(
      ".cell_input pre, .cell_output pre, .cell_output .output, div.highlight pre"));
  const cells = Array.from(content.querySelectorAll(".cell"));
  const out = [];
  for (const b of blocks) {
    if (b.offsetParent === null || b.getBoundingClientRect().width === 0) continue;  // not shown
    const style = getComputedStyle(b);
    if (b.scrollWidth <= b.clientWidth) continue;
    if (b.tagName !== "PRE" && !["auto", "scroll"].includes(style.overflowX)) continue;
    if (b.tagName !== "PRE" && b.querySelector("pre") && Array.from(b.querySelectorAll("pre"))
        .some(p => p.scrollWidth > p.clientWidth)) continue;  // reported through its <pre>
    const cell = b.closest(".cell");
    const kind = b.closest(".cell_input") ? "code" : (b.closest(".cell_output") ? "output" : "code block");
    const lines = (b.innerText || b.textContent || "").split("\n");
    const longest = lines.reduce((a, l) => l.length > a.length ? l : a, "");
    const source = cell ? (cell.querySelector(".cell_input pre") || {}).textContent || "" : "";
    out.push({kind: kind, cell: cell ? cells.indexOf(cell) : -1, first: source.split("\n")[0].slice(0, 60),
              scroll: b.scrollWidth, client: b.clientWidth, longest: longest, length: longest.length});
  }
  return out;
}"""

ALT_TEXTS = """() => {
  const content = [".bd-article", "article", "main"].map(s => document.querySelector(s)).find(e => e) || document.body;
  return Array.from(content.querySelectorAll("img")).map(img => ({
    src: (img.getAttribute("src") || "").slice(0, 80),
    alt: img.getAttribute("alt"),
    title: img.getAttribute("title") || img.getAttribute("aria-label") || "",
  }));
}"""

NUMBERS = r"""() => {
  const content = [".bd-article", "article", "main"].map(s => document.querySelector(s)).find(e => e) || document.body;
  const text = e => (e ? e.textContent : "").replace(/\u00a0/g, " ").trim();
  const h1 = content.querySelector("h1");
  const num = h1 ? h1.querySelector(".section-number") : null;
  const heading = h => {
    const n = h.querySelector(".section-number");
    const all = text(h).replace(/#$/, "").trim();
    return {number: text(n), rest: n ? all.slice(text(n).length).trim() : all};
  };
  return {
    chapter: text(num).replace(/\.$/, ""),
    title: h1 ? heading(h1) : null,
    sections: Array.from(content.querySelectorAll("h2")).map(heading),
    equations: Array.from(content.querySelectorAll(".eqno")).map(e => text(e).replace(/#$/, "").trim()),
    figures: Array.from(content.querySelectorAll("figure .caption-number, .figure .caption-number"))
      .map(e => text(e)),
  };
}"""


# The checks ----------------------------------------------------------------------------


def check_layout(page: Page, report: PageReport) -> None:
    """No visible code or output block scrolls sideways at the test's window width."""
    for b in page.evaluate(SIDEWAYS):
        where = f"cell {b['cell']} ({b['first']!r})" if b["cell"] >= 0 else "a code block of the text"
        report.failures.append(
            f"layout: {b['kind']} of {where} scrolls sideways ({b['scroll']} > {b['client']} px at "
            f"{VIEWPORT['width']} px); longest line, {b['length']} characters (at most {CODE_WIDTH}): "
            f"{b['longest'][:100]!r}"
        )


def check_alt_texts(page: Page, report: PageReport) -> None:
    """Every image of the content has a text alternative that says what it shows."""
    for img in page.evaluate(ALT_TEXTS):
        # the accessible name: alt; without an alt attribute (a widget's picture cannot have one),
        # its title or aria-label. alt="" marks an image as decoration, which no figure is.
        name = (img["alt"] if img["alt"] is not None else img["title"]).strip()
        file = img["src"].split("/")[-1] if not img["src"].startswith("data:") else ""
        if generic_alt(name) or len(name) < MIN_ALT or (file and name.endswith(file)):
            report.failures.append(f"alt: image {img['src']!r} has no text alternative that says what it shows "
                                   f"(alt={img['alt']!r})")


def check_numbering(page: Page, report: PageReport) -> None:
    """A numbered chapter's sections, equations and figures carry its number, in order."""
    found = page.evaluate(NUMBERS)
    chapter = found["chapter"]
    if not chapter:
        if report.path.startswith("chapters/0"):
            report.failures.append("numbering: the chapter's title has no number (not in a numbered part of _toc.yml?)")
        return
    hand = re.compile(r"^\d+(\.\d+)*\.?\s")
    for h in [found["title"], *found["sections"]]:
        if h and hand.match(h["rest"]):
            report.failures.append(f"numbering: heading {h['number']} {h['rest'][:50]!r} keeps a hand-written number")
    sections = [h["number"].rstrip(".") for h in found["sections"] if h["number"]]
    if sections != [f"{chapter}.{k}" for k in range(1, len(sections) + 1)]:
        report.failures.append(f"numbering: sections are {sections[:6]}, not {chapter}.1, {chapter}.2, ...")
    equations = [e.strip("()") for e in found["equations"]]
    if equations != [f"{chapter}.{k}" for k in range(1, len(equations) + 1)]:
        report.failures.append(f"numbering: equations are {equations[:6]}, not ({chapter}.1), ({chapter}.2), ...")
    figures = [f.removeprefix("Fig.").strip() for f in found["figures"]]
    if figures != [f"{chapter}.{k}" for k in range(1, len(figures) + 1)]:
        report.failures.append(f"numbering: figures are {figures[:6]}, not Fig. {chapter}.1, Fig. {chapter}.2, ...")


def check_page(page: Page, url: str, report: PageReport, expect_offline: bool, shots: Path) -> None:
    errors: list[str] = []
    external: list[str] = []
    missing: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.on("response", lambda r: r.status >= 400 and missing.append(f"{r.status} {r.url}"))
    base = url.split("/", 3)[:3]
    local = "/".join(base)

    def route(r):
        if r.request.url.startswith(local) or r.request.url.startswith(("data:", "blob:")):
            return r.continue_()
        external.append(r.request.url)
        return r.abort()

    page.route("**/*", route)
    page.goto(url, wait_until="load")

    status = page.evaluate(WAIT_FOR_MATHJAX)
    maths = page.evaluate(MATHS)
    if status != "no maths on this page":
        report.check(status == "typeset", f"maths: {status}")
        report.check(maths["containers"] > 0, "maths: MathJax drew no mjx-container on a page with maths")
    else:
        report.check(maths["mathNodes"] == 0, "maths: the page has maths but does not load MathJax")
    report.check(maths["errors"] == 0, f"maths: {maths['errors']} formula(s) with a TeX error")
    raw = RAW_TEX.search(maths["text"])
    if raw:
        start = max(raw.start() - 40, 0)
        report.failures.append(f"maths: raw TeX left in the text: ...{maths['text'][start:raw.end() + 40]!r}...")

    widgets = page.evaluate(WIDGETS)
    report.check(
        widgets["rendered"] == widgets["views"],
        f"widgets: {widgets['rendered']} of {widgets['views']} widget views rendered",
    )
    if widgets["views"]:
        report.notes.append(f"{widgets['views']} widget view(s) rendered")
        check_linked_slider(page, report)

    broken = page.evaluate(IMAGES)
    report.check(not broken, f"images: {len(broken)} did not load: {broken[:3]}")
    figureless = page.evaluate(FIGURELESS_CELLS)
    report.check(
        not figureless,
        f"figures: {len(figureless)} cell(s) call plt.show() but show no figure (was MPLBACKEND=Agg set "
        f"for the build?): {figureless[:2]}",
    )
    cell_errors = page.evaluate(CELL_ERRORS)
    report.check(not cell_errors, f"cells: {len(cell_errors)} output(s) show an error: {cell_errors[:2]}")
    check_solutions(page, report)
    check_exercise_cells(page, report)
    check_layout(page, report)
    check_alt_texts(page, report)
    check_numbering(page, report)
    split = page.evaluate(SPLIT_STREAMS)
    report.check(not split, f"outputs: {len(split)} printed line(s) in a box of their own: {split[:2]}")
    version = page.evaluate("() => (document.querySelector('.fmbook-version') || {}).textContent || ''")
    report.check(bool(re.fullmatch(r"fmbook \d+\.\d+\.\d+\S*, commit [0-9a-f]{12}( \+ local changes)?|"
                                   r"fmbook \d+\.\d+\.\d+\S*, commit \S+", version.strip())),
                 f"footer: no 'fmbook <version>, commit <hash>' line (found {version.strip()!r})")

    report.check(not missing, f"files: the page asked for missing files: {missing[:3]}")
    unexpected = [e for e in errors if not any(k in e for k in KNOWN_PAGE_ERRORS)]
    report.check(not unexpected, f"javascript: the page raised {unexpected[:3]}")
    if expect_offline:
        report.check(not external, f"offline: the page asked other hosts for {sorted(set(external))[:4]}")
    elif external:
        report.notes.append(f"{len(set(external))} request(s) to other hosts (CDN fallback)")

    name = report.path.replace("/", "__").removesuffix(".html") + ".png"
    page.screenshot(path=str(shots / name), full_page=True)


def check_linked_slider(page: Page, report: PageReport) -> None:
    """A slider linked to a stack of pictures (fmbook.interactive.slider_figure) must switch pictures."""
    boxes = page.locator(".widget-vbox:has(.widget-hslider):has(.widget-image)")
    for i in range(boxes.count()):
        box = boxes.nth(i)
        before = box.evaluate(STACK_PICTURE)
        handle = box.locator(".widget-hslider .noUi-handle, .widget-hslider .ui-slider-handle").first
        if before is None or handle.count() == 0:
            report.failures.append("widgets: a slider figure shows no picture or has no slider handle")
            continue
        handle.focus()
        page.keyboard.press("End")
        page.wait_for_timeout(300)
        after = box.evaluate(STACK_PICTURE)
        report.check(after is not None and after != before, "widgets: moving the slider did not change the picture")


def check_exercise_cells(page: Page, report: PageReport) -> None:
    """Every "your turn" stub and its check cell show, outside the (hidden) solutions, and the
    check reports the untouched stub as not attempted."""
    cells = page.evaluate(EXERCISE_CELLS)
    for c in cells:
        where = f"exercises: the stub {c['stub']!r}"
        report.check(c["stubShown"] and not c["inSolution"], f"{where} is hidden or inside a solution")
        report.check(c["check"], f"{where} has no check cell after it")
        report.check(c["checkShown"] and not c["checkInSolution"], f"{where}: its check cell is hidden")
        report.check("not attempted yet" in c["output"], f"{where}: its check cell does not say 'not attempted yet'")
    if cells:
        report.notes.append(f"{len(cells)} your-turn cell(s) with their checks shown")


def check_solutions(page: Page, report: PageReport) -> None:
    """Every exercise solution starts hidden, and clicking its title shows it."""
    solutions = page.evaluate(SOLUTIONS)
    for s in solutions:
        report.check(not s["visible"], f"exercises: solution {s['id']} is visible before a click")
    for s in solutions:
        if s["visible"]:
            continue
        target = page.locator(f'[id="{s["id"]}"]')
        target.scroll_into_view_if_needed()
        button = target.locator(".toggle-button")
        if button.count() == 0:
            button = target.locator("summary, .admonition-title")
        button.first.click()
        page.wait_for_timeout(400)  # the toggle animates
        now = {x["id"]: x["visible"] for x in page.evaluate(SOLUTIONS)}
        report.check(now.get(s["id"], False), f"exercises: solution {s['id']} stays hidden after a click")
    if solutions:
        report.notes.append(f"{len(solutions)} solution(s) hidden, then shown on click")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", default="_build/html", type=Path, help="the built book")
    parser.add_argument("--screenshots", default="_build/screenshots", type=Path)
    parser.add_argument("--chromium", default=CHROMIUM,
                        help="the Chromium executable (default: $CHROMIUM, else /usr/bin/chromium)")
    parser.add_argument("--report-only", action="store_true",
                        help="print every failure and a count per page and kind, and exit 0")
    parser.add_argument("--pages", nargs="*", default=None,
                        help="check only these pages (paths in the built book, e.g. chapters/03_flow_matching.html)")
    args = parser.parse_args(argv)
    root = args.html.resolve()
    if not (root / "index.html").exists():
        print(f"no built book at {root} (build it first: jupyter-book build .)", file=sys.stderr)
        return 2
    source = root / "_static" / "SOURCE"
    expect_offline = source.exists() and " npm: " in f" {source.read_text()}"
    print(f"offline assets: {source.read_text().strip() if source.exists() else 'missing'}")
    args.screenshots.mkdir(parents=True, exist_ok=True)
    server, base = serve(root)
    reports = []
    try:
        with sync_playwright() as p, tempfile.TemporaryDirectory(prefix="fmbook-chromium-") as profile:
            browser = p.chromium.launch_persistent_context(
                profile,
                executable_path=args.chromium,
                args=CHROMIUM_FLAGS,
                headless=True,
                viewport=VIEWPORT,
            )
            pages = book_pages(root)
            if args.pages is not None:
                wanted = {p.removeprefix("./") for p in args.pages}
                unknown = wanted - {p.relative_to(root).as_posix() for p in pages}
                if unknown:
                    print(f"no such page in the book: {sorted(unknown)}", file=sys.stderr)
                    return 2
                pages = [p for p in pages if p.relative_to(root).as_posix() in wanted]
            for path in pages:
                rel = path.relative_to(root).as_posix()
                report = PageReport(rel)
                page = browser.new_page()
                try:
                    check_page(page, f"{base}/{rel}", report, expect_offline, args.screenshots)
                except Exception as err:  # a page that cannot be checked fails, with the reason
                    report.failures.append(f"could not check the page: {type(err).__name__}: {err}")
                finally:
                    page.close()
                reports.append(report)
                mark = "ok  " if not report.failures else "FAIL"
                print(f"{mark} {rel}" + (f"  ({'; '.join(report.notes)})" if report.notes else ""))
                for f in report.failures:
                    print(f"       {f}")
            browser.close()
    finally:
        server.shutdown()
    failed = [r for r in reports if r.failures]
    print(f"{len(reports) - len(failed)} of {len(reports)} pages passed; screenshots in {args.screenshots}")
    if args.report_only:
        print(summary(reports))
        return 0
    return 1 if failed or not reports else 0


def summary(reports: list[PageReport]) -> str:
    """A table of the failures per page and kind (the word before the colon of each failure)."""
    kinds = sorted({f.split(":", 1)[0] for r in reports for f in r.failures})
    if not kinds:
        return "no failure"
    width = max(len(r.path) for r in reports)
    lines = ["page".ljust(width) + "  " + "  ".join(kinds)]
    for r in reports:
        if r.failures:
            counts = [sum(f.startswith(k + ":") for f in r.failures) for k in kinds]
            lines.append(r.path.ljust(width) + "  " + "  ".join(str(c).rjust(len(k)) for c, k in zip(counts, kinds)))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

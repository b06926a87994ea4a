"""The layout, alt-text and numbering checks of scripts/browser_test.py, on small pages in Chromium."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("browser_test", ROOT / "scripts" / "browser_test.py")
browser_test = importlib.util.module_from_spec(spec)
sys.modules["browser_test"] = browser_test
spec.loader.exec_module(browser_test)

# The box of the book at 1280 px: a 684-px <pre> with 16-px padding, 14-px monospace.
STYLE = """<style>
  body { margin: 0; } .bd-article { width: 752px; }
  pre { width: 652px; padding: 0 16px; overflow: auto; font: 14px "DejaVu Sans Mono", monospace; }
</style>"""


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM", browser_test.CHROMIUM),
                                    args=browser_test.CHROMIUM_FLAGS)
        page = browser.new_page(viewport=browser_test.VIEWPORT)
        yield page
        browser.close()


def run(page, check, body: str, path: str = "chapters/03_flow_matching.html") -> list[str]:
    page.set_content(f"<html><head>{STYLE}</head><body><article class='bd-article'>{body}</article></body></html>")
    report = browser_test.PageReport(path)
    check(page, report)
    return report.failures


def cell(code: str, output: str = "", hidden: bool = False) -> str:
    source = f'<div class="cell_input"><div class="highlight"><pre>{code}</pre></div></div>'
    if hidden:
        source = f'<details class="hide above-input"><summary>Show code</summary>{source}</details>'
    out = f'<div class="cell_output"><div class="output stream"><pre>{output}</pre></div></div>' if output else ""
    return f'<div class="cell">{source}{out}</div>'


def test_a_line_of_the_box_width_fits_and_one_more_character_scrolls(page):
    fits = "x" * browser_test.CODE_WIDTH
    assert run(page, browser_test.check_layout, cell(fits, output=fits)) == []
    failures = run(page, browser_test.check_layout, cell("short = 1", output="y" * (browser_test.CODE_WIDTH + 1)))
    assert len(failures) == 1 and failures[0].startswith("layout: output of cell 0 ('short = 1') scrolls sideways")
    assert f"longest line, {browser_test.CODE_WIDTH + 1} characters" in failures[0]


def test_hidden_code_cells_are_opened_and_measured(page):
    long_line = "model = train(" + "argument, " * 10 + ")"
    failures = run(page, browser_test.check_layout, cell("a = 1", hidden=False) + cell(long_line, hidden=True))
    assert len(failures) == 1 and "code of cell 1" in failures[0] and "model = train(" in failures[0]


@pytest.mark.parametrize(
    ("img", "ok"),
    [
        ('<img src="a.png" alt="Two half-moons of orange points and green samples on them">', True),
        ('<img src="a.png">', False),
        ('<img src="a.png" alt="">', False),
        ('<img src="a.png" alt="png">', False),
        ('<img src="a.png" alt="Figure">', False),
        ('<img src="../_images/abc123.png" alt="../_images/abc123.png">', False),
        ('<img class="widget-image" src="blob:x" title="samples of p_t at t = 0.50">', True),  # a widget's picture
        ('<img class="widget-image" src="blob:x">', False),
    ],
)
def test_every_image_needs_a_text_alternative_that_says_what_it_shows(page, img, ok):
    failures = run(page, browser_test.check_alt_texts, img)
    assert (failures == []) == ok, failures


def chapter(title: str, sections: list[str], equations: list[str], figures: list[str]) -> str:
    def heading(tag: str, text: str) -> str:
        number, _, rest = text.partition("|")
        return f'<{tag}><span class="section-number">{number} </span>{rest}<a class="headerlink">#</a></{tag}>'

    return (heading("h1", title) + "".join(heading("h2", s) for s in sections)
            + "".join(f'<div class="math"><span class="eqno">({e})<a>#</a></span></div>' for e in equations)
            + "".join(f'<figure><figcaption><span class="caption-number">Fig. {f} </span>c</figcaption></figure>'
                      for f in figures))


def test_numbers_run_per_chapter(page):
    good = chapter("3.|Flow matching", ["3.1.|One", "3.2.|Two"], ["3.1", "3.2"], ["3.1", "3.2", "3.3"])
    assert run(page, browser_test.check_numbering, good) == []
    # Negative controls: numbers through the whole book, a hand-written number left in a title
    failures = run(page, browser_test.check_numbering, chapter("3.|Flow", ["3.1.|One"], ["10", "11"], ["5"]))
    assert any("equations are ['10', '11']" in f for f in failures)
    assert any("figures are ['5']" in f for f in failures)
    failures = run(page, browser_test.check_numbering, chapter("3.|3. Flow matching", ["3.1.|4.1 One"], [], []))
    assert sum("keeps a hand-written number" in f for f in failures) == 2
    failures = run(page, browser_test.check_numbering, "<h1>Flow matching</h1>")
    assert failures and "has no number" in failures[0]
    assert run(page, browser_test.check_numbering, "<h1>Notation</h1>", path="chapters/appendix/notation.html") == []


def test_the_summary_counts_failures_per_page_and_kind():
    one = browser_test.PageReport("chapters/03.html", failures=["layout: a", "layout: b", "alt: c"])
    two = browser_test.PageReport("intro.html")
    table = browser_test.summary([one, two]).splitlines()
    assert table[0].split() == ["page", "alt", "layout"]
    assert table[1].split() == ["chapters/03.html", "1", "2"] and len(table) == 2


@pytest.mark.parametrize(
    ("text", "raw"),
    [
        ("changes the cost by $\\lVert x_{0,i} - x_{1,j}\\rVert^2", True),  # a "$...$" broken by a list item
        ("then G_{ij} = -\\frac{1 - t}{t} < 0", True),
        ("| scheduler | $\\alpha_0$ | $\\alpha_1$ |", True),  # a table that did not render
        ("left as \\(x_t\\) or $$x$$", True),
        ("the velocity field v_t of the path, t in [0, 1]; a \\n in a string", False),
        ("the fraction \\fraction and \\alphabet are not the book's commands", False),
    ],
)
def test_raw_tex_is_found_in_the_text_of_a_page(text, raw):
    assert bool(browser_test.RAW_TEX.search(text)) == raw

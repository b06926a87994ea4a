"""Opens every reader notebook in JupyterLab, in headless Chromium, and checks what a reader sees.

The reader notebooks (scripts/reader_notebooks.py) are what Binder, Colab and a local
JupyterLab show. This test starts JupyterLab on localhost over a folder of them and opens each
one. To see the figures without executing the book a second time, the notebooks are converted
from nbval's recorded runs of the chapters (``--executed``; their code cells are the reader
notebooks' own, so these are the outputs a reader gets by running them). For every notebook it
checks that

* the maths typesets: JupyterLab's MathJax drew ``mjx-container`` elements, none of them an
  error (an undefined macro, for instance, is an ``mjx-merror``), and no raw TeX is left;
* no MyST is left as raw text (``{prf:``, ``{exercise}``, ``{cite:``, ``{eq}``, ``:::``, ...);
* every solution is collapsed: its ``<details>`` blocks are closed and its code cells show only
  their placeholder;
* every figure of a visible output has loaded.

Screenshots go to ``_build/screenshots/jupyterlab/``. Exit status 0 when every notebook passes.

    python scripts/jupyterlab_test.py --executed _build/.nbval_executed
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import nbformat
from playwright.sync_api import Page, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))
from browser_test import CHROMIUM, CHROMIUM_FLAGS  # noqa: E402
from reader_notebooks import ROOT, current_commit, write_all  # noqa: E402

RAW_MYST = ["{prf:", "{exercise}", "{solution-", "{cite:", "{eq}", "{doc}", "{ref}", "{numref}", ":::{", "```{"]

STATE = """() => {
  const P = ".jp-NotebookPanel:not(.lm-mod-hidden) ";  // the notebook in front
  const rendered = Array.from(document.querySelectorAll(P + ".jp-MarkdownOutput"));
  const text = rendered.map(e => {
    const copy = e.cloneNode(true);
    copy.querySelectorAll("mjx-container, code, pre").forEach(n => n.remove());
    return copy.textContent;
  }).join("\\n");
  const images = Array.from(document.querySelectorAll(P + ".jp-OutputArea-output img"));
  return {
    cells: document.querySelectorAll(P + ".jp-Cell").length,
    maths: document.querySelectorAll(P + ".jp-MarkdownOutput mjx-container").length,
    // an error box, or an undefined command, which MathJax shows as its name in red
    mathErrors: document.querySelectorAll(P + "mjx-merror, " + P + "[data-mjx-error], " + P +
                                          'mjx-assistive-mml mtext[mathcolor="red"]').length,
    // a directive's fence read as a plain code block: its "language" is the directive
    rawFences: Array.from(document.querySelectorAll(P + ".jp-MarkdownOutput pre code"))
                 .map(e => e.className).filter(c => c.includes("{")),
    text: text,
    details: document.querySelectorAll(P + ".jp-MarkdownOutput details").length,
    openDetails: document.querySelectorAll(P + ".jp-MarkdownOutput details[open]").length,
    hiddenInputs: document.querySelectorAll(P + ".jp-Cell .jp-InputPlaceholder").length,
    images: images.length,
    brokenImages: images.filter(img => !(img.complete && img.naturalWidth > 0)).length,
  };
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_jupyterlab(root: Path, settings: Path, port: int, token: str) -> subprocess.Popen:
    """JupyterLab over ``root`` on localhost, with every notebook cell rendered (no windowing)."""
    tracker = settings / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    notification = settings / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTER_CONFIG_DIR=str(settings / "config"))
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={token}", "--ServerApp.port_retries=0",
        "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),  # CI containers run as root
    ]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=1)
            return server
        except OSError:
            if server.poll() is not None:
                raise RuntimeError(f"JupyterLab did not start: {server.stderr.read()[-2000:]}") from None
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("JupyterLab did not answer within 120 s")


def expected(path: Path) -> dict[str, int]:
    nb = nbformat.read(path, as_version=4)
    hidden = [c for c in nb.cells if c.metadata.get("jupyter", {}).get("source_hidden")]
    visible_images = sum(
        1 for c in nb.cells if c.cell_type == "code" and not c.metadata.get("jupyter", {}).get("outputs_hidden")
        for o in c.get("outputs", []) if "image/png" in o.get("data", {})
    )
    details = sum(c.source.count("<details") for c in nb.cells if c.cell_type == "markdown")
    return {"cells": len(nb.cells), "hidden": len(hidden), "images": visible_images, "details": details}


def check_notebook(page: Page, url: str, want: dict[str, int], screenshot: Path) -> list[str]:
    page.goto(url)
    page.wait_for_selector(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell", state="attached", timeout=120_000)
    state: dict = {}
    readings: list[tuple] = []
    for _ in range(240):  # until the cells are rendered and the typesetting has settled (3 equal readings)
        state = page.evaluate(STATE)
        readings.append((state["cells"], state["maths"], state["details"], state["images"] - state["brokenImages"]))
        settled = len(readings) >= 3 and len(set(readings[-3:])) == 1
        if settled and state["cells"] >= want["cells"] and state["maths"] > 0 and state["brokenImages"] == 0:
            break
        page.wait_for_timeout(500)
    page.screenshot(path=str(screenshot))
    failures = []
    if state["cells"] != want["cells"]:
        failures.append(f"{state['cells']} cells shown, the notebook has {want['cells']}")
    if state["maths"] == 0:
        failures.append("no maths was typeset")
    if state["mathErrors"]:
        failures.append(f"{state['mathErrors']} maths error(s) (an undefined macro or bad TeX)")
    for raw in RAW_MYST + ["$$", "\\begin{"]:
        if raw in state["text"]:
            at = state["text"].index(raw)
            failures.append(f"raw text {raw!r} is shown: ...{state['text'][max(0, at - 60):at + 60]!r}...")
    if state["rawFences"]:
        failures.append(f"directives shown as code blocks: {state['rawFences'][:3]}")
    if state["details"] != want["details"] or state["openDetails"]:
        failures.append(f"{state['details']} solution blocks ({state['openDetails']} open), expected "
                        f"{want['details']} closed")
    if state["hiddenInputs"] != want["hidden"]:
        failures.append(f"{state['hiddenInputs']} collapsed code cells, expected {want['hidden']} solution cells")
    if state["images"] - state["brokenImages"] < want["images"]:
        failures.append(f"{state['images'] - state['brokenImages']} figures shown of {want['images']}")
    return failures


def control_notebook(path: Path) -> Path:
    """A notebook with the faults the check must catch: an undefined macro, raw MyST, an open solution."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Control\n\nThe expectation $\\E[X]$ with the book's macro left in."),
        nbformat.v4.new_markdown_cell("```{prf:theorem} Raw\nA directive shown as text.\n```"),
        nbformat.v4.new_markdown_cell("<details open>\n<summary>Solution</summary>\n\nIn plain view.\n\n</details>"),
    ])
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executed", type=Path, required=True, help="nbval's recorded runs of the chapters")
    parser.add_argument("--screenshots", type=Path, default=ROOT / "_build" / "screenshots" / "jupyterlab")
    parser.add_argument("--chromium", default=CHROMIUM)
    parser.add_argument("--only", nargs="*", default=None, help="check only these chapters (file names)")
    args = parser.parse_args(argv)
    args.screenshots.mkdir(parents=True, exist_ok=True)
    failed = 0
    with tempfile.TemporaryDirectory(prefix="fmbook-lab-") as work:
        work = Path(work)
        notebooks = write_all(work / "lab", current_commit(), executed=args.executed)
        if args.only:
            notebooks = [p for p in notebooks if p.name in args.only]
        control = control_notebook(work / "lab" / "control" / "faults.ipynb")
        port, token = free_port(), secrets.token_hex(16)
        server = start_jupyterlab(work / "lab", work / "settings", port, token)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_FLAGS, headless=True)
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                for k, path in enumerate([control, *notebooks]):
                    began = time.perf_counter()
                    rel = path.relative_to(work / "lab").as_posix()
                    page = context.new_page()
                    try:
                        failures = check_notebook(page, f"http://127.0.0.1:{port}/lab/workspaces/reader{k}/tree/{rel}?reset&token={token}",
                                                  expected(path), args.screenshots / f"{path.stem}.png")
                    except Exception as error:  # a notebook that cannot be checked fails, with the reason
                        failures = [f"could not check the notebook: {type(error).__name__}: {error}"]
                    finally:
                        page.close()
                    seconds = time.perf_counter() - began
                    if path == control:  # the negative control: each of its faults must be reported
                        caught = [any(word in f for f in failures) for word in ("maths error", "{prf:", "1 open")]
                        print(f"{'ok  ' if all(caught) else 'FAIL'} the control notebook's faults are caught "
                              f"({sum(caught)} of 3)")
                        failed += not all(caught)
                        continue
                    failed += bool(failures)
                    print(f"{'FAIL' if failures else 'ok  '} {rel} in JupyterLab ({seconds:.0f} s)")
                    for failure in failures:
                        print(f"       {failure}")
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"{len(notebooks) - failed} of {len(notebooks)} reader notebooks passed in JupyterLab; "
          f"screenshots in {args.screenshots}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

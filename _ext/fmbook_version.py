"""A Sphinx extension of the book: prints the version of fmbook and the commit in every page's footer.

A reader who reports a problem, or who compares a page with the notebook they run, can tell
which book they read: "fmbook 0.1.0, commit 0123abcd4567". The commit comes from ``git`` (or the
environment variable ``FMBOOK_COMMIT`` where the build has no git checkout), with "+ local
changes" when the working tree differs from it.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fmbook_version() -> str:
    text = (ROOT / "fmbook" / "__init__.py").read_text()
    return re.search(r'^__version__ = "([^"]+)"', text, re.M).group(1)


def book_commit() -> str:
    if os.environ.get("FMBOOK_COMMIT"):
        return os.environ["FMBOOK_COMMIT"]
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        return "unknown"
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "chapters", "fmbook"],
                           capture_output=True, text=True)
    return head.stdout.strip()[:12] + (" + local changes" if dirty.stdout.strip() else "")


def footer() -> str:
    return (f'<p class="fmbook-version">fmbook {fmbook_version()}, commit '
            f'<code>{book_commit()}</code></p>')


def _add_footer(app, config) -> None:
    options = dict(config.html_theme_options or {})
    options["extra_footer"] = (options.get("extra_footer") or "") + footer()
    config.html_theme_options = options


def setup(app):
    app.connect("config-inited", _add_footer)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

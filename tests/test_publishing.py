"""The book says what it is and which version a reader has: licence, citation file, footer."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import yaml

import fmbook

ROOT = Path(__file__).resolve().parents[1]


def test_licence_matches_the_package_metadata():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert 'license = { text = "MIT" }' in (ROOT / "pyproject.toml").read_text()


def test_citation_file_names_this_version():
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["version"] == fmbook.__version__
    assert citation["license"] == "MIT" and citation["repository-code"].startswith("https://github.com/")
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert citation["url"] == config["html"]["baseurl"]


def _extension():
    spec = importlib.util.spec_from_file_location("fmbook_version", ROOT / "_ext" / "fmbook_version.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["fmbook_version"] = module
    spec.loader.exec_module(module)
    return module


def test_the_footer_names_the_version_and_the_commit(monkeypatch):
    ext = _extension()
    assert ext.fmbook_version() == fmbook.__version__
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    footer = ext.footer()
    assert f"fmbook {fmbook.__version__}, commit" in footer
    if head.returncode == 0:
        assert head.stdout.strip()[:12] in footer
    monkeypatch.setenv("FMBOOK_COMMIT", "feedc0ffee12")
    assert re.search(r"commit <code>feedc0ffee12</code>", ext.footer())


def test_the_extension_adds_the_footer_to_the_theme_options():
    ext = _extension()

    class Config:
        html_theme_options = {"extra_footer": "<p>earlier</p>"}

    config = Config()
    ext._add_footer(None, config)
    assert config.html_theme_options["extra_footer"].startswith("<p>earlier</p><p class=\"fmbook-version\">")

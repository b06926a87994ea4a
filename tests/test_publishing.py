"""The book says what it is and which version a reader has: licence, citation file, footer."""

import importlib.util
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import tomllib
import yaml

import fmbook

ROOT = Path(__file__).resolve().parents[1]


def test_licence_matches_the_package_metadata():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]


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


def test_the_changelog_has_an_entry_for_this_version_and_says_how_releases_are_tagged():
    text = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## {re.escape(fmbook.__version__)} - \d{{4}}-\d{{2}}-\d{{2}}$", text, re.M)
    assert "## Unreleased" in text and "`vMAJOR.MINOR.PATCH`" in text
    released = re.search(rf"^## {re.escape(fmbook.__version__)} - (\S+)$", text, re.M).group(1)
    assert str(yaml.safe_load((ROOT / "CITATION.cff").read_text())["date-released"]) == released


def test_the_package_metadata_names_authors_urls_classifiers_and_true_bounds():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["authors"] and project["urls"]["Repository"].startswith("https://github.com/")
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert project["urls"]["Homepage"] == config["html"]["baseurl"]
    assert "Typing :: Typed" in project["classifiers"]
    deps = {re.split(r"[<>=!~ ]", d, maxsplit=1)[0].lower(): d for d in project["dependencies"]}
    assert deps["torch"] == "torch>=2.4"  # torch.is_autocast_enabled(device_type) is new in 2.4
    # every dependency is imported by the package, and the package imports nothing else of these
    used = {"torch", "torchdiffeq", "numpy", "matplotlib", "scikit-learn", "pot", "tqdm", "ipywidgets"}
    assert set(deps) == used
    source = "\n".join(p.read_text() for p in (ROOT / "fmbook").glob("*.py"))
    assert not re.search(r"^\s*(import|from) scipy", source, re.M)  # so scipy is not a dependency
    assert (ROOT / "fmbook" / "py.typed").is_file()


def test_scikit_learn_is_imported_only_when_a_function_needs_it():
    code = ("import sys, fmbook.data as d; assert 'sklearn' not in sys.modules, 'imported early'; "
            "d.canonical_moons_sklearn(4); assert 'sklearn' in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_the_sdist_carries_the_package_and_its_type_hints_and_leaves_the_tests_out(tmp_path):
    code = f"import setuptools.build_meta as b; print(b.build_sdist({str(tmp_path)!r}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    name = done.stdout.strip().splitlines()[-1]
    with tarfile.open(tmp_path / name) as sdist:
        files = {Path(*Path(m).parts[1:]).as_posix() for m in sdist.getnames()}
    for module in (ROOT / "fmbook").glob("*.py"):
        assert f"fmbook/{module.name}" in files
    assert {"fmbook/py.typed", "LICENSE", "CITATION.cff", "CHANGELOG.md", "README.md", "pyproject.toml"} <= files
    # the tests need the chapters, the scripts and the book's configuration: none is shipped
    assert not [f for f in files if f.startswith(("tests/", "chapters/", "scripts/", "benchmarks/"))]
    assert "conftest.py" not in files

"""The book's API reference: one page per public module of fmbook, in the table of contents, up to date.

The pages are written by scripts/api_pages.py; the Sphinx extension _ext/fmbook_api.py links a
chapter's inline mention of a documented name (`fmbook.paths.AffinePath`) to its entry.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT / "chapters" / "appendix" / "api"
AUTOMODULE = re.compile(r"^\.\. automodule:: (\S+)\s*$", re.M)


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


api_pages = _load("api_pages", ROOT / "scripts" / "api_pages.py")


def _toc_entries(node) -> tuple[list[str], list[str]]:
    files, globs = [], []
    if isinstance(node, dict):
        if "file" in node:
            files.append(node["file"])
        if "glob" in node:
            globs.append(node["glob"])
        for value in node.values():
            more = _toc_entries(value)
            files += more[0]
            globs += more[1]
    elif isinstance(node, list):
        for item in node:
            more = _toc_entries(item)
            files += more[0]
            globs += more[1]
    return files, globs


def _pages() -> dict[str, Path]:
    """Module name -> the page whose automodule documents it."""
    found = {}
    for page in sorted(PAGES.glob("*.md")):
        for name in AUTOMODULE.findall(page.read_text()):
            assert name not in found, f"{name} has two pages: {found[name]} and {page}"
            found[name] = page
    return found


def test_public_modules_are_found_by_walking_the_package():
    modules = api_pages.public_modules()
    assert "fmbook" in modules and "fmbook.paths" in modules and "fmbook.exercises" in modules
    assert not [m for m in modules if any(part.startswith("_") for part in m.split("."))]
    assert "fmbook._checks" not in modules and "fmbook.exercises._runner" not in modules


def test_every_public_module_has_a_page_in_the_table_of_contents():
    pages = _pages()
    files, globs = _toc_entries(yaml.safe_load((ROOT / "_toc.yml").read_text()))
    missing = [m for m in api_pages.public_modules() if m not in pages]
    assert not missing, f"no API page for {missing}: run python scripts/api_pages.py"
    for page in pages.values():
        entry = page.relative_to(ROOT).with_suffix("").as_posix()
        assert entry in files or any(fnmatch.fnmatch(entry, g) for g in globs), f"{entry} is not in _toc.yml"
    assert "chapters/appendix/api/index" in files


def test_no_page_names_a_module_that_does_not_exist():
    public = set(api_pages.public_modules())
    for module, page in _pages().items():
        assert module in public, f"{page.name} documents {module}, which is not a public module of fmbook"
        assert importlib.util.find_spec(module) is not None


def test_each_page_says_where_the_book_uses_the_module():
    for module, page in _pages().items():
        if module == "fmbook":
            continue
        title, sentence = page.read_text().split("\n\n")[:2]
        assert title == f"# {module}" and not sentence.startswith(("#", "```")) and sentence.endswith("."), page
    assert set(api_pages.USED_IN) <= set(api_pages.public_modules()), "USED_IN names a module that is gone"


def test_the_pages_are_those_the_generator_writes():
    assert api_pages.main(["--check"]) == 0, "stale API pages: run python scripts/api_pages.py"


def test_the_build_checks_the_references_of_the_docstrings():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]
    assert {"sphinx.ext.autodoc", "sphinx.ext.napoleon"} <= set(config["extra_extensions"])
    assert "sphinx.ext.intersphinx" not in config["extra_extensions"]  # the build is offline
    assert config["local_extensions"]["fmbook_api"] == "_ext"
    settings = config["config"]
    assert settings["nitpicky"] is True and settings["autodoc_member_order"] == "bysource"
    ignored = [pattern for _, pattern in settings["nitpick_ignore_regex"]]
    assert len(ignored) <= 5
    # the ignore list covers other libraries and private names, never a public name of fmbook
    for name in ("fmbook.paths.AffinePath", "fmbook.train.fit", "fmbook.exercises"):
        assert not any(re.fullmatch(p, name) for p in ignored), name
    for name in ("torch.Tensor", "numpy.ndarray", "fmbook.exercises._runner", "fmbook.solvers._CountingVelocity"):
        assert any(re.fullmatch(p, name) for p in ignored), name


# The link transform, on a small Sphinx project of its own (no chapter executed).

SOURCE = """\
Title
=====

.. py:module:: fmbook.example

.. py:function:: f(x)

   A documented function.

Text naming ``fmbook.example.f``, ``fmbook.example.f()``, the module ``fmbook.example``,
a name that does not exist ``fmbook.example.missing``, and ``other.f``.
Already a link: `the function <https://example.org>`_ and :py:func:`fmbook.example.f`.

.. code-block:: python

   y = fmbook.example.f(x)

::

   fmbook.example.f
"""


@pytest.fixture(scope="module")
def linked_html(tmp_path_factory) -> str:
    sphinx = pytest.importorskip("sphinx.application")
    src = tmp_path_factory.mktemp("src")
    (src / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(ROOT / '_ext')!r})\nextensions = ['fmbook_api']\n")
    (src / "index.rst").write_text(SOURCE)
    out = tmp_path_factory.mktemp("out")
    app = sphinx.Sphinx(str(src), str(src), str(out), str(out / ".doctrees"), "html",
                        status=None, warning=None, freshenv=True, warningiserror=True)
    app.build()
    return (out / "index.html").read_text()


def test_mentions_of_documented_names_become_links(linked_html):
    links = re.findall(r'<a class="fmbook-api-link[^"]*" href="([^"]*)"[^>]*><code[^>]*>(.*?)</code></a>',
                       linked_html, re.S)
    texts = [re.sub(r"<[^>]+>", "", text) for _, text in links]
    assert texts == ["fmbook.example.f", "fmbook.example.f()", "fmbook.example"]
    assert [href for href, _ in links] == ["#fmbook.example.f", "#fmbook.example.f", "#module-fmbook.example"]


def test_code_blocks_unknown_names_and_existing_links_are_left_alone(linked_html):
    assert linked_html.count("fmbook-api-link") == 3
    assert "missing" in linked_html and "other.f" in linked_html
    for block in re.findall(r'<div class="highlight[^"]*">.*?</div>', linked_html, re.S):
        assert "<a " not in block, block


def test_target_resolves_full_names_only():
    ext = _load("fmbook_api", ROOT / "_ext" / "fmbook_api.py")

    class Entry:
        docname, node_id = "api/paths", "fmbook.paths.AffinePath"

    objects = {"fmbook.paths.AffinePath": Entry()}
    assert ext.target("fmbook.paths.AffinePath", objects, {}) == ("api/paths", "fmbook.paths.AffinePath")
    assert ext.target("fmbook.paths.AffinePath()", objects, {}) == ("api/paths", "fmbook.paths.AffinePath")
    for text in ("AffinePath", "fmbook.paths.AffinePath(t)", "fmbook.paths.Nothing", "x = fmbook.paths.AffinePath"):
        assert ext.target(text, objects, {}) is None, text


def _resolves(name: str) -> bool:
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        module = ".".join(parts[:cut])
        try:
            obj = importlib.import_module(module)
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_the_chapters_mention_only_names_that_exist():
    nbformat = pytest.importorskip("nbformat")
    stale = []
    for path in sorted((ROOT / "chapters").glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "markdown":
                for name in re.findall(r"`(fmbook(?:\.\w+)+)(?:\(\))?`", cell.source):
                    if not _resolves(name) or any(p.startswith("_") for p in name.split(".")):
                        stale.append(f"{path.name}: {name}")
    assert not stale, f"mentions that would not link to the API reference: {stale}"
    assert _resolves("fmbook.paths.AffinePath") and not _resolves("fmbook.paths.NoSuchName")

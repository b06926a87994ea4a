"""The build's execution cache is emptied when fmbook's source changes (scripts/execute_chapters.py)."""

import importlib.util
import sys
from pathlib import Path

import nbformat
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("execute_chapters", ROOT / "scripts" / "execute_chapters.py")
execute_chapters = importlib.util.module_from_spec(spec)
sys.modules["execute_chapters"] = execute_chapters
spec.loader.exec_module(execute_chapters)


def _cached_count(cache) -> int:
    return len(cache.list_cache_records())


def test_an_edit_of_fmbook_empties_the_cache_and_nothing_else_does(tmp_path):
    root = tmp_path / "book"
    (root / "fmbook").mkdir(parents=True)
    (root / "fmbook" / "paths.py").write_text("SIGMA = 1.0\n")
    (root / "requirements.txt").write_text("torch==2.13.0\n")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])
    path = root / "chapter.ipynb"
    nbformat.write(notebook, path)
    cache_dir = root / "_build" / ".jupyter_cache"
    cache = get_cache(str(cache_dir))

    def fill() -> None:
        record = cache.add_nb_to_project(str(path))
        cache.cache_notebook_bundle(CacheBundleIn(notebook, record.uri), check_validity=False, overwrite=True)

    assert execute_chapters.drop_stale_outputs(cache, cache_dir, root)  # no fingerprint yet: start clean
    fill()
    assert not execute_chapters.drop_stale_outputs(cache, cache_dir, root)  # nothing changed
    assert _cached_count(cache) == 1
    (root / "chapter-notes.txt").write_text("not part of the package\n")
    assert not execute_chapters.drop_stale_outputs(cache, cache_dir, root)
    assert _cached_count(cache) == 1
    (root / "fmbook" / "paths.py").write_text("SIGMA = 2.0\n")  # the package changes: old outputs go
    assert execute_chapters.drop_stale_outputs(cache, cache_dir, root)
    assert _cached_count(cache) == 0
    fill()
    (root / "requirements.txt").write_text("torch==2.14.0\n")
    assert execute_chapters.drop_stale_outputs(cache, cache_dir, root)
    assert _cached_count(cache) == 0


def test_the_fingerprint_covers_every_module_of_the_package():
    before = execute_chapters.package_fingerprint(ROOT)
    assert before == execute_chapters.package_fingerprint(ROOT)
    modules = sorted((ROOT / "fmbook").rglob("*.py"))
    assert len(modules) > 10

"""Execute the book's chapters into its execution cache, several at a time.

Jupyter Book (``execute_notebooks: cache``) executes the chapters one after another while it
builds, and reuses a chapter's stored outputs while its code is unchanged. This script fills
that same cache (``_build/.jupyter_cache``) first, running ``--jobs`` chapters side by side, so
that the build itself only renders. Each chapter runs in its own folder with one thread per
kernel, as in the build. A chapter whose cell fails is not cached: the build then executes it
again and reports the error there. Exit status 1 if any chapter fails.

The cache keys a chapter on its code cells only, so an edit of the package ``fmbook`` (or of
the pinned requirements) would leave the old outputs in place. The cache therefore records a
fingerprint of ``fmbook/**/*.py`` and ``requirements.txt``, and is emptied when it changes.

With ``--recorded DIR`` a chapter that nbval has already run (``pytest --record-chapters DIR``,
see ``conftest.py``) is cached from that run, its outputs and widget state as nbval's kernel
produced them, provided its cells are still those of the chapter; only the others are executed.

    python scripts/execute_chapters.py [--jobs 2] [--recorded DIR] [chapters/*.ipynb ...]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import nbformat
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn
from jupyter_cache.executors.utils import single_nb_execution

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "_build" / ".jupyter_cache"
TIMEOUT = 900  # seconds per cell, as `execute: timeout` in _config.yml


STAMP = "fmbook-source.sha256"  # in the cache folder: the fingerprint the cached outputs were made with


def package_fingerprint(root: Path = ROOT) -> str:
    """SHA-256 of the package's source files and the pinned requirements, names and contents."""
    digest = hashlib.sha256()
    files = sorted((root / "fmbook").rglob("*.py")) + [root / "requirements.txt"]
    for path in files:
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def drop_stale_outputs(cache, cache_dir: Path, root: Path = ROOT) -> bool:
    """Empty ``cache`` unless it was filled with the package as it is now; True when emptied."""
    stamp = cache_dir / STAMP
    current = package_fingerprint(root)
    stale = not stamp.is_file() or stamp.read_text().strip() != current
    if stale:
        cache.clear_cache()
        cache_dir.mkdir(parents=True, exist_ok=True)
        stamp.write_text(current + "\n")
    return stale


def execute(path: Path) -> tuple[Path, nbformat.NotebookNode, float, str | None]:
    """Run one chapter top to bottom in its folder; returns it with its outputs and the time."""
    notebook = nbformat.read(path, as_version=4)
    result = single_nb_execution(notebook, cwd=str(path.parent), timeout=TIMEOUT, allow_errors=False)
    return path, notebook, result.time, result.exc_string if result.err is not None else None


def is_cached(cache, path: Path) -> bool:
    try:
        cache.match_cache_notebook(nbformat.read(path, as_version=4))
    except KeyError:
        return False
    return True


def cache_executed(cache, path: Path, notebook: nbformat.NotebookNode, seconds: float) -> None:
    record = cache.add_nb_to_project(str(path))
    cache.cache_notebook_bundle(
        CacheBundleIn(notebook, record.uri, data={"execution_seconds": seconds}),
        check_validity=False,
        overwrite=True,
    )


def recorded_run(path: Path, folder: Path) -> tuple[nbformat.NotebookNode, float] | None:
    """nbval's run of the chapter, if it was recorded and the chapter's cells have not changed since."""
    recorded = folder / path.name
    if not recorded.exists():
        return None
    notebook = nbformat.read(recorded, as_version=4)
    current = nbformat.read(path, as_version=4)
    if [(c.cell_type, c.source) for c in notebook.cells] != [(c.cell_type, c.source) for c in current.cells]:
        return None
    return notebook, float(notebook.metadata.pop("nbval_execution_seconds", 0.0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", type=Path, help="notebooks (default: chapters/*.ipynb)")
    parser.add_argument("--jobs", type=int, default=2, help="chapters executed side by side")
    parser.add_argument("--recorded", type=Path, help="a folder of chapters that nbval ran and recorded")
    args = parser.parse_args(argv)
    chapters = [p.resolve() for p in args.chapters] or sorted((ROOT / "chapters").glob("*.ipynb"))
    cache = get_cache(str(CACHE))
    if drop_stale_outputs(cache, CACHE):
        print("fmbook or the requirements changed since the cache was filled: every chapter runs again")
    # Longest first, so that the last chapter to start is a short one: the later chapters of the
    # book train more and take longest, hence the reverse order.
    pending = [p for p in reversed(chapters) if not is_cached(cache, p)]
    if args.recorded is not None:
        for path in list(pending):
            run = recorded_run(path, args.recorded)
            if run is not None:
                cache_executed(cache, path, *run)
                pending.remove(path)
                print(f"cached {path.relative_to(ROOT)} from nbval's run ({run[1]:.0f} s)")
    print(f"{len(chapters) - len(pending)} chapter(s) in the cache, {len(pending)} to execute")
    # Side by side, each kernel keeps to one thread so that the chapters do not fight over cores.
    os.environ["OMP_NUM_THREADS"] = "1"
    failed = []
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for future in as_completed([pool.submit(execute, p) for p in pending]):
            path, notebook, seconds, error = future.result()
            name = path.relative_to(ROOT)
            if error is not None:
                failed.append(name)
                print(f"FAILED {name} after {seconds:.0f} s:\n{error}", file=sys.stderr)
                continue
            cache_executed(cache, path, notebook, seconds)
            print(f"executed {name} in {seconds:.0f} s", flush=True)
    print(f"{len(pending)} chapter(s) in {time.perf_counter() - started:.0f} s with {args.jobs} job(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

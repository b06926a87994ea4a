"""fmbook.interactive: its figures work with ipywidgets 7 (no ``Stack``) as well as 8.

An older Colab runtime imports ipywidgets 7 before the book's install cell runs; the figures
must then fall back to one image that the kernel swaps. ipywidgets 7 is installed into a folder
of its own (once, from the pins in requirements-ipywidgets7.txt) and put first on the path of a
subprocess, so it shadows the environment's ipywidgets 8.
"""

import os
import subprocess
import sys
from pathlib import Path

import ipywidgets

ROOT = Path(__file__).resolve().parents[1]
PINS = Path(__file__).with_name("requirements-ipywidgets7.txt")

CHECK = """
import ipywidgets
from fmbook import interactive
assert ipywidgets.__version__.startswith("7."), ipywidgets.__version__
assert not hasattr(ipywidgets, "Stack")
for control in ("slider", "buttons"):
    box = interactive.slider_figure(lambda ax, v: ax.plot([0, v]), [1, 2, 3], control=control, dpi=30)
    chooser, image = box.children
    pngs = []
    for index in (0, 2, 1):
        chooser.index = index
        pngs.append(image.value)
    assert len(set(pngs)) == 3, "the image must follow the control"
    chooser.index = 0
    assert image.value == pngs[0]
print("ipywidgets", ipywidgets.__version__, "ok")
"""


def _ipywidgets7(tmp_root: Path) -> Path:
    target = tmp_root / "ipywidgets7"
    stamp = target / ".installed"
    if not stamp.exists() or stamp.read_text() != PINS.read_text():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), "-r", str(PINS)],
            check=True,
        )
        stamp.write_text(PINS.read_text())
    return target


def test_slider_figure_falls_back_to_a_kernel_switched_image_on_ipywidgets_7():
    target = _ipywidgets7(ROOT / ".venv" if (ROOT / ".venv").is_dir() else Path(os.environ.get("TMPDIR", "/tmp")))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(target), str(ROOT)]))
    done = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ipywidgets 7.8.5 ok" in done.stdout


def test_the_environment_itself_has_ipywidgets_8_and_its_stack():
    # The book is built with ipywidgets 8, whose Stack keeps every panel in the static page.
    from fmbook import interactive

    assert int(ipywidgets.__version__.split(".")[0]) >= 8
    box = interactive.slider_figure(lambda ax, v: ax.plot([0, v]), [1, 2], dpi=30)
    assert type(box.children[1]).__name__ == "Stack" and len(box.children[1].children) == 2

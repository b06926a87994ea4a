"""The landing page's figure is what scripts/landing_figure.py draws, and shows what its caption says."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("landing_figure", ROOT / "scripts" / "landing_figure.py")
landing = importlib.util.module_from_spec(spec)
sys.modules["landing_figure"] = landing
spec.loader.exec_module(landing)


def test_the_committed_figure_is_the_one_the_script_draws(tmp_path):
    fresh = np.asarray(Image.open(landing.draw(tmp_path / "flow.png")).convert("RGB"), dtype=float)
    committed = np.asarray(Image.open(ROOT / "images" / "landing-flow.png").convert("RGB"), dtype=float)
    assert fresh.shape == committed.shape
    assert np.abs(fresh - committed).mean() < 1.0  # out of 255: rendering noise at most


def test_the_flow_starts_gaussian_and_ends_on_the_data():
    moons, snapshots = landing.flow_snapshots(n_particles=400, n_data=200, steps=60)
    start, end = snapshots[0], snapshots[-1]
    assert abs(start.mean().item()) < 0.15 and abs(start.std().item() - 1) < 0.1
    nearest = torch.cdist(end, moons).min(dim=1).values
    assert nearest.max() < 0.05  # every particle lands on a data point
    # Control: half-way the particles are not yet on the data.
    assert torch.cdist(snapshots[2], moons).min(dim=1).values.median() > 0.05

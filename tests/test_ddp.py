"""DistributedDataParallel through torchrun: 2 CPU processes (gloo) against 1, same global batch and seed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fmbook.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


def _torchrun(nproc: int, out: Path, extra: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
        "-m", "fmbook", "--history", str(out), *extra,
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("data", ["moons", "digits"])
def test_two_processes_give_the_loss_curve_of_one(tmp_path, data):
    extra = ["--data", data, "--steps", "6", "--batch-size", "32", "--width", "8", "--seed", "3", "--lr", "1e-2",
             "--device", "cpu"]  # fmt: skip
    main([*extra, "--history", str(tmp_path / "one.json")])  # one process, in this one
    one = json.loads((tmp_path / "one.json").read_text())
    two = _torchrun(2, tmp_path / "two.json", extra)
    assert one["world_size"] == 1 and two["world_size"] == 2
    assert one["device"] == "cpu" and two["device"] == "cpu"
    assert len(one["history"]) == len(two["history"]) == 6
    # Same global batch, same seed: the curves differ only by the order of floating-point sums.
    for a, b in zip(one["history"], two["history"]):
        assert abs(a - b) <= 1e-4 * abs(a) + 1e-6
    assert abs(one["parameter_norm"] - two["parameter_norm"]) <= 1e-4 * one["parameter_norm"]
    # The curve is not trivially constant, so the comparison has teeth.
    assert max(one["history"]) - min(one["history"]) > 1e-3

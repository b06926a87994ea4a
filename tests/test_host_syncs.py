"""A training step of the recipes reads one value from the device: the loss and gradient norm of fit.

Counted with benchmarks/host_syncs.py's TorchFunctionMode (it sees .item(), bool(tensor),
.tolist(), ... on any device, so the count needs no GPU).
"""

import importlib.util
from pathlib import Path

import torch

from fmbook import data, losses, models, paths, train

_spec = importlib.util.spec_from_file_location(
    "host_syncs", Path(__file__).resolve().parents[1] / "benchmarks" / "host_syncs.py"
)
host_syncs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(host_syncs)


def test_each_recipe_syncs_once_per_step():
    for run in (host_syncs.moons, host_syncs.moons_conditional, host_syncs.digits):
        per_step, calls = host_syncs.syncs_per_step(run, steps=4)
        assert per_step == 1.0, (run.__name__, calls)


def test_the_counter_sees_a_value_check_in_the_loss():
    """Negative control: a loss that checks its batch with cfm_loss (finite values, t in [0, 1]) is counted."""
    x1 = data.sample_moons(256, generator=0)
    path = paths.AffinePath(paths.CondOTScheduler())

    def checked_loss(model, step):
        return losses.cfm_loss(model, torch.randn_like(x1[:64]), x1[:64], path=path)

    def run(callback, steps):
        train.fit(models.MLPVelocityField(dim=2, width=32), checked_loss, steps, progress=False, callback=callback)

    per_step, calls = host_syncs.syncs_per_step(run, steps=4)
    assert per_step > 1.0, calls

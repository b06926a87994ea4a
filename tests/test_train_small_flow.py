"""Tests of train.train_small_flow on tiny budgets (its speed and sharpness: benchmarks/sharp_fit.py)."""

import numpy as np
import pytest
import torch

from fmbook import data, models, train


@pytest.fixture(scope="module")
def moons():
    return data.sample_moons(5000, generator=0)


def test_builds_the_documented_model_and_trains_every_step(moons):
    result = train.train_small_flow(moons, steps=20, batch_size=64, width=32, depth=2, device="cpu")
    assert isinstance(result.model, models.MLPVelocityField)
    linears = [m for m in result.model.net if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [32, 32, 2]
    assert len(result.history) == 20 and all(np.isfinite(result.history))
    assert result.ema_model is not None  # EMA 0.99 by default
    assert train.train_small_flow(moons, steps=5, width=8, depth=1, device="cpu", ema_decay=None).ema_model is None


def test_same_seed_same_weights_other_seed_other_weights(moons):
    def weights(seed):
        result = train.train_small_flow(moons, steps=10, batch_size=32, width=16, depth=2, seed=seed, device="cpu")
        return torch.cat([p.detach().flatten() for p in result.model.parameters()])

    # Global generator state in between must not matter: the call seeds the weights itself.
    a = weights(3)
    torch.manual_seed(123)
    torch.rand(7)
    assert torch.equal(a, weights(3))
    assert not torch.equal(a, weights(4))


def test_threads_are_set_during_training_and_restored(moons):
    saved = torch.get_num_threads()
    seen = []
    try:
        torch.set_num_threads(2)
        train.train_small_flow(
            moons, steps=3, width=8, depth=1, threads=1, device="cpu",
            callback=lambda step, loss, net: seen.append(torch.get_num_threads()),
        )
        assert seen == [1, 1, 1]
        assert torch.get_num_threads() == 2
        seen.clear()
        train.train_small_flow(
            moons, steps=2, width=8, depth=1, threads=None, device="cpu",
            callback=lambda step, loss, net: seen.append(torch.get_num_threads()),
        )
        assert seen == [2, 2]  # None leaves the setting alone
    finally:
        torch.set_num_threads(saved)


def test_it_learns(moons):
    # 200 steps of batch 128 (measured: the loss of the last 50 steps 4.26) against the control,
    # the same budget at a learning rate a thousand times smaller, which barely moves (6.05 -> 5.95).
    small = {"steps": 200, "batch_size": 128, "width": 64, "depth": 3, "seed": 1, "device": "cpu"}
    history = np.array(train.train_small_flow(moons, **small).history)
    slow = np.array(train.train_small_flow(moons, **{**small, "lr": 6e-6}).history)
    assert slow[-50:].mean() > 0.95 * slow[:50].mean()
    assert history[-50:].mean() < 0.8 * slow[-50:].mean()


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"data": torch.zeros(10)}, ValueError, "data"),
        ({"data": torch.full((10, 2), float("nan"))}, ValueError, "data"),
        ({"threads": 0}, ValueError, "threads"),
        ({"threads": 1.5}, TypeError, "threads"),
        ({"seed": -1}, ValueError, "seed"),
        ({"steps": 0}, ValueError, "steps"),
    ],
)
def test_bad_input(moons, kwargs, error, name):
    kwargs = {"data": moons, "steps": 2, "width": 8, "depth": 1, "device": "cpu", **kwargs}
    with pytest.raises(error, match=name):
        train.train_small_flow(**kwargs)

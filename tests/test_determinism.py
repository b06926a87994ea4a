"""Same seed, same machine: bit-identical training runs, samples and metrics.

Each test runs the same thing twice, from the same seeds, with a small budget, and compares
every number bit for bit (torch.equal, ==), not within a tolerance.
"""

import torch

from fmbook import data, metrics, paths
from fmbook.losses import cfm_loss
from fmbook.models import MLPVelocityField
from fmbook.solvers import FIXED_STEP_METHODS, solve_adaptive, solve_ode
from fmbook.train import fit, train_flow_matching


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def chapter3_moons_run(seed: int, steps: int = 20):
    """The moons flow of chapter 3 (its recipe) with a small budget of steps, then a sample."""
    torch.manual_seed(seed)
    moons = data.sample_moons(2000)
    model = MLPVelocityField(2, 128, 4)
    result = train_flow_matching(
        model, moons, steps=steps, batch_size=1024, lr=3e-3, ema_decay=0.99, seed=seed, device="cpu", progress=False
    )
    x0 = data.sample_gaussian(500, generator=seed + 1)
    with torch.no_grad():
        samples = solve_ode(result.sampling_model, x0, steps=8, method="midpoint").x
    return result, samples


def test_train_flow_matching_and_sampling_are_bit_identical():
    first, s1 = chapter3_moons_run(0)
    second, s2 = chapter3_moons_run(0)
    assert first.history == second.history
    assert same_weights(first.model, second.model)
    assert same_weights(first.ema_model, second.ema_model)
    assert torch.equal(s1, s2)
    reference = data.sample_moons(500, generator=9)
    assert metrics.sliced_w2(s1, reference) == metrics.sliced_w2(s2, reference)
    third, s3 = chapter3_moons_run(1, steps=20)
    assert third.history != first.history and not torch.equal(s1, s3)  # the seed matters


def test_fit_with_a_custom_loss_is_bit_identical():
    def run():
        torch.manual_seed(3)
        model = MLPVelocityField(2, 32, 2)
        points = data.sample_eight_gaussians(256, generator=4)

        def loss_fn(net, step):  # draws its batch from the global generator that fit seeds
            idx = torch.randint(0, points.shape[0], (64,))
            return cfm_loss(net, torch.randn(64, 2), points[idx])

        return fit(model, loss_fn, steps=25, lr=1e-3, seed=5, cosine_decay=True, device="cpu", progress=False)

    a, b = run(), run()
    assert a.history == b.history and len(a.history) == 25
    assert same_weights(a.model, b.model)


def test_train_with_source_path_and_no_ema_is_bit_identical():
    def run():
        torch.manual_seed(7)
        model = MLPVelocityField(2, 16, 2)
        return train_flow_matching(
            model,
            data.sample_checkerboard(300, generator=1),
            steps=15,
            batch_size=32,
            source=data.sample_circles(200, generator=2),
            path=paths.AffinePath(paths.CosineScheduler()),
            seed=11,
            device="cpu",
            progress=False,
        )

    a, b = run(), run()
    assert a.ema_model is None and a.history == b.history
    assert same_weights(a.model, b.model)


def test_samplers_with_global_seed_are_reproducible():
    for name in data.DATASETS:
        torch.manual_seed(123)
        a = data.sample(name, 50)
        torch.manual_seed(123)
        b = data.sample(name, 50)
        assert torch.equal(a, b), name


def test_solvers_are_bit_identical():
    torch.manual_seed(0)
    model = MLPVelocityField(2, 32, 2).eval()
    x0 = data.sample_gaussian(64, generator=0)
    with torch.no_grad():
        for method in FIXED_STEP_METHODS:
            a = solve_ode(model, x0, steps=5, method=method, return_trajectory=True)
            b = solve_ode(model, x0.clone(), steps=5, method=method, return_trajectory=True)
            assert torch.equal(a.trajectory, b.trajectory) and a.nfe == b.nfe
        a = solve_adaptive(model, x0, rtol=1e-4, atol=1e-4)
        b = solve_adaptive(model, x0.clone(), rtol=1e-4, atol=1e-4)
        assert torch.equal(a.x, b.x) and a.nfe == b.nfe


def test_noise_floor_is_reproducible():
    a = metrics.noise_floor(metrics.sliced_w2, data.sample_moons, 300, seed=2)
    b = metrics.noise_floor(metrics.sliced_w2, data.sample_moons, 300, seed=2)
    assert a == b

"""Tests of fmbook.train: the training loop."""

import warnings

import pytest
import torch

from fmbook import data, models, train


def regression_loss(net, step):
    x = torch.linspace(-1, 1, 32)[:, None]
    return ((net(x) - 3 * x) ** 2).mean()


def test_fit_reduces_the_loss_and_records_history():
    torch.manual_seed(0)  # the initial weights must not depend on the tests that ran before
    net = torch.nn.Linear(1, 1)
    result = train.fit(net, regression_loss, steps=300, lr=0.05, device="cpu", progress=False)
    assert len(result.history) == 300
    assert result.history[-1] < 1e-3 < result.history[0]
    assert result.ema_model is None and result.sampling_model is net


def test_ema_follows_the_recursion():
    torch.manual_seed(0)
    net = torch.nn.Linear(1, 1)
    snapshots = []

    def loss(n, step):
        snapshots.append([p.detach().clone() for p in n.parameters()])
        return regression_loss(n, step)

    result = train.fit(net, loss, steps=5, lr=0.1, ema_decay=0.5, cosine_decay=False, device="cpu", progress=False)
    # The average starts at the weights after the first step, theta_1, then
    # ema_k = 0.5 ema_{k-1} + 0.5 theta_k after each further step.
    params_after = snapshots[1:] + [[p.detach() for p in net.parameters()]]
    ema = params_after[0]
    for theta in params_after[1:]:
        ema = [0.5 * e + 0.5 * p for e, p in zip(ema, theta)]
    for e, p in zip(ema, result.ema_model.parameters()):
        assert torch.allclose(e, p.detach(), atol=1e-6)


def test_same_seed_same_history():
    ds = data.sample_moons(500, generator=0)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)  # the initial weights are the reader's to seed
        net = models.MLPVelocityField(width=16, depth=2)
        runs.append(train.train_flow_matching(net, ds, steps=20, batch_size=64, seed=7, device="cpu",
                                              progress=False).history)
    assert runs[0] == runs[1]


def test_non_finite_loss_names_the_step():
    def loss(net, step):
        return regression_loss(net, step) * (float("nan") if step == 3 else 1.0)

    with pytest.raises(train.NonFiniteLossError, match="at step 3"):
        train.fit(torch.nn.Linear(1, 1), loss, steps=10, device="cpu", progress=False)


def test_keyboard_interrupt_returns_the_model_so_far():
    def loss(net, step):
        if step == 4:
            raise KeyboardInterrupt
        return regression_loss(net, step)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train.fit(torch.nn.Linear(1, 1), loss, steps=10, device="cpu", progress=False)
    assert result.interrupted and len(result.history) == 4
    assert any("interrupted after 4 steps" in str(w.message) for w in caught)


def test_flow_matching_learns_the_gaussian_marginal_velocity():
    # Source N(0, I), data N(m, I). With x1 = m + z, x_t - t m = t z + (1 - t) x0 is Gaussian with
    # variance s2 = t^2 + (1 - t)^2 and covariance 2t - 1 with z - x0, so the marginal velocity is
    # u_t(x) = m + (2t - 1) / s2 * (x - t m). The trained field must match it where p_t has mass.
    torch.manual_seed(0)
    m = torch.tensor([2.0, -1.0])
    ds = torch.randn(20_000, 2) + m
    result = train.train_flow_matching(models.MLPVelocityField(width=64, depth=2), ds, steps=800,
                                       batch_size=512, lr=3e-3, ema_decay=0.99, device="cpu", progress=False)
    t = torch.rand(2000) * 0.9 + 0.05
    s2 = (t**2 + (1 - t) ** 2)[:, None]
    x = t[:, None] * m + s2.sqrt() * torch.randn(2000, 2)
    exact = m + (2 * t[:, None] - 1) / s2 * (x - t[:, None] * m)
    with torch.no_grad():
        v = result.sampling_model(x, t)
    rel = ((v - exact) ** 2).sum(1).mean() / (exact**2).sum(1).mean()
    assert rel < 0.01, rel


def test_default_device_is_a_device():
    assert isinstance(train.default_device(), torch.device)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"steps": 0}, "steps must be >= 1"),
        ({"lr": -1.0}, "lr must be"),
        ({"ema_decay": 1.0}, "ema_decay must lie in"),
        ({"seed": -3}, "seed must be >= 0"),
    ],
)
def test_fit_bad_arguments(kwargs, match):
    args = {"steps": 2, **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        train.fit(torch.nn.Linear(1, 1), regression_loss, device="cpu", progress=False, **args)


def test_train_flow_matching_bad_arguments():
    with pytest.raises(ValueError, match="data must have shape"):
        train.train_flow_matching(models.MLPVelocityField(), torch.randn(10), steps=1, progress=False)
    with pytest.raises(ValueError, match="source must have rows of shape"):
        train.train_flow_matching(models.MLPVelocityField(), torch.randn(10, 2), source=torch.randn(10, 3), steps=1)
    with pytest.raises(ValueError, match="batch_size must be"):
        train.train_flow_matching(models.MLPVelocityField(), torch.randn(10, 2), batch_size=0, steps=1)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        train.fit(lambda x: x, regression_loss, steps=1)

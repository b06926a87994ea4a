"""Tests of fmbook.likelihood against closed forms, autograd Jacobians and Monte Carlo."""

import math

import pytest
import torch
from torch import nn

from fmbook.likelihood import (
    AffineGaussianFlow,
    bits_per_dim,
    cnf_nll_loss,
    continuity_residual,
    draw_probes,
    exact_divergence,
    gaussian_log_prob,
    hutchinson_divergence,
    hutchinson_variance,
    integrate_log_density,
    log_prob,
)
from fmbook.models import MLPVelocityField
from fmbook.paths import marginal_log_density, marginal_velocity
from fmbook.train import default_device, fit

D64 = torch.float64


def affine_flow(d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(d, generator=g, dtype=D64)
    tril = torch.randn(d, d, generator=g, dtype=D64).tril(-1) * 0.5
    tril = tril + torch.diag(torch.rand(d, generator=g, dtype=D64) * 1.5 + 0.4)
    return AffineGaussianFlow(mean, tril)


def points(flow, n=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return flow.flow(torch.randn(n, flow.dim, generator=g, dtype=D64), 1.0)


def small_mlp(seed=0):
    torch.manual_seed(seed)
    return MLPVelocityField(dim=3, width=16, depth=2, time_embedding_dim=8).double()


# ---------------------------------------------------------------- closed forms of the test flow


def test_affine_flow_velocity_is_the_time_derivative_of_the_flow():
    flow = affine_flow(3)
    x0 = torch.randn(5, 3, dtype=D64)
    t, h = 0.37, 1e-6
    fd = (flow.flow(x0, t + h) - flow.flow(x0, t - h)) / (2 * h)
    torch.testing.assert_close(flow(flow.flow(x0, t), t), fd, atol=1e-8, rtol=0)


def test_affine_flow_density_matches_torch_distributions():
    flow = affine_flow(3)
    x = torch.randn(7, 3, dtype=D64)
    t = 0.6
    m = flow.matrix(torch.tensor([t], dtype=D64))[0]
    ref = torch.distributions.MultivariateNormal(t * flow.mean, scale_tril=m).log_prob(x)
    torch.testing.assert_close(flow.log_prob(x, t), ref)


def test_gaussian_log_prob_and_bits_per_dim():
    x = torch.randn(4, 3, dtype=D64)
    ref = torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(1)
    torch.testing.assert_close(gaussian_log_prob(x), ref)
    torch.testing.assert_close(bits_per_dim(ref, 3), -ref / (3 * math.log(2)))


# ---------------------------------------------------------------- divergences


def test_exact_divergence_matches_the_jacobian_trace():
    model = small_mlp()
    x, t = torch.randn(5, 3, dtype=D64), torch.rand(5, dtype=D64)
    v, div = exact_divergence(model, x, t)
    jacobian = torch.autograd.functional.jacobian
    traces = torch.stack([torch.trace(jacobian(lambda y: model(y[None], t[i : i + 1])[0], x[i])) for i in range(5)])
    torch.testing.assert_close(div, traces)
    torch.testing.assert_close(v, model(x, t))


def test_exact_divergence_of_the_affine_flow():
    flow = affine_flow(3)
    x, t = torch.randn(4, 3, dtype=D64), torch.full((4,), 0.3, dtype=D64)
    torch.testing.assert_close(exact_divergence(flow, x, t)[1], flow.divergence(0.3, batch=4))


@pytest.mark.parametrize("probe", ["gaussian", "rademacher"])
def test_hutchinson_is_unbiased_within_three_standard_errors(probe):
    model = small_mlp(1)
    x, t = torch.randn(3, 3, dtype=D64), torch.rand(3, dtype=D64)
    _, exact = exact_divergence(model, x, t)
    n = 4000
    g = torch.Generator().manual_seed(2)
    xs, ts = x.repeat(n, 1), t.repeat(n)
    _, est = hutchinson_divergence(model, xs, ts, draw_probes(xs, 1, probe, g))
    est = est.reshape(n, 3)
    se = est.std(0) / math.sqrt(n)
    assert bool(((est.mean(0) - exact).abs() < 3 * se).all())


@pytest.mark.parametrize("probe", ["gaussian", "rademacher"])
def test_hutchinson_variance_closed_form_against_monte_carlo(probe):
    g = torch.Generator().manual_seed(3)
    jac = torch.randn(4, 4, generator=g, dtype=D64)
    eps = draw_probes(torch.zeros(200_000, 4, dtype=D64), 1, probe, g)[0]
    samples = torch.einsum("bi,ij,bj->b", eps, jac, eps)
    se = float(samples.std()) / math.sqrt(samples.shape[0])
    assert float(samples.mean()) == pytest.approx(float(torch.trace(jac)), abs=4 * se)
    assert float(samples.var()) == pytest.approx(float(hutchinson_variance(jac, probe)), rel=0.03)


def test_rademacher_reads_a_diagonal_jacobian_without_error():
    jac = torch.diag(torch.tensor([1.0, -2.0, 3.0], dtype=D64))
    assert float(hutchinson_variance(jac, "rademacher")) == 0.0
    assert float(hutchinson_variance(jac, "gaussian")) == pytest.approx(2 * 14.0)


def test_more_probes_divide_the_variance():
    model = small_mlp(4)
    x, t = torch.randn(1, 3, dtype=D64), torch.rand(1, dtype=D64)
    xs, ts = x.repeat(3000, 1), t.repeat(3000)
    g = torch.Generator().manual_seed(5)
    var1 = hutchinson_divergence(model, xs, ts, draw_probes(xs, 1, "gaussian", g))[1].var()
    var4 = hutchinson_divergence(model, xs, ts, draw_probes(xs, 4, "gaussian", g))[1].var()
    assert 0.18 < float(var4 / var1) < 0.35  # 1/4 up to the Monte-Carlo error of the variances


# ---------------------------------------------------------------- log-densities


@pytest.mark.parametrize("d", [1, 2, 3])
def test_exact_log_prob_matches_closed_form(d):
    flow = affine_flow(d, seed=d)
    x = points(flow)
    res = integrate_log_density(flow, x, method="dopri5", rtol=1e-9, atol=1e-9)
    assert float((res.log_prob - flow.log_prob(x)).abs().max()) < 1e-4
    # the backward solve ends at the preimage x0 = M_1^{-1} (x - m)
    x0 = torch.linalg.solve_triangular(flow.scale_tril, (x - flow.mean).T, upper=False).T
    torch.testing.assert_close(res.x0, x0, atol=1e-6, rtol=0)
    assert res.nfe > 0


@pytest.mark.parametrize("method", ["euler", "midpoint", "heun", "rk4"])
def test_fixed_step_log_prob_converges(method):
    flow = affine_flow(2)
    x = points(flow)
    errors = [float((log_prob(flow, x, method=method, steps=n) - flow.log_prob(x)).abs().max()) for n in (10, 40)]
    assert errors[1] < errors[0]
    assert errors[1] < {"euler": 5e-2, "midpoint": 1e-3, "heun": 1e-3, "rk4": 1e-6}[method]


@pytest.mark.parametrize("probe", ["gaussian", "rademacher"])
def test_hutchinson_log_prob_within_three_standard_errors(probe):
    flow = affine_flow(3, seed=7)
    x = points(flow, n=3, seed=8)
    n = 2000
    g = torch.Generator().manual_seed(9)
    est = log_prob(flow, x.repeat(n, 1), method="rk4", steps=10, divergence="hutchinson", probe=probe, generator=g)
    est = est.reshape(n, 3)
    se = est.std(0) / math.sqrt(n)
    assert bool(((est.mean(0) - flow.log_prob(x)).abs() < 3 * se).all())
    assert bool((se > 0).all())


def test_custom_source_and_t_grid():
    flow = affine_flow(2)
    x = points(flow)
    grid = torch.linspace(1.0, 0.0, 31, dtype=D64) ** 2  # decreasing, finer near 0
    lp = log_prob(flow, x, method="rk4", t_grid=grid, source_log_prob=gaussian_log_prob)
    assert float((lp - flow.log_prob(x)).abs().max()) < 1e-5


def test_log_prob_runs_on_the_default_device():
    device = default_device()
    model = MLPVelocityField(dim=2, width=16, depth=2).to(device)
    x = torch.randn(8, 2, device=device)
    lp = log_prob(model, x, method="midpoint", steps=4)
    assert lp.device.type == device.type and lp.shape == (8,) and bool(torch.isfinite(lp).all())
    lp_h = log_prob(model, x, method="midpoint", steps=4, divergence="hutchinson", probe="rademacher")
    assert lp_h.device.type == device.type


# ---------------------------------------------------------------- maximum likelihood


class ScalarLinearField(nn.Module):
    """u_t(x) = a x: the flow is x1 = e^a x0, so p_1 = N(0, e^{2a} I)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.1, dtype=D64))

    def forward(self, x, t):
        return self.a * x


def test_nll_gradient_matches_closed_form():
    model = ScalarLinearField()
    data = torch.randn(64, 2, dtype=D64) * 1.7
    loss_fn = cnf_nll_loss(data, batch_size=64, method="rk4", steps=20)
    torch.manual_seed(0)
    loss = loss_fn(model, 0)
    loss.backward()
    torch.manual_seed(0)
    batch = data[torch.randint(0, 64, (64,))]
    a = 0.1
    # -log N(x; 0, e^{2a} I) = d a + ||x||^2 e^{-2a} / 2 + const; derivative d - ||x||^2 e^{-2a}
    grad = (2 - (batch**2).sum(1) * math.exp(-2 * a)).mean()
    assert float(model.a.grad) == pytest.approx(float(grad), rel=1e-6)
    expected_loss = -torch.distributions.Normal(0.0, math.exp(a)).log_prob(batch).sum(1).mean()
    assert float(loss.detach()) == pytest.approx(float(expected_loss), rel=1e-6)


def test_fit_runs_maximum_likelihood_to_the_right_answer():
    data = torch.randn(2000, 2, dtype=D64, generator=torch.Generator().manual_seed(1)) * 2.0
    model = ScalarLinearField()
    loss_fn = cnf_nll_loss(data, batch_size=256, method="midpoint", steps=4)
    fit(model, loss_fn, steps=300, lr=0.05, device="cpu", progress=False)
    # the maximum-likelihood scale of the data is its root mean square, about 2
    assert float(model.a.detach()) == pytest.approx(math.log(float(data.pow(2).mean().sqrt())), abs=0.05)


def test_nll_loss_with_hutchinson_has_gradients():
    model = small_mlp()
    loss = cnf_nll_loss(torch.randn(50, 3, dtype=D64), batch_size=8, steps=2, divergence="hutchinson")(model, 0)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


# ---------------------------------------------------------------- continuity equation


def test_continuity_residual_vanishes_for_the_generating_velocity():
    flow = affine_flow(2)
    x, t = torch.randn(10, 2, dtype=D64), torch.rand(10, dtype=D64)
    assert float(continuity_residual(flow.log_prob, flow, x, t).abs().max()) < 1e-10
    wrong = lambda y, s: 1.1 * flow(y, s)
    assert float(continuity_residual(flow.log_prob, wrong, x, t).abs().max()) > 1e-2


def test_continuity_residual_of_the_finite_data_path():
    data = torch.randn(5, 2, dtype=D64, generator=torch.Generator().manual_seed(3))
    x = torch.randn(20, 2, dtype=D64)
    res = continuity_residual(
        lambda y, s: marginal_log_density(y, s, data), lambda y, s: marginal_velocity(y, s, data), x, 0.4
    )
    assert float(res.abs().max()) < 1e-9


# ---------------------------------------------------------------- bad input


def test_bad_input_log_prob():
    flow = affine_flow(2)
    x = points(flow)
    with pytest.raises(ValueError, match="x"):
        log_prob(flow, x[0])
    with pytest.raises(ValueError, match="finite"):
        log_prob(flow, torch.full((2, 2), float("nan"), dtype=D64))
    with pytest.raises(TypeError, match="x"):
        log_prob(flow, [[0.0, 1.0]])
    with pytest.raises(ValueError, match="shape"):
        log_prob(lambda y, t: y[:, :1], x, method="euler", steps=2)
    with pytest.raises(TypeError, match="model"):
        log_prob("not a model", x)
    with pytest.raises(ValueError, match="method"):
        log_prob(flow, x, method="leapfrog")
    with pytest.raises(ValueError, match="divergence"):
        log_prob(flow, x, divergence="approximate")
    with pytest.raises(ValueError, match="probe"):
        log_prob(flow, x, divergence="hutchinson", probe="uniform")
    with pytest.raises(ValueError, match="n_probes"):
        log_prob(flow, x, divergence="hutchinson", n_probes=0)
    with pytest.raises(ValueError, match="steps"):
        log_prob(flow, x, method="dopri5", steps=10)
    with pytest.raises(ValueError, match="steps"):
        log_prob(flow, x, method="rk4", steps=0)
    with pytest.raises(ValueError, match="at most one"):
        log_prob(flow, x, method="rk4", steps=4, t_grid=torch.linspace(1, 0, 5))
    with pytest.raises(ValueError, match="t_grid"):
        log_prob(flow, x, method="rk4", t_grid=torch.tensor([1.0, 0.2, 0.5, 0.0]))
    with pytest.raises(ValueError, match="t_grid"):
        log_prob(flow, x, method="rk4", t_grid=torch.tensor([1.5, 0.5, 0.0]))
    with pytest.raises(ValueError, match="t_grid must run from 1 down to 0"):
        log_prob(flow, x, method="rk4", t_grid=torch.linspace(0, 1, 5))
    with pytest.raises(ValueError, match="rtol"):
        log_prob(flow, x, rtol=0.0)
    with pytest.raises(ValueError, match="source_log_prob"):
        log_prob(flow, x, method="euler", steps=2, source_log_prob=lambda y: y)


def test_bad_input_helpers():
    with pytest.raises(ValueError, match="log_p"):
        bits_per_dim(torch.zeros(2, 2), 2)
    with pytest.raises(ValueError, match="dim"):
        bits_per_dim(torch.zeros(2), 0)
    with pytest.raises(ValueError, match="jacobian"):
        hutchinson_variance(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="probe"):
        hutchinson_variance(torch.zeros(2, 2), "uniform")
    with pytest.raises(ValueError, match="probe"):
        draw_probes(torch.zeros(2, 2), 1, "uniform")
    with pytest.raises(ValueError, match="probes"):
        x = torch.zeros(2, 3, dtype=D64)
        hutchinson_divergence(small_mlp(), x, torch.zeros(2, dtype=D64), torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="scale_tril"):
        AffineGaussianFlow(torch.zeros(2), torch.ones(2, 2))
    with pytest.raises(ValueError, match="positive diagonal"):
        AffineGaussianFlow(torch.zeros(2), -torch.eye(2))
    with pytest.raises(ValueError, match="mean"):
        AffineGaussianFlow(torch.zeros(2, 2), torch.eye(2))
    with pytest.raises(ValueError, match="method"):
        cnf_nll_loss(torch.zeros(4, 2), method="dopri5")
    with pytest.raises(ValueError, match="data"):
        cnf_nll_loss(torch.zeros(4))
    with pytest.raises(ValueError, match="log_density"):
        continuity_residual(lambda y, s: y, lambda y, s: y, torch.zeros(3, 2), 0.5)
    with pytest.raises(ValueError, match="t"):
        continuity_residual(lambda y, s: y.sum(1), lambda y, s: y, torch.zeros(3, 2), 1.5)

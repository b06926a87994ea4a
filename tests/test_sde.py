"""Tests of the Euler-Maruyama solver, the marginal-preserving SDE drift and Langevin steps."""

import math

import pytest
import torch

from fmbook import paths, solvers


def ou_drift(theta):
    return lambda x, t: -theta * x


def test_euler_maruyama_on_an_ornstein_uhlenbeck_process():
    """dX = -theta X dt + s dW, X_0 = x0: mean x0 e^{-theta t}, variance s^2 (1 - e^{-2 theta t}) / (2 theta).

    n = 100000 paths, 500 steps: the Monte Carlo standard error and the O(h) bias of the scheme
    (theta h = 0.004) are both below the stated tolerances."""
    theta, s, x0 = 2.0, 0.7, 1.5
    n, steps = 100_000, 500
    start = torch.full((n, 1), x0, dtype=torch.float64)
    out = solvers.euler_maruyama(ou_drift(theta), start, s, steps=steps, generator=0)
    mean, var = out.x.mean().item(), out.x.var().item()
    exact_mean = x0 * math.exp(-theta)
    exact_var = s**2 * (1 - math.exp(-2 * theta)) / (2 * theta)
    assert abs(mean - exact_mean) < 4 * math.sqrt(exact_var / n) + 0.005
    assert abs(var / exact_var - 1) < 4 * math.sqrt(2 / n) + 0.01
    # and against the exact law of the discrete scheme (only Monte Carlo error left)
    h = 1 / steps
    r = 1 - theta * h
    disc_mean = x0 * r**steps
    disc_var = s**2 * h * sum(r ** (2 * j) for j in range(steps))
    assert abs(mean - disc_mean) < 4 * math.sqrt(disc_var / n)
    assert abs(var / disc_var - 1) < 4 * math.sqrt(2 / n)
    assert out.nfe == steps


def test_time_dependent_diffusion():
    """dX = t dW from 0: Var X_1 = int_0^1 t^2 dt = 1/3; Euler-Maruyama takes sigma at the left
    end of each step, h sum t_n^2 = 1/3 - h/2 + h^2/6 exactly."""
    n, steps = 200_000, 20
    out = solvers.euler_maruyama(lambda x, t: torch.zeros_like(x), torch.zeros(n, 1, dtype=torch.float64),
                                 lambda t: t, steps=steps, generator=torch.Generator().manual_seed(1))
    h = 1 / steps
    expected = 1 / 3 - h / 2 + h * h / 6
    assert abs(out.x.var().item() / expected - 1) < 4 * math.sqrt(2 / n)


def test_zero_diffusion_is_the_euler_method():
    x0 = torch.randn(10, 2, dtype=torch.float64)
    v = lambda x, t: torch.sin(x) * t[:, None]
    a = solvers.euler_maruyama(v, x0, 0.0, steps=17)
    b = solvers.solve_ode(v, x0, steps=17, method="euler")
    torch.testing.assert_close(a.x, b.x)


def test_seed_makes_runs_repeatable():
    x0 = torch.zeros(5, 2)
    a = solvers.euler_maruyama(ou_drift(1.0), x0, 1.0, steps=10, generator=7, return_trajectory=True)
    b = solvers.euler_maruyama(ou_drift(1.0), x0, 1.0, steps=10, generator=7)
    c = solvers.euler_maruyama(ou_drift(1.0), x0, 1.0, steps=10, generator=8)
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    assert a.trajectory.shape == (5, 11, 2) and torch.equal(a.trajectory[:, -1], a.x)


@pytest.mark.parametrize("g", [0.0, 0.5, 1.5])
def test_the_sde_of_eq_48_keeps_the_marginals(g):
    """With the exact marginal velocity and score of a finite data set, dX = [u + g^2/2 score] dt
    + g dW from N(0, I) has the law p_t at t = 0.8 for every g: mean alpha_t zbar and covariance
    alpha_t^2 Cov(z) + sigma_t^2 I, within 0.05 (about 4 standard errors at n = 10000; 200 steps)."""
    data = torch.tensor([[2.0, 0.0], [-1.0, 1.0], [0.0, -1.5], [1.0, 1.0]], dtype=torch.float64)
    sched = paths.CondOTScheduler()
    velocity = lambda x, t: paths.marginal_velocity(x, t, data, sched)
    score = lambda x, t: paths.marginal_score(x, t, data, sched)
    x0 = torch.randn(10_000, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    out = solvers.euler_maruyama(solvers.sde_drift(velocity, score, g), x0, g, steps=200, t1=0.8, generator=3)
    a, s = 0.8, 0.2
    mean = a * data.mean(0)
    cov = a * a * torch.cov(data.T, correction=0) + s * s * torch.eye(2, dtype=torch.float64)
    assert (out.x.mean(0) - mean).abs().max().item() < 0.05
    assert (torch.cov(out.x.T) - cov).abs().max().item() < 0.05


def test_langevin_corrector_samples_a_gaussian():
    """Unadjusted Langevin on N(m, v I) has the stationary variance v / (1 - eps / (2 v)) exactly."""
    m, v, eps = torch.tensor([1.0, -2.0], dtype=torch.float64), 0.5, 0.05
    score = lambda x, t: -(x - m) / v
    start = torch.zeros(50_000, 2, dtype=torch.float64)
    x = solvers.langevin_corrector(score, start, 0.5, eps, n_steps=300, generator=4)
    n = x.shape[0]
    stationary = v / (1 - eps / (2 * v))
    assert (x.mean(0) - m).abs().max().item() < 4 * math.sqrt(stationary / n)
    assert (x.var(0) / stationary - 1).abs().max().item() < 4 * math.sqrt(2 / n)


def test_sde_bad_input():
    x = torch.zeros(3, 2)
    drift = ou_drift(1.0)
    with pytest.raises(ValueError, match="g_t"):
        solvers.euler_maruyama(drift, x, -0.1, steps=4)
    with pytest.raises(ValueError, match="g_t"):
        solvers.euler_maruyama(drift, x, lambda t: t - 0.5, steps=4)
    with pytest.raises(TypeError, match="diffusion coefficient"):
        solvers.euler_maruyama(drift, x, "large", steps=4)
    with pytest.raises(ValueError, match="increase"):
        solvers.euler_maruyama(drift, x, 1.0, t_grid=torch.tensor([1.0, 0.5, 0.0]))
    with pytest.raises(ValueError, match="exactly one"):
        solvers.euler_maruyama(drift, x, 1.0)
    with pytest.raises(TypeError, match="generator"):
        solvers.euler_maruyama(drift, x, 1.0, steps=3, generator="seed")
    with pytest.raises(ValueError, match=r"drift\(x, t\) must return"):
        solvers.euler_maruyama(lambda x, t: x[:, :1], x, 1.0, steps=3)
    with pytest.raises(TypeError, match="score"):
        solvers.sde_drift(drift, None, 1.0)
    with pytest.raises(ValueError, match="g_t"):
        solvers.sde_drift(drift, drift, -1.0)
    with pytest.raises(ValueError, match="step_size"):
        solvers.langevin_corrector(drift, x, 0.5, 0.0)
    with pytest.raises(ValueError, match="t must"):
        solvers.langevin_corrector(drift, x, 1.5, 0.1)

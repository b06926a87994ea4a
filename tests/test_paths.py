"""Tests of the affine path and the exact marginal fields of fmbook.paths (CondOT core)."""

import math

import pytest
import torch
from torch.func import jacrev

from fmbook import marginals, paths

COND_OT = paths.AffinePath(paths.CondOTScheduler())


def test_condot_coefficients_and_boundaries():
    s = paths.CondOTScheduler()
    out = s(torch.tensor([0.0, 0.3, 1.0]))
    assert torch.allclose(out.alpha_t, torch.tensor([0.0, 0.3, 1.0]))
    assert torch.allclose(out.sigma_t, torch.tensor([1.0, 0.7, 0.0]))
    assert torch.equal(out.d_alpha_t, torch.ones(3)) and torch.equal(out.d_sigma_t, -torch.ones(3))


def test_conditional_velocity_is_time_derivative_of_path():
    # dx_t must equal d/dt of x_t = alpha_t x1 + sigma_t x0, computed here by autograd.
    torch.manual_seed(0)
    x0, x1 = torch.randn(6, 2, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
    t = torch.rand(6, dtype=torch.float64)
    path = paths.AffinePath(paths.CondOTScheduler())
    sample = path.sample(x0, x1, t)
    for i in range(6):
        d_dt = jacrev(lambda tt: path.sample(x0[i : i + 1], x1[i : i + 1], tt.reshape(1)).x_t)(t[i])
        assert torch.allclose(d_dt.reshape(2), sample.dx_t[i], atol=1e-12)
    assert torch.allclose(sample.x_t, t[:, None] * x1 + (1 - t[:, None]) * x0)
    assert torch.allclose(sample.dx_t, x1 - x0)


def test_path_endpoints_and_image_shapes():
    x0, x1 = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    path = paths.AffinePath(paths.CondOTScheduler())
    assert torch.equal(path.sample(x0, x1, 0.0).x_t, x0)
    assert torch.equal(path.sample(x0, x1, 1.0).x_t, x1)
    assert path.sample(x0, x1, torch.rand(3, 1)).x_t.shape == (3, 1, 4, 4)


def test_marginal_velocity_matches_monte_carlo():
    # u_t(x) = E[X1 - X0 | X_t = x], estimated by averaging X1 - X0 over simulated pairs whose
    # X_t falls in a small ball around x. Tolerance 0.12 covers the Monte-Carlo error (about 0.03)
    # and the bias of the ball (radius 0.05).
    g = torch.Generator().manual_seed(0)
    data = torch.tensor([[-1.0, 0.0], [1.5, 0.5], [0.0, 2.0]], dtype=torch.float64)
    t, x = 0.6, torch.tensor([[0.3, 0.5]], dtype=torch.float64)
    n = 4_000_000
    x1 = data[torch.randint(0, 3, (n,), generator=g)]
    x0 = torch.randn(n, 2, generator=g, dtype=torch.float64)
    xt = t * x1 + (1 - t) * x0
    near = (xt - x).norm(dim=1) < 0.05
    assert near.sum() > 2000
    mc = (x1 - x0)[near].mean(0)
    exact = paths.marginal_velocity(x, t, data)[0]
    assert (mc - exact).norm() < 0.12, (mc, exact)


def test_marginal_velocity_solves_continuity_equation():
    # d/dt p_t(x) + div(p_t u_t)(x) = 0, with p_t the exact mixture density; derivatives by autograd.
    data = torch.tensor([[-1.0, 0.0], [1.5, 0.5], [0.0, 2.0], [0.5, -1.0]], dtype=torch.float64)
    torch.manual_seed(1)
    xs = torch.randn(10, 2, dtype=torch.float64)
    for t0 in (0.1, 0.5, 0.9):
        for x in xs:
            def density(xx, tt):
                return paths.marginal_log_density(xx[None], tt.reshape(1), data).exp()[0]

            def flux(xx):
                tt = torch.tensor([t0], dtype=torch.float64)
                return density(xx, tt) * paths.marginal_velocity(xx[None], tt, data)[0]

            dp_dt = jacrev(density, argnums=1)(x, torch.tensor(t0, dtype=torch.float64))
            div = torch.trace(jacrev(flux)(x))
            assert abs(dp_dt + div) < 1e-9 * max(1.0, abs(float(dp_dt)))


def test_marginal_score_is_gradient_of_log_density():
    data = torch.randn(7, 2, dtype=torch.float64)
    x = torch.randn(5, 2, dtype=torch.float64)
    for t in (0.0, 0.4, 0.95):
        auto = jacrev(lambda xx: paths.marginal_log_density(xx, t, data).sum())(x)
        assert torch.allclose(paths.marginal_score(x, t, data), auto, atol=1e-9)


def test_marginal_density_is_normalised_and_starts_gaussian():
    data = torch.tensor([[1.0, 1.0], [-2.0, 0.5]], dtype=torch.float64)
    grid = torch.linspace(-8, 8, 321, dtype=torch.float64)
    gx, gy = torch.meshgrid(grid, grid, indexing="ij")
    pts = torch.stack([gx.ravel(), gy.ravel()], 1)
    cell = (grid[1] - grid[0]) ** 2
    for t in (0.0, 0.5, 0.8):
        mass = paths.marginal_log_density(pts, t, data).exp().sum() * cell
        assert abs(mass - 1) < 1e-6
    gauss = -0.5 * (pts**2).sum(1) - math.log(2 * math.pi)
    assert torch.allclose(paths.marginal_log_density(pts, 0.0, data), gauss, atol=1e-9)


def test_marginal_fields_finite_at_both_ends_and_float32():
    data = torch.randn(20, 2)
    x = torch.randn(30, 2) * 3
    for t in (0.0, 1e-6, 0.5, 1 - 1e-6, 1.0):
        for fn in (paths.marginal_velocity, paths.marginal_score, paths.marginal_log_density):
            assert torch.isfinite(fn(x, t, data)).all(), (fn.__name__, t)
    # At t = 0 the posterior is the prior: u_0(x) = mean(data) - x.
    assert torch.allclose(paths.marginal_velocity(x, 0.0, data), data.mean(0) - x, atol=1e-5)


def test_marginal_fields_in_blocks_of_rows_match_the_direct_formula():
    # 300 query points against 5000 data points are processed on the CPU in several blocks of
    # rows; the fields must equal the direct computation over one (B, N, d) array of differences.
    g = torch.Generator().manual_seed(3)
    data = torch.randn(5000, 2, generator=g, dtype=torch.float64)
    x = 2 * torch.randn(300, 2, generator=g, dtype=torch.float64)
    t = 0.01 + 0.98 * torch.rand(300, generator=g, dtype=torch.float64)
    assert marginals._CPU_BLOCK_ELEMENTS // data.shape[0] < x.shape[0]  # more than one block
    sigma = (1 - t)[:, None]
    log_w = -((x[:, None, :] - t[:, None, None] * data[None]) ** 2).sum(-1) / (2 * sigma**2)
    x1_hat = torch.softmax(log_w, dim=1) @ data
    log_p = torch.logsumexp(log_w, dim=1) - math.log(5000) - math.log(2 * math.pi) - 2 * torch.log(sigma[:, 0])
    assert torch.allclose(paths.posterior_mean(x, t, data), x1_hat, rtol=0, atol=1e-12)
    assert torch.allclose(paths.marginal_velocity(x, t, data), (x1_hat - x) / sigma, rtol=0, atol=1e-10)
    assert torch.allclose(paths.marginal_score(x, t, data), -(x - t[:, None] * x1_hat) / sigma**2, rtol=0, atol=1e-8)
    assert torch.allclose(paths.marginal_log_density(x, t, data), log_p, rtol=0, atol=1e-12)


def test_single_data_point_gives_the_conditional_field():
    z = torch.tensor([[2.0, -1.0]])
    x = torch.randn(8, 2)
    t = torch.rand(8) * 0.99
    expected = (z - x) / (1 - t[:, None])  # u_t(x | z) = (z - x) / (1 - t) for CondOT
    assert torch.allclose(paths.marginal_velocity(x, t, z), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: paths.marginal_velocity(torch.randn(4, 2), 1.5, torch.randn(3, 2)), "t must lie in"),
        (lambda: paths.marginal_velocity(torch.randn(4, 2), -0.1, torch.randn(3, 2)), "t must lie in"),
        (lambda: paths.marginal_velocity(torch.randn(4, 2), torch.rand(3), torch.randn(3, 2)), "t must be"),
        (lambda: paths.marginal_velocity(torch.randn(4, 3), 0.5, torch.randn(3, 2)), "data must have 3"),
        (lambda: paths.marginal_velocity(torch.randn(4), 0.5, torch.randn(3, 2)), "x_t must have shape"),
        (lambda: paths.marginal_velocity(torch.full((4, 2), math.nan), 0.5, torch.randn(3, 2)), "x_t must contain"),
        (lambda: paths.marginal_velocity(torch.randn(0, 2), 0.5, torch.randn(3, 2)), "x_t must hold"),
        (lambda: COND_OT.sample(torch.randn(3, 2), torch.randn(4, 2), 0.5), "same shape"),
        (lambda: paths.conditional_velocity(torch.randn(3, 2), torch.randn(3, 2), math.nan, COND_OT.scheduler),
         "t must"),
        (lambda: paths.CondOTScheduler()(2.0), "t must lie in"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()

"""Tests of the functions added for the rigor pass of chapters 1 and 2, against closed forms,
quadrature, autograd and Monte Carlo, each with a deliberately wrong variant that must fail."""

import pytest
import torch

from fmbook.likelihood import (
    AffineGaussianFlow,
    continuity_residual,
    divergence_free_perturbation,
    draw_probes,
    gaussian_log_prob,
    hutchinson_density_ratio,
    hutchinson_divergence,
    weak_continuity_sides,
)
from fmbook.paths import marginal_log_density, marginal_score, marginal_velocity, posterior_mean, posterior_weights
from fmbook.solvers import differentiable_solve, saved_tensor_bytes, solve_adaptive, solve_ode

D64 = torch.float64


def _affine():
    return AffineGaussianFlow(torch.tensor([1.0, -0.5], dtype=D64), torch.tensor([[0.7, 0.0], [0.4, 1.3]], dtype=D64))


def _grid(half_width=10.0, n=301):
    side = torch.linspace(-half_width, half_width, n, dtype=D64)
    nodes = torch.stack(torch.meshgrid(side, side, indexing="xy"), -1).reshape(-1, 2)
    return nodes, torch.full((len(nodes),), float(side[1] - side[0]) ** 2, dtype=D64)


def _moments(x):
    """f(x) = (x1, x2, |x|^2): their expectations under the affine path are known in closed form."""
    return torch.cat([x, (x**2).sum(1, keepdim=True)], dim=1)


def test_weak_continuity_sides_match_the_closed_form_moments_of_the_affine_path():
    flow = _affine()
    nodes, weights = _grid()
    t = 0.4
    lhs, rhs = weak_continuity_sides(_moments, flow.log_prob, flow, nodes, weights, t)
    # E X_t = t m and E |X_t|^2 = t^2 |m|^2 + |M_t|_F^2, so their derivatives are m and 2t|m|^2 + 2 tr(M_t (L - I)^T)
    m, big_l = flow.mean, flow.scale_tril
    m_t = flow.matrix(torch.tensor([t], dtype=D64))[0]
    expected = torch.cat([m, (2 * t * m @ m + 2 * torch.trace(m_t @ (big_l - torch.eye(2, dtype=D64)).T))[None]])
    torch.testing.assert_close(lhs, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(rhs, expected, atol=1e-6, rtol=0)
    # negative control: the velocity with the wrong sign fails the right side
    _, wrong = weak_continuity_sides(_moments, flow.log_prob, lambda x, s: -flow(x, s), nodes, weights, t)
    assert (wrong - expected).abs().max() > 0.5


def test_weak_continuity_sides_reject_bad_arguments():
    flow = _affine()
    nodes, weights = _grid(n=11)
    with pytest.raises(ValueError, match="weights"):
        weak_continuity_sides(_moments, flow.log_prob, flow, nodes, weights[:-1], 0.5)
    with pytest.raises(ValueError, match="t must"):
        weak_continuity_sides(_moments, flow.log_prob, flow, nodes, weights, 1.0)
    with pytest.raises(ValueError, match="test_function"):
        weak_continuity_sides(lambda x: x.sum(1), flow.log_prob, flow, nodes, weights, 0.5)
    with pytest.raises(ValueError, match="dt"):
        weak_continuity_sides(_moments, flow.log_prob, flow, nodes, weights, 0.5, dt=0.0)


def _plane(n=21, half_width=3.0):
    side = torch.linspace(-half_width, half_width, n, dtype=D64)
    return torch.stack(torch.meshgrid(side, side, indexing="xy"), -1).reshape(-1, 2)


def test_a_rotation_and_zero_generate_the_same_constant_gaussian_path():
    std_log_p = lambda x, t: gaussian_log_prob(x)  # noqa: E731  (constant in t)
    rotation = torch.tensor([[0.0, -2.0], [2.0, 0.0]], dtype=D64)
    for matrix in (torch.zeros(2, 2, dtype=D64), rotation):
        res = continuity_residual(std_log_p, lambda x, t, m=matrix: x @ m.T, _plane(), 0.5)
        assert float(res.abs().max()) < 1e-12
    # Monte Carlo: the rotation's flow e^{tJ} keeps N(0, I); a matrix with a symmetric part does not
    x0 = torch.randn(20_000, 2, dtype=D64, generator=torch.Generator().manual_seed(0))
    for matrix, should_keep in ((rotation, True), (rotation + torch.diag(torch.tensor([0.3, -0.1], dtype=D64)), False)):
        x1 = solve_ode(lambda x, t, m=matrix: x @ m.T, x0, steps=50, method="rk4").x
        closed = torch.linalg.matrix_exp(matrix) @ x0.T  # the exact flow of a constant linear field
        torch.testing.assert_close(x1, closed.T, atol=1e-6, rtol=0)
        cov_err = float((torch.cov(x1.T) - torch.eye(2, dtype=D64)).abs().max())
        assert (cov_err < 0.05) == should_keep, cov_err
        res = continuity_residual(std_log_p, lambda x, t, m=matrix: x @ m.T, _plane(), 0.5)
        assert (float(res.abs().max()) < 1e-12) == should_keep


def test_divergence_free_perturbation_keeps_the_finite_data_path():
    data = torch.tensor([[-1.0, 0.5], [1.5, 0.0], [0.2, -1.2]], dtype=D64)
    u = lambda x, t: marginal_velocity(x, t, data)  # noqa: E731
    score = lambda x, t: marginal_score(x, t, data)  # noqa: E731
    log_p = lambda x, t: marginal_log_density(x, t, data)  # noqa: E731
    w = divergence_free_perturbation(score, torch.tensor([[0.0, 0.7], [-0.7, 0.0]], dtype=D64))
    x = _plane()
    for t in (0.2, 0.5, 0.8):
        # div(p w) = 0 checked directly by autograd, independently of continuity_residual
        xg = x.clone().requires_grad_(True)
        tt = torch.full((len(x),), t, dtype=D64)
        flux = log_p(xg, tt).exp()[:, None] * w(xg, tt)
        div = sum(torch.autograd.grad(flux[:, i].sum(), xg, retain_graph=True)[0][:, i] for i in range(2))
        assert float(div.abs().max()) < 1e-10
        assert float(continuity_residual(log_p, lambda y, s: u(y, s) + w(y, s), x, t).abs().max()) < 1e-8
        # negative control: the score itself, not rotated, moves mass
        wrong = continuity_residual(log_p, lambda y, s: u(y, s) + 0.7 * score(y, s), x, t)
        assert float(wrong.abs().max()) > 0.1
    assert float((w(x, torch.full((len(x),), 0.5, dtype=D64))).abs().max()) > 0.1  # it is not zero


def test_divergence_free_perturbation_rejects_a_matrix_with_a_symmetric_part():
    with pytest.raises(ValueError, match="antisymmetric"):
        divergence_free_perturbation(lambda x, t: x, torch.eye(2, dtype=D64))
    with pytest.raises(ValueError, match="square"):
        divergence_free_perturbation(lambda x, t: x, torch.zeros(2, 3, dtype=D64))
    with pytest.raises(TypeError, match="score"):
        divergence_free_perturbation(None, torch.zeros(2, 2, dtype=D64))


class _Linear(torch.nn.Module):
    """u(x) = A x with A a parameter: the flow is x0 -> e^{tA} x0."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.a = torch.nn.Parameter(0.5 * torch.randn(3, 3, generator=g, dtype=D64))

    def forward(self, x, t):
        return x @ self.a.T


def _linear_problem():
    g = torch.Generator().manual_seed(4)
    return _Linear(), torch.randn(16, 3, generator=g, dtype=D64), torch.randn(16, 3, generator=g, dtype=D64)


def test_adjoint_gradient_matches_the_closed_form_of_a_linear_flow():
    field, x0, weights = _linear_problem()
    a = field.a.detach().clone().requires_grad_(True)
    ((x0 @ torch.linalg.matrix_exp(a).T) * weights).sum().backward()  # L = sum w . e^{A} x0
    expected = a.grad
    for adjoint in (True, False):
        field.zero_grad()
        sol = differentiable_solve(field, x0, rtol=1e-10, atol=1e-10, adjoint=adjoint)
        (sol.x * weights).sum().backward()
        torch.testing.assert_close(field.a.grad, expected, atol=1e-7, rtol=1e-7)
        assert (sol.nfe_backward > 0) == adjoint  # the adjoint is a second solve
    # negative control: backpropagation through four Euler steps is the gradient of another map
    field.zero_grad()
    (solve_ode(field, x0, steps=4, method="euler").x * weights).sum().backward()
    assert float((field.a.grad - expected).abs().max()) > 1e-2


def test_adjoint_stores_the_same_whatever_the_number_of_steps():
    field, x0, _ = _linear_problem()
    stored = {}
    for adjoint in (True, False):
        for steps in (4, 16, 64):
            _, stored[adjoint, steps] = saved_tensor_bytes(
                lambda: differentiable_solve(field, x0, method="rk4", steps=steps, adjoint=adjoint).x
            )
    assert stored[True, 4] == stored[True, 16] == stored[True, 64] > 0
    assert stored[False, 64] > 10 * stored[False, 4] > 10 * stored[True, 4]


def test_differentiable_solve_rejects_bad_arguments():
    field, x0, _ = _linear_problem()
    with pytest.raises(TypeError, match="nn.Module"):
        differentiable_solve(lambda x, t: x, x0)
    with pytest.raises(ValueError, match="method"):
        differentiable_solve(field, x0, method="rk4")
    with pytest.raises(ValueError, match="with steps"):
        differentiable_solve(field, x0, method="dopri5", steps=4)
    with pytest.raises(TypeError, match="adjoint"):
        differentiable_solve(field, x0, adjoint="yes")


def test_hutchinson_density_ratio_against_monte_carlo_and_closed_forms():
    g = torch.Generator().manual_seed(5)
    b = 0.2 * torch.randn(3, 3, generator=g, dtype=D64)
    n = 400_000
    for probe in ("gaussian", "rademacher"):
        eps = torch.randn(n, 3, generator=g, dtype=D64)
        if probe == "rademacher":
            eps = eps.sign()
        # exp(log p-hat - log p) = exp(tr B - eps^T B eps)
        samples = torch.exp(torch.trace(b) - torch.einsum("bi,ij,bj->b", eps, b, eps))
        ratio = hutchinson_density_ratio(b, probe)
        se = samples.std() / n**0.5
        assert abs(samples.mean() - ratio) < 4 * se, (probe, samples.mean(), ratio)
        assert ratio > 1  # Jensen: the density estimate is biased upward
        # ... while the log-density estimate is not: its mean is tr B - tr B = 0
        log_samples = torch.trace(b) - torch.einsum("bi,ij,bj->b", eps, b, eps)
        assert abs(log_samples.mean()) < 4 * log_samples.std() / n**0.5
    # d = 2, Rademacher: eps^T S eps = tr S + 2 S_12 eps_1 eps_2, so the ratio is cosh(2 S_12)
    two = torch.tensor([[0.3, 0.5], [-0.1, -0.2]], dtype=D64)
    torch.testing.assert_close(hutchinson_density_ratio(two, "rademacher"), torch.cosh(two[0, 1] + two[1, 0]))
    assert float(hutchinson_density_ratio(torch.zeros(2, 2, dtype=D64), "gaussian")) == 1.0
    # I + 2S with a negative eigenvalue: the Gaussian expectation is infinite
    assert hutchinson_density_ratio(torch.diag(torch.tensor([-0.7, 0.1], dtype=D64))).isinf()


def test_hutchinson_density_ratio_rejects_bad_arguments():
    with pytest.raises(ValueError, match="square"):
        hutchinson_density_ratio(torch.zeros(2, 3, dtype=D64))
    with pytest.raises(ValueError, match="probe"):
        hutchinson_density_ratio(torch.zeros(2, 2, dtype=D64), "uniform")
    with pytest.raises(ValueError, match="16"):
        hutchinson_density_ratio(torch.zeros(17, 17, dtype=D64), "rademacher")


class _FreshProbeDynamics:
    """The augmented dynamics of the affine flow with a Hutchinson divergence; fresh=True draws a new
    probe at every evaluation, which makes the right-hand side a different random function each call."""

    def __init__(self, flow, fresh):
        self.flow, self.fresh, self.probes = flow, fresh, None
        self.generator = torch.Generator().manual_seed(6)

    def __call__(self, z, t):
        x = z[:, :-1]
        if self.fresh or self.probes is None:
            self.probes = draw_probes(x, 1, "gaussian", self.generator)
        v, div = hutchinson_divergence(self.flow, x, t, self.probes)
        return torch.cat([v, div[:, None]], dim=1)


def test_an_adaptive_solver_needs_fixed_probes():
    flow = _affine()
    x1 = torch.randn(8, 2, dtype=D64, generator=torch.Generator().manual_seed(7))
    z1 = torch.cat([x1, torch.zeros(8, 1, dtype=D64)], 1)
    fixed = solve_adaptive(_FreshProbeDynamics(flow, False), z1, t0=1.0, t1=0.0, rtol=1e-5, atol=1e-5, max_steps=100)
    assert fixed.nfe < 200
    with pytest.raises(RuntimeError, match="max_steps=100"):
        solve_adaptive(_FreshProbeDynamics(flow, True), z1, t0=1.0, t1=0.0, rtol=1e-5, atol=1e-5, max_steps=100)
    with pytest.raises(ValueError, match="max_steps"):
        solve_adaptive(flow, z1[:, :2], max_steps=0)


def test_posterior_weights_are_bayes_rule_and_concentrate_near_a_data_point():
    g = torch.Generator().manual_seed(8)
    data = torch.randn(7, 2, generator=g, dtype=D64)
    x = torch.randn(5, 2, generator=g, dtype=D64)
    t = 0.6
    w = posterior_weights(x, t, data)
    # Bayes' rule with explicit Gaussian densities N(x; t z_i, (1 - t)^2 I), uniform prior
    dens = torch.distributions.Normal(t * data[None], 1 - t).log_prob(x[:, None]).sum(-1).exp()
    torch.testing.assert_close(w, dens / dens.sum(1, keepdim=True))
    torch.testing.assert_close(w @ data, posterior_mean(x, t, data))
    wrong = torch.distributions.Normal(t * data[None], 1.0).log_prob(x[:, None]).sum(-1).exp()  # wrong width
    assert float((w - wrong / wrong.sum(1, keepdim=True)).abs().max()) > 0.05
    # near z_0 the weight of z_0 tends to 1 as t -> 1
    near = [float(posterior_weights((s * data[:1] + (1 - s) * x[:1]), s, data)[0, 0]) for s in (0.2, 0.5, 0.8)]
    assert near[0] < near[1] < near[2] and near[2] > 0.99, near

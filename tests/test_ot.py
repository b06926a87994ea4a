"""Tests of fmbook.ot: plans, W2, mini-batch OT pairing, kinetic energy, straightness, reflow."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.optimize import linprog
from scipy.stats import norm
from torch import nn

from fmbook import metrics
from fmbook import ot as fot
from fmbook.paths import AffinePath, CondOTScheduler

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
    DEVICES.append("mps")


def brute_force_assignment(x: torch.Tensor, y: torch.Tensor) -> float:
    """min over permutations s of mean ||x_i - y_s(i)||^2."""
    cost = ((x.double()[:, None, :] - y.double()[None, :, :]) ** 2).sum(-1)
    n = x.shape[0]
    return min(float(cost[torch.arange(n), list(p)].mean()) for p in itertools.permutations(range(n)))


def linprog_cost(x: torch.Tensor, y: torch.Tensor, a: np.ndarray, b: np.ndarray) -> float:
    """The Kantorovich linear program solved by scipy's HiGHS (an independent solver)."""
    n, m = x.shape[0], y.shape[0]
    cost = ((x.double()[:, None, :] - y.double()[None, :, :]) ** 2).sum(-1).numpy()
    rows = np.zeros((n, n * m))
    cols = np.zeros((m, n * m))
    for i in range(n):
        rows[i, i * m : (i + 1) * m] = 1
    for j in range(m):
        cols[j, j::m] = 1
    res = linprog(cost.ravel(), A_eq=np.vstack([rows, cols]), b_eq=np.concatenate([a, b]), bounds=(0, None))
    assert res.success
    return float(res.fun)


# ----------------------------------------------------------------------------- plans and W2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_plan_matches_brute_force_on_tiny_sets(seed):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g) + 1.0
    plan = fot.exact_plan(x, y)
    assert plan.shape == (6, 6) and plan.dtype == torch.float64
    # the optimal plan of two uniform sets of equal size is a permutation matrix / n
    assert torch.allclose(plan * 6, (plan * 6).round(), atol=1e-12)
    assert torch.allclose(plan.sum(0), torch.full((6,), 1 / 6, dtype=torch.float64))
    assert torch.allclose(plan.sum(1), torch.full((6,), 1 / 6, dtype=torch.float64))
    assert fot.plan_cost(plan, x, y) == pytest.approx(brute_force_assignment(x, y), rel=1e-10)
    assert fot.w2(x, y) ** 2 == pytest.approx(brute_force_assignment(x, y), rel=1e-10)


def test_exact_plan_with_weights_and_unequal_sizes_matches_a_linear_program():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(4, 2, generator=g), torch.randn(3, 2, generator=g)
    a = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    b = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64)
    plan = fot.exact_plan(x, y, a, b)
    assert torch.allclose(plan.sum(1), a) and torch.allclose(plan.sum(0), b)
    assert fot.plan_cost(plan, x, y) == pytest.approx(linprog_cost(x, y, a.numpy(), b.numpy()), rel=1e-8)


def test_squared_distances_entry_by_entry():
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(6, 3, generator=g), torch.randn(4, 3, generator=g)
    cost = fot.squared_distances(x, y)
    assert cost.dtype == torch.float64 and cost.shape == (6, 4)
    for i in range(6):
        for j in range(4):
            expected = sum((float(x[i, k]) - float(y[j, k])) ** 2 for k in range(3))
            assert abs(float(cost[i, j]) - expected) <= 1e-12 * max(1.0, expected)


def test_w2_agrees_with_metrics_exact_w2():
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(50, 3, generator=g), torch.randn(40, 3, generator=g) * 2
    assert fot.w2(x, y) == pytest.approx(metrics.exact_w2(x, y), rel=1e-10)


def test_point_mass_to_spread_distribution_needs_a_split_plan():
    # Monge has no map from one point to two, Kantorovich splits the mass
    x = torch.zeros(1, 2)
    y = torch.tensor([[1.0, 0.0], [-1.0, 2.0]])
    plan = fot.exact_plan(x, y)
    assert torch.allclose(plan, torch.tensor([[0.5, 0.5]], dtype=torch.float64))
    assert fot.w2(x, y) ** 2 == pytest.approx(0.5 * 1 + 0.5 * 5)


def test_gaussian_w2_closed_form_in_1d_matches_quantile_sets():
    # The W2 of two 1-D sets is the L2 distance of their sorted values (monotone coupling).
    # On the quantile points z_i = Phi^{-1}((i + 1/2) / n) of N(0, 1):
    # W2^2({m0 + s0 z}, {m1 + s1 z}) = (m0 - m1)^2 + (s0 - s1)^2 mean(z^2) -> closed form.
    n, (m0, s0, m1, s1) = 400, (0.3, 0.5, -1.2, 2.0)
    z = torch.tensor(norm.ppf((np.arange(n) + 0.5) / n))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    x, y = (m0 + s0 * z)[:, None], (m1 + s1 * z[perm])[:, None]
    expected_sets = (m0 - m1) ** 2 + (s0 - s1) ** 2 * float((z**2).mean())
    assert fot.w2(x, y) ** 2 == pytest.approx(expected_sets, rel=1e-9)
    f64 = {"dtype": torch.float64}
    mean0, mean1 = torch.tensor([m0], **f64), torch.tensor([m1], **f64)
    closed = fot.gaussian_w2(mean0, torch.tensor([[s0**2]], **f64), mean1, torch.tensor([[s1**2]], **f64))
    assert closed == pytest.approx(math.sqrt((m0 - m1) ** 2 + (s0 - s1) ** 2), rel=1e-12)
    assert closed**2 == pytest.approx(expected_sets, rel=5e-3)  # mean(z^2) -> 1 as n grows


def _gaussian_ot_map(c0: torch.Tensor, c1: torch.Tensor) -> torch.Tensor:
    """A = S0^{-1/2} (S0^{1/2} S1 S0^{1/2})^{1/2} S0^{-1/2}: the OT map x -> m1 + A (x - m0)."""
    r0 = fot._sqrtm_psd(c0)
    r0_inv = torch.linalg.inv(r0)
    return r0_inv @ fot._sqrtm_psd(r0 @ c1 @ r0) @ r0_inv


def test_gaussian_w2_closed_form_in_2d():
    m0, m1 = torch.tensor([0.0, 1.0], dtype=torch.float64), torch.tensor([2.0, -1.0], dtype=torch.float64)
    c0 = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=torch.float64)
    c1 = torch.tensor([[2.0, -0.7], [-0.7, 1.0]], dtype=torch.float64)
    a = _gaussian_ot_map(c0, c1)
    assert torch.allclose(a, a.T, atol=1e-12) and float(torch.linalg.eigvalsh(a).min()) > 0  # gradient of a convex map
    assert torch.allclose(a @ c0 @ a, c1, atol=1e-10)  # it pushes N(m0, c0) to N(m1, c1)
    g = torch.Generator().manual_seed(5)
    chol = torch.linalg.cholesky(c0)
    # Monte Carlo: E||X - T(X)||^2 = W2^2; 200000 samples give a relative error below 1 %.
    x = m0 + torch.randn(200_000, 2, generator=g, dtype=torch.float64) @ chol.T
    y = m1 + (x - m0) @ a.T
    value = fot.gaussian_w2(m0, c0, m1, c1)
    assert value**2 == pytest.approx(float(((x - y) ** 2).sum(1).mean()), rel=1e-2)
    # On a small sample the exact plan of POT is the identity pairing of x_i with T(x_i).
    xs, ys = x[:200], y[:200]
    plan = fot.exact_plan(xs, ys)
    assert torch.allclose(plan, torch.eye(200, dtype=torch.float64) / 200, atol=1e-12)
    # commuting covariances: W2^2 = ||m0 - m1||^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2
    d0, d1 = torch.tensor([1.0, 4.0]), torch.tensor([9.0, 0.25])
    expected = (m0 - m1).pow(2).sum() + (d0.sqrt() - d1.sqrt()).double().pow(2).sum()
    assert fot.gaussian_w2(m0, torch.diag(d0), m1, torch.diag(d1)) ** 2 == pytest.approx(float(expected))


def test_sinkhorn_plan_interpolates_between_exact_and_independent():
    g = torch.Generator().manual_seed(6)
    x, y = torch.randn(30, 2, generator=g), torch.randn(30, 2, generator=g) + 2
    exact = fot.plan_cost(fot.exact_plan(x, y), x, y)
    small = fot.sinkhorn_plan(x, y, reg=0.1)  # about 1/100 of the mean cost
    assert torch.allclose(small.sum(1), torch.full((30,), 1 / 30, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(small.sum(0), torch.full((30,), 1 / 30, dtype=torch.float64), atol=1e-5)
    assert fot.plan_cost(small, x, y) == pytest.approx(exact, rel=1e-2)
    big = fot.sinkhorn_plan(x, y, reg=1e4)
    assert torch.allclose(big, torch.full((30, 30), 1 / 900, dtype=torch.float64), rtol=1e-2)
    costs = [fot.plan_cost(fot.sinkhorn_plan(x, y, reg=r), x, y) for r in (0.01, 0.1, 1.0, 10.0)]
    assert all(c1 < c2 for c1, c2 in zip(costs, costs[1:]))  # the cost grows with the regularisation


# ----------------------------------------------------------------------------- pairing


@pytest.mark.parametrize("device", DEVICES)
def test_exact_pairing_is_a_cost_lowering_permutation(device):
    g = torch.Generator().manual_seed(7)
    x0 = torch.randn(64, 2, generator=g).to(device)
    x1 = (torch.randn(64, 2, generator=g) * 0.5 + 3).to(device)
    i, j = fot.ot_pair_indices(x0, x1)
    assert i.device == x0.device and j.device == x0.device and i.dtype == torch.int64
    assert torch.equal(i.cpu(), torch.arange(64))
    assert torch.equal(j.sort().values.cpu(), torch.arange(64))  # a permutation
    p0, p1 = fot.ot_pair(x0, x1)
    assert p0.dtype == torch.float32 and p0.device == x0.device and p1.shape == x1.shape
    paired, independent = fot.transport_cost(p0, p1), fot.transport_cost(x0, x1)
    assert paired < independent
    assert paired == pytest.approx(fot.w2(x0, x1) ** 2, rel=1e-5)  # the batch pairing is optimal


def test_exact_pairing_matches_brute_force():
    g = torch.Generator().manual_seed(8)
    x0, x1 = torch.randn(7, 2, generator=g), torch.randn(7, 2, generator=g)
    p0, p1 = fot.ot_pair(x0, x1)
    assert fot.transport_cost(p0, p1) == pytest.approx(brute_force_assignment(x0, x1), rel=1e-6)


def test_pairing_flattens_images():
    g = torch.Generator().manual_seed(9)
    x0, x1 = torch.randn(16, 1, 3, 3, generator=g), torch.randn(16, 1, 3, 3, generator=g) + 1
    p0, p1 = fot.ot_pair(x0, x1)
    assert p0.shape == x0.shape and fot.transport_cost(p0, p1) <= fot.transport_cost(x0, x1)


def test_sinkhorn_pairing_samples_a_low_cost_coupling():
    g = torch.Generator().manual_seed(10)
    x0, x1 = torch.randn(128, 2, generator=g), torch.randn(128, 2, generator=g) + 3
    i, j = fot.ot_pair_indices(x0, x1, method="sinkhorn", reg=0.01, generator=torch.Generator().manual_seed(0))
    assert i.shape == (128,) and int(i.max()) < 128 and int(j.max()) < 128
    sink = fot.transport_cost(x0[i], x1[j])
    assert fot.w2(x0, x1) ** 2 * 0.9 < sink < 0.5 * (fot.w2(x0, x1) ** 2 + fot.transport_cost(x0, x1))


# ----------------------------------------------------------------------------- bad input


def test_bad_input_raises_clear_errors():
    x = torch.randn(5, 2)
    with pytest.raises(ValueError, match="same number of points"):
        fot.ot_pair(x, torch.randn(6, 2))
    with pytest.raises(ValueError, match="same shape"):
        fot.ot_pair(x, torch.randn(5, 3))
    with pytest.raises(ValueError, match="same dimension"):
        fot.exact_plan(x, torch.randn(5, 3))
    with pytest.raises(ValueError, match="empty batch"):
        fot.exact_plan(torch.empty(0, 2), x)
    with pytest.raises(ValueError, match="at least one sample"):
        fot.ot_pair(torch.empty(0, 2), torch.empty(0, 2))
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        fot.ot_pair(bad, x)
    with pytest.raises(ValueError, match="finite"):
        fot.w2(x, bad)
    with pytest.raises(TypeError, match="x1 must be a torch.Tensor"):
        fot.exact_plan(x, [[0.0, 1.0]])
    with pytest.raises(ValueError, match="method"):
        fot.ot_pair_indices(x, x, method="hungarian")
    with pytest.raises(ValueError, match="weights0"):
        fot.exact_plan(x, x, weights0=torch.ones(5))
    with pytest.raises(ValueError, match=r"weights1 must have shape \(5,\)"):
        fot.exact_plan(x, x, weights1=torch.ones(4) / 4)
    with pytest.raises(ValueError, match="reg"):
        fot.sinkhorn_plan(x, x, reg=0.0)
    with pytest.raises(ValueError, match="plan must have shape"):
        fot.plan_cost(torch.ones(4, 5), x, x)
    with pytest.raises(ValueError, match="cov1 must have shape"):
        fot.gaussian_w2(torch.zeros(2), torch.eye(2), torch.zeros(2), torch.eye(3))
    with pytest.raises(ValueError, match="positive semi-definite"):
        fot.gaussian_w2(torch.zeros(2), torch.eye(2), torch.zeros(2), -torch.eye(2))
    with pytest.raises(ValueError, match="mean0 and mean1"):
        fot.gaussian_w2(torch.zeros(2), torch.eye(2), torch.zeros(3), torch.eye(2))


# ----------------------------------------------------------------------------- energy


def test_kinetic_energy_of_straight_constant_speed_path_is_squared_displacement():
    g = torch.Generator().manual_seed(11)
    x0, x1 = torch.randn(20, 3, generator=g), torch.randn(20, 3, generator=g)
    times = torch.cat([torch.zeros(1), torch.rand(9, generator=g).sort().values, torch.ones(1)]).double()
    traj = x0[:, None] + times[None, :, None].float() * (x1 - x0)[:, None]
    assert fot.kinetic_energy(traj, times) == pytest.approx(fot.transport_cost(x0, x1), rel=1e-5)
    assert fot.straightness(traj, times) == pytest.approx(0.0, abs=1e-5)


def test_kinetic_energy_and_straightness_of_an_accelerating_path():
    # x_t = x0 + t^2 D: energy = int 4 t^2 |D|^2 = 4/3 |D|^2, straightness = int |D - 2tD|^2 = |D|^2 / 3
    d = torch.tensor([[3.0, -1.0]], dtype=torch.float64)
    times = torch.linspace(0, 1, 2001, dtype=torch.float64)
    traj = (times[:, None] ** 2 * d)[None]
    sq = float(d.pow(2).sum())
    assert fot.kinetic_energy(traj, times) == pytest.approx(4 / 3 * sq, rel=1e-5)
    assert fot.straightness(traj, times) == pytest.approx(sq / 3, rel=1e-5)
    # the identity straightness = energy - E||X1 - X0||^2
    assert fot.straightness(traj, times) == pytest.approx(fot.kinetic_energy(traj, times) - sq, rel=1e-9)


def test_trajectory_arguments_are_checked():
    times = torch.linspace(0, 1, 3)
    with pytest.raises(ValueError, match="trajectory must have shape"):
        fot.kinetic_energy(torch.zeros(4, 2), times)
    with pytest.raises(ValueError, match=r"times must have shape \(3,\)"):
        fot.kinetic_energy(torch.zeros(4, 3, 2), torch.linspace(0, 1, 4))
    with pytest.raises(ValueError, match="strictly increasing"):
        fot.kinetic_energy(torch.zeros(4, 3, 2), torch.tensor([0.0, 0.5, 0.5]))
    with pytest.raises(ValueError, match="from 0 to 1"):
        fot.straightness(torch.zeros(4, 3, 2), torch.tensor([0.0, 0.5, 0.9]))
    with pytest.raises(ValueError, match="w2_squared"):
        fot.normalized_path_energy(1.0, 0.0)
    with pytest.raises(ValueError, match="energy"):
        fot.normalized_path_energy(float("nan"), 1.0)
    assert fot.normalized_path_energy(1.5, 1.0) == pytest.approx(0.5)


def test_curved_path_velocity_is_the_time_derivative_and_energy_has_closed_form():
    g = torch.Generator().manual_seed(12)
    x0, x1 = torch.randn(10, 2, generator=g, dtype=torch.float64), torch.randn(10, 2, generator=g, dtype=torch.float64)
    path = fot.CurvedPath(amplitude=1.5)
    t = torch.rand(10, generator=g, dtype=torch.float64)
    s = path.sample(x0, x1, t)
    jac = torch.autograd.functional.jacobian(lambda tt: path.sample(x0, x1, tt).x_t.sum(0), t)  # (2, B)
    assert torch.allclose(s.dx_t, jac.T, atol=1e-10)
    assert torch.allclose(path.sample(x0, x1, 0.0).x_t, x0) and torch.allclose(path.sample(x0, x1, 1.0).x_t, x1)
    mid = path.sample(x0, x1, 0.5).x_t - 0.5 * (x0 + x1)
    assert torch.allclose((mid * (x1 - x0)).sum(1), torch.zeros(10, dtype=torch.float64), atol=1e-12)  # perpendicular
    times = torch.linspace(0, 1, 4001, dtype=torch.float64)
    traj = torch.stack([path.sample(x0, x1, float(tk)).x_t for tk in times], dim=1)
    assert fot.kinetic_energy(traj, times) == pytest.approx(path.energy(x0, x1), rel=1e-6)
    assert path.energy(x0, x1) == pytest.approx(fot.transport_cost(x0, x1) * (1 + 1.5**2 / 3))
    linear = fot.CurvedPath(0.0).sample(x0, x1, t)
    reference = AffinePath(CondOTScheduler()).sample(x0, x1, t)
    assert torch.allclose(linear.x_t, reference.x_t) and torch.allclose(linear.dx_t, reference.dx_t)
    with pytest.raises(ValueError, match="amplitude"):
        fot.CurvedPath(float("inf"))
    with pytest.raises(ValueError, match="2 columns"):
        path.sample(torch.zeros(3, 3), torch.zeros(3, 3), 0.5)


def test_curl_2d():
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(13))
    rotation = lambda x, t: torch.stack([-x[:, 1], x[:, 0]], dim=1)
    assert torch.allclose(fot.curl_2d(rotation, x, 0.3), torch.full((50,), 2.0))
    gradient = lambda x, t: torch.stack([2 * x[:, 0] * x[:, 1] + t, x[:, 0] ** 2], dim=1)  # grad of x^2 y + t x
    assert torch.allclose(fot.curl_2d(gradient, x, 0.7), torch.zeros(50), atol=1e-6)
    # a network against central finite differences
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2)).double()
    field = lambda x, t: net(x)
    xd, h = x.double(), 1e-5
    e1, e2 = torch.tensor([h, 0.0], dtype=torch.float64), torch.tensor([0.0, h], dtype=torch.float64)
    with torch.no_grad():
        d1v2 = (field(xd + e1, 0)[:, 1] - field(xd - e1, 0)[:, 1]) / (2 * h)
        d2v1 = (field(xd + e2, 0)[:, 0] - field(xd - e2, 0)[:, 0]) / (2 * h)
    assert torch.allclose(fot.curl_2d(field, xd, 0.0), d1v2 - d2v1, atol=1e-7)
    with pytest.raises(ValueError, match="2 columns"):
        fot.curl_2d(rotation, torch.zeros(3, 3), 0.0)


# ----------------------------------------------------------------------------- training and reflow


class RecordingPath(AffinePath):
    """The linear path, remembering the last pairs it was given."""

    def __init__(self) -> None:
        super().__init__(CondOTScheduler())

    def sample(self, x0, x1, t):
        self.x0, self.x1 = x0, x1
        return super().sample(x0, x1, t)


def test_coupled_loss_feeds_ot_pairs_to_the_path():
    torch.manual_seed(0)
    data = 2 * torch.randn(500, 2)
    model = nn.Linear(2, 2)
    wrapped = lambda x, t: model(x)
    for coupling in ("independent", "exact"):
        path = RecordingPath()
        loss_fn = fot.coupled_cfm_loss(data, 64, coupling, path=path, ot_batch_size=32, device="cpu")
        loss = loss_fn(wrapped, 0)
        assert loss.ndim == 0 and torch.isfinite(loss)
        cost = fot.transport_cost(path.x0, path.x1)
        chunks = [fot.w2(a, b) ** 2 for a, b in zip(path.x0.split(32), path.x1.split(32))]
        if coupling == "exact":
            assert cost == pytest.approx(float(np.mean(chunks)), rel=1e-5)  # each chunk optimally paired
        else:
            assert cost > 1.5 * float(np.mean(chunks))
    source = torch.randn(500, 2)
    path = RecordingPath()
    fot.coupled_cfm_loss(data, 64, "paired", source=source, path=path, device="cpu")(wrapped, 0)
    rows = ((path.x1[:, None, :] == data[None]).all(-1)).float().argmax(1)
    assert torch.equal(path.x0, source[rows])  # the given pairs are kept together


def test_coupled_loss_rejects_bad_arguments():
    data = torch.randn(10, 2)
    with pytest.raises(ValueError, match="coupling must be one of"):
        fot.coupled_cfm_loss(data, 8, "greedy")
    with pytest.raises(ValueError, match="multiple of ot_batch_size"):
        fot.coupled_cfm_loss(data, 8, "exact", ot_batch_size=3)
    with pytest.raises(ValueError, match="as many rows as data"):
        fot.coupled_cfm_loss(data, 8, "paired", source=torch.randn(9, 2))
    with pytest.raises(ValueError, match="source must have 2 columns"):
        fot.coupled_cfm_loss(data, 8, "independent", source=torch.randn(10, 3))


def test_train_with_coupling_and_reflow():
    torch.manual_seed(0)
    data = torch.randn(256, 2) * 0.1 + torch.tensor([2.0, -1.0])
    model = nn.Sequential(nn.Linear(3, 32), nn.SiLU(), nn.Linear(32, 2))
    field = _TimeConcat(model)
    result = fot.train_with_coupling(
        field, data, "exact", steps=300, batch_size=64, lr=1e-2, device="cpu", progress=False
    )
    assert len(result.history) == 300 and result.history[-1] < result.history[0]
    x0 = torch.randn(400, 2)
    pairs = fot.reflow_coupling(field, x0, steps=16)
    assert torch.equal(pairs.x0, x0) and pairs.x1.shape == (400, 2)
    assert float((pairs.x1.mean(0) - data.mean(0)).norm()) < 0.2  # the flow reaches the data


class _TimeConcat(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x, t):
        return self.net(torch.cat([x, t[:, None]], dim=1))


class _Constant(nn.Module):
    def __init__(self, c: torch.Tensor) -> None:
        super().__init__()
        self.c = nn.Parameter(c)

    def forward(self, x, t):
        return self.c.expand_as(x)


def test_reflow_coupling_of_a_constant_field_is_a_translation():
    field = _Constant(torch.tensor([1.0, -2.0]))
    x0 = torch.randn(30, 2)
    pairs = fot.reflow_coupling(field, x0, steps=3, method="euler", chunk=7)
    assert torch.allclose(pairs.x1, x0 + torch.tensor([1.0, -2.0]), atol=1e-6)
    with pytest.raises(ValueError, match="x0"):
        fot.reflow_coupling(field, torch.randn(3), steps=3)

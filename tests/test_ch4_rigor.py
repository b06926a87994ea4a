"""Tests of the chapter 4 additions to fmbook.ot: each against an independent computation."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from fmbook import ot as fot


def _direct_gaps(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """Half the cost added by swapping the partners of rows i and j, entry by entry in Python floats."""
    n = x0.shape[0]
    a, b = x0.double().tolist(), x1.double().tolist()

    def c(i, j):
        return sum((p - q) ** 2 for p, q in zip(a[i], b[j]))

    return torch.tensor([[0.5 * (c(i, j) + c(j, i) - c(i, i) - c(j, j)) for j in range(n)] for i in range(n)],
                        dtype=torch.float64)


def test_monotonicity_gaps_are_half_the_swap_cost():
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(7, 3, generator=g), torch.randn(7, 3, generator=g) + 2.0
    gaps = fot.monotonicity_gaps(x0, x1)
    assert gaps.dtype == torch.float64 and gaps.shape == (7, 7)
    torch.testing.assert_close(gaps, _direct_gaps(x0, x1), rtol=0, atol=1e-10)
    torch.testing.assert_close(gaps, gaps.T, rtol=0, atol=0)
    assert float(gaps.diagonal().abs().max()) == 0.0
    # images are flattened
    img0, img1 = x0.reshape(7, 3, 1, 1), x1.reshape(7, 1, 3, 1)
    torch.testing.assert_close(fot.monotonicity_gaps(img0, img1.reshape(7, 3, 1, 1)), gaps)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_cheapest_pairing_is_monotone_and_a_non_monotone_one_is_improved_by_a_swap(seed):
    g = torch.Generator().manual_seed(seed)
    x0, x1 = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g) * 0.5 + 1.0
    cost = fot.squared_distances(x0, x1)
    perms = torch.tensor(list(itertools.permutations(range(6))))
    costs = cost[torch.arange(6), perms].mean(1)
    best = perms[costs.argmin()]
    assert float(fot.monotonicity_gaps(x0, x1[best]).min()) >= -1e-12
    worst = perms[costs.argmax()]
    gaps = fot.monotonicity_gaps(x0, x1[worst])
    i, j = divmod(int(gaps.argmin()), 6)
    assert float(gaps[i, j]) < 0  # the most expensive pairing is not monotone
    swapped = worst.clone()
    swapped[i], swapped[j] = worst[j], worst[i]
    saving = fot.transport_cost(x0, x1[worst]) - fot.transport_cost(x0, x1[swapped])
    assert saving == pytest.approx(-2 * float(gaps[i, j]) / 6, rel=1e-6)


def test_straight_paths_that_meet_have_a_negative_gap():
    # Two particles at the same place p at time t: the gap is -(1 - t)/t ||x0_i - x0_j||^2.
    t, p = 0.3, torch.tensor([0.5, -1.0], dtype=torch.float64)
    x0 = torch.tensor([[0.0, 0.0], [2.0, 1.0]], dtype=torch.float64)
    x1 = (p - (1 - t) * x0) / t  # so that (1 - t) x0 + t x1 = p for both rows
    gap = float(fot.monotonicity_gaps(x0, x1)[0, 1])
    assert gap == pytest.approx(-(1 - t) / t * float((x0[0] - x0[1]).pow(2).sum()), rel=1e-12)


def test_monotonicity_gaps_reject_bad_input():
    with pytest.raises(ValueError, match="same number of points"):
        fot.monotonicity_gaps(torch.randn(4, 2), torch.randn(5, 2))
    with pytest.raises(ValueError, match="x1"):
        fot.monotonicity_gaps(torch.randn(4, 2), torch.full((4, 2), float("nan")))


def test_energy_gap_keeps_the_sign_the_normalized_path_energy_drops():
    assert fot.energy_gap(1.5, 1.0) == pytest.approx(0.5) == fot.normalized_path_energy(1.5, 1.0)
    assert fot.energy_gap(0.9, 1.0) == pytest.approx(-0.1)
    assert fot.normalized_path_energy(0.9, 1.0) == pytest.approx(0.1)  # the absolute value hides the sign
    with pytest.raises(ValueError, match="w2_squared"):
        fot.energy_gap(1.0, 0.0)
    with pytest.raises(ValueError, match="energy"):
        fot.energy_gap(float("inf"), 1.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_energy_gap_to_the_own_end_points_is_never_negative(seed):
    # Random wiggly trajectories: energy >= cost of the own pairing >= W2^2 of the end points (POT),
    # with equality for the straight paths of an optimal pairing.
    g = torch.Generator().manual_seed(seed)
    x0, x1 = torch.randn(40, 2, generator=g, dtype=torch.float64), torch.randn(40, 2, generator=g, dtype=torch.float64)
    times = torch.linspace(0, 1, 11, dtype=torch.float64)
    straight = x0[:, None] + times[None, :, None] * (x1 - x0)[:, None]
    wiggly = straight + 0.3 * torch.randn(40, 11, 2, generator=g, dtype=torch.float64) * (times * (1 - times))[:, None]
    for traj in (straight, wiggly):
        w2_sq_own = fot.w2(traj[:, 0], traj[:, -1]) ** 2
        energy = fot.kinetic_energy(traj, times)
        assert energy >= fot.transport_cost(traj[:, 0], traj[:, -1]) - 1e-12
        assert fot.energy_gap(energy, w2_sq_own) >= 0
    a, b = fot.ot_pair(x0, x1)
    optimal = a[:, None] + times[None, :, None] * (b - a)[:, None]
    assert abs(fot.energy_gap(fot.kinetic_energy(optimal, times), fot.w2(a, b) ** 2)) < 1e-12
    # Control: the straight paths of a random pairing have a positive gap (their pairing is not optimal).
    assert fot.energy_gap(fot.kinetic_energy(straight, times), fot.w2(x0, x1) ** 2) > 0.1


# ----------------------------------------------------------------------------- I-CFM between two Gaussians (1-D)

GAUSSIANS = [(0.0, 1.0, 0.0, 2.0), (1.0, 0.5, -1.0, 2.0), (0.3, 1.5, 2.0, 0.4)]


@pytest.mark.parametrize("m0, s0, m1, s1", GAUSSIANS)
def test_gaussian_icfm_velocity_is_the_conditional_mean_of_x1_minus_x0(m0, s0, m1, s1):
    # Monte Carlo: least-squares regression of X1 - X0 on X_t (the conditional mean is affine: jointly Gaussian).
    g = torch.Generator().manual_seed(7)
    n = 400_000
    x0 = m0 + s0 * torch.randn(n, generator=g, dtype=torch.float64)
    x1 = m1 + s1 * torch.randn(n, generator=g, dtype=torch.float64)
    for t in (0.1, 0.5, 0.9):
        xt = (1 - t) * x0 + t * x1
        design = torch.stack([torch.ones(n, dtype=torch.float64), xt], dim=1)
        coef = torch.linalg.lstsq(design, (x1 - x0)[:, None]).solution[:, 0]
        grid = torch.tensor([[-1.0], [0.0], [2.0]], dtype=torch.float64)
        predicted = fot.gaussian_icfm_velocity(grid, t, m0, s0, m1, s1)[:, 0]
        torch.testing.assert_close(predicted, coef[0] + coef[1] * grid[:, 0], rtol=0, atol=0.02)


@pytest.mark.parametrize("m0, s0, m1, s1", GAUSSIANS)
def test_gaussian_icfm_energy_by_quadrature_and_by_trajectories(m0, s0, m1, s1):
    from scipy.integrate import quad

    from fmbook import solvers

    def std(t):
        return math.sqrt((1 - t) ** 2 * s0**2 + t**2 * s1**2)

    h = 1e-6
    by_quad = (m1 - m0) ** 2 + quad(lambda t: ((std(min(t + h, 1)) - std(max(t - h, 0))) /
                                              (min(t + h, 1) - max(t - h, 0))) ** 2, 0, 1, limit=200)[0]
    closed = fot.gaussian_icfm_energy(m0, s0, m1, s1)
    assert closed == pytest.approx(by_quad, rel=1e-6)
    # Trajectories of the velocity from standardized normal quantiles (sample mean 0, variance 1 exactly).
    z = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.0005, 0.9995, 1000, dtype=torch.float64))
    z = ((z - z.mean()) / z.std(correction=0))[:, None]
    sol = solvers.solve_ode(lambda x, t: fot.gaussian_icfm_velocity(x, t, m0, s0, m1, s1), m0 + s0 * z,
                            steps=400, method="rk4", return_trajectory=True)
    assert fot.kinetic_energy(sol.trajectory, sol.times) == pytest.approx(closed, rel=1e-4)
    # The map is the increasing (optimal) map m1 + (s1 / s0)(x - m0); the path costs more than W2^2.
    torch.testing.assert_close(sol.x, m1 + s1 * z, rtol=0, atol=1e-6)
    f64 = dict(dtype=torch.float64)
    w2_sq = fot.gaussian_w2(torch.tensor([m0], **f64), torch.tensor([[s0**2]], **f64),
                            torch.tensor([m1], **f64), torch.tensor([[s1**2]], **f64)) ** 2
    assert closed - w2_sq == pytest.approx((2 - math.pi / 2) * s0 * s1, rel=1e-9)
    assert closed > w2_sq


def test_gaussian_icfm_functions_reject_bad_parameters():
    with pytest.raises(ValueError, match="std1"):
        fot.gaussian_icfm_energy(0.0, 1.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="mean0"):
        fot.gaussian_icfm_energy(float("nan"), 1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="x"):
        fot.gaussian_icfm_velocity(torch.zeros(3, 2), 0.5, 0.0, 1.0, 0.0, 2.0)


# ----------------------------------------------------------------------------- sliced W2 is a root-mean-square


def test_sliced_w2_is_the_root_mean_square_of_the_one_dimensional_w2():
    from fmbook import metrics

    g = torch.Generator().manual_seed(11)
    a, b = torch.randn(60, 2, generator=g, dtype=torch.float64), torch.randn(60, 2, generator=g, dtype=torch.float64)
    b = b * torch.tensor([2.0, 0.3], dtype=torch.float64) + 1.0
    directions = metrics.slicing_directions(2, 16)
    per_direction = torch.tensor([metrics.exact_w2(a @ th[:, None], b @ th[:, None]) for th in directions],
                                 dtype=torch.float64)  # POT, one direction at a time
    rms = float(per_direction.pow(2).mean().sqrt())
    assert metrics.sliced_w2(a, b, n_directions=16) == pytest.approx(rms, rel=1e-9)
    # Control: the plain mean of the per-direction distances is strictly smaller (they differ across directions).
    assert float(per_direction.mean()) < 0.99 * rms

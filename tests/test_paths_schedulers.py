"""Tests of the schedulers of fmbook.paths: values, derivatives, boundary conditions,
finiteness, the Gaussian conditional velocity (Theorem 3 of Lipman et al. 2022) and its VE,
VP and OT instances, the signal-to-noise ratio, and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.integrate import quad

from fmbook.paths import (
    SIGMA_FLOOR,
    AffinePath,
    CondOTScheduler,
    CosineScheduler,
    OTScheduler,
    PolynomialScheduler,
    Scheduler,
    VEScheduler,
    VPScheduler,
    conditional_velocity,
    log_snr,
    snr,
    time_at_snr,
)

SCHEDULERS = [
    CondOTScheduler(),
    PolynomialScheduler(2),
    PolynomialScheduler(3.5),
    CosineScheduler(),
    VPScheduler(),
    VPScheduler(beta_min=0.5, beta_max=5.0),
    VEScheduler(),
    VEScheduler(sigma_min=0.1, sigma_max=3.0),
    OTScheduler(),
    OTScheduler(sigma_min=0.1),
]
IDS = [repr(s) for s in SCHEDULERS]


# ---------------------------------------------------------------- values against closed forms
def _vp_alpha(t: float, beta_min: float, beta_max: float) -> float:
    """alpha_t = exp(-1/2 int_0^{1-t} beta(s) ds), the integral done by quadrature."""
    integral, _ = quad(lambda s: beta_min + s * (beta_max - beta_min), 0.0, 1.0 - t)
    return math.exp(-0.5 * integral)


def _reference(scheduler: Scheduler, t: float) -> tuple[float, float]:
    """(alpha_t, sigma_t) from the definitions, written independently of fmbook."""
    if isinstance(scheduler, CondOTScheduler):
        return t, 1 - t
    if isinstance(scheduler, PolynomialScheduler):
        return t**scheduler.n, 1 - t**scheduler.n
    if isinstance(scheduler, CosineScheduler):
        return math.sin(math.pi * t / 2), math.cos(math.pi * t / 2)
    if isinstance(scheduler, VPScheduler):
        a = _vp_alpha(t, scheduler.beta_min, scheduler.beta_max)
        return a, math.sqrt(1 - a * a)
    if isinstance(scheduler, VEScheduler):
        # sigma(s) = sigma_min (sigma_max / sigma_min)^s, used at s = 1 - t
        return 1.0, scheduler.sigma_min * (scheduler.sigma_max / scheduler.sigma_min) ** (1 - t)
    if isinstance(scheduler, OTScheduler):
        return t, 1 - (1 - scheduler.sigma_min) * t
    raise AssertionError(scheduler)


@pytest.mark.parametrize("scheduler", SCHEDULERS, ids=IDS)
def test_values_match_the_definitions(scheduler):
    ts = [0.0, 0.03, 0.25, 0.5, 0.77, 0.99, 1.0]
    out = scheduler(torch.tensor(ts, dtype=torch.float64))
    for i, t in enumerate(ts):
        a, s = _reference(scheduler, t)
        assert out.alpha_t[i].item() == pytest.approx(a, rel=1e-9, abs=1e-12)
        assert out.sigma_t[i].item() == pytest.approx(s, rel=1e-9, abs=1e-12)


# ---------------------------------------------------------------- derivatives
def _grad(y, t):
    """d y_i / d t_i by autograd; zero when y does not depend on t at all (e.g. alpha_t = 1)."""
    if not y.requires_grad:
        return torch.zeros_like(t)
    (g,) = torch.autograd.grad(y.sum(), t, retain_graph=True, allow_unused=True)
    return torch.zeros_like(t) if g is None else g


@pytest.mark.parametrize("scheduler", SCHEDULERS, ids=IDS)
def test_derivatives_match_autograd(scheduler):
    t = torch.linspace(0.005, 0.995, 67, dtype=torch.float64, requires_grad=True)
    out = scheduler.coefficients(t)
    d_alpha, d_sigma = (_grad(c, t) for c in (out.alpha_t, out.sigma_t))
    torch.testing.assert_close(out.d_alpha_t.detach(), d_alpha, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(out.d_sigma_t.detach(), d_sigma, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("scheduler", SCHEDULERS, ids=IDS)
def test_derivatives_match_central_differences_of_the_reference(scheduler):
    h = 1e-6
    for t in (0.1, 0.4, 0.8):
        (a_plus, s_plus), (a_minus, s_minus) = _reference(scheduler, t + h), _reference(scheduler, t - h)
        out = scheduler(torch.tensor([t], dtype=torch.float64))
        assert out.d_alpha_t.item() == pytest.approx((a_plus - a_minus) / (2 * h), rel=1e-6, abs=1e-8)
        assert out.d_sigma_t.item() == pytest.approx((s_plus - s_minus) / (2 * h), rel=1e-6, abs=1e-8)


# ---------------------------------------------------------------- boundary conditions
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scheduler", [CondOTScheduler(), PolynomialScheduler(2), CosineScheduler()], ids=repr)
def test_boundary_conditions_of_the_unit_schedulers(scheduler, dtype):
    a, s, _, _ = scheduler(torch.tensor([0.0, 1.0], dtype=dtype))
    assert a[0].item() == 0.0 and s[0].item() == 1.0
    assert a[1].item() == pytest.approx(1.0, abs=1e-7) and s[1].item() == pytest.approx(0.0, abs=1e-7)


def test_boundary_conditions_of_the_ot_path():
    for sigma_min in (1e-4, 0.05, 0.5):
        a, s, _, _ = OTScheduler(sigma_min)(torch.tensor([0.0, 1.0], dtype=torch.float64))
        assert a.tolist() == [0.0, 1.0]
        assert s[0].item() == 1.0 and s[1].item() == pytest.approx(sigma_min, rel=1e-12)


def test_boundary_conditions_of_the_vp_path():
    vp = VPScheduler(beta_min=0.1, beta_max=20.0)
    a, s, _, _ = vp(torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert a[1].item() == 1.0 and s[1].item() == 0.0
    # At t = 0 the VP path is only approximately noise: alpha_0 = exp(-T(1)/2), T(1) = 0.1 + 19.9 / 2.
    assert a[0].item() == pytest.approx(math.exp(-0.5 * (0.1 + 0.5 * 19.9)), rel=1e-12)
    assert a[0].item() < 0.007 and s[0].item() == pytest.approx(1.0, abs=3e-5)
    # Variance preserving: alpha_t^2 + sigma_t^2 = 1 everywhere.
    a, s, _, _ = vp(torch.linspace(0, 1, 101, dtype=torch.float64))
    torch.testing.assert_close(a**2 + s**2, torch.ones_like(a), rtol=0, atol=1e-12)


def test_boundary_conditions_of_the_ve_path():
    ve = VEScheduler(sigma_min=0.01, sigma_max=10.0)
    a, s, da, _ = ve(torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert a.tolist() == [1.0, 1.0] and da.tolist() == [0.0, 0.0]
    assert s[0].item() == pytest.approx(10.0, rel=1e-12) and s[1].item() == pytest.approx(0.01, rel=1e-12)


@pytest.mark.parametrize("scheduler", SCHEDULERS, ids=IDS)
def test_alpha_increases_sigma_decreases_and_D_is_negative(scheduler):
    a, s, da, ds = scheduler(torch.linspace(0, 1, 1001, dtype=torch.float64))
    assert bool((a[1:] >= a[:-1]).all()) and bool((s[1:] <= s[:-1]).all())
    assert bool((da >= 0).all()) and bool((ds <= 0).all())
    # D = alpha sigma' - alpha' sigma does not vanish on (0, 1]: there the velocity determines both
    # end points. At t = 0 it vanishes only for the polynomial scheduler with n > 1, where
    # D = -n t^(n-1) and the conditional velocity itself is 0.
    d = a * ds - da * s
    assert bool((d[1:] < 0).all())
    if isinstance(scheduler, PolynomialScheduler) and scheduler.n > 1:
        torch.testing.assert_close(
            d, -scheduler.n * torch.linspace(0, 1, 1001, dtype=torch.float64) ** (scheduler.n - 1)
        )
    else:
        assert d[0].item() < 0


# ---------------------------------------------------------------- finiteness
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scheduler", SCHEDULERS, ids=IDS)
def test_finite_over_the_closed_unit_interval(scheduler, dtype):
    eps = torch.finfo(dtype).eps
    t = torch.cat([torch.linspace(0, 1, 2001, dtype=dtype), torch.tensor([eps, 1 - eps, 1 - eps / 2], dtype=dtype)])
    for c in scheduler(t):
        assert c.dtype == dtype and bool(torch.isfinite(c).all())
    ls = log_snr(t, scheduler)
    assert bool(torch.isfinite(ls).all()) and bool(torch.isfinite(snr(t, scheduler)).all())


def test_vp_sigma_derivative_is_clamped_as_documented_at_the_data_end():
    vp = VPScheduler()
    a, _, da, ds = vp(torch.tensor([1.0], dtype=torch.float64))
    assert ds.item() == pytest.approx(-(a * da).item() / SIGMA_FLOOR, rel=1e-12)
    # Just inside the interval it is unclamped: -beta(s) alpha^2 / (2 sigma), with s = 1 - t.
    for s in (1e-4, 1e-6):
        _, _, _, ds = vp(torch.tensor([1 - s], dtype=torch.float64))
        a = _vp_alpha(1 - s, 0.1, 20.0)
        expected = -0.5 * (0.1 + 19.9 * s) * a * a / math.sqrt(1 - a * a)
        assert ds.item() == pytest.approx(expected, rel=1e-6)
        assert abs(ds.item()) < abs(-(a * 0.05 * a) / SIGMA_FLOOR)


# ---------------------------------------------------------------- signal-to-noise ratio
@pytest.mark.parametrize("scheduler", SCHEDULERS, ids=IDS)
def test_log_snr_is_increasing_and_matches_its_definition(scheduler):
    t = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    a, s, _, _ = scheduler(t)
    ls = log_snr(t, scheduler)
    torch.testing.assert_close(ls, torch.log(a**2 / s**2), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(snr(t, scheduler), a**2 / s**2, rtol=1e-12, atol=1e-12)
    assert bool((ls[1:] > ls[:-1]).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_snr_is_clamped_at_the_ends_as_documented(dtype):
    ls = log_snr(torch.tensor([0.0, 1.0], dtype=dtype), CondOTScheduler())
    bound = -2 * math.log(torch.finfo(dtype).tiny)
    torch.testing.assert_close(ls, torch.tensor([-bound, bound], dtype=dtype))


@pytest.mark.parametrize(
    "scheduler", [CondOTScheduler(), CosineScheduler(), PolynomialScheduler(2), VPScheduler()], ids=repr
)
def test_time_at_snr_inverts_the_angle(scheduler):
    t = torch.linspace(0.0, 1.0, 41, dtype=torch.float64)
    a, s, _, _ = scheduler(t)
    found = time_at_snr(torch.atan2(a, s), scheduler)
    torch.testing.assert_close(found, t, rtol=0, atol=1e-9)


def test_time_at_snr_matches_the_closed_form_of_condot():
    angle = torch.linspace(0, math.pi / 2, 31, dtype=torch.float64)
    # alpha / sigma = t / (1 - t) = tan(angle)  =>  t = sin / (sin + cos)
    expected = angle.sin() / (angle.sin() + angle.cos())
    torch.testing.assert_close(time_at_snr(angle, CondOTScheduler()), expected, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- Theorem 3 and its instances
def _canonical_flow_velocity(scheduler, x0, x1, t):
    """d/dt of psi_t(x0) = sigma_t x0 + alpha_t x1, by autograd with respect to t (one t per row)."""
    t = t.clone().requires_grad_(True)
    a, s, _, _ = scheduler.coefficients(t)
    psi = s[:, None] * x0 + a[:, None] * x1
    columns = [_grad(psi[:, j], t) for j in range(psi.shape[1])]
    return psi.detach(), torch.stack(columns, dim=1)


@pytest.mark.parametrize("scheduler", SCHEDULERS, ids=IDS)
def test_theorem_3_matches_autograd_of_the_canonical_flow(scheduler):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(64, 3, generator=g, dtype=torch.float64)
    x1 = 2 * torch.randn(64, 3, generator=g, dtype=torch.float64)
    t = torch.rand(64, generator=g, dtype=torch.float64) * 0.98 + 0.01
    psi, dpsi = _canonical_flow_velocity(scheduler, x0, x1, t)
    torch.testing.assert_close(conditional_velocity(psi, x1, t, scheduler), dpsi, rtol=1e-9, atol=1e-9)
    # The affine path's regression target is the same field evaluated on the path.
    sample = AffinePath(scheduler).sample(x0, x1, t)
    torch.testing.assert_close(sample.x_t, psi)
    torch.testing.assert_close(sample.dx_t, dpsi, rtol=1e-9, atol=1e-9)


def _points(seed=1):
    g = torch.Generator().manual_seed(seed)
    x = 3 * torch.randn(50, 2, generator=g, dtype=torch.float64)
    x1 = torch.randn(50, 2, generator=g, dtype=torch.float64)
    t = torch.rand(50, generator=g, dtype=torch.float64) * 0.98 + 0.01
    return x, x1, t


@pytest.mark.parametrize("sigma_min, sigma_max", [(0.01, 10.0), (0.1, 3.0)])
def test_ve_field_matches_lipman_closed_form(sigma_min, sigma_max):
    """Lipman et al. (2022), eq. (17): u_t(x | x1) = -sigma'_{1-t} / sigma_{1-t} (x - x1) with the
    increasing noise scale sigma(s) = sigma_min (sigma_max / sigma_min)^s."""
    x, x1, t = _points()
    ve = VEScheduler(sigma_min, sigma_max)
    rate = math.log(sigma_max / sigma_min)  # sigma'(s) / sigma(s)
    expected = -rate * (x - x1)
    torch.testing.assert_close(conditional_velocity(x, x1, t, ve), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("beta_min, beta_max", [(0.1, 20.0), (1.0, 4.0)])
def test_vp_field_matches_lipman_closed_form(beta_min, beta_max):
    """Lipman et al. (2022), eq. (19): with T(s) = int_0^s beta and s = 1 - t,
    u_t(x | x1) = -T'(s)/2 * (e^{-T(s)} x - e^{-T(s)/2} x1) / (1 - e^{-T(s)})."""
    x, x1, t = _points()
    s = 1 - t
    big_t = beta_min * s + 0.5 * (beta_max - beta_min) * s**2
    d_big_t = beta_min + (beta_max - beta_min) * s
    expected = (
        -0.5
        * d_big_t[:, None]
        * (torch.exp(-big_t)[:, None] * x - torch.exp(-0.5 * big_t)[:, None] * x1)
        / (1 - torch.exp(-big_t))[:, None]
    )
    got = conditional_velocity(x, x1, t, VPScheduler(beta_min, beta_max))
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("sigma_min", [1e-4, 0.1])
def test_ot_field_and_flow_match_lipman_closed_form(sigma_min):
    """Lipman et al. (2022), eqs. (20)-(22): psi_t(x) = (1 - (1 - sigma_min) t) x + t x1 and
    u_t(x | x1) = (x1 - (1 - sigma_min) x) / (1 - (1 - sigma_min) t)."""
    x, x1, t = _points()
    ot = OTScheduler(sigma_min)
    c = 1 - sigma_min
    expected = (x1 - c * x) / (1 - c * t)[:, None]
    torch.testing.assert_close(conditional_velocity(x, x1, t, ot), expected, rtol=1e-10, atol=1e-10)
    x0 = torch.randn_like(x)
    psi = (1 - c * t)[:, None] * x0 + t[:, None] * x1
    torch.testing.assert_close(AffinePath(ot).sample(x0, x1, t).x_t, psi)
    # The OT conditional flow moves in a straight line at constant speed: its velocity is x1 - c x0.
    torch.testing.assert_close(conditional_velocity(psi, x1, t, ot), x1 - c * x0, rtol=1e-10, atol=1e-10)


def test_conditional_velocity_is_finite_at_both_ends():
    x, x1, _ = _points()
    for scheduler in SCHEDULERS:
        for t in (0.0, 1.0):
            assert bool(torch.isfinite(conditional_velocity(x, x1, t, scheduler)).all())


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "make, error, words",
    [
        (lambda: VPScheduler(beta_min=5.0, beta_max=1.0), ValueError, "beta_max must be >= beta_min"),
        (lambda: VPScheduler(beta_min=-0.1), ValueError, "beta_min"),
        (lambda: VPScheduler(beta_max=float("inf")), ValueError, "beta_max"),
        (lambda: VPScheduler(beta_min="0.1"), TypeError, "beta_min"),
        (lambda: VEScheduler(sigma_min=1.0, sigma_max=1.0), ValueError, "sigma_max must be > sigma_min"),
        (lambda: VEScheduler(sigma_min=0.0), ValueError, "sigma_min"),
        (lambda: OTScheduler(sigma_min=0.0), ValueError, "sigma_min must lie in (0, 1)"),
        (lambda: OTScheduler(sigma_min=1.0), ValueError, "sigma_min must lie in (0, 1)"),
        (lambda: OTScheduler(sigma_min=-0.5), ValueError, "sigma_min"),
        (lambda: OTScheduler(sigma_min=None), TypeError, "sigma_min"),
        (lambda: PolynomialScheduler(n=0.5), ValueError, "n must be >= 1"),
        (lambda: PolynomialScheduler(n=0), ValueError, "n must be"),
        (lambda: PolynomialScheduler(n=True), TypeError, "n must be a number"),
        (lambda: AffinePath("condot"), TypeError, "scheduler must be a fmbook.paths.Scheduler"),
        (lambda: CondOTScheduler()(1.5), ValueError, "t must lie in [0, 1]"),
        (lambda: CondOTScheduler()(torch.tensor([0.2, -0.1])), ValueError, "t must lie in [0, 1]"),
        (lambda: CondOTScheduler()(torch.tensor([float("nan")])), ValueError, "t must contain only finite"),
        (lambda: CondOTScheduler()("0.5"), TypeError, "t must be a float"),
        (lambda: log_snr(0.5, None), TypeError, "scheduler must be"),
        (lambda: snr(2.0, CondOTScheduler()), ValueError, "t must lie in [0, 1]"),
        (lambda: time_at_snr(torch.tensor([0.0]), VPScheduler()), ValueError, "angle must lie in"),
        (lambda: time_at_snr([0.1], CondOTScheduler()), ValueError, "angle must be a 1-D"),
        (lambda: time_at_snr(torch.tensor([0.1]), CondOTScheduler(), iterations=0), ValueError, "iterations"),
        (
            lambda: conditional_velocity(torch.zeros(3, 2), torch.zeros(3, 3), 0.5, CondOTScheduler()),
            ValueError,
            "same shape",
        ),
        (lambda: conditional_velocity(torch.zeros(3, 2), torch.zeros(3, 2), 0.5, "vp"), TypeError, "scheduler"),
    ],
)
def test_bad_input_raises_a_clear_error(make, error, words):
    with pytest.raises(error) as info:
        make()
    assert words in str(info.value)

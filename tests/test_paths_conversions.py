"""Tests of the parameterisations of an affine path's velocity in fmbook.paths: conversions
between velocity, x1, x0, epsilon and score, their coefficients, where they are undefined,
the score against autograd, and the change of scheduler after training."""

from __future__ import annotations

import math

import pytest
import torch

from fmbook.paths import (
    PARAMETERIZATIONS,
    AffinePath,
    CondOTScheduler,
    CosineScheduler,
    OTScheduler,
    PolynomialScheduler,
    ScheduleChange,
    VEScheduler,
    VPScheduler,
    convert,
    endpoints_from,
    marginal_log_density,
    marginal_score,
    marginal_velocity,
    velocity_coefficients,
    velocity_from_x1,
)
from fmbook.solvers import solve_ode

SCHEDULERS = [
    CondOTScheduler(),
    PolynomialScheduler(2),
    CosineScheduler(),
    VPScheduler(),
    VEScheduler(),
    OTScheduler(sigma_min=0.05),
]
IDS = [repr(s) for s in SCHEDULERS]
PAIRS = [(a, b) for a in PARAMETERIZATIONS for b in PARAMETERIZATIONS]


def _draw(scheduler, n=40, shape=(3,), seed=0, low=0.02, high=0.98):
    """End points, times, and the exact value of every parameterisation on the path (float64)."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, *shape, generator=g, dtype=torch.float64)
    x1 = 2 * torch.randn(n, *shape, generator=g, dtype=torch.float64) + 0.5
    t = low + (high - low) * torch.rand(n, generator=g, dtype=torch.float64)
    sample = AffinePath(scheduler).sample(x0, x1, t)
    sigma = scheduler(t).sigma_t.reshape(n, *([1] * len(shape)))
    # For a Gaussian source the conditional score of N(alpha x1, sigma^2 I) at x_t is -x0 / sigma.
    alpha = scheduler(t).alpha_t.reshape(n, *([1] * len(shape)))
    exact = {"velocity": sample.dx_t, "x1": x1, "x0": x0, "epsilon": x0, "score": -x0 / sigma,
             "v": alpha * x0 - sigma * x1}
    return sample.x_t, t, exact


@pytest.mark.parametrize("scheduler", SCHEDULERS, ids=IDS)
@pytest.mark.parametrize("source, target", PAIRS)
def test_convert_maps_each_exact_prediction_to_every_other(scheduler, source, target):
    x_t, t, exact = _draw(scheduler)
    got = convert(exact[source], source, target, x_t, t, scheduler)
    torch.testing.assert_close(got, exact[target], rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("scheduler", SCHEDULERS, ids=IDS)
@pytest.mark.parametrize("source, target", PAIRS)
def test_conversions_round_trip_on_arbitrary_predictions(scheduler, source, target):
    """The maps are affine in the prediction; going there and back returns any input, on the path or not."""
    x_t, t, _ = _draw(scheduler, shape=(2, 4, 4))  # image-shaped batches work too
    prediction = torch.randn_like(x_t)
    there = convert(prediction, source, target, x_t, t, scheduler)
    back = convert(there, target, source, x_t, t, scheduler)
    torch.testing.assert_close(back, prediction, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("scheduler", SCHEDULERS, ids=IDS)
@pytest.mark.parametrize("parameterization", PARAMETERIZATIONS)
def test_velocity_coefficients_agree_with_convert(scheduler, parameterization):
    x_t, t, _ = _draw(scheduler, shape=(2,))
    prediction = torch.randn_like(x_t)
    a, b = velocity_coefficients(t, parameterization, scheduler)
    expected = convert(prediction, parameterization, "velocity", x_t, t, scheduler)
    torch.testing.assert_close(a[:, None] * x_t + b[:, None] * prediction, expected, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("scheduler", SCHEDULERS, ids=IDS)
def test_endpoints_from_recovers_both_ends(scheduler):
    x_t, t, exact = _draw(scheduler)
    for p in PARAMETERIZATIONS:
        x0, x1 = endpoints_from(exact[p], p, x_t, t, scheduler)
        torch.testing.assert_close(x0, exact["x0"], rtol=1e-8, atol=1e-8)
        torch.testing.assert_close(x1, exact["x1"], rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("scheduler", SCHEDULERS, ids=IDS)
def test_score_coefficients_are_proposition_1_of_the_notes(scheduler):
    """u = (sigma^2 alpha'/alpha - sigma' sigma) s + (alpha'/alpha) x (Holderrieth and Erives, eq. 54)."""
    x_t, t, _ = _draw(scheduler, shape=(2,))
    score = torch.randn_like(x_t)
    al, si, dal, dsi = (c[:, None] for c in scheduler(t))
    expected = (si**2 * dal / al - dsi * si) * score + dal / al * x_t
    torch.testing.assert_close(convert(score, "score", "velocity", x_t, t, scheduler), expected)
    # and the inverse (eq. 55): s = (alpha u - alpha' x) / (sigma^2 alpha' - alpha sigma' sigma)
    u = torch.randn_like(x_t)
    expected = (al * u - dal * x_t) / (si**2 * dal - al * dsi * si)
    torch.testing.assert_close(convert(u, "velocity", "score", x_t, t, scheduler), expected)


@pytest.mark.parametrize("scheduler", SCHEDULERS, ids=IDS)
def test_conditional_score_matches_autograd_of_the_gaussian_log_density(scheduler):
    x_t, t, exact = _draw(scheduler, shape=(2,))
    al, si = (c[:, None] for c in scheduler(t)[:2])
    x = x_t.clone().requires_grad_(True)
    mean = al * exact["x1"]
    log_p = torch.distributions.Normal(mean, si).log_prob(x).sum()
    (score,) = torch.autograd.grad(log_p, x)
    torch.testing.assert_close(score, exact["score"], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("scheduler", [CondOTScheduler(), CosineScheduler(), VPScheduler(), VEScheduler()], ids=repr)
def test_marginal_score_converts_to_the_marginal_velocity(scheduler):
    """Two independent routes to the exact marginal velocity of a finite data set agree, and the
    marginal score is the gradient of the exact log-density."""
    g = torch.Generator().manual_seed(3)
    data = torch.randn(12, 2, generator=g, dtype=torch.float64) * 1.5
    x = torch.randn(30, 2, generator=g, dtype=torch.float64) * 2
    t = torch.rand(30, generator=g, dtype=torch.float64) * 0.9 + 0.05
    score = marginal_score(x, t, data, scheduler)
    velocity = marginal_velocity(x, t, data, scheduler)
    torch.testing.assert_close(convert(score, "score", "velocity", x, t, scheduler), velocity, rtol=1e-8, atol=1e-8)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(marginal_log_density(xg, t, data, scheduler).sum(), xg)
    torch.testing.assert_close(grad, score, rtol=1e-8, atol=1e-8)


# ---------------------------------------------------------------- where parameterisations are undefined
@pytest.mark.parametrize("parameterization", ["x0", "epsilon", "score"])
def test_source_and_noise_predictions_are_undefined_at_the_noise_end(parameterization):
    x = torch.randn(5, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="alpha_t = 0"):
        convert(x, parameterization, "velocity", x, 0.0, CondOTScheduler())
    with pytest.raises(ValueError, match="alpha_t = 0"):
        velocity_coefficients(0.0, parameterization, CondOTScheduler())
    # clamp=True documents a floor instead, and stays finite
    assert bool(torch.isfinite(convert(x, parameterization, "velocity", x, 0.0, CondOTScheduler(), clamp=True)).all())
    # VE has alpha_t = 1: its noise prediction is defined at t = 0.
    assert bool(torch.isfinite(convert(x, parameterization, "velocity", x, 0.0, VEScheduler())).all())


def test_target_prediction_and_score_are_undefined_at_the_data_end():
    x = torch.randn(5, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="sigma_t = 0"):
        convert(x, "x1", "velocity", x, 1.0, CondOTScheduler())
    with pytest.raises(ValueError, match="sigma_t = 0"):
        velocity_coefficients(1.0, "x1", CosineScheduler())
    with pytest.raises(ValueError, match="sigma_t = 0"):
        convert(x, "velocity", "score", x, 1.0, CondOTScheduler())
    assert bool(torch.isfinite(convert(x, "x1", "velocity", x, 1.0, CondOTScheduler(), clamp=True)).all())
    # The OT path keeps sigma_1 = sigma_min > 0, so everything is defined there.
    assert bool(torch.isfinite(convert(x, "x1", "score", x, 1.0, OTScheduler(0.05))).all())
    # velocity_from_x1 is convert(x1 -> velocity) by name: it raises where convert raises, and
    # clamp=True documents the same floor
    with pytest.raises(ValueError, match="sigma_t = 0"):
        velocity_from_x1(x, x, 1.0, CondOTScheduler())
    assert bool(torch.isfinite(velocity_from_x1(x, x, 1.0, CondOTScheduler(), clamp=True)).all())
    torch.testing.assert_close(
        velocity_from_x1(x, x, 1.0, CondOTScheduler(), clamp=True),
        convert(x, "x1", "velocity", x, 1.0, CondOTScheduler(), clamp=True), rtol=0, atol=0,
    )


def test_velocity_is_defined_at_both_ends():
    x = torch.randn(5, 2, dtype=torch.float64)
    for scheduler in SCHEDULERS:
        for t in (0.0, 1.0):
            for target in ("x0", "x1"):
                if isinstance(scheduler, PolynomialScheduler) and t == 0.0:
                    continue  # its velocity vanishes at t = 0 (checked below)
                assert bool(torch.isfinite(convert(x, "velocity", target, x, t, scheduler)).all())
    with pytest.raises(ValueError, match="velocity -> x0"):
        convert(x, "velocity", "x0", x, 0.0, PolynomialScheduler(2))


def test_noise_prediction_is_singular_near_the_noise_end():
    """For CondOT the velocity of an epsilon prediction has b_t = -1/t: an error of size e in the
    prediction becomes an error e / t in the velocity, unbounded as t -> 0. The x1 prediction's
    b_t = 1/(1 - t) is bounded there."""
    t = torch.tensor([1e-4, 1e-3, 1e-2, 0.1, 0.5], dtype=torch.float64)
    a, b = velocity_coefficients(t, "epsilon", CondOTScheduler())
    torch.testing.assert_close(b, -1 / t)
    torch.testing.assert_close(a, 1 / t)
    _, b1 = velocity_coefficients(t, "x1", CondOTScheduler())
    torch.testing.assert_close(b1, 1 / (1 - t))
    assert b.abs().max().item() > 1e3 * b1.abs().max().item()


# ---------------------------------------------------------------- changing the scheduler after training
def _exact_field(data, scheduler):
    return lambda x, t: marginal_velocity(x, t, data, scheduler)


@pytest.mark.parametrize("new", [CosineScheduler(), PolynomialScheduler(2), PolynomialScheduler(1.5)], ids=repr)
def test_schedule_change_turns_one_exact_marginal_velocity_into_another(new):
    g = torch.Generator().manual_seed(5)
    data = torch.randn(10, 2, generator=g, dtype=torch.float64)
    x = torch.randn(40, 2, generator=g, dtype=torch.float64) * 1.5
    r = torch.cat([torch.tensor([0.0]), torch.rand(39, generator=g)]).to(torch.float64) * 0.97
    old = CondOTScheduler()
    changed = ScheduleChange(_exact_field(data, old), old, new)
    torch.testing.assert_close(changed(x, r), marginal_velocity(x, r, data, new), rtol=1e-7, atol=1e-7)


def test_schedule_change_time_and_scale_closed_form_condot_to_cosine():
    """CondOT -> cosine: t_r = sin / (sin + cos), s_r = sin + cos (at angle pi r / 2)."""
    r = torch.linspace(0, 1, 21, dtype=torch.float64)
    change = ScheduleChange(lambda x, t: x, CondOTScheduler(), CosineScheduler())
    t, s, dt, log_ds = change.time_and_scale(r)
    sin, cos = torch.sin(math.pi * r / 2), torch.cos(math.pi * r / 2)
    torch.testing.assert_close(t, sin / (sin + cos), rtol=0, atol=1e-12)
    torch.testing.assert_close(s, sin + cos, rtol=1e-10, atol=1e-10)
    h = math.pi / 2
    torch.testing.assert_close(dt, h / (sin + cos) ** 2, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(log_ds, h * (cos - sin) / (sin + cos), rtol=1e-8, atol=1e-8)
    assert all(bool(torch.isfinite(c).all()) for c in (t, s, dt, log_ds))


def test_schedule_change_gives_the_same_samples_as_the_original_flow():
    """Both flows start from the same source sample (s_0 = 1); at matched times x_bar(r) = s_r x(t_r)."""
    g = torch.Generator().manual_seed(7)
    data = torch.randn(8, 2, generator=g, dtype=torch.float64)
    x0 = torch.randn(25, 2, generator=g, dtype=torch.float64)
    old, new = CondOTScheduler(), CosineScheduler()
    field = _exact_field(data, old)
    change = ScheduleChange(field, old, new)
    changed = solve_ode(change, x0, steps=100, method="rk4", t1=0.9)
    t_r, s_r, _, _ = change.time_and_scale(0.9, x0)
    assert abs(t_r.item() - 0.9) > 0.03 and abs(s_r.item() - 1) > 0.1  # a real change of time and scale
    original = solve_ode(field, x0, steps=100, method="rk4", t1=t_r.item())
    torch.testing.assert_close(changed.x, s_r * original.x, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "make, error, words",
    [
        (lambda: ScheduleChange(lambda x, t: x, CondOTScheduler(), "cosine"), TypeError, "new must be"),
        (lambda: ScheduleChange(None, CondOTScheduler(), CosineScheduler()), TypeError, "velocity must be callable"),
        (
            lambda: ScheduleChange(lambda x, t: x, VPScheduler(), CondOTScheduler())(torch.zeros(2, 2), 0.0),
            ValueError,
            "angle must lie",
        ),
        (
            lambda: ScheduleChange(lambda x, t: x, PolynomialScheduler(2), CondOTScheduler())(torch.zeros(2, 2), 0.0),
            ValueError,
            "old must have D",
        ),
        (
            lambda: ScheduleChange(lambda x, t: x, CondOTScheduler(), CosineScheduler())(torch.zeros(2, 2), 1.5),
            ValueError,
            "r must lie in [0, 1]",
        ),
    ],
)
def test_schedule_change_bad_input(make, error, words):
    with pytest.raises(error) as info:
        make()
    assert words in str(info.value)


# ---------------------------------------------------------------- bad input of the conversions
X = torch.zeros(4, 2)


@pytest.mark.parametrize(
    "make, error, words",
    [
        (lambda: convert(X, "noise", "velocity", X, 0.5, CondOTScheduler()), ValueError, "source must be one of"),
        (lambda: convert(X, "velocity", "u", X, 0.5, CondOTScheduler()), ValueError, "target must be one of"),
        (lambda: convert(X, "velocity", "velocity", X, 0.5, CondOTScheduler()(0.5)), TypeError, "scheduler must be"),
        (lambda: convert(X, "x1", "x0", X, 0.5, None), TypeError, "scheduler must be"),
        (lambda: convert(X, "x1", "x0", X, 0.5, CondOTScheduler(), clamp="yes"), TypeError, "clamp must be a bool"),
        (lambda: convert(torch.zeros(4, 3), "x1", "x0", X, 0.5, CondOTScheduler()), ValueError, "same shape"),
        (lambda: convert(X, "x1", "x0", X, 1.5, CondOTScheduler()), ValueError, "t must lie in [0, 1]"),
        (
            lambda: convert(X, "x1", "x0", X, torch.rand(3), CondOTScheduler()),
            ValueError,
            "t must be a float or have shape (4,)",
        ),
        (
            lambda: convert(X.long(), "x1", "x0", X, 0.5, CondOTScheduler()),
            TypeError,
            "prediction must be a floating-point",
        ),
        (lambda: endpoints_from(X, 3, X, 0.5, CondOTScheduler()), ValueError, "parameterization must be one of"),
        (
            lambda: endpoints_from(X, "x0", torch.zeros(4), 0.5, CondOTScheduler()),
            ValueError,
            "x_t must have shape (batch, ...)",
        ),
        (lambda: velocity_coefficients(0.5, "eps", CondOTScheduler()), ValueError, "parameterization must be one of"),
        (lambda: velocity_coefficients(0.5, "x1", "condot"), TypeError, "scheduler must be"),
    ],
)
def test_bad_input_raises_a_clear_error(make, error, words):
    with pytest.raises(error) as info:
        make()
    assert words in str(info.value)

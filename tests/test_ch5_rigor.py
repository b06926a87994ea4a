"""Chapter 5, checked at the edges: the floors of fmbook.paths act only at exact zeros, and the
coefficients of every parameterization have the limits the chapter's table states."""

import math

import pytest
import torch

from fmbook import ddpm, paths

DTYPES = [torch.float32, torch.float64]
BOOK_SCHEDULERS = [
    paths.CondOTScheduler(),
    paths.PolynomialScheduler(2.0),
    paths.CosineScheduler(),
    paths.VPScheduler(),
    paths.VEScheduler(),
    paths.OTScheduler(0.1),
    ddpm.DiscreteVPScheduler(ddpm.linear_schedule(1000)),
    ddpm.DiscreteVPScheduler(ddpm.cosine_schedule(1000)),
]


def _points(n, dtype, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(n, 2, generator=g, dtype=torch.float64)).to(dtype)


# ---------------------------------------------------------------- the floor is dtype-dependent
def test_edge_floor_is_a_power_of_the_smallest_normal_number():
    for dtype in DTYPES:
        assert paths.edge_floor(dtype) == pytest.approx(torch.finfo(dtype).tiny ** 0.25, rel=1e-12)
        # far below the smallest nonzero 1 - t of the dtype, so it never touches sigma_t = 1 - t > 0
        one = torch.tensor(1.0, dtype=dtype)
        assert paths.edge_floor(dtype) < 1e-2 * (1 - one.nextafter(torch.zeros_like(one))).item()
    with pytest.raises(TypeError, match="dtype"):
        paths.edge_floor(torch.int64)


# ---------------------------------------------------------------- exact near the data end
@pytest.mark.parametrize("gap", [1e-5, 1e-7, 1e-9])
def test_condot_conditional_velocity_is_exact_close_to_the_data_end_in_float64(gap):
    t = 1 - gap
    x0, x1 = _points(64, torch.float64, 0), _points(64, torch.float64, 1)
    x = t * x1 + (1 - t) * x0
    u = paths.conditional_velocity(x, x1, t, paths.CondOTScheduler())
    rel = ((u - (x1 - x0)).norm(dim=1) / (x1 - x0).norm(dim=1)).max().item()
    # the cancellation in x - t x1 costs eps |x| / (1 - t); nothing else is lost
    assert rel < 1e-14 / gap
    # negative control: the former floor sigma_t >= 1e-4 gets it 80-100 percent wrong
    a, s, da, ds = (c[:, None] for c in paths.CondOTScheduler()(torch.full((64,), t, dtype=torch.float64)))
    old = da * x1 + ds / s.clamp_min(1e-4) * (x - a * x1)
    old_rel = ((old - (x1 - x0)).norm(dim=1) / (x1 - x0).norm(dim=1)).mean().item()
    assert old_rel > 0.8


@pytest.mark.parametrize("dtype", DTYPES)
def test_fields_match_a_float64_evaluation_of_the_same_inputs_at_the_last_time_below_one(dtype):
    """Off the path, at t = 1 - ulp: the result in ``dtype`` is the float64 value of the same inputs."""
    one = torch.tensor(1.0, dtype=dtype)
    t = one.nextafter(torch.tensor(0.0, dtype=dtype)).item()  # 1 - 2^-24 or 1 - 2^-53
    x, x1 = _points(32, dtype, 2), _points(32, dtype, 3)
    sch = paths.CondOTScheduler()
    got = paths.conditional_velocity(x, x1, t, sch).double()
    exact = (x1.double() - x.double()) / (1 - t)  # CondOT: (x1 - x) / (1 - t)
    assert ((got - exact).norm(dim=1) / exact.norm(dim=1)).max().item() < 10 * torch.finfo(dtype).eps
    got_x1 = paths.velocity_from_x1(x1, x, t, sch).double()
    assert ((got_x1 - exact).norm(dim=1) / exact.norm(dim=1)).max().item() < 10 * torch.finfo(dtype).eps
    assert paths.snr(sch, torch.tensor([t], dtype=dtype)).item() == pytest.approx(t**2 / (1 - t) ** 2, rel=1e-5)


@pytest.mark.parametrize("gap", [1e-5, 1e-6])
def test_exact_marginal_fields_are_exact_close_to_the_data_end(gap):
    t = 1 - gap
    z = _points(20, torch.float64, 4, 2.0)
    g = torch.Generator().manual_seed(5)
    idx = torch.randint(0, 20, (40,), generator=g)
    x = t * z[idx] + (1 - t) * torch.randn(40, 2, generator=g, dtype=torch.float64)
    sch = paths.CondOTScheduler()
    # the posterior, by hand: a softmax of -|x - t z_i|^2 / (2 (1 - t)^2)
    logw = -((x[:, None, :] - t * z[None]) ** 2).sum(-1) / (2 * gap**2)
    x1_hat = torch.softmax(logw, dim=1) @ z
    u = (x1_hat - x) / gap
    score = -(x - t * x1_hat) / gap**2
    torch.testing.assert_close(paths.marginal_velocity(x, t, z, sch), u, rtol=1e-8, atol=1e-8)
    scale = score.abs().max().item()
    torch.testing.assert_close(paths.marginal_score(x, t, z, sch), score, rtol=1e-8, atol=1e-8 * scale)
    log_p = torch.logsumexp(logw, dim=1) - math.log(20) - math.log(2 * math.pi) - 2 * math.log(gap)
    torch.testing.assert_close(paths.marginal_log_density(x, t, z, sch), log_p, rtol=1e-10, atol=1e-8)


def test_vp_sigma_derivative_is_exact_at_every_time_below_one():
    vp = paths.VPScheduler()
    for gap in (1e-8, 1e-12, 2.0**-53):
        t = torch.tensor([1 - gap], dtype=torch.float64)
        a, s, da, ds = (c.item() for c in vp(t))
        g = 1 - t.item()
        big_t = 0.1 * g + 0.5 * 19.9 * g * g
        assert s == pytest.approx(math.sqrt(-math.expm1(-big_t)), rel=1e-12)
        assert ds == pytest.approx(-a * da / s, rel=1e-12)
        assert abs(ds) > 1e3  # the former floor would have capped it at about 500


@pytest.mark.parametrize("dtype", DTYPES)
def test_probability_flow_velocity_uses_the_small_alpha_of_a_ddpm_schedule_exactly(dtype):
    sch = ddpm.DiscreteVPScheduler(ddpm.cosine_schedule(1000))
    x, eps = _points(16, dtype, 6), _points(16, dtype, 7)
    t = torch.zeros(16, dtype=dtype)
    v = ddpm.probability_flow_velocity(lambda x_, t_: eps, sch)(x, t)
    a, s, da, ds = (c.double().item() for c in sch(torch.tensor([0.0], dtype=torch.float64)))
    assert 4e-5 < a < 6e-5  # alpha_0 > 0, far below the former floor 1e-4
    exact = da / a * x.double() + (ds - s * da / a) * eps.double()
    rel = ((v.double() - exact).norm(dim=1) / exact.norm(dim=1)).max().item()
    assert rel < 1e-5
    # negative control: flooring alpha at 1e-4 gives about half the velocity
    old = da / 1e-4 * x.double() + (ds - s * da / 1e-4) * eps.double()
    ratio = (old.norm(dim=1) / exact.norm(dim=1)).mean().item()
    assert 0.4 < ratio < 0.6


# ---------------------------------------------------------------- finite at both ends, off the path too
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scheduler", BOOK_SCHEDULERS, ids=lambda s: repr(s)[:30])
def test_fields_are_finite_at_both_ends(scheduler, dtype):
    t = torch.tensor([0.0, 1.0, 1e-30, 1e-12], dtype=dtype)
    t = torch.cat([t, 1 - torch.logspace(-7 if dtype == torch.float32 else -15, -1, 8, dtype=dtype)])
    x, x1 = _points(t.shape[0], dtype, 8, 10.0), _points(t.shape[0], dtype, 9, 3.0)
    z = _points(30, dtype, 10, 2.0)
    outs = [
        paths.conditional_velocity(x, x1, t, scheduler),
        paths.velocity_from_x1(x1, x, t, scheduler),
        paths.marginal_velocity(x, t, z, scheduler),
        paths.marginal_score(x, t, z, scheduler),
        paths.marginal_log_density(x, t, z, scheduler),
        paths.snr(scheduler, t),
        paths.velocity_from_score(x1, x, t, scheduler, clamp=True),
        paths.score_from_velocity(x1, x, t, scheduler, clamp=True),
    ]
    for p in paths.PARAMETERIZATIONS:
        outs.extend(paths.velocity_coefficients(scheduler, t, p, clamp=True))
        outs.append(paths.convert(x1, p, "velocity", x, t, scheduler, clamp=True))
        outs.append(paths.convert(x1, "velocity", p, x, t, scheduler, clamp=True))
    for out in outs:
        assert out.dtype == dtype and bool(torch.isfinite(out).all())

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
    assert paths.snr(torch.tensor([t], dtype=dtype), sch).item() == pytest.approx(t**2 / (1 - t) ** 2, rel=1e-5)


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
        paths.velocity_from_x1(x1, x, t, scheduler, clamp=True),
        paths.marginal_velocity(x, t, z, scheduler),
        paths.marginal_score(x, t, z, scheduler),
        paths.marginal_log_density(x, t, z, scheduler),
        paths.snr(t, scheduler),
        paths.velocity_from_score(x1, x, t, scheduler, clamp=True),
        paths.score_from_velocity(x1, x, t, scheduler, clamp=True),
    ]
    for p in paths.PARAMETERIZATIONS:
        outs.extend(paths.velocity_coefficients(t, p, scheduler, clamp=True))
        outs.append(paths.convert(x1, p, "velocity", x, t, scheduler, clamp=True))
        outs.append(paths.convert(x1, "velocity", p, x, t, scheduler, clamp=True))
    for out in outs:
        assert out.dtype == dtype and bool(torch.isfinite(out).all())


# ---------------------------------------------------------------- the chapter's table of coefficients
# u = a_t x + b_t f for a prediction f. Each entry is a leading law c * g^(-p) in the distance g to the
# end (g = t at the noise end, g = 1 - t at the data end); p = 0 is a finite limit c.
H = math.pi / 2
B_MIN, B_MAX = 0.1, 20.0
VP_A0 = math.exp(-0.5 * (B_MIN + 0.5 * (B_MAX - B_MIN)))  # alpha_0 of the VP path, about 0.0066
VP_S0 = math.sqrt(1 - VP_A0**2)
TABLE = {
    # (path, parameterization): ((a at 0, b at 0), (a at 1, b at 1)), each (c, p)
    ("CondOT", "velocity"): (((0, 0), (1, 0)), ((0, 0), (1, 0))),
    ("CondOT", "x1"): (((-1, 0), (1, 0)), ((-1, 1), (1, 1))),
    ("CondOT", "epsilon"): (((1, 1), (-1, 1)), ((1, 0), (-1, 0))),
    ("CondOT", "score"): (((1, 1), (1, 1)), ((1, 0), (0, 0))),
    ("CondOT", "v"): (((-1, 0), (-1, 0)), ((1, 0), (-1, 0))),
    ("cosine", "velocity"): (((0, 0), (1, 0)), ((0, 0), (1, 0))),
    ("cosine", "x1"): (((0, 0), (H, 0)), ((-1, 1), (1, 1))),
    ("cosine", "epsilon"): (((1, 1), (-1, 1)), ((0, 0), (-H, 0))),
    ("cosine", "score"): (((1, 1), (1, 1)), ((0, 0), (0, 0))),
    ("cosine", "v"): (((0, 0), (-H, 0)), ((0, 0), (-H, 0))),
    ("VP", "velocity"): (((0, 0), (1, 0)), ((0, 0), (1, 0))),
    ("VP", "x1"): (((-B_MAX / 2 * VP_A0**2 / VP_S0**2, 0), (B_MAX / 2 * VP_A0 / VP_S0**2, 0)), ((-0.5, 1), (0.5, 1))),
    ("VP", "epsilon"): (((B_MAX / 2, 0), (-B_MAX / 2 / VP_S0, 0)), ((B_MIN / 2, 0), (-0.5 * math.sqrt(B_MIN), 0.5))),
    ("VP", "score"): (((B_MAX / 2, 0), (B_MAX / 2, 0)), ((B_MIN / 2, 0), (B_MIN / 2, 0))),
    ("VP", "v"): (((0, 0), (-B_MAX / 2 * VP_A0 / VP_S0, 0)), ((0, 0), (-0.5 * math.sqrt(B_MIN), 0.5))),
}
TABLE_SCHEDULERS = {"CondOT": paths.CondOTScheduler(), "cosine": paths.CosineScheduler(),
                    "VP": paths.VPScheduler(B_MIN, B_MAX)}


def _closed_form(path, t):
    """(alpha, sigma, alpha', sigma') written out by hand, in float64."""
    if path == "CondOT":
        return t, 1 - t, 1.0, -1.0
    if path == "cosine":
        return math.sin(H * t), math.sin(H * (1 - t)), H * math.cos(H * t), -H * math.sin(H * t)
    g = 1 - t
    big_t = B_MIN * g + 0.5 * (B_MAX - B_MIN) * g * g
    a = math.exp(-0.5 * big_t)
    s = math.sqrt(-math.expm1(-big_t))
    da = 0.5 * (B_MIN + (B_MAX - B_MIN) * g) * a
    return a, s, da, -a * da / s


def _hand_coefficients(path, p, t):
    """The coefficients of u = a x + b f from x = alpha x1 + sigma x0, u = alpha' x1 + sigma' x0, by hand."""
    a, s, da, ds = _closed_form(path, t)
    if p == "velocity":
        return 0.0, 1.0
    if p == "x1":  # x0 = (x - a x1) / s
        return ds / s, da - a * ds / s
    if p == "epsilon":  # x1 = (x - s x0) / a
        return da / a, ds - s * da / a
    if p == "score":  # x0 = -s * score
        return da / a, -s * (ds - s * da / a)
    # v = a x0 - s x1 and x = a x1 + s x0: solve the 2 x 2 system
    m = torch.tensor([[a, s], [-s, a]], dtype=torch.float64)  # rows: x, v in terms of (x1, x0)
    inv = torch.linalg.inv(m)  # (x1, x0) in terms of (x, v)
    coef = torch.tensor([da, ds], dtype=torch.float64) @ inv
    return coef[0].item(), coef[1].item()


def _law_holds(value, law, g):
    c, p = law
    if p == 0:
        return abs(value - c) <= 1e-3 * abs(c) + 1e-5
    return abs(value * g**p / c - 1) < 1e-3


@pytest.mark.parametrize("entry", list(TABLE), ids=lambda e: f"{e[0]}-{e[1]}")
def test_coefficient_table_of_the_chapter(entry):
    path, p = entry
    sch = TABLE_SCHEDULERS[path]
    for end, g in ((0, 1e-6), (1, 1e-6)):
        t = g if end == 0 else 1 - g
        a, b = (c.item() for c in paths.velocity_coefficients(torch.tensor([t], dtype=torch.float64), p, sch))
        ha, hb = _hand_coefficients(path, p, t)
        assert a == pytest.approx(ha, rel=1e-7, abs=1e-9) and b == pytest.approx(hb, rel=1e-7, abs=1e-9)
        law_a, law_b = TABLE[entry][end]
        assert _law_holds(a, law_a, g), (entry, end, a, law_a)
        assert _law_holds(b, law_b, g), (entry, end, b, law_b)
        # negative control: a law 20 percent off, or with the wrong power, fails the same check
        for c, q in (law_a, law_b):
            wrong = (1.2 * c if c else 0.2, q) if q == 0 else (c, q + 0.5)
            value = a if (c, q) == law_a else b
            assert not _law_holds(value, wrong, g)


def test_v_prediction_on_the_cosine_path_is_the_velocity_times_minus_two_over_pi():
    g = torch.Generator().manual_seed(11)
    x0, x1 = torch.randn(50, 2, generator=g, dtype=torch.float64), torch.randn(50, 2, generator=g, dtype=torch.float64)
    t = torch.rand(50, generator=g, dtype=torch.float64)
    sch = paths.CosineScheduler()
    sample = paths.AffinePath(sch).sample(x0, x1, t)
    a, s = (c[:, None] for c in sch(t)[:2])
    v = a * x0 - s * x1  # Salimans and Ho: v = alpha eps - sigma x, in the book's letters
    torch.testing.assert_close(v, -2 / math.pi * sample.dx_t, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(paths.convert(sample.dx_t, "velocity", "v", sample.x_t, t, sch), v)
    assert not torch.allclose(v, 2 / math.pi * sample.dx_t)  # the sign matters


def test_noise_prediction_at_zero_snr_carries_no_information_about_the_data():
    """At alpha_t = 0, E[X0 | X_t = x] = x for every data set, while the velocity depends on E[X1]."""
    g = torch.Generator().manual_seed(12)
    z = torch.randn(25, 2, generator=g, dtype=torch.float64)
    x = torch.randn(40, 2, generator=g, dtype=torch.float64)
    sch = paths.CondOTScheduler()
    shift = torch.tensor([1.0, 0.0], dtype=torch.float64)
    for t, informative in ((0.0, False), (0.05, True)):
        u_a = paths.marginal_velocity(x, t, z, sch)
        u_b = paths.marginal_velocity(x, t, z + shift, sch)
        eps_a = paths.convert(u_a, "velocity", "epsilon", x, t, sch)
        eps_b = paths.convert(u_b, "velocity", "epsilon", x, t, sch)
        if not informative:
            torch.testing.assert_close(eps_a, x, rtol=0, atol=1e-12)
            torch.testing.assert_close(eps_b, x, rtol=0, atol=1e-12)
            torch.testing.assert_close(u_b - u_a, shift.expand_as(x), rtol=0, atol=1e-12)  # u_0 = E[X1] - x
        else:
            assert (eps_a - eps_b).norm(dim=1).min().item() > 1e-3


@pytest.mark.parametrize("entry", list(TABLE), ids=lambda e: f"{e[0]}-{e[1]}")
def test_coefficient_limits_reproduces_the_table(entry):
    path, p = entry
    for end in (0, 1):
        got = paths.coefficient_limits(p, end, TABLE_SCHEDULERS[path])
        for law, (c, q) in zip(got, TABLE[entry][end]):
            assert law.p == q, (entry, end, law)
            assert law.c == pytest.approx(c, rel=1e-3, abs=1e-5), (entry, end, law)


def test_coefficient_limits_rejects_a_bad_end():
    with pytest.raises(ValueError, match="end must be 0"):
        paths.coefficient_limits("x1", 2, paths.CondOTScheduler())


# ---------------------------------------------------------------- VE: Song's kernel, and the book's approximation
def test_ve_sde_kernel_matches_a_simulation_of_the_ve_sde():
    """Euler-Maruyama for dx = sqrt(d sigma^2 / ds) dW from s = 0: Var x(s) = sigma^2(s) - sigma_min^2."""
    ve = paths.VEScheduler(0.01, 10.0)
    n, steps, s_end = 40_000, 200, 0.1
    g = torch.Generator().manual_seed(13)
    x = torch.zeros(n, dtype=torch.float64)
    h = s_end / steps
    lam = math.log(ve.sigma_max / ve.sigma_min)
    for k in range(steps):
        s_mid = (k + 0.5) * h
        rate = 2 * lam * (ve.sigma_min * math.exp(lam * s_mid)) ** 2  # d sigma^2 / ds at the midpoint
        x += math.sqrt(rate * h) * torch.randn(n, generator=g, dtype=torch.float64)
    var = x.var().item()
    se = var * math.sqrt(2 / (n - 1))
    song = ve.sde_kernel_std(1 - s_end).item() ** 2
    book = ve(1 - s_end).sigma_t.item() ** 2
    assert abs(var - song) < 4 * se + 1e-3 * song
    assert abs(var - book) > 10 * se  # the path's sigma_t^2 is the approximation
    assert ve.sde_kernel_std(1.0).item() == 0 and ve(1.0).sigma_t.item() == pytest.approx(0.01)


# ---------------------------------------------------------------- VP: the target diverges at the data end
def test_target_second_moment_matches_monte_carlo():
    g = torch.Generator().manual_seed(14)
    x1 = 1.5 * torch.randn(200_000, 2, generator=g, dtype=torch.float64) + 0.3
    x0 = torch.randn(200_000, 2, generator=g, dtype=torch.float64)
    m2 = (x1**2).sum(1).mean().item()
    vp = paths.VPScheduler()
    for t in (0.3, 0.99, 1 - 1e-5):
        target = paths.AffinePath(vp).sample(x0, x1, t).dx_t
        sq = (target**2).sum(1)
        mc, se = sq.mean().item(), sq.std().item() / math.sqrt(sq.shape[0])
        exact = paths.target_second_moment(t, m2, 2, vp).item()
        assert abs(mc - exact) < 4 * se
        assert abs(mc - 1.2 * exact) > 4 * se  # negative control: 20 percent more fails


def test_vp_target_grows_like_beta_min_d_over_four_one_minus_t():
    vp, d = paths.VPScheduler(0.1, 20.0), 2
    gaps = torch.tensor([1e-4, 1e-5, 1e-6, 1e-7], dtype=torch.float64)
    moment = paths.target_second_moment(1 - gaps, 1.0, d, vp)
    ratio = moment * 4 * gaps / (0.1 * d)
    assert bool(((ratio - 1).abs() < 400 * gaps).all()), ratio  # relative corrections O((beta_max / beta_min) g)
    # the loss up to 1 - delta grows like (beta_min d / 4) log(1 / delta): not integrable
    def integral(delta, n=200_001):
        u = torch.linspace(0, 1, n, dtype=torch.float64)
        t = 1 - delta ** u  # log-spaced towards the data end: dt = -log(delta) delta^u du
        f = paths.target_second_moment(t, 1.0, d, vp) * (-math.log(delta)) * delta**u
        return (torch.trapezoid(f, u) + 0).item()  # over t in [0, 1 - delta]
    growth = (integral(1e-8) - integral(1e-6)) / math.log(100)
    assert growth == pytest.approx(0.1 * d / 4, rel=0.02)
    cond = paths.CondOTScheduler()  # negative control: CondOT's target is bounded, the same growth is 0
    assert paths.target_second_moment(1 - gaps, 1.0, d, cond).max().item() == pytest.approx(1.0 + d)

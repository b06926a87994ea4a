"""Tests of fmbook.ddpm: schedules, closed-form noising, the map to continuous time, samplers."""

import math

import pytest
import torch

from fmbook import ddpm, paths

pytestmark = pytest.mark.usefixtures("float64_by_default")


def gaussian_eps_model(mean: torch.Tensor, var: float, scheduler):
    """The exact noise predictor E[eps | x_t] for data N(mean, var I) on a VP path.

    x_t = alpha x1 + sigma eps with x1 ~ N(mean, var I): (x_t, eps) jointly Gaussian, so
    E[eps | x_t] = sigma (x_t - alpha mean) / (alpha^2 var + sigma^2).
    """

    def model(x, t):
        a, s, _, _ = scheduler(t)
        a, s = a[:, None], s[:, None]
        return s * (x - a * mean) / (a * a * var + s * s)

    return model


# ------------------------------------------------------------------ schedules


def test_linear_schedule_values():
    sch = ddpm.linear_schedule(1000)
    assert sch.T == 1000
    assert sch.betas[0].item() == pytest.approx(1e-4) and sch.betas[-1].item() == pytest.approx(0.02)
    ab = sch.alpha_bar
    assert ab.shape == (1001,) and ab[0] == 1
    manual = torch.cumprod(1 - sch.betas, 0)
    torch.testing.assert_close(ab[1:], manual, rtol=1e-12, atol=0)
    torch.testing.assert_close(sch.log_alpha_bar.exp(), ab, rtol=1e-10, atol=1e-14)
    # Ho et al. (2020): alpha-bar_T of the linear schedule is about 4e-5, almost pure noise.
    assert 1e-5 < ab[-1].item() < 1e-4


def test_cosine_schedule_follows_its_definition():
    T, s = 100, 0.008
    sch = ddpm.cosine_schedule(T, s=s)
    k = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos((k / T + s) / (1 + s) * math.pi / 2) ** 2
    # Unclipped steps reproduce f(k)/f(0); only the last beta is clipped at 0.999.
    torch.testing.assert_close(sch.alpha_bar[:-1], (f / f[0])[:-1], rtol=1e-10, atol=1e-12)
    assert sch.betas[-1].item() == pytest.approx(0.999)
    assert bool((sch.betas > 0).all()) and bool((sch.betas < 1).all())


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: ddpm.linear_schedule(0), "T"),
        (lambda: ddpm.linear_schedule(10, beta_start=0.0), "beta_start"),
        (lambda: ddpm.linear_schedule(10, beta_end=1.0), "beta_end"),
        (lambda: ddpm.cosine_schedule(0), "T"),
        (lambda: ddpm.cosine_schedule(10, max_beta=1.5), "max_beta"),
        (lambda: ddpm.DDPMSchedule(torch.tensor([0.1, 1.0])), "betas"),
        (lambda: ddpm.DDPMSchedule(torch.tensor([0.0, 0.5])), "betas"),
        (lambda: ddpm.DDPMSchedule(torch.tensor([-0.1])), "betas"),
        (lambda: ddpm.DDPMSchedule(torch.zeros(0)), "betas"),
        (lambda: ddpm.DDPMSchedule(torch.tensor([[0.1]])), "betas"),
    ],
)
def test_bad_schedules(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


# ------------------------------------------------------------------ forward noising


def test_one_step_of_the_chain_is_the_closed_form():
    sch = ddpm.linear_schedule(50)
    x = torch.randn(7, 3)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    chain = ddpm.forward_chain(x, sch, generator=g1, keep=[1])
    eps = torch.randn(x.shape, generator=g2)
    torch.testing.assert_close(chain[1], ddpm.q_sample(x, torch.ones(7, dtype=torch.long), sch, eps))


@pytest.mark.parametrize("k", [1, 10, 60, 200])
def test_closed_form_matches_iterating_the_chain(k):
    """Monte Carlo: mean and variance of x_k from the chain vs sqrt(ab) x and 1 - ab (4 standard errors)."""
    sch = ddpm.linear_schedule(200)
    n = 40_000
    x = torch.tensor([[1.5, -2.0]]).expand(n, 2)
    chain = ddpm.forward_chain(x, sch, generator=torch.Generator().manual_seed(0), keep=[k])[k]
    closed = ddpm.q_sample(x, torch.full((n,), k), sch, torch.randn(n, 2, generator=torch.Generator().manual_seed(1)))
    ab = sch.alpha_bar[k].item()
    for sample in (chain, closed):
        se_mean = math.sqrt((1 - ab) / n)
        assert (sample.mean(0) - math.sqrt(ab) * x[0]).abs().max().item() < 4 * se_mean + 1e-12
        se_var = (1 - ab) * math.sqrt(2 / n)
        assert (sample.var(0) - (1 - ab)).abs().max().item() < 4 * se_var + 1e-12


def test_q_sample_bad_input():
    sch = ddpm.linear_schedule(10)
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match="k"):
        ddpm.q_sample(x, torch.full((4,), 11), sch, torch.randn(4, 2))
    with pytest.raises(TypeError, match="k"):
        ddpm.q_sample(x, torch.full((4,), 1.0), sch, torch.randn(4, 2))
    with pytest.raises(ValueError, match="noise"):
        ddpm.q_sample(x, torch.full((4,), 1), sch, torch.randn(4, 3))
    with pytest.raises(ValueError, match="k"):
        ddpm.q_sample(x, torch.full((3,), 1), sch, torch.randn(4, 2))
    with pytest.raises(ValueError, match="keep"):
        ddpm.forward_chain(x, sch, keep=[11])


# ------------------------------------------------------------------ the map to the book's time


def test_time_map_round_trip():
    T = 1000
    k = torch.arange(T + 1)
    t = ddpm.step_to_time(k, T)
    assert t[0] == 1 and t[-1] == 0  # data (k = 0) is the book's t = 1, noise (k = T) its t = 0
    assert torch.equal(ddpm.time_to_step(t, T), k)
    with pytest.raises(ValueError, match="k"):
        ddpm.step_to_time(torch.tensor([T + 1]), T)
    with pytest.raises(ValueError, match="t"):
        ddpm.time_to_step(torch.tensor([1.5]), T)


@pytest.mark.parametrize("make", [lambda: ddpm.linear_schedule(1000), lambda: ddpm.cosine_schedule(100)])
def test_discrete_vp_reproduces_alpha_bar(make):
    sch = make()
    vp = ddpm.DiscreteVPScheduler(sch)
    k = torch.arange(sch.T + 1)
    a, s, _, _ = vp(ddpm.step_to_time(k, sch.T))
    torch.testing.assert_close(a**2, sch.alpha_bar, rtol=1e-9, atol=1e-14)
    torch.testing.assert_close(s**2, 1 - sch.alpha_bar, rtol=1e-9, atol=1e-14)
    assert a[0] == 1 and s[0] == 0  # the data end t = 1


def test_discrete_vp_derivatives_by_finite_differences():
    sch = ddpm.linear_schedule(20)
    vp = ddpm.DiscreteVPScheduler(sch)
    # times strictly inside the intervals between steps, where the path is smooth
    t = (torch.arange(20, dtype=torch.float64) + 0.37) / 20
    t = t[t < 0.95]
    h = 1e-6
    a_p, s_p, _, _ = vp(t + h)
    a_m, s_m, _, _ = vp(t - h)
    _, _, da, ds = vp(t)
    torch.testing.assert_close(da, (a_p - a_m) / (2 * h), rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(ds, (s_p - s_m) / (2 * h), rtol=1e-6, atol=1e-8)


def test_linear_schedule_maps_onto_the_continuous_vp_path():
    """T beta_k samples beta(s) = 0.1 + 19.9 s: the DDPM schedule of Ho et al. is the book's
    VPScheduler(0.1, 20) up to a discretisation error of order 1/T. The largest relative gap,
    3.3 % at the noise end, is the second-order term of log(1 - beta) = -beta - beta^2 / 2 - ...:
    sum_k beta_k^2 / 4 = 0.033 in log(alpha)."""
    vp_disc = ddpm.DiscreteVPScheduler(ddpm.linear_schedule(1000))
    vp_cont = paths.VPScheduler(0.1, 20.0)
    t = torch.linspace(0, 1, 2001)
    a1, s1, _, _ = vp_disc(t)
    a2, s2, _, _ = vp_cont(t)
    assert (a1 - a2).abs().max().item() < 2e-3
    assert (s1 - s2).abs().max().item() < 2e-3
    rel = ((a1 - a2).abs() / a2).max().item()  # relative, including the noise end
    second_order = (ddpm.linear_schedule(1000).betas ** 2).sum().item() / 4
    assert rel < 1.1 * second_order < 0.04


def test_discrete_vp_is_finite_on_the_whole_interval():
    vp = ddpm.DiscreteVPScheduler(ddpm.cosine_schedule(100))
    out = vp(torch.linspace(0, 1, 1001))
    assert all(bool(torch.isfinite(c).all()) for c in out)
    with pytest.raises(TypeError, match="schedule"):
        ddpm.DiscreteVPScheduler("linear")


# ------------------------------------------------------------------ samplers with the exact noise predictor

MEAN = torch.tensor([1.0, -0.5])
VAR = 0.25


@pytest.mark.parametrize("sampler", ["ancestral", "ancestral-posterior", "ddim", "ddim-eta1", "flow"])
def test_samplers_reach_a_gaussian_target(sampler):
    """With the exact noise predictor of N(MEAN, VAR I), every sampler returns that Gaussian
    (mean within 0.03, variance within 8 %, n = 20000)."""
    from fmbook import solvers

    sch = ddpm.linear_schedule(200, 5e-4, 0.1)  # Ho et al.'s schedule on 200 steps: alpha-bar_T = 4e-5
    vp = ddpm.DiscreteVPScheduler(sch)
    model = gaussian_eps_model(MEAN, VAR, vp)
    g = torch.Generator().manual_seed(0)
    x_T = torch.randn(20_000, 2, generator=g)
    if sampler.startswith("ancestral"):
        variance = "posterior" if "posterior" in sampler else "beta"
        out = ddpm.ancestral_sample(model, x_T, sch, variance=variance, generator=g)
        assert out.nfe == 200
    elif sampler.startswith("ddim"):
        out = ddpm.ddim_sample(model, x_T, sch, steps=200, eta=1.0 if "eta1" in sampler else 0.0, generator=g)
        assert out.nfe == 200
    else:
        out = solvers.solve_ode(ddpm.probability_flow_velocity(model, vp), x_T, steps=50, method="midpoint")
        assert out.nfe == 100
    x = out.x
    assert (x.mean(0) - MEAN).abs().max().item() < 0.03
    assert ((x.var(0) / VAR) - 1).abs().max().item() < 0.08


def test_ddim_variance_error_shrinks_with_the_number_of_steps():
    """Few DDIM steps shrink a narrow target (the last step is a long Euler step); the error
    falls as the steps increase."""
    sch = ddpm.linear_schedule(200, 5e-4, 0.1)
    model = gaussian_eps_model(MEAN, VAR, ddpm.DiscreteVPScheduler(sch))
    x_T = torch.randn(20_000, 2, generator=torch.Generator().manual_seed(0))
    errors = [abs(ddpm.ddim_sample(model, x_T, sch, steps=n).x.var(0).mean().item() - VAR) for n in (10, 50, 200)]
    assert errors[0] > errors[1] > errors[2]


def test_ddim_step_is_an_euler_step_in_scaled_variables():
    """Song et al. (2021), section 4.3: with xbar = x / alpha_t and tau = sigma_t / alpha_t, a
    deterministic DDIM step is xbar_j = xbar_k + (tau_j - tau_k) * eps_hat."""
    sch = ddpm.linear_schedule(100)
    x = torch.randn(6, 2)
    eps = torch.randn(6, 2)
    out = ddpm.ddim_sample(lambda x_, t_: eps, x, sch, steps=4)  # one step from k = 100 to k = 75 first
    ab = sch.alpha_bar
    k, j = 100, 75
    first = ddpm.ddim_sample(lambda x_, t_: eps, x, sch, steps=4, return_trajectory=True).trajectory[:, 1]
    tau = lambda i: math.sqrt((1 - ab[i].item()) / ab[i].item())
    expected = (x / math.sqrt(ab[k].item()) + (tau(j) - tau(k)) * eps) * math.sqrt(ab[j].item())
    torch.testing.assert_close(first, expected)
    assert out.nfe == 4


def test_ddim_eta_one_with_all_steps_is_ancestral_sampling_with_posterior_variance():
    sch = ddpm.linear_schedule(30)
    model = gaussian_eps_model(MEAN, VAR, ddpm.DiscreteVPScheduler(sch))
    x_T = torch.randn(100, 2)
    a = ddpm.ancestral_sample(model, x_T, sch, variance="posterior", generator=torch.Generator().manual_seed(5))
    b = ddpm.ddim_sample(model, x_T, sch, steps=30, eta=1.0, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a.x, b.x, rtol=1e-9, atol=1e-9)


def test_ddim_is_deterministic_and_returns_its_trajectory():
    sch = ddpm.linear_schedule(100)
    model = gaussian_eps_model(MEAN, VAR, ddpm.DiscreteVPScheduler(sch))
    x_T = torch.randn(10, 2)
    a = ddpm.ddim_sample(model, x_T, sch, steps=10, return_trajectory=True)
    b = ddpm.ddim_sample(model, x_T, sch, steps=10)
    assert torch.equal(a.x, b.x)
    assert a.trajectory.shape == (10, 11, 2) and torch.equal(a.trajectory[:, 0], x_T)
    assert ddpm.ddim_timesteps(100, 10) == list(range(100, -1, -10))


def test_probability_flow_velocity_is_the_marginal_velocity():
    """For a finite data set, the exact noise predictor -sigma_t * score gives, through the
    conversion, the exact marginal velocity of the same path."""
    data = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [0.0, -2.0]])
    vp = ddpm.DiscreteVPScheduler(ddpm.linear_schedule(100))
    x = torch.randn(50, 2)
    t = torch.rand(50) * 0.9 + 0.05

    def eps_model(x, t):
        return -vp(t).sigma_t[:, None] * paths.marginal_score(x, t, data, vp)

    u = ddpm.probability_flow_velocity(eps_model, vp)(x, t)
    torch.testing.assert_close(u, paths.marginal_velocity(x, t, data, vp), rtol=1e-8, atol=1e-8)


def test_sampler_bad_input():
    sch = ddpm.linear_schedule(10)
    model = gaussian_eps_model(MEAN, VAR, ddpm.DiscreteVPScheduler(sch))
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match="variance"):
        ddpm.ancestral_sample(model, x, sch, variance="big")
    with pytest.raises(ValueError, match="steps"):
        ddpm.ddim_sample(model, x, sch, steps=11)
    with pytest.raises(ValueError, match="eta"):
        ddpm.ddim_sample(model, x, sch, steps=5, eta=-1.0)
    with pytest.raises(ValueError, match="model"):
        ddpm.ddim_sample(lambda x, t: x[:, :1], x, sch, steps=5)
    with pytest.raises(TypeError, match="model"):
        ddpm.probability_flow_velocity(3, ddpm.DiscreteVPScheduler(sch))

"""Chapter 6: the forward SDE of a Gaussian path, its reversal, the probability-flow ODE, DDPM as
Euler-Maruyama, and the weighting identity between flow matching, score matching and noise prediction.

Every formula is checked against an independent computation (the moment ODEs of the forward SDE solved
numerically, Monte Carlo, the exact marginal fields of a finite data set, the DDPM update of
``fmbook.ddpm``), and each key check has a deliberately wrong variant that fails it.
"""

from __future__ import annotations

import math

import pytest
import torch

from fmbook import ddpm, losses, models, paths, solvers

SCHEDULERS = {
    "condot": (paths.CondOTScheduler(), 0.1),
    "cosine": (paths.CosineScheduler(), 0.1),
    "vp": (paths.VPScheduler(), 0.0),
    "ot": (paths.OTScheduler(1e-2), 0.1),
    "discrete_vp": (ddpm.DiscreteVPScheduler(ddpm.linear_schedule(1000)), 0.0),
}


def _moments_by_rk4(scheduler, s0: float, s1: float, m0: float, v0: float, scale_g2=1.0, sign_f=1.0,
                    steps: int = 4000):
    """Solve dm/ds = f m, dV/ds = 2 f V + g^2 by classical RK4 from s0 to s1 (float64), with f and g^2
    from forward_sde_coefficients (scaled for the negative controls). The stages at the ends of a step
    are taken just inside it, so that a schedule that is smooth between grid points (the DDPM one, with
    a grid aligned to its steps) is integrated with the full order."""
    h = (s1 - s0) / steps
    left = s0 + h * torch.arange(steps, dtype=torch.float64)
    stages = []
    for s in (left + 1e-9 * h, left + h / 2, left + h - 1e-9 * h):
        c = solvers.forward_sde_coefficients(scheduler, 1 - s)
        stages.append((sign_f * c.f).tolist() + [0.0])
        stages.append((scale_g2 * c.g2).tolist() + [0.0])
    fl, gl, fm, gm, fr, gr = stages
    m, v = m0, v0
    for i in range(steps):
        km1, kv1 = fl[i] * m, 2 * fl[i] * v + gl[i]
        km2, kv2 = fm[i] * (m + h / 2 * km1), 2 * fm[i] * (v + h / 2 * kv1) + gm[i]
        km3, kv3 = fm[i] * (m + h / 2 * km2), 2 * fm[i] * (v + h / 2 * kv2) + gm[i]
        km4, kv4 = fr[i] * (m + h * km3), 2 * fr[i] * (v + h * kv3) + gr[i]
        m += h / 6 * (km1 + 2 * km2 + 2 * km3 + km4)
        v += h / 6 * (kv1 + 2 * kv2 + 2 * kv3 + kv4)
    return m, v


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_forward_sde_reproduces_the_path_moments(name):
    """The linear SDE dx = f x ds + g dW started at s0 has mean alpha(s) and variance sigma(s)^2 at
    every s exactly when f and g^2 are those of forward_sde_coefficients: solve the moment ODEs with
    RK4 from s0 (t = 1 - s0) to s1 and compare with the scheduler. A 20% error in g^2 or a flipped f
    fails the same check."""
    scheduler, t_low = SCHEDULERS[name]
    s0, s1 = 0.0, 1 - t_low
    start = scheduler(torch.tensor([1 - s0], dtype=torch.float64))
    end = scheduler(torch.tensor([1 - s1], dtype=torch.float64))
    a0, v0 = start.alpha_t.item(), start.sigma_t.item() ** 2
    a1, v1 = end.alpha_t.item(), end.sigma_t.item() ** 2
    m, v = _moments_by_rk4(scheduler, s0, s1, a0, v0)
    assert abs(m / a1 - 1) < 1e-6 and abs(v / v1 - 1) < 1e-6
    _, v_bad = _moments_by_rk4(scheduler, s0, s1, a0, v0, scale_g2=1.2)
    assert abs(v_bad / v1 - 1) > 0.01
    m_bad, _ = _moments_by_rk4(scheduler, s0, s1, a0, v0, sign_f=-1.0)
    assert abs(m_bad / a1 - 1) > 0.1


def test_vp_forward_sde_is_song_et_al():
    """For the VP path f = -beta(s)/2 and g^2 = beta(s), beta(s) = beta_min + s (beta_max - beta_min)."""
    vp = paths.VPScheduler(0.1, 20.0)
    t = torch.linspace(0.0, 0.999, 101, dtype=torch.float64)
    beta = 0.1 + (1 - t) * 19.9
    c = solvers.forward_sde_coefficients(vp, t)
    assert torch.allclose(c.f, -beta / 2, rtol=1e-10) and torch.allclose(c.g2, beta, rtol=1e-8)
    g = solvers.forward_sde_diffusion(vp)(t)
    assert torch.allclose(g, beta.sqrt(), rtol=1e-8)


def test_forward_sde_by_monte_carlo():
    """Euler-Maruyama of the forward SDE of the VP path (in the diffusion time s, 500 steps) from a
    data point gives x_s ~ N(alpha(s) x1, sigma(s)^2 I) at s = 0.5: the mean and the variance agree
    within 4 standard errors plus 0.5% (the O(h) bias of the scheme is about 0.2%). The same
    simulation with g^2 halved misses the variance by more than 20 standard errors."""
    vp = paths.VPScheduler()
    n, s_end, steps = 20_000, 0.5, 500
    x1 = torch.tensor([[1.5, -0.5]], dtype=torch.float64).expand(n, 2).clone()
    drift = lambda x, s: solvers.forward_sde_coefficients(vp, 1 - s[:1]).f * x  # noqa: E731
    g = lambda s: solvers.forward_sde_diffusion(vp)(1 - s[:1])  # noqa: E731
    out = solvers.euler_maruyama(drift, x1, g, steps=steps, t1=s_end, generator=0).x
    ref = vp(torch.tensor([1 - s_end], dtype=torch.float64))
    a, var = ref.alpha_t.item(), ref.sigma_t.item() ** 2
    se_mean, se_var = math.sqrt(var / n), var * math.sqrt(2 / n)
    mean_err = (out.mean(0) - a * x1[0]).abs().max().item()
    var_err = (out.var(0) - var).abs().max().item()
    assert mean_err < 4 * se_mean + 5e-3 * a * 1.5
    assert var_err < 4 * se_var + 5e-3 * var
    g_bad = lambda s: g(s) / math.sqrt(2)  # noqa: E731
    bad = solvers.euler_maruyama(drift, x1, g_bad, steps=steps, t1=s_end, generator=0).x
    assert (bad.var(0) - var).abs().min().item() > 20 * se_var


@pytest.mark.parametrize("name", ["condot", "cosine", "vp"])
def test_probability_flow_drift_is_the_marginal_velocity(name):
    """-f x + g^2/2 score, with the exact score of a finite data set, is the exact marginal velocity
    (computed from the posterior mean, not from the score); the sign-flipped score term is not."""
    scheduler = SCHEDULERS[name][0]
    support = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x = 2 * torch.randn(300, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    t = 0.05 + 0.9 * torch.rand(300, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    score = lambda y, tt: paths.marginal_score(y, tt, support, scheduler)  # noqa: E731
    u = paths.marginal_velocity(x, t, support, scheduler)
    pf = solvers.probability_flow_drift(score, scheduler)(x, t)
    assert torch.allclose(pf, u, atol=1e-9, rtol=1e-9)
    c = solvers.forward_sde_coefficients(scheduler, t)
    wrong = -c.f[:, None] * x - 0.5 * c.g2[:, None] * score(x, t)
    assert (wrong - u).norm() > 0.1 * u.norm()
    # the reverse SDE's drift is eq. 6.1's drift with g_t = g(1 - t)
    reverse = solvers.reverse_sde_drift(score, scheduler)(x, t)
    extension = solvers.sde_drift(lambda y, tt: paths.marginal_velocity(y, tt, support, scheduler), score,
                                  solvers.forward_sde_diffusion(scheduler))(x, t)
    assert torch.allclose(reverse, extension, atol=1e-9, rtol=1e-9)


def test_reverse_sde_samples_gaussian_data():
    """Data N(m, c^2 I) on the VP path: p_t = N(alpha m, (alpha^2 c^2 + sigma^2) I) has a closed-form
    score. The reverse SDE from p_0, simulated by Euler-Maruyama with g_t = g(1 - t), ends at the data
    law (mean and variance within 4 standard errors plus the bias of 200 steps, about 0.5% and 1.5%). The drift with the
    probability-flow coefficient g^2/2 and the same noise (a wrong pairing) ends with too much variance."""
    vp = paths.VPScheduler()
    m, c2, n = torch.tensor([1.0, -2.0], dtype=torch.float64), 0.25, 20_000

    def score(x, t):
        a, s, _, _ = vp(t[:1])  # t is constant over the batch
        return -(x - a * m) / (a**2 * c2 + s**2)

    a0, s0, _, _ = vp(torch.zeros(1, dtype=torch.float64))
    gen = torch.Generator().manual_seed(3)
    x0 = a0 * m + (a0**2 * c2 + s0**2).sqrt() * torch.randn(n, 2, dtype=torch.float64, generator=gen)
    g = solvers.forward_sde_diffusion(vp)
    out = solvers.euler_maruyama(solvers.reverse_sde_drift(score, vp), x0, g, steps=200, generator=4).x
    se_mean, se_var = math.sqrt(c2 / n), c2 * math.sqrt(2 / n)
    assert (out.mean(0) - m).abs().max().item() < 4 * se_mean + 5e-3
    assert (out.var(0) / c2 - 1).abs().max().item() < 4 * se_var / c2 + 0.03
    half = solvers.probability_flow_drift(score, vp)
    bad = solvers.euler_maruyama(half, x0, g, steps=200, generator=4).x
    assert (bad.var(0) / c2 - 1).abs().min().item() > 0.2


@pytest.mark.parametrize("k", [100, 300, 500, 700, 900])
def test_ddpm_ancestral_step_is_euler_maruyama_of_the_reverse_sde(k):
    """One ancestral step of fmbook.ddpm from step k (book time t_k = 1 - k/T) and one Euler-Maruyama
    step of h = 1/T of the reverse SDE of the same path (DiscreteVPScheduler, g^2 = beta(1 - t)) have
    mean increments that agree to 0.5% and noise variances beta_k and g^2 h that agree to 2%. The
    probability-flow drift g^2/2 in place of g^2 (a wrong pairing) misses the mean by over 30%."""
    schedule = ddpm.linear_schedule(1000)
    path = ddpm.DiscreteVPScheduler(schedule)
    T = schedule.T  # noqa: N806
    gen = torch.Generator().manual_seed(k)
    x = torch.randn(2000, 2, dtype=torch.float64, generator=gen)
    eps = torch.randn(2000, 2, dtype=torch.float64, generator=gen)
    t = torch.full((2000,), 1 - k / T, dtype=torch.float64)
    sigma = path(t).sigma_t[:, None]
    score = lambda y, tt: -eps / sigma  # noqa: E731  (the score of the noise prediction eps)
    ancestral = ddpm.ancestral_step(eps, x, k, schedule) - x
    euler = solvers.reverse_sde_drift(score, path)(x, t) / T
    rel = ((ancestral - euler).norm() / ancestral.norm()).item()
    assert rel < 5e-3
    g2h = solvers.forward_sde_coefficients(path, t).g2[0].item() / T
    assert abs(g2h / schedule.betas[k - 1].item() - 1) < 0.02
    wrong = solvers.probability_flow_drift(score, path)(x, t) / T
    assert ((ancestral - wrong).norm() / ancestral.norm()).item() > 0.3


def test_ancestral_step_reproduces_ancestral_sample():
    """Looping ancestral_step with the same generator reproduces ancestral_sample exactly."""
    schedule = ddpm.linear_schedule(50)
    model = lambda x, t: 0.3 * x + t[:, None]  # noqa: E731
    x_t = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for variance in ("beta", "posterior"):
        ref = ddpm.ancestral_sample(model, x_t, schedule, variance, generator=torch.Generator().manual_seed(1)).x
        gen, x = torch.Generator().manual_seed(1), x_t
        for k in range(50, 0, -1):
            eps = model(x, torch.full((8,), 1 - k / 50, dtype=torch.float64))
            noise = torch.randn(x.shape, generator=gen, dtype=x.dtype) if k > 1 else None
            x = ddpm.ancestral_step(eps, x, k, schedule, variance, noise)
        assert torch.equal(x, ref)


def test_forward_sde_bad_input():
    with pytest.raises(ValueError, match="alpha_t = 0"):
        solvers.forward_sde_coefficients(paths.CondOTScheduler(), torch.tensor([0.0, 0.5]))
    with pytest.raises(TypeError, match="scheduler"):
        solvers.forward_sde_coefficients("vp", 0.5)
    with pytest.raises(TypeError, match="score"):
        solvers.reverse_sde_drift(None, paths.VPScheduler())
    with pytest.raises(ValueError, match="k must"):
        ddpm.ancestral_step(torch.zeros(2, 2), torch.zeros(2, 2), 0, ddpm.linear_schedule(10))


# ---------------------------------------------------------------------------------------------
# One loss, three weightings
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["condot", "cosine", "vp"])
def test_fm_and_dsm_are_weighted_noise_prediction_losses(name):
    """Write a network through a noise predictor eps_theta. Per sample and exactly (float64), the
    flow-matching loss of u_theta = a_t x + b_t eps_theta is b_t^2 times the noise-prediction loss and
    the denoising score-matching loss of s_theta = -eps_theta / sigma_t is 1/sigma_t^2 times it. The
    weights swapped, or no weight, fail the same check."""
    scheduler = SCHEDULERS[name][0]
    path = paths.AffinePath(scheduler)
    torch.manual_seed(0)
    eps_net = models.MLPVelocityField(2, 32, 2).double()
    gen = torch.Generator().manual_seed(5)
    x1 = torch.randn(256, 2, dtype=torch.float64, generator=gen) + 1.0
    x0 = torch.randn(256, 2, dtype=torch.float64, generator=gen)
    t = 0.02 + 0.96 * torch.rand(256, dtype=torch.float64, generator=gen)
    with torch.no_grad():
        eps_loss = losses.noise_prediction_loss(eps_net, x0, x1, t, path, reduction="none")
        sample = path.sample(x0, x1, t)
        u_theta = paths.convert(eps_net(sample.x_t, t), "epsilon", "velocity", sample.x_t, t, scheduler)
        fm_loss = (u_theta - sample.dx_t).pow(2).sum(1)
        sigma = scheduler(t).sigma_t[:, None]
        dsm_loss = losses.denoising_score_matching_loss(lambda x, tt: -eps_net(x, tt) / sigma, x0, x1, t, path,
                                                        reduction="none")
    w_fm = losses.epsilon_loss_weight(scheduler, t, "velocity")
    w_dsm = losses.epsilon_loss_weight(scheduler, t, "score")
    assert torch.allclose(fm_loss, w_fm * eps_loss, rtol=1e-10, atol=0)
    assert torch.allclose(dsm_loss, w_dsm * eps_loss, rtol=1e-10, atol=0)
    assert torch.allclose(losses.epsilon_loss_weight(scheduler, t, "epsilon"), torch.ones_like(t))
    # negative controls: swapped weights, or the weight dropped
    assert ((fm_loss / (w_dsm * eps_loss) - 1).abs() > 0.05).float().mean() > 0.9
    assert ((fm_loss / eps_loss - 1).abs() > 0.05).float().mean() > 0.5
    # the b_t of the weight is the eps -> velocity coefficient of paths.velocity_coefficients
    _, b = paths.velocity_coefficients(t, "epsilon", scheduler)
    assert torch.allclose(w_fm, b**2)


def test_x1_weight_and_bad_input():
    """The x1 (data) prediction's loss is sigma^2/alpha^2 times the noise loss; undefined weights raise."""
    scheduler = paths.CosineScheduler()
    gen = torch.Generator().manual_seed(0)
    x1, x0 = torch.randn(64, 2, dtype=torch.float64, generator=gen), torch.randn(64, 2, dtype=torch.float64,
                                                                                  generator=gen)
    eps_hat = torch.randn(64, 2, dtype=torch.float64, generator=gen)
    t = 0.05 + 0.9 * torch.rand(64, dtype=torch.float64, generator=gen)
    x_t = paths.AffinePath(scheduler).sample(x0, x1, t).x_t
    x1_hat = paths.convert(eps_hat, "epsilon", "x1", x_t, t, scheduler)
    lhs = (x1_hat - x1).pow(2).sum(1)
    assert torch.allclose(lhs, losses.epsilon_loss_weight(scheduler, t, "x1") * (eps_hat - x0).pow(2).sum(1))
    with pytest.raises(ValueError, match="sigma_t = 0"):
        losses.epsilon_loss_weight(scheduler, torch.tensor([1.0]), "score")
    with pytest.raises(ValueError, match="alpha_t = 0"):
        losses.epsilon_loss_weight(scheduler, torch.tensor([0.0]), "velocity")
    with pytest.raises(ValueError, match="parameterization"):
        losses.epsilon_loss_weight(scheduler, 0.5, "noise")


def test_the_weights_select_different_solutions_at_finite_capacity():
    """For 1-D data N(0, c^2) on the CondOT path and the one-parameter noise predictor eps = theta x,
    the minimiser of the w-weighted noise loss over t ~ U[0.05, 0.95] is
    theta_w = E[w sigma] / E[w (alpha^2 c^2 + sigma^2)]. Monte Carlo least squares on samples agrees with
    the quadrature for the flow-matching weight b_t^2 and the score weight 1/sigma_t^2, and the two
    minimisers differ by far more than the Monte Carlo error."""
    c2, n = 0.04, 400_000
    scheduler = paths.CondOTScheduler()
    gen = torch.Generator().manual_seed(0)
    t = 0.05 + 0.9 * torch.rand(n, dtype=torch.float64, generator=gen)
    x1 = math.sqrt(c2) * torch.randn(n, dtype=torch.float64, generator=gen)
    eps = torch.randn(n, dtype=torch.float64, generator=gen)
    a, s, _, _ = scheduler(t)
    x = a * x1 + s * eps
    tq = torch.linspace(0.05, 0.95, 20_001, dtype=torch.float64)
    aq, sq, _, _ = scheduler(tq)
    theta = {}
    for kind in ("velocity", "score"):
        w = losses.epsilon_loss_weight(scheduler, t, kind)
        mc = ((w * x * eps).sum() / (w * x * x).sum()).item()
        wq = losses.epsilon_loss_weight(scheduler, tq, kind)
        quad = (torch.trapezoid(wq * sq, tq) / torch.trapezoid(wq * (aq**2 * c2 + sq**2), tq)).item()
        assert abs(mc / quad - 1) < 0.01
        theta[kind] = quad
    assert abs(theta["velocity"] / theta["score"] - 1) > 0.1


def test_closed_form_weights_on_condot_and_vp():
    """CondOT: w_FM = 1/t^2 and w_DSM = 1/(1 - t)^2. VP: w_FM = beta^2 / (4 sigma_t^2), so the CFM loss is
    the DSM loss times g^4 / 4 with g^2 = beta(1 - t): a function of t, not an additive constant."""
    t = torch.linspace(0.05, 0.95, 91, dtype=torch.float64)
    condot = paths.CondOTScheduler()
    assert torch.allclose(losses.epsilon_loss_weight(condot, t, "velocity"), 1 / t**2)
    assert torch.allclose(losses.epsilon_loss_weight(condot, t, "score"), 1 / (1 - t) ** 2)
    vp = paths.VPScheduler()
    beta = vp.beta_min + (1 - t) * (vp.beta_max - vp.beta_min)
    w_fm, w_dsm = (losses.epsilon_loss_weight(vp, t, k) for k in ("velocity", "score"))
    assert torch.allclose(w_fm, beta**2 / (4 * vp(t).sigma_t ** 2))
    g2 = solvers.forward_sde_coefficients(vp, t).g2
    assert torch.allclose(w_fm / w_dsm, g2**2 / 4)
    assert (w_fm / w_dsm).max() > 10 * (w_fm / w_dsm).min()  # far from constant


@pytest.mark.parametrize("name", ["condot", "vp"])
def test_eq56_drift_from_a_score_alone(name):
    """The notes' eq. 56: [(g^2 + g_t^2)/2 score - f x] is eq. 6.1's drift u + g_t^2/2 score, with u the exact
    marginal velocity of a finite data set; dropping the sampler's g_t^2/2 term (the PF drift) is not."""
    scheduler = SCHEDULERS[name][0]
    support = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    x = 2 * torch.randn(200, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    t = 0.05 + 0.9 * torch.rand(200, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    score = lambda y, tt: paths.marginal_score(y, tt, support, scheduler)  # noqa: E731
    velocity = lambda y, tt: paths.marginal_velocity(y, tt, support, scheduler)  # noqa: E731
    g = lambda tt: 1.5 * (1 - tt)  # noqa: E731
    eq56 = solvers.sde_drift(solvers.probability_flow_drift(score, scheduler), score, g)(x, t)
    c = solvers.forward_sde_coefficients(scheduler, t)
    by_hand = (0.5 * (c.g2 + g(t) ** 2))[:, None] * score(x, t) - c.f[:, None] * x
    reference = solvers.sde_drift(velocity, score, g)(x, t)
    assert torch.allclose(eq56, reference, atol=1e-9) and torch.allclose(by_hand, reference, atol=1e-9)
    pf_only = solvers.probability_flow_drift(score, scheduler)(x, t)
    assert (pf_only - reference).norm() > 0.05 * reference.norm()

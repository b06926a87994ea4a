"""The convention crosswalk (chapters/appendix/crosswalk.md): every mapping against an independent computation.

Each test checks one translation of a paper's convention into the book's (t = 0 noise, t = 1 data,
x_t = alpha_t x1 + sigma_t x0, model(x, t), diffusion coefficient g_t) and, beside it, a wrong
variant (an off-by-one step, a missing time flip, an unscaled state, an unshifted guidance scale,
a wrong weight) that the same check rejects.
"""

import math

import pytest
import torch

from fmbook import conventions, ddpm, guidance, losses, models, paths

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs() / b.abs().clamp_min(1e-300)).max().item()


# --------------------------------------------------------------------------------------------
# DDPM (Ho et al. 2020): step k in 1..T is the book's time t = 1 - k/T
# --------------------------------------------------------------------------------------------


def test_ddpm_step_maps_to_the_book_time_with_alpha_bar_equal_to_alpha_squared():
    T = 1000  # noqa: N806
    schedule = ddpm.linear_schedule(T)
    k = torch.arange(1, T + 1)
    # alpha_bar computed here from its definition, independently of DDPMSchedule
    alpha_bar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, T, dtype=F64), 0)
    scheduler = ddpm.DiscreteVPScheduler(schedule)
    alpha_t = scheduler(ddpm.step_to_time(k, T)).alpha_t
    assert _max_rel(alpha_t**2, alpha_bar) < 1e-10
    # the noised point of DDPM is the book's path at the mapped time (eps is the source x0)
    x_data = torch.randn(T, 2, generator=_gen(0), dtype=F64)
    eps = torch.randn(T, 2, generator=_gen(1), dtype=F64)
    x_k = ddpm.q_sample(x_data, k, schedule, eps)
    x_t = paths.AffinePath(scheduler).sample(eps, x_data, ddpm.step_to_time(k, T)).x_t
    assert torch.allclose(x_k, x_t, atol=1e-12)
    assert torch.equal(ddpm.time_to_step(ddpm.step_to_time(k, T), T), k)
    # control: an off-by-one index, t = 1 - (k - 1)/T, misses alpha_bar_k
    off_by_one = scheduler(1 - (k - 1).to(F64) / T).alpha_t
    assert _max_rel(off_by_one**2, alpha_bar) > 1e-2
    assert not torch.allclose(paths.AffinePath(scheduler).sample(eps, x_data, 1 - (k - 1).to(F64) / T).x_t, x_k,
                              atol=1e-6)


def test_ddpm_linear_schedule_has_the_continuous_vp_limit_of_song_et_al():
    schedule = ddpm.linear_schedule(1000)
    beta_min, beta_max = conventions.ddpm_vp_limit(schedule)
    assert abs(beta_min - 0.1) < 1e-9 and abs(beta_max - 20.0) < 1e-9
    t = torch.linspace(0, 1, 501, dtype=F64)
    discrete = ddpm.DiscreteVPScheduler(schedule)(t).alpha_t
    gap = (discrete - paths.VPScheduler(beta_min, beta_max)(t).alpha_t).abs().max().item()
    assert gap < 2e-3
    # control: the per-step betas without the factor T are not the continuous rate
    wrong = paths.VPScheduler(schedule.betas[0].item(), schedule.betas[-1].item())(t).alpha_t
    assert (discrete - wrong).abs().max().item() > 0.5
    with pytest.raises(ValueError, match="linear"):
        conventions.ddpm_vp_limit(ddpm.cosine_schedule(100))


def test_ddim_alpha_is_ddpm_alpha_bar_and_its_step_re_noises_the_book_x1_prediction():
    schedule = ddpm.linear_schedule(10, 1e-3, 0.2)
    scheduler = ddpm.DiscreteVPScheduler(schedule)
    k = torch.arange(0, 11)
    a, s = conventions.ddim_alpha_to_book(schedule.alpha_bar[k])
    book = scheduler(ddpm.step_to_time(k, 10))
    assert torch.allclose(a, book.alpha_t, rtol=1e-12) and torch.allclose(s, book.sigma_t, atol=1e-12)

    def eps_model(x, t):
        return torch.tanh(x) * (0.5 + t[:, None]) + 0.1

    x = torch.randn(64, 2, generator=_gen(2), dtype=F64)
    first = ddpm.ddim_sample(eps_model, x, schedule, steps=2, return_trajectory=True).trajectory[:, 1]
    # one DDIM step 10 -> 5 in the book's variables: predict x1, re-noise it to the time of step 5
    t_k = torch.zeros(64, dtype=F64)
    eps = eps_model(x, t_k)
    _, x1_hat = paths.endpoints_from(eps, "epsilon", x, t_k, scheduler)
    a5, s5 = conventions.ddim_alpha_to_book(schedule.alpha_bar[5])
    assert torch.allclose(first, a5 * x1_hat + s5 * eps, atol=1e-12)
    # the same step is an Euler step of EDM's ODE d x_hat / d sigma = eps_hat in x_hat = x / alpha, sigma / alpha
    x_hat, sig_k = conventions.karras_from_book(x, t_k, scheduler)
    _, sig_j = conventions.karras_from_book(x, torch.full((64,), 0.5, dtype=F64), scheduler)
    assert torch.allclose(first, a5 * (x_hat + (sig_j - sig_k)[:, None] * eps), atol=1e-12)
    # control: DDPM's per-step alpha_k = 1 - beta_k read as DDIM's alpha
    a_wrong, s_wrong = conventions.ddim_alpha_to_book(1 - schedule.betas[4])
    assert (first - (a_wrong * x1_hat + s_wrong * eps)).abs().max().item() > 0.1


# --------------------------------------------------------------------------------------------
# Score SDEs (Song et al. 2021): s = 1 - t; VP and VE kernels; g_t = g(1 - t)
# --------------------------------------------------------------------------------------------


def _kernel_by_moments(f_and_g, s_end: float, v0: float = 0.0, steps: int = 4000) -> tuple[float, float]:
    """Mean factor m and variance v of dx = f x ds + g dw from s = 0 (m = 1, v = v0): RK4 on m' = f m,
    v' = 2 f v + g^2, with f and g taken from the SDE alone (on the half-step grid, in one call)."""
    h = s_end / steps
    f_grid, g_grid = (c.tolist() for c in f_and_g(torch.linspace(0, s_end, 2 * steps + 1, dtype=F64)))
    m, v = 1.0, v0

    def rhs(j, m, v):
        return f_grid[j] * m, 2 * f_grid[j] * v + g_grid[j] ** 2

    for i in range(steps):
        k1 = rhs(2 * i, m, v)
        k2 = rhs(2 * i + 1, m + h / 2 * k1[0], v + h / 2 * k1[1])
        k3 = rhs(2 * i + 1, m + h / 2 * k2[0], v + h / 2 * k2[1])
        k4 = rhs(2 * i + 2, m + h * k3[0], v + h * k3[1])
        m += h / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
        v += h / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
    return m, v


def test_song_time_and_vp_kernel_are_the_book_vp_scheduler():
    t = torch.linspace(0, 1, 101, dtype=F64)
    s = conventions.song_time(t)
    assert torch.allclose(conventions.song_time(s), t, atol=0)
    mean, std = conventions.song_vp_kernel(s, 0.1, 20.0)
    vp = paths.VPScheduler(0.1, 20.0)(t)
    assert torch.allclose(mean, vp.alpha_t, rtol=1e-12) and torch.allclose(std, vp.sigma_t, rtol=1e-10, atol=1e-15)
    # independently: the moments of the VP SDE itself, integrated from the data at s = 0
    m, v = _kernel_by_moments(lambda r: conventions.song_vp_sde(r, 0.1, 20.0), 0.7)
    exact = paths.VPScheduler(0.1, 20.0)(torch.tensor([0.3], dtype=F64))
    assert abs(m - exact.alpha_t.item()) < 1e-9 and abs(math.sqrt(v) - exact.sigma_t.item()) < 1e-9
    # control: Song's time used as the book's, without the flip s = 1 - t
    assert (conventions.song_vp_kernel(t)[0] - vp.alpha_t).abs().max().item() > 0.9


def test_song_ve_kernel_and_noise_scale_against_the_book_ve_scheduler():
    t = torch.linspace(0, 1, 101, dtype=F64)
    s = conventions.song_time(t)
    ve = paths.VEScheduler(0.01, 10.0)(t)
    scale = conventions.song_ve_noise_scale(s, 0.01, 10.0)
    assert torch.allclose(scale, ve.sigma_t, rtol=1e-12)
    std = conventions.song_ve_kernel_std(s, 0.01, 10.0)
    assert torch.allclose(std**2 + 0.01**2, ve.sigma_t**2, rtol=1e-12)
    # independently: the variance of the VE SDE (no drift) grown from 0 at s = 0
    m, v = _kernel_by_moments(lambda r: conventions.song_ve_sde(r, 0.01, 10.0), 0.6)
    assert m == 1.0 and abs(math.sqrt(v) - conventions.song_ve_kernel_std(0.6).item()) < 1e-8
    # control: the kernel std read as the book's sigma_t misses sigma_1 = sigma_min at the data end
    assert abs(std[-1].item() - ve.sigma_t[-1].item()) > 0.009


def test_lipman_vp_and_ve_fields_in_their_notation_alpha_and_sigma_at_one_minus_t():
    """Lipman et al. (2022), eqs. of the VP and VE paths: alpha_s and sigma_s of the diffusion literature
    evaluated at s = 1 - t, with ' the derivative in s (here by central differences)."""
    x = torch.randn(50, 2, generator=_gen(31), dtype=F64)
    x1 = torch.randn(50, 2, generator=_gen(32), dtype=F64)
    t = torch.rand(50, generator=_gen(33), dtype=F64) * 0.9 + 0.05
    s, h = 1 - t, 1e-6

    def alpha(r):
        return conventions.song_vp_kernel(r)[0][:, None]

    d_alpha = (alpha(s + h) - alpha(s - h)) / (2 * h)
    theirs = d_alpha / (1 - alpha(s) ** 2) * (alpha(s) * x - x1)
    assert torch.allclose(theirs, paths.conditional_velocity(x, x1, t, paths.VPScheduler()), rtol=1e-6, atol=1e-8)

    def sigma(r):
        return conventions.song_ve_noise_scale(r)[:, None]

    d_sigma = (sigma(s + h) - sigma(s - h)) / (2 * h)
    theirs_ve = -d_sigma / sigma(s) * (x - x1)
    assert torch.allclose(theirs_ve, paths.conditional_velocity(x, x1, t, paths.VEScheduler()), rtol=1e-6, atol=1e-8)
    # control: alpha_t read at the book's t instead of 1 - t
    wrong = (alpha(t + h) - alpha(t - h)) / (2 * h) / (1 - alpha(t) ** 2) * (alpha(t) * x - x1)
    assert (wrong - paths.conditional_velocity(x, x1, t, paths.VPScheduler())).abs().max().item() > 1.0


@pytest.mark.parametrize(
    "scheduler", [paths.VPScheduler(), paths.VEScheduler(), paths.CosineScheduler(), paths.CondOTScheduler()],
    ids=repr,
)
def test_forward_sde_of_a_scheduler_has_the_scheduler_as_its_kernel(scheduler):
    t_end = 0.2
    start = scheduler(torch.tensor([1.0], dtype=F64))
    m, v = _kernel_by_moments(lambda r: conventions.diffusion_sde_of_scheduler(scheduler, 1 - r),
                              1 - t_end, v0=start.sigma_t.item() ** 2)
    c = scheduler(torch.tensor([t_end], dtype=F64))
    assert abs(m * start.alpha_t.item() - c.alpha_t.item()) < 1e-6 * max(1.0, c.alpha_t.item())
    assert abs(math.sqrt(v) - c.sigma_t.item()) < 1e-6 * max(1.0, c.sigma_t.item())
    # 1/2 g_t^2 is the score's coefficient in the probability-flow velocity
    t = torch.linspace(0.05, 0.95, 19, dtype=F64)
    _, g = conventions.diffusion_sde_of_scheduler(scheduler, t)
    _, b_score = paths.velocity_coefficients(t, "score", scheduler)
    assert torch.allclose(0.5 * g**2, b_score, rtol=1e-10)


def test_vp_and_ve_sdes_of_song_are_those_of_the_book_schedulers():
    t = torch.linspace(0.0, 0.99, 100, dtype=F64)
    for sched, sde in [(paths.VPScheduler(0.1, 20.0), conventions.song_vp_sde),
                       (paths.VEScheduler(0.01, 10.0), conventions.song_ve_sde)]:
        f_book, g_book = conventions.diffusion_sde_of_scheduler(sched, t)
        f_song, g_song = sde(conventions.song_time(t))
        assert torch.allclose(f_book, f_song, rtol=1e-10, atol=1e-12)
        assert torch.allclose(g_book, g_song, rtol=1e-8)
    # control: Song's g read at the book's t instead of s = 1 - t
    g_vp = conventions.diffusion_sde_of_scheduler(paths.VPScheduler(0.1, 20.0), t)[1]
    assert _max_rel(conventions.song_vp_sde(t, 0.1, 20.0)[1], g_vp) > 0.5


def test_song_probability_flow_and_reverse_sde_in_book_time():
    data = torch.randn(12, 2, generator=_gen(3), dtype=F64)
    x = torch.randn(200, 2, generator=_gen(4), dtype=F64) * 1.5
    t = torch.rand(200, generator=_gen(5), dtype=F64) * 0.9 + 0.05
    sched = paths.VPScheduler(0.1, 20.0)
    score = paths.marginal_score(x, t, data, sched)
    u = paths.marginal_velocity(x, t, data, sched)
    f, g = (c[:, None] for c in conventions.song_vp_sde(conventions.song_time(t)))
    # Song's ODE dx/ds = f x - g^2/2 score, run backwards in s: the book's velocity is its negative
    pf_song = f * x - 0.5 * g**2 * score
    assert torch.allclose(-pf_song, u, rtol=1e-7, atol=1e-8)
    # reverse SDE dx = [f x - g^2 score] ds + g dw: in book time the drift is u + g_t^2/2 score
    assert torch.allclose(-(f * x - g**2 * score), u + 0.5 * g**2 * score, rtol=1e-7, atol=1e-8)
    # control: the same drift without the time flip
    assert (pf_song - u).abs().max().item() > 1.0


# --------------------------------------------------------------------------------------------
# EDM (Karras et al. 2022): x_hat = x / alpha, sigma = sigma_t / alpha_t, D = x1-prediction
# --------------------------------------------------------------------------------------------


def _ideal_denoiser(data: torch.Tensor):
    """E[y | y + sigma n = x_hat] for y uniform on the rows of data, written from its definition."""

    def denoiser(x_hat, sigma):
        sq = ((x_hat[:, None, :] - data[None]) ** 2).sum(-1)
        w = torch.softmax(-sq / (2 * sigma[:, None] ** 2), dim=1)
        return w @ data

    return denoiser


@pytest.mark.parametrize("scheduler", [paths.VPScheduler(), paths.CosineScheduler(), paths.CondOTScheduler()], ids=repr)
def test_karras_variables_round_trip_and_denoiser_is_the_x1_prediction(scheduler):
    data = torch.randn(10, 2, generator=_gen(6), dtype=F64)
    x_t = torch.randn(100, 2, generator=_gen(7), dtype=F64)
    t = torch.rand(100, generator=_gen(8), dtype=F64) * 0.9 + 0.05
    x_hat, sigma = conventions.karras_from_book(x_t, t, scheduler)
    back, t_back = conventions.book_from_karras(x_hat, sigma, scheduler)
    assert torch.allclose(t_back, t, atol=1e-10) and torch.allclose(back, x_t, atol=1e-10)
    d = _ideal_denoiser(data)(x_hat, sigma)
    assert torch.allclose(d, paths.posterior_mean(x_t, t, data, scheduler), atol=1e-10)
    # EDM's score (D - x_hat)/sigma^2 is alpha_t times the book's score; its noise is (x_hat - D)/sigma
    a = scheduler(t).alpha_t[:, None]
    assert torch.allclose((d - x_hat) / sigma[:, None] ** 2 / a, paths.marginal_score(x_t, t, data, scheduler),
                          rtol=1e-8, atol=1e-8)
    eps = paths.convert(d, "x1", "epsilon", x_t, t, scheduler)
    assert torch.allclose(eps, (x_hat - d) / sigma[:, None], atol=1e-9)
    # control: the denoiser fed the unscaled state x_t at the noise level sigma_t/alpha_t
    wrong = _ideal_denoiser(data)(x_t, sigma)
    assert (wrong - d).abs().max().item() > 0.05


def test_karras_vp_formulas_of_table_1_are_the_book_vp_scheduler():
    tau = torch.linspace(0.01, 1, 100, dtype=F64)  # EDM's time of the VP SDE, the book's t = 1 - tau
    e = torch.exp(0.5 * 19.9 * tau**2 + 0.1 * tau)
    s_edm, sigma_edm = 1 / e.sqrt(), (e - 1).sqrt()
    x = torch.randn(100, 3, generator=_gen(9), dtype=F64)
    t = 1 - tau
    x_hat, sigma = conventions.karras_from_book(x, t, paths.VPScheduler(0.1, 20.0))
    assert torch.allclose(sigma, sigma_edm, rtol=1e-10)
    assert torch.allclose(x_hat * s_edm[:, None], x, rtol=1e-10)
    # control: the book's sigma_t taken for EDM's sigma
    assert _max_rel(paths.VPScheduler(0.1, 20.0)(t).sigma_t, sigma_edm) > 0.5


@pytest.mark.parametrize("scheduler", [paths.VPScheduler(), paths.CondOTScheduler()], ids=repr)
def test_karras_ode_of_the_ideal_denoiser_is_the_marginal_velocity(scheduler):
    data = torch.randn(10, 2, generator=_gen(10), dtype=F64)
    x = torch.randn(200, 2, generator=_gen(11), dtype=F64)
    t = torch.rand(200, generator=_gen(12), dtype=F64) * 0.9 + 0.05
    velocity = conventions.karras_velocity(_ideal_denoiser(data), scheduler)
    assert torch.allclose(velocity(x, t), paths.marginal_velocity(x, t, data, scheduler), rtol=1e-7, atol=1e-7)
    # control: the denoiser called at the book's sigma_t instead of EDM's sigma_t / alpha_t
    alpha = scheduler(t).alpha_t

    def confused(x_hat, sigma):
        return _ideal_denoiser(data)(x_hat, sigma * alpha)

    wrong = conventions.karras_velocity(confused, scheduler)(x, t)
    assert (wrong - paths.marginal_velocity(x, t, data, scheduler)).abs().max().item() > 0.05


def test_edm_preconditioning_and_loss_weight():
    sigma = torch.logspace(-3, 2, 50, dtype=F64)
    c_skip, c_out, c_in, c_noise = conventions.edm_preconditioning(sigma, 0.5)
    lam = conventions.edm_loss_weight(sigma, 0.5)
    assert torch.allclose(lam * c_out**2, torch.ones_like(sigma), rtol=1e-12)
    # unit variance of the network's input and of its effective target, for data of std 0.5
    assert torch.allclose(c_in**2 * (0.25 + sigma**2), torch.ones_like(sigma), rtol=1e-12)
    target_var = ((1 - c_skip) ** 2 * 0.25 + c_skip**2 * sigma**2) / c_out**2
    assert torch.allclose(target_var, torch.ones_like(sigma), rtol=1e-12)
    y = 0.5 * torch.randn(200_000, generator=_gen(13), dtype=F64)
    n = torch.randn(200_000, generator=_gen(14), dtype=F64)
    cs, co, _, _ = conventions.edm_preconditioning(1.3, 0.5)
    mc = ((y - cs * (y + 1.3 * n)) / co).var().item()
    assert abs(mc - 1) < 0.02
    assert torch.allclose(c_noise, 0.25 * torch.log(sigma))
    # control: a data std of 1 assumed for data of std 0.5
    cs1, co1, _, _ = conventions.edm_preconditioning(1.3, 1.0)
    assert abs(((y - cs1 * (y + 1.3 * n)) / co1).var().item() - 1) > 0.2
    # the EDM loss is the x1-prediction loss: lambda sigma^2 times the noise-prediction loss
    sched = paths.VPScheduler()
    x1 = torch.randn(50, 2, generator=_gen(15), dtype=F64)
    eps = torch.randn(50, 2, generator=_gen(16), dtype=F64)
    t = torch.rand(50, generator=_gen(17), dtype=F64) * 0.9 + 0.05
    x_t = paths.AffinePath(sched).sample(eps, x1, t).x_t
    eps_hat = eps + 0.1 * torch.randn(50, 2, generator=_gen(18), dtype=F64)
    d_hat = paths.convert(eps_hat, "epsilon", "x1", x_t, t, sched)
    _, sig = conventions.karras_from_book(x_t, t, sched)
    edm = conventions.edm_loss_weight(sig) * ((d_hat - x1) ** 2).sum(1)
    eps_loss = ((eps_hat - eps) ** 2).sum(1)
    assert torch.allclose(edm, conventions.edm_loss_weight(sig) * sig**2 * eps_loss, rtol=1e-9)
    assert torch.allclose(losses.epsilon_loss_weight(sched, t, "x1"), sig**2, rtol=1e-12)


# --------------------------------------------------------------------------------------------
# Classifier-free guidance (Ho and Salimans 2022): the book's w is 1 + theirs
# --------------------------------------------------------------------------------------------


def test_guidance_scale_of_ho_and_salimans_is_the_book_scale_minus_one():
    torch.manual_seed(0)
    model = models.ConditionalMLPVelocityField(dim=2, num_classes=2, width=32, depth=2).double()
    x = torch.randn(64, 2, generator=_gen(19), dtype=F64)
    t = torch.rand(64, generator=_gen(20), dtype=F64)
    c = torch.randint(0, 2, (64,), generator=_gen(21))
    null = torch.full_like(c, model.null_class)
    with torch.no_grad():
        v_c, v_u = model(x, t, c), model(x, t, null)
        for w_hs in (0.0, 0.3, 1.0, 4.0):
            theirs = (1 + w_hs) * v_c - w_hs * v_u  # Ho and Salimans' combination
            w_book = conventions.guidance_scale_from_ho_salimans(w_hs)
            assert conventions.guidance_scale_to_ho_salimans(w_book) == pytest.approx(w_hs, abs=1e-15)
            ours = guidance.guided_velocity(model, c, w_book)(x, t)
            assert torch.allclose(ours, theirs, atol=1e-12)
        # control: their w given to the book's formula unchanged
        assert (guidance.guided_velocity(model, c, 1.0)(x, t) - (2 * v_c - v_u)).abs().max().item() > 0.05
    # guidance of a noise predictor and of its velocity agree: the conversion is affine in the prediction
    sched = paths.VPScheduler()
    tt = t * 0.9 + 0.05
    e_c, e_u = torch.randn(64, 2, generator=_gen(22), dtype=F64), torch.randn(64, 2, generator=_gen(23), dtype=F64)
    guided_eps = 3.0 * e_c - 2.0 * e_u
    lhs = paths.convert(guided_eps, "epsilon", "velocity", x, tt, sched)
    vc, vu = (paths.convert(e, "epsilon", "velocity", x, tt, sched) for e in (e_c, e_u))
    assert torch.allclose(lhs, guidance.combine_guidance(vc, vu, conventions.guidance_scale_from_ho_salimans(2.0)),
                          atol=1e-10)


def test_ho_salimans_log_snr_clock_is_the_book_log_snr_of_vp_paths():
    t = torch.linspace(0, 1, 201, dtype=F64)
    for sched in (paths.CosineScheduler(), paths.VPScheduler(), ddpm.DiscreteVPScheduler(ddpm.cosine_schedule(100))):
        c = sched(t)
        inner = (c.alpha_t > 1e-6) & (c.sigma_t > 1e-6)
        a, s = conventions.vp_coefficients_from_log_snr(paths.log_snr(t, sched))
        assert torch.allclose(a[inner], c.alpha_t[inner], rtol=1e-9)
        assert torch.allclose(s[inner], c.sigma_t[inner], rtol=1e-9)
    a, s = conventions.vp_coefficients_from_log_snr(torch.tensor([-100.0, 100.0], dtype=F64))
    assert bool(torch.isfinite(a).all()) and bool(torch.isfinite(s).all())
    # control: the formula needs alpha^2 + sigma^2 = 1, which CondOT does not have
    c = paths.CondOTScheduler()(t[1:-1])
    a, _ = conventions.vp_coefficients_from_log_snr(paths.log_snr(t[1:-1], paths.CondOTScheduler()))
    assert _max_rel(a, c.alpha_t) > 0.2


# --------------------------------------------------------------------------------------------
# Rectified flow (Liu et al. 2022) and I-CFM (Tong et al. 2023)
# --------------------------------------------------------------------------------------------


def test_linear_interpolant_is_condot_and_tong_noise_keeps_the_target():
    x0 = torch.randn(100, 3, generator=_gen(24), dtype=F64)
    x1 = torch.randn(100, 3, generator=_gen(25), dtype=F64) + 2
    t = torch.rand(100, generator=_gen(26), dtype=F64)
    ours = conventions.linear_interpolant(x0, x1, t)
    book = paths.AffinePath(paths.CondOTScheduler()).sample(x0, x1, t)
    assert torch.allclose(ours.x_t, book.x_t, atol=1e-14) and torch.allclose(ours.dx_t, book.dx_t, atol=1e-14)
    # Tong's sigma > 0: the flow psi_t(eps) = t x1 + (1 - t) x0 + sigma eps moves at x1 - x0
    eps = torch.randn(100, 3, generator=_gen(27), dtype=F64)
    h = 1e-6
    tt = t * 0.9 + 0.05
    plus = conventions.linear_interpolant(x0, x1, tt + h, sigma=0.1, noise=eps).x_t
    minus = conventions.linear_interpolant(x0, x1, tt - h, sigma=0.1, noise=eps).x_t
    assert torch.allclose((plus - minus) / (2 * h), ours.dx_t, atol=1e-7)
    # control: the diffusion clock (data at 0) swaps the ends
    swapped = paths.AffinePath(paths.CondOTScheduler()).sample(x1, x0, t)
    assert (swapped.x_t - ours.x_t).abs().max().item() > 0.5
    with pytest.raises(ValueError, match="noise"):
        conventions.linear_interpolant(x0, x1, t, sigma=0.1)


# --------------------------------------------------------------------------------------------
# Loss weightings: eps-loss, DSM with lambda = sigma^2, FM = eps-loss weighted by b_t^2
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheduler", [paths.CondOTScheduler(), paths.VPScheduler(), paths.CosineScheduler()], ids=repr)
def test_loss_weightings_per_sample(scheduler):
    n = 40
    x0 = torch.randn(n, 2, generator=_gen(28), dtype=F64)
    x1 = torch.randn(n, 2, generator=_gen(29), dtype=F64)
    t = torch.rand(n, generator=_gen(30), dtype=F64) * 0.9 + 0.05
    path = paths.AffinePath(scheduler)

    def eps_model(x, tt):
        return torch.sin(x) * (1 + tt[:, None]) - 0.3 * x

    def score_model(x, tt):
        return paths.convert(eps_model(x, tt), "epsilon", "score", x, tt, scheduler)

    def velocity_model(x, tt):
        return paths.convert(eps_model(x, tt), "epsilon", "velocity", x, tt, scheduler)

    eps_loss = losses.noise_prediction_loss(eps_model, x0, x1, t, path, reduction="none")
    dsm = losses.denoising_score_matching_loss(score_model, x0, x1, t, path, reduction="none")
    fm = torch.stack([losses.cfm_loss(velocity_model, x0[i:i + 1], x1[i:i + 1], t[i:i + 1], path) for i in range(n)])
    sigma = scheduler(t).sigma_t
    # DSM weighted by lambda = sigma^2 (Song et al. 2021) is the noise-prediction loss
    assert torch.allclose(sigma**2 * dsm, eps_loss, rtol=1e-9)
    assert torch.allclose(losses.epsilon_loss_weight(scheduler, t, "score") * eps_loss, dsm, rtol=1e-9)
    # FM is the noise-prediction loss weighted by b_t^2
    b_eps = paths.velocity_coefficients(t, "epsilon", scheduler)[1]
    assert torch.allclose(fm, b_eps**2 * eps_loss, rtol=1e-9)
    assert torch.allclose(losses.epsilon_loss_weight(scheduler, t, "velocity") * eps_loss, fm, rtol=1e-9)
    assert torch.allclose(losses.epsilon_loss_weight(scheduler, t, "epsilon"), torch.ones_like(t))
    # controls: weight sigma instead of sigma^2; the b_t of the x1 parameterization
    assert _max_rel(sigma * dsm, eps_loss) > 0.05
    b_x1 = paths.velocity_coefficients(t, "x1", scheduler)[1]
    assert _max_rel(b_x1**2 * eps_loss, fm) > 0.05


def test_condot_velocity_weight_is_one_over_t_squared():
    t = torch.linspace(0.05, 1, 20, dtype=F64)
    assert torch.allclose(losses.epsilon_loss_weight(paths.CondOTScheduler(), t, "velocity"), 1 / t**2)


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


def test_bad_input_is_refused_with_the_argument_named():
    with pytest.raises(ValueError, match="t must lie"):
        conventions.song_time(1.5)
    with pytest.raises(ValueError, match="beta_max"):
        conventions.song_vp_kernel(0.5, 2.0, 1.0)
    with pytest.raises(ValueError, match="sigma_max"):
        conventions.song_ve_noise_scale(0.5, 1.0, 1.0)
    with pytest.raises(ValueError, match="alpha_t = 0"):
        conventions.diffusion_sde_of_scheduler(paths.CondOTScheduler(), 0.0)
    with pytest.raises(ValueError, match="alpha_ddim"):
        conventions.ddim_alpha_to_book(torch.tensor([1.5], dtype=F64))
    with pytest.raises(TypeError, match="schedule"):
        conventions.ddpm_vp_limit("linear")
    with pytest.raises(ValueError, match="alpha_t = 0"):
        conventions.karras_from_book(torch.zeros(2, 2), 0.0, paths.CondOTScheduler())
    with pytest.raises(ValueError, match="sigma"):
        conventions.book_from_karras(torch.zeros(2, 2), torch.tensor([1.0, -1.0]), paths.CondOTScheduler())
    with pytest.raises(TypeError, match="denoiser"):
        conventions.karras_velocity(3, paths.CondOTScheduler())
    with pytest.raises(ValueError, match="sigma_data"):
        conventions.edm_preconditioning(1.0, 0.0)
    with pytest.raises(TypeError, match="w_ho_salimans"):
        conventions.guidance_scale_from_ho_salimans(True)
    with pytest.raises(ValueError, match="w_book"):
        conventions.guidance_scale_to_ho_salimans(float("nan"))
    with pytest.raises(TypeError, match="log_snr"):
        conventions.vp_coefficients_from_log_snr(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="parameterization"):
        losses.epsilon_loss_weight(paths.CondOTScheduler(), 0.5, "noise")
    with pytest.raises(ValueError, match="alpha_t = 0"):
        losses.epsilon_loss_weight(paths.CondOTScheduler(), 0.0, "velocity")

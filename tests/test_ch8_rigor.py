"""Chapter 8's rigor checks: the guidance convention, solver orders, EMA, AMP, memorisation, bits/dim."""

import math

import pytest
import torch

from fmbook import data, guidance, models, paths, train

# ----------------------------------------------------------------------------------------------
# The classifier-free guidance convention: the book's w = 1 + w of Ho and Salimans (2022)
# ----------------------------------------------------------------------------------------------


def test_guidance_scale_from_ho_salimans_maps_their_landmarks():
    assert guidance.guidance_scale_from_ho_salimans(0.0) == 1.0  # their "no guidance" is the conditional model
    assert guidance.guidance_scale_from_ho_salimans(-1.0) == 0.0  # the unconditional model
    assert guidance.guidance_scale_from_ho_salimans(3) == 4.0


@pytest.mark.parametrize("scheduler", [paths.CondOTScheduler(), paths.VPScheduler()], ids=["condot", "vp"])
def test_guiding_noise_predictions_their_way_is_the_book_rule_on_velocities(scheduler):
    points, labels = data.sample_moons_with_labels(30, generator=1)
    points = points.double()
    x = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    t = torch.full((64,), 0.55, dtype=torch.float64)
    u_c = paths.marginal_velocity(x, t, points[labels == 0], scheduler)
    u_u = paths.marginal_velocity(x, t, points, scheduler)
    # Independent route: the noise predictions E[X0 | x] computed from the posterior means.
    a, s, _, _ = (c[:, None] for c in scheduler.coefficients(t))
    eps_c = (x - a * paths.posterior_mean(x, t, points[labels == 0], scheduler)) / s
    eps_u = (x - a * paths.posterior_mean(x, t, points, scheduler)) / s
    for w_hs in (0.25, 1.0, 4.0):
        eps = (1 + w_hs) * eps_c - w_hs * eps_u  # eq. 6 of Ho and Salimans, written out
        assert torch.allclose(guidance.combine_guidance_ho_salimans(eps_c, eps_u, w_hs), eps, atol=1e-12)
        theirs = paths.convert(eps, "epsilon", "velocity", x, t, scheduler)
        ours = guidance.combine_guidance(u_c, u_u, guidance.guidance_scale_from_ho_salimans(w_hs))
        assert torch.allclose(theirs, ours, atol=1e-9)
        # Negative control: reading w_HS as the book's w misses the field by |u_c - u_u|.
        unshifted = guidance.combine_guidance(u_c, u_u, w_hs)
        assert (theirs - unshifted).abs().mean() > 0.5 * (u_c - u_u).abs().mean()


def test_ho_salimans_guidance_bad_input():
    with pytest.raises(TypeError, match="w_ho_salimans"):
        guidance.guidance_scale_from_ho_salimans("1")
    with pytest.raises(ValueError, match="w_ho_salimans"):
        guidance.combine_guidance_ho_salimans(torch.zeros(2, 2), torch.zeros(2, 2), math.inf)
    with pytest.raises(ValueError, match="pred_cond and pred_uncond"):
        guidance.combine_guidance_ho_salimans(torch.zeros(2, 2), torch.zeros(3, 2), 1.0)


# ----------------------------------------------------------------------------------------------
# Two-stage second-order methods: the global error is affine in the node a (chapter 8, ex-ch8-ralston)
# ----------------------------------------------------------------------------------------------


def _two_stage(velocity, x, steps, a):
    """The explicit two-stage second-order method with nodes 0, a and weights 1 - 1/(2a), 1/(2a)."""
    h = 1.0 / steps
    for i in range(steps):
        t = torch.full((x.shape[0],), i * h, dtype=x.dtype)
        k1 = velocity(x, t)
        k2 = velocity(x + a * h * k1, t + a * h)
        x = x + h * ((1 - 1 / (2 * a)) * k1 + k2 / (2 * a))
    return x


def test_ralston_error_is_two_thirds_midpoint_plus_one_third_heun():
    from fmbook import solvers

    def velocity(x, t):  # a smooth nonlinear, time-dependent field
        return torch.sin(3 * x + t[:, None]) - 0.5 * x * torch.cos(2 * t[:, None])

    x0 = torch.linspace(-2, 2, 50, dtype=torch.float64)[:, None]
    exact = solvers.solve_ode(velocity, x0, steps=4000, method="rk4").x
    residuals = []
    for n in (16, 32, 64):
        e_r = _two_stage(velocity, x0, n, 2 / 3) - exact
        e_m = solvers.solve_ode(velocity, x0, steps=n, method="midpoint").x - exact
        e_h = solvers.solve_ode(velocity, x0, steps=n, method="heun").x - exact
        assert torch.allclose(_two_stage(velocity, x0, n, 0.5) - exact, e_m, atol=1e-12)  # a = 1/2 is midpoint
        residuals.append(((e_r - (2 * e_m + e_h) / 3).norm() / e_r.norm()).item())
        # Negative control: the weights of a = 3/4, (e_m + e_h) / 2, miss by far more.
        assert ((e_r - (e_m + e_h) / 2).norm() / e_r.norm()).item() > 5 * residuals[-1]
    assert residuals[-1] < 0.02
    assert residuals[2] < 0.6 * residuals[1] < 0.36 * residuals[0]  # the remainder is O(h) relative


# ----------------------------------------------------------------------------------------------
# Exact fields of Gaussian-mixture data (the CFG caveat of chapter 8)
# ----------------------------------------------------------------------------------------------

MIX_MEANS = torch.tensor([[-1.0, 0.5], [1.5, -0.5], [0.0, 2.0]], dtype=torch.float64)
MIX_STDS = torch.tensor([0.3, 0.7, 0.5], dtype=torch.float64)
MIX_WEIGHTS = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)


@pytest.mark.parametrize("scheduler", [paths.CondOTScheduler(), paths.VPScheduler()], ids=["condot", "vp"])
def test_gaussian_mixture_velocity_is_the_velocity_of_the_autograd_score(scheduler):
    x = torch.randn(40, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_()
    for t in (0.2, 0.6, 0.9):
        log_p = paths.gaussian_mixture_log_density(x, t, MIX_MEANS, MIX_STDS, MIX_WEIGHTS, scheduler)
        (score,) = torch.autograd.grad(log_p.sum(), x)
        expected = paths.velocity_from_score(score, x.detach(), t, scheduler)
        got = paths.gaussian_mixture_velocity(x.detach(), t, MIX_MEANS, MIX_STDS, MIX_WEIGHTS, scheduler)
        assert torch.allclose(got, expected, atol=1e-9)
        # Negative control: the same mixture with a 20 % wider component has another field.
        wider = paths.gaussian_mixture_velocity(x.detach(), t, MIX_MEANS, MIX_STDS * 1.2, MIX_WEIGHTS, scheduler)
        assert (wider - expected).abs().max() > 1e-4  # 10^5 times the tolerance of the match


def test_gaussian_mixture_log_density_is_normalised_and_has_the_right_ends():
    line = torch.linspace(-12, 12, 48001, dtype=torch.float64)[:, None]
    means, stds = MIX_MEANS[:, :1], MIX_STDS
    for t in (0.0, 0.4, 1.0):
        p = paths.gaussian_mixture_log_density(line, t, means, stds, MIX_WEIGHTS).exp()
        assert abs(torch.trapezoid(p, line[:, 0]).item() - 1) < 1e-8
    x = torch.randn(30, 2, dtype=torch.float64)
    noise = -0.5 * (x**2).sum(1) - math.log(2 * math.pi)
    assert torch.allclose(paths.gaussian_mixture_log_density(x, 0.0, MIX_MEANS, MIX_STDS), noise, atol=1e-12)
    data_end = torch.logsumexp(torch.stack([
        MIX_WEIGHTS[k].log() - 0.5 * ((x - MIX_MEANS[k]) ** 2).sum(1) / MIX_STDS[k] ** 2
        - torch.log(2 * math.pi * MIX_STDS[k] ** 2) for k in range(3)
    ]), 0)
    got = paths.gaussian_mixture_log_density(x, 1.0, MIX_MEANS, MIX_STDS, MIX_WEIGHTS)
    assert torch.allclose(got, data_end, atol=1e-12)


def test_gaussian_mixture_velocity_tends_to_the_point_set_field_and_is_finite_at_both_ends():
    x = torch.randn(25, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    narrow = paths.gaussian_mixture_velocity(x, 0.5, MIX_MEANS, torch.full((3,), 1e-7, dtype=torch.float64))
    assert torch.allclose(narrow, paths.marginal_velocity(x, 0.5, MIX_MEANS), atol=1e-9)
    for dtype in (torch.float32, torch.float64):
        for t in (0.0, 1.0):
            v = paths.gaussian_mixture_velocity(x.to(dtype), t, MIX_MEANS, MIX_STDS, MIX_WEIGHTS)
            assert v.dtype == dtype and bool(torch.isfinite(v).all())
    # At t = 0 (CondOT) the velocity is E[X1] - x: the mixture mean minus the point.
    v0 = paths.gaussian_mixture_velocity(x, 0.0, MIX_MEANS, MIX_STDS, MIX_WEIGHTS)
    assert torch.allclose(v0, (MIX_WEIGHTS[:, None] * MIX_MEANS).sum(0) - x, atol=1e-12)


def test_gaussian_mixture_bad_input():
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="stds"):
        paths.gaussian_mixture_velocity(x, 0.5, MIX_MEANS, -MIX_STDS)
    with pytest.raises(ValueError, match="stds"):
        paths.gaussian_mixture_velocity(x, 0.5, MIX_MEANS, MIX_STDS[:2])
    with pytest.raises(ValueError, match="weights"):
        paths.gaussian_mixture_log_density(x, 0.5, MIX_MEANS, MIX_STDS, torch.tensor([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="means"):
        paths.gaussian_mixture_log_density(x, 0.5, MIX_MEANS[:, :1], MIX_STDS)


# ----------------------------------------------------------------------------------------------
# EMA: half-life and the weight of the start, against torch's AveragedModel as fit uses it
# ----------------------------------------------------------------------------------------------


def _ema_impulse(decay, updates):
    """The share of the first step's weights in fit's EMA: a parameter 1 at the first update, then 0."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    net = torch.nn.Linear(1, 1, bias=False).double()
    ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(decay))
    with torch.no_grad():
        net.weight.fill_(1.0)
        ema.update_parameters(net)
        net.weight.fill_(0.0)
        shares = []
        for _ in range(updates):
            ema.update_parameters(net)
            shares.append(ema.module.weight.item())
    return shares


@pytest.mark.parametrize("decay", [0.9, 0.99, 0.999])
def test_ema_half_life_and_start_weight_match_averaged_model(decay):
    half_life = train.ema_half_life(decay)
    assert half_life == pytest.approx(math.log(2) / -math.log(decay))
    shares = _ema_impulse(decay, int(3 * half_life) + 2)
    for n in (1, 5, len(shares)):
        assert shares[n - 1] == pytest.approx(train.ema_start_weight(decay, n), rel=1e-9)
    # The share falls below 1/2 exactly after ceil(half-life) updates.
    assert next(n for n, s in enumerate(shares, 1) if s <= 0.5) == math.ceil(half_life)
    # Negative control: the popular 1 / (1 - d) is the memory, not the half-life (off by ln 2).
    assert abs(1 / (1 - decay) - half_life) > 0.25 * half_life


def test_ema_figures_of_the_chapter_and_bad_input():
    assert round(train.ema_half_life(0.99)) == 69 and round(train.ema_half_life(0.9999)) == 6931
    assert train.ema_start_weight(0.99, 1000) < 5e-5 and round(train.ema_start_weight(0.9999, 1000), 2) == 0.90
    assert train.ema_start_weight(0.5, 0) == 1.0
    with pytest.raises(ValueError, match="decay"):
        train.ema_half_life(1.0)
    with pytest.raises(ValueError, match="steps"):
        train.ema_start_weight(0.9, -1)


# ----------------------------------------------------------------------------------------------
# Mixed precision: what stays in float32 (every device) and the CUDA path (on a GPU only)
# ----------------------------------------------------------------------------------------------


def test_time_features_stay_float32_under_bfloat16_autocast():

    embedding = models.SinusoidalTimeEmbedding(64)  # frequencies up to 1000, as in the U-Net
    t = torch.tensor([0.999, 1.0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = embedding(t)
        out = models.UNet(channels=8, num_classes=10)(torch.zeros(2, 1, 8, 8), t, torch.tensor([1, 2]))
        rounded = embedding(t.bfloat16())
    assert features.dtype == torch.float32 and out.dtype == torch.bfloat16
    assert (features[0] - features[1]).abs().max() > 0.5
    # Negative control: a time cast to bfloat16 first cannot tell 0.999 from 1.
    assert torch.equal(rounded[0], rounded[1])


def test_cfm_loss_is_float32_under_bfloat16_autocast():
    from fmbook import losses

    torch.manual_seed(0)
    net = models.UNet(channels=8)
    x1 = torch.rand(4, 1, 8, 8) * 2 - 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = losses.cfm_loss(net, torch.randn_like(x1), x1)
    assert loss.dtype == torch.float32


def test_the_ode_state_must_not_be_bfloat16():
    from fmbook import solvers

    def ones(x, t):
        return torch.ones_like(x)

    end32 = solvers.solve_ode(ones, torch.ones(3, 1), steps=256, method="euler").x
    end16 = solvers.solve_ode(ones, torch.ones(3, 1, dtype=torch.bfloat16), steps=256, method="euler").x
    assert torch.equal(end32, torch.full((3, 1), 2.0))
    assert torch.equal(end16.float(), torch.ones(3, 1))  # every increment of 1/256 rounded away
    # the increment is a tie, rounded to even: from a point whose last bit is odd it is doubled once,
    # then lost: not every x in [1, 2) loses it
    odd = torch.full((3, 1), 1 + 2**-7, dtype=torch.bfloat16)
    end_odd = solvers.solve_ode(ones, odd, steps=256, method="euler").x
    assert torch.equal(end_odd.float(), torch.full((3, 1), 1 + 2**-6))


def test_amp_flag_is_recorded_only_where_it_runs():
    x = torch.rand(16, 1, 8, 8) * 2 - 1
    torch.manual_seed(0)
    run = train.train_conditional_flow_matching(
        models.UNet(channels=8, num_classes=10), x, torch.arange(16) % 10,
        steps=2, batch_size=4, amp=True, device="cpu", progress=False,
    )
    assert run.amp is False  # ignored on the CPU: float32 throughout
    assert all(p.dtype == torch.float32 for p in run.model.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bfloat16 autocast runs on CUDA only")
def test_amp_on_cuda_runs_the_unet_in_bfloat16_and_keeps_float32_state():

    x = torch.rand(64, 1, 8, 8) * 2 - 1
    labels = torch.arange(64) % 10
    torch.manual_seed(0)
    net = models.UNet(channels=8, num_classes=10)
    seen = {}
    net.time_embedding[0].register_forward_hook(lambda m, i, o: seen.setdefault("features", o.dtype))
    net.conv_out.register_forward_hook(lambda m, i, o: seen.setdefault("output", o.dtype))
    run = train.train_conditional_flow_matching(
        net, x, labels, steps=5, batch_size=16, amp=True, ema_decay=0.9, device="cuda", progress=False
    )
    assert run.amp is True
    assert seen == {"features": torch.float32, "output": torch.bfloat16}
    assert all(p.dtype == torch.float32 and p.device.type == "cuda" for p in run.model.parameters())
    assert all(p.dtype == torch.float32 for p in run.ema_model.parameters())
    assert all(math.isfinite(v) for v in run.history)
    # The same run without amp gives a loss curve close to it (bfloat16 rounding only).
    torch.manual_seed(0)
    plain = train.train_conditional_flow_matching(
        models.UNet(channels=8, num_classes=10), x, labels, steps=5, batch_size=16, device="cuda", progress=False
    )
    assert not plain.amp
    assert max(abs(a - b) / b for a, b in zip(run.history, plain.history)) < 0.1


# ----------------------------------------------------------------------------------------------
# Memorisation: nearest-neighbour distances to the training and the held-out digits
# ----------------------------------------------------------------------------------------------


def test_nearest_neighbour_distances_against_scipy_and_for_copies():
    from scipy.spatial import cKDTree

    from fmbook import metrics

    g = torch.Generator().manual_seed(0)
    samples, reference = torch.randn(60, 1, 4, 4, generator=g), torch.randn(80, 1, 4, 4, generator=g)
    got = metrics.nearest_neighbour_distances(samples, reference)
    expected, _ = cKDTree(reference.reshape(80, -1).double().numpy()).query(samples.reshape(60, -1).double().numpy())
    assert got.shape == (60,) and got.dtype == torch.float64
    assert torch.allclose(got, torch.from_numpy(expected), atol=1e-12)
    # Copies are at distance exactly 0 (no cancellation), a 1 % perturbation is not.
    copies = reference[torch.randperm(80, generator=g)[:30]]
    assert torch.equal(metrics.nearest_neighbour_distances(copies, reference), torch.zeros(30, dtype=torch.float64))
    assert (metrics.nearest_neighbour_distances(copies * 1.01, reference) > 0).all()


def test_copied_digits_fail_the_nearest_neighbour_check_that_real_digits_pass():
    from fmbook import metrics

    digits = data.load_digits_split()
    perm = torch.randperm(digits.train_images.shape[0], generator=torch.Generator().manual_seed(1))
    part = digits.train_images[perm[:450]]

    def ratio(x):
        to_part = metrics.nearest_neighbour_distances(x, part)
        return (to_part.mean() / metrics.nearest_neighbour_distances(x, digits.heldout_images).mean()).item()

    fresh = ratio(digits.train_images[perm[450:900]])  # real digits outside the reference part
    assert ratio(part[:300]) == 0.0 and 0.9 < fresh < 1.1


def test_nearest_neighbour_distances_bad_input():
    from fmbook import metrics

    with pytest.raises(ValueError, match="samples"):
        metrics.nearest_neighbour_distances(torch.zeros(3), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="event shape"):
        metrics.nearest_neighbour_distances(torch.zeros(3, 2), torch.zeros(3, 3))


# ----------------------------------------------------------------------------------------------
# Practice: logit-normal training times, the EDM time grid, guidance in a limited interval
# ----------------------------------------------------------------------------------------------


def test_logit_normal_density_is_the_change_of_variables_and_matches_samples():
    t = torch.linspace(1e-4, 1 - 1e-4, 200001, dtype=torch.float64)
    for mean, std in ((0.0, 1.0), (0.5, 0.7)):
        density = train.logit_normal_density(t, mean, std)
        assert abs(torch.trapezoid(density, t).item() - 1) < 1e-3
        # Change of variables by autograd: the normal density of logit t times |d logit t / dt|.
        tt = t[::1000].clone().requires_grad_()
        logit = torch.log(tt) - torch.log1p(-tt)
        (jac,) = torch.autograd.grad(logit.sum(), tt)
        normal = torch.exp(-0.5 * ((logit.detach() - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))
        assert torch.allclose(train.logit_normal_density(tt.detach(), mean, std), normal * jac, rtol=1e-10)
        # Monte Carlo: the share of samples in [0.2, 0.4] against the integral of the density (5 sigma).
        samples = train.logit_normal_times(200_000, mean, std, generator=torch.Generator().manual_seed(0))
        share = ((samples >= 0.2) & (samples <= 0.4)).double().mean().item()
        band = (t >= 0.2) & (t <= 0.4)
        p = torch.trapezoid(density[band], t[band]).item()
        assert abs(share - p) < 5 * math.sqrt(p * (1 - p) / 200_000)
        # Negative control: uniform times fail the same check.
        uniform = torch.rand(200_000, generator=torch.Generator().manual_seed(0))
        share_u = ((uniform >= 0.2) & (uniform <= 0.4)).double().mean().item()
        assert abs(share_u - p) > 5 * math.sqrt(p * (1 - p) / 200_000)
    with pytest.raises(ValueError, match="t must"):
        train.logit_normal_density(torch.tensor([0.0, 0.5]))
    with pytest.raises(ValueError, match="std"):
        train.logit_normal_times(3, std=0.0)


def test_edm_time_grid_is_karras_noise_levels_on_the_condot_path():
    import numpy as np

    from fmbook import solvers

    grid = solvers.edm_time_grid(18)
    assert grid.shape == (19,) and grid[0] == 0 and grid[-1] == 1 and bool((grid.diff() > 0).all())
    i = np.arange(18)
    sigmas = (80 ** (1 / 7) + i / 17 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7  # eq. 5 of Karras et al.
    ratio = ((1 - grid[1:-1]) / grid[1:-1]).numpy()  # the noise-to-signal ratio of CondOT
    assert np.allclose(ratio, sigmas[1:], rtol=1e-12)
    with pytest.raises(ValueError, match="sigma_min must be < sigma_max"):
        solvers.edm_time_grid(5, sigma_min=1.0, sigma_max=0.5)


def test_edm_grid_beats_the_uniform_grid_on_a_field_that_is_sharp_at_the_data_end():
    from fmbook import solvers

    means = torch.tensor([[-1.0], [0.0], [1.2]], dtype=torch.float64)
    stds = torch.full((3,), 0.02, dtype=torch.float64)

    def velocity(x, t):
        return paths.gaussian_mixture_velocity(x, t, means, stds)

    x0 = torch.linspace(-2.5, 2.5, 101, dtype=torch.float64)[:, None]
    exact = solvers.solve_adaptive(velocity, x0, rtol=1e-10, atol=1e-10).x
    for steps in (20, 40):
        uniform = (solvers.solve_ode(velocity, x0, steps=steps, method="heun").x - exact).abs().mean()
        edm_end = solvers.solve_ode(velocity, x0, t_grid=solvers.edm_time_grid(steps), method="heun").x
        edm = (edm_end - exact).abs().mean()
        assert edm < 0.3 * uniform


class _Shift(torch.nn.Module):
    """A toy conditional field: v(x, t, c) = c (the null class 2 gives 0)."""

    num_classes, null_class = 2, 2

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t, c):
        return torch.where(c[:, None] == 2, 0.0, c[:, None].to(x) + 1.0).expand_as(x) + 0 * self.dummy


def test_guidance_interval_guides_only_inside():
    model, c = _Shift(), torch.tensor([0, 1, 1])
    x = torch.zeros(3, 2)
    full = guidance.guided_velocity(model, c, 3.0)
    limited = guidance.guided_velocity(model, c, 3.0, interval=(0.2, 0.6))
    inside, outside = torch.full((3,), 0.4), torch.full((3,), 0.8)
    assert torch.equal(limited(x, inside), full(x, inside))
    assert torch.equal(limited(x, outside), model(x, outside, c))  # w = 1 outside
    assert not torch.equal(limited(x, outside), full(x, outside))
    mixed = torch.tensor([0.4, 0.8, 0.1])
    expected = torch.stack([full(x, inside)[0], model(x, outside, c)[1], model(x, outside, c)[2]])
    assert torch.equal(limited(x, mixed), expected)
    # The sampler: with the whole interval [0, 1] it is plain guidance.
    a = guidance.sample_with_guidance(model, c, (2,), 3.0, steps=4, seed=0, interval=(0.0, 1.0))
    assert torch.equal(a, guidance.sample_with_guidance(model, c, (2,), 3.0, steps=4, seed=0))
    with pytest.raises(ValueError, match="t_low < t_high"):
        guidance.guided_velocity(model, c, 3.0, interval=(0.6, 0.2))


def test_gradient_accumulation_gives_the_gradient_of_the_whole_batch():
    from fmbook import losses

    torch.manual_seed(0)
    net = models.MLPVelocityField(dim=2, width=16, depth=2)
    x1, x0, t = data.sample_moons(64, generator=0), torch.randn(64, 2), torch.rand(64)
    net.zero_grad()
    losses.cfm_loss(net, x0, x1, t=t).backward()
    whole = [p.grad.clone() for p in net.parameters()]
    for k in (2, 4):
        net.zero_grad()
        for part in range(k):
            rows = slice(part * 64 // k, (part + 1) * 64 // k)
            (losses.cfm_loss(net, x0[rows], x1[rows], t=t[rows]) / k).backward()
        assert all(torch.allclose(p.grad, g, atol=1e-6) for p, g in zip(net.parameters(), whole))
    # Negative control: without the division by k the gradient is k times too large.
    net.zero_grad()
    for rows in (slice(0, 32), slice(32, 64)):
        losses.cfm_loss(net, x0[rows], x1[rows], t=t[rows]).backward()
    assert not all(torch.allclose(p.grad, g, atol=1e-6) for p, g in zip(net.parameters(), whole))


# ----------------------------------------------------------------------------------------------
# Bits per dimension of dequantized discrete data
# ----------------------------------------------------------------------------------------------


def test_dequantized_bits_per_dim_of_a_uniform_model_is_log2_of_the_levels():
    from fmbook import likelihood

    d, levels, width = 64, 17, 1 / 8  # the digits: 17 grey levels scaled to [-1, 1]
    # A density uniform on the 17 bins of width 1/8 around the levels -1, -7/8, ..., 1.
    log_p = torch.full((5,), -d * math.log(levels * width), dtype=torch.float64)
    bpd = likelihood.dequantized_bits_per_dim(log_p, d, width)
    assert torch.allclose(bpd, torch.full((5,), math.log2(levels), dtype=torch.float64), atol=1e-12)
    # Negative control: "+ log2(number of levels)" (right only for data scaled to [0, 1] as (k + u) / K)
    # overstates the digits' bits/dim by log2(17 / 8) = 1.09.
    naive = likelihood.bits_per_dim(log_p, d) + math.log2(levels)
    assert (naive - math.log2(levels)).min() > 1.0


def test_dequantized_bits_per_dim_bounds_the_exact_discrete_code_length():
    from fmbook import likelihood

    # 1-D: a Gaussian model N(0.1, 0.4^2) and grid points k / 8 - 1; the exact bin probability by erf.
    width, grid = 1 / 8, torch.arange(17, dtype=torch.float64) / 8 - 1
    mean, std = 0.1, 0.4

    def cdf(z):
        return 0.5 * (1 + torch.erf((z - mean) / (std * math.sqrt(2))))

    exact_bits = -torch.log2(cdf(grid + width / 2) - cdf(grid - width / 2))
    u = torch.rand(200_000, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = grid[None, :] + width * (u - 0.5)  # (draws, 17)
    log_p = -0.5 * ((y - mean) / std) ** 2 - math.log(std * math.sqrt(2 * math.pi))
    bound = likelihood.dequantized_bits_per_dim(log_p.reshape(-1), 1, width).reshape(y.shape).mean(0)
    assert bool((bound >= exact_bits - 1e-3).all())  # Jensen: an upper bound
    assert bool((bound - exact_bits < 0.05).all())  # and tight: the density is smooth on a bin
    # Negative control: without the - d ln(width) term the "bound" falls below the exact code length.
    assert bool((likelihood.bits_per_dim(log_p.reshape(-1), 1).reshape(y.shape).mean(0) < exact_bits).all())
    with pytest.raises(ValueError, match="bin_width"):
        likelihood.dequantized_bits_per_dim(log_p.reshape(-1), 1, 0.0)


def test_log_density_accepts_images():
    from fmbook import likelihood

    def shrink(x, t):  # dx/dt = -x: the log-density changes by the trace, -d per unit time
        return -x

    x = torch.randn(3, 1, 2, 2, dtype=torch.float64)
    result = likelihood.integrate_log_density(shrink, x, method="rk4", steps=50)
    assert result.x0.shape == x.shape
    flat = likelihood.integrate_log_density(shrink, x.reshape(3, 4), method="rk4", steps=50)
    assert torch.allclose(result.log_prob, flat.log_prob, atol=1e-12)

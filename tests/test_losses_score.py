"""Tests of the score-matching losses, the DDPM loss and Proposition 1 (score <-> velocity)."""

import math

import pytest
import torch

from fmbook import ddpm, losses, paths

DATA = torch.tensor([[1.0, 0.5], [-1.5, 0.0], [0.2, -2.0]], dtype=torch.float64)
SCHEDULERS = [paths.CondOTScheduler(), paths.CosineScheduler(), paths.VPScheduler(), paths.PolynomialScheduler(2.0)]


class Recorder(torch.nn.Module):
    """A model that returns a fixed function of x and records the times it was called at."""

    def __init__(self, f):
        super().__init__()
        self.f = f
        self.times = None

    def forward(self, x, t):
        self.times = t
        return self.f(x, t)


def gaussian_log_density(x, mean, std):
    """log N(x; mean, std^2 I) with x, mean (B, d) and std (B,)."""
    d = x.shape[1]
    return -((x - mean) ** 2).sum(1) / (2 * std**2) - d * torch.log(std) - 0.5 * d * math.log(2 * math.pi)


# ------------------------------------------------------------------ denoising score matching


@pytest.mark.parametrize("scheduler", SCHEDULERS, ids=repr)
def test_dsm_target_is_the_autograd_score_of_the_conditional_gaussian(scheduler):
    """With a zero model, the per-sample DSM loss is ||grad_x log N(x_t; alpha_t x1, sigma_t^2 I)||^2."""
    torch.manual_seed(0)
    x0, x1 = torch.randn(64, 2, dtype=torch.float64), torch.randn(64, 2, dtype=torch.float64)
    t = torch.rand(64, dtype=torch.float64) * 0.9 + 0.05
    path = paths.AffinePath(scheduler)
    zero = Recorder(lambda x, t: torch.zeros_like(x))
    per_sample = losses.denoising_score_matching_loss(zero, x0, x1, t, path, reduction="none")
    a, s, _, _ = scheduler(t)
    x_t = (a[:, None] * x1 + s[:, None] * x0).requires_grad_(True)
    log_p = gaussian_log_density(x_t, a[:, None] * x1, s)
    (score,) = torch.autograd.grad(log_p.sum(), x_t)
    torch.testing.assert_close(per_sample, (score**2).sum(1))
    # and a model equal to that score has zero loss
    exact = Recorder(lambda x, t_: -(x - scheduler(t_).alpha_t[:, None] * x1) / scheduler(t_).sigma_t[:, None] ** 2)
    assert losses.denoising_score_matching_loss(exact, x0, x1, t, path).item() < 1e-20


def test_noise_prediction_loss_is_dsm_weighted_by_sigma_squared():
    torch.manual_seed(1)
    x0, x1 = torch.randn(32, 2, dtype=torch.float64), torch.randn(32, 2, dtype=torch.float64)
    t = torch.rand(32, dtype=torch.float64) * 0.95
    sched = paths.CondOTScheduler()
    path = paths.AffinePath(sched)
    score_net = lambda x, t: torch.sin(x) - t[:, None] * x
    eps_net = lambda x, t: -sched(t).sigma_t[:, None] * score_net(x, t)
    dsm = losses.denoising_score_matching_loss(score_net, x0, x1, t, path, reduction="none")
    eps = losses.noise_prediction_loss(eps_net, x0, x1, t, path, reduction="none")
    torch.testing.assert_close(eps, sched(t).sigma_t ** 2 * dsm)


def test_score_losses_bad_input():
    x = torch.randn(4, 2)
    model = lambda x, t: x
    with pytest.raises(ValueError, match="sigma_t"):
        losses.denoising_score_matching_loss(model, x, x, 1.0)  # CondOT: sigma_1 = 0
    with pytest.raises(ValueError, match="reduction"):
        losses.noise_prediction_loss(model, x, x, 0.5, reduction="sum")
    with pytest.raises(ValueError, match="x0 and x1"):
        losses.noise_prediction_loss(model, x, torch.randn(4, 3), 0.5)
    with pytest.raises(ValueError, match="model"):
        losses.noise_prediction_loss(lambda x, t: x[:, :1], x, x, 0.5)
    with pytest.raises(ValueError, match="t"):
        losses.denoising_score_matching_loss(model, x, x, 1.5)


def test_theorem_20_marginal_and_conditional_score_matching_have_equal_gradients():
    """grad L_SM = grad L_CSM (Theorem 20), Monte Carlo with common samples: the difference of the
    two gradient estimates is within 4 standard errors of 0, while the gradients themselves are far from 0."""
    g = torch.Generator().manual_seed(0)
    n = 200_000
    z = DATA[torch.randint(0, 3, (n,), generator=g)]
    eps = torch.randn(n, 2, generator=g, dtype=torch.float64)
    t = torch.rand(n, generator=g, dtype=torch.float64) * 0.8 + 0.1
    sched = paths.CondOTScheduler()
    a, s, _, _ = sched(t)
    x = a[:, None] * z + s[:, None] * eps
    marginal = paths.marginal_score(x, t, DATA, sched)
    conditional = -eps / s[:, None]
    weight = torch.tensor([[0.3, -0.2], [0.1, 0.4]], dtype=torch.float64, requires_grad=True)
    bias = torch.tensor([0.2, -0.1], dtype=torch.float64, requires_grad=True)
    s_theta = x @ weight.T + bias - x  # a linear score model

    def per_sample_grads(target):
        # gradient of ||s_theta - target||^2 w.r.t. (weight, bias), sample by sample
        r = 2 * (s_theta - target)  # (n, 2)
        return torch.cat([(r[:, :, None] * x[:, None, :]).reshape(n, 4), r], 1).detach()

    gm, gc = per_sample_grads(marginal), per_sample_grads(conditional)
    diff = gm - gc
    se = diff.std(0) / math.sqrt(n)
    assert (diff.mean(0).abs() < 4 * se).all(), (diff.mean(0), se)
    assert (gm.mean(0).abs().max() > 50 * se.max()).item()
    # the loss difference does not depend on theta: L_SM - L_CSM = C (checked for two theta)
    def gap(w, b):
        st = x @ w.T + b - x
        return (((st - marginal) ** 2).sum(1) - ((st - conditional) ** 2).sum(1)).detach()

    zeros = torch.zeros(2, 2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    g1, g2 = gap(weight.detach(), bias.detach()), gap(*zeros)
    d = g1 - g2
    assert abs(d.mean().item()) < 4 * d.std().item() / math.sqrt(n)


# ------------------------------------------------------------------ the discrete DDPM loss


def test_ddpm_loss_by_hand():
    sch = ddpm.linear_schedule(50)
    x1, x0 = torch.randn(5, 2), torch.randn(5, 2)
    k = torch.tensor([1, 10, 25, 49, 50])
    model = Recorder(lambda x, t: 0.5 * x)
    value = losses.ddpm_loss(model, x1, sch, x0=x0, k=k, reduction="none")
    ab = sch.alpha_bar[k].float()[:, None]
    x_k = ab.sqrt() * x1 + (1 - ab).sqrt() * x0
    torch.testing.assert_close(value, ((0.5 * x_k - x0) ** 2).sum(1))
    torch.testing.assert_close(model.times, 1 - k.float() / 50)  # the book's time t_k = 1 - k / T
    drawn = losses.ddpm_loss(model, x1, sch, generator=torch.Generator().manual_seed(0))
    assert drawn.ndim == 0 and torch.isfinite(drawn)


def test_ddpm_loss_bad_input():
    sch = ddpm.linear_schedule(10)
    x = torch.randn(3, 2)
    model = lambda x, t: x
    with pytest.raises(TypeError, match="schedule"):
        losses.ddpm_loss(model, x, "linear")
    with pytest.raises(ValueError, match="k"):
        losses.ddpm_loss(model, x, sch, k=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="k"):
        losses.ddpm_loss(model, x, sch, k=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="x0 and x1"):
        losses.ddpm_loss(model, x, sch, x0=torch.randn(3, 3))


# ------------------------------------------------------------------ Proposition 1


@pytest.mark.parametrize("scheduler", SCHEDULERS, ids=repr)
def test_proposition_1_on_the_exact_marginal_fields(scheduler):
    """eq. 54 maps the exact marginal score to the exact marginal velocity, and eq. 55 back."""
    torch.manual_seed(2)
    x = 2 * torch.randn(100, 2, dtype=torch.float64)
    t = torch.rand(100, dtype=torch.float64) * 0.9 + 0.05
    u = paths.marginal_velocity(x, t, DATA, scheduler)
    s = paths.marginal_score(x, t, DATA, scheduler)
    torch.testing.assert_close(paths.velocity_from_score(s, x, t, scheduler), u, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(paths.score_from_velocity(u, x, t, scheduler), s, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("scheduler", SCHEDULERS, ids=repr)
def test_proposition_1_agrees_with_the_endpoint_conversion(scheduler):
    """An independent route: paths.convert goes through the predicted endpoints (x0, x1)."""
    torch.manual_seed(3)
    x, f = torch.randn(50, 2, dtype=torch.float64), torch.randn(50, 2, dtype=torch.float64)
    t = torch.rand(50, dtype=torch.float64) * 0.9 + 0.05
    torch.testing.assert_close(
        paths.velocity_from_score(f, x, t, scheduler), paths.convert(f, "score", "velocity", x, t, scheduler)
    )
    torch.testing.assert_close(
        paths.score_from_velocity(f, x, t, scheduler), paths.convert(f, "velocity", "score", x, t, scheduler)
    )
    back = paths.velocity_from_score(paths.score_from_velocity(f, x, t, scheduler), x, t, scheduler)
    torch.testing.assert_close(back, f)


def test_proposition_1_undefined_ends():
    x = torch.randn(4, 2)
    sched = paths.CondOTScheduler()
    with pytest.raises(ValueError, match="alpha_t = 0"):
        paths.velocity_from_score(x, x, 0.0, sched)  # the noise end of CondOT
    with pytest.raises(ValueError, match="sigma_t = 0"):
        paths.score_from_velocity(x, x, 1.0, sched)  # the data end
    assert torch.isfinite(paths.velocity_from_score(x, x, 0.0, sched, clamp=True)).all()
    assert torch.isfinite(paths.score_from_velocity(x, x, 1.0, sched, clamp=True)).all()
    with pytest.raises(ValueError, match="score and x"):
        paths.velocity_from_score(torch.randn(4, 3), x, 0.5, sched)

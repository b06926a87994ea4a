"""Chapter 7 rigor tests: the error factors of noise prediction at the noise end (DDIM's first step and the
probability-flow velocity), each against a direct perturbation experiment, with negative controls."""

import math

import pytest
import torch

from fmbook import ddpm, metrics, paths

pytestmark = pytest.mark.usefixtures("float64_by_default")


def _some_noise_model(x, t):
    """A fixed nonlinear noise predictor (any function of (x, t) will do: the DDIM step is affine in it)."""
    return torch.tanh(x) * (1 + t[:, None]) + 0.3 * torch.sin(3 * x[:, [1, 0]])


def _shifted(model, delta):
    return lambda x, t: model(x, t) + delta


def _measured_ddim_gain(schedule, steps, delta):
    """Perturb eps-hat by delta and measure the change of the first DDIM step, per unit of delta."""
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    clean = ddpm.ddim_sample(_some_noise_model, x, schedule, steps, return_trajectory=True).trajectory[:, 1]
    moved = ddpm.ddim_sample(_shifted(_some_noise_model, delta), x, schedule, steps, return_trajectory=True)
    change = moved.trajectory[:, 1] - clean
    gain = (change * delta).sum() / (delta * delta).sum()  # least squares: change = gain * delta
    residual = (change - gain * delta).norm() / change.norm()
    return gain.item(), residual.item()


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("steps", [50, 20, 10, 5])
def test_ddim_noise_gain_matches_a_perturbation_experiment(name, steps):
    schedule = ddpm.linear_schedule(1000) if name == "linear" else ddpm.cosine_schedule(1000)
    k, j = ddpm.ddim_timesteps(schedule.T, steps)[:2]
    delta = 1e-3 * torch.randn(64, 2, generator=torch.Generator().manual_seed(1))
    measured, residual = _measured_ddim_gain(schedule, steps, delta)
    predicted = ddpm.ddim_noise_gain(schedule, k, j)
    assert residual < 1e-6  # the change is exactly proportional to delta
    assert measured == pytest.approx(predicted, rel=1e-6)
    # Negative control: the amplification of x0-hat alone, sigma_T / alpha_T, fails the same check by far.
    naive = math.sqrt((1 - schedule.alpha_bar[k].item()) / schedule.alpha_bar[k].item())
    assert abs(measured) != pytest.approx(naive, rel=0.5)


def test_ddim_noise_gain_figures():
    linear, cosine = ddpm.linear_schedule(1000), ddpm.cosine_schedule(1000)
    first = {s: ddpm.ddim_timesteps(1000, s)[:2] for s in (50, 20, 10, 5)}
    lin = {s: abs(ddpm.ddim_noise_gain(linear, *first[s])) for s in first}
    assert lin[50] == pytest.approx(0.22, abs=0.005) and lin[20] == pytest.approx(0.64, abs=0.005)
    assert lin[10] == pytest.approx(1.61, abs=0.01) and lin[5] == pytest.approx(5.16, abs=0.01)
    assert abs(ddpm.ddim_noise_gain(cosine, *first[50])) == pytest.approx(631, rel=0.01)
    # The closed form, from alpha-bar directly.
    ab = linear.alpha_bar
    k, j = first[10]
    direct = math.sqrt(1 - ab[j]) - math.sqrt(ab[j]) * math.sqrt(1 - ab[k]) / math.sqrt(ab[k])
    assert ddpm.ddim_noise_gain(linear, k, j) == pytest.approx(direct, rel=1e-10)
    # The step to the very next level (j = k - 1) moves the state by an amount of order beta_k, not sigma/alpha.
    assert abs(ddpm.ddim_noise_gain(linear, 1000, 999)) < 0.02


@pytest.mark.parametrize("bad, match", [((0, 0), "k"), ((1001, 0), "k"), ((10, 10), "j"), ((10, -1), "j"),
                                        ((10.0, 0), "k"), ((10, 1.0), "j")])
def test_ddim_noise_gain_bad_input(bad, match):
    with pytest.raises((TypeError, ValueError), match=match):
        ddpm.ddim_noise_gain(ddpm.linear_schedule(1000), *bad)


def test_velocity_error_factor_at_the_noise_end():
    """The eps -> velocity coefficient b_0 = dsigma_0 - sigma_0 dalpha_0 / alpha_0 is about -beta_max / 2 = -10 for
    the linear schedule; it is what a perturbation of eps-hat does to the probability-flow velocity at t = 0."""
    linear = ddpm.DiscreteVPScheduler(ddpm.linear_schedule(1000))
    t0 = torch.zeros(1)
    _, b0 = paths.velocity_coefficients(t0, "epsilon", linear)
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(2))
    delta = 1e-3 * torch.randn(64, 2, generator=torch.Generator().manual_seed(3))
    t = torch.zeros(64)
    change = (ddpm.probability_flow_velocity(_shifted(_some_noise_model, delta), linear)(x, t)
              - ddpm.probability_flow_velocity(_some_noise_model, linear)(x, t))
    torch.testing.assert_close(change, b0 * delta, rtol=1e-6, atol=1e-12)
    assert b0.item() == pytest.approx(-10.1, abs=0.05)
    # Independently: dalpha / alpha at t = 0 is -(T / 2) log(1 - beta_T), about T beta_T / 2 = 10, and sigma_0 ~ 1.
    assert b0.item() == pytest.approx(-0.5 * 1000 * -math.log1p(-0.02), rel=1e-3)
    # Negative control: the x1-hat factor sigma_0 / alpha_0 (about 157) is not the velocity's factor.
    out = linear(t0)
    assert (out.sigma_t / out.alpha_t).item() != pytest.approx(abs(b0.item()), rel=0.5)
    assert (out.sigma_t / out.alpha_t).item() == pytest.approx(157.4, abs=0.1)


# ------------------------------------------------------------------ moment z-scores (the chain = closed form check)


def test_moment_zscores_are_standard_normal_under_the_claim():
    g = torch.Generator().manual_seed(4)
    cov = torch.tensor([[2.0, 0.6], [0.6, 1.0]])
    chol = torch.linalg.cholesky(cov)
    mean = torch.tensor([1.0, -2.0])
    zs = []
    for _ in range(300):
        x = mean + torch.randn(2000, 2, generator=g) @ chol.T
        z_mean, z_cov = metrics.moment_zscores(x, mean, cov)
        zs.append(torch.cat([z_mean, z_cov[0, :], z_cov[1, 1:]]))
    zs = torch.stack(zs)
    # Each entry: mean about 0 and standard deviation about 1 (300 draws: standard errors 0.06 and 0.04).
    assert zs.mean(0).abs().max() < 0.25
    assert ((zs.std(0) - 1).abs() < 0.15).all()
    # Negative control: a claimed covariance 20% too large is many standard errors off.
    x = mean + torch.randn(2000, 2, generator=g) @ chol.T
    _, z_cov = metrics.moment_zscores(x, mean, 1.2 * cov)
    assert z_cov.diagonal().abs().min() > 4


def test_moment_zscores_bad_input():
    with pytest.raises(ValueError, match="mean"):
        metrics.moment_zscores(torch.randn(10, 2), torch.zeros(3), torch.eye(2))
    with pytest.raises(ValueError, match="cov"):
        metrics.moment_zscores(torch.randn(10, 2), torch.zeros(2), torch.eye(3))
    with pytest.raises(ValueError, match="samples"):
        metrics.moment_zscores(torch.randn(1, 2), torch.zeros(2), torch.eye(2))


def test_forward_chain_matches_the_closed_form_in_standard_errors():
    """Given the data points, x_k - sqrt(abar_k) x_0 is N(0, (1 - abar_k) I); a 20% variance error is caught."""
    linear = ddpm.linear_schedule(1000)
    x_data = torch.randn(4000, 2, generator=torch.Generator().manual_seed(5)) * torch.tensor([1.0, 0.5]) + 0.3
    chain = ddpm.forward_chain(x_data, linear, generator=torch.Generator().manual_seed(6), keep=[100, 600])
    for k, x_k in chain.items():
        ab = linear.alpha_bar[k].item()
        r = x_k - math.sqrt(ab) * x_data
        z_mean, z_cov = metrics.moment_zscores(r, torch.zeros(2), (1 - ab) * torch.eye(2))
        assert max(z_mean.abs().max(), z_cov.abs().max()) < 4
        _, z_wrong = metrics.moment_zscores(r, torch.zeros(2), 1.2 * (1 - ab) * torch.eye(2))
        assert z_wrong.diagonal().abs().min() > 4


# ------------------------------------------------------------------ weighted score matching (section 7.2)


def test_weighted_conditional_score_matching_has_the_gradient_of_weighted_score_matching():
    """With a weight lambda(t), E lambda ||s - cond. score||^2 and E lambda ||s - marginal score||^2 have the same
    gradient (Theorem thm-csm at each t); the unweighted score-matching gradient is a different one."""
    from fmbook import losses

    data = torch.tensor([[-1.0, 0.5], [1.0, -0.5], [0.3, 1.2]])
    path = paths.AffinePath(paths.CondOTScheduler())
    n = 50_000
    g = torch.Generator().manual_seed(7)
    x1 = data[torch.randint(0, 3, (n,), generator=g)]
    x0 = torch.randn(n, 2, generator=g)
    t = 0.1 + 0.8 * torch.rand(n, generator=g)
    lam = 1 + 4 * t**2
    weight, bias, slope = (torch.randn(shape, generator=g).requires_grad_() for shape in [(2, 2), (2,), (2,)])
    params = (weight, bias, slope)

    def model(x, tt):
        return x @ weight.T + bias + tt[:, None] * slope

    x_t = path.sample(x0, x1, t).x_t
    conditional = -x0 / path.scheduler(t).sigma_t[:, None]
    marginal = paths.marginal_score(x_t, t, data, path.scheduler)
    per_csm = losses.denoising_score_matching_loss(model, x0, x1, t=t, path=path, reduction="none")
    per_sm = (model(x_t, t) - marginal).pow(2).sum(1)
    grad = {name: torch.cat([p.flatten() for p in torch.autograd.grad(loss, params, retain_graph=True)])
            for name, loss in [("csm", (lam * per_csm).mean()), ("sm", (lam * per_sm).mean()), ("sm1", per_sm.mean())]}

    def per_sample_gradient(residual):
        """d/d(params) of per-sample losses whose gradient in s is 2 * residual, shape (n, 8)."""
        r = 2 * residual.detach()
        return torch.cat([(r[:, :, None] * x_t.detach()[:, None, :]).flatten(1), r, r * t[:, None]], 1)

    s = model(x_t, t).detach()
    same = per_sample_gradient(lam[:, None] * (marginal - conditional))  # csm minus sm, weighted alike
    other = per_sample_gradient(lam[:, None] * (s - conditional) - (s - marginal))  # csm minus unweighted sm
    z_same = (grad["csm"] - grad["sm"]) / (same.std(0) / math.sqrt(n))
    z_other = (grad["csm"] - grad["sm1"]) / (other.std(0) / math.sqrt(n))
    torch.testing.assert_close(grad["csm"] - grad["sm"], same.mean(0), rtol=1e-6, atol=1e-8)  # the formula
    print(f"largest |z|: weighted alike {z_same.abs().max():.2f}, against the unweighted {z_other.abs().max():.1f}")
    assert z_same.abs().max() < 4
    assert z_other.abs().max() > 10  # negative control: the weight matters to the gradient


def test_velocity_error_factor_of_the_cosine_schedule():
    """The clipped cosine schedule (abar_T about 2.4e-9, beta_T = 0.999) does amplify: |b_0| about 3.5e3, measured
    with the exact conversion (no floor), and DDIM's first step with 50 steps about 631."""
    cosine = ddpm.cosine_schedule(1000)
    assert cosine.alpha_bar[-1].item() == pytest.approx(2.43e-9, rel=0.01)
    sched = ddpm.DiscreteVPScheduler(cosine)
    t = torch.zeros(64)
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(8))
    delta = 1e-6 * torch.randn(64, 2, generator=torch.Generator().manual_seed(9))
    eps = _some_noise_model(x, t)
    change = (paths.convert(eps + delta, "epsilon", "velocity", x, t, sched)
              - paths.convert(eps, "epsilon", "velocity", x, t, sched))
    _, b0 = paths.velocity_coefficients(t[:1], "epsilon", sched)
    torch.testing.assert_close(change, b0 * delta, rtol=1e-5, atol=1e-12)
    # dalpha / alpha on the last interval is -(T / 2) log(1 - beta_T) = 500 log(1000).
    assert b0.item() == pytest.approx(-500 * math.log(1000), rel=1e-3)
    assert abs(b0.item()) > 300 * abs(paths.velocity_coefficients(
        t[:1], "epsilon", ddpm.DiscreteVPScheduler(ddpm.linear_schedule(1000)))[1].item())

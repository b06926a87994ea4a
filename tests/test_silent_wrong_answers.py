"""Inputs that once gave a wrong answer without a word: now a correct result or a clear error.

Each case was found by a fuzz of the public API (issue 21, item 4); each test failed before its fix.
"""

import math

import pytest
import torch

from fmbook import ddpm, guidance, likelihood, losses, ot, paths, scaling, solvers
from fmbook.models import ConditionalMLPVelocityField, MLPVelocityField, check_labels

# --------------------------------------------------------------------------- exact marginal fields


def _exact_log_weights(x: torch.Tensor, t: float, data: torch.Tensor) -> torch.Tensor:  # noqa: D103
    """CondOT posterior log-weights in float64 with |x|^2 left out (it cancels in the softmax):
    (2 a <x, z> - a^2 |z|^2) / (2 sigma^2), exact to rounding however far x is from the data."""
    x, data = x.double(), data.double()
    a, s = t, 1 - t
    return (2 * a * x @ data.T - a * a * (data**2).sum(1)) / (2 * s * s)


@pytest.mark.parametrize(("far", "t"), [(1e4, 3e-4), (1e20, 0.5)])
def test_posterior_mean_far_from_the_data_in_float32(far, t):
    # Once: NaN at 1e20 (the squared distances overflow float32), and at 1e4 a mean off by 1.2
    # (|x - a z|^2 ~ 1e8 rounds away the differences between data points: log-weights off by ~10).
    g = torch.Generator().manual_seed(0)
    data = torch.randn(40, 2, generator=g)
    direction = torch.tensor([[0.6, 0.8], [-1.0, 0.0], [0.0, -1.0]])
    x = far * direction
    expected = torch.softmax(_exact_log_weights(x, t, data), dim=1) @ data.double()
    got = paths.posterior_mean(x, t, data)
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    assert torch.allclose(got.double(), expected, atol=1e-5)
    # Negative control: the direct formula in float32, which the function used to evaluate.
    naive = torch.softmax(-((x[:, None] - t * data[None]) ** 2).sum(-1) / (2 * (1 - t) ** 2), dim=1) @ data
    assert not torch.allclose(naive.double(), expected, atol=0.1)


def test_marginal_score_and_velocity_at_1e20_are_finite_and_exact():
    data = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    x = torch.tensor([[1e20, 1e20]])
    # The posterior sits on (1, 1) (the larger <x, z>): score -(x - 0.5 (1, 1)) / 0.25, velocity
    # ((1, 1) - x) / 0.5; both representable in float32.
    score = paths.marginal_score(x, 0.5, data)
    velocity = paths.marginal_velocity(x, 0.5, data)
    assert torch.isfinite(score).all() and torch.isfinite(velocity).all()
    assert torch.allclose(score.double(), -(x.double() - 0.5) / 0.25, rtol=1e-6)
    assert torch.allclose(velocity.double(), (1 - x.double()) / 0.5, rtol=1e-6)
    assert paths.posterior_mean(x, 0.5, data).tolist() == [[1.0, 1.0]]


@pytest.mark.parametrize("t", [0.0, 0.01])
def test_marginal_log_density_is_finite_where_its_value_is_a_float32(t):
    # log p ~ -2.2e38 fits in float32, but |x|^2 = 4.5e38 does not: once -inf.
    g = torch.Generator().manual_seed(1)
    data = torch.randn(30, 2, generator=g)
    x = torch.tensor([[1.5e19, 1.5e19], [-1.5e19, 1e19]])
    got = paths.marginal_log_density(x, t, data)
    xd, dd = x.double(), data.double()
    s = 1 - t
    log_w = -((xd[:, None] - t * dd[None]) ** 2).sum(-1) / (2 * s * s)  # no overflow in float64
    expected = torch.logsumexp(log_w, dim=1) - math.log(30) - math.log(2 * math.pi) - 2 * math.log(s)
    assert torch.isfinite(got).all()
    assert torch.allclose(got.double(), expected, rtol=1e-6)
    # Control: far enough that the true value is below -3.4e38, float32 has no finite answer.
    assert paths.marginal_log_density(torch.tensor([[1e20, 1e20]]), 0.5, data).item() == -math.inf


def test_marginal_fields_near_the_data_are_unchanged_by_the_far_field_guard():
    # Inside the data's box the distances are the same exact differences as before: compare with
    # the direct float64 formula at a small sigma, where cancellation would show.
    g = torch.Generator().manual_seed(2)
    data = torch.randn(50, 2, generator=g)
    x = 0.999 * data[:7] + 1e-3 * torch.randn(7, 2, generator=g)
    t = 0.999
    log_w = -((x.double()[:, None] - t * data.double()[None]) ** 2).sum(-1) / (2 * (1 - t) ** 2)
    expected = torch.softmax(log_w, dim=1) @ data.double()
    assert torch.allclose(paths.posterior_mean(x, t, data).double(), expected, atol=1e-5)


# --------------------------------------------------------------------------- losses


@pytest.mark.parametrize("offset", [1e3, 1e4])
def test_squared_euclidean_is_exact_at_large_offsets(offset):
    # The Bregman form |a|^2 - |b|^2 - <2b, a - b> was 7 percent off at 1e3 and 29x at 1e4.
    g = torch.Generator().manual_seed(0)
    a = offset + torch.randn(256, 3, generator=g)
    b = offset + torch.randn(256, 3, generator=g)
    reference = ((a.double() - b.double()) ** 2).sum(1)
    got = losses.squared_euclidean(a, b)
    assert torch.allclose(got.double(), reference, rtol=1e-5)
    bregman_form = losses.Bregman("phi = |x|^2", losses.squared_euclidean.phi, losses.squared_euclidean.grad_phi)
    assert not torch.allclose(bregman_form(a, b).double(), reference, rtol=1e-2)  # negative control
    # Still the Bregman divergence of |x|^2: the same Hessian and gradient in b.
    assert torch.allclose(losses.squared_euclidean.gradient_in_b(a, b), 2 * (b - a))


# --------------------------------------------------------------------------- solvers


@pytest.mark.parametrize("step", [solvers.euler_step, solvers.midpoint_step, solvers.heun_step, solvers.rk4_step])
def test_step_functions_refuse_a_velocity_of_the_wrong_shape_and_nan_times(step):
    x = torch.ones(3, 2)
    with pytest.raises(ValueError, match=r"velocity\(x, t\) must return a tensor of shape \(3, 2\)"):
        step(lambda y, t: y[:, :1], x, 0.0, 0.1)  # once broadcast silently to (3, 2)
    with pytest.raises(ValueError, match="t must be finite"):
        step(lambda y, t: y, x, math.nan, 0.1)
    with pytest.raises(ValueError, match="h must be finite"):
        step(lambda y, t: y, x, 0.0, torch.tensor(math.inf))
    assert torch.allclose(step(lambda y, t: torch.zeros_like(y), x, 0.0, 0.1), x)  # control


def _nan_field(x, t):
    return torch.where(t[:, None] > 0.5, torch.full_like(x, math.nan), -x)


@pytest.mark.parametrize(
    "sample",
    [
        lambda v: solvers.solve_ode(v, torch.ones(4, 2), steps=4),
        lambda v: solvers.solve_adaptive(v, torch.ones(4, 2)),
        lambda v: solvers.euler_maruyama(v, torch.ones(4, 2), 0.1, steps=4, generator=0),
    ],
    ids=["solve_ode", "solve_adaptive", "euler_maruyama"],
)
def test_a_velocity_that_returns_nan_is_named_not_passed_on(sample):
    with pytest.raises(ValueError, match=r"(velocity|drift).*NaN or inf"):
        sample(_nan_field)
    assert torch.isfinite(sample(lambda x, t: -x).x).all()  # control: the same solve of a sound field


def test_ddpm_samplers_name_a_model_that_returns_nan():
    schedule = ddpm.linear_schedule(10)
    bad = lambda x, t: torch.full_like(x, math.nan)  # noqa: E731
    with pytest.raises(ValueError, match="model returned NaN or inf"):
        ddpm.ancestral_sample(bad, torch.randn(3, 2), schedule)
    with pytest.raises(ValueError, match="model returned NaN or inf"):
        ddpm.ddim_sample(bad, torch.randn(3, 2), schedule, steps=5)
    assert torch.isfinite(ddpm.ddim_sample(lambda x, t: 0 * x, torch.randn(3, 2), schedule, steps=5).x).all()


def test_guided_sampling_names_a_model_with_nan_weights():
    torch.manual_seed(0)
    model = ConditionalMLPVelocityField(dim=2, num_classes=2, width=8, depth=1)
    with torch.no_grad():
        model.net[-1].bias.fill_(math.nan)
    with pytest.raises(ValueError, match="velocity returned NaN or inf"):
        guidance.sample_with_guidance(model, torch.tensor([0, 1]), (2,), steps=2, seed=0)


def test_log_prob_names_a_model_that_returns_nan():
    with pytest.raises(ValueError, match="model returned NaN or inf"):
        likelihood.log_prob(lambda x, t: x * math.nan, torch.zeros(3, 2), method="euler", steps=2)


# --------------------------------------------------------------------------- flags


STRING_FLAGS = [
    ("clamp", lambda: paths.velocity_from_score(torch.ones(2, 2), torch.ones(2, 2), 0.5, paths.CondOTScheduler(),
                                                clamp="no")),
    ("clamp", lambda: paths.score_from_velocity(torch.ones(2, 2), torch.ones(2, 2), 0.5, paths.CondOTScheduler(),
                                                clamp="no")),
    ("return_trajectory", lambda: solvers.solve_ode(lambda x, t: x, torch.ones(2, 2), steps=2,
                                                    return_trajectory="no")),
    ("return_trajectory", lambda: solvers.euler_maruyama(lambda x, t: x, torch.ones(2, 2), 0.0, steps=2,
                                                         return_trajectory="no")),
    ("return_trajectory", lambda: ddpm.ancestral_sample(lambda x, t: 0 * x, torch.ones(2, 2), ddpm.linear_schedule(3),
                                                        return_trajectory="no")),
    ("return_trajectory", lambda: ddpm.ddim_sample(lambda x, t: 0 * x, torch.ones(2, 2), ddpm.linear_schedule(3), 2,
                                                   return_trajectory="no")),
    ("create_graph", lambda: likelihood.exact_divergence(lambda x, t: x, torch.ones(2, 2), torch.zeros(2),
                                                         create_graph="no")),
    ("create_graph", lambda: likelihood.log_prob(lambda x, t: x, torch.ones(2, 2), method="euler", steps=2,
                                                 create_graph="no")),
    ("allow_null", lambda: check_labels(torch.tensor([0, 1]), 2, 2, allow_null="no")),
    ("restore_rng", lambda: scaling.load_checkpoint("missing.pt", MLPVelocityField(), restore_rng="no")),
    ("adjoint", lambda: solvers.differentiable_solve(MLPVelocityField(width=4, depth=1), torch.ones(2, 2), steps=2,
                                                     method="euler", adjoint="no")),
]


@pytest.mark.parametrize(("flag", "call"), STRING_FLAGS, ids=[f for f, _ in STRING_FLAGS])
def test_string_flags_are_refused_not_read_as_true(flag, call):
    with pytest.raises(TypeError, match=f"{flag} must be"):
        call()


def test_a_true_flag_still_works():
    sol = solvers.solve_ode(lambda x, t: x, torch.ones(2, 2), steps=2, return_trajectory=True)
    assert sol.trajectory.shape == (2, 3, 2)


# --------------------------------------------------------------------------- optimal transport


def test_plan_cost_refuses_arrays_that_are_not_couplings():
    x0, x1 = torch.zeros(2, 1), torch.ones(2, 1)
    with pytest.raises(ValueError, match="plan must be non-negative"):
        ot.plan_cost(-torch.full((2, 2), 0.25), x0, x1)  # once -1.0
    with pytest.raises(ValueError, match="plan must have total mass 1"):
        ot.plan_cost(torch.ones(2, 2), x0, x1)  # once 4.0, four times the cost of any coupling
    assert ot.plan_cost(torch.full((2, 2), 0.25), x0, x1) == pytest.approx(1.0)  # control


def test_sinkhorn_pairing_of_identical_batches_does_not_report_a_zero_reg():
    # All costs 0: the relative reg 0.05 times the mean cost was passed on as 0.0 and refused
    # ("reg must be > 0, got 0.0") although the caller gave 0.05. Every coupling is optimal.
    i, j = ot.ot_pair_indices(torch.zeros(6, 2), torch.zeros(6, 2), method="sinkhorn", reg=0.05,
                              generator=torch.Generator().manual_seed(0))
    assert i.shape == j.shape == (6,) and int(i.max()) < 6 and int(j.max()) < 6


# --------------------------------------------------------------------------- divergences


def _constant(x, t):
    return torch.ones_like(x) * 2.0


@pytest.mark.parametrize(
    "divergence",
    [
        lambda v, x, t: likelihood.exact_divergence(v, x, t)[1],
        lambda v, x, t: likelihood.hutchinson_divergence(v, x, t, likelihood.draw_probes(x, 3, "rademacher"))[1],
    ],
    ids=["exact", "hutchinson"],
)
def test_a_velocity_constant_in_x_has_divergence_zero(divergence):
    # Once: "element 0 of tensors does not require grad and does not have a grad_fn".
    x, t = torch.randn(5, 2), torch.rand(5)
    assert torch.equal(divergence(_constant, x, t), torch.zeros(5))
    assert torch.allclose(divergence(lambda y, s: 3 * y, x, t), torch.full((5,), 6.0))  # control: div 3x = 6


def test_log_prob_of_a_translation_is_the_source_density():
    # The flow of a constant velocity c is x0 + c: log p_1(x) = log N(x - c; 0, I), divergence 0.
    x = torch.randn(4, 2)
    lp = likelihood.log_prob(_constant, x, method="rk4", steps=4)
    assert torch.allclose(lp, likelihood.gaussian_log_prob(x - 2.0), atol=1e-5)
    lp_h = likelihood.log_prob(_constant, x, method="euler", steps=2, divergence="hutchinson")
    assert torch.allclose(lp_h, likelihood.gaussian_log_prob(x - 2.0), atol=1e-5)

"""Each checker of fmbook.exercises accepts a correct answer and rejects typical mistakes."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch
from exercise_answers import passes

from fmbook import exercises as ex
from fmbook import losses, paths, solvers

# ----------------------------------------------------------------- answers a reader might write


def col(t):
    return t[:, None]


def condot_velocity(x0, x1, t):
    return x1 - x0


def cosine_velocity(x0, x1, t):
    h = torch.pi / 2
    return h * torch.cos(h * col(t)) * x1 - h * torch.sin(h * col(t)) * x0


def condot_velocity_at_point(x, x1, t):
    return (x1 - x) / (1 - col(t))


def euler(velocity, x, t, h):
    return x + h * velocity(x, t)


def midpoint(velocity, x, t, h):
    return x + h * velocity(x + 0.5 * h * velocity(x, t), t + 0.5 * h)


def condot_score(v, x, t):
    return (col(t) * v - x) / (1 - col(t))


def marginal_velocity(x, t, data):
    # posterior weights w_i(x) ∝ exp(-|x - t z_i|^2 / (2 (1 - t)^2)); u = sum_i w_i (z_i - x) / (1 - t)
    t = col(t)
    sq = ((x[:, None, :] - t[:, :, None] * data[None]) ** 2).sum(-1)
    w = torch.softmax(-sq / (2 * (1 - t) ** 2), dim=1)
    return (w @ data - x) / (1 - t)


def cfm_loss(model, x0, x1, t):
    x_t = col(t) * x1 + (1 - col(t)) * x0
    return ((model(x_t, t) - (x1 - x0)) ** 2).sum(dim=1).mean()


def ot_perm(x0, x1):
    plan = ot.emd(np.full(len(x0), 1 / len(x0)), np.full(len(x1), 1 / len(x1)), ot.dist(x0.numpy(), x1.numpy()))
    return torch.as_tensor(plan.argmax(1))


def ot_pairs(x0, x1):
    perm = ot_perm(x0, x1)
    order = torch.randperm(len(x0), generator=torch.Generator().manual_seed(1))
    return x0[order], x1[perm][order]


# ------------------------------------------------------------------------------ the checkers




@pytest.mark.parametrize(
    ("checker", "answer", "kwargs"),
    [
        (ex.check_conditional_velocity, condot_velocity, {}),
        (ex.check_conditional_velocity, cosine_velocity, {"scheduler": paths.CosineScheduler()}),
        (ex.check_conditional_velocity, condot_velocity_at_point, {"form": "point"}),
        (ex.check_euler_step, euler, {}),
        (ex.check_euler_step, solvers.euler_step, {}),
        (ex.check_midpoint_step, midpoint, {}),
        (ex.check_midpoint_step, solvers.midpoint_step, {}),
        (ex.check_score_from_velocity, condot_score, {}),
        (ex.check_marginal_velocity, marginal_velocity, {}),
        (ex.check_marginal_velocity, paths.marginal_velocity, {}),
        (ex.check_cfm_loss, cfm_loss, {}),
        (ex.check_cfm_loss, lambda m, x0, x1, t: losses.cfm_loss(m, x0, x1, t), {}),
        (ex.check_ot_pairing, ot_perm, {}),
        (ex.check_ot_pairing, ot_pairs, {}),
    ],
)
def test_checkers_accept_correct_answers(checker, answer, kwargs, capsys):
    for seed in (0, 1):
        assert passes(checker(answer, seed=seed, **kwargs))
    out = capsys.readouterr().out
    assert f"{checker.__name__}: PASSED" in out
    assert "FAIL" not in out


def _rejects(checker, answer, hint_word: str | None = None, **kwargs) -> str:
    result = checker(answer, **kwargs)
    assert not passes(result)
    first = result.failures[0]
    assert first.expected is not None and first.detail
    if hint_word is not None:
        assert hint_word in first.hint, first.hint
    return result.report()


def test_conditional_velocity_rejects_typical_mistakes():
    _rejects(ex.check_conditional_velocity, lambda x0, x1, t: x0 - x1, "sign")
    _rejects(ex.check_conditional_velocity, lambda x0, x1, t: col(t) * x1 + (1 - col(t)) * x0, "x_t")
    # the derivative of the cosine path without its factor pi / 2
    no_factor = lambda x0, x1, t: torch.cos(torch.pi / 2 * col(t)) * x1 - torch.sin(torch.pi / 2 * col(t)) * x0
    _rejects(ex.check_conditional_velocity, no_factor, scheduler=paths.CosineScheduler())
    # the reversed time convention on the cosine path: x_t = cos(pi t / 2) x1 + sin(pi t / 2) x0
    reversed_time = lambda x0, x1, t: cosine_velocity(x1, x0, t)
    _rejects(ex.check_conditional_velocity, reversed_time, "reversed", scheduler=paths.CosineScheduler())
    _rejects(ex.check_conditional_velocity, lambda x, x1, t: (x - x1) / col(t), "reversed", form="point")
    _rejects(ex.check_conditional_velocity, lambda x, x1, t: x1 - x, "1 / sigma_t", form="point")


def test_step_checkers_reject_typical_mistakes():
    _rejects(ex.check_euler_step, lambda v, x, t, h: x + v(x, t), "step size")
    _rejects(ex.check_euler_step, lambda v, x, t, h: x - h * v(x, t), "backwards")
    _rejects(ex.check_euler_step, lambda v, x, t, h: x + h * v(x, t + h), "t + h")
    _rejects(ex.check_midpoint_step, euler, "Euler")
    _rejects(ex.check_midpoint_step, lambda v, x, t, h: x + h * v(x + 0.5 * h * v(x, t), t), "t + h/2")
    _rejects(ex.check_midpoint_step, lambda v, x, t, h: x + h * v(x + h * v(x, t), t + 0.5 * h), "h/2")
    # Heun's method is second order too, but it is not the midpoint step
    _rejects(ex.check_midpoint_step, solvers.heun_step)


def test_score_checker_rejects_typical_mistakes():
    _rejects(ex.check_score_from_velocity, lambda v, x, t: -condot_score(v, x, t), "sign")
    _rejects(ex.check_score_from_velocity, lambda v, x, t: col(t) * v - x, "division by sigma_t")
    reversed_time = lambda v, x, t: ((1 - col(t)) * v - x) / col(t)  # t and 1 - t swapped
    _rejects(ex.check_score_from_velocity, reversed_time)


def test_marginal_velocity_checker_rejects_typical_mistakes():
    plain_mean = lambda x, t, data: ((data[None] - x[:, None]) / (1 - t[:, None, None])).mean(1)
    _rejects(ex.check_marginal_velocity, plain_mean, "plain average")
    _rejects(ex.check_marginal_velocity, lambda x, t, data: -marginal_velocity(x, t, data), "sign")
    no_square = lambda x, t, data: marginal_velocity(x, t, data) * (1 - col(t))  # a missing 1 / (1 - t)
    _rejects(ex.check_marginal_velocity, no_square)


def test_cfm_loss_checker_rejects_typical_mistakes():
    def sign(model, x0, x1, t):
        x_t = col(t) * x1 + (1 - col(t)) * x0
        return ((model(x_t, t) - (x0 - x1)) ** 2).sum(1).mean()

    def reversed_time(model, x0, x1, t):
        x_t = (1 - col(t)) * x1 + col(t) * x0
        return ((model(x_t, t) - (x0 - x1)) ** 2).sum(1).mean()

    def mse(model, x0, x1, t):
        x_t = col(t) * x1 + (1 - col(t)) * x0
        return torch.nn.functional.mse_loss(model(x_t, t), x1 - x0)

    def detached(model, x0, x1, t):
        return cfm_loss(model, x0, x1, t).detach()

    _rejects(ex.check_cfm_loss, sign, "wrong sign")
    _rejects(ex.check_cfm_loss, reversed_time, "reversed")
    report = _rejects(ex.check_cfm_loss, mse, "averages over the d coordinates")
    assert "F.mse_loss" in report
    assert "detached" in _rejects(ex.check_cfm_loss, detached)
    # the same loss up to a constant factor is accepted when asked
    assert passes(ex.check_cfm_loss(mse, up_to_scale=True))
    assert not passes(ex.check_cfm_loss(sign, up_to_scale=True))


def test_ot_checker_rejects_typical_mistakes():
    _rejects(ex.check_ot_pairing, lambda x0, x1: torch.arange(len(x0)), "independent")
    greedy = lambda x0, x1: torch.cdist(x0, x1).argmin(1)  # usually not a permutation
    assert "permutation" in _rejects(ex.check_ot_pairing, greedy)
    def plain_distance(x0, x1):
        w = np.full(len(x0), 1 / len(x0))
        return torch.as_tensor(ot.emd(w, w, ot.dist(x0.numpy(), x1.numpy(), "euclidean")).argmax(1))

    _rejects(ex.check_ot_pairing, plain_distance, "squared distance")
    _rejects(ex.check_ot_pairing, lambda x0, x1: (x0, x1.flip(0)))
    assert "rows of the input" in _rejects(ex.check_ot_pairing, lambda x0, x1: (x0, x1 + 1))


def test_failure_report_shows_input_expected_received(capsys):
    ex.check_euler_step(lambda v, x, t, h: x + v(x, t))
    out = capsys.readouterr().out
    for word in ("FAILED", "input  x =", "expected", "received", "largest difference", "hint:"):
        assert word in out


def test_errors_and_wrong_outputs_are_failed_cases_not_crashes():
    def raises(v, x, t, h):
        raise RuntimeError("not written yet")

    assert "RuntimeError: not written yet" in _rejects(ex.check_euler_step, raises)
    assert "must return shape" in _rejects(ex.check_euler_step, lambda v, x, t, h: x[:, :1])
    assert "torch.Tensor" in _rejects(ex.check_euler_step, lambda v, x, t, h: x.numpy())
    assert "scalar" in _rejects(ex.check_cfm_loss, lambda m, x0, x1, t: (x1 - x0) ** 2)
    assert "NaN" in _rejects(ex.check_score_from_velocity, lambda v, x, t: x * float("nan"))


def test_verbose_false_prints_nothing_and_checks_are_seeded(capsys):
    a = ex.check_euler_step(euler, verbose=False)
    assert capsys.readouterr().out == ""
    b = ex.check_euler_step(euler, verbose=False)
    assert torch.equal(a.cases[1].inputs["x"], b.cases[1].inputs["x"])
    state = torch.get_rng_state()
    ex.check_cfm_loss(cfm_loss, verbose=False)
    assert torch.equal(state, torch.get_rng_state())  # the reader's global generator is untouched


def test_bad_arguments():
    with pytest.raises(TypeError, match="fn must be"):
        ex.check_euler_step(3)
    with pytest.raises(ValueError, match="seed"):
        ex.check_euler_step(euler, seed=-1)
    with pytest.raises(TypeError, match="scheduler"):
        ex.check_conditional_velocity(condot_velocity, scheduler="linear")
    with pytest.raises(ValueError, match="form"):
        ex.check_conditional_velocity(condot_velocity, form="x")

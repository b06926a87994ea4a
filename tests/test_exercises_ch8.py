"""The checkers of chapter 8's exercises accept correct answers, name typical mistakes, and give a
clear verdict on functions that raise, return the wrong shape or NaN, modify their input or never end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from exercise_answers import passes, stub

from fmbook import exercises as ex
from fmbook import guidance, metrics, paths, solvers

# ----------------------------------------------------------------- answers a reader might write


def log_posterior(x, t, data, labels, c):
    members = data[labels == c]
    prior = members.shape[0] / data.shape[0]
    return (
        paths.marginal_log_density(x, t, members)
        + math.log(prior)
        - paths.marginal_log_density(x, t, data)
    )


def log_posterior_by_hand(x, t, data, labels, c):
    """log sum over the class of N(x; t z_i, (1 - t)^2 I) minus the log sum over all points."""
    tt = t[:, None, None]
    sq = ((x[:, None, :] - tt * data[None]) ** 2).sum(-1)
    logits = -sq / (2 * (1 - t[:, None]) ** 2)
    return torch.logsumexp(logits[:, labels == c], 1) - torch.logsumexp(logits, 1)


def guided_velocity(eps_c, eps_u, x, t, w_hs, scheduler):
    eps = guidance.combine_guidance_ho_salimans(eps_c, eps_u, w_hs)
    return paths.convert(eps, "epsilon", "velocity", x, t, scheduler)


def guided_velocity_by_hand(eps_c, eps_u, x, t, w_hs, scheduler):
    a, s, da, ds = (v[:, None] for v in scheduler(t))
    eps = (1 + w_hs) * eps_c - w_hs * eps_u
    return da * (x - s * eps) / a + ds * eps


def ralston(velocity, x, t, h):
    k1 = velocity(x, t)
    k2 = velocity(x + 2 / 3 * h * k1, t + 2 / 3 * h)
    return x + h * (0.25 * k1 + 0.75 * k2)


def frechet(a, b):
    return metrics.frechet_distance(a, b)


def frechet_numpy(a, b):
    """With Tr((A^1/2 B A^1/2)^1/2) = sum of the square roots of the eigenvalues of A B."""
    a, b = a.double().numpy(), b.double().numpy()
    cov_a, cov_b = np.cov(a.T), np.cov(b.T)
    cross = np.sqrt(np.linalg.eigvals(cov_a @ cov_b).real.clip(0)).sum()
    mean_term = ((a.mean(0) - b.mean(0)) ** 2).sum()
    return float(mean_term + np.trace(cov_a + cov_b) - 2 * cross)




@pytest.mark.parametrize(
    ("checker", "answer"),
    [
        (ex.check_class_log_posterior, log_posterior),
        (ex.check_class_log_posterior, log_posterior_by_hand),
        (ex.check_ho_salimans_guidance, guided_velocity),
        (ex.check_ho_salimans_guidance, guided_velocity_by_hand),
        (ex.check_ralston_step, ralston),
        (ex.check_frechet_distance, frechet),
        (ex.check_frechet_distance, frechet_numpy),
    ],
)
def test_checkers_accept_correct_answers(checker, answer, capsys):
    for seed in (0, 1):
        assert passes(checker(answer, seed=seed))
    out = capsys.readouterr().out
    assert f"{checker.__name__}: PASSED" in out and "FAIL" not in out
    assert max(len(line) for line in out.splitlines()) <= 77  # the report fits the book's code box


def test_the_chapters_are_in_the_registry():
    assert ex.BY_CHAPTER[8] == [
        "check_class_log_posterior", "check_ho_salimans_guidance", "check_ralston_step", "check_frechet_distance"]


def _rejects(checker, answer, hint_word=None):
    result = checker(answer, verbose=False)
    assert not passes(result)
    first = result.failures[0]
    assert first.detail
    if hint_word is not None:
        assert hint_word in first.hint, first.hint
    return result


# ----------------------------------------------------------------- typical mistakes, with hints


def test_class_log_posterior_names_typical_mistakes():
    def no_prior(x, t, data, labels, c):
        members = data[labels == c]
        return paths.marginal_log_density(x, t, members) - paths.marginal_log_density(x, t, data)

    _rejects(ex.check_class_log_posterior, no_prior, "prior")
    _rejects(ex.check_class_log_posterior, lambda x, t, d, lab, c: -no_prior(x, t, d, lab, c), "upside down")
    _rejects(ex.check_class_log_posterior, lambda x, t, d, lab, c: log_posterior(x, 1 - t, d, lab, c), "reversed")
    _rejects(ex.check_class_log_posterior, lambda *a: torch.exp(log_posterior(*a)), "logarithm")
    # the prior of a class is its share of the points, not uniform over the classes
    uniform_prior = lambda x, t, d, lab, c: no_prior(x, t, d, lab, c) + math.log(1 / 3)
    _rejects(ex.check_class_log_posterior, uniform_prior, "share")
    # a value computed without autograd cannot give the guidance direction
    detached = lambda *a: log_posterior(*a).detach()
    result = _rejects(ex.check_class_log_posterior, detached)
    assert "differentiable" in result.failures[0].detail


def test_ho_salimans_guidance_names_typical_mistakes():
    unshifted = lambda ec, eu, x, t, w, sc: guided_velocity(ec, eu, x, t, w - 1, sc)  # w_HS read as w
    _rejects(ex.check_ho_salimans_guidance, unshifted, "1 + w_HS")
    minus = lambda ec, eu, x, t, w, sc: guided_velocity(ec, eu, x, t, w - 2, sc)
    _rejects(ex.check_ho_salimans_guidance, minus, "w_HS - 1")
    swapped = lambda ec, eu, x, t, w, sc: guided_velocity(eu, ec, x, t, w, sc)
    _rejects(ex.check_ho_salimans_guidance, swapped, "swapped")
    not_converted = lambda ec, eu, x, t, w, sc: guidance.combine_guidance_ho_salimans(ec, eu, w)
    _rejects(ex.check_ho_salimans_guidance, not_converted, "convert it")
    reversed_time = lambda ec, eu, x, t, w, sc: guided_velocity(ec, eu, x, 1 - t, w, sc)
    _rejects(ex.check_ho_salimans_guidance, reversed_time, "reversed")
    condot_always = lambda ec, eu, x, t, w, sc: guided_velocity(ec, eu, x, t, w, paths.CondOTScheduler())
    _rejects(ex.check_ho_salimans_guidance, condot_always, "scheduler")


def test_ralston_step_names_typical_mistakes():
    _rejects(ex.check_ralston_step, solvers.heun_step, "Heun")
    _rejects(ex.check_ralston_step, solvers.midpoint_step, "midpoint")
    _rejects(ex.check_ralston_step, solvers.euler_step, "Euler")
    at_t = lambda v, x, t, h: x + h * (0.25 * v(x, t) + 0.75 * v(x + 2 / 3 * h * v(x, t), t))
    result = _rejects(ex.check_ralston_step, at_t, "at time t;")
    assert "first order" in result.cases[-1].detail  # the measured order says so too
    at_t_plus_h = lambda v, x, t, h: x + h * (0.25 * v(x, t) + 0.75 * v(x + 2 / 3 * h * v(x, t), t + h))
    _rejects(ex.check_ralston_step, at_t_plus_h, "t + h;")
    swapped = lambda v, x, t, h: x + h * (0.75 * v(x, t) + 0.25 * v(x + 2 / 3 * h * v(x, t), t + 2 / 3 * h))
    result = _rejects(ex.check_ralston_step, swapped, "swapped")
    assert not result.cases[-1].passed  # first order: the order case fails as well
    # Heun's method has order 2: the order case alone would not catch it, the steps do
    result = ex.check_ralston_step(solvers.heun_step, verbose=False)
    assert result.cases[-1].passed and not any(c.passed for c in result.cases[:-1])


def test_frechet_distance_accepts_any_real_number_type():
    # a one-element NumPy array (np.asarray of the value, a (1,) array) is a correct answer too
    assert passes(ex.check_frechet_distance(lambda a, b: np.asarray(frechet(a, b)), verbose=False))
    assert passes(ex.check_frechet_distance(lambda a, b: np.array([frechet(a, b)]), verbose=False))
    # a complex result (scipy.linalg.sqrtm without .real) is refused with its reason
    result = ex.check_frechet_distance(lambda a, b: complex(frechet(a, b), 1e-9), verbose=False)
    assert not passes(result) and "real part" in result.failures[0].detail


def test_frechet_distance_names_typical_mistakes():
    _rejects(ex.check_frechet_distance, lambda a, b: math.sqrt(frechet(a, b)), "d^2")

    def parts(a, b, biased=False):
        a, b = a.double(), b.double()
        cov = (lambda f: torch.cov(f.T, correction=0)) if biased else (lambda f: torch.cov(f.T))
        cov_a, cov_b = cov(a), cov(b)
        evals, evecs = torch.linalg.eigh(cov_a)
        root_a = evecs @ torch.diag(evals.clamp_min(0).sqrt()) @ evecs.T
        inner = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
        mean = ((a.mean(0) - b.mean(0)) ** 2).sum()
        return mean, torch.trace(cov_a) + torch.trace(cov_b), inner, torch.trace(cov_a @ cov_b)

    def with_parts(combine, biased=False):
        return lambda a, b: float(combine(*parts(a, b, biased)))

    _rejects(ex.check_frechet_distance, with_parts(lambda m, tr, inner, prod: tr - 2 * inner), "means")
    _rejects(ex.check_frechet_distance, with_parts(lambda m, tr, inner, prod: m + tr - inner), "factor 2")
    _rejects(ex.check_frechet_distance, with_parts(lambda m, tr, inner, prod: m + tr - 2 * prod), "square root")
    biased = with_parts(lambda m, tr, inner, prod: m + tr - 2 * inner, biased=True)
    _rejects(ex.check_frechet_distance, biased, "biased")


# ----------------------------------------------------------------- broken functions: clear verdicts

CORRECT = {
    ex.check_class_log_posterior: log_posterior,
    ex.check_ho_salimans_guidance: guided_velocity,
    ex.check_ralston_step: ralston,
    ex.check_frechet_distance: frechet,
}
#: the argument a mutating function writes into (x of the classifier is a fresh leaf that requires grad)
MUTATED = {
    ex.check_class_log_posterior: 2,
    ex.check_ho_salimans_guidance: 0,
    ex.check_ralston_step: 1,
    ex.check_frechet_distance: 0,
}


def raises(*args):
    raise RuntimeError("boom")


def endless(*args):
    while True:
        pass




def wrong_shape(checker):
    if checker is ex.check_frechet_distance:
        return lambda a, b: torch.full((2,), frechet(a, b))
    return lambda *args: CORRECT[checker](*args)[..., None]


def nan(checker):
    if checker is ex.check_frechet_distance:
        return lambda a, b: float("nan")
    return lambda *args: CORRECT[checker](*args) * float("nan")


def mutates(checker):
    def fn(*args):
        out = CORRECT[checker](*args)
        args[MUTATED[checker]].mul_(2.0)
        return out

    return fn


@pytest.mark.parametrize("checker", list(CORRECT), ids=lambda c: c.__name__)
def test_broken_functions_get_clear_verdicts(checker):
    result = checker(raises, verbose=False)
    assert result.status == "failed" and "RuntimeError: boom" in result.failures[0].detail
    result = checker(wrong_shape(checker), verbose=False)
    assert result.status == "failed" and ("shape" in result.failures[0].detail)
    result = checker(nan(checker), verbose=False)
    assert result.status == "failed" and "NaN" in result.failures[0].detail
    result = checker(mutates(checker), verbose=False)
    assert result.status == "failed" and "in place" in result.failures[0].detail
    result = checker(endless, verbose=False, time_limit=0.3)
    assert result.status == "failed" and "did not finish" in result.failures[0].detail
    result = checker(stub, verbose=False)
    assert result.status == "not attempted" and not result.cases
    # after every broken attempt the checker still accepts the correct answer (inputs restored)
    assert checker(CORRECT[checker], verbose=False).passed

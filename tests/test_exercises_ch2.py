"""The checkers of chapter 2's exercises: a correct answer passes, each typical mistake is caught
with its hint, and a function that raises, returns the wrong shape or NaN, modifies its input or
never ends gets a clear verdict; the untouched stub is "not attempted"."""

from __future__ import annotations

import math

import pytest
import torch
from exercise_answers import passes, stub

from fmbook import exercises as ex
from fmbook import likelihood, solvers

# ----------------------------------------------------------------- answers a reader might write


def euler(velocity, x, t, h):
    return x + h * velocity(x, t)


def midpoint(velocity, x, t, h):
    return x + h * velocity(x + 0.5 * h * velocity(x, t), t + 0.5 * h)


def hutchinson(velocity, x, t, eps):
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        (vjp,) = torch.autograd.grad(velocity(x, t), x, grad_outputs=eps)
    return (vjp * eps).sum(dim=1)


def hutchinson_with_fmbook(velocity, x, t, eps):
    return likelihood.hutchinson_divergence(velocity, x, t, eps[None])[1]


def linear_flow(A, x0, t):
    return x0 @ torch.linalg.matrix_exp(t * A).T


def linear_flow_by_eigenvectors(A, x0, t):
    values, vectors = torch.linalg.eig(A)
    m = vectors @ torch.diag(torch.exp(t * values)) @ torch.linalg.inv(vectors)
    return x0 @ m.real.T


def log_p0(y):
    return -0.5 * (y**2).sum(1) - 0.5 * y.shape[1] * math.log(2 * math.pi)


def linear_log_density(A, x, t):
    return log_p0(x @ torch.linalg.matrix_exp(-t * A).T) - t * torch.trace(A)


def linear_log_density_by_fmbook(A, x, t):
    # the numerical CNF of the chapter, solved backwards from t to 0
    flow = solvers.solve_ode(lambda y, s: y @ A.T, x, steps=200, method="rk4", t0=t, t1=0.0)
    return likelihood.gaussian_log_prob(flow.x) - t * torch.trace(A)




CHECKERS = {
    "check_euler_step": (ex.check_euler_step, euler),
    "check_midpoint_step": (ex.check_midpoint_step, midpoint),
    "check_hutchinson_divergence": (ex.check_hutchinson_divergence, hutchinson),
    "check_linear_flow": (ex.check_linear_flow, linear_flow),
    "check_linear_flow_log_density": (ex.check_linear_flow_log_density, linear_log_density),
}




def test_the_checkers_are_those_of_chapter_2():
    assert set(ex.BY_CHAPTER[2]) == set(CHECKERS)


@pytest.mark.parametrize(
    ("checker", "answer"),
    [
        (ex.check_euler_step, euler),
        (ex.check_midpoint_step, midpoint),
        (ex.check_hutchinson_divergence, hutchinson),
        (ex.check_hutchinson_divergence, hutchinson_with_fmbook),
        (ex.check_linear_flow, linear_flow),
        (ex.check_linear_flow, linear_flow_by_eigenvectors),
        (ex.check_linear_flow_log_density, linear_log_density),
    ],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_correct_answer_passes(checker, answer, seed):
    assert passes(checker(answer, seed=seed, verbose=False))


def test_the_reference_agrees_with_the_chapters_numerical_flow():
    """x pulled back by fmbook's rk4 solver (200 steps, error about 1e-9) passes the checker."""
    assert passes(ex.check_linear_flow_log_density(linear_log_density_by_fmbook, verbose=False))


@pytest.mark.parametrize("name", sorted(CHECKERS))
def test_the_verdict_is_printed_within_the_code_box(name, capsys):
    checker, correct = CHECKERS[name]
    checker(correct)
    out = capsys.readouterr().out
    assert "PASSED" in out and all(len(line) <= 77 for line in out.splitlines())


# ------------------------------------------------------------------------ typical mistakes


def _hutchinson_scaled(factor):
    return lambda velocity, x, t, eps: factor(x) * hutchinson(velocity, x, t, eps)


def _exact_divergence(velocity, x, t, eps):
    return likelihood.exact_divergence(velocity, x, t)[1]


def _vjp_sum(velocity, x, t, eps):
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        (vjp,) = torch.autograd.grad(velocity(x, t), x, grad_outputs=eps)
    return vjp.sum(dim=1)


def _flow_with(matrix):
    return lambda A, x0, t: x0 @ matrix(A, t)


def _log_density_with(pull, coefficient, constant=0.0):
    return lambda A, x, t: log_p0(x @ pull(A, t)) + coefficient(t) * torch.trace(A) + constant * x.shape[1]


MISTAKES = {
    "check_euler_step": [
        (lambda v, x, t, h: x + v(x, t), "step size h is missing"),
        (lambda v, x, t, h: x - h * v(x, t), "step goes backwards"),
        (lambda v, x, t, h: x + h * v(x, t + h), "shifted by h"),
    ],
    "check_midpoint_step": [
        (euler, "this is an Euler step"),
        (lambda v, x, t, h: x + h * v(x + 0.5 * h * v(x, t), t), "second evaluation is at time t"),
        (lambda v, x, t, h: x + h * v(x + h * v(x, t), t + 0.5 * h), "half step uses h instead of h/2"),
    ],
    "check_hutchinson_divergence": [
        (_exact_divergence, "exact divergence tr J"),
        (_vjp_sum, "multiply it by eps, then sum"),
        (_hutchinson_scaled(lambda x: 1 / x.shape[1]), "averages over the d coordinates"),
        (_hutchinson_scaled(lambda x: -1), "sign is flipped"),
    ],
    "check_linear_flow": [
        (_flow_with(lambda A, t: torch.linalg.matrix_exp(t * A)), "multiplies by the transpose"),
        (_flow_with(lambda A, t: torch.exp(t * A).T), "torch.linalg.matrix_exp"),
        (_flow_with(lambda A, t: torch.linalg.matrix_exp(A).T), "the time is missing"),
        (_flow_with(lambda A, t: torch.linalg.matrix_exp(-t * A).T), "inverse map"),
        (lambda A, x0, t: x0 + t * x0 @ A.T, "one Euler step"),
    ],
    "check_linear_flow_log_density": [
        (_log_density_with(lambda A, t: torch.linalg.matrix_exp(-t * A).T, lambda t: t), "sign of the divergence"),
        (_log_density_with(lambda A, t: torch.linalg.matrix_exp(-t * A).T, lambda t: 0.0), "-t tr A is missing"),
        (_log_density_with(lambda A, t: torch.linalg.matrix_exp(t * A).T, lambda t: -t), "pulled back"),
        (_log_density_with(lambda A, t: torch.linalg.matrix_exp(-t * A).T, lambda t: -1.0), "time is missing"),
        (_log_density_with(lambda A, t: torch.linalg.matrix_exp(-t * A).T, lambda t: -t, 0.5 * math.log(2 * math.pi)),
         "normalising constant"),
    ],
}


@pytest.mark.parametrize(
    ("name", "wrong", "hint"),
    [(name, w, h) for name, found in MISTAKES.items() for w, h in found],
    ids=[f"{name}: {h}" for name, found in MISTAKES.items() for _, h in found],
)
def test_each_typical_mistake_is_caught_with_its_hint(name, wrong, hint):
    checker, _ = CHECKERS[name]
    result = checker(wrong, verbose=False)
    assert not passes(result) and result.attempted
    hints = [c.hint for c in result.failures]
    assert any(hint in h for h in hints), hints
    assert "hint: " in result.report()


def test_fresh_probes_instead_of_the_given_ones_fail():
    def own_probes(velocity, x, t, eps):
        return hutchinson(velocity, x, t, torch.randn_like(eps))

    result = ex.check_hutchinson_divergence(own_probes, verbose=False)
    assert not passes(result) and len(result.failures) >= 4


def test_a_biased_estimator_fails_the_monte_carlo_case():
    """Only the Monte Carlo case is judged by the mean and the variance: an estimator with the
    values at the given probes shifted by 0.5 (about 10 standard errors) fails it, with the mean in the report."""
    result = ex.check_hutchinson_divergence(lambda *a: hutchinson(*a) + 0.5, verbose=False)
    assert not passes(result)
    assert "mean of the estimates" in result.cases[-1].detail and not result.cases[-1].passed


# ------------------------------------------------ a broken reader function gets a clear verdict


def broken_variants(correct):
    def raises(*args):
        return 1 / 0

    def wrong_shape(*args):
        out = correct(*args)
        return torch.cat([out, out])

    def nan(*args):
        return correct(*args) * float("nan")

    def mutates(*args):
        out = correct(*[a.clone() if isinstance(a, torch.Tensor) else a for a in args])
        next(a for a in args if isinstance(a, torch.Tensor) and a.ndim == 2 and a.shape[0] > 0).add_(0.5)
        return out

    def endless(*args):
        while True:
            pass

    return {
        "raises": (raises, "your function raised ZeroDivisionError"),
        "wrong shape": (wrong_shape, "must return shape"),
        "NaN": (nan, "NaN or inf"),
        "mutates its input": (mutates, "modified its input"),
        "endless loop": (endless, "did not finish within 0.3 s"),
    }


@pytest.mark.parametrize("name", sorted(CHECKERS))
@pytest.mark.parametrize("kind", ["raises", "wrong shape", "NaN", "mutates its input", "endless loop"])
def test_a_broken_function_gets_a_clear_verdict(name, kind):
    checker, correct = CHECKERS[name]
    bad, expected = broken_variants(correct)[kind]
    result = checker(bad, verbose=False, time_limit=0.3)
    assert result.attempted and not passes(result) and result.status == "failed"
    assert expected in result.failures[0].detail, result.failures[0].detail
    assert "Traceback" not in result.report()


@pytest.mark.parametrize("name", sorted(CHECKERS))
def test_the_untouched_stub_is_not_attempted(name, capsys):
    checker, _ = CHECKERS[name]
    result = checker(stub)
    assert result.status == "not attempted" and not result
    out = capsys.readouterr().out
    assert "not attempted yet" in out and "Traceback" not in out


def test_the_checkers_refuse_a_non_function():
    for checker, _ in CHECKERS.values():
        with pytest.raises(TypeError, match="fn must be a function"):
            checker("not a function", verbose=False)


# ------------------------------------------------------------- the references are independent


@pytest.mark.parametrize("name", ["check_euler_step", "check_midpoint_step"])
def test_the_step_references_do_not_depend_on_fmbook_solvers(name, monkeypatch):
    """The checkers compare with torchdiffeq's one-step solves, not with fmbook's own steps (the
    formula the reader writes): a correct answer still passes when fmbook's steps are broken."""
    checker, correct = CHECKERS[name]
    for step in ("euler_step", "midpoint_step"):
        broken = getattr(solvers, step)
        monkeypatch.setattr(solvers, step, lambda v, x, t, h, broken=broken: broken(v, x, t, h) + 1.0)
    assert passes(checker(correct, verbose=False))


def test_a_halved_hutchinson_estimate_is_not_told_it_averages_over_d():
    """In two dimensions the average over the d coordinates is half the sum: a plain factor 1/2
    must not be reported as averaging over the coordinates."""
    result = ex.check_hutchinson_divergence(_hutchinson_scaled(lambda x: 0.5), verbose=False)
    assert not passes(result)
    assert all("averages over the d coordinates" not in c.hint for c in result.failures)

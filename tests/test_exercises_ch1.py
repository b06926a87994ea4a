"""The checkers of chapter 1's exercises: a correct answer passes, each typical mistake is caught
with its hint, and a function that raises, returns the wrong shape or NaN, modifies its input or
never ends gets a clear verdict; the untouched stub is "not attempted"."""

from __future__ import annotations

import pytest
import torch
from exercise_answers import passes, stub

from fmbook import exercises as ex
from fmbook import paths

# ----------------------------------------------------------------- answers a reader might write


def drift(x, t, data, epsilon):
    sigma2 = ((1 - t) ** 2)[:, None]
    return paths.marginal_velocity(x, t, data) + epsilon * sigma2 * paths.marginal_score(x, t, data)


def drift_by_hand(x, t, data, epsilon):
    """The same drift written out: posterior weights, posterior mean, velocity and score."""
    t = t[:, None]
    sq = ((x[:, None, :] - t[:, :, None] * data[None]) ** 2).sum(-1)
    w = torch.softmax(-sq / (2 * (1 - t) ** 2), dim=1)
    mean = w @ data
    u = (mean - x) / (1 - t)
    score = -(x - t * mean) / (1 - t) ** 2
    return u + epsilon * (1 - t) ** 2 * score


def jump_probability(kappa, t, t_next):
    return (kappa(t_next) - kappa(t)) / (1 - kappa(t))


def jump_probability_by_survival(kappa, t, t_next):
    return 1 - (1 - kappa(t_next)) / (1 - kappa(t))




CHECKERS = {
    "check_diffusion_drift": (ex.check_diffusion_drift, drift),
    "check_jump_probability": (ex.check_jump_probability, jump_probability),
}




def test_the_checkers_are_those_of_chapter_1():
    assert set(ex.BY_CHAPTER[1]) == set(CHECKERS)


@pytest.mark.parametrize(
    ("checker", "answer"),
    [
        (ex.check_diffusion_drift, drift),
        (ex.check_diffusion_drift, drift_by_hand),
        (ex.check_jump_probability, jump_probability),
        (ex.check_jump_probability, jump_probability_by_survival),
    ],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_correct_answer_passes(checker, answer, seed):
    assert passes(checker(answer, seed=seed, verbose=False))


@pytest.mark.parametrize("name", sorted(CHECKERS))
def test_the_verdict_is_printed_within_the_code_box(name, capsys):
    checker, correct = CHECKERS[name]
    checker(correct)
    out = capsys.readouterr().out
    assert "PASSED" in out and all(len(line) <= 77 for line in out.splitlines())


# ------------------------------------------------------------------------ typical mistakes


def _scaled_score_drift(factor_fn, power=1.0):
    """The drift u + epsilon^power factor(t) grad log p_t."""

    def wrong(x, t, data, epsilon):
        u = paths.marginal_velocity(x, t, data)
        return u + epsilon**power * factor_fn(t)[:, None] * paths.marginal_score(x, t, data)

    return wrong


DRIFT_MISTAKES = [
    (_scaled_score_drift(lambda t: -((1 - t) ** 2)), "sign of the score term is flipped"),
    (lambda x, t, data, epsilon: paths.marginal_velocity(x, t, data), "velocity u_t alone"),
    (_scaled_score_drift(lambda t: torch.ones_like(t)), "factor sigma_t^2 is missing"),
    (_scaled_score_drift(lambda t: 2 * (1 - t) ** 2), "a factor 2 too many"),
    (_scaled_score_drift(lambda t: t**2), "reversed time convention"),
    (_scaled_score_drift(lambda t: 1 - t), "sigma_t is not squared"),
    (_scaled_score_drift(lambda t: (1 - t) * 2**0.5, power=0.5), "g_t itself"),
]

JUMP_MISTAKES = [
    (
        lambda kappa, t, t_next: ((t_next - t) * (kappa(t + 1e-7) - kappa(t)) / 1e-7 / (1 - kappa(t))).clamp(max=1),
        "rate times the step",
    ),
    (lambda kappa, t, t_next: kappa(t_next) - kappa(t), "must divide it by 1 - kappa_t"),
    (lambda kappa, t, t_next: (t_next - t) / (1 - t), "schedule kappa_t = t"),
    # the exercise's own example, kappa_t = t^2, written in place of the given kappa
    (lambda kappa, t, t_next: (t_next**2 - t**2) / (1 - t**2), "example kappa_t = t^2 written out"),
]


@pytest.mark.parametrize(
    ("checker", "wrong", "hint"),
    [(ex.check_diffusion_drift, w, h) for w, h in DRIFT_MISTAKES]
    + [(ex.check_jump_probability, w, h) for w, h in JUMP_MISTAKES],
    ids=[h for _, h in DRIFT_MISTAKES + JUMP_MISTAKES],
)
def test_each_typical_mistake_is_caught_with_its_hint(checker, wrong, hint):
    result = checker(wrong, verbose=False)
    assert not passes(result) and result.attempted
    hints = [c.hint for c in result.failures]
    assert any(hint in h for h in hints), hints
    assert "hint: " in result.report()


def test_a_drift_that_is_slightly_off_fails_the_fokker_planck_residual():
    result = ex.check_diffusion_drift(lambda *a: drift(*a) * (1 + 1e-3), verbose=False)
    assert not passes(result) and len(result.failures) == len(result.cases)
    assert "Fokker-Planck residual" in result.failures[0].detail


def test_probabilities_outside_0_1_are_named():
    result = ex.check_jump_probability(lambda kappa, t, t_next: 2 * jump_probability(kappa, t, t_next) - 0.5,
                                       verbose=False)
    assert not passes(result) and "must lie in [0, 1]" in result.failures[0].detail


# ------------------------------------------------ a broken reader function gets a clear verdict


def _first_tensor(args):
    return next(a for a in args if isinstance(a, torch.Tensor))


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
        _first_tensor(args).add_(0.5)
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
    assert result.failures, result.report()
    assert expected in result.failures[0].detail, result.failures[0].detail
    assert "Traceback" not in result.report()


@pytest.mark.parametrize("name", sorted(CHECKERS))
def test_the_inputs_reported_after_a_mutation_are_the_originals(name):
    checker, correct = CHECKERS[name]
    before = checker(correct, verbose=False).cases
    bad, _ = broken_variants(correct)["mutates its input"]
    after = checker(bad, verbose=False).cases
    for b, a in zip(before, after):
        for key, value in b.inputs.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, a.inputs[key])


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

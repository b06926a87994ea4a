"""The checkers of chapter 6's exercises: a correct answer passes, each typical mistake is caught
with its hint, and broken answers (raising, wrong shape, NaN, in-place, endless) get a verdict."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fmbook import exercises as ex
from fmbook import paths, solvers

# ----------------------------------------------------------------- answers a reader might write


def col(t):
    return t[:, None]


def condot_score(v, x, t):
    return (col(t) * v - x) / (1 - col(t))


def condot_velocity(score, x, t):
    return ((1 - col(t)) * score + x) / col(t)


def ou_moments(x0, theta, s, t):
    return x0 * torch.exp(-theta * t), s**2 / (2 * theta) * (1 - torch.exp(-2 * theta * t))


def langevin_step(score, x, t, step_size, noise):
    tt = torch.full((x.shape[0],), float(t), dtype=x.dtype)
    return x + step_size * score(x, tt) + (2 * step_size) ** 0.5 * noise


def best_theta(weight, c, t_min, t_max):
    t = torch.linspace(t_min, t_max, 20_001, dtype=torch.float64)
    w = weight(t)
    num = torch.trapezoid(w * (1 - t), t)
    den = torch.trapezoid(w * (t**2 * c**2 + (1 - t) ** 2), t)
    return (num / den).item()


CORRECT = {
    ex.check_score_from_velocity: condot_score,
    ex.check_velocity_from_score: condot_velocity,
    ex.check_ou_moments: ou_moments,
    ex.check_langevin_step: langevin_step,
    ex.check_weighted_minimiser: best_theta,
}


def test_chapter_6_lists_its_checkers():
    assert set(ex.BY_CHAPTER[6]) == {c.__name__ for c in CORRECT}


@pytest.mark.parametrize("checker", list(CORRECT), ids=lambda c: c.__name__)
def test_a_correct_answer_passes(checker, capsys):
    for seed in (0, 1, 2):
        result = checker(CORRECT[checker], seed=seed)
        assert result.passed and result.status == "passed", result.report()
    out = capsys.readouterr().out
    assert f"{checker.__name__}: PASSED" in out and "FAIL" not in out


def test_library_answers_pass_too():
    vp = paths.VPScheduler()
    assert ex.check_velocity_from_score(lambda s, x, t: paths.velocity_from_score(s, x, t, vp), scheduler=vp,
                                        verbose=False)
    assert not ex.check_velocity_from_score(condot_velocity, scheduler=vp, verbose=False)

    def library_step(score, x, t, eps, noise):  # langevin_corrector with the given noise
        return x + eps * score(x, torch.full((x.shape[0],), float(t), dtype=x.dtype)) + (2 * eps) ** 0.5 * noise

    assert ex.check_langevin_step(library_step, verbose=False)
    # the reference of the one-step cases is solvers.langevin_corrector: its noise is the seeded draw
    x = torch.randn(4, 2)
    a = solvers.langevin_corrector(lambda y, t: -y, x, 0.3, 0.1, generator=5)
    b = x - 0.1 * x + 0.2**0.5 * torch.randn(4, 2, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(a, b)


def rejected(checker, answer, hint: str | None = None, **kwargs) -> ex.CheckResult:
    result = checker(answer, verbose=False, **kwargs)
    assert result.status == "failed"
    first = result.failures[0]
    assert first.detail
    if hint is not None:
        assert hint in first.hint, (hint, first.hint)
    return result


def test_velocity_from_score_mistakes():
    c = ex.check_velocity_from_score
    rejected(c, lambda s, x, t: -condot_velocity(s, x, t), "sign is flipped")
    rejected(c, lambda s, x, t: -condot_velocity(s, x, 1 - t), "reversed time")
    rejected(c, lambda s, x, t: (1 - col(t)) * s + x, "division by alpha_t")
    rejected(c, lambda s, x, t: (1 - col(t)) * s / col(t), "x / t")
    rejected(c, lambda s, x, t: condot_velocity(-s, x, t), "score term has the wrong sign")


def test_score_from_velocity_is_still_checked():
    rejected(ex.check_score_from_velocity, lambda v, x, t: col(t) * v - x, "division by sigma_t")


def test_ou_mistakes():
    c = ex.check_ou_moments
    mean = lambda x0, th, s, t: x0 * torch.exp(-th * t)  # noqa: E731
    rejected(c, lambda x0, th, s, t: (mean(x0, th, s, t), s**2 / th * (1 - torch.exp(-2 * th * t))), "1/2")
    rejected(c, lambda x0, th, s, t: (mean(x0, th, s, t), s**2 / (2 * th) * (1 - torch.exp(-th * t))),
             "exponent")
    rejected(c, lambda *a: (ou_moments(*a)[0], ou_moments(*a)[1].sqrt()), "standard deviation")
    rejected(c, lambda x0, th, s, t: (mean(x0, th, s, t), s**2 / (2 * th) + 0 * t), "stationary")
    rejected(c, lambda x0, th, s, t: (mean(x0, th, s, t), s / (2 * th) * (1 - torch.exp(-2 * th * t))),
             "uses s, not s^2")
    rejected(c, lambda x0, th, s, t: (x0 * torch.exp(th * t), ou_moments(x0, th, s, t)[1]), "mean grows")
    assert "pair" in rejected(c, lambda *a: ou_moments(*a)[1]).failures[0].detail


def test_langevin_mistakes():
    c = ex.check_langevin_step

    def step(sign=1.0, score_factor=None, noise_factor=None):
        def fn(score, x, t, eps, noise):
            s = score(x, torch.full((x.shape[0],), float(t), dtype=x.dtype))
            a = eps if score_factor is None else score_factor(eps)
            b = (2 * eps) ** 0.5 if noise_factor is None else noise_factor(eps)
            return x + sign * a * s + b * noise
        return fn

    rejected(c, step(noise_factor=lambda e: e**0.5), "sqrt(step_size)")
    rejected(c, step(noise_factor=lambda e: e), "scaled by the step size")
    rejected(c, step(sign=-1.0), "wrong sign")
    rejected(c, step(score_factor=lambda e: 1.0), "not multiplied by the step size")
    rejected(c, step(noise_factor=lambda e: 0.0), "noise is missing")
    # the invariance case alone catches a step that is exact for one step size only
    result = rejected(c, step(noise_factor=lambda e: e**0.5))
    chains = result.cases[-1]
    assert not chains.passed and "within 5 standard errors" in chains.detail


def test_langevin_chains_blowing_up_get_a_verdict():
    def unstable(score, x, t, eps, noise):
        tt = torch.full((x.shape[0],), float(t), dtype=x.dtype)
        return x - 30 * score(x, tt) + noise

    result = rejected(ex.check_langevin_step, unstable)
    assert "NaN or inf" in result.cases[-1].detail or "within 5 standard errors" in result.cases[-1].detail


def test_weighted_minimiser_mistakes():
    c = ex.check_weighted_minimiser

    def theta(weight, cc, lo, hi, use_weight=True, noise_term=True, average=False, reverse=False):
        t = torch.linspace(lo, hi, 20_001, dtype=torch.float64)
        w = weight(t) if use_weight else torch.ones_like(t)
        alpha, sigma = (1 - t, t) if reverse else (t, 1 - t)
        xx = alpha**2 * cc**2 + (sigma**2 if noise_term else 0)
        if average:
            return (torch.trapezoid(w * sigma / xx, t) / torch.trapezoid(w, t)).item()
        return (torch.trapezoid(w * sigma, t) / torch.trapezoid(w * xx, t)).item()

    rejected(c, lambda *a: theta(*a, use_weight=False), "weight w(t) is ignored")
    rejected(c, lambda *a: theta(*a, average=True), "averages the per-time minimisers")
    rejected(c, lambda *a: theta(*a, noise_term=False), "lacks the noise term")
    rejected(c, lambda *a: theta(*a, reverse=True), "reversed time")
    # a Monte Carlo estimate with 10 000 samples is too rough for the stated tolerance
    def monte_carlo(weight, cc, lo, hi):
        g = torch.Generator().manual_seed(0)
        t = lo + (hi - lo) * torch.rand(10_000, generator=g, dtype=torch.float64)
        x = t * cc * torch.randn(10_000, generator=g, dtype=torch.float64)
        e = torch.randn(10_000, generator=g, dtype=torch.float64)
        x = x + (1 - t) * e
        return ((weight(t) * x * e).sum() / (weight(t) * x**2).sum()).item()

    rejected(c, monte_carlo)
    assert "number" in rejected(c, lambda *a: "1.5").failures[0].detail
    # a NumPy float32 (not a Python float) is a number too
    assert c(lambda *a: np.float32(best_theta(*a)), verbose=False)
    assert "number" in rejected(c, lambda *a: np.array([1.5, 2.0])).failures[0].detail


# --------------------------------------------------- broken answers of every kind, every checker


def broken_answers(correct):
    def raises(*args):
        raise RuntimeError("not written yet")

    def wrong_shape(*args):
        out = correct(*args)
        if isinstance(out, tuple):
            return tuple(o[:1] if o.shape[0] > 1 else o.repeat(2) for o in out)
        if isinstance(out, torch.Tensor):
            return out[:, :1]
        return (out, out)

    def nan(*args):
        out = correct(*args)
        if isinstance(out, tuple):
            return tuple(o * float("nan") for o in out)
        if isinstance(out, torch.Tensor):
            return out * float("nan")
        return float("nan")

    def mutates(*args):
        out = correct(*args)
        next(a for a in args if isinstance(a, torch.Tensor)).mul_(2.0)
        return out

    def endless(*args):
        while True:
            pass

    def stub(*args):
        raise NotImplementedError("your turn")

    return raises, wrong_shape, nan, mutates, endless, stub


@pytest.mark.parametrize("checker", list(CORRECT), ids=lambda c: c.__name__)
def test_broken_answers_get_clear_verdicts(checker):
    raises, wrong_shape, nan, mutates, endless, stub = broken_answers(CORRECT[checker])
    assert "RuntimeError: not written yet" in rejected(checker, raises).failures[0].detail
    detail = rejected(checker, wrong_shape).failures[0].detail
    assert "shape" in detail or "number" in detail, detail
    assert "NaN" in rejected(checker, nan).failures[0].detail
    if checker is not ex.check_weighted_minimiser:  # its inputs are a function and floats: nothing to modify
        result = rejected(checker, mutates)
        assert "in place" in result.failures[0].detail
        assert checker(CORRECT[checker], verbose=False).passed  # the inputs were restored
    assert "did not finish" in rejected(checker, endless, time_limit=0.3).failures[0].detail
    result = checker(stub, verbose=False)
    assert result.status == "not attempted" and not result
    assert "not attempted yet" in result.report()

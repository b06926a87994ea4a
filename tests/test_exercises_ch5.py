"""The checkers of chapter 5's exercises: a correct answer passes, each typical mistake is caught
with its hint, and broken answers (raising, wrong shape, NaN, in-place, endless) get a verdict."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fmbook import exercises as ex
from fmbook import paths

# ----------------------------------------------------------------- answers a reader might write


def vp_field(x, x1, t, beta_min, beta_max, s_of=lambda t: 1 - t, half=0.5, sign=1.0):
    s = s_of(t)[:, None]
    a = torch.exp(-0.5 * (beta_min * s + 0.5 * (beta_max - beta_min) * s**2))
    da = -half * (beta_min + (beta_max - beta_min) * s) * a
    return sign * da / (1 - a**2) * (a * x - x1)


def vp_eps(t, beta_min, beta_max):
    s = 1 - t
    beta = beta_min + (beta_max - beta_min) * s
    sigma = torch.sqrt(-torch.expm1(-(beta_min * s + 0.5 * (beta_max - beta_min) * s**2)))
    return beta / 2, -beta / (2 * sigma)


def velocity_from_x0(x0_hat, x, t, scheduler):
    a, s, da, ds = (c[:, None] for c in scheduler(t))
    return da / a * x + (ds - s * da / a) * x0_hat


def condot_to_cosine(r):
    sin, cos = torch.sin(math.pi * r / 2), torch.cos(math.pi * r / 2)
    return sin / (sin + cos), sin + cos


def fewest_steps(ratio):
    return math.ceil(math.log(ratio) / 2)


CORRECT = {
    ex.check_vp_conditional_velocity: vp_field,
    ex.check_vp_eps_coefficients: vp_eps,
    ex.check_velocity_from_x0: velocity_from_x0,
    ex.check_schedule_change: condot_to_cosine,
    ex.check_fewest_midpoint_steps: fewest_steps,
}


def test_chapter_5_lists_its_checkers():
    assert set(ex.BY_CHAPTER[5]) == {c.__name__ for c in CORRECT}


@pytest.mark.parametrize("checker", list(CORRECT), ids=lambda c: c.__name__)
def test_a_correct_answer_passes(checker, capsys):
    for seed in (0, 1, 2):
        result = checker(CORRECT[checker], seed=seed)
        assert result.passed and result.status == "passed", result.report()
    out = capsys.readouterr().out
    assert f"{checker.__name__}: PASSED" in out and "FAIL" not in out


def test_library_answers_pass_too():
    assert ex.check_velocity_from_x0(lambda x0, x, t, sch: paths.convert(x0, "x0", "velocity", x, t, sch),
                                     verbose=False)
    assert ex.check_vp_conditional_velocity(
        lambda x, x1, t, lo, hi: paths.conditional_velocity(x, x1, t, paths.VPScheduler(lo, hi)), verbose=False)
    change = lambda r: paths.ScheduleChange(lambda x, t: x, paths.CondOTScheduler(),  # noqa: E731
                                            paths.CosineScheduler()).time_and_scale(r)[:2]
    assert ex.check_schedule_change(change, verbose=False)
    # another pair of schedulers: CondOT to VP, with fmbook's re-timing as the answer
    vp = paths.VPScheduler(1.0, 5.0)
    to_vp = lambda r: paths.ScheduleChange(lambda x, t: x, paths.CondOTScheduler(), vp).time_and_scale(r)[:2]  # noqa: E731
    assert ex.check_schedule_change(to_vp, new=vp, verbose=False)
    assert not ex.check_schedule_change(condot_to_cosine, new=vp, verbose=False)


def rejected(checker, answer, hint: str | None = None, **kwargs) -> ex.CheckResult:
    result = checker(answer, verbose=False, **kwargs)
    assert result.status == "failed"
    first = result.failures[0]
    assert first.detail
    if hint is not None:
        assert hint in first.hint, (hint, first.hint)
    return result


def test_vp_field_mistakes():
    c = ex.check_vp_conditional_velocity
    rejected(c, lambda *a: vp_field(*a, sign=-1.0), "chain rule")
    rejected(c, lambda *a: vp_field(*a, s_of=lambda t: t), "reversed time")
    rejected(c, lambda *a: vp_field(*a, half=1.0), "factor 1/2 is missing")
    # the other way round: 1/4 instead of 1/2, half the field
    rejected(c, lambda *a: vp_field(*a, half=0.25), "applied twice")

    def beta_at_t(x, x1, t, lo, hi):
        s = (1 - t)[:, None]
        a = torch.exp(-0.5 * (lo * s + 0.5 * (hi - lo) * s**2))
        return -0.5 * (lo + (hi - lo) * t[:, None]) * a / (1 - a**2) * (a * x - x1)

    rejected(c, beta_at_t, "beta is evaluated at t")


def test_vp_eps_mistakes():
    c = ex.check_vp_eps_coefficients
    rejected(c, lambda t, lo, hi: (vp_eps(t, lo, hi)[0], -vp_eps(t, lo, hi)[1]), "sign of b_t")
    rejected(c, lambda t, lo, hi: (vp_eps(t, lo, hi)[0], -vp_eps(t, lo, hi)[0]), "1 / sigma_t")
    rejected(c, lambda t, lo, hi: tuple(2 * v for v in vp_eps(t, lo, hi)), "factor 1/2")
    rejected(c, lambda t, lo, hi: vp_eps(1 - t, lo, hi), "reversed time")
    assert "pair" in rejected(c, lambda t, lo, hi: vp_eps(t, lo, hi)[0]).failures[0].detail


def test_velocity_from_x0_mistakes():
    c = ex.check_velocity_from_x0
    rejected(c, lambda *a: -velocity_from_x0(*a), "sign")

    def no_correction(x0, x, t, sch):
        a, s, da, ds = (v[:, None] for v in sch(t))
        return da / a * x + ds * x0

    def x1_formula(x0, x, t, sch):
        a, s, da, ds = (v[:, None] for v in sch(t))
        return ds / s * x + (da - a * ds / s) * x0

    rejected(c, no_correction, "-sigma_t alpha_t' / alpha_t")
    rejected(c, x1_formula, "target prediction")
    rejected(c, lambda x0, x, t, sch: -velocity_from_x0(x0, x, 1 - t, sch), "reversed time")


def test_schedule_change_mistakes():
    c = ex.check_schedule_change
    rejected(c, lambda r: (r, torch.ones_like(r)), "old path at time r")
    rejected(c, lambda r: (condot_to_cosine(r)[0], torch.ones_like(r)), "scale s_r is missing")
    rejected(c, lambda r: (condot_to_cosine(r)[0], 1 / condot_to_cosine(r)[1]), "inverted")
    swapped = lambda r: (torch.cos(math.pi * r / 2) / condot_to_cosine(r)[1], condot_to_cosine(r)[1])  # noqa: E731
    rejected(c, swapped, "reversed time")
    assert "[0, 1]" in rejected(c, lambda r: (r + 2, torch.ones_like(r))).failures[0].detail
    assert "[0, 1]" in rejected(c, lambda r: (r + 1e-4, condot_to_cosine(r)[1])).failures[0].detail


def test_schedule_change_accepts_the_closed_form_in_float32():
    # cos(pi / 2) is -4.4e-8 in float32, so t_r(1) = 1 + 1.2e-7: a rounding, not a wrong time
    def in_float32(r):
        return tuple(v.double() for v in condot_to_cosine(r.float()))

    assert ex.check_schedule_change(in_float32, verbose=False)


def test_fewest_steps_mistakes():
    c = ex.check_fewest_midpoint_steps
    rejected(c, lambda ratio: math.ceil(math.log10(ratio) / 2), "log10")
    rejected(c, lambda ratio: math.ceil(math.log(ratio)), "lambda h <= 2")
    rejected(c, lambda ratio: math.floor(math.log(ratio) / 2), "rounded down")
    rejected(c, lambda ratio: 2 * math.ceil(math.log(ratio) / 2), "NFE")
    assert "whole number" in rejected(c, lambda ratio: math.log(ratio) / 2).failures[0].detail
    # an integer held in a tensor is a count too
    assert ex.check_fewest_midpoint_steps(lambda r: torch.tensor(fewest_steps(r)), verbose=False)
    # and so is a NumPy integer (np.int64 is not an int), or a one-element array
    assert ex.check_fewest_midpoint_steps(lambda r: np.ceil(np.log(r) / 2).astype(int), verbose=False)
    assert ex.check_fewest_midpoint_steps(lambda r: np.array([fewest_steps(r)]), verbose=False)
    assert "whole number" in rejected(c, lambda r: np.float64(math.log(r) / 2)).failures[0].detail
    assert "whole number" in rejected(c, lambda r: np.array([4, 5])).failures[0].detail


# --------------------------------------------------- broken answers of every kind, every checker


def first_tensor_arg(args):
    return next(a for a in args if isinstance(a, torch.Tensor))


def broken_answers(correct):
    def raises(*args):
        raise RuntimeError("not written yet")

    def wrong_shape(*args):
        out = correct(*args)
        if isinstance(out, tuple):
            return tuple(o[:1] if o.shape[0] > 1 else o.repeat(2) for o in out)
        if isinstance(out, torch.Tensor):
            return out[:, :1] if out.ndim == 2 else out[:1]
        return [out, out]

    def nan(*args):
        out = correct(*args)
        if isinstance(out, tuple):
            return tuple(o * float("nan") for o in out)
        if isinstance(out, torch.Tensor):
            return out * float("nan")
        return float("nan")

    def mutates(*args):
        out = correct(*args)
        first_tensor_arg(args).add_(1.0)
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
    assert "shape" in detail or "pair" in detail or "whole number" in detail, detail
    nan_detail = rejected(checker, nan).failures[0].detail
    assert ("whole number" if checker is ex.check_fewest_midpoint_steps else "NaN") in nan_detail
    if checker is not ex.check_fewest_midpoint_steps:  # its only input is a float: nothing to modify
        result = rejected(checker, mutates)
        assert "in place" in result.failures[0].detail
        # the report shows the original inputs: the checker's next run is unchanged
        assert checker(CORRECT[checker], verbose=False).passed
    assert "did not finish" in rejected(checker, endless, time_limit=0.3).failures[0].detail
    result = checker(stub, verbose=False)
    assert result.status == "not attempted" and not result
    assert "not attempted yet" in result.report()

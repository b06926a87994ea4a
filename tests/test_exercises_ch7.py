"""The checkers of chapter 7's exercises accept correct answers, name typical mistakes, and give a
clear verdict on functions that raise, return the wrong shape or NaN, modify their input or never end."""

from __future__ import annotations

import math

import pytest
import torch
from exercise_answers import passes, stub

from fmbook import conventions, ddpm, paths
from fmbook import exercises as ex

# ----------------------------------------------------------------- answers a reader might write


def vp_alpha(t, beta_min, beta_max):
    s = 1 - t
    return torch.exp(-0.5 * (s * beta_min + 0.5 * s**2 * (beta_max - beta_min)))


def vp_alpha_from_scheduler(t, beta_min, beta_max):
    return paths.VPScheduler(beta_min, beta_max)(t).alpha_t


def vp_alpha_from_crosswalk(t, beta_min, beta_max):
    return conventions.song_vp_kernel(conventions.song_time(t), beta_min, beta_max)[0]


def ddim_step(eps, x, k, j, schedule, eta, noise):
    ab = schedule.alpha_bar
    a_k, a_j = ab[k].item(), ab[j].item()
    x0_hat = (x - math.sqrt(1 - a_k) * eps) / math.sqrt(a_k)
    s = eta * math.sqrt((1 - a_j) / (1 - a_k) * (1 - a_k / a_j))
    return math.sqrt(a_j) * x0_hat + math.sqrt(1 - a_j - s * s) * eps + s * noise


def ddim_step_log_space(eps, x, k, j, schedule, eta, noise):
    """The same step from the log alpha-bars, in the book's alpha and sigma."""
    la = schedule.log_alpha_bar
    a_k, a_j = torch.exp(0.5 * la[k]), torch.exp(0.5 * la[j])
    s_k, s_j = torch.sqrt(-torch.expm1(la[k])), torch.sqrt(-torch.expm1(la[j]))
    s = eta * (s_j / s_k) * torch.sqrt(1 - (a_k / a_j) ** 2)
    return a_j * (x - s_k * eps) / a_k + torch.sqrt(s_j**2 - s**2) * eps + s * noise


def velocity_noise_gain(scheduler, t):
    a, s, da, ds = scheduler(t)
    return ds - s * da / a


def velocity_noise_gain_library(scheduler, t):
    return paths.velocity_coefficients(t, "epsilon", scheduler)[1]




@pytest.mark.parametrize(
    ("checker", "answer"),
    [
        (ex.check_vp_alpha, vp_alpha),
        (ex.check_vp_alpha, vp_alpha_from_scheduler),
        (ex.check_vp_alpha, vp_alpha_from_crosswalk),
        (ex.check_ddim_step, ddim_step),
        (ex.check_ddim_step, ddim_step_log_space),
        (ex.check_velocity_noise_gain, velocity_noise_gain),
        (ex.check_velocity_noise_gain, velocity_noise_gain_library),
    ],
)
def test_checkers_accept_correct_answers(checker, answer, capsys):
    for seed in (0, 1):
        assert passes(checker(answer, seed=seed))
    out = capsys.readouterr().out
    assert f"{checker.__name__}: PASSED" in out and "FAIL" not in out
    assert max(len(line) for line in out.splitlines()) <= 77  # the report fits the book's code box


def test_the_chapters_are_in_the_registry():
    assert ex.BY_CHAPTER[7] == ["check_vp_alpha", "check_ddim_step", "check_velocity_noise_gain"]


def _rejects(checker, answer, hint_word=None):
    result = checker(answer, verbose=False)
    assert not passes(result)
    first = result.failures[0]
    assert first.detail
    if hint_word is not None:
        assert hint_word in first.hint, first.hint
    return result


# ----------------------------------------------------------------- typical mistakes, with hints


def test_vp_alpha_names_typical_mistakes():
    _rejects(ex.check_vp_alpha, lambda t, a, b: vp_alpha(1 - t, a, b), "reversed")
    _rejects(ex.check_vp_alpha, lambda t, a, b: vp_alpha(t, a, b) ** 2, "alpha-bar")
    no_half = lambda t, a, b: torch.exp(-0.5 * ((1 - t) * a + (1 - t) ** 2 * (b - a)))
    _rejects(ex.check_vp_alpha, no_half, "factor 1/2")
    not_integrated = lambda t, a, b: torch.exp(-0.5 * (1 - t) * (a + (1 - t) * (b - a)))  # s beta(s)
    _rejects(ex.check_vp_alpha, not_integrated, "not s beta(s)")
    _rejects(ex.check_vp_alpha, lambda t, a, b: vp_alpha(t, b, a), "swapped")
    _rejects(ex.check_vp_alpha, lambda t, a, b: torch.sqrt(1 - vp_alpha(t, a, b) ** 2), "sigma_t")
    # the discrete DDPM schedule of T = 1000 steps is not its limit: off by about 1e-3
    discrete = lambda t, a, b: ddpm.DiscreteVPScheduler(ddpm.linear_schedule(1000, a / 1000, b / 1000))(t).alpha_t
    _rejects(ex.check_vp_alpha, discrete)


def test_ddim_step_names_typical_mistakes():
    def off_by_one(eps, x, k, j, schedule, eta, noise):
        return ddim_step(eps, x, k - 1, j - 1, schedule, eta, noise)

    def no_share(eps, x, k, j, schedule, eta, noise):
        ab = schedule.alpha_bar
        a_k, a_j = ab[k].item(), ab[j].item()
        s = eta * math.sqrt((1 - a_j) / (1 - a_k) * (1 - a_k / a_j))
        x0_hat = (x - math.sqrt(1 - a_k) * eps) / math.sqrt(a_k)
        return math.sqrt(a_j) * x0_hat + math.sqrt(1 - a_j) * eps + s * noise

    def no_root(eps, x, k, j, schedule, eta, noise):
        ab = schedule.alpha_bar
        a_k, a_j = ab[k].item(), ab[j].item()
        s = eta * (1 - a_j) / (1 - a_k) * (1 - a_k / a_j)
        x0_hat = (x - math.sqrt(1 - a_k) * eps) / math.sqrt(a_k)
        return math.sqrt(a_j) * x0_hat + math.sqrt(1 - a_j - s * s) * eps + s * noise

    def deterministic(eps, x, k, j, schedule, eta, noise):
        return ddim_step(eps, x, k, j, schedule, 0.0, noise)

    def towards_noise(eps, x, k, j, schedule, eta, noise):  # alpha-bar_k and alpha-bar_j swapped
        a_k, a_j = schedule.alpha_bar[j].item(), schedule.alpha_bar[k].item()
        x0_hat = (x - math.sqrt(1 - a_k) * eps) / math.sqrt(a_k)
        return math.sqrt(a_j) * x0_hat + math.sqrt(1 - a_j) * eps

    _rejects(ex.check_ddim_step, off_by_one, "off by one")
    result = _rejects(ex.check_ddim_step, no_share, "sqrt(1 - alpha-bar_j - s^2)")
    assert result.cases[0].passed  # eta = 0: the same step; the mistake shows only with noise
    _rejects(ex.check_ddim_step, no_root, "square root")
    result = _rejects(ex.check_ddim_step, deterministic, "deterministic")
    assert result.cases[0].passed and not result.cases[3].passed  # Ho's step at eta = 1 catches it too
    _rejects(ex.check_ddim_step, towards_noise, "towards the noise")
    # the ancestral step with the variance beta_k is not the DDIM step with eta = 1
    beta_variance = lambda eps, x, k, j, schedule, eta, noise: ddpm.ancestral_step(eps, x, k, schedule, "beta", noise)
    assert not ex.check_ddim_step(beta_variance, verbose=False).cases[3].passed


def test_velocity_noise_gain_names_typical_mistakes():
    def x1_factor(scheduler, t):
        a, s, _, _ = scheduler(t)
        return s / a

    _rejects(ex.check_velocity_noise_gain, x1_factor, "x1-hat")
    _rejects(ex.check_velocity_noise_gain, lambda sc, t: -velocity_noise_gain(sc, t), "sign")
    _rejects(ex.check_velocity_noise_gain, lambda sc, t: sc(t).d_sigma_t, "only d_sigma_t")
    only_x1 = lambda sc, t: -sc(t).sigma_t * sc(t).d_alpha_t / sc(t).alpha_t
    _rejects(ex.check_velocity_noise_gain, only_x1, "direct term")
    _rejects(ex.check_velocity_noise_gain, lambda sc, t: velocity_noise_gain(sc, 1 - t), "reversed")


# ----------------------------------------------------------------- broken functions: clear verdicts

CORRECT = {
    ex.check_vp_alpha: vp_alpha,
    ex.check_ddim_step: ddim_step,
    ex.check_velocity_noise_gain: velocity_noise_gain,
}


def raises(*args):
    raise RuntimeError("boom")


def endless(*args):
    while True:
        pass




def wrong_shape(checker):
    return lambda *args: CORRECT[checker](*args)[..., None]


def nan(checker):
    return lambda *args: CORRECT[checker](*args) * float("nan")


def mutates(checker):
    def fn(*args):
        out = CORRECT[checker](*args)
        tensor = next(a for a in args if isinstance(a, torch.Tensor))
        tensor.add_(1.0)  # an in-place change of the first tensor argument
        return out

    return fn


@pytest.mark.parametrize("checker", list(CORRECT), ids=lambda c: c.__name__)
def test_broken_functions_get_clear_verdicts(checker):
    result = checker(raises, verbose=False)
    assert result.status == "failed" and "RuntimeError: boom" in result.failures[0].detail
    result = checker(wrong_shape(checker), verbose=False)
    assert result.status == "failed" and "shape" in result.failures[0].detail
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

"""The checkers of chapter 4's exercises accept correct answers, catch the typical mistakes with their
hints, and give a clear verdict on answers that raise, return the wrong shape or NaN, modify their
inputs, never end, or are still the stub."""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import torch
from exercise_answers import passes

from fmbook import exercises as ex
from fmbook import ot as fot

# ----------------------------------------------------------------- answers a reader might write


def kinetic_energy(traj, t):
    steps = (traj[:, 1:] - traj[:, :-1]).pow(2).sum(-1)
    return float((steps / (t[1:] - t[:-1])).sum(1).mean())


def straightness(traj, t):
    dt = (t[1:] - t[:-1])[None, :, None]
    slope = (traj[:, 1:] - traj[:, :-1]) / dt
    chord = (traj[:, -1] - traj[:, 0])[:, None]
    return ((chord - slope).pow(2).sum(-1) * dt[..., 0]).sum(1).mean()


def w2_line(a, b):
    return (a.sort(dim=0).values - b.sort(dim=0).values).pow(2).mean().sqrt()


def icfm_energy(m0, s0, m1, s1):
    return (m1 - m0) ** 2 + s0**2 + s1**2 - math.pi / 2 * s0 * s1


def ot_perm(x0, x1):
    w = np.full(len(x0), 1 / len(x0))
    return torch.as_tensor(ot.emd(w, w, ot.dist(x0.numpy(), x1.numpy())).argmax(1))


def lsa(x0, x1):
    """The optimal assignment of scipy, as it returns it: two numpy index arrays (rows, cols)."""
    from scipy.optimize import linear_sum_assignment

    return linear_sum_assignment(torch.cdist(x0.double(), x1.double()).pow(2).numpy())


def rotate(d):
    return torch.stack([-d[:, 1], d[:, 0]], dim=1)


def curved_path(x0, x1, t, c):
    t = t[:, None]
    d = x1 - x0
    return (1 - t) * x0 + t * x1 + c * t * (1 - t) * rotate(d), d + c * (1 - 2 * t) * rotate(d)




def rejects(checker, answer, hint_word: str | None, **kwargs) -> ex.CheckResult:
    """The checker fails the answer; its first failing case names ``hint_word`` in its hint."""
    result = checker(answer, verbose=False, **kwargs)
    assert result.attempted and not passes(result)
    first = result.failures[0]
    assert first.detail, first
    if hint_word is not None:
        assert hint_word in first.hint, (first.description, first.hint, first.detail)
    return result


# ------------------------------------------------------------------------------ (a) correct answers


@pytest.mark.parametrize(
    ("checker", "answer", "kwargs"),
    [
        (ex.check_kinetic_energy, kinetic_energy, {}),
        (ex.check_kinetic_energy, fot.kinetic_energy, {}),
        (ex.check_straightness, straightness, {}),
        (ex.check_straightness, fot.straightness, {}),
        (ex.check_w2_line, w2_line, {}),
        (ex.check_w2_line, fot.w2, {}),
        (ex.check_icfm_energy, icfm_energy, {}),
        (ex.check_icfm_energy, fot.gaussian_icfm_energy, {}),
        (ex.check_ot_pairing, ot_perm, {}),
        (ex.check_ot_pairing, lambda x0, x1: fot.ot_pair_indices(x0, x1)[1], {}),
        # the other valid forms of a pairing: what the exercise's hint, linear_sum_assignment,
        # returns (numpy arrays, alone or as the pair (rows, cols)), the book's index pair, a list
        (ex.check_ot_pairing, lambda x0, x1: lsa(x0, x1)[1], {}),
        (ex.check_ot_pairing, lsa, {}),
        (ex.check_ot_pairing, lambda x0, x1: tuple(torch.as_tensor(v).flip(0) for v in lsa(x0, x1)), {}),
        (ex.check_ot_pairing, fot.ot_pair_indices, {}),
        (ex.check_ot_pairing, lambda x0, x1: lsa(x0, x1)[1].tolist(), {}),
        # a number as a one-element numpy array
        (ex.check_w2_line, lambda a, b: np.sqrt(((np.sort(a.numpy(), 0) - np.sort(b.numpy(), 0)) ** 2).mean(0)),
         {}),
        (ex.check_curved_path, curved_path, {}),
        (ex.check_curved_path, curved_path, {"amplitude": 2.5}),
        (ex.check_curved_path, lambda x0, x1, t, c: tuple(fot.CurvedPath(c).sample(x0, x1, t))[:2], {}),
    ],
)
def test_checkers_accept_correct_answers(checker, answer, kwargs, capsys):
    for seed in (0, 1):
        assert passes(checker(answer, seed=seed, **kwargs))
    out = capsys.readouterr().out
    assert f"{checker.__name__}: PASSED" in out
    assert "FAIL" not in out


def test_chapter_4_lists_its_checkers():
    assert set(ex.BY_CHAPTER[4]) == {
        "check_curved_path", "check_icfm_energy", "check_kinetic_energy", "check_ot_pairing",
        "check_straightness", "check_w2_line",
    }
    for name in ex.BY_CHAPTER[4]:
        assert getattr(ex, name).__doc__


# ------------------------------------------------------------------------------ (b) typical mistakes


def _steps(traj, t):
    return (traj[:, 1:] - traj[:, :-1]).pow(2).sum(-1), t[1:] - t[:-1]


def test_kinetic_energy_checker_names_typical_mistakes():
    def not_divided(traj, t):
        return float(_steps(traj, t)[0].sum(1).mean())

    def multiplied(traj, t):
        sq, dt = _steps(traj, t)
        return float((sq * dt).sum(1).mean())

    def even_steps(traj, t):
        sq, dt = _steps(traj, t)
        return float((sq / ((t[-1] - t[0]) / dt.numel())).sum(1).mean())

    def summed(traj, t):
        return kinetic_energy(traj, t) * traj.shape[0]

    def averaged_coordinates(traj, t):
        sq = (traj[:, 1:] - traj[:, :-1]).pow(2).mean(-1)
        return float((sq / (t[1:] - t[:-1])).sum(1).mean())

    def length(traj, t):
        return float(_steps(traj, t)[0].sqrt().sum(1).mean())

    rejects(ex.check_kinetic_energy, not_divided, "not divided")
    rejects(ex.check_kinetic_energy, multiplied, "multiplied")
    rejects(ex.check_kinetic_energy, even_steps, "even")
    rejects(ex.check_kinetic_energy, summed, "summed")
    rejects(ex.check_kinetic_energy, averaged_coordinates, "averaged over the d coordinates")
    rejects(ex.check_kinetic_energy, length, "length")

    def averaged_steps(traj, t):
        sq, dt = _steps(traj, t)
        return float((sq / dt).mean(1).mean())

    rejects(ex.check_kinetic_energy, averaged_steps, "averaged (divided by T)")
    # another quadrature of the energy, not the polyline's (velocities by torch.gradient, then the
    # trapezoid rule): right on straight paths and fine grids, it passed before the coarse curved case
    def gradient_trapezoid(traj, t):
        v = torch.gradient(traj, spacing=(t,), dim=1)[0]
        return float(torch.trapezoid(v.pow(2).sum(-1), t, dim=1).mean())

    result = rejects(ex.check_kinetic_energy, gradient_trapezoid, None)
    assert [c.passed for c in result.cases] == [True] * 4 + [False]
    # not a named mistake, still wrong: the energy of the chord only
    rejects(ex.check_kinetic_energy, lambda traj, t: fot.transport_cost(traj[:, 0], traj[:, -1]), None)


def test_straightness_checker_names_typical_mistakes():
    def even_steps(traj, t):
        n = t.numel() - 1
        slope = (traj[:, 1:] - traj[:, :-1]) * n
        chord = (traj[:, -1] - traj[:, 0])[:, None]
        return float(((chord - slope).pow(2).sum(-1) / n).sum(1).mean())

    def unweighted(traj, t):
        slope = (traj[:, 1:] - traj[:, :-1]) / (t[1:] - t[:-1])[None, :, None]
        chord = (traj[:, -1] - traj[:, 0])[:, None]
        return float((chord - slope).pow(2).sum(-1).sum(1).mean())

    rejects(ex.check_straightness, kinetic_energy, "kinetic energy")
    rejects(ex.check_straightness, lambda traj, t: -straightness(traj, t), "sign")
    rejects(ex.check_straightness, even_steps, "even")
    rejects(ex.check_straightness, lambda traj, t: straightness(traj, t) * traj.shape[0], "summed")
    rejects(ex.check_straightness, unweighted, "not weighted")

    def averaged_steps(traj, t):
        slope = (traj[:, 1:] - traj[:, :-1]) / (t[1:] - t[:-1])[None, :, None]
        chord = (traj[:, -1] - traj[:, 0])[:, None]
        return float((chord - slope).pow(2).sum(-1).mean(1).mean())

    rejects(ex.check_straightness, averaged_steps, "averaged over the steps")


def test_w2_line_checker_names_typical_mistakes():
    import scipy.stats

    rejects(ex.check_w2_line, lambda a, b: (a - b).pow(2).mean().sqrt(), "not sorted")
    rejects(ex.check_w2_line, lambda a, b: w2_line(a, b) ** 2, "W2 squared")
    no_square = lambda a, b: (a.sort(dim=0).values - b.sort(dim=0).values).abs().mean()
    rejects(ex.check_w2_line, no_square, "not squared")
    # the same mistake through scipy, which computes W1
    rejects(ex.check_w2_line, lambda a, b: scipy.stats.wasserstein_distance(a[:, 0], b[:, 0]), "W1")
    descending = lambda a, b: (a.sort(dim=0).values - b.sort(dim=0, descending=True).values).pow(2).mean().sqrt()
    rejects(ex.check_w2_line, descending, "decreasing")
    rejects(ex.check_w2_line, lambda a, b: (a.sort(0).values - b.sort(0).values).pow(2).sum().sqrt(), "summed")


def test_icfm_energy_checker_names_typical_mistakes():
    rejects(ex.check_icfm_energy, lambda m0, s0, m1, s1: (m1 - m0) ** 2 + s0**2 + s1**2, "Jensen")
    rejects(ex.check_icfm_energy, lambda m0, s0, m1, s1: (m1 - m0) ** 2 + (s1 - s0) ** 2, "W2^2")
    with_pi = lambda m0, s0, m1, s1: (m1 - m0) ** 2 + s0**2 + s1**2 - math.pi * s0 * s1
    rejects(ex.check_icfm_energy, with_pi, "pi / 2")
    rejects(ex.check_icfm_energy, lambda m0, s0, m1, s1: icfm_energy(m0, s0, m1, s1) - (m1 - m0) ** 2, "mean")
    # the energy of the flow, but with |m1 - m0| in place of its square: no hint, still caught
    rejects(ex.check_icfm_energy, lambda m0, s0, m1, s1: icfm_energy(m0, s0, m1, s1) - (m1 - m0) ** 2
            + abs(m1 - m0), None)


def test_ot_pairing_checker_is_used_with_its_hints():
    rejects(ex.check_ot_pairing, lambda x0, x1: torch.arange(len(x0)), "independent")
    rejects(ex.check_ot_pairing, lambda x0, x1: ot_perm(x0, -x1), "maximised")
    # the plan read by columns: x0[perm[j]] is the partner of x1[j], the inverse of the pairing asked for
    rejects(ex.check_ot_pairing, lambda x0, x1: torch.as_tensor(np.argsort(lsa(x0, x1)[1])), "inverse")
    # the Euclidean cost (no square) in the assignment
    def euclid(x0, x1):
        from scipy.optimize import linear_sum_assignment

        return torch.as_tensor(linear_sum_assignment(torch.cdist(x0.double(), x1.double()).numpy())[1])

    rejects(ex.check_ot_pairing, euclid, "squared distance")
    # each x0 takes its nearest x1: usually not a permutation, and the verdict says why
    result = rejects(ex.check_ot_pairing, lambda x0, x1: torch.cdist(x0, x1).argmin(1), None)
    assert "nearest" in result.failures[0].detail


def test_curved_path_checker_names_typical_mistakes():
    def reversed_time(x0, x1, t, c):
        return curved_path(x1, x0, t, c)

    def wrong_side(x0, x1, t, c):
        return curved_path(x0, x1, t, -c)

    def straight(x0, x1, t, c):
        return curved_path(x0, x1, t, 0.0)

    def as_if_ct(x0, x1, t, c):
        x_t, _ = curved_path(x0, x1, t, c)
        return x_t, (x1 - x0) + c * rotate(x1 - x0)

    def product_rule_half(x0, x1, t, c, first=True):
        # d/dt [t (1 - t)] taken as (1 - t) (the derivative of t only) or as -t
        x_t, _ = curved_path(x0, x1, t, c)
        factor = (1 - t) if first else -t
        return x_t, (x1 - x0) + c * factor[:, None] * rotate(x1 - x0)

    def bend_sign(x0, x1, t, c):
        x_t, _ = curved_path(x0, x1, t, c)
        return x_t, (x1 - x0) - c * (1 - 2 * t)[:, None] * rotate(x1 - x0)

    def straight_velocity(x0, x1, t, c):
        return curved_path(x0, x1, t, c)[0], x1 - x0

    def flipped(x0, x1, t, c):
        x_t, v = curved_path(x0, x1, t, c)
        return x_t, -v

    def point_not_velocity(x0, x1, t, c):
        x_t, _ = curved_path(x0, x1, t, c)
        return x_t, x_t

    rejects(ex.check_curved_path, reversed_time, "reversed")
    rejects(ex.check_curved_path, lambda x0, x1, t, c: curved_path(x0, x1, 1 - t, c), "reversed")
    rejects(ex.check_curved_path, wrong_side, "wrong side")
    rejects(ex.check_curved_path, straight, "straight path")
    rejects(ex.check_curved_path, as_if_ct, "as if it were c t")
    rejects(ex.check_curved_path, product_rule_half, "product rule")
    rejects(ex.check_curved_path, lambda *a: product_rule_half(*a, first=False), "product rule")
    rejects(ex.check_curved_path, bend_sign, "wrong sign")
    rejects(ex.check_curved_path, straight_velocity, "bend's velocity")
    rejects(ex.check_curved_path, flipped, "sign")
    rejects(ex.check_curved_path, point_not_velocity, "returned x_t")
    # the amplitude is used: the path of c = 1 fails the check of c = 2
    rejects(ex.check_curved_path, lambda x0, x1, t, c: curved_path(x0, x1, t, 1.0), None, amplitude=2.0)
    result = rejects(ex.check_curved_path, lambda x0, x1, t, c: curved_path(x0, x1, t, c)[0], None)
    assert "pair (x_t, dx_t)" in result.failures[0].detail


def test_the_amplitude_is_checked_away_from_one():
    # At the chapter's amplitude c = 1 a factor c missing from x_t or dx_t, or c ignored, changes
    # nothing; these answers passed check_curved_path(fn, amplitude=1.0) before it had its case at a
    # second amplitude.
    def no_c_in_velocity(x0, x1, t, c):
        x_t, _ = curved_path(x0, x1, t, c)
        return x_t, (x1 - x0) + (1 - 2 * t)[:, None] * rotate(x1 - x0)

    def no_c_in_point(x0, x1, t, c):
        _, v = curved_path(x0, x1, t, c)
        tt = t[:, None]
        return (1 - tt) * x0 + tt * x1 + tt * (1 - tt) * rotate(x1 - x0), v

    for answer, word in ((no_c_in_velocity, "factor c of the bend's velocity"),
                         (no_c_in_point, "factor c of the bend is missing from x_t"),
                         (lambda x0, x1, t, c: curved_path(x0, x1, t, 1.0), "not used")):
        result = rejects(ex.check_curved_path, answer, word, amplitude=1.0)
        assert [c.passed for c in result.cases] == [True] * 4 + [False], result.report()
        assert "second amplitude" in result.failures[0].description
        assert result.failures[0].received.shape == (6, 4)  # each row: x_t, then dx_t


def test_the_velocity_is_judged_against_differences_of_the_readers_own_path():
    # The right velocity with a wrong x_t that keeps the ends: the ends pass; x_t at random times
    # fails, and so does the derivative case, which compares dx_t with differences of the reader's
    # own x_t (this x_t does not have this velocity), and the loss.
    def shifted(x0, x1, t, c):
        x_t, v = curved_path(x0, x1, t, c)
        return x_t + 1e-3 * torch.sin(torch.pi * t)[:, None], v

    result = ex.check_curved_path(shifted, verbose=False)
    assert [c.passed for c in result.cases] == [True, False, False, False, False], result.report()
    assert "central differences" in result.cases[2].description
    assert "central differences" in result.cases[2].detail  # what the velocity was compared with


def test_bad_arguments_of_the_checkers_are_named():
    with pytest.raises(ValueError, match="amplitude"):
        ex.check_curved_path(curved_path, amplitude=float("nan"))
    with pytest.raises(ValueError, match="seed"):
        ex.check_w2_line(w2_line, seed=-1)
    with pytest.raises(TypeError, match="fn"):
        ex.check_kinetic_energy(None)


# ------------------------------------------------------------------------------ (c) clear verdicts


def _mutate_first(*args):
    """Modify the first tensor argument in place."""
    for a in args:
        if isinstance(a, torch.Tensor):
            a.mul_(2)
            return


NUMBER_CHECKERS = [
    (ex.check_kinetic_energy, kinetic_energy),
    (ex.check_straightness, straightness),
    (ex.check_w2_line, w2_line),
    (ex.check_icfm_energy, icfm_energy),
]
ALL = [*NUMBER_CHECKERS, (ex.check_ot_pairing, ot_perm), (ex.check_curved_path, curved_path)]
IDS = [c.__name__ for c, _ in ALL]


def _wrong_shape(checker, answer):
    if checker is ex.check_curved_path:
        return lambda *a: tuple(v[:, :1] for v in answer(*a))
    if checker is ex.check_ot_pairing:
        return lambda x0, x1: answer(x0, x1)[:-1]
    return lambda *a: torch.full((3,), float(answer(*a)))


def _nan(checker, answer):
    if checker is ex.check_curved_path:
        return lambda *a: tuple(v * float("nan") for v in answer(*a))
    if checker is ex.check_ot_pairing:
        return lambda x0, x1: answer(x0, x1) * float("nan")
    return lambda *a: float("nan")


@pytest.mark.parametrize(("checker", "answer"), ALL, ids=IDS)
def test_an_answer_that_raises_fails_with_its_message(checker, answer):
    def broken(*args):
        raise ZeroDivisionError("oops")

    result = checker(broken, verbose=False)
    assert result.attempted and not result.passed
    assert all("ZeroDivisionError: oops" in c.detail for c in result.cases)


@pytest.mark.parametrize(("checker", "answer"), ALL, ids=IDS)
def test_a_wrong_shape_is_named(checker, answer):
    result = checker(_wrong_shape(checker, answer), verbose=False)
    assert not result.passed
    first = result.failures[0]
    assert "shape" in first.detail or "permutation" in first.detail, first.detail


@pytest.mark.parametrize(("checker", "answer"), ALL, ids=IDS)
def test_nan_is_named(checker, answer):
    result = checker(_nan(checker, answer), verbose=False)
    assert not result.passed
    first = result.failures[0]
    assert "NaN" in first.detail or "integer tensor" in first.detail, first.detail


@pytest.mark.parametrize(("checker", "answer"), [a for a in ALL if a[0] is not ex.check_icfm_energy],
                         ids=[i for i in IDS if i != "check_icfm_energy"])
def test_an_in_place_update_fails_and_the_originals_are_reported(checker, answer):
    seen = []

    def in_place(*args):
        seen.append([a.clone() for a in args if isinstance(a, torch.Tensor)])
        out = answer(*args)
        _mutate_first(*args)
        return out

    result = checker(in_place, verbose=False)
    assert not result.passed
    first = result.failures[0]
    assert "in place" in first.detail
    original = next(v for v in first.inputs.values() if isinstance(v, torch.Tensor))
    assert torch.equal(original, seen[0][0])  # the report shows the inputs as they were given


def test_the_energy_formula_gets_numbers_that_cannot_be_modified():
    # check_icfm_energy passes Python floats, immutable: there is nothing to modify in place.
    got = []
    ex.check_icfm_energy(lambda *a: got.append(a) or icfm_energy(*a), verbose=False)
    assert got and all(isinstance(v, float) for args in got for v in args)


@pytest.mark.parametrize(("checker", "answer"), ALL, ids=IDS)
def test_an_endless_loop_is_stopped(checker, answer):
    def forever(*args):
        while True:
            pass

    result = checker(forever, verbose=False, time_limit=0.3)
    assert not result.passed
    assert "did not finish within 0.3 s" in result.failures[0].detail


@pytest.mark.parametrize(("checker", "answer"), ALL, ids=IDS)
def test_the_stub_is_not_attempted(checker, answer, capsys):
    def stub(*args):
        raise NotImplementedError("your turn")

    result = checker(stub)
    assert result.status == "not attempted" and not result
    out = capsys.readouterr().out
    assert "not attempted yet" in out and len(out.strip().splitlines()) == 1

"""Tests of fmbook.metrics: basic properties and independent computations."""

import itertools
import math

import pytest
import torch

from fmbook import data, metrics


def test_zero_on_identical_sets_and_symmetric():
    a = data.sample_moons(300, generator=0)
    b = data.sample_moons(300, generator=1)
    for m in (metrics.sliced_w2, metrics.exact_w2, metrics.mmd_rbf):
        assert m(a, a) == pytest.approx(0.0, abs=1e-7)
        assert m(a, b) == pytest.approx(m(b, a), rel=1e-9)
        assert m(a, b) > 0


def test_scaling():
    a, b = torch.randn(200, 2, dtype=torch.float64), torch.randn(200, 2, dtype=torch.float64) + 0.5
    assert metrics.sliced_w2(3 * a, 3 * b) == pytest.approx(3 * metrics.sliced_w2(a, b), rel=1e-9)
    assert metrics.exact_w2(3 * a, 3 * b) == pytest.approx(3 * metrics.exact_w2(a, b), rel=1e-6)
    # With the median-heuristic bandwidth, MMD is invariant to a common rescaling.
    assert metrics.mmd_rbf(3 * a, 3 * b) == pytest.approx(metrics.mmd_rbf(a, b), rel=1e-6)


def test_translation_distances():
    a = torch.randn(150, 2, dtype=torch.float64)
    shift = torch.tensor([0.3, -0.4], dtype=torch.float64)
    # W2(a, a + v) = |v|; the sliced version is sqrt(mean_theta <v, theta>^2) = |v| / sqrt(2) in 2-D.
    assert metrics.exact_w2(a, a + shift) == pytest.approx(0.5, rel=1e-6)
    assert metrics.sliced_w2(a, a + shift) == pytest.approx(0.5 / math.sqrt(2), rel=1e-6)


def test_exact_w2_against_brute_force():
    torch.manual_seed(0)
    a, b = torch.randn(6, 2, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
    best = min(((a - b[list(p)]) ** 2).sum(1).mean().item() for p in itertools.permutations(range(6)))
    assert metrics.exact_w2(a, b) == pytest.approx(math.sqrt(best), rel=1e-9)


def test_sliced_is_at_most_exact():
    a, b = data.sample_moons(400, generator=0), data.sample_checkerboard(400, generator=0) * 0.5
    assert metrics.sliced_w2(a, b) <= metrics.exact_w2(a, b) + 1e-9


def test_sliced_w2_in_one_dimension_equals_sorted_distance():
    a, b = torch.randn(50, 1, dtype=torch.float64), torch.randn(50, 1, dtype=torch.float64) * 2
    expected = ((a[:, 0].sort().values - b[:, 0].sort().values) ** 2).mean().sqrt().item()
    assert metrics.sliced_w2(a, b, n_directions=4) == pytest.approx(expected, rel=1e-9)


def test_sliced_w2_unequal_sizes():
    a = data.sample_moons(1000, generator=0)
    assert metrics.sliced_w2(a, a[::2]) < 0.05
    assert metrics.sliced_w2(a, a[:500] + 1.0) > 0.5


def test_mmd_against_direct_double_sum():
    torch.manual_seed(0)
    a, b, h = torch.randn(7, 2, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64), 0.8

    def k(x, y):
        return math.exp(-float(((x - y) ** 2).sum()) / (2 * h * h))

    kaa = sum(k(x, y) for x in a for y in a) / 49
    kbb = sum(k(x, y) for x in b for y in b) / 25
    kab = sum(k(x, y) for x in a for y in b) / 35
    assert metrics.mmd_rbf(a, b, bandwidth=h) == pytest.approx(math.sqrt(kaa + kbb - 2 * kab), rel=1e-9)


def test_noise_floor_is_the_mean_over_pairs_and_its_default_is_precise():
    pairs = [
        metrics.sliced_w2(data.sample_moons(2000, 2 * i + 1_000), data.sample_moons(2000, 2 * i + 1_001))
        for i in range(30)
    ]
    assert metrics.noise_floor(metrics.sliced_w2, data.sample_moons, 2000) == pytest.approx(sum(pairs) / 30, rel=1e-12)
    # One pair is noisy (its standard deviation is about a third of the mean for 2000 moons);
    # the default number of pairs must bring the relative standard error of the mean below 8 %.
    spread = torch.tensor(pairs).std().item() / (sum(pairs) / 30)
    assert 0.15 < spread < 0.6
    assert spread / math.sqrt(30) < 0.08


def _moons_generator(shift: float = 0.0):
    def generate(n, seed):
        return data.sample_moons(n, generator=10_000 + seed) + shift

    return generate


def test_ratio_to_floor_of_the_data_itself_is_one_within_its_stderr():
    result = metrics.ratio_to_floor(_moons_generator(), data.sample_moons, 500, repeats=40)
    assert 0 < result.stderr < 0.1
    assert abs(result.ratio - 1.0) < 3 * result.stderr
    assert result.ratio == pytest.approx(result.value / result.floor)
    assert "x floor" in str(result)


def test_ratio_to_floor_stderr_matches_the_spread_of_independent_evaluations():
    # Monte Carlo: 40 independent evaluations of 10 repeats each; their standard deviation
    # and the mean reported standard error agree within a factor 1.5.
    runs = [
        metrics.ratio_to_floor(_moons_generator(0.05), data.sample_moons, 300, repeats=10, seed=100 * k)
        for k in range(40)
    ]
    spread = float(torch.tensor([r.ratio for r in runs]).std())
    reported = sum(r.stderr for r in runs) / len(runs)
    assert reported / 1.5 < spread < 1.5 * reported


def test_floor_reference_reuses_its_draws_and_matches_ratio_to_floor():
    reference = metrics.FloorReference(data.sample_moons, 400, repeats=6, seed=3)
    by_function = metrics.ratio_to_floor(_moons_generator(0.1), data.sample_moons, 400, repeats=6, seed=3)
    by_reference = reference.ratio(_moons_generator(0.1))
    assert by_reference == by_function
    floor = metrics.noise_floor(metrics.sliced_w2, data.sample_moons, 400, seed=3, repeats=6)
    assert reference.floor == pytest.approx(floor, rel=1e-12)
    first = reference.ratio(_moons_generator(0.1), repeats=3)
    assert first == metrics.ratio_to_floor(_moons_generator(0.1), data.sample_moons, 400, repeats=3, seed=3)
    # The model values by hand: the i-th model draw against the i-th target.
    by_hand = [metrics.sliced_w2(_moons_generator(0.1)(400, 3 + i), reference.targets[i]) for i in range(6)]
    assert by_reference.value == pytest.approx(sum(by_hand) / 6, rel=1e-12)


@pytest.mark.parametrize("dim", [2, 3])
def test_floor_reference_with_sorted_targets_equals_the_plain_metric(dim):
    # With the sliced W2 the reference keeps its targets' sorted projections; the results must be
    # those of calling sliced_w2 afresh each time (a wrapper, which gets no such shortcut).
    def sampler(n, seed):
        return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))

    def generate(n, seed):
        return 1.2 * sampler(n, 1000 + seed) + 0.1

    fast = metrics.FloorReference(sampler, 300, repeats=5)
    plain = metrics.FloorReference(sampler, 300, metric=lambda a, b: metrics.sliced_w2(a, b), repeats=5)
    assert fast._sorted_targets is not None and plain._sorted_targets is None
    assert fast.floor == plain.floor
    assert fast.ratio(generate) == plain.ratio(generate)


def test_ratio_to_floor_sees_a_shift():
    result = metrics.ratio_to_floor(_moons_generator(0.3), data.sample_moons, 500, repeats=20)
    assert result.ratio > 2 and result.ratio - 1 > 4 * result.stderr


def test_noise_floor_is_what_independent_draws_score():
    floor = metrics.noise_floor(metrics.sliced_w2, data.sample_moons, 500, repeats=4)
    assert 0 < floor < 0.3
    far = metrics.sliced_w2(data.sample_moons(500, generator=0), data.sample_gaussian(500, generator=0))
    assert far > 4 * floor


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: metrics.sliced_w2(torch.randn(5, 2), torch.randn(5, 3)), "b must have 2 columns"),
        (lambda: metrics.exact_w2(torch.randn(5), torch.randn(5, 2)), "a must have shape"),
        (lambda: metrics.mmd_rbf(torch.randn(5, 2), torch.randn(5, 2), bandwidth=0.0), "bandwidth must be"),
        (lambda: metrics.sliced_w2(torch.randn(5, 2), torch.randn(5, 2), n_directions=0), "n_directions must be"),
        (lambda: metrics.noise_floor(metrics.sliced_w2, data.sample_moons, 0), "n must be"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()

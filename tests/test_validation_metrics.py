"""Bad input to fmbook.metrics: every distance between point sets, and the noise floor."""

import math

import pytest
import torch

from fmbook import metrics
from fmbook.data import sample_moons

A, B = torch.randn(20, 2), torch.randn(30, 2)


def _gen(n, seed):
    return sample_moons(n, generator=seed + 77)

PAIR_METRICS = [metrics.sliced_w2, metrics.exact_w2, metrics.median_bandwidth, metrics.mmd_rbf]

BAD_PAIRS = [
    (A.numpy(), B, TypeError, r"a must be a torch.Tensor"),
    (A, B.long(), TypeError, r"b must be a floating-point tensor"),
    (A[0], B, ValueError, r"a must have shape \(batch, dim\)"),
    (A, B[None], ValueError, r"b must have shape \(batch, dim\)"),
    (torch.randn(0, 2), B, ValueError, r"a must hold at least one point"),
    (A, torch.randn(0, 2), ValueError, r"b must hold at least one point"),
    (A, torch.randn(30, 3), ValueError, r"b must have 2 columns"),
    (torch.full((20, 2), math.nan), B, ValueError, r"a must contain only finite values"),
    (A, torch.full((30, 2), math.inf), ValueError, r"b must contain only finite values"),
]


@pytest.mark.parametrize("metric", PAIR_METRICS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("a, b, exc, match", BAD_PAIRS, ids=[c[3] for c in BAD_PAIRS])
def test_pair_metrics_bad_input(metric, a, b, exc, match):
    with pytest.raises(exc, match=match):
        metric(a, b)


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: metrics.sliced_w2(A, B, n_directions=0), ValueError, r"n_directions must be >= 1"),
        (lambda: metrics.sliced_w2(A, B, n_directions=8.0), TypeError, r"n_directions must be an int"),
        (lambda: metrics.slicing_directions(0), ValueError, r"dim must be >= 1"),
        (lambda: metrics.slicing_directions(2, -1), ValueError, r"n_directions must be >= 1"),
        (lambda: metrics.mmd_rbf(A, B, bandwidth=0.0), ValueError, r"bandwidth must be a finite number > 0"),
        (lambda: metrics.mmd_rbf(A, B, bandwidth=-1.0), ValueError, r"bandwidth must be"),
        (lambda: metrics.mmd_rbf(A, B, bandwidth=math.nan), ValueError, r"bandwidth must be"),
        (lambda: metrics.mmd_rbf(A, B, bandwidth="1"), TypeError, r"bandwidth must be a number"),
        (lambda: metrics.mmd_rbf(torch.ones(3, 2), torch.ones(4, 2)), ValueError, r"bandwidth: the median heuristic"),
        (lambda: metrics.noise_floor("sliced", sample_moons, 10), TypeError, r"metric must be callable"),
        (lambda: metrics.noise_floor(metrics.sliced_w2, None, 10), TypeError, r"sampler must be callable"),
        (lambda: metrics.noise_floor(metrics.sliced_w2, sample_moons, 0), ValueError, r"n must be >= 1"),
        (lambda: metrics.noise_floor(metrics.sliced_w2, sample_moons, 10, repeats=0), ValueError, r"repeats must be"),
        (lambda: metrics.noise_floor(metrics.sliced_w2, sample_moons, 10, seed=-4), ValueError, r"seed must be"),
        (lambda: metrics.noise_floor(metrics.sliced_w2, sample_moons, 10, seed=1.0), ValueError, r"seed must be"),
        (lambda: metrics.ratio_to_floor(None, sample_moons, 10), TypeError, r"generate must be callable"),
        (lambda: metrics.ratio_to_floor(_gen, "moons", 10), TypeError, r"sampler must be callable"),
        (lambda: metrics.ratio_to_floor(_gen, sample_moons, 10, metric=1), TypeError, r"metric must be callable"),
        (lambda: metrics.ratio_to_floor(_gen, sample_moons, 0), ValueError, r"n must be >= 1"),
        (lambda: metrics.ratio_to_floor(_gen, sample_moons, 10, repeats=1), ValueError, r"repeats must be >= 2"),
        (lambda: metrics.ratio_to_floor(_gen, sample_moons, 10, seed=-1), ValueError, r"seed must be an int >= 0"),
        (lambda: metrics.ratio_to_floor(lambda n, s: torch.zeros(n, 3), sample_moons, 10), ValueError,
         r"generate\(n, seed\) must return a tensor of shape \(10, 2\)"),
        (lambda: metrics.FloorReference(sample_moons, 10, repeats=0), ValueError, r"repeats must be >= 2"),
        (lambda: metrics.FloorReference(None, 10), TypeError, r"sampler must be callable"),
        (lambda: metrics.FloorReference(sample_moons, 10, repeats=3).ratio(_gen, repeats=4), ValueError,
         r"repeats must be <= 3"),
        (lambda: metrics.FloorReference(sample_moons, 10, repeats=3).ratio(_gen, repeats=1), ValueError,
         r"repeats must be >= 2"),
        (lambda: metrics.FloorReference(sample_moons, 10).ratio("model"), TypeError, r"generate must be callable"),
        (lambda: metrics.ratio_to_floor(lambda n, s: [0.0] * n, sample_moons, 10), ValueError,
         r"generate\(n, seed\) must return a tensor"),
    ],
)
def test_metric_hyper_parameters(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_mixed_dtypes_and_sizes_accepted():
    """float16 against float64 and sets of different sizes are fine (computed in float64)."""
    value = metrics.sliced_w2(A.half(), B.double())
    assert math.isfinite(value) and value > 0
    assert metrics.exact_w2(A, A) == pytest.approx(0.0, abs=1e-12)

r"""Distances between two sets of samples, and their noise floors.

* :func:`sliced_w2`: the sliced 2-Wasserstein distance, the root mean over directions
  :math:`\theta` of :math:`W_2^2` between the projections :math:`\langle x, \theta\rangle`.
  In 1-D, :math:`W_2` is the :math:`L^2` distance between quantile functions, so sorting does it.
* :func:`exact_w2`: the 2-Wasserstein distance by exact optimal transport (POT).
* :func:`mmd_rbf`: the maximum mean discrepancy with a Gaussian (RBF) kernel.
* :func:`noise_floor`: a metric between two independent draws of the same data set, i.e.
  the value a perfect model would get with the same number of samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import ot
import torch
from torch import Tensor

from ._validation import check_callable, check_points, check_positive_float, check_positive_int

Metric = Callable[[Tensor, Tensor], float]


def _pair(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    a = check_points(a, "a")
    b = check_points(b, "b", dim=a.shape[1])
    return a.detach().to("cpu", torch.float64), b.detach().to("cpu", torch.float64)


def slicing_directions(dim: int, n_directions: int = 128) -> Tensor:
    """Unit directions ``(n_directions, dim)``: evenly spaced half-circle angles in 2-D,
    a fixed seeded Gaussian draw (normalised) in other dimensions, so results are repeatable."""
    check_positive_int(dim, "dim")
    check_positive_int(n_directions, "n_directions")
    if dim == 2:
        angles = torch.arange(n_directions, dtype=torch.float64) * math.pi / n_directions
        return torch.stack([angles.cos(), angles.sin()], dim=1)
    g = torch.Generator().manual_seed(0)
    d = torch.randn(n_directions, dim, generator=g, dtype=torch.float64)
    return d / d.norm(dim=1, keepdim=True)


def _quantiles(x: Tensor, levels: Tensor) -> Tensor:
    """Empirical quantile functions of each column of sorted ``x`` ``(n, k)`` at ``levels``."""
    n = x.shape[0]
    idx = torch.clamp((levels * n).floor().long(), max=n - 1)
    return x[idx]


def sliced_w2(a: Tensor, b: Tensor, n_directions: int = 128) -> float:
    """Sliced 2-Wasserstein distance between point sets ``a`` ``(n, d)`` and ``b`` ``(m, d)``.

    ``sqrt(mean_theta W2^2(a.theta, b.theta))``; for ``n != m`` the quantile functions are
    compared at the midpoints of ``max(n, m)`` equal probability bins.
    """
    a, b = _pair(a, b)
    dirs = slicing_directions(a.shape[1], n_directions)
    pa, _ = (a @ dirs.T).sort(dim=0)
    pb, _ = (b @ dirs.T).sort(dim=0)
    if pa.shape[0] != pb.shape[0]:
        k = max(pa.shape[0], pb.shape[0])
        levels = (torch.arange(k, dtype=torch.float64) + 0.5) / k
        pa, pb = _quantiles(pa, levels), _quantiles(pb, levels)
    return float(((pa - pb) ** 2).mean().sqrt())


def exact_w2(a: Tensor, b: Tensor) -> float:
    """The 2-Wasserstein distance between the uniform empirical measures on ``a`` and ``b``.

    Solved exactly as a linear program with POT's network simplex (``ot.emd2``) on the
    squared Euclidean cost. Cost O(n^3) in practice: use up to a few thousand points.
    """
    a, b = _pair(a, b)
    cost = torch.cdist(a, b) ** 2
    wa = np.full(a.shape[0], 1.0 / a.shape[0])
    wb = np.full(b.shape[0], 1.0 / b.shape[0])
    value = ot.emd2(wa, wb, cost.numpy(), numItermax=10_000_000)
    return float(math.sqrt(max(float(value), 0.0)))


def median_bandwidth(a: Tensor, b: Tensor) -> float:
    """The median heuristic: the median distance between distinct points of ``a`` and ``b`` pooled."""
    a, b = _pair(a, b)
    z = torch.cat([a, b])
    dist = torch.cdist(z, z)
    off_diagonal = dist[~torch.eye(z.shape[0], dtype=torch.bool)]
    return float(off_diagonal.median())


def mmd_rbf(a: Tensor, b: Tensor, bandwidth: float | None = None) -> float:
    r"""Maximum mean discrepancy with the kernel :math:`k(x, y) = \exp(-\|x - y\|^2 / (2 h^2))`.

    The (biased, always non-negative) V-statistic
    :math:`\mathrm{MMD}^2 = \overline{k(a, a)} + \overline{k(b, b)} - 2\,\overline{k(a, b)}`,
    returned as its square root. ``h`` is :func:`median_bandwidth` unless given, which makes
    the metric invariant to a common rescaling of both sets.
    """
    a, b = _pair(a, b)
    if bandwidth is not None:
        check_positive_float(bandwidth, "bandwidth")
    h = median_bandwidth(a, b) if bandwidth is None else float(bandwidth)
    if not (math.isfinite(h) and h > 0):
        raise ValueError(
            f"bandwidth: the median heuristic gave {h} (the points coincide); pass a bandwidth > 0"
        )

    def k(x: Tensor, y: Tensor) -> Tensor:
        return torch.exp(-torch.cdist(x, y) ** 2 / (2 * h * h)).mean()

    mmd2 = k(a, a) + k(b, b) - 2 * k(a, b)
    return float(mmd2.clamp_min(0).sqrt())


def noise_floor(
    metric: Metric,
    sampler: Callable[..., Tensor],
    n: int,
    seed: int = 0,
    repeats: int = 3,
) -> float:
    """The mean of ``metric(sampler(n), sampler(n))`` over independent pairs of draws.

    ``sampler(n, seed=...)`` is a data sampler such as :func:`fmbook.data.sample_moons`; the
    floor is what a perfect generator would score against ``n`` fresh data points.
    """
    check_callable(metric, "metric", "metric(a, b)")
    check_callable(sampler, "sampler", "sampler(n, seed=...)")
    check_positive_int(n, "n")
    check_positive_int(repeats, "repeats")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    values = [
        metric(sampler(n, seed=seed + 2 * i + 1_000), sampler(n, seed=seed + 2 * i + 1_001))
        for i in range(repeats)
    ]
    return float(np.mean(values))

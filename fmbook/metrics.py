r"""Distances between two sets of samples, and their noise floors.

* :func:`sliced_w2`: the sliced 2-Wasserstein distance, the root-mean-square over directions
  :math:`\theta` of the 1-D :math:`W_2` between the projections :math:`\langle x, \theta\rangle`,
  :math:`(\operatorname{mean}_\theta W_2^2(\theta_\# a, \theta_\# b))^{1/2}` (not the mean of the 1-D :math:`W_2`).
  In 1-D, :math:`W_2` is the :math:`L^2` distance between quantile functions, so sorting does it.
* :func:`exact_w2`: the 2-Wasserstein distance by exact optimal transport (POT).
* :func:`flow_w2_bound`: how far from the data a flow can land, given its flow-matching loss.
* :func:`mmd_rbf`: the maximum mean discrepancy with a Gaussian (RBF) kernel.
* :func:`moment_zscores`: a sample mean and covariance against claimed ones, in standard errors.
* :func:`moon_curve_distance` and :func:`moon_curve_rms`: how far samples lie from the noiseless
  curves of the two moons, a measure of their thickness that the distances above cannot see.
* :func:`noise_floor`: a metric between two independent draws of the same data set, i.e.
  the value a perfect model would get with the same number of samples.
* :func:`ratio_to_floor` and :class:`FloorReference`: a generator's distance to the data in
  units of that floor, averaged over many draws, with its standard error.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from . import ot as transport
from ._checks import (
    check_callable,
    check_point_clouds,
    check_points,
    check_positive_float,
    check_positive_int,
    check_seed,
    check_tensor,
)
from .ot import _gaussian_w2_squared

Metric = Callable[[Tensor, Tensor], float]


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


def _quantiles(x: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Empirical quantile functions of each row of sorted ``x`` ``(k, n)`` at ``levels``."""
    n = x.shape[1]
    idx = np.minimum(np.floor(levels * n).astype(np.int64), n - 1)
    return x[:, idx]


def sliced_w2(a: Tensor, b: Tensor, n_directions: int = 128) -> float:
    r"""Sliced 2-Wasserstein distance between point sets ``a`` ``(n, d)`` and ``b`` ``(m, d)``.

    The root-mean-square over the directions :math:`\theta` of :func:`slicing_directions` of the
    1-D :math:`W_2` between the projections,

    .. math:: SW_2(a, b) = \Big(\frac1K \sum_k W_2^2\big(\langle a, \theta_k\rangle,
              \langle b, \theta_k\rangle\big)\Big)^{1/2},

    which is at least the mean of the 1-D :math:`W_2` (Jensen). Each 1-D :math:`W_2` is the
    :math:`L^2` distance between quantile functions (sorting); for ``n != m`` the quantile functions
    are compared at the midpoints of ``max(n, m)`` equal probability bins.
    """
    a, b = check_point_clouds(a, b, to_float64_cpu=True)
    return _sliced_w2_of_sorted(_sorted_projections(a, n_directions), _sorted_projections(b, n_directions))


def _sorted_projections(x: Tensor, n_directions: int = 128) -> np.ndarray:
    """The points ``x`` ``(n, d)`` (float64) projected on the slicing directions and sorted: ``(n_directions, n)``."""
    dirs = slicing_directions(x.shape[1], n_directions)
    # One row per direction; NumPy's sort of float64 rows is several times faster than torch's.
    return np.sort((dirs @ x.T).numpy(), axis=1)


def _sliced_w2_of_sorted(pa: np.ndarray, pb: np.ndarray) -> float:
    """:func:`sliced_w2` from the sorted projections of its two point sets."""
    if pa.shape[1] != pb.shape[1]:
        k = max(pa.shape[1], pb.shape[1])
        levels = (np.arange(k, dtype=np.float64) + 0.5) / k
        pa, pb = _quantiles(pa, levels), _quantiles(pb, levels)
    return float(np.sqrt(np.mean((pa - pb) ** 2)))


def exact_w2(a: Tensor, b: Tensor) -> float:
    """The 2-Wasserstein distance between the uniform empirical measures on ``a`` and ``b``.

    The metric form (arguments ``a``, ``b``, uniform weights) of :func:`fmbook.ot.w2`, which
    computes it: an exact linear program by POT's network simplex on the squared Euclidean
    cost. Cost O(n^3) in practice: use up to a few thousand points.
    """
    a, b = check_point_clouds(a, b, to_float64_cpu=True)
    return transport.w2(a, b)


def flow_w2_bound(fm_loss: float, lipschitz: float) -> float:
    r"""The Gronwall bound on :math:`W_2` between the law a learned flow reaches and the data.

    If the marginal velocity :math:`u_t` carries :math:`X_0 \sim P` to :math:`X_1 \sim Q`, and the
    learned field :math:`v_t` is :math:`L`-Lipschitz in :math:`x` for every :math:`t \in [0, 1]`, its flow
    from the same :math:`X_0` ends at a law :math:`\hat Q` with

    .. math:: W_2(\hat Q, Q)^2 \le \frac{e^{2L} - 1}{2L}\, \mathcal L_{\mathrm{FM}},
              \qquad \mathcal L_{\mathrm{FM}} = \int_0^1 \mathbb E\,\lVert v_t(X_t) - u_t(X_t)\rVert^2\, dt

    (the factor tends to 1 as :math:`L \to 0`). Returns the right side's square root.
    ``fm_loss`` and ``lipschitz`` are non-negative floats.
    """
    for name, value in (("fm_loss", fm_loss), ("lipschitz", lipschitz)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite non-negative number, got {value!r}")
    factor = 1.0 if lipschitz == 0 else math.expm1(2 * lipschitz) / (2 * lipschitz)
    return math.sqrt(factor * fm_loss)


def median_bandwidth(a: Tensor, b: Tensor) -> float:
    """The median heuristic: the median distance between distinct points of ``a`` and ``b`` pooled."""
    a, b = check_point_clouds(a, b, to_float64_cpu=True)
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
    a, b = check_point_clouds(a, b, to_float64_cpu=True)
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


def moment_zscores(samples: Tensor, mean: Tensor, cov: Tensor) -> tuple[Tensor, Tensor]:
    r"""How many Monte Carlo standard errors the sample mean and covariance lie from a claimed ``mean`` and ``cov``.

    For i.i.d. samples :math:`x_1, \dots, x_n` of a law claimed to have mean :math:`\mu` and covariance
    :math:`\Sigma`, the entries of the sample mean and of :math:`\hat\Sigma_{jl} = \frac1n\sum_i
    (x_{ij} - \mu_j)(x_{il} - \mu_l)` (centred at the claimed mean, so unbiased under the claim) are
    compared with the claim in units of their standard errors, estimated from the same samples:

    .. math:: z^{\mu}_j = \frac{\bar x_j - \mu_j}{s_j / \sqrt n}, \qquad
              z^{\Sigma}_{jl} = \frac{\hat\Sigma_{jl} - \Sigma_{jl}}{s_{jl} / \sqrt n},

    with :math:`s_j` the sample standard deviation of :math:`x_{ij}` and :math:`s_{jl}` that of the products
    :math:`(x_{ij} - \mu_j)(x_{il} - \mu_l)` over i.

    Under the claim each z is approximately standard normal for large n (central limit theorem), so
    ``max |z| < 4`` over a few dozen entries fails by chance with probability about :math:`10^{-3}`.

    Args:
        samples: ``(n, d)``, n >= 2.
        mean: the claimed mean, ``(d,)``.
        cov: the claimed covariance, ``(d, d)``.

    Returns:
        ``(z_mean, z_cov)`` of shapes ``(d,)`` and ``(d, d)`` (symmetric), float64.
    """
    x = check_points(samples, "samples").to(torch.float64)
    n, d = x.shape
    if n < 2:
        raise ValueError(f"samples must hold at least 2 points, got {n}")
    if not isinstance(mean, Tensor) or mean.shape != (d,):
        raise ValueError(f"mean must be a tensor of shape ({d},), got {getattr(mean, 'shape', type(mean).__name__)}")
    if not isinstance(cov, Tensor) or cov.shape != (d, d):
        raise ValueError(f"cov must be a tensor of shape ({d}, {d}), got {getattr(cov, 'shape', type(cov).__name__)}")
    centred = x - mean.to(x)
    z_mean = centred.mean(0) / (x.std(0) / math.sqrt(n))
    products = centred[:, :, None] * centred[:, None, :]
    z_cov = (products.mean(0) - cov.to(x)) / (products.std(0) / math.sqrt(n))
    return z_mean, z_cov


# The two noiseless moons of :func:`fmbook.data.sample_moons`: half circles of radius 2, the upper
# one centred at (-1, -0.5) (the points with y >= -0.5), the lower one at (1, 0.5) (y <= 0.5).
MOON_RADIUS = 2.0
MOON_CENTRES = ((-1.0, -0.5), (1.0, 0.5))


def _arc_distance(x: Tensor, centre: tuple[float, float], side: float) -> Tensor:
    r"""Distance from points ``x`` ``(B, 2)`` to the half circle of radius :data:`MOON_RADIUS` about
    ``centre`` on the side ``side * (y - c_y) >= 0`` of its diameter: :math:`\lvert\lVert x - c\rVert - R\rvert`
    where the radial projection lands on the arc, else the distance to the nearer endpoint
    :math:`c \pm (R, 0)` (along the arc the distance grows away from the projection, so an endpoint is nearest)."""
    rel = x - x.new_tensor(centre)
    radial = (rel.norm(dim=1) - MOON_RADIUS).abs()
    ends = torch.stack(
        [(rel - rel.new_tensor([MOON_RADIUS, 0.0])).norm(dim=1), (rel + rel.new_tensor([MOON_RADIUS, 0.0])).norm(dim=1)]
    ).amin(dim=0)
    return torch.where(side * rel[:, 1] >= 0, radial, ends)


def moon_curve_distance(samples: Tensor) -> Tensor:
    r"""The Euclidean distance of each sample to the nearer noiseless moon curve.

    The moons of :func:`fmbook.data.sample_moons` are the half circles
    :math:`\{(-1, -\tfrac12) + 2(\cos a, \sin a)\}` and :math:`\{(1, \tfrac12) - 2(\cos a, \sin a)\}`,
    :math:`a \in [0, \pi]`, blurred by Gaussian noise of standard deviation 0.1 (0.05 before the
    scaling by 2). For each point the exact distance to each arc, endpoints included, is computed
    (:math:`\lvert\lVert x - c\rVert - 2\rvert` where the radial projection lands on the arc, the distance
    to the nearer endpoint otherwise), and the smaller of the two is returned.

    Args:
        samples: ``(B, 2)``, finite, any floating dtype and device.

    Returns:
        ``(B,)`` float64 on the CPU.
    """
    x = check_points(samples, "samples", dim=2).detach().to("cpu", torch.float64)
    upper = _arc_distance(x, MOON_CENTRES[0], 1.0)
    lower = _arc_distance(x, MOON_CENTRES[1], -1.0)
    return torch.minimum(upper, lower)


def moon_curve_rms(samples: Tensor) -> float:
    r"""The root-mean-square distance of ``samples`` ``(B, 2)`` to the nearer noiseless moon curve,

    .. math:: \mathrm{RMS} = \Big(\frac1B \sum_i d(x_i, \mathcal C)^2\Big)^{1/2},

    with :math:`d(x, \mathcal C)` from :func:`moon_curve_distance`. It measures the thickness of the
    moons: the data's own value is about 0.100 (the noise's standard deviation; 0.0014 between draws of
    2000 points), and samples blurred :math:`\sqrt 2` times thicker give about 0.141, a difference
    that the sliced and exact W2 of 2000 points do not resolve. It does not see how the mass is
    spread along the curves (a model that puts every sample at one point of an arc scores 0):
    use it beside a W2, never alone. Returns a Python float.
    """
    return float(moon_curve_distance(samples).square().mean().sqrt())


def _check_seed(seed: object, name: str = "seed", repeats: int = 0) -> int:
    """A seed of the floor draws: they use ``seed + 1000 + 2 i + 1`` for ``i < repeats``, each < 2**32."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"{name} must be an int >= 0, got {seed!r}")
    top = 2**32 - 1_001 - 2 * repeats
    if seed >= top:
        raise ValueError(f"{name} must be < {top} (the floor draws add up to {1_001 + 2 * repeats} to it), got {seed}")
    return seed


def _floor_draws(sampler: Callable[..., Tensor], n: int, seed: int, i: int) -> tuple[Tensor, Tensor]:
    """The ``i``-th pair of independent data sets of size ``n`` (the same pairs for every metric)."""
    return sampler(n, seed + 2 * i + 1_000), sampler(n, seed + 2 * i + 1_001)


def noise_floor(
    metric: Metric,
    sampler: Callable[..., Tensor],
    n: int,
    seed: int = 0,
    repeats: int = 30,
) -> float:
    """The mean of ``metric(sampler(n), sampler(n))`` over ``repeats`` independent pairs of draws.

    ``sampler(n, generator)`` is a data sampler such as :func:`fmbook.data.sample_moons`; the
    floor is what a perfect generator would score, on average, against ``n`` fresh data points.
    One pair is a noisy estimate (for the sliced W2 of 2000 moons its standard deviation is
    about a third of the mean), hence the average over many pairs.
    """
    check_callable(metric, "metric", "metric(a, b)")
    check_callable(sampler, "sampler", "sampler(n, generator)")
    check_positive_int(n, "n")
    check_positive_int(repeats, "repeats")
    seed = _check_seed(seed, repeats=repeats)
    return float(np.mean([metric(*_floor_draws(sampler, n, seed, i)) for i in range(repeats)]))


@dataclass(frozen=True)
class FloorRatio:
    """A sample quality in units of the noise floor, with its Monte-Carlo uncertainty.

    Attributes:
        ratio: mean metric(model samples, data) / mean metric(fresh data, data); 1 is perfect.
        stderr: the standard error of ``ratio`` over the repeats (delta method).
        value: the mean metric of the model's samples.
        floor: the mean metric of fresh data (the noise floor).
        repeats: how many independent draws were averaged.
    """

    ratio: float
    stderr: float
    value: float
    floor: float
    repeats: int

    def __str__(self) -> str:
        return f"{self.ratio:.2f} +- {self.stderr:.2f} x floor"


class FloorReference:
    r"""Fixed draws of data against which generators are measured in units of the noise floor.

    For each repeat :math:`i` two independent data sets of ``n`` points are drawn once: a target
    :math:`B_i` and a fresh set :math:`A_i`, whose distance :math:`f_i = d(A_i, B_i)` is what a
    perfect generator scores; ``floor`` is their mean. :meth:`ratio` then draws model samples
    :math:`M_i` and returns :math:`\bar m / \bar f` with :math:`m_i = d(M_i, B_i)`. Sharing
    :math:`B_i` makes the ratio less noisy than two separate averages; its standard error is
    :math:`\sqrt{\operatorname{Var}(m_i - R f_i) / k} / \bar f` (the delta method).

    Args:
        sampler: the data sampler ``sampler(n, generator)``.
        n: points per set.
        metric: a distance between point sets; :func:`sliced_w2` by default.
        repeats: independent draws averaged (>= 2).
        seed: offset of every seed, for independent references.
    """

    def __init__(
        self,
        sampler: Callable[..., Tensor],
        n: int,
        metric: Metric = sliced_w2,
        repeats: int = 50,
        seed: int = 0,
    ) -> None:
        check_callable(sampler, "sampler", "sampler(n, generator)")
        check_callable(metric, "metric", "metric(a, b)")
        self.n = check_positive_int(n, "n")
        self.repeats = check_positive_int(repeats, "repeats", minimum=2)
        self.seed = _check_seed(seed, repeats=repeats)
        self.metric = metric
        self.targets: list[Tensor] = []
        # With the sliced W2, each target's sorted projections are computed once, not once per use.
        self._sorted_targets: list[np.ndarray] | None = [] if metric is sliced_w2 else None
        floor_values = []
        for i in range(repeats):
            fresh, target = _floor_draws(sampler, n, self.seed, i)
            self.targets.append(target)
            if self._sorted_targets is not None:
                checked = check_point_clouds(fresh, target, to_float64_cpu=True)[1]
                self._sorted_targets.append(_sorted_projections(checked))
            floor_values.append(self._distance(fresh, i))
        self.floor_values = np.array(floor_values)
        self.floor = float(self.floor_values.mean())

    def _distance(self, samples: Tensor, i: int) -> float:
        """``metric(samples, targets[i])``."""
        if self._sorted_targets is None:
            return self.metric(samples, self.targets[i])
        a, _ = check_point_clouds(samples, self.targets[i], to_float64_cpu=True)
        return _sliced_w2_of_sorted(_sorted_projections(a), self._sorted_targets[i])

    def ratio(self, generate: Callable[[int, int], Tensor], repeats: int | None = None) -> FloorRatio:
        """The distance of ``generate(n, seed)`` (``n`` samples ``(n, d)`` from a seeded draw of
        its noise; seeds ``seed + i`` for the repeats) to the data, in units of the floor.

        ``repeats`` (2 to ``self.repeats``) uses only the first draws, for an expensive generator.
        """
        check_callable(generate, "generate", "generate(n, seed)")
        k = self.repeats if repeats is None else check_positive_int(repeats, "repeats", minimum=2)
        if k > self.repeats:
            raise ValueError(f"repeats must be <= {self.repeats}, the draws of this reference, got {k}")
        values = []
        for i, target in enumerate(self.targets[:k]):
            samples = generate(self.n, self.seed + i)
            if not isinstance(samples, Tensor) or samples.shape != target.shape:
                got = tuple(samples.shape) if isinstance(samples, Tensor) else type(samples).__name__
                raise ValueError(f"generate(n, seed) must return a tensor of shape {tuple(target.shape)}, got {got}")
            values.append(self._distance(samples, i))
        m, f = np.array(values), self.floor_values[:k]
        ratio = m.mean() / f.mean()
        stderr = float(np.std(m - ratio * f, ddof=1) / math.sqrt(k) / f.mean())
        return FloorRatio(float(ratio), stderr, float(m.mean()), float(f.mean()), k)


def ratio_to_floor(
    generate: Callable[[int, int], Tensor],
    sampler: Callable[..., Tensor],
    n: int,
    metric: Metric = sliced_w2,
    repeats: int = 50,
    seed: int = 0,
) -> FloorRatio:
    """How far a generator is from the data, in units of the metric's noise floor.

    ``FloorReference(sampler, n, metric, repeats, seed).ratio(generate)``: see
    :class:`FloorReference`. To measure several generators against the same data, build the
    reference once and call its :meth:`~FloorReference.ratio` for each.
    """
    check_callable(generate, "generate", "generate(n, seed)")
    return FloorReference(sampler, n, metric, repeats, seed).ratio(generate)


# --------------------------------------------------------------------------------------
# Digits: a classifier score and the Frechet distance in the classifier's feature space
# --------------------------------------------------------------------------------------


def frechet_distance(features_a: Tensor, features_b: Tensor) -> float:
    r"""The Frechet distance between Gaussians fitted to two feature sets ``(n, k)`` and ``(m, k)``.

    .. math:: d^2 = \lVert \mu_a - \mu_b \rVert^2
              + \operatorname{Tr}\big(\Sigma_a + \Sigma_b - 2 (\Sigma_a^{1/2} \Sigma_b \Sigma_a^{1/2})^{1/2}\big),

    the squared 2-Wasserstein distance between :math:`\mathcal N(\mu_a, \Sigma_a)` and
    :math:`\mathcal N(\mu_b, \Sigma_b)` (the formula of the FID, here in any feature space), by the
    computation of :func:`fmbook.ot.gaussian_w2`.
    Means and unbiased covariances are estimated from the rows; the result is returned as
    :math:`d^2` (the usual convention of the FID), computed in float64 with symmetric
    eigen-decompositions, and clamped at 0 against rounding.
    """
    a, b = check_point_clouds(features_a, features_b, ("features_a", "features_b"), to_float64_cpu=True)
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError(f"features_a and features_b need at least 2 rows each, got {a.shape[0]} and {b.shape[0]}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], a.shape[1]), torch.cov(b.T).reshape(b.shape[1], b.shape[1])
    return float(_gaussian_w2_squared(mu_a, cov_a, mu_b, cov_b).clamp_min(0))


def nearest_neighbour_distances(samples: Tensor, reference: Tensor) -> Tensor:
    r"""The Euclidean distance from each sample to its nearest neighbour in ``reference``.

    :math:`d_i = \min_j \lVert x_i - y_j \rVert` for ``samples`` ``(n, ...)`` and ``reference``
    ``(m, ...)`` of the same event shape (images are flattened), computed in float64; returns ``(n,)``.
    Measured against the training set and against a held-out set of the same size, it tells a model
    that generalises (similar distances) from one that copies its training data (distances near 0
    to the training set only), which a Frechet distance cannot: copying the training set reaches its floor.
    """
    for name, value in (("samples", samples), ("reference", reference)):
        if not isinstance(value, Tensor) or value.ndim < 2 or value.shape[0] == 0:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"{name} must be a non-empty tensor (n, ...), got {shape}")
        check_tensor(value, name)
    if samples.shape[1:] != reference.shape[1:]:
        raise ValueError(
            f"samples and reference must have the same event shape, got {tuple(samples.shape[1:])} "
            f"and {tuple(reference.shape[1:])}"
        )
    a = samples.detach().reshape(samples.shape[0], -1).to("cpu", torch.float64)
    b = reference.detach().reshape(reference.shape[0], -1).to("cpu", torch.float64)
    # Squared distances one coordinate at a time: exact for copies (no |a|^2 - 2ab + |b|^2 cancellation).
    sq = torch.zeros(a.shape[0], b.shape[0], dtype=torch.float64)
    for k in range(a.shape[1]):
        sq.add_((a[:, k : k + 1] - b[None, :, k]).square_())
    return sq.min(dim=1).values.sqrt()


class DigitsClassifier(torch.nn.Module):
    """A small convolutional classifier of 8x8 digits ``(B, 1, 8, 8)`` in [-1, 1] -> logits ``(B, 10)``.

    Two 3x3 convolutions (the second with stride 2), then a hidden layer of ``feature_dim``
    units whose activations :meth:`features` returns: the feature space of the Frechet
    distance, as the Inception network's pool features are for the FID.
    """

    def __init__(self, feature_dim: int = 64, num_classes: int = 10) -> None:
        super().__init__()
        check_positive_int(feature_dim, "feature_dim")
        check_positive_int(num_classes, "num_classes", minimum=2)
        nn = torch.nn
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, feature_dim),
            nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, num_classes)
        self.num_classes = num_classes

    def features(self, images: Tensor) -> Tensor:
        """Penultimate activations ``(B, feature_dim)`` of ``images`` ``(B, 1, 8, 8)`` of the weights' dtype
        (float32 unless the classifier was cast; float16 or float64 is a TypeError naming ``images``).

        The values are checked too (finite): the classifier lives on the CPU, where that costs no
        device synchronisation."""
        from .data import check_images

        images = check_images(images, "images", channels=1, size=8)
        weight = self.head.weight
        if images.dtype != weight.dtype:
            raise TypeError(
                f"images must have the dtype of the classifier's weights ({weight.dtype}), got {images.dtype}; "
                f"cast them with images.to({weight.dtype})"
            )
        return self.body(images)

    def forward(self, images: Tensor) -> Tensor:
        """Logits ``(B, num_classes)`` of ``images`` ``(B, 1, 8, 8)``; checks as in :meth:`features`."""
        return self.head(self.features(images))


def train_digits_classifier(
    images: Tensor, labels: Tensor, steps: int = 600, batch_size: int = 128, seed: int = 0, progress: bool = False
) -> DigitsClassifier:
    """Train :class:`DigitsClassifier` on real digits ``(N, 1, 8, 8)`` with labels ``(N,)`` (cross-entropy,
    Adam, :func:`fmbook.train.fit`; random shifts by one pixel as augmentation). Returns it on the CPU
    in evaluation mode."""
    from .data import check_images
    from .models import check_labels
    from .train import fit

    images = check_images(images, "images", channels=1, size=8)
    labels = check_labels(labels, 10, images.shape[0], allow_null=False)
    check_positive_int(batch_size, "batch_size")
    check_seed(seed, "seed")
    torch.manual_seed(seed)  # the initial weights too, so the result does not depend on earlier draws
    classifier = DigitsClassifier()
    padded = torch.nn.functional.pad(images, (1, 1, 1, 1), value=-1.0)

    def loss_fn(net: torch.nn.Module, step: int) -> Tensor:
        idx = torch.randint(0, images.shape[0], (batch_size,))
        dx, dy = torch.randint(0, 3, (2,)).tolist()
        batch = padded[idx, :, dy : dy + 8, dx : dx + 8]
        return torch.nn.functional.cross_entropy(net(batch), labels[idx])

    fit(classifier, loss_fn, steps, lr=2e-3, device="cpu", seed=seed, progress=progress, description="classifier")
    return classifier.eval()


def _check_classifier(classifier: object) -> None:
    if not isinstance(classifier, DigitsClassifier):
        raise TypeError(
            f"classifier must be a DigitsClassifier (from train_digits_classifier), got {type(classifier).__name__}"
        )


@torch.no_grad()
def classifier_accuracy(classifier: DigitsClassifier, images: Tensor, labels: Tensor) -> float:
    """The share of ``images`` ``(B, 1, 8, 8)`` that ``classifier`` assigns to ``labels`` ``(B,)``: for
    generated digits, how often they are recognised as the class that was requested."""
    from .data import check_images
    from .models import check_labels

    _check_classifier(classifier)
    images = check_images(images, "images", channels=1, size=8)
    labels = check_labels(labels, classifier.num_classes, images.shape[0], allow_null=False)
    predicted = classifier(images.detach().to("cpu", torch.float32)).argmax(dim=1)
    return float((predicted == labels.cpu()).float().mean())


@torch.no_grad()
def digits_frechet_distance(classifier: DigitsClassifier, images_a: Tensor, images_b: Tensor) -> float:
    """:func:`frechet_distance` between the classifier features of two sets of digits ``(B, 1, 8, 8)``."""
    from .data import check_images

    _check_classifier(classifier)
    images_a = check_images(images_a, "images_a", channels=1, size=8)
    images_b = check_images(images_b, "images_b", channels=1, size=8)
    fa = classifier.features(images_a.detach().to("cpu", torch.float32))
    fb = classifier.features(images_b.detach().to("cpu", torch.float32))
    return frechet_distance(fa, fb)

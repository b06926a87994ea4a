r"""Exact fields of a finite data set (or a Gaussian mixture) under a Gaussian source.

For :math:`X_0 \sim \mathcal N(0, I)` and a finite data set :math:`\{z_1, \dots, z_N\}`, the
marginal path is a mixture of Gaussians
:math:`p_t(x) = \frac1N \sum_i \mathcal N(x; \alpha_t z_i, \sigma_t^2 I)`; its posterior weights,
velocity, Jacobian, score and log-density are known in closed form (chapters 3, 5 and 6), and
so are those of Gaussian-mixture data. Every field takes ``(x_t, t, data, scheduler)`` with the
scheduler last (CondOT when None).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from ._checks import TimeLike, as_time, check_points
from .parameterizations import conditional_velocity
from .schedulers import CondOTScheduler, Scheduler, _nonzero, check_scheduler

# The posterior weights form a (B, N) array, one row per query point and one column per data
# point. On the CPU it is computed in blocks of rows that stay in the cache (2**18 numbers,
# 1 MB in float32): the element-wise passes then run about twice as fast as over one large buffer.
_CPU_BLOCK_ELEMENTS = 2**18


def _row_blocks(x: Tensor, t: Tensor, data: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
    """Pairs ``(x[rows], t[rows])`` of consecutive blocks of rows (all rows at once off the CPU)."""
    rows = max(1, _CPU_BLOCK_ELEMENTS // data.shape[0]) if x.device.type == "cpu" else x.shape[0]
    return zip(x.split(rows), t.split(rows))


def _marginal_inputs(
    x: object, t: TimeLike, data: object, scheduler: Scheduler | None
) -> tuple[Scheduler, Tensor, Tensor, Tensor]:
    """The checked arguments of an exact marginal field: the scheduler (CondOT when None), points
    ``x_t`` ``(B, d)``, times ``(B,)`` and ``data`` ``(N, d)`` on ``x``'s device and dtype."""
    scheduler = CondOTScheduler() if scheduler is None else check_scheduler(scheduler)
    x = check_points(x, "x_t")
    data = check_points(data, "data", dim=x.shape[1])
    return scheduler, x, as_time(t, x.shape[0], x), data.to(x)


def _posterior_log_weights(x: Tensor, t: Tensor, data: Tensor, scheduler: Scheduler):
    r"""The posterior log-weights, shifted so that each row's largest is 0, and the shift.

    Returns ``(shifted, offset, s)``: ``shifted`` ``(B, N)`` holds
    :math:`\log w_i - \max_j \log w_j` with :math:`\log w_i = -\lVert x - \alpha_t z_i\rVert^2 / (2\sigma_t^2)`
    (the Gaussian log-likelihood up to its normaliser), ``offset`` ``(B,)`` (float64) is
    :math:`-\max_j \log w_j` and ``s`` is :math:`\sigma_t` ``(B,)`` (an exact 0 replaced by
    :data:`~fmbook.schedulers.SIGMA_FLOOR`).

    With :math:`d_i = x - \alpha_t z_i`, :math:`c` the point ``x_t`` clamped to the bounding box of
    :math:`\alpha_t z` and :math:`g = x - c`,
    :math:`\lVert d_i\rVert^2 = \lVert c - \alpha_t z_i\rVert^2 - 2\alpha_t\langle g, z_i\rangle
    + (\lVert g\rVert^2 + 2\langle g, c\rangle)`.
    The first term is summed one coordinate at a time from exact differences; inside the box
    :math:`g = 0` and it is :math:`\lVert d_i\rVert^2` itself (no cancellation as in
    :math:`|x|^2 - 2\langle x, m\rangle + |m|^2`, which matters when :math:`\sigma_t` is small). Far outside
    the box the last term, the same for every :math:`i`, is left out of the differences between data
    points, which :math:`\lVert d_i\rVert^2` itself would round away (e.g. at :math:`|x| = 10^{4}` in float32).
    Each row is divided by a power of two (exact) no smaller than half its largest coordinate and the
    factor :math:`S^2 / (2\sigma_t^2)` is applied to the differences to the row's smallest, so that no
    finite input overflows (points near :math:`10^{20}` in float32 get the weights of the exact formula).
    No (B, N, d) tensor and no host sync.
    """
    a, s, _, _ = scheduler.coefficients(t)
    s = _nonzero(s)
    # The scale S of each row: its largest coordinate of x and of alpha_t * data, rounded down to
    # a power of two, and at least 1 (ordinary rows are not rescaled at all).
    reach = torch.maximum(x.abs().amax(dim=1), a.abs() * data.abs().amax())
    scale = torch.exp2(torch.floor(torch.log2(reach.to(torch.float64).clamp_min(1.0))))
    xs = x / scale[:, None].to(x.dtype)
    a_s = (a / scale.to(a.dtype))[:, None]
    ends = (a_s * data.amin(dim=0), a_s * data.amax(dim=0))
    centre = torch.minimum(torch.maximum(xs, torch.minimum(*ends)), torch.maximum(*ends))  # c, (B, d)
    gap = xs - centre  # g = x - c: zero inside the box
    # |d_i|^2 = |c - a z_i|^2 - 2 a <g, z_i> + (|g|^2 + 2 <g, c>): the first term one coordinate at a
    # time into one (B, N) buffer (a temporary per coordinate), the second by one matrix product
    # (exactly 0 inside the box), the third a constant of the row, left for the offset.
    sq = torch.zeros(x.shape[0], data.shape[0], dtype=x.dtype, device=x.device)
    for k in range(x.shape[1]):
        sq.add_(torch.addcmul(centre[:, k : k + 1], a_s, data[None, :, k], value=-1).square_())
    sq.addmm_(gap * (-2 * a_s), data.T)
    # The nearest data point r of each row: the offset is its squared distance, computed directly.
    # The shift (the entry of r, recomputed from (B, d) tensors: sq itself is updated in place below).
    nearest = sq.detach().argmin(dim=1)
    z_r = data[nearest]
    low = ((centre - a_s * z_r).square().sum(1) - 2 * a_s[:, 0] * (gap * z_r).sum(1))[:, None]
    # S^2 / (2 sigma^2) in float64; clamped to the dtype's range, so that 0 times it stays 0.
    factor = (scale / s.to(torch.float64)).square() * 0.5
    d_r = xs.to(torch.float64) - a_s.to(torch.float64) * z_r.to(torch.float64)
    offset = d_r.square().sum(1) * factor
    factor = factor.clamp(max=torch.finfo(x.dtype).max).to(x.dtype)
    shifted = sq.sub_(low).mul_(-factor[:, None])
    return shifted, offset, s


def posterior_mean(x_t: Tensor, t: TimeLike, data: Tensor, scheduler: Scheduler | None = None) -> Tensor:
    r"""The posterior mean :math:`E[X_1 \mid X_t = x]` for a finite data set and a Gaussian source.

    With :math:`X_1` uniform on the rows of ``data`` and :math:`X_t \mid X_1 = z \sim
    \mathcal N(\alpha_t z, \sigma_t^2 I)`, the posterior weights are a softmax of Gaussian
    log-likelihoods, computed in log space so that they stay finite for small ``sigma_t``.

    Args:
        x: query points, shape ``(B, d)``.
        t: times in [0, 1], a float or shape ``(B,)``.
        data: the data set, shape ``(N, d)``.
        scheduler: the path's scheduler (CondOT by default).

    Returns:
        Tensor of shape ``(B, d)``.
    """
    scheduler, x_t, t, data = _marginal_inputs(x_t, t, data, scheduler)
    return torch.cat([
        torch.softmax(_posterior_log_weights(xs, ts, data, scheduler)[0], dim=1) @ data
        for xs, ts in _row_blocks(x_t, t, data)
    ])


def posterior_weights(x_t: Tensor, t: TimeLike, data: Tensor, scheduler: Scheduler | None = None) -> Tensor:
    r"""The posterior weights :math:`P(X_1 = z_i \mid X_t = x)` for a finite data set and a Gaussian source.

    With :math:`X_1` uniform on the rows :math:`z_1, \dots, z_N` of ``data`` and
    :math:`X_t \mid X_1 = z \sim \mathcal N(\alpha_t z, \sigma_t^2 I)`, Bayes' rule gives

    .. math:: w_i(x) = \frac{\mathcal N(x;\, \alpha_t z_i,\, \sigma_t^2 I)}
              {\sum_j \mathcal N(x;\, \alpha_t z_j,\, \sigma_t^2 I)},

    a softmax computed in log space; :func:`posterior_mean` is :math:`\sum_i w_i z_i`. Shapes: ``x``
    ``(B, d)``, ``t`` a float or ``(B,)``, ``data`` ``(N, d)``; returns ``(B, N)``, rows summing to 1.
    An exact ``sigma_t = 0`` is replaced by :data:`~fmbook.schedulers.SIGMA_FLOOR`; every ``sigma_t > 0`` is
    used exactly.
    """
    scheduler, x_t, t, data = _marginal_inputs(x_t, t, data, scheduler)
    return torch.cat([
        torch.softmax(_posterior_log_weights(xs, ts, data, scheduler)[0], dim=1) for xs, ts in _row_blocks(x_t, t, data)
    ])

def marginal_velocity(x_t: Tensor, t: TimeLike, data: Tensor, scheduler: Scheduler | None = None) -> Tensor:
    r"""The exact marginal velocity :math:`u_t(x) = E[\dot\alpha_t X_1 + \dot\sigma_t X_0 \mid X_t = x]`.

    The posterior-weighted average of the conditional velocities, for a Gaussian source and
    the finite data set ``data`` (uniform weights). Shapes: ``x_t`` ``(B, d)``, ``t`` a float or
    ``(B,)``, ``data`` ``(N, d)``; returns ``(B, d)``. At the data end, where
    :math:`\sigma_1 = 0`, an exact ``sigma_t = 0`` is replaced by :data:`~fmbook.schedulers.SIGMA_FLOOR` (the formula
    is 0/0 there); every ``sigma_t > 0`` is used exactly.
    """
    scheduler = CondOTScheduler() if scheduler is None else check_scheduler(scheduler)
    x_t = check_points(x_t, "x_t")
    t = as_time(t, x_t.shape[0], x_t)
    x1_hat = posterior_mean(x_t, t, data, scheduler)
    return conditional_velocity(x_t, x1_hat, t, scheduler)


def marginal_velocity_jacobian(x_t: Tensor, t: TimeLike, data: Tensor, scheduler: Scheduler | None = None) -> Tensor:
    r"""The Jacobian :math:`\nabla_x u_t(x)` of :func:`marginal_velocity`, in closed form.

    With the posterior weights :math:`w_i(x)` of the data points and their weighted covariance
    :math:`\mathrm{Cov}_w = \sum_i w_i z_i z_i^\top - \hat x_1 \hat x_1^\top`
    (:math:`\hat x_1 = \sum_i w_i z_i`), differentiating the softmax gives
    :math:`\nabla_x \hat x_1 = (\alpha_t / \sigma_t^2)\, \mathrm{Cov}_w`, hence

    .. math:: \nabla_x u_t(x) = \frac{\dot\sigma_t}{\sigma_t} I
              + \Big(\dot\alpha_t - \frac{\dot\sigma_t \alpha_t}{\sigma_t}\Big)
              \frac{\alpha_t}{\sigma_t^2}\, \mathrm{Cov}_w,

    for CondOT :math:`\big(t\, \mathrm{Cov}_w / (1 - t)^2 - I\big) / (1 - t)`: a contraction at
    rate :math:`1/(1 - t)` where the posterior sits on one data point, and an expansion of order
    :math:`(1 - t)^{-3}` where it is split between several. Shapes: ``x_t`` ``(B, d)``, ``t`` a float
    or ``(B,)``, ``data`` ``(N, d)``; returns ``(B, d, d)``. An exact ``sigma_t = 0`` is replaced by
    :data:`~fmbook.schedulers.SIGMA_FLOOR`.
    """
    scheduler, x_t, t, data = _marginal_inputs(x_t, t, data, scheduler)
    covariances = []
    for xs, ts in _row_blocks(x_t, t, data):
        w = torch.softmax(_posterior_log_weights(xs, ts, data, scheduler)[0], dim=1)
        mean = w @ data
        covariances.append(torch.einsum("bn,ni,nj->bij", w, data, data) - mean[:, :, None] * mean[:, None, :])
    cov = torch.cat(covariances)
    a, s, da, ds = (c[:, None, None] for c in scheduler.coefficients(t))
    s = _nonzero(s)
    eye = torch.eye(x_t.shape[1], dtype=x_t.dtype, device=x_t.device)
    return (ds / s) * eye + (da - ds * a / s) * (a / s**2) * cov


def gaussian_marginal_velocity(x_t: Tensor, t: TimeLike, mean: Tensor | float, std: float) -> Tensor:
    r"""The marginal velocity of the linear path from :math:`\mathcal N(0, I)` to :math:`\mathcal N(m, s^2 I)`.

    For the independent coupling, :math:`X_t = t X_1 + (1 - t) X_0` is Gaussian with mean :math:`t m`
    and variance :math:`\tau_t^2 = (1 - t)^2 + t^2 s^2`, jointly Gaussian with :math:`X_1 - X_0`, so
    the conditional expectation is the linear regression

    .. math:: u_t(x) = \mathbb E[X_1 - X_0 \mid X_t = x] = m + \frac{t s^2 - (1 - t)}{\tau_t^2}\,(x - t m).

    Shapes: ``x_t`` ``(B, d)``, ``t`` a float or ``(B,)``, ``mean`` a float or ``(d,)``, ``std`` a
    positive float; returns ``(B, d)``. Finite on all of [0, 1] (:math:`\tau_t^2 > 0`; the letter
    :math:`\sigma_t` is the schedule's, here :math:`1 - t`).
    """
    x_t = check_points(x_t, "x_t")
    t = as_time(t, x_t.shape[0], x_t)
    if isinstance(std, bool) or not isinstance(std, (int, float)) or not math.isfinite(std) or std <= 0:
        raise ValueError(f"std must be a positive finite number, got {std!r}")
    if isinstance(mean, bool) or not isinstance(mean, (int, float, Tensor)):
        raise TypeError(f"mean must be a float or a tensor ({x_t.shape[1]},), got {type(mean).__name__}")
    mean = torch.as_tensor(mean, dtype=x_t.dtype, device=x_t.device)
    if mean.ndim > 1 or (mean.ndim == 1 and mean.shape[0] != x_t.shape[1]):
        raise ValueError(f"mean must be a float or have shape ({x_t.shape[1]},), got {tuple(mean.shape)}")
    if not bool(torch.isfinite(mean).all()):
        raise ValueError("mean must contain only finite values (found NaN or inf)")
    t = t[:, None]
    variance = (1 - t) ** 2 + t**2 * std**2
    return mean + (t * std**2 - (1 - t)) / variance * (x_t - t * mean)


def marginal_score(x_t: Tensor, t: TimeLike, data: Tensor, scheduler: Scheduler | None = None) -> Tensor:
    r"""The exact marginal score :math:`\nabla_x \log p_t(x) = -(x - \alpha_t E[X_1 \mid x]) / \sigma_t^2`.

    Shapes as in :func:`marginal_velocity`; an exact ``sigma_t = 0`` is replaced by
    :data:`~fmbook.schedulers.SIGMA_FLOOR`.
    """
    scheduler = CondOTScheduler() if scheduler is None else check_scheduler(scheduler)
    x_t = check_points(x_t, "x_t")
    t = as_time(t, x_t.shape[0], x_t)
    x1_hat = posterior_mean(x_t, t, data, scheduler)
    a, s, _, _ = (c[:, None] for c in scheduler.coefficients(t))
    return -(x_t - a * x1_hat) / _nonzero(s) ** 2


def marginal_log_density(x_t: Tensor, t: TimeLike, data: Tensor, scheduler: Scheduler | None = None) -> Tensor:
    r"""The exact log-density :math:`\log p_t(x) = \log \frac1N \sum_i \mathcal N(x; \alpha_t z_i, \sigma_t^2 I)`.

    Shapes: ``x_t`` ``(B, d)``, ``t`` a float or ``(B,)``, ``data`` ``(N, d)``; returns ``(B,)``.
    An exact ``sigma_t = 0`` is replaced by :data:`~fmbook.schedulers.SIGMA_FLOOR`.
    """
    scheduler, x_t, t, data = _marginal_inputs(x_t, t, data, scheduler)
    d = x_t.shape[1]
    log_p = []
    for xs, ts in _row_blocks(x_t, t, data):
        shifted, offset, s = _posterior_log_weights(xs, ts, data, scheduler)
        # In float64 for the (B,) terms: in float32 the distance term may overflow where the
        # whole is still representable, and the result is then rounded once to x's dtype.
        log_norm = -0.5 * d * math.log(2 * math.pi) - d * torch.log(s.to(torch.float64))
        log_mix = torch.logsumexp(shifted, dim=1).to(torch.float64) - offset - math.log(data.shape[0])
        log_p.append((log_mix + log_norm).to(x_t.dtype))
    return torch.cat(log_p)


def _check_mixture(x: Tensor, means: Tensor, stds: Tensor, weights: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    means = check_points(means, "means", dim=x.shape[1]).to(x)
    if not isinstance(stds, Tensor) or stds.shape != (means.shape[0],):
        shape = tuple(stds.shape) if isinstance(stds, Tensor) else type(stds).__name__
        raise ValueError(f"stds must be a tensor ({means.shape[0]},), one per component, got {shape}")
    stds = stds.to(x)
    if not bool((stds > 0).all()):
        raise ValueError("stds must be > 0")
    if weights is None:
        weights = torch.full((means.shape[0],), 1.0 / means.shape[0], dtype=x.dtype, device=x.device)
    elif not isinstance(weights, Tensor) or weights.shape != (means.shape[0],) or not bool((weights > 0).all()):
        raise ValueError(f"weights must be a tensor ({means.shape[0]},) of positive numbers")
    weights = weights.to(x) / weights.sum()
    return means, stds, weights


def _mixture_terms(x: Tensor, t: TimeLike, means: Tensor, stds: Tensor, weights: Tensor | None, scheduler):
    """The responsibilities' logits log pi_k N(x; alpha mu_k, v_k I) ``(B, K)`` and the path's coefficients."""
    means, stds, weights = _check_mixture(x, means, stds, weights)
    t = as_time(t, x.shape[0], x)
    a, s, da, ds = (c[:, None] for c in scheduler.coefficients(t))
    var = a**2 * stds[None, :] ** 2 + s**2  # (B, K): the variance of X_t given the component
    diff = x[:, None, :] - a[:, :, None] * means[None, :, :]  # (B, K, d)
    d = x.shape[1]
    logits = weights.log()[None, :] - 0.5 * (diff**2).sum(-1) / var - 0.5 * d * torch.log(2 * math.pi * var)
    return logits, diff, var, means, stds, (a, s, da, ds)


def gaussian_mixture_log_density(
    x_t: Tensor, t: TimeLike, means: Tensor, stds: Tensor, weights: Tensor | None = None,
    scheduler: Scheduler | None = None,
) -> Tensor:
    r"""The exact :math:`\log p_t(x)` when the data are a mixture of isotropic Gaussians.

    For :math:`X_1 \sim \sum_k \pi_k \mathcal N(\mu_k, s_k^2 I)` and :math:`X_0 \sim \mathcal N(0, I)`,
    :math:`p_t = \sum_k \pi_k \mathcal N(\alpha_t \mu_k, (\alpha_t^2 s_k^2 + \sigma_t^2) I)`, finite on all
    of [0, 1]. Shapes: ``x_t`` ``(B, d)``, ``t`` a float or ``(B,)``, ``means`` ``(K, d)``, ``stds``
    ``(K,)`` (> 0), ``weights`` ``(K,)`` (normalised here; uniform when None); returns ``(B,)``.
    """
    scheduler = CondOTScheduler() if scheduler is None else check_scheduler(scheduler)
    x_t = check_points(x_t, "x_t")
    logits, *_ = _mixture_terms(x_t, t, means, stds, weights, scheduler)
    return torch.logsumexp(logits, dim=1)


def gaussian_mixture_velocity(
    x_t: Tensor, t: TimeLike, means: Tensor, stds: Tensor, weights: Tensor | None = None,
    scheduler: Scheduler | None = None,
) -> Tensor:
    r"""The exact marginal velocity :math:`u_t(x) = E[\dot\alpha_t X_1 + \dot\sigma_t X_0 \mid X_t = x]` for
    Gaussian-mixture data (the setting of :func:`gaussian_mixture_log_density`).

    Given the component :math:`k`, :math:`(X_1, X_t)` is jointly Gaussian, with
    :math:`E[X_1 \mid x, k] = \mu_k + \alpha_t s_k^2 (x - \alpha_t \mu_k) / v_k` and
    :math:`E[X_0 \mid x, k] = \sigma_t (x - \alpha_t \mu_k) / v_k`, :math:`v_k = \alpha_t^2 s_k^2 + \sigma_t^2`;
    the components are averaged with their posterior responsibilities. Finite on all of [0, 1]
    (including :math:`\alpha_0 = 0` and :math:`\sigma_1 = 0`). Shapes as there; returns ``(B, d)``.
    """
    scheduler = CondOTScheduler() if scheduler is None else check_scheduler(scheduler)
    x_t = check_points(x_t, "x_t")
    logits, diff, var, means, stds, (a, s, da, ds) = _mixture_terms(x_t, t, means, stds, weights, scheduler)
    r = torch.softmax(logits, dim=1)[:, :, None]  # (B, K, 1)
    scaled = diff / var[:, :, None]
    x1 = means[None] + (a * stds[None, :] ** 2)[:, :, None] * scaled
    x0 = s[:, :, None] * scaled
    return (r * (da[:, :, None] * x1 + ds[:, :, None] * x0)).sum(1)

r"""Probability paths: schedulers, the affine conditional path, and exact marginal fields.

Convention of the whole book: time runs from t = 0 (source / noise) to t = 1 (data), and the
affine conditional path is

.. math::  x_t = \alpha_t x_1 + \sigma_t x_0, \qquad
           \frac{d x_t}{dt} = \dot\alpha_t x_1 + \dot\sigma_t x_0,

with :math:`\alpha_0 = 0, \sigma_0 = 1` and :math:`\alpha_1 = 1, \sigma_1 = 0` (or a small
:math:`\sigma_{\min}`). A *scheduler* returns :math:`(\alpha_t, \sigma_t, \dot\alpha_t,
\dot\sigma_t)`; an :class:`AffinePath` turns a scheduler into samples and regression targets.

For a Gaussian source :math:`X_0 \sim \mathcal N(0, I)` and a finite data set
:math:`\{z_1, \dots, z_N\}`, the marginal path is a mixture of Gaussians
:math:`p_t(x) = \frac1N \sum_i \mathcal N(x; \alpha_t z_i, \sigma_t^2 I)`, and its velocity and
score are known in closed form (:func:`marginal_velocity`, :func:`marginal_score`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from ._validation import (
    TimeLike,
    as_time,
    check_batch,
    check_points,
    check_positive_float,
    check_same_shape,
    check_unit_interval,
)

#: The smallest sigma_t used where a formula divides by sigma_t (the data end t = 1 of a
#: path with sigma_1 = 0). Documented clamp: fields are evaluated at sigma_t >= SIGMA_FLOOR.
SIGMA_FLOOR = 1e-4


class SchedulerOutput(NamedTuple):
    """Coefficients of an affine path at times ``t``: each a tensor of shape ``(B,)``."""

    alpha_t: Tensor
    sigma_t: Tensor
    d_alpha_t: Tensor
    d_sigma_t: Tensor


class Scheduler:
    """Base class of the schedulers :math:`t \\mapsto (\\alpha_t, \\sigma_t, \\dot\\alpha_t, \\dot\\sigma_t)`.

    Subclasses implement :meth:`coefficients` for a tensor ``t`` of shape ``(B,)`` in [0, 1].
    """

    def coefficients(self, t: Tensor) -> SchedulerOutput:
        raise NotImplementedError

    def __call__(self, t: TimeLike) -> SchedulerOutput:
        """Evaluate at ``t``: a float or a tensor of shape ``(B,)`` with values in [0, 1]."""
        if isinstance(t, Tensor):
            flat = t.reshape(-1) if t.is_floating_point() else t.reshape(-1).float()
            return self.coefficients(as_time(flat, flat.shape[0], flat))
        return self.coefficients(as_time(t, 1, torch.empty(0)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CondOTScheduler(Scheduler):
    """The conditional optimal-transport (linear) scheduler: alpha_t = t, sigma_t = 1 - t."""

    def coefficients(self, t: Tensor) -> SchedulerOutput:
        return SchedulerOutput(t, 1 - t, torch.ones_like(t), -torch.ones_like(t))


class PolynomialScheduler(Scheduler):
    """alpha_t = t^n, sigma_t = 1 - t^n (n = 1 is CondOT).

    For n < 1 the speed :math:`\\dot\\alpha_t = n t^{n-1}` is infinite at the noise end t = 0;
    it is evaluated at :math:`t \\ge` :data:`SIGMA_FLOOR` so that it stays finite.
    """

    def __init__(self, n: float = 2.0) -> None:
        self.n = check_positive_float(n, "n")

    def coefficients(self, t: Tensor) -> SchedulerOutput:
        a = t**self.n
        if self.n == 1:
            da = torch.ones_like(t)
        elif self.n < 1:
            da = self.n * t.clamp_min(SIGMA_FLOOR) ** (self.n - 1)
        else:
            da = self.n * t ** (self.n - 1)
        return SchedulerOutput(a, 1 - a, da, -da)

    def __repr__(self) -> str:
        return f"PolynomialScheduler(n={self.n:g})"


class CosineScheduler(Scheduler):
    """alpha_t = sin(pi t / 2), sigma_t = cos(pi t / 2): alpha_t^2 + sigma_t^2 = 1."""

    def coefficients(self, t: Tensor) -> SchedulerOutput:
        h = 0.5 * math.pi
        sin, cos = torch.sin(h * t), torch.cos(h * t).clamp_min(0)
        return SchedulerOutput(sin, cos, h * cos, -h * sin)


class VPScheduler(Scheduler):
    r"""The variance-preserving diffusion path of Lipman et al. (2022), in the book's time.

    With :math:`\beta(s) = \beta_{\min} + s(\beta_{\max} - \beta_{\min})` and
    :math:`T(s) = \int_0^s \beta = s\beta_{\min} + \tfrac{s^2}{2}(\beta_{\max} - \beta_{\min})`:
    :math:`\alpha_t = e^{-T(1 - t)/2}`, :math:`\sigma_t = \sqrt{1 - \alpha_t^2}`. So
    :math:`\alpha_1 = 1, \sigma_1 = 0`, and :math:`\alpha_0 = e^{-T(1)/2}` is small but not 0.
    :math:`\dot\sigma_t = -\alpha_t\dot\alpha_t / \sigma_t` diverges like :math:`(1-t)^{-1/2}`
    at the data end; it is evaluated with :math:`\sigma_t \ge` :data:`SIGMA_FLOOR`.
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        self.beta_min = check_positive_float(beta_min, "beta_min")
        self.beta_max = check_positive_float(beta_max, "beta_max")
        if self.beta_max < self.beta_min:
            raise ValueError(f"beta_max must be >= beta_min, got beta_min={beta_min}, beta_max={beta_max}")

    def coefficients(self, t: Tensor) -> SchedulerOutput:
        s = 1 - t
        big_t = s * self.beta_min + 0.5 * s**2 * (self.beta_max - self.beta_min)
        beta = self.beta_min + s * (self.beta_max - self.beta_min)
        a = torch.exp(-0.5 * big_t)
        sigma = torch.sqrt((-torch.expm1(-big_t)).clamp_min(0))
        da = 0.5 * beta * a
        ds = -a * da / sigma.clamp_min(SIGMA_FLOOR)
        return SchedulerOutput(a, sigma, da, ds)

    def __repr__(self) -> str:
        return f"VPScheduler(beta_min={self.beta_min:g}, beta_max={self.beta_max:g})"


class VEScheduler(Scheduler):
    r"""The variance-exploding path of Lipman et al. (2022): :math:`\alpha_t = 1`,
    :math:`\sigma_t = \sigma_{\min}^{t}\,\sigma_{\max}^{1 - t}` (geometric from
    :math:`\sigma_{\max}` at t = 0 to :math:`\sigma_{\min}` at t = 1). Its source is
    :math:`\mathcal N(x_1, \sigma_{\max}^2 I) \approx \mathcal N(0, \sigma_{\max}^2 I)`, not N(0, I).
    """

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 10.0) -> None:
        self.sigma_min = check_positive_float(sigma_min, "sigma_min")
        self.sigma_max = check_positive_float(sigma_max, "sigma_max")
        if self.sigma_max <= self.sigma_min:
            raise ValueError(f"sigma_max must be > sigma_min, got sigma_min={sigma_min}, sigma_max={sigma_max}")

    def coefficients(self, t: Tensor) -> SchedulerOutput:
        log_ratio = math.log(self.sigma_min / self.sigma_max)
        sigma = self.sigma_max * torch.exp(t * log_ratio)
        return SchedulerOutput(torch.ones_like(t), sigma, torch.zeros_like(t), log_ratio * sigma)

    def __repr__(self) -> str:
        return f"VEScheduler(sigma_min={self.sigma_min:g}, sigma_max={self.sigma_max:g})"


class OTScheduler(Scheduler):
    r"""The optimal-transport path of Lipman et al. (2022) with a floor
    :math:`\sigma_{\min}`: :math:`\alpha_t = t`, :math:`\sigma_t = 1 - (1 - \sigma_{\min}) t`."""

    def __init__(self, sigma_min: float = 1e-4) -> None:
        self.sigma_min = check_unit_interval(sigma_min, "sigma_min", open_low=True, open_high=True)

    def coefficients(self, t: Tensor) -> SchedulerOutput:
        c = 1 - self.sigma_min
        return SchedulerOutput(t, 1 - c * t, torch.ones_like(t), torch.full_like(t, -c))

    def __repr__(self) -> str:
        return f"OTScheduler(sigma_min={self.sigma_min:g})"


class PathSample(NamedTuple):
    """A draw from an affine path.

    ``x_t``: points on the path, shape ``(B, ...)``; ``dx_t``: the conditional velocity
    :math:`\\dot\\alpha_t x_1 + \\dot\\sigma_t x_0` at those points, same shape; ``t``: ``(B,)``.
    """

    x_t: Tensor
    dx_t: Tensor
    t: Tensor


def check_scheduler(scheduler: object, name: str = "scheduler") -> Scheduler:
    """Check that ``scheduler`` is a :class:`Scheduler` (e.g. ``CondOTScheduler()``, not the class)."""
    if not isinstance(scheduler, Scheduler):
        raise TypeError(
            f"{name} must be a Scheduler instance such as CondOTScheduler(), got {scheduler!r}"
        )
    return scheduler


def _expand(c: Tensor, like: Tensor) -> Tensor:
    """Reshape a per-sample coefficient ``(B,)`` to broadcast against ``(B, ...)``."""
    return c.reshape(c.shape[0], *([1] * (like.ndim - 1)))


@dataclass
class AffinePath:
    """The affine conditional path :math:`x_t = \\alpha_t x_1 + \\sigma_t x_0` of a scheduler."""

    scheduler: Scheduler

    def __post_init__(self) -> None:
        check_scheduler(self.scheduler)

    def sample(self, x0: Tensor, x1: Tensor, t: TimeLike) -> PathSample:
        """Points and conditional velocity targets on the path.

        Args:
            x0: source samples, shape ``(B, ...)``.
            x1: data samples, same shape as ``x0`` (paired row by row: the coupling).
            t: times in [0, 1]: a float or a tensor of shape ``(B,)`` or ``(B, 1)``.

        Returns:
            :class:`PathSample` with ``x_t = alpha_t x1 + sigma_t x0`` and
            ``dx_t = d_alpha_t x1 + d_sigma_t x0``.
        """
        x0 = check_batch(x0, "x0")
        x1 = check_batch(x1, "x1")
        check_same_shape(x0, x1, "x0", "x1")
        t = as_time(t, x0.shape[0], x0)
        a, s, da, ds = (_expand(c, x0) for c in self.scheduler.coefficients(t))
        return PathSample(a * x1 + s * x0, da * x1 + ds * x0, t)


def velocity_from_x1(x1_pred: Tensor, x_t: Tensor, t: TimeLike, scheduler: Scheduler) -> Tensor:
    r"""Velocity from a prediction of the data end point ("target prediction").

    Eliminating :math:`x_0 = (x_t - \alpha_t x_1) / \sigma_t` from
    :math:`\dot\alpha_t x_1 + \dot\sigma_t x_0` gives

    .. math:: u_t(x) = \dot\alpha_t \hat x_1 + \frac{\dot\sigma_t}{\sigma_t}(x - \alpha_t \hat x_1).

    ``sigma_t`` is clamped below at :data:`SIGMA_FLOOR` so the data end t = 1 stays finite.
    Shapes: ``x1_pred`` and ``x_t`` ``(B, ...)``, ``t`` a float or ``(B,)`` in [0, 1].
    """
    check_scheduler(scheduler)
    x_t = check_batch(x_t, "x_t")
    x1_pred = check_batch(x1_pred, "x1_pred")
    check_same_shape(x1_pred, x_t, "x1_pred", "x_t")
    t = as_time(t, x_t.shape[0], x_t)
    a, s, da, ds = (_expand(c, x_t) for c in scheduler.coefficients(t))
    s = s.clamp_min(SIGMA_FLOOR)
    return da * x1_pred + ds / s * (x_t - a * x1_pred)


#: The parameterisations of the same velocity field (for a Gaussian source, epsilon = x0).
PARAMETERIZATIONS = ("velocity", "x1", "x0", "epsilon", "score")


def _divide(num: Tensor, den: Tensor, what: str, clamp: bool) -> Tensor:
    """num / den; with ``clamp`` the magnitude of den is floored at SIGMA_FLOOR, otherwise an
    exact zero raises a ValueError that names the undefined quantity."""
    if clamp:
        return num / torch.where(den >= 0, den.clamp_min(SIGMA_FLOOR), den.clamp_max(-SIGMA_FLOOR))
    if bool((den == 0).any()):
        raise ValueError(f"{what} is undefined at these t (division by zero); use t strictly inside (0, 1)")
    return num / den


def endpoints_from(
    prediction: Tensor, parameterization: str, x_t: Tensor, t: TimeLike, scheduler: Scheduler, clamp: bool = False
) -> tuple[Tensor, Tensor]:
    r"""Recover :math:`(\hat x_0, \hat x_1)` from a prediction at ``x_t`` on an affine path.

    With :math:`x = \alpha x_1 + \sigma x_0`, :math:`v = \dot\alpha x_1 + \dot\sigma x_0` and
    :math:`D = \alpha\dot\sigma - \dot\alpha\sigma`:

    * velocity: :math:`x_1 = (\dot\sigma x - \sigma v) / D`, :math:`x_0 = (\alpha v - \dot\alpha x) / D`;
    * x1 (target) prediction: :math:`x_0 = (x - \alpha x_1)/\sigma`, undefined where :math:`\sigma_t = 0`;
    * x0 or epsilon (source / noise) prediction: :math:`x_1 = (x - \sigma x_0)/\alpha`,
      undefined where :math:`\alpha_t = 0` (the noise end t = 0);
    * score, for a Gaussian source N(0, I): :math:`x_0 = -\sigma \nabla\log p_t(x)`.

    Shapes: ``prediction`` and ``x_t`` ``(B, ...)``; ``t`` a float or ``(B,)``. With
    ``clamp=False`` an exact division by zero raises ValueError; with ``clamp=True``
    divisors are floored at :data:`SIGMA_FLOOR` in magnitude.
    """
    if not isinstance(parameterization, str) or parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}, got {parameterization!r}")
    check_scheduler(scheduler)
    x_t = check_batch(x_t, "x_t")
    prediction = check_batch(prediction, "prediction")
    check_same_shape(prediction, x_t, "prediction", "x_t")
    t = as_time(t, x_t.shape[0], x_t)
    a, s, da, ds = (_expand(c, x_t) for c in scheduler.coefficients(t))
    if parameterization == "velocity":
        det = a * ds - da * s
        return _divide(a * prediction - da * x_t, det, "velocity -> x0", clamp), _divide(
            ds * x_t - s * prediction, det, "velocity -> x1", clamp
        )
    if parameterization == "x1":
        return _divide(x_t - a * prediction, s, "x0 from an x1 prediction (sigma_t = 0)", clamp), prediction
    x0 = prediction if parameterization in ("x0", "epsilon") else -s * prediction
    return x0, _divide(x_t - s * x0, a, "x1 from a source / noise prediction (alpha_t = 0)", clamp)


def convert(
    prediction: Tensor,
    source: str,
    target: str,
    x_t: Tensor,
    t: TimeLike,
    scheduler: Scheduler,
    clamp: bool = False,
) -> Tensor:
    r"""Convert a prediction between parameterisations of the same field on an affine path.

    ``source`` and ``target`` are among :data:`PARAMETERIZATIONS`. The endpoints are first
    recovered with :func:`endpoints_from`, then mapped to ``target``: velocity
    :math:`\dot\alpha \hat x_1 + \dot\sigma \hat x_0`, x1, x0 / epsilon, or score
    :math:`-\hat x_0/\sigma` (Gaussian source; undefined where :math:`\sigma_t = 0`).
    Shapes: ``(B, ...)`` in and out.
    """
    for name, value in (("source", source), ("target", target)):
        if not isinstance(value, str) or value not in PARAMETERIZATIONS:
            raise ValueError(f"{name} must be one of {PARAMETERIZATIONS}, got {value!r}")
    x0, x1 = endpoints_from(prediction, source, x_t, t, scheduler, clamp)
    if target in ("x0", "epsilon"):
        return x0
    if target == "x1":
        return x1
    tt = as_time(t, x_t.shape[0], x_t)
    a, s, da, ds = (_expand(c, x_t) for c in scheduler.coefficients(tt))
    if target == "velocity":
        return da * x1 + ds * x0
    return _divide(-x0, s, "the score (sigma_t = 0)", clamp)


def _posterior_log_weights(x: Tensor, t: Tensor, data: Tensor, scheduler: Scheduler) -> tuple[Tensor, Tensor, Tensor]:
    """log w_i(x) = log N(x; alpha_t z_i, sigma_t^2 I) up to the normalizer; shape (B, N)."""
    a, s, _, _ = scheduler.coefficients(t)
    s = s.clamp_min(SIGMA_FLOOR)
    # Squared distances accumulated one coordinate at a time: exact (no cancellation as in
    # |x|^2 - 2<x, m> + |m|^2, which matters when sigma_t is small) and without a (B, N, d) tensor.
    sq = torch.zeros(x.shape[0], data.shape[0], dtype=x.dtype, device=x.device)
    for k in range(x.shape[1]):
        sq = sq + (x[:, k : k + 1] - a[:, None] * data[None, :, k]) ** 2
    return -sq / (2 * s[:, None] ** 2), a, s


def posterior_mean(x: Tensor, t: TimeLike, data: Tensor, scheduler: Scheduler | None = None) -> Tensor:
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
    scheduler = CondOTScheduler() if scheduler is None else check_scheduler(scheduler)
    x = check_points(x, "x")
    data = check_points(data, "data", dim=x.shape[1])
    t = as_time(t, x.shape[0], x)
    logw, _, _ = _posterior_log_weights(x, t, data.to(x), scheduler)
    return torch.softmax(logw, dim=1) @ data.to(x)


def marginal_velocity(x: Tensor, t: TimeLike, data: Tensor, scheduler: Scheduler | None = None) -> Tensor:
    r"""The exact marginal velocity :math:`u_t(x) = E[\dot\alpha_t X_1 + \dot\sigma_t X_0 \mid X_t = x]`.

    The posterior-weighted average of the conditional velocities, for a Gaussian source and
    the finite data set ``data`` (uniform weights). Shapes: ``x`` ``(B, d)``, ``t`` a float or
    ``(B,)``, ``data`` ``(N, d)``; returns ``(B, d)``. At the data end, where
    :math:`\sigma_1 = 0`, ``sigma_t`` is clamped at :data:`SIGMA_FLOOR`.
    """
    scheduler = CondOTScheduler() if scheduler is None else check_scheduler(scheduler)
    x = check_points(x, "x")
    t = as_time(t, x.shape[0], x)
    x1_hat = posterior_mean(x, t, data, scheduler)
    return velocity_from_x1(x1_hat, x, t, scheduler)


def marginal_score(x: Tensor, t: TimeLike, data: Tensor, scheduler: Scheduler | None = None) -> Tensor:
    r"""The exact marginal score :math:`\nabla_x \log p_t(x) = -(x - \alpha_t E[X_1 \mid x]) / \sigma_t^2`.

    Shapes as in :func:`marginal_velocity`; ``sigma_t`` is clamped at :data:`SIGMA_FLOOR`.
    """
    scheduler = CondOTScheduler() if scheduler is None else check_scheduler(scheduler)
    x = check_points(x, "x")
    t = as_time(t, x.shape[0], x)
    x1_hat = posterior_mean(x, t, data, scheduler)
    a, s, _, _ = (c[:, None] for c in scheduler.coefficients(t))
    return -(x - a * x1_hat) / s.clamp_min(SIGMA_FLOOR) ** 2


def marginal_log_density(x: Tensor, t: TimeLike, data: Tensor, scheduler: Scheduler | None = None) -> Tensor:
    r"""The exact log-density :math:`\log p_t(x) = \log \frac1N \sum_i \mathcal N(x; \alpha_t z_i, \sigma_t^2 I)`.

    Shapes: ``x`` ``(B, d)``, ``t`` a float or ``(B,)``, ``data`` ``(N, d)``; returns ``(B,)``.
    ``sigma_t`` is clamped at :data:`SIGMA_FLOOR`.
    """
    scheduler = CondOTScheduler() if scheduler is None else check_scheduler(scheduler)
    x = check_points(x, "x")
    data = check_points(data, "data", dim=x.shape[1])
    t = as_time(t, x.shape[0], x)
    logw, _, s = _posterior_log_weights(x, t, data.to(x), scheduler)
    d = x.shape[1]
    log_norm = -0.5 * d * math.log(2 * math.pi) - d * torch.log(s)
    return torch.logsumexp(logw, dim=1) - math.log(data.shape[0]) + log_norm

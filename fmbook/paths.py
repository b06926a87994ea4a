r"""Probability paths: the affine conditional path, a curved one, and re-timing between schedulers.

The affine conditional path of a scheduler (:mod:`fmbook.schedulers`) is

.. math::  x_t = \alpha_t x_1 + \sigma_t x_0, \qquad
           \frac{d x_t}{dt} = \dot\alpha_t x_1 + \dot\sigma_t x_0;

an :class:`AffinePath` turns a scheduler into samples and regression targets, :class:`CurvedPath`
is a planar path that bows away from the straight line (chapter 4), and :class:`ScheduleChange`
re-times a velocity trained under one scheduler so that it generates the path of another.

This module is the one entry for paths: it re-exports the schedulers and SNR functions of
:mod:`fmbook.schedulers` and the conversions between parameterisations of
:mod:`fmbook.parameterizations`, split off only to keep each file short.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from ._checks import (
    TimeLike,
    as_time,
    broadcast_time,
    check_batch,
    check_batch_pair,
    check_point_clouds,
    check_points,
    check_positive_float,
    check_positive_int,
    check_same_shape,
)
from .marginals import (  # noqa: F401  (re-exported: fmbook.paths is the entry for paths)
    gaussian_marginal_velocity,
    gaussian_mixture_log_density,
    gaussian_mixture_velocity,
    marginal_log_density,
    marginal_score,
    marginal_velocity,
    marginal_velocity_jacobian,
    posterior_mean,
    posterior_weights,
)
from .parameterizations import (  # noqa: F401  (re-exported)
    PARAMETERIZATIONS,
    Law,
    Limits,
    coefficient_limits,
    conditional_velocity,
    convert,
    endpoints_from,
    score_from_velocity,
    velocity_coefficients,
    velocity_from_score,
)
from .schedulers import (  # noqa: F401  (re-exported)
    SIGMA_FLOOR,
    CondOTScheduler,
    CosineScheduler,
    OTScheduler,
    PolynomialScheduler,
    Scheduler,
    SchedulerOutput,
    VEScheduler,
    VPScheduler,
    _coefficients,
    _expand,
    _nonzero,
    _snr_angle,
    check_scheduler,
    edge_floor,
    log_snr,
    snr,
    time_at_snr,
)


class PathSample(NamedTuple):
    """A draw from an affine path.

    ``x_t``: points on the path, shape ``(B, ...)``; ``dx_t``: the conditional velocity
    :math:`\\dot\\alpha_t x_1 + \\dot\\sigma_t x_0` at those points, same shape; ``t``: ``(B,)``.
    """

    x_t: Tensor
    dx_t: Tensor
    t: Tensor


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

        It runs once per training step, so it checks types and shapes only and no values (no
        host-device sync): finite inputs and times in [0, 1] are checked once at the public
        boundary (the training recipes and :func:`fmbook.train.fit`).
        """
        check_batch_pair(x0, x1, ("x0", "x1"))
        t = broadcast_time(t, x0.shape[0], x0)
        a, s, da, ds = (_expand(c, x0) for c in self.scheduler.coefficients(t))
        return PathSample(a * x1 + s * x0, da * x1 + ds * x0, t)


class CurvedPath:
    r"""A planar conditional path that bows away from the straight line:

    .. math:: x_t = (1 - t)\,x_0 + t\,x_1 + c\,t(1 - t)\,R(x_1 - x_0),
              \qquad \dot x_t = (x_1 - x_0) + c\,(1 - 2t)\,R(x_1 - x_0),

    with :math:`R` the rotation by +90 degrees, so the added term is perpendicular to
    :math:`x_1 - x_0` and the path still runs from :math:`x_0` to :math:`x_1`. Because the two
    terms of the velocity are orthogonal, the kinetic energy of one path is
    :math:`\lVert x_1 - x_0\rVert^2 (1 + c^2/3)`: :math:`c = 0` is the linear path.

    ``sample(x0, x1, t)`` returns a :class:`PathSample`, so the path can be passed
    to :func:`fmbook.losses.cfm_loss` in place of an affine path.
    """

    def __init__(self, amplitude: float = 1.0) -> None:
        if isinstance(amplitude, bool) or not isinstance(amplitude, (int, float)) or not math.isfinite(amplitude):
            raise ValueError(f"amplitude must be a finite number, got {amplitude!r}")
        self.amplitude = float(amplitude)

    def sample(self, x0: Tensor, x1: Tensor, t: float | Tensor) -> PathSample:
        """Points ``x_t`` ``(B, 2)`` and velocities ``dx_t`` ``(B, 2)`` at times ``t`` (a float or ``(B,)``)."""
        x0 = check_points(x0, "x0", dim=2)
        x1 = check_points(x1, "x1", dim=2)
        check_same_shape(x0, x1, "x0", "x1")
        t = as_time(t, x0.shape[0], x0)
        tt = t[:, None]
        d = x1 - x0
        perp = torch.stack([-d[:, 1], d[:, 0]], dim=1)
        x_t = (1 - tt) * x0 + tt * x1 + self.amplitude * tt * (1 - tt) * perp
        dx_t = d + self.amplitude * (1 - 2 * tt) * perp
        return PathSample(x_t, dx_t, t)

    def energy(self, x0: Tensor, x1: Tensor) -> float:
        r"""The mean kinetic energy :math:`\E\lVert x_1 - x_0\rVert^2 (1 + c^2/3)` of the conditional paths."""
        x0, x1 = check_point_clouds(x0, x1, ("x0", "x1"), same_size=True, to_float64_cpu=True)
        return float((x1 - x0).square().sum(1).mean()) * (1 + self.amplitude**2 / 3)

    def __repr__(self) -> str:
        return f"CurvedPath(amplitude={self.amplitude:g})"


def target_second_moment(t: TimeLike, data_second_moment: float, dim: int, scheduler: Scheduler) -> Tensor:
    r"""The mean squared size of the CFM target, :math:`\mathbb E\lVert \dot\alpha_t X_1 + \dot\sigma_t X_0\rVert^2`.

    For :math:`X_0 \sim \mathcal N(0, I_d)` independent of :math:`X_1` it is
    :math:`\dot\alpha_t^2\,\mathbb E\lVert X_1\rVert^2 + d\,\dot\sigma_t^2`. For the VP path,
    :math:`\dot\sigma_t^2 \approx \beta_{\min}/(4(1 - t))` at the data end, so it grows like
    :math:`\beta_{\min} d / (4(1 - t))`, which is not integrable: the VP CFM loss is log-divergent.
    ``t``: a float or ``(B,)``; ``data_second_moment`` :math:`= \mathbb E\lVert X_1\rVert^2`; returns ``(B,)``.
    """
    check_scheduler(scheduler)
    m2 = check_positive_float(data_second_moment, "data_second_moment")
    d = check_positive_int(dim, "dim")
    _, _, da, ds = scheduler(t)
    return da**2 * m2 + d * ds**2


def velocity_from_x1(x1_pred: Tensor, x_t: Tensor, t: TimeLike, scheduler: Scheduler, *, clamp: bool = False) -> Tensor:
    r"""Velocity from a prediction of the data end point ("target prediction").

    Eliminating :math:`x_0 = (x_t - \alpha_t x_1) / \sigma_t` from
    :math:`\dot\alpha_t x_1 + \dot\sigma_t x_0` gives

    .. math:: u_t(x_t) = \dot\alpha_t \hat x_1 + \frac{\dot\sigma_t}{\sigma_t}(x_t - \alpha_t \hat x_1).

    It is ``convert(x1_pred, "x1", "velocity", x_t, t, scheduler, clamp=clamp)`` under its own
    name, with the same behaviour where :math:`\sigma_t = 0` (the data end t = 1): a ValueError, or
    with ``clamp=True`` the divisor floored at :func:`~fmbook.schedulers.edge_floor`. The exact fields, which are 0/0
    there, use :func:`~fmbook.parameterizations.conditional_velocity` instead, whose documented floor is
    :data:`~fmbook.schedulers.SIGMA_FLOOR`.
    Shapes: ``x1_pred`` and ``x_t`` ``(B, ...)``, ``t`` a float or ``(B,)``; returns ``(B, ...)``.
    """
    x_t = check_batch(x_t, "x_t")
    check_same_shape(check_batch(x1_pred, "x1_pred"), x_t, "x1_pred", "x_t")
    return convert(x1_pred, "x1", "velocity", x_t, t, scheduler, clamp=clamp)


Velocity = Callable[[Tensor, Tensor], Tensor]


def _where(mask: Tensor, value: Tensor) -> Tensor:
    """``value`` where ``mask`` holds, 1 elsewhere: a divisor that is safe in the branch not taken."""
    return torch.where(mask, value, torch.ones_like(value))


class ScheduleChange:
    r"""A velocity trained under scheduler ``old``, re-timed to generate the path of scheduler ``new``.

    Two affine paths with the same coupling are the same path up to a change of time and a
    scaling (Lipman et al., 2024, Section 4.8): if :math:`\bar\alpha_r/\bar\sigma_r = \alpha_{t_r}/\sigma_{t_r}`
    (equal signal-to-noise ratios) and :math:`s_r = \bar\sigma_r/\sigma_{t_r} = \bar\alpha_r/\alpha_{t_r}`, then
    :math:`\bar x_r = s_r\, x_{t_r}`, and the velocity of the new path is

    .. math:: \bar u_r(x) = \frac{\dot s_r}{s_r}\, x + s_r\,\dot t_r\, u_{t_r}(x / s_r),
              \qquad \dot t_r = \frac{\bar D_r}{s_r^2\, D_{t_r}}, \quad D = \alpha\dot\sigma - \dot\alpha\sigma .

    :math:`s_r` and :math:`\dot s_r / s_r` are computed from the :math:`\sigma`'s where
    :math:`\sigma \ge \alpha` and from the :math:`\alpha`'s elsewhere, so that nothing divides by a
    vanishing coefficient at either end. Called as ``change(x, r)`` with ``x`` ``(B, ...)`` and ``r``
    ``(B,)`` in [0, 1]; the new scheduler's SNR range must lie within the old one's, and the old
    one must have :math:`D \ne 0` at the matched times (a ValueError says otherwise).
    """

    def __init__(self, velocity: Velocity, old: Scheduler, new: Scheduler) -> None:
        if not callable(velocity):
            raise TypeError(f"velocity must be callable as velocity(x, t), got {type(velocity).__name__}")
        self.velocity = velocity
        self.old = check_scheduler(old, "old")
        self.new = check_scheduler(new, "new")

    def time_and_scale(self, r: TimeLike, like: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(t_r, s_r, dt_r/dr, ds_r/dr / s_r)`` at new times ``r`` (a float or ``(B,)``), each ``(B,)``."""
        if like is None:
            like = r if isinstance(r, Tensor) and r.is_floating_point() else torch.empty(0)
        batch = r.reshape(-1).shape[0] if isinstance(r, Tensor) else 1
        r = as_time(r, batch, like, "r")
        na, ns, nda, nds = self.new.coefficients(r)
        t = time_at_snr(_snr_angle(na, ns), self.old)
        oa, os, oda, ods = self.old.coefficients(t)
        by_sigma = os >= oa  # there sigma_new >= alpha_new too (equal SNR), and both sigmas are > 0
        by_alpha = ~by_sigma
        s = torch.where(by_sigma, ns / _where(by_sigma, os), na / _where(by_alpha, oa))
        d_old = oa * ods - oda * os
        if bool((d_old == 0).any()):
            raise ValueError(
                "old must have D = alpha sigma' - alpha' sigma != 0 at the matched times (its SNR is then "
                f"strictly increasing); {self.old!r} has D = 0 at t = {t[d_old == 0][0].item():.4g}"
            )
        dt = (na * nds - nda * ns) / (s**2 * d_old)
        log_ds_by_sigma = nds / _where(by_sigma, ns) - ods * dt / _where(by_sigma, os)
        log_ds_by_alpha = nda / _where(by_alpha, na) - oda * dt / _where(by_alpha, oa)
        return t, s, dt, torch.where(by_sigma, log_ds_by_sigma, log_ds_by_alpha)

    def __call__(self, x: Tensor, r: TimeLike) -> Tensor:
        x = check_batch(x, "x")
        t, s, dt, log_ds = (_expand(c, x) for c in self.time_and_scale(r, x))
        return log_ds * x + s * dt * self.velocity(x / s, t.reshape(-1))

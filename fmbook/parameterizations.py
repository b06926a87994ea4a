r"""Parameterisations of one velocity field on an affine path, and the passage between them.

The same velocity field can be written through a prediction of the data end :math:`x_1`, of
the source end :math:`x_0` (the noise :math:`\varepsilon` for a Gaussian source), of the
v-target or, for a Gaussian source, of the score: :func:`velocity_coefficients`,
:func:`endpoints_from` and :func:`convert` pass between them (chapter 5), and
:func:`velocity_from_score` / :func:`score_from_velocity` between a score and a velocity.
:mod:`fmbook.paths` re-exports every public name.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from ._checks import TimeLike, as_time, check_batch, check_same_shape, check_unit_interval
from .schedulers import Scheduler, _coefficients, _expand, _floor_magnitude, _nonzero, check_scheduler


def conditional_velocity(x_t: Tensor, x1: Tensor, t: TimeLike, scheduler: Scheduler) -> Tensor:
    r"""The conditional velocity of a Gaussian path, Theorem 3 of Lipman et al. (2022).

    For :math:`p_t(x \mid x_1) = \mathcal N(x; \mu_t, \sigma_t^2 I)` with :math:`\mu_t = \alpha_t x_1`,
    the canonical flow :math:`\psi_t(x_0) = \sigma_t x_0 + \mu_t` has the velocity

    .. math:: u_t(x \mid x_1) = \frac{\dot\sigma_t}{\sigma_t}(x - \mu_t) + \dot\mu_t
              = \frac{\dot\sigma_t}{\sigma_t}(x - \alpha_t x_1) + \dot\alpha_t x_1 .

    Shapes: ``x_t`` and ``x1`` ``(B, ...)``, ``t`` a float or ``(B,)``; returns ``(B, ...)``.
    Where :math:`\sigma_t = 0` (the data end of a path with :math:`\sigma_1 = 0`) the field is
    0/0 on the path; documented clamp: an exact :math:`\sigma_t = 0` is replaced by
    :data:`~fmbook.schedulers.SIGMA_FLOOR`, and every :math:`\sigma_t > 0` is used exactly (on the path the result at
    :math:`\sigma_t = 0` is :math:`\dot\alpha_t x_1`). A solver stage evaluated at t = 1 then sees
    a bounded pull towards :math:`x_1`, not one of size :math:`1/\sigma`.
    """
    x_t = check_batch(x_t, "x_t")
    x1 = check_batch(x1, "x1")
    check_same_shape(x_t, x1, "x_t", "x1")
    a, s, da, ds = _coefficients(t, x_t, scheduler)
    return da * x1 + ds / _nonzero(s) * (x_t - a * x1)


#: The parameterisations of the same velocity field (for a Gaussian source, epsilon = x0); "v" is
#: the v-prediction :math:`v = \alpha_t x_0 - \sigma_t x_1` of Salimans and Ho (2022).
PARAMETERIZATIONS = ("velocity", "x1", "x0", "epsilon", "score", "v")


def _check_parameterization(value: object, name: str) -> str:
    if not isinstance(value, str) or value not in PARAMETERIZATIONS:
        raise ValueError(f"{name} must be one of {PARAMETERIZATIONS}, got {value!r}")
    return value


def _divide(num: Tensor, den: Tensor, what: str, clamp: bool) -> Tensor:
    """num / den; with ``clamp`` the magnitude of den is floored at :func:`~fmbook.schedulers.edge_floor`, otherwise an
    exact zero raises a ValueError that names the undefined quantity."""
    if clamp:
        return num / _floor_magnitude(den)
    if bool((den == 0).any()):
        raise ValueError(
            f"{what} is undefined at these t (division by zero); use t strictly inside (0, 1) or clamp=True"
        )
    return num / den


def _check_clamp(clamp: object) -> bool:
    if not isinstance(clamp, bool):
        raise TypeError(f"clamp must be a bool (True or False), got {clamp!r}")
    return clamp


def velocity_coefficients(
    t: TimeLike, parameterization: str, scheduler: Scheduler, *, clamp: bool = False
) -> tuple[Tensor, Tensor]:
    r"""Coefficients :math:`(a_t, b_t)` with :math:`u_t(x) = a_t\,x + b_t\,f_t(x)` for a prediction :math:`f`.

    Derived for any affine scheduler from :math:`x = \alpha x_1 + \sigma x_0` and
    :math:`u = \dot\alpha x_1 + \dot\sigma x_0` (Lipman et al., 2024, Section 4.8):

    * velocity: :math:`a_t = 0`, :math:`b_t = 1`; defined everywhere;
    * x1: :math:`a_t = \dot\sigma/\sigma`, :math:`b_t = \dot\alpha - \alpha\dot\sigma/\sigma`;
      undefined where :math:`\sigma_t = 0`;
    * x0 or epsilon: :math:`a_t = \dot\alpha/\alpha`, :math:`b_t = \dot\sigma - \sigma\dot\alpha/\alpha`;
      undefined where :math:`\alpha_t = 0`;
    * score: :math:`a_t = \dot\alpha/\alpha`, :math:`b_t = \sigma^2\dot\alpha/\alpha - \sigma\dot\sigma`;
      undefined where :math:`\alpha_t = 0`;
    * v (:math:`v = \alpha x_0 - \sigma x_1`, Salimans and Ho, 2022):
      :math:`a_t = (\alpha\dot\alpha + \sigma\dot\sigma)/(\alpha^2 + \sigma^2)`,
      :math:`b_t = (\alpha\dot\sigma - \dot\alpha\sigma)/(\alpha^2 + \sigma^2)`; defined everywhere
      (:math:`\alpha_t, \sigma_t` never vanish together). On the cosine path :math:`a_t = 0`,
      :math:`b_t = -\pi/2`: the v-target is the velocity times :math:`-2/\pi`.

    The score row holds for a Gaussian source N(0, I), where :math:`E[X_0 \mid x] = -\sigma_t \nabla\log p_t(x)`.
    ``t``: a float or ``(B,)`` in [0, 1]; returns two tensors ``(B,)``. With ``clamp=False`` an
    exact zero divisor raises ValueError; with ``clamp=True`` its magnitude is floored at
    :func:`~fmbook.schedulers.edge_floor` (every nonzero divisor of the book's schedulers is kept).
    """
    check_scheduler(scheduler)
    _check_parameterization(parameterization, "parameterization")
    _check_clamp(clamp)
    a, s, da, ds = scheduler(t)
    if parameterization == "velocity":
        return torch.zeros_like(a), torch.ones_like(a)
    if parameterization == "v":
        norm = a * a + s * s
        return (a * da + s * ds) / norm, (a * ds - da * s) / norm
    if parameterization == "x1":
        ratio = _divide(ds, s, "an x1 (target) prediction's velocity (sigma_t = 0)", clamp)
        return ratio, da - a * ratio
    ratio = _divide(da, a, f"an {parameterization} prediction's velocity (alpha_t = 0)", clamp)
    if parameterization in ("x0", "epsilon"):
        return ratio, ds - s * ratio
    return ratio, s**2 * ratio - s * ds


class Law(NamedTuple):
    r"""A leading law :math:`c\,g^{-p}` in the distance :math:`g` to an end of [0, 1]; ``p = 0`` is a finite limit c."""

    c: float
    p: float


class Limits(NamedTuple):
    """The laws of the two coefficients of :math:`u = a_t x + b_t f` at one end."""

    a: Law
    b: Law


def coefficient_limits(parameterization: str, end: int, scheduler: Scheduler, *, gap: float = 1e-6) -> Limits:
    r"""The leading behaviour of the coefficients :math:`(a_t, b_t)` of :func:`velocity_coefficients` at an end.

    ``end`` is 0 (the noise end, :math:`g = t`) or 1 (the data end, :math:`g = 1 - t`). Each coefficient
    is evaluated in float64 at :math:`g` = ``gap`` and ``gap / 10``; the power :math:`p` is the log-log slope
    between them rounded to a multiple of 1/2 (0 when the coefficient converges), and :math:`c` is the
    value at ``gap / 10`` times :math:`g^p`, rounded to 4 significant digits (limits below :math:`10^{-5}`
    are reported as 0). Returns :class:`Limits`: a :class:`Law` ``(c, p)`` for :math:`a_t` and one for
    :math:`b_t`; the laws of the book's table are checked against closed forms in ``tests/test_ch5_rigor.py``.
    """
    check_scheduler(scheduler)
    _check_parameterization(parameterization, "parameterization")
    if isinstance(end, bool) or not isinstance(end, int) or end not in (0, 1):
        raise ValueError(f"end must be 0 (noise end) or 1 (data end), got {end!r}")
    gap = check_unit_interval(gap, "gap", open_low=True, open_high=True)
    g = torch.tensor([gap, gap / 10], dtype=torch.float64)
    laws = []
    for v in velocity_coefficients(g if end == 0 else 1 - g, parameterization, scheduler):
        v1, v2 = abs(v[0].item()), abs(v[1].item())
        slope = math.log10(v2 / v1) if v1 > 0 and v2 > 0 else 0.0
        p = max(0.0, round(2 * slope) / 2)
        c = v[1].item() * (gap / 10) ** p
        c = 0.0 if p == 0 and abs(c) < 1e-5 else float(f"{c:.4g}")
        laws.append(Law(c, p))
    return Limits(laws[0], laws[1])


def endpoints_from(
    prediction: Tensor, parameterization: str, x_t: Tensor, t: TimeLike, scheduler: Scheduler, *, clamp: bool = False
) -> tuple[Tensor, Tensor]:
    r"""Recover :math:`(\hat x_0, \hat x_1)` from a prediction at ``x_t`` on an affine path.

    With :math:`x = \alpha x_1 + \sigma x_0`, :math:`v = \dot\alpha x_1 + \dot\sigma x_0` and
    :math:`D = \alpha\dot\sigma - \dot\alpha\sigma` (nonzero for every scheduler here on (0, 1],
    and at t = 0 too except for the polynomial scheduler with n > 1, whose velocity vanishes there):

    * velocity: :math:`x_1 = (\dot\sigma x - \sigma v) / D`, :math:`x_0 = (\alpha v - \dot\alpha x) / D`;
    * x1 (target) prediction: :math:`x_0 = (x - \alpha x_1)/\sigma`, undefined where :math:`\sigma_t = 0`;
    * x0 or epsilon (source / noise) prediction: :math:`x_1 = (x - \sigma x_0)/\alpha`,
      undefined where :math:`\alpha_t = 0` (the noise end t = 0);
    * score, for a Gaussian source N(0, I): :math:`x_0 = -\sigma \nabla\log p_t(x)`, then as x0;
    * v (:math:`v = \alpha x_0 - \sigma x_1`): :math:`x_1 = (\alpha x - \sigma v)/(\alpha^2 + \sigma^2)`,
      :math:`x_0 = (\sigma x + \alpha v)/(\alpha^2 + \sigma^2)`, defined everywhere.

    Shapes: ``prediction`` and ``x_t`` ``(B, ...)``; ``t`` a float or ``(B,)``. With
    ``clamp=False`` an exact division by zero raises ValueError; with ``clamp=True``
    divisors are floored at :func:`~fmbook.schedulers.edge_floor` in magnitude.
    """
    _check_parameterization(parameterization, "parameterization")
    _check_clamp(clamp)
    x_t = check_batch(x_t, "x_t")
    prediction = check_batch(prediction, "prediction")
    check_same_shape(prediction, x_t, "prediction", "x_t")
    a, s, da, ds = _coefficients(t, x_t, scheduler)
    if parameterization == "velocity":
        det = a * ds - da * s
        return _divide(a * prediction - da * x_t, det, "velocity -> x0", clamp), _divide(
            ds * x_t - s * prediction, det, "velocity -> x1", clamp
        )
    if parameterization == "x1":
        return _divide(x_t - a * prediction, s, "x0 from an x1 prediction (sigma_t = 0)", clamp), prediction
    if parameterization == "v":
        norm = a * a + s * s
        return (s * x_t + a * prediction) / norm, (a * x_t - s * prediction) / norm
    x0 = prediction if parameterization in ("x0", "epsilon") else -s * prediction
    return x0, _divide(x_t - s * x0, a, "x1 from a source / noise / score prediction (alpha_t = 0)", clamp)


def convert(
    prediction: Tensor,
    source: str,
    target: str,
    x_t: Tensor,
    t: TimeLike,
    scheduler: Scheduler,
    *,
    clamp: bool = False,
) -> Tensor:
    r"""Convert a prediction between parameterisations of the same field on an affine path.

    ``source`` and ``target`` are among :data:`PARAMETERIZATIONS`. The endpoints are first
    recovered with :func:`endpoints_from`, then mapped to ``target``: velocity
    :math:`\dot\alpha \hat x_1 + \dot\sigma \hat x_0`, x1, x0 / epsilon, v :math:`\alpha \hat x_0 - \sigma \hat x_1`,
    or score :math:`-\hat x_0/\sigma` (Gaussian source; undefined where :math:`\sigma_t = 0`).
    Shapes: ``(B, ...)`` in and out. Errors and ``clamp`` as in :func:`endpoints_from`.
    """
    _check_parameterization(source, "source")
    _check_parameterization(target, "target")
    if source == target:
        _check_clamp(clamp)
        x_t = check_batch(x_t, "x_t")
        check_same_shape(check_batch(prediction, "prediction"), x_t, "prediction", "x_t")
        _coefficients(t, x_t, scheduler)
        return prediction
    x0, x1 = endpoints_from(prediction, source, x_t, t, scheduler, clamp=clamp)
    if target in ("x0", "epsilon"):
        return x0
    if target == "x1":
        return x1
    a, s, da, ds = _coefficients(t, x_t, scheduler)
    if target == "velocity":
        return da * x1 + ds * x0
    if target == "v":
        return a * x0 - s * x1
    return _divide(-x0, s, "the score (sigma_t = 0)", clamp)




def velocity_from_score(
    score: Tensor, x_t: Tensor, t: TimeLike, scheduler: Scheduler, *, clamp: bool = False
) -> Tensor:
    r"""Proposition 1 of chapter 6 (the score and the velocity of a Gaussian path): the velocity of a
    Gaussian path from its score,

    .. math:: u_t(x) = \Big(\sigma_t^2\frac{\dot\alpha_t}{\alpha_t} - \dot\sigma_t\sigma_t\Big)\nabla\log p_t(x)
              + \frac{\dot\alpha_t}{\alpha_t}\, x,

    for the conditional and the marginal fields alike (source N(0, I)). Undefined where
    :math:`\alpha_t = 0` (the noise end t = 0 of CondOT): a ValueError, or with ``clamp=True``
    :math:`\alpha_t` floored at :func:`~fmbook.schedulers.edge_floor`. Shapes: ``score`` and ``x_t`` ``(B, ...)``,
    ``t`` a float or ``(B,)``.
    """
    check_scheduler(scheduler)
    _check_clamp(clamp)
    x_t = check_batch(x_t, "x_t")
    score = check_batch(score, "score")
    check_same_shape(score, x_t, "score", "x_t")
    t = as_time(t, x_t.shape[0], x_t)
    a, s, da, ds = (_expand(c, x_t) for c in scheduler.coefficients(t))
    return _divide((s * s * da - ds * s * a) * score + da * x_t, a, "the velocity from a score (alpha_t = 0)", clamp)


def score_from_velocity(
    velocity: Tensor, x_t: Tensor, t: TimeLike, scheduler: Scheduler, *, clamp: bool = False
) -> Tensor:
    r"""Proposition 1 of chapter 6: the score of a Gaussian path from its velocity,

    .. math:: \nabla\log p_t(x) = \frac{\alpha_t u_t(x) - \dot\alpha_t x}
              {\sigma_t^2\dot\alpha_t - \alpha_t\dot\sigma_t\sigma_t}.

    The denominator vanishes where :math:`\sigma_t = 0` (the data end t = 1): a ValueError, or with
    ``clamp=True`` its magnitude is floored at :func:`~fmbook.schedulers.edge_floor`. Shapes as in
    :func:`velocity_from_score`.
    """
    check_scheduler(scheduler)
    _check_clamp(clamp)
    x_t = check_batch(x_t, "x_t")
    velocity = check_batch(velocity, "velocity")
    check_same_shape(velocity, x_t, "velocity", "x_t")
    t = as_time(t, x_t.shape[0], x_t)
    a, s, da, ds = (_expand(c, x_t) for c in scheduler.coefficients(t))
    return _divide(a * velocity - da * x_t, s * s * da - a * ds * s, "the score from a velocity (sigma_t = 0)", clamp)

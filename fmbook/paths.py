r"""Probability paths: schedulers, the affine conditional path, parameterisations, and exact marginal fields.

Convention of the whole book: time runs from t = 0 (source / noise) to t = 1 (data), and the
affine conditional path is

.. math::  x_t = \alpha_t x_1 + \sigma_t x_0, \qquad
           \frac{d x_t}{dt} = \dot\alpha_t x_1 + \dot\sigma_t x_0,

with :math:`\alpha_0 = 0, \sigma_0 = 1` and :math:`\alpha_1 = 1, \sigma_1 = 0` (or a small
:math:`\sigma_{\min}`). A *scheduler* returns :math:`(\alpha_t, \sigma_t, \dot\alpha_t,
\dot\sigma_t)`; an :class:`AffinePath` turns a scheduler into samples and regression targets.

The same velocity field can be written through a prediction of the data end :math:`x_1`, of
the source end :math:`x_0` (the noise :math:`\varepsilon` for a Gaussian source) or, for a
Gaussian source, of the score: :func:`velocity_coefficients`, :func:`endpoints_from` and
:func:`convert` pass between them. :class:`ScheduleChange` re-times a velocity trained under
one scheduler so that it generates the path of another.

For a Gaussian source :math:`X_0 \sim \mathcal N(0, I)` and a finite data set
:math:`\{z_1, \dots, z_N\}`, the marginal path is a mixture of Gaussians
:math:`p_t(x) = \frac1N \sum_i \mathcal N(x; \alpha_t z_i, \sigma_t^2 I)`, and its velocity and
score are known in closed form (:func:`marginal_velocity`, :func:`marginal_score`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from ._checks import (
    TimeLike,
    as_time,
    check_batch,
    check_points,
    check_positive_float,
    check_positive_int,
    check_same_shape,
    check_unit_interval,
)

#: The value put in place of an exact :math:`\sigma_t = 0` where a formula divides by it: the
#: derivative :math:`\dot\sigma_t = -\alpha_t\dot\alpha_t/\sigma_t` of the variance-preserving
#: schedulers (true value :math:`-\infty` at t = 1), and the conditional and exact marginal fields,
#: which are 0/0 at t = 1 (a solver stage at t = 1 then meets a bounded field). Every
#: :math:`\sigma_t > 0` is used as it is.
SIGMA_FLOOR = 1e-4


def edge_floor(dtype: torch.dtype) -> float:
    r"""The magnitude below which a divisor is floored where a formula of this module divides by a
    vanishing :math:`\sigma_t`, :math:`\alpha_t` or determinant at an end of [0, 1]:
    ``torch.finfo(dtype).tiny ** 0.25`` (about :math:`3.3\cdot10^{-10}` in float32 and
    :math:`1.2\cdot10^{-77}` in float64).

    It only replaces exact zeros in practice: on [0, 1] the smallest nonzero :math:`1 - t` is
    :math:`2^{-24} \approx 6\cdot10^{-8}` in float32 and :math:`2^{-53}` in float64, far above it,
    so the exact formula is used at every t < 1; at the noise end only :math:`\alpha_t` below the
    floor (e.g. CondOT at :math:`t < 3.3\cdot10^{-10}` in float32) is floored. Its fourth root of the
    smallest normal number leaves room for two such divisions and a factor of :math:`10^{10}`
    before the dtype overflows, so every result stays finite.
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    return torch.finfo(dtype).tiny ** 0.25


def _floor_magnitude(den: Tensor) -> Tensor:
    """``den`` with its magnitude floored at :func:`edge_floor` of its dtype (zeros become +floor)."""
    f = edge_floor(den.dtype)
    return torch.where(den >= 0, den.clamp_min(f), den.clamp_max(-f))


def _nonzero(sigma: Tensor) -> Tensor:
    """``sigma`` (>= 0) with exact zeros replaced by :data:`SIGMA_FLOOR`; every positive value kept."""
    return torch.where(sigma > 0, sigma, torch.full_like(sigma, SIGMA_FLOOR))


class SchedulerOutput(NamedTuple):
    """Coefficients of an affine path at times ``t``: each a tensor of shape ``(B,)``."""

    alpha_t: Tensor
    sigma_t: Tensor
    d_alpha_t: Tensor
    d_sigma_t: Tensor


class Scheduler:
    """Base class of the schedulers :math:`t \\mapsto (\\alpha_t, \\sigma_t, \\dot\\alpha_t, \\dot\\sigma_t)`.

    Subclasses implement :meth:`coefficients` for a tensor ``t`` of shape ``(B,)`` in [0, 1];
    it returns tensors of the dtype and device of ``t``.
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


def check_scheduler(scheduler: object, name: str = "scheduler") -> Scheduler:
    """Check that ``scheduler`` is a :class:`Scheduler` (e.g. ``CondOTScheduler()``)."""
    if not isinstance(scheduler, Scheduler):
        kind = type(scheduler).__name__
        raise TypeError(
            f"{name} must be a fmbook.paths.Scheduler instance such as CondOTScheduler(), got {kind}"
        )
    return scheduler


class CondOTScheduler(Scheduler):
    """The conditional optimal-transport (linear) scheduler: alpha_t = t, sigma_t = 1 - t."""

    def coefficients(self, t: Tensor) -> SchedulerOutput:
        return SchedulerOutput(t, 1 - t, torch.ones_like(t), -torch.ones_like(t))


class PolynomialScheduler(Scheduler):
    """alpha_t = t^n, sigma_t = 1 - t^n, for a real n >= 1 (n = 1 is CondOT).

    For n < 1 the derivative n t^(n-1) is infinite at t = 0, so such n are refused.
    """

    def __init__(self, n: float = 2.0) -> None:
        n = check_positive_float(n, "n")
        if n < 1:
            raise ValueError(f"n must be >= 1 (for n < 1 the derivative n t^(n-1) is infinite at t = 0), got {n}")
        self.n = n

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
    """alpha_t = sin(pi t / 2), sigma_t = cos(pi t / 2): alpha_t^2 + sigma_t^2 = 1.

    sigma_t is computed as sin(pi (1 - t) / 2): exactly 0 at t = 1 (cos of the rounded pi / 2 is
    not) and accurate to the last bit near the data end.
    """

    def coefficients(self, t: Tensor) -> SchedulerOutput:
        h = 0.5 * math.pi
        sin, cos = torch.sin(h * t), torch.sin(h * (1 - t)).clamp_min(0)
        return SchedulerOutput(sin, cos, h * cos, -h * sin)


class VPScheduler(Scheduler):
    r"""The variance-preserving diffusion path of Lipman et al. (2022), in the book's time.

    With :math:`\beta(s) = \beta_{\min} + s(\beta_{\max} - \beta_{\min})` and
    :math:`T(s) = \int_0^s \beta = s\beta_{\min} + \tfrac{s^2}{2}(\beta_{\max} - \beta_{\min})`:
    :math:`\alpha_t = e^{-T(1 - t)/2}`, :math:`\sigma_t = \sqrt{1 - \alpha_t^2}`. So
    :math:`\alpha_1 = 1, \sigma_1 = 0`, and :math:`\alpha_0 = e^{-T(1)/2}` is small but not 0
    (about 0.0066 for the defaults). Derivatives: :math:`\dot\alpha_t = \tfrac12\beta(1 - t)\alpha_t`
    and :math:`\dot\sigma_t = -\alpha_t\dot\alpha_t / \sigma_t`, which diverges like
    :math:`(1-t)^{-1/2}` at the data end. It is exact at every t < 1 (in float64 about
    :math:`-1.5\cdot10^{7}` at :math:`t = 1 - 2^{-53}`); at t = 1 itself, where it is :math:`-\infty`,
    :math:`\sigma_1 = 0` is replaced by :data:`SIGMA_FLOOR` (documented convention: about -500 for
    the defaults).
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
        ds = -a * da / _nonzero(sigma)
        return SchedulerOutput(a, sigma, da, ds)

    def __repr__(self) -> str:
        return f"VPScheduler(beta_min={self.beta_min:g}, beta_max={self.beta_max:g})"


class VEScheduler(Scheduler):
    r"""The variance-exploding path of Lipman et al. (2022): :math:`\alpha_t = 1`,
    :math:`\sigma_t = \sigma_{\min}^{t}\,\sigma_{\max}^{1 - t}` (geometric from
    :math:`\sigma_{\max}` at t = 0 to :math:`\sigma_{\min}` at t = 1), so
    :math:`\dot\sigma_t = \log(\sigma_{\min}/\sigma_{\max})\,\sigma_t`. Its source is
    :math:`p_0 = q * \mathcal N(0, \sigma_{\max}^2 I) \approx \mathcal N(0, \sigma_{\max}^2 I)`,
    not N(0, I): sample from ``sigma_max * randn``. Needs ``0 < sigma_min < sigma_max``.
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

    def sde_kernel_std(self, t: TimeLike) -> Tensor:
        r"""The standard deviation of Song et al.'s (2021) VE perturbation kernel, in the book's time.

        Their VE SDE :math:`dx = \sqrt{d[\sigma^2(s)]/ds}\,dW_s`, started at the data at diffusion time
        :math:`s = 0`, has :math:`x(s) \mid x(0) \sim \mathcal N(x(0), [\sigma^2(s) - \sigma^2(0)] I)`; with
        :math:`s = 1 - t` and :math:`\sigma(s) = \sigma_{\min}(\sigma_{\max}/\sigma_{\min})^s` this is
        :math:`\sqrt{\sigma_t^2 - \sigma_{\min}^2}`. The path of this scheduler (and of Lipman et al.) uses
        :math:`\sigma_t` instead: an approximation, with a relative variance error
        :math:`\sigma_{\min}^2/\sigma_t^2` that is largest (100 percent) at the data end t = 1.
        ``t``: a float or ``(B,)`` in [0, 1]; returns ``(B,)``.
        """
        sigma = self(t).sigma_t
        return torch.sqrt((sigma**2 - self.sigma_min**2).clamp_min(0))

    def __repr__(self) -> str:
        return f"VEScheduler(sigma_min={self.sigma_min:g}, sigma_max={self.sigma_max:g})"


class OTScheduler(Scheduler):
    r"""The optimal-transport path of Lipman et al. (2022) with a floor
    :math:`\sigma_{\min} \in (0, 1)`: :math:`\alpha_t = t`, :math:`\sigma_t = 1 - (1 - \sigma_{\min}) t`."""

    def __init__(self, sigma_min: float = 1e-4) -> None:
        self.sigma_min = check_unit_interval(sigma_min, "sigma_min", open_low=True, open_high=True)

    def coefficients(self, t: Tensor) -> SchedulerOutput:
        c = 1 - self.sigma_min
        return SchedulerOutput(t, 1 - c * t, torch.ones_like(t), torch.full_like(t, -c))

    def __repr__(self) -> str:
        return f"OTScheduler(sigma_min={self.sigma_min:g})"


def log_snr(scheduler: Scheduler, t: TimeLike) -> Tensor:
    r"""The log signal-to-noise ratio :math:`\lambda_t = \log(\alpha_t^2 / \sigma_t^2)`.

    ``t``: a float or a tensor ``(B,)`` in [0, 1]; returns ``(B,)``. It is :math:`-\infty` where
    :math:`\alpha_t = 0` and :math:`+\infty` where :math:`\sigma_t = 0`; documented clamp: both
    are floored at the smallest positive normal number of the dtype, so the result is finite
    everywhere and exact wherever :math:`\alpha_t, \sigma_t` are representable
    (:math:`\pm 175` at the ends in float32, :math:`\pm 1416` in float64).
    """
    a, s, _, _ = check_scheduler(scheduler)(t)
    tiny = torch.finfo(a.dtype).tiny
    return 2 * (torch.log(a.clamp_min(tiny)) - torch.log(s.clamp_min(tiny)))


def snr(scheduler: Scheduler, t: TimeLike) -> Tensor:
    r"""The signal-to-noise ratio :math:`\alpha_t^2 / \sigma_t^2`, ``(B,)``; :math:`\sigma_t` is floored
    at :func:`edge_floor` (documented clamp: exact wherever :math:`\sigma_t > 0`), so it is finite at
    the data end."""
    a, s, _, _ = check_scheduler(scheduler)(t)
    return a**2 / _floor_magnitude(s) ** 2


class PathSample(NamedTuple):
    """A draw from an affine path.

    ``x_t``: points on the path, shape ``(B, ...)``; ``dx_t``: the conditional velocity
    :math:`\\dot\\alpha_t x_1 + \\dot\\sigma_t x_0` at those points, same shape; ``t``: ``(B,)``.
    """

    x_t: Tensor
    dx_t: Tensor
    t: Tensor


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


def target_second_moment(scheduler: Scheduler, t: TimeLike, data_second_moment: float, dim: int) -> Tensor:
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


def _coefficients(scheduler: Scheduler, t: TimeLike, like: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The scheduler's coefficients at ``t`` (checked), each shaped to broadcast against ``like``."""
    check_scheduler(scheduler)
    tt = as_time(t, like.shape[0], like)
    return tuple(_expand(c, like) for c in scheduler.coefficients(tt))  # type: ignore[return-value]


def conditional_velocity(x: Tensor, x1: Tensor, t: TimeLike, scheduler: Scheduler) -> Tensor:
    r"""The conditional velocity of a Gaussian path, Theorem 3 of Lipman et al. (2022).

    For :math:`p_t(x \mid x_1) = \mathcal N(x; \mu_t, \sigma_t^2 I)` with :math:`\mu_t = \alpha_t x_1`,
    the canonical flow :math:`\psi_t(x_0) = \sigma_t x_0 + \mu_t` has the velocity

    .. math:: u_t(x \mid x_1) = \frac{\dot\sigma_t}{\sigma_t}(x - \mu_t) + \dot\mu_t
              = \frac{\dot\sigma_t}{\sigma_t}(x - \alpha_t x_1) + \dot\alpha_t x_1 .

    Shapes: ``x`` and ``x1`` ``(B, ...)``, ``t`` a float or ``(B,)``; returns ``(B, ...)``.
    Where :math:`\sigma_t = 0` (the data end of a path with :math:`\sigma_1 = 0`) the field is
    0/0 on the path; documented clamp: an exact :math:`\sigma_t = 0` is replaced by
    :data:`SIGMA_FLOOR`, and every :math:`\sigma_t > 0` is used exactly (on the path the result at
    :math:`\sigma_t = 0` is :math:`\dot\alpha_t x_1`). A solver stage evaluated at t = 1 then sees
    a bounded pull towards :math:`x_1`, not one of size :math:`1/\sigma`.
    """
    x = check_batch(x, "x")
    x1 = check_batch(x1, "x1")
    check_same_shape(x, x1, "x", "x1")
    a, s, da, ds = _coefficients(scheduler, t, x)
    return da * x1 + ds / _nonzero(s) * (x - a * x1)


def velocity_from_x1(x1_pred: Tensor, x_t: Tensor, t: TimeLike, scheduler: Scheduler) -> Tensor:
    r"""Velocity from a prediction of the data end point ("target prediction").

    Eliminating :math:`x_0 = (x_t - \alpha_t x_1) / \sigma_t` from
    :math:`\dot\alpha_t x_1 + \dot\sigma_t x_0` gives

    .. math:: u_t(x) = \dot\alpha_t \hat x_1 + \frac{\dot\sigma_t}{\sigma_t}(x - \alpha_t \hat x_1),

    which is :func:`conditional_velocity` with :math:`x_1` replaced by its prediction.
    An exact ``sigma_t = 0`` is replaced by :data:`SIGMA_FLOOR` (exact for every :math:`\sigma_t > 0`),
    so the data end t = 1 stays finite and bounded.
    Shapes: ``x1_pred`` and ``x_t`` ``(B, ...)``, ``t`` a float or ``(B,)``.
    """
    check_scheduler(scheduler)
    x_t = check_batch(x_t, "x_t")
    x1_pred = check_batch(x1_pred, "x1_pred")
    check_same_shape(x1_pred, x_t, "x1_pred", "x_t")
    return conditional_velocity(x_t, x1_pred, t, scheduler)


#: The parameterisations of the same velocity field (for a Gaussian source, epsilon = x0); "v" is
#: the v-prediction :math:`v = \alpha_t x_0 - \sigma_t x_1` of Salimans and Ho (2022).
PARAMETERIZATIONS = ("velocity", "x1", "x0", "epsilon", "score", "v")


def _check_parameterization(value: object, name: str) -> str:
    if not isinstance(value, str) or value not in PARAMETERIZATIONS:
        raise ValueError(f"{name} must be one of {PARAMETERIZATIONS}, got {value!r}")
    return value


def _divide(num: Tensor, den: Tensor, what: str, clamp: bool) -> Tensor:
    """num / den; with ``clamp`` the magnitude of den is floored at :func:`edge_floor`, otherwise an
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
    scheduler: Scheduler, t: TimeLike, parameterization: str, clamp: bool = False
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
    :func:`edge_floor` (every nonzero divisor of the book's schedulers is kept).
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


def coefficient_limits(scheduler: Scheduler, parameterization: str, end: int, gap: float = 1e-6) -> Limits:
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
    for v in velocity_coefficients(scheduler, g if end == 0 else 1 - g, parameterization):
        v1, v2 = abs(v[0].item()), abs(v[1].item())
        slope = math.log10(v2 / v1) if v1 > 0 and v2 > 0 else 0.0
        p = max(0.0, round(2 * slope) / 2)
        c = v[1].item() * (gap / 10) ** p
        c = 0.0 if p == 0 and abs(c) < 1e-5 else float(f"{c:.4g}")
        laws.append(Law(c, p))
    return Limits(laws[0], laws[1])


def endpoints_from(
    prediction: Tensor, parameterization: str, x_t: Tensor, t: TimeLike, scheduler: Scheduler, clamp: bool = False
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
    divisors are floored at :func:`edge_floor` in magnitude.
    """
    _check_parameterization(parameterization, "parameterization")
    _check_clamp(clamp)
    x_t = check_batch(x_t, "x_t")
    prediction = check_batch(prediction, "prediction")
    check_same_shape(prediction, x_t, "prediction", "x_t")
    a, s, da, ds = _coefficients(scheduler, t, x_t)
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
        _coefficients(scheduler, t, x_t)
        return prediction
    x0, x1 = endpoints_from(prediction, source, x_t, t, scheduler, clamp)
    if target in ("x0", "epsilon"):
        return x0
    if target == "x1":
        return x1
    a, s, da, ds = _coefficients(scheduler, t, x_t)
    if target == "velocity":
        return da * x1 + ds * x0
    if target == "v":
        return a * x0 - s * x1
    return _divide(-x0, s, "the score (sigma_t = 0)", clamp)


def _snr_angle(alpha: Tensor, sigma: Tensor) -> Tensor:
    """atan2(alpha, sigma) in [0, pi/2]: an increasing function of the SNR that stays finite at both ends."""
    return torch.atan2(alpha, sigma)


def time_at_snr(scheduler: Scheduler, angle: Tensor, iterations: int = 60) -> Tensor:
    r"""Invert the SNR: the times t at which :math:`\operatorname{atan2}(\alpha_t, \sigma_t)` = ``angle``.

    The angle :math:`\theta_t = \arctan(\alpha_t / \sigma_t)` is an increasing function of the
    signal-to-noise ratio, finite at both ends (0 where :math:`\alpha_t = 0`, :math:`\pi/2` where
    :math:`\sigma_t = 0`). It is increasing in t for every scheduler here, so bisection finds t.
    ``angle``: ``(B,)``, each within the scheduler's range :math:`[\theta_0, \theta_1]` (else
    ValueError); returns ``(B,)`` times of the dtype of ``angle``, accurate to
    :math:`2^{-\text{iterations}}`.
    """
    check_scheduler(scheduler)
    check_positive_int(iterations, "iterations")
    if not isinstance(angle, Tensor) or angle.ndim != 1 or not angle.is_floating_point():
        raise ValueError("angle must be a 1-D floating-point tensor of shape (B,)")
    ends = scheduler(torch.tensor([0.0, 1.0], dtype=angle.dtype, device=angle.device))
    lo_angle, hi_angle = _snr_angle(ends.alpha_t, ends.sigma_t)
    tol = 1e-6 if angle.dtype == torch.float64 else 1e-4
    if bool((angle < lo_angle - tol).any()) or bool((angle > hi_angle + tol).any()):
        raise ValueError(
            f"angle must lie in the scheduler's SNR range [{lo_angle.item():.4g}, {hi_angle.item():.4g}] "
            f"(atan2(alpha_t, sigma_t) at t = 0 and 1), got [{angle.min().item():.4g}, {angle.max().item():.4g}]"
        )
    lo = torch.zeros_like(angle)
    hi = torch.ones_like(angle)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        c = scheduler.coefficients(mid)
        below = _snr_angle(c.alpha_t, c.sigma_t) < angle
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    t = 0.5 * (lo + hi)
    # The ends exactly, so that t = 0 and t = 1 are found where the angle is that of an end.
    return torch.where(angle <= lo_angle, torch.zeros_like(t), torch.where(angle >= hi_angle, torch.ones_like(t), t))


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
        t = time_at_snr(self.old, _snr_angle(na, ns))
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
    ``x`` ``(B, d)``, times ``(B,)`` and ``data`` ``(N, d)`` on ``x``'s device and dtype."""
    scheduler = CondOTScheduler() if scheduler is None else check_scheduler(scheduler)
    x = check_points(x, "x")
    data = check_points(data, "data", dim=x.shape[1])
    return scheduler, x, as_time(t, x.shape[0], x), data.to(x)


def _posterior_log_weights(x: Tensor, t: Tensor, data: Tensor, scheduler: Scheduler):
    r"""The posterior log-weights, shifted so that each row's largest is 0, and the shift.

    Returns ``(shifted, offset, s)``: ``shifted`` ``(B, N)`` holds
    :math:`\log w_i - \max_j \log w_j` with :math:`\log w_i = -\lVert x - \alpha_t z_i\rVert^2 / (2\sigma_t^2)`
    (the Gaussian log-likelihood up to its normaliser), ``offset`` ``(B,)`` (float64) is
    :math:`-\max_j \log w_j` and ``s`` is :math:`\sigma_t` ``(B,)`` (an exact 0 replaced by
    :data:`SIGMA_FLOOR`).

    With :math:`d_i = x - \alpha_t z_i`, :math:`c` the point ``x`` clamped to the bounding box of
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
    scheduler, x, t, data = _marginal_inputs(x, t, data, scheduler)
    return torch.cat([
        torch.softmax(_posterior_log_weights(xs, ts, data, scheduler)[0], dim=1) @ data
        for xs, ts in _row_blocks(x, t, data)
    ])


def posterior_weights(x: Tensor, t: TimeLike, data: Tensor, scheduler: Scheduler | None = None) -> Tensor:
    r"""The posterior weights :math:`P(X_1 = z_i \mid X_t = x)` for a finite data set and a Gaussian source.

    With :math:`X_1` uniform on the rows :math:`z_1, \dots, z_N` of ``data`` and
    :math:`X_t \mid X_1 = z \sim \mathcal N(\alpha_t z, \sigma_t^2 I)`, Bayes' rule gives

    .. math:: w_i(x) = \frac{\mathcal N(x;\, \alpha_t z_i,\, \sigma_t^2 I)}
              {\sum_j \mathcal N(x;\, \alpha_t z_j,\, \sigma_t^2 I)},

    a softmax computed in log space; :func:`posterior_mean` is :math:`\sum_i w_i z_i`. Shapes: ``x``
    ``(B, d)``, ``t`` a float or ``(B,)``, ``data`` ``(N, d)``; returns ``(B, N)``, rows summing to 1.
    An exact ``sigma_t = 0`` is replaced by :data:`SIGMA_FLOOR`; every ``sigma_t > 0`` is used exactly.
    """
    scheduler, x, t, data = _marginal_inputs(x, t, data, scheduler)
    return torch.cat([
        torch.softmax(_posterior_log_weights(xs, ts, data, scheduler)[0], dim=1) for xs, ts in _row_blocks(x, t, data)
    ])

def marginal_velocity(x: Tensor, t: TimeLike, data: Tensor, scheduler: Scheduler | None = None) -> Tensor:
    r"""The exact marginal velocity :math:`u_t(x) = E[\dot\alpha_t X_1 + \dot\sigma_t X_0 \mid X_t = x]`.

    The posterior-weighted average of the conditional velocities, for a Gaussian source and
    the finite data set ``data`` (uniform weights). Shapes: ``x`` ``(B, d)``, ``t`` a float or
    ``(B,)``, ``data`` ``(N, d)``; returns ``(B, d)``. At the data end, where
    :math:`\sigma_1 = 0`, an exact ``sigma_t = 0`` is replaced by :data:`SIGMA_FLOOR` (the formula
    is 0/0 there); every ``sigma_t > 0`` is used exactly.
    """
    scheduler = CondOTScheduler() if scheduler is None else check_scheduler(scheduler)
    x = check_points(x, "x")
    t = as_time(t, x.shape[0], x)
    x1_hat = posterior_mean(x, t, data, scheduler)
    return velocity_from_x1(x1_hat, x, t, scheduler)


def marginal_velocity_jacobian(x: Tensor, t: TimeLike, data: Tensor, scheduler: Scheduler | None = None) -> Tensor:
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
    :math:`(1 - t)^{-3}` where it is split between several. Shapes: ``x`` ``(B, d)``, ``t`` a float
    or ``(B,)``, ``data`` ``(N, d)``; returns ``(B, d, d)``. An exact ``sigma_t = 0`` is replaced by
    :data:`SIGMA_FLOOR`.
    """
    scheduler, x, t, data = _marginal_inputs(x, t, data, scheduler)
    covariances = []
    for xs, ts in _row_blocks(x, t, data):
        w = torch.softmax(_posterior_log_weights(xs, ts, data, scheduler)[0], dim=1)
        mean = w @ data
        covariances.append(torch.einsum("bn,ni,nj->bij", w, data, data) - mean[:, :, None] * mean[:, None, :])
    cov = torch.cat(covariances)
    a, s, da, ds = (c[:, None, None] for c in scheduler.coefficients(t))
    s = _nonzero(s)
    eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    return (ds / s) * eye + (da - ds * a / s) * (a / s**2) * cov


def gaussian_marginal_velocity(x: Tensor, t: TimeLike, mean: Tensor | float, std: float) -> Tensor:
    r"""The marginal velocity of the linear path from :math:`\mathcal N(0, I)` to :math:`\mathcal N(m, s^2 I)`.

    For the independent coupling, :math:`X_t = t X_1 + (1 - t) X_0` is Gaussian with mean :math:`t m`
    and variance :math:`\tau_t^2 = (1 - t)^2 + t^2 s^2`, jointly Gaussian with :math:`X_1 - X_0`, so
    the conditional expectation is the linear regression

    .. math:: u_t(x) = \mathbb E[X_1 - X_0 \mid X_t = x] = m + \frac{t s^2 - (1 - t)}{\tau_t^2}\,(x - t m).

    Shapes: ``x`` ``(B, d)``, ``t`` a float or ``(B,)``, ``mean`` a float or ``(d,)``, ``std`` a
    positive float; returns ``(B, d)``. Finite on all of [0, 1] (:math:`\tau_t^2 > 0`; the letter
    :math:`\sigma_t` is the schedule's, here :math:`1 - t`).
    """
    x = check_points(x, "x")
    t = as_time(t, x.shape[0], x)
    if isinstance(std, bool) or not isinstance(std, (int, float)) or not math.isfinite(std) or std <= 0:
        raise ValueError(f"std must be a positive finite number, got {std!r}")
    if isinstance(mean, bool) or not isinstance(mean, (int, float, Tensor)):
        raise TypeError(f"mean must be a float or a tensor ({x.shape[1]},), got {type(mean).__name__}")
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device)
    if mean.ndim > 1 or (mean.ndim == 1 and mean.shape[0] != x.shape[1]):
        raise ValueError(f"mean must be a float or have shape ({x.shape[1]},), got {tuple(mean.shape)}")
    if not bool(torch.isfinite(mean).all()):
        raise ValueError("mean must contain only finite values (found NaN or inf)")
    t = t[:, None]
    variance = (1 - t) ** 2 + t**2 * std**2
    return mean + (t * std**2 - (1 - t)) / variance * (x - t * mean)


def marginal_score(x: Tensor, t: TimeLike, data: Tensor, scheduler: Scheduler | None = None) -> Tensor:
    r"""The exact marginal score :math:`\nabla_x \log p_t(x) = -(x - \alpha_t E[X_1 \mid x]) / \sigma_t^2`.

    Shapes as in :func:`marginal_velocity`; an exact ``sigma_t = 0`` is replaced by :data:`SIGMA_FLOOR`.
    """
    scheduler = CondOTScheduler() if scheduler is None else check_scheduler(scheduler)
    x = check_points(x, "x")
    t = as_time(t, x.shape[0], x)
    x1_hat = posterior_mean(x, t, data, scheduler)
    a, s, _, _ = (c[:, None] for c in scheduler.coefficients(t))
    return -(x - a * x1_hat) / _nonzero(s) ** 2


def marginal_log_density(x: Tensor, t: TimeLike, data: Tensor, scheduler: Scheduler | None = None) -> Tensor:
    r"""The exact log-density :math:`\log p_t(x) = \log \frac1N \sum_i \mathcal N(x; \alpha_t z_i, \sigma_t^2 I)`.

    Shapes: ``x`` ``(B, d)``, ``t`` a float or ``(B,)``, ``data`` ``(N, d)``; returns ``(B,)``.
    An exact ``sigma_t = 0`` is replaced by :data:`SIGMA_FLOOR`.
    """
    scheduler, x, t, data = _marginal_inputs(x, t, data, scheduler)
    d = x.shape[1]
    log_p = []
    for xs, ts in _row_blocks(x, t, data):
        shifted, offset, s = _posterior_log_weights(xs, ts, data, scheduler)
        # In float64 for the (B,) terms: in float32 the distance term may overflow where the
        # whole is still representable, and the result is then rounded once to x's dtype.
        log_norm = -0.5 * d * math.log(2 * math.pi) - d * torch.log(s.to(torch.float64))
        log_mix = torch.logsumexp(shifted, dim=1).to(torch.float64) - offset - math.log(data.shape[0])
        log_p.append((log_mix + log_norm).to(x.dtype))
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
    x: Tensor, t: TimeLike, means: Tensor, stds: Tensor, weights: Tensor | None = None,
    scheduler: Scheduler | None = None,
) -> Tensor:
    r"""The exact :math:`\log p_t(x)` when the data are a mixture of isotropic Gaussians.

    For :math:`X_1 \sim \sum_k \pi_k \mathcal N(\mu_k, s_k^2 I)` and :math:`X_0 \sim \mathcal N(0, I)`,
    :math:`p_t = \sum_k \pi_k \mathcal N(\alpha_t \mu_k, (\alpha_t^2 s_k^2 + \sigma_t^2) I)`, finite on all
    of [0, 1]. Shapes: ``x`` ``(B, d)``, ``t`` a float or ``(B,)``, ``means`` ``(K, d)``, ``stds``
    ``(K,)`` (> 0), ``weights`` ``(K,)`` (normalised here; uniform when None); returns ``(B,)``.
    """
    scheduler = CondOTScheduler() if scheduler is None else check_scheduler(scheduler)
    x = check_points(x, "x")
    logits, *_ = _mixture_terms(x, t, means, stds, weights, scheduler)
    return torch.logsumexp(logits, dim=1)


def gaussian_mixture_velocity(
    x: Tensor, t: TimeLike, means: Tensor, stds: Tensor, weights: Tensor | None = None,
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
    x = check_points(x, "x")
    logits, diff, var, means, stds, (a, s, da, ds) = _mixture_terms(x, t, means, stds, weights, scheduler)
    r = torch.softmax(logits, dim=1)[:, :, None]  # (B, K, 1)
    scaled = diff / var[:, :, None]
    x1 = means[None] + (a * stds[None, :] ** 2)[:, :, None] * scaled
    x0 = s[:, :, None] * scaled
    return (r * (da[:, :, None] * x1 + ds[:, :, None] * x0)).sum(1)


def velocity_from_score(score: Tensor, x: Tensor, t: TimeLike, scheduler: Scheduler, clamp: bool = False) -> Tensor:
    r"""Proposition 1 of the notes (eq. 54): the velocity of a Gaussian path from its score,

    .. math:: u_t(x) = \Big(\sigma_t^2\frac{\dot\alpha_t}{\alpha_t} - \dot\sigma_t\sigma_t\Big)\nabla\log p_t(x)
              + \frac{\dot\alpha_t}{\alpha_t}\, x,

    for the conditional and the marginal fields alike (source N(0, I)). Undefined where
    :math:`\alpha_t = 0` (the noise end t = 0 of CondOT): a ValueError, or with ``clamp=True``
    :math:`\alpha_t` floored at :func:`edge_floor`. Shapes: ``score`` and ``x`` ``(B, ...)``,
    ``t`` a float or ``(B,)``.
    """
    check_scheduler(scheduler)
    _check_clamp(clamp)
    x = check_batch(x, "x")
    score = check_batch(score, "score")
    check_same_shape(score, x, "score", "x")
    t = as_time(t, x.shape[0], x)
    a, s, da, ds = (_expand(c, x) for c in scheduler.coefficients(t))
    return _divide((s * s * da - ds * s * a) * score + da * x, a, "the velocity from a score (alpha_t = 0)", clamp)


def score_from_velocity(velocity: Tensor, x: Tensor, t: TimeLike, scheduler: Scheduler, clamp: bool = False) -> Tensor:
    r"""Proposition 1 of the notes (eq. 55): the score of a Gaussian path from its velocity,

    .. math:: \nabla\log p_t(x) = \frac{\alpha_t u_t(x) - \dot\alpha_t x}
              {\sigma_t^2\dot\alpha_t - \alpha_t\dot\sigma_t\sigma_t}.

    The denominator vanishes where :math:`\sigma_t = 0` (the data end t = 1): a ValueError, or with
    ``clamp=True`` its magnitude is floored at :func:`edge_floor`. Shapes as in :func:`velocity_from_score`.
    """
    check_scheduler(scheduler)
    _check_clamp(clamp)
    x = check_batch(x, "x")
    velocity = check_batch(velocity, "velocity")
    check_same_shape(velocity, x, "velocity", "x")
    t = as_time(t, x.shape[0], x)
    a, s, da, ds = (_expand(c, x) for c in scheduler.coefficients(t))
    return _divide(a * velocity - da * x, s * s * da - a * ds * s, "the score from a velocity (sigma_t = 0)", clamp)

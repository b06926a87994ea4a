r"""Schedulers of affine probability paths: :math:`t \mapsto (\alpha_t, \sigma_t, \dot\alpha_t, \dot\sigma_t)`.

Convention of the whole book: time runs from t = 0 (source / noise) to t = 1 (data), and the
affine conditional path is :math:`x_t = \alpha_t x_1 + \sigma_t x_0` with :math:`\alpha_0 = 0,
\sigma_0 = 1` and :math:`\alpha_1 = 1, \sigma_1 = 0` (or a small :math:`\sigma_{\min}`). This
module holds the schedulers of chapter 5 (CondOT, polynomial, cosine, VP, VE, OT), the
signal-to-noise ratio and its inverse, and the floors used where a formula divides by a
vanishing coefficient. :mod:`fmbook.paths` re-exports every public name.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from ._checks import TimeLike, as_time, check_positive_float, check_positive_int, check_unit_interval

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


def log_snr(t: TimeLike, scheduler: Scheduler) -> Tensor:
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


def snr(t: TimeLike, scheduler: Scheduler) -> Tensor:
    r"""The signal-to-noise ratio :math:`\alpha_t^2 / \sigma_t^2`, ``(B,)``; :math:`\sigma_t` is floored
    at :func:`edge_floor` (documented clamp: exact wherever :math:`\sigma_t > 0`), so it is finite at
    the data end."""
    a, s, _, _ = check_scheduler(scheduler)(t)
    return a**2 / _floor_magnitude(s) ** 2



def _snr_angle(alpha: Tensor, sigma: Tensor) -> Tensor:
    """atan2(alpha, sigma) in [0, pi/2]: an increasing function of the SNR that stays finite at both ends."""
    return torch.atan2(alpha, sigma)


def time_at_snr(angle: Tensor, scheduler: Scheduler, *, iterations: int = 60) -> Tensor:
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



def _expand(c: Tensor, like: Tensor) -> Tensor:
    """Reshape a per-sample coefficient ``(B,)`` to broadcast against ``(B, ...)``."""
    return c.reshape(c.shape[0], *([1] * (like.ndim - 1)))




def _coefficients(t: TimeLike, like: Tensor, scheduler: Scheduler) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The scheduler's coefficients at ``t`` (checked), each shaped to broadcast against ``like``."""
    check_scheduler(scheduler)
    tt = as_time(t, like.shape[0], like)
    return tuple(_expand(c, like) for c in scheduler.coefficients(tt))  # type: ignore[return-value]

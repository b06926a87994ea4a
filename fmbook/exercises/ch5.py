r"""Checkers of the exercises of chapter 5, Affine and Gaussian probability paths.

Each checker runs the reader's function on seeded random cases against an independent
reference (see :mod:`fmbook.exercises._runner` for the time limit, the copies of the inputs and
the "not attempted" verdict) and returns a :class:`~fmbook.exercises._runner.CheckResult`.

=======================================  ======================================================
checker                                  the reader's function
=======================================  ======================================================
:func:`check_vp_conditional_velocity`    ``fn(x, x1, t, beta_min, beta_max) -> u`` the VP field
:func:`check_vp_eps_coefficients`        ``fn(t, beta_min, beta_max) -> (a_t, b_t)``
:func:`check_velocity_from_x0`           ``fn(x0_hat, x, t, scheduler) -> u``
:func:`check_schedule_change`            ``fn(r) -> (t_r, s_r)`` (CondOT to cosine by default)
:func:`check_fewest_midpoint_steps`      ``fn(ratio) -> int`` for the VE path
=======================================  ======================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from .. import paths, solvers
from ._runner import (
    SHAPES,
    TIME_LIMIT,
    Case,
    CheckResult,
    Mismatch,
    as_tensor_like,
    check_scheduler,
    generator,
    run_cases,
    tensor_call,
    times,
)

__all__: list[str] = [
    "check_fewest_midpoint_steps",
    "check_schedule_change",
    "check_velocity_from_x0",
    "check_vp_conditional_velocity",
    "check_vp_eps_coefficients",
]

#: (beta_min, beta_max) of the VP cases: the exercise's (1, 5), the book's default, two others.
_VP_BETAS = ((1.0, 5.0), (0.1, 20.0), (0.5, 2.0), (1.0, 5.0))


def _flow_and_velocity(sch: paths.Scheduler, x0: Tensor, x1: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """``psi_t(x0) = alpha_t x1 + sigma_t x0`` and its time derivative, by autograd of the
    scheduler's values ``alpha_t, sigma_t`` only (not of its derivatives)."""
    t = t.detach().clone().requires_grad_(True)
    out = sch.coefficients(t)
    (da,) = torch.autograd.grad(out.alpha_t.sum(), t, retain_graph=True)
    (ds,) = torch.autograd.grad(out.sigma_t.sum(), t)
    a, s = out.alpha_t.detach()[:, None], out.sigma_t.detach()[:, None]
    return a * x1 + s * x0, da[:, None] * x1 + ds[:, None] * x0


def _vp_field(x: Tensor, x1: Tensor, s: Tensor, beta: Tensor, beta_min: float, beta_max: float) -> Tensor:
    """The VP field of Lipman et al. written with alpha^D at diffusion time ``s`` and rate
    ``beta``: ``a'/(1 - a^2) (a x - x1)`` with ``a = alpha^D(s)``, ``a' = -beta a / 2``."""
    big_t = s * beta_min + 0.5 * s**2 * (beta_max - beta_min)
    a = torch.exp(-0.5 * big_t)[:, None]
    da = -0.5 * beta[:, None] * a
    return da / (1 - a**2) * (a * x - x1)


def check_vp_conditional_velocity(
    fn: Callable, seed: int = 0, verbose: bool = True, time_limit: float | None = TIME_LIMIT
) -> CheckResult:
    r"""Check the conditional velocity of the VP path, ``fn(x, x1, t, beta_min, beta_max)``.

    With :math:`\alpha^{\mathrm D}(s) = e^{-T(s)/2}`, :math:`T(s) = s\beta_{\min} + \frac{s^2}{2}
    (\beta_{\max} - \beta_{\min})` and :math:`s = 1 - t`, Theorem 3 gives
    :math:`u_t(x \mid x_1) = \frac{(\alpha^{\mathrm D})'(1-t)}{1 - \alpha^{\mathrm D}(1-t)^2}
    (\alpha^{\mathrm D}(1-t)\,x - x_1)`. ``x, x1`` ``(B, d)`` float64, ``t`` ``(B,)`` in
    [0.02, 0.98], ``beta_min, beta_max`` floats; returns ``(B, d)``.
    Reference: the time derivative of the flow :math:`\psi_t(x_0) = \alpha_t x_1 + \sigma_t x_0`
    at :math:`x = \psi_t(x_0)`, by autograd of :class:`~fmbook.schedulers.VPScheduler`'s
    :math:`\alpha_t, \sigma_t` (not of its derivatives, not of Theorem 3).
    """
    g = generator(seed)
    cases = []
    for (b, d), (lo, hi) in zip(SHAPES, _VP_BETAS):
        sch = paths.VPScheduler(lo, hi)
        x0 = torch.randn(b, d, generator=g, dtype=torch.float64)
        x1 = torch.randn(b, d, generator=g, dtype=torch.float64)
        t = times(b, g, 0.02, 0.98).double()
        x, ref = _flow_and_velocity(sch, x0, x1, t)
        s = 1 - t
        mistakes = {
            "the sign is flipped: d/dt alpha^D(1 - t) = -(alpha^D)'(1 - t) (chain rule)": -ref,
            "this is the field of the reversed time convention (alpha^D at s = t "
            "instead of s = 1 - t)": _vp_field(x, x1, t, lo + t * (hi - lo), lo, hi),
            "a factor 1/2 is missing: (alpha^D)'(s) = -beta(s) alpha^D(s) / 2": 2 * ref,
            "the factor 1/2 is applied twice: (alpha^D)'(s) = -beta(s) alpha^D(s) / 2": ref / 2,
            "beta is evaluated at t: the rate of the diffusion time is beta(1 - t)": _vp_field(
                x, x1, s, lo + t * (hi - lo), lo, hi
            ),
            "the noise rate T(s) was used where beta(s) = T'(s) belongs": _vp_field(
                x, x1, s, s * lo + 0.5 * s**2 * (hi - lo), lo, hi
            ),
        }
        mistakes = {k: v for k, v in mistakes.items() if not torch.allclose(v, ref, rtol=1e-3)}
        call = tensor_call(x, x1, t, lo, hi, what="fn(x, x1, t, beta_min, beta_max)", expected=ref)
        inputs = {"x": x, "x1": x1, "t": t, "beta_min": lo, "beta_max": hi}
        cases.append(Case(f"{b} point(s) in {d}-D, beta in [{lo:g}, {hi:g}]", inputs, call, ref, mistakes))
    return run_cases("check_vp_conditional_velocity", fn, cases, verbose, time_limit=time_limit)


def _pair(out: object, like: Tensor, what: str) -> Tensor:
    """A reader's pair ``(a, b)`` of ``(B,)`` tensors as one ``(B, 2)`` tensor."""
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise Mismatch(f"{what} must return a pair (a, b) of tensors of shape {tuple(like.shape)}")
    return torch.stack([as_tensor_like(o, like, what) for o in out], dim=1)


def check_vp_eps_coefficients(
    fn: Callable, seed: int = 0, verbose: bool = True, time_limit: float | None = TIME_LIMIT
) -> CheckResult:
    r"""Check the noise-prediction coefficients of the VP path, ``fn(t, beta_min, beta_max)``.

    The velocity is :math:`u = a_t x + b_t\hat\varepsilon` with :math:`a_t = \tfrac12\beta(1-t)`
    and :math:`b_t = -\beta(1-t)/(2\sigma_t)`, :math:`\beta(s) = \beta_{\min} + s(\beta_{\max} -
    \beta_{\min})`. ``t`` ``(B,)`` float64 in [0, 0.99] (t = 0 in the last case); returns the pair
    ``(a_t, b_t)``, each ``(B,)``.
    Reference: the pair that turns noise into the path's velocity, :math:`\dot\alpha_t x_1 +
    \dot\sigma_t\varepsilon = a_t x_t + b_t\varepsilon`, i.e. :math:`a_t = \dot\alpha_t/\alpha_t`,
    :math:`b_t = \dot\sigma_t - \sigma_t a_t`, with :math:`\dot\alpha_t, \dot\sigma_t` by autograd
    of :class:`~fmbook.schedulers.VPScheduler`'s :math:`\alpha_t, \sigma_t`.
    """
    g = generator(seed)
    cases = []
    for k, ((b, _), (lo, hi)) in enumerate(zip(SHAPES, _VP_BETAS)):
        sch = paths.VPScheduler(lo, hi)
        t = times(b + 2, g, 0.0, 0.99).double()
        if k == len(SHAPES) - 1:
            t[0] = 0.0  # the noise end itself, where b_0 is finite (about -beta_max / 2)
        tt = t.detach().clone().requires_grad_(True)
        out = sch.coefficients(tt)
        (da,) = torch.autograd.grad(out.alpha_t.sum(), tt, retain_graph=True)
        (ds,) = torch.autograd.grad(out.sigma_t.sum(), tt)
        alpha, sigma = out.alpha_t.detach(), out.sigma_t.detach()
        a = da / alpha
        ref = torch.stack([a, ds - sigma * a], dim=1)
        beta_rev = lo + t * (hi - lo)
        sigma_rev = sch(1 - t).sigma_t
        mistakes = {
            "the sign of b_t is flipped: b_t = -beta(1 - t) / (2 sigma_t)": ref * torch.tensor([1.0, -1.0]),
            "b_t is missing its 1 / sigma_t: b_t = -beta(1 - t) / (2 sigma_t)": torch.stack(
                [a, -a], dim=1
            ),
            "a factor 1/2 is missing: a_t = beta(1 - t) / 2": 2 * ref,
            "this is the reversed time convention: beta and sigma at t instead of 1 - t": torch.stack(
                [beta_rev / 2, -beta_rev / (2 * sigma_rev)], dim=1
            ),
        }
        call = lambda fn, t=t, lo=lo, hi=hi: _pair(fn(t, lo, hi), t, "fn(t, beta_min, beta_max)")
        inputs = {"t": t, "beta_min": lo, "beta_max": hi}
        first = " (t = 0 first)" if k == len(SHAPES) - 1 else ""
        desc = f"{b + 2} times{first}, beta in [{lo:g}, {hi:g}]"
        cases.append(Case(desc, inputs, call, ref, mistakes))
    return run_cases("check_vp_eps_coefficients", fn, cases, verbose, time_limit=time_limit)


def check_velocity_from_x0(
    fn: Callable, seed: int = 0, verbose: bool = True, time_limit: float | None = TIME_LIMIT
) -> CheckResult:
    r"""Check the velocity from a source prediction, ``fn(x0_hat, x, t, scheduler)``.

    The second form of eq. (eq-param):
    :math:`u = \frac{\dot\alpha_t}{\alpha_t}x + (\dot\sigma_t - \sigma_t\frac{\dot\alpha_t}{\alpha_t})\hat x_0`,
    with the coefficients of ``scheduler(t)`` (a :class:`~fmbook.schedulers.SchedulerOutput`
    ``(alpha_t, sigma_t, d_alpha_t, d_sigma_t)``). Tested on the cosine, CondOT, VP and polynomial
    schedulers at ``t`` in [0.05, 0.95]. ``x0_hat, x`` ``(B, d)``, ``t`` ``(B,)``; returns ``(B, d)``.
    Reference: a pair ``(x0, x1)`` with ``x = alpha_t x1 + sigma_t x0`` and ``x0_hat = x0`` (a
    perfect prediction), whose velocity :math:`\dot\alpha_t x_1 + \dot\sigma_t x_0` is
    :meth:`fmbook.paths.AffinePath.sample`'s ``dx_t``.
    """
    g = generator(seed)
    schedulers = (
        paths.CosineScheduler(), paths.CondOTScheduler(), paths.VPScheduler(1.0, 5.0), paths.PolynomialScheduler(2)
    )
    cases = []
    for (b, d), sch in zip(SHAPES, schedulers):
        x0, x1 = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)
        t = times(b, g, 0.05, 0.95)
        ref_sample = paths.AffinePath(sch).sample(x0, x1, t)
        x, ref = ref_sample.x_t, ref_sample.dx_t
        a, s, da, ds = (c[:, None] for c in sch(t))
        target_form = ds / s * x + (da - a * ds / s) * x0
        reversed_time = -paths.convert(x0, "x0", "velocity", x, 1 - t, sch)
        target_hint = (
            "this is the formula for a target prediction x1_hat (the first form of eq-param) applied to x0_hat"
        )
        reversed_hint = "this is the velocity of the reversed time convention (t = 0 data, t = 1 noise)"
        mistakes = {
            "the sign is flipped": -ref,
            "the term -sigma_t alpha_t' / alpha_t of the x0 coefficient is missing": da / a * x + ds * x0,
        }
        if torch.allclose(target_form, reversed_time, rtol=1e-4, atol=1e-5):  # the cosine path is symmetric
            mistakes[f"{target_hint}; on this path it is also {reversed_hint[8:]}"] = target_form
        else:
            mistakes[target_hint] = target_form
            mistakes[reversed_hint] = reversed_time
        call = tensor_call(x0, x, t, sch, what="fn(x0_hat, x, t, scheduler)", expected=ref)
        inputs = {"x0_hat": x0, "x": x, "t": t, "scheduler": sch}
        cases.append(Case(f"{b} point(s) in {d}-D, {sch!r}", inputs, call, ref, mistakes))
    return run_cases("check_velocity_from_x0", fn, cases, verbose, time_limit=time_limit)


#: How far outside [0, 1] a reader's t_r may lie (rounding of float32, about 1.2e-7 at r = 1).
_T_SLACK = 1e-6


def check_schedule_change(
    fn: Callable,
    old: paths.Scheduler | None = None,
    new: paths.Scheduler | None = None,
    seed: int = 0,
    verbose: bool = True,
    time_limit: float | None = TIME_LIMIT,
) -> CheckResult:
    r"""Check a change of scheduler ``fn(r) -> (t_r, s_r)`` (default: CondOT to cosine).

    The claim of section 5.6: at every new time ``r`` the new path's point is the old path's
    point at time :math:`t_r`, scaled by :math:`s_r`, sample by sample,
    :math:`\bar\alpha_r x_1 + \bar\sigma_r x_0 = s_r(\alpha_{t_r} x_1 + \sigma_{t_r} x_0)`.
    For CondOT to cosine, :math:`t_r = \sin(\pi r/2)/(\sin(\pi r/2) + \cos(\pi r/2))` and
    :math:`s_r = \sin(\pi r/2) + \cos(\pi r/2)`. ``r`` ``(B,)`` float64 in [0, 1] (both ends
    included); ``fn`` returns the pair ``(t_r, s_r)``, each ``(B,)``, ``t_r`` in [0, 1].
    Reference: the new path's points :math:`\bar\alpha_r x_1 + \bar\sigma_r x_0` for random pairs
    (compared with :math:`s_r x_{t_r}` computed from the reader's answer).
    """
    old = check_scheduler(old)
    new = paths.CosineScheduler() if new is None else check_scheduler(new)
    change = paths.ScheduleChange(lambda x, t: x, old, new)
    g = generator(seed)
    cases = []
    for b, d in SHAPES:
        r = times(b + 1, g).double()
        r[0] = float(b % 2)  # one end of the time interval in every case
        x0 = torch.randn(b + 1, d, generator=g, dtype=torch.float64)
        x1 = torch.randn(b + 1, d, generator=g, dtype=torch.float64)
        c = new(r)
        ref = c.alpha_t[:, None] * x1 + c.sigma_t[:, None] * x0

        def scaled_old_point(t_r: Tensor, s_r: Tensor, x0: Tensor = x0, x1: Tensor = x1) -> Tensor:
            o = old(t_r)
            return s_r[:, None] * (o.alpha_t[:, None] * x1 + o.sigma_t[:, None] * x0)

        def call(fn: Callable, r: Tensor = r, point: Callable = scaled_old_point) -> Tensor:
            t_r, s_r = _pair(fn(r), r, "fn(r)").unbind(1)
            # a time of the old path, up to float32 rounding (cos(pi / 2) < 0 in float32)
            if bool((t_r < -_T_SLACK).any()) or bool((t_r > 1 + _T_SLACK).any()):
                raise Mismatch(f"t_r must lie in [0, 1] (a time of the old path), got {t_r.tolist()}")
            return point(t_r.clamp(0, 1), s_r)

        t_ok, s_ok, _, _ = change.time_and_scale(r)
        t_rev, s_rev, _, _ = change.time_and_scale(1 - r)
        mistakes = {
            "t_r = r and s_r = 1: this is the old path at time r, not the new one": scaled_old_point(
                r, torch.ones_like(r)
            ),
            "the scale s_r is missing (s_r = 1): the two paths have equal SNR at t_r, not equal points":
                scaled_old_point(t_ok, torch.ones_like(r)),
            "s_r is inverted: s_r = sigma_new(r) / sigma_old(t_r)": scaled_old_point(t_ok, 1 / s_ok),
            "this is the reversed time convention (sin and cos swapped)": scaled_old_point(t_rev, s_rev),
        }
        mistakes = {k: v for k, v in mistakes.items() if not torch.allclose(v, ref, rtol=1e-3, atol=1e-6)}
        inputs = {"r": r, "x0": x0, "x1": x1}
        desc = f"{b + 1} times r, the points of {b + 1} pairs in {d}-D: s_r x_(t_r) vs the new path"
        cases.append(Case(desc, inputs, call, ref, mistakes))
    return run_cases("check_schedule_change", fn, cases, verbose, time_limit=time_limit)


def _fewest_steps_by_simulation(ratio: float, most: int = 40) -> int:
    """The fewest uniform midpoint steps whose solve of the conditional VE ODE does not move a
    point away from its ``x1``, found by solving it with :func:`fmbook.solvers.solve_ode`."""
    sch = paths.VEScheduler(sigma_min=0.01, sigma_max=0.01 * ratio)
    x1 = torch.tensor([[1.0, -0.5]], dtype=torch.float64)
    start = torch.tensor([[10.0, 10.0]], dtype=torch.float64)

    def field(x: Tensor, t: Tensor) -> Tensor:
        return paths.conditional_velocity(x, x1.expand_as(x), t, sch)

    d0 = float((start - x1).norm())
    for k in range(1, most + 1):
        end = solvers.solve_ode(field, start, steps=k, method="midpoint").x
        if float((end - x1).norm()) <= d0:
            return k
    raise RuntimeError(f"no step count up to {most} is stable for ratio {ratio}")


def _one_number(out: object) -> object:
    """``out.item()`` for a one-element tensor or NumPy array or a NumPy scalar (``np.int64``
    is not an ``int``); anything else unchanged."""
    if isinstance(out, Tensor) and out.numel() == 1:
        return out.item()
    if isinstance(out, (np.ndarray, np.generic)) and np.size(out) == 1:
        return out.item()
    return out


def _as_count(out: object) -> Tensor:
    """A reader's count (an int, an integral float, a one-element tensor or array, a NumPy
    scalar) as a ``(1,)`` float64 tensor, or :class:`Mismatch`."""
    out = _one_number(out)
    if isinstance(out, bool) or not isinstance(out, (int, float)) or not math.isfinite(out) or out != int(out):
        raise Mismatch(f"fn(ratio) must return a whole number of steps (an int), got {out!r}")
    return torch.tensor([float(out)], dtype=torch.float64)


def check_fewest_midpoint_steps(
    fn: Callable, seed: int = 0, verbose: bool = True, time_limit: float | None = TIME_LIMIT
) -> CheckResult:
    r"""Check ``fn(ratio) -> int``: the fewest uniform midpoint steps that do not amplify the
    distance to :math:`x_1` on the conditional VE path with :math:`\sigma_{\max}/\sigma_{\min}` = ``ratio``.

    A midpoint step multiplies :math:`x - x_1` by :math:`1 - \lambda h + (\lambda h)^2/2` with
    :math:`\lambda = \log(\sigma_{\max}/\sigma_{\min})`; the answer is :math:`\lceil\lambda/2\rceil`.
    Tested on the ratios :math:`10^3, 10^4, 10^5` of the exercise and two more (50 and a seeded
    one between :math:`10^5` and :math:`10^7`). Reference: solving the conditional VE ODE with
    :func:`fmbook.solvers.solve_ode` for 1, 2, 3, ... steps (the simulation, not the formula).
    """
    g = generator(seed)
    extra = float(10 ** (5 + 2 * torch.rand(1, generator=g).item()))
    cases = []
    for ratio in (1e3, 1e4, 1e5, 50.0, extra):
        lam = math.log(ratio)
        if abs(lam / 2 - round(lam / 2)) < 1e-3:  # a ratio exactly at a stability edge
            ratio, lam = ratio * 1.01, math.log(ratio * 1.01)
        ref = torch.tensor([float(_fewest_steps_by_simulation(ratio))], dtype=torch.float64)
        guesses = {
            "log10 was used: lambda = log(sigma_max / sigma_min) is the natural logarithm": math.ceil(
                math.log10(ratio) / 2
            ),
            "the stability condition is lambda h <= 2, not lambda h <= 1": math.ceil(lam),
            "rounded down: the fewest steps is the ceiling of lambda / 2": math.floor(lam / 2),
            "this is the NFE (two evaluations per midpoint step), not the number of steps": 2 * math.ceil(lam / 2),
        }
        mistakes = {k: torch.tensor([float(v)], dtype=torch.float64) for k, v in guesses.items() if v != ref.item()}
        call = lambda fn, ratio=ratio: _as_count(fn(ratio))
        cases.append(Case(f"sigma_max / sigma_min = {ratio:.4g}", {"ratio": ratio}, call, ref, mistakes))
    return run_cases("check_fewest_midpoint_steps", fn, cases, verbose, rtol=0.0, atol=1e-9, time_limit=time_limit)

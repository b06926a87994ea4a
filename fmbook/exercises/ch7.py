r"""Checkers of the exercises of chapter 7, Denoising diffusion (DDPM).

Each checker runs the reader's function on seeded random cases against an independent
reference (see :mod:`fmbook.exercises._runner` for the time limit, the copies of the inputs and
the "not attempted" verdict) and returns a :class:`~fmbook.exercises._runner.CheckResult`.

====================================  ==========================================================
checker                               the reader's function
====================================  ==========================================================
:func:`check_vp_alpha`                ``fn(t, beta_min, beta_max) -> alpha_t`` of the continuous VP
                                      path, the limit of a linear DDPM schedule (``ex-ddpm-limit``)
:func:`check_ddim_step`               ``fn(eps, x, k, j, schedule, eta, noise) -> x_j``, one DDIM step
                                      with noise (``ex-ddim-eta``)
:func:`check_velocity_noise_gain`     ``fn(scheduler, t) -> b_t``, the factor of the noise prediction
                                      in the probability-flow velocity (``ex-noise-end``)
====================================  ==========================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .. import ddpm, paths
from ._runner import TIME_LIMIT, Case, CheckResult, generator, run_cases, tensor_call

__all__: list[str] = [
    "check_vp_alpha",
    "check_ddim_step",
    "check_velocity_noise_gain",
]


# --------------------------------------------------------------------------- the continuous limit


def _vp_alpha_by_quadrature(t: Tensor, beta_min: float, beta_max: float, reverse: bool = False) -> Tensor:
    r""":math:`\exp(-\frac12\int_0^{1-t}\beta(s)\,ds)` by the trapezoid rule on 2049 nodes per time.

    The rate :math:`\beta(s) = \beta_{\min} + s(\beta_{\max} - \beta_{\min})` is linear, so the
    trapezoid rule integrates it exactly (to rounding): a reference that does not use the closed
    form of the integral. ``reverse=True`` integrates up to ``t`` instead (a typical mistake).
    """
    upper = (t if reverse else 1 - t).to(torch.float64)
    nodes = torch.linspace(0, 1, 2049, dtype=torch.float64)[None, :] * upper[:, None]  # (B, 2049)
    rate = beta_min + nodes * (beta_max - beta_min)
    integral = torch.trapezoid(rate, nodes, dim=1)
    return torch.exp(-0.5 * integral).to(t.dtype)


def check_vp_alpha(
    fn: Callable, seed: int = 0, verbose: bool = True, time_limit: float | None = TIME_LIMIT
) -> CheckResult:
    r"""Check :math:`\alpha_t` of the continuous variance-preserving path, ``fn(t, beta_min, beta_max)``.

    In the many-step limit a linear DDPM schedule becomes the rate
    :math:`\beta(s) = \beta_{\min} + s(\beta_{\max} - \beta_{\min})` in DDPM's direction
    :math:`s = 1 - t` (0 at the data), and :math:`\alpha_t = \exp\big(-\frac12\int_0^{1-t}\beta(s)\,ds\big)`
    (Song et al. 2021; DDPM's :math:`\sqrt{\bar\alpha_k}` at :math:`t = 1 - k/T`). ``t``: float64
    tensor ``(B,)`` of book times in [0, 1] (1 = data); ``beta_min, beta_max``: floats. Returns
    ``(B,)``. Reference: the integral of the rate by the trapezoid rule (exact for a linear rate),
    which :class:`~fmbook.schedulers.VPScheduler` and :func:`fmbook.conventions.song_vp_kernel` also give.
    """
    g = generator(seed)
    cases = []
    for b, (beta_min, beta_max) in zip((1, 6, 12, 5), ((0.1, 20.0), (0.1, 20.0), (0.5, 8.0), (1.0, 3.0))):
        t = torch.rand(b, generator=g, dtype=torch.float64)
        if b > 2:
            t[0], t[1] = 0.0, 1.0  # both ends: the noise end alpha_0 and the data end alpha_1 = 1
        ref = _vp_alpha_by_quadrature(t, beta_min, beta_max)
        s = 1 - t
        mistakes = {
            "the time convention is reversed: in the book t = 1 is the data, so integrate the rate "
            "from s = 0 to s = 1 - t (not to t)": _vp_alpha_by_quadrature(t, beta_min, beta_max, reverse=True),
            "this is alpha_t squared (DDPM's alpha-bar): the book's alpha_t is its square root": ref**2,
            "the integral of the rate is s beta_min + s^2 / 2 (beta_max - beta_min), not s beta(s): a "
            "factor 1/2 of the quadratic term is missing": torch.exp(
                -0.5 * (s * beta_min + s**2 * (beta_max - beta_min))
            ),
            "beta_min and beta_max are swapped: the rate grows from beta_min at the data (s = 0) to beta_max "
            "at the noise": torch.exp(-0.5 * (s * beta_max + 0.5 * s**2 * (beta_min - beta_max))),
            "this is sigma_t = sqrt(1 - alpha_t^2), not alpha_t": torch.sqrt(1 - ref**2),
        }
        call = tensor_call(t, beta_min, beta_max, what="fn(t, beta_min, beta_max)", expected=ref)
        desc = f"{b} time(s), beta from {beta_min:g} to {beta_max:g}"
        inputs = {"t": t, "beta_min": beta_min, "beta_max": beta_max}
        cases.append(Case(desc, inputs, call, ref, mistakes))
    return run_cases("check_vp_alpha", fn, cases, verbose, time_limit=time_limit)


# --------------------------------------------------------------------------- DDIM with noise


def _ddim_reference(eps: Tensor, x: Tensor, ab_k: float, ab_j: float, eta: float, seed: int) -> Tensor:
    """The first step of :func:`fmbook.ddpm.ddim_sample` on a two-step schedule with alpha-bars
    ``(ab_j, ab_k)`` at steps 1 and 2, a noise predictor that returns ``eps`` and the noise of a
    generator seeded with ``seed``."""
    two = ddpm.DDPMSchedule(torch.tensor([1 - ab_j, 1 - ab_k / ab_j], dtype=torch.float64))
    run = ddpm.ddim_sample(
        lambda y, t: eps.to(y), x, two, steps=2, eta=eta,
        generator=torch.Generator().manual_seed(seed), return_trajectory=True,
    )
    assert run.trajectory is not None
    return run.trajectory[:, 1]


def _ddim_formula(eps: Tensor, x: Tensor, ab_k: float, ab_j: float, eta: float, noise: Tensor,
                  eps_coefficient: str = "right", noise_std: str = "right") -> Tensor:
    """A DDIM step written out, with the variants that typical mistakes give (for the hints only)."""
    x0_hat = (x - math.sqrt(1 - ab_k) * eps) / math.sqrt(ab_k)
    var = max((1 - ab_j) / (1 - ab_k) * (1 - ab_k / ab_j), 0.0)
    s = eta * math.sqrt(var) if noise_std == "right" else eta * var
    c = math.sqrt(max(1 - ab_j - s * s, 0.0)) if eps_coefficient == "right" else math.sqrt(1 - ab_j)
    return math.sqrt(ab_j) * x0_hat + c * eps + s * noise


def check_ddim_step(
    fn: Callable, seed: int = 0, verbose: bool = True, time_limit: float | None = TIME_LIMIT
) -> CheckResult:
    r"""Check one DDIM step with noise, ``fn(eps, x, k, j, schedule, eta, noise) -> x_j``.

    From step ``k`` down to an earlier step ``j < k`` of the DDPM ``schedule``
    (:class:`fmbook.ddpm.DDPMSchedule`; ``schedule.alpha_bar[k]`` is :math:`\bar\alpha_k`,
    ``alpha_bar[0] = 1``), with the noise prediction ``eps`` :math:`= \hat\varepsilon(x_k)` and the
    standard normal draw ``noise`` :math:`= z` (Song, Meng and Ermon 2021, eq. 12):

    .. math:: x_j = \sqrt{\bar\alpha_j}\,\hat x_0 + \sqrt{1 - \bar\alpha_j - s^2}\,\hat\varepsilon + s z,
              \quad \hat x_0 = \frac{x_k - \sqrt{1 - \bar\alpha_k}\,\hat\varepsilon}{\sqrt{\bar\alpha_k}},
              \quad s = \eta\sqrt{\tfrac{1 - \bar\alpha_j}{1 - \bar\alpha_k}
              \big(1 - \tfrac{\bar\alpha_k}{\bar\alpha_j}\big)}.

    Shapes: ``eps, x, noise`` ``(B, d)``; ``k, j`` ints; ``eta`` a float >= 0. Returns ``(B, d)``.
    References: :func:`fmbook.ddpm.ddim_sample` (its first step, with the same noise), and for
    ``eta = 1`` between consecutive steps Ho et al.'s ancestral step with the posterior variance
    :math:`\tilde\beta_k` (:func:`fmbook.ddpm.ancestral_step`), a different formula of the same step.
    """
    g = generator(seed)
    linear, cosine = ddpm.linear_schedule(200, 1e-3, 0.05), ddpm.cosine_schedule(200)
    plan = (  # (name, schedule, k, j, eta, batch, dim)
        ("linear", linear, 120, 100, 0.0, 1, 2),
        ("linear", linear, 150, 90, 0.5, 5, 2),
        ("cosine", cosine, 160, 120, 1.0, 8, 3),
        ("linear", linear, 57, 56, 1.0, 4, 5),  # consecutive steps: the ancestral step of Ho et al.
    )
    cases = []
    for name, schedule, k, j, eta, b, d in plan:
        x = torch.randn(b, d, generator=g, dtype=torch.float64)
        eps = torch.randn(b, d, generator=g, dtype=torch.float64)
        noise_seed = int(torch.randint(0, 2**31 - 1, (), generator=g))
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(noise_seed), dtype=x.dtype)
        ab = schedule.alpha_bar
        ab_k, ab_j = ab[k].item(), ab[j].item()
        if j == k - 1 and eta == 1.0:
            ref = ddpm.ancestral_step(eps, x, k, schedule, variance="posterior", noise=noise)
            desc = f"{b} x {d}, {name} T = 200, step {k} -> {j}, eta = 1 (Ho's ancestral step)"
        else:
            ref = _ddim_reference(eps, x, ab_k, ab_j, eta, noise_seed)
            desc = f"{b} x {d}, {name} T = 200, step {k} -> {j}, eta = {eta:g}"
        mistakes = {
            "off by one: schedule.alpha_bar[k] is alpha-bar_k (alpha_bar[0] = 1); the step read it at k - 1 "
            "and j - 1": _ddim_formula(eps, x, ab[k - 1].item(), ab[j - 1].item(), eta, noise),
            "the coefficient of eps-hat is sqrt(1 - alpha-bar_j - s^2): with eta > 0 part of the noise "
            "level is taken by the fresh noise s z": _ddim_formula(eps, x, ab_k, ab_j, eta, noise, "no s"),
            "s is eta times the square root of (1 - ab_j) / (1 - ab_k) (1 - ab_k / ab_j), not eta times "
            "that ratio": _ddim_formula(eps, x, ab_k, ab_j, eta, noise, noise_std="no root"),
            "this is the deterministic step (eta = 0): the fresh noise s z is missing": _ddim_formula(
                eps, x, ab_k, ab_j, 0.0, noise
            ),
            "the step went from j to k (towards the noise): x_j re-noises x0-hat to the lower level "
            "alpha-bar_j": _ddim_formula(eps, x, ab_j, ab_k, 0.0, noise),
        }
        mistakes = {h: v for h, v in mistakes.items() if bool(torch.isfinite(v).all()) and not torch.allclose(v, ref)}
        call = tensor_call(eps, x, k, j, schedule, eta, noise, what="fn(eps, x, k, j, schedule, eta, noise)",
                           expected=ref)
        inputs = {"eps": eps, "x": x, "k": k, "j": j, "schedule": schedule, "eta": eta, "noise": noise}
        cases.append(Case(desc, inputs, call, ref, mistakes))
    return run_cases("check_ddim_step", fn, cases, verbose, rtol=1e-6, atol=1e-8, time_limit=time_limit)


# --------------------------------------------------------------------------- the noise end


def _measured_gain(scheduler: paths.Scheduler, t: Tensor, g: torch.Generator) -> Tensor:
    """How much the velocity of :func:`~fmbook.parameterizations.convert` moves per unit change of the noise
    prediction, measured by perturbing it (the velocity is affine in it): ``(B,)``."""
    x = torch.randn(t.shape[0], 2, generator=g, dtype=torch.float64)
    eps = torch.randn(t.shape[0], 2, generator=g, dtype=torch.float64)
    delta = torch.randn(t.shape[0], 2, generator=g, dtype=torch.float64)
    moved = paths.convert(eps + delta, "epsilon", "velocity", x, t, scheduler)
    base = paths.convert(eps, "epsilon", "velocity", x, t, scheduler)
    return ((moved - base) * delta).sum(1) / (delta * delta).sum(1)


def check_velocity_noise_gain(
    fn: Callable, seed: int = 0, verbose: bool = True, time_limit: float | None = TIME_LIMIT
) -> CheckResult:
    r"""Check the factor of the noise prediction in the probability-flow velocity, ``fn(scheduler, t)``.

    With :math:`\hat x_1 = (x - \sigma_t\hat\varepsilon)/\alpha_t`, the velocity
    :math:`u_t = \dot\alpha_t\hat x_1 + \dot\sigma_t\hat\varepsilon` is :math:`a_t x + b_t\hat\varepsilon`
    with :math:`b_t = \dot\sigma_t - \sigma_t\dot\alpha_t/\alpha_t`: an error :math:`\delta` of
    :math:`\hat\varepsilon` moves the velocity by :math:`b_t\delta`. ``scheduler`` is an
    :class:`~fmbook.schedulers.Scheduler` (``scheduler(t)`` gives ``alpha_t, sigma_t, d_alpha_t, d_sigma_t``),
    ``t`` a float64 tensor ``(B,)``; returns :math:`b_t`, shape ``(B,)``. Tested on DDPM schedules
    (:class:`fmbook.ddpm.DiscreteVPScheduler`, at the noise end t = 0 too), the VP and the CondOT path.
    Reference: the measured response of :func:`~fmbook.parameterizations.convert` to a perturbed noise prediction.
    """
    g = generator(seed)
    linear = ddpm.DiscreteVPScheduler(ddpm.linear_schedule(1000))
    plan = (
        ("DDPM linear", linear, 1, 0.0, 0.0),
        ("DDPM linear", linear, 6, 0.0, 0.95),
        ("DDPM cosine", ddpm.DiscreteVPScheduler(ddpm.cosine_schedule(1000)), 5, 0.0, 0.9),
        ("VP(0.1, 20)", paths.VPScheduler(0.1, 20.0), 4, 0.0, 0.9),
        ("CondOT", paths.CondOTScheduler(), 5, 0.05, 0.95),
    )
    cases = []
    for name, scheduler, b, low, high in plan:
        t = low + (high - low) * torch.rand(b, generator=g, dtype=torch.float64)
        if b > 2 and low == 0.0:
            t[0] = 0.0  # the noise end itself
        ref = _measured_gain(scheduler, t, g)
        a, s, da, ds = scheduler(t)
        flipped = scheduler(1 - t)
        mistakes = {
            "this is sigma_t / alpha_t, the factor of the error of x1-hat; the velocity multiplies x1-hat "
            "by d_alpha_t and adds d_sigma_t eps-hat": s / a,
            "the sign is flipped": -ref,
            "only d_sigma_t: eps-hat also enters through x1-hat = (x - sigma_t eps-hat) / alpha_t": ds,
            "only the x1-hat term -sigma_t d_alpha_t / alpha_t: the direct term d_sigma_t eps-hat is "
            "missing": -s * da / a,
            "the time convention is reversed (t = 0 data, t = 1 noise)": flipped.d_sigma_t
            - flipped.sigma_t * flipped.d_alpha_t / flipped.alpha_t,
        }
        mistakes = {h: v for h, v in mistakes.items() if bool(torch.isfinite(v).all())}
        call = tensor_call(scheduler, t, what="fn(scheduler, t)", expected=ref)
        where = "t = 0" if high == 0 else f"t in [{low:g}, {high:g}]"
        desc = f"{b} time(s), {where}, {name}" + (" (T = 1000)" if name.startswith("DDPM") else "")
        cases.append(Case(desc, {"scheduler": scheduler, "t": t}, call, ref, mistakes))
    return run_cases("check_velocity_noise_gain", fn, cases, verbose, rtol=1e-6, atol=1e-9, time_limit=time_limit)

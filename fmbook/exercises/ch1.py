r"""Checkers of the exercises of chapter 1, Generative modeling paradigms.

Each checker runs the reader's function on seeded random cases against an independent
reference (see :mod:`fmbook.exercises._runner` for the time limit, the copies of the inputs and
the "not attempted" verdict) and returns a :class:`~fmbook.exercises._runner.CheckResult`.

====================================  ==========================================================
checker                               the reader's function
====================================  ==========================================================
:func:`check_diffusion_drift`         ``fn(x, t, data, epsilon) -> b`` the drift of the diffusion
                                      with the marginals of the flow (judged by the residual of
                                      the Fokker-Planck equation)
:func:`check_jump_probability`        ``fn(kappa, t, t_next) -> p`` the probability of a jump in
                                      ``[t, t_next]`` for the mixture path of weight ``kappa``
                                      (judged by the fraction not yet jumped on a grid)
====================================  ==========================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .. import paths
from ._runner import (
    TIME_LIMIT,
    Case,
    CheckResult,
    Mismatch,
    as_tensor_like,
    generator,
    run_cases,
    times,
)

__all__: list[str] = ["check_diffusion_drift", "check_jump_probability"]

# --------------------------------------------------------------------------- Fokker-Planck

#: Step of the central differences of the flux p_t b_t (float64).
_FD_STEP = 1e-4


def _density_terms(x: Tensor, t: Tensor, data: Tensor) -> tuple[Tensor, Tensor]:
    r"""``(d/dt p_t(x), Laplacian of p_t(x))`` of the finite-data path, by autograd, ``(B,)`` each."""
    x = x.detach().clone().requires_grad_(True)
    t = t.detach().clone().requires_grad_(True)
    p = paths.marginal_log_density(x, t, data).exp()
    dp_dt, dp_dx = torch.autograd.grad(p.sum(), (t, x), create_graph=True)
    laplacian = torch.zeros_like(p)
    for i in range(x.shape[1]):
        (row,) = torch.autograd.grad(dp_dx[:, i].sum(), x, retain_graph=True)
        laplacian = laplacian + row[:, i]
    return dp_dt.detach(), laplacian.detach()


def _flux_divergence(drift: Callable[[Tensor], Tensor], x: Tensor, t: Tensor, data: Tensor) -> Tensor:
    r""":math:`\nabla\cdot(p_t b_t)(x)` by central differences of ``p_t(y) b_t(y)``, ``(B,)``."""
    div = torch.zeros(x.shape[0], dtype=x.dtype)
    for i in range(x.shape[1]):
        shift = torch.zeros_like(x)
        shift[:, i] = _FD_STEP
        sides = []
        for y in (x + shift, x - shift):
            p = paths.marginal_log_density(y, t, data).exp()
            sides.append(p * drift(y)[:, i])
        div = div + (sides[0] - sides[1]) / (2 * _FD_STEP)
    return div


def check_diffusion_drift(
    fn: Callable, seed: int = 0, verbose: bool = True, time_limit: float | None = TIME_LIMIT
) -> CheckResult:
    r"""Check the drift of the diffusion that has the marginals of the flow (``ex-fokker-planck``).

    The reader's ``fn(x, t, data, epsilon)`` returns the drift :math:`b_t(x)` of
    :math:`dX_t = b_t(X_t)\,dt + g_t\,dW_t` with :math:`g_t = \sqrt{2\varepsilon}\,\sigma_t`,
    :math:`\sigma_t = 1 - t`, whose marginals are the path :math:`p_t` of the finite data set
    ``data`` (the law of :math:`t X_1 + (1 - t) X_0`, :math:`X_0 \sim \mathcal N(0, I)`, :math:`X_1`
    uniform on the rows of ``data``): :math:`b_t = u_t + \varepsilon\sigma_t^2\nabla\log p_t`.
    Shapes: ``x`` ``(B, d)``, ``t`` ``(B,)`` in [0.1, 0.9], ``data`` ``(N, d)``, all float64;
    ``epsilon`` a float >= 0; returns ``(B, d)``.

    Reference: the claim itself. The residual of the Fokker-Planck equation
    :math:`\partial_t p_t + \nabla\cdot(p_t b_t) - \tfrac{g_t^2}{2}\Delta p_t` must vanish at every
    ``x``; :math:`\partial_t p_t` and :math:`\Delta p_t` come from autograd on the exact density
    (:func:`~fmbook.marginals.marginal_log_density`), :math:`\nabla\cdot(p_t b_t)` from central
    differences of the reader's drift, at the few points of each case. Any drift with the
    marginals :math:`p_t` passes: in two dimensions it may differ from the one above by a field
    :math:`w` with :math:`\nabla\cdot(p_t w) = 0` (in one, :math:`p_t w` would have to be constant
    in :math:`x`, hence zero if it vanishes at infinity). The typical mistakes are recognised from
    the drift's values.
    """
    g = generator(seed)
    cases = []
    for b, d, n, eps in ((1, 1, 3, 0.7), (6, 1, 4, 1.0), (5, 2, 5, 0.25), (4, 2, 3, 2.0)):
        data = 1.5 * torch.randn(n, d, generator=g, dtype=torch.float64)
        t = times(b, g, 0.1, 0.9).double()
        z = data[torch.randint(0, n, (b,), generator=g)]
        x = t[:, None] * z + (1 - t[:, None]) * torch.randn(b, d, generator=g, dtype=torch.float64)
        sigma2 = ((1 - t) ** 2)[:, None]
        u = paths.marginal_velocity(x, t, data)
        score = paths.marginal_score(x, t, data)
        ref = u + eps * sigma2 * score
        mistakes = {
            "the sign of the score term is flipped: b = u + epsilon sigma_t^2 grad log p_t": u - eps * sigma2 * score,
            "this is the velocity u_t alone: the noise needs the extra drift epsilon sigma_t^2 grad log p_t": u,
            "the factor sigma_t^2 is missing in front of the score": u + eps * score,
            "a factor 2 too many: g_t^2 / 2 = epsilon sigma_t^2, not 2 epsilon sigma_t^2": u + 2 * eps * sigma2 * score,
            "sigma_t = t is the reversed time convention: t = 0 is noise, sigma_t = 1 - t": u
            + eps * (t**2)[:, None] * score,
            "sigma_t is not squared: g_t^2 / 2 = epsilon sigma_t^2 with g_t = sqrt(2 epsilon) sigma_t": u
            + eps * (1 - t)[:, None] * score,
            "this uses g_t itself; the score term is g_t^2 / 2 grad log p_t = epsilon sigma_t^2 grad log p_t":
            u + math.sqrt(2 * eps) * (1 - t)[:, None] * score,
        }
        dp_dt, laplacian = _density_terms(x, t, data)
        scale = float(torch.maximum(dp_dt.abs(), (eps * sigma2[:, 0] * laplacian).abs()).max())
        found: dict[str, Tensor] = {}

        def call(fn: Callable, x=x, t=t, data=data, eps=eps, ref=ref, found=found) -> Tensor:
            what = "fn(x, t, data, epsilon)"
            drift = as_tensor_like(fn(x, t, data, eps), ref, what)
            found["flux"] = _flux_divergence(
                lambda y: as_tensor_like(fn(y, t.clone(), data.clone(), eps), ref, what), x, t, data
            )
            return drift

        def compare(received: Tensor, dp_dt=dp_dt, laplacian=laplacian, sigma2=sigma2, eps=eps, scale=scale,
                    found=found) -> tuple[bool, str]:
            if not bool(torch.isfinite(received).all()) or not bool(torch.isfinite(found["flux"]).all()):
                return False, "the received value contains NaN or inf"
            residual = dp_dt + found["flux"] - eps * sigma2[:, 0] * laplacian
            worst = float(residual.abs().max())
            tol = 1e-6 * (1 + scale)
            detail = (
                f"largest Fokker-Planck residual {worst:.3g} (tolerance {tol:.1g}; "
                f"the terms are up to {scale:.3g})"
            )
            return worst <= tol, detail

        desc = f"{b} point(s) in {d}-D, {n} data points, epsilon {eps:g}"
        inputs = {"x": x, "t": t, "data": data, "epsilon": eps}
        cases.append(Case(desc, inputs, call, ref, mistakes, compare))
    return run_cases("check_diffusion_drift", fn, cases, verbose, time_limit=time_limit)


# --------------------------------------------------------------------------- jumps

#: Mixture weights kappa_t of the test cases: increasing from kappa_0 = 0 to kappa_1 = 1.
_SCHEDULES: tuple[tuple[str, Callable[[Tensor], Tensor]], ...] = (
    ("kappa_t = t", lambda t: t),
    ("kappa_t = t^2", lambda t: t**2),
    ("kappa_t = sin(pi t / 2)", lambda t: torch.sin(0.5 * math.pi * t)),
    ("kappa_t = 1 - (1 - t)^3", lambda t: 1 - (1 - t) ** 3),
)


def check_jump_probability(
    fn: Callable, seed: int = 0, verbose: bool = True, time_limit: float | None = TIME_LIMIT
) -> CheckResult:
    r"""Check the jump probability of a mixture path on a time grid (``ex-jump-schedule``).

    The reader's ``fn(kappa, t, t_next)`` returns, for each grid interval, the probability that a
    point that has not jumped by time ``t`` jumps during ``[t, t_next]``, so that the jump process
    (wait, then jump once to a sample of :math:`Q`) has the marginals
    :math:`p_t = (1 - \kappa_t) P + \kappa_t Q`: :math:`(\kappa_{t'} - \kappa_t)/(1 - \kappa_t)`.
    ``kappa`` is a function of a tensor of times, increasing from 0 to 1; ``t, t_next`` ``(n,)``
    (the left and right ends of the intervals of a grid of ``[0, 1]``, ``t_next`` ending at 1);
    returns ``(n,)``.

    Reference: the claim itself. The probability of not having jumped by the grid time
    :math:`t_k` is the product of the :math:`1 - p` of the intervals before it; for the simulation
    to be exact it must equal :math:`1 - \kappa_{t_k}` at every grid time (compared in float64).
    """
    g = generator(seed)
    cases = []
    for (name, kappa), n in zip(_SCHEDULES, (10, 25, 7, 40)):
        if n == 7:  # an uneven grid
            inner = torch.sort(torch.rand(n - 1, generator=g, dtype=torch.float64)).values
            grid = torch.cat([torch.zeros(1, dtype=torch.float64), inner, torch.ones(1, dtype=torch.float64)])
        else:
            grid = torch.linspace(0, 1, n + 1, dtype=torch.float64)
        t, t_next = grid[:-1].clone(), grid[1:].clone()
        ref = 1 - kappa(t_next)

        def survival(p: Tensor) -> Tensor:
            return torch.cumprod(1 - p, dim=0)

        dk = t_next - t
        rate = (kappa(t + 1e-7) - kappa(t)) / 1e-7  # d kappa / dt
        mistakes = {
            "this is the rate times the step, h dkappa/dt / (1 - kappa_t): right only to first "
            "order in h; on a grid use (kappa_t' - kappa_t) / (1 - kappa_t)": survival(
                (dk * rate / (1 - kappa(t))).clamp(max=1.0)
            ),
            "kappa_t' - kappa_t is the chance of a jump in [t, t'] seen from time 0; a point that "
            "has not jumped yet must divide it by 1 - kappa_t": survival(kappa(t_next) - kappa(t)),
            "this is the schedule kappa_t = t (probability h / (1 - t)): use the kappa you are "
            "given": survival(dk / (1 - t)),
            "this is the exercise's example kappa_t = t^2 written out: use the kappa you are given, "
            "(kappa(t_next) - kappa(t)) / (1 - kappa(t))": survival((t_next**2 - t**2) / (1 - t**2)),
        }

        def call(fn: Callable, kappa=kappa, t=t, t_next=t_next, ref=ref) -> Tensor:
            p = as_tensor_like(fn(kappa, t, t_next), t, "fn(kappa, t, t_next)")
            if not bool(torch.isfinite(p).all()):
                raise Mismatch(f"the probabilities contain NaN or inf: {p.tolist()}")
            if bool((p < -1e-12).any() or (p > 1 + 1e-12).any()):
                raise Mismatch(f"probabilities must lie in [0, 1], got values from {float(p.min()):.3g} "
                               f"to {float(p.max()):.3g}")
            return survival(p.double())

        desc = f"{name}, {n} {'uneven ' if n == 7 else ''}steps: survival on the grid"
        inputs = {"kappa": name, "t": t, "t_next": t_next}
        cases.append(Case(desc, inputs, call, ref, mistakes))
    return run_cases("check_jump_probability", fn, cases, verbose, rtol=1e-6, atol=1e-9, time_limit=time_limit)

r"""Checkers of the exercises of chapter 6, Score matching and SDE sampling.

Each checker runs the reader's function on seeded random cases against an independent
reference (see :mod:`fmbook.exercises._runner` for the time limit, the copies of the inputs and
the "not attempted" verdict) and returns a :class:`~fmbook.exercises._runner.CheckResult`.

=======================================  ======================================================
checker                                  the reader's function
=======================================  ======================================================
:func:`check_score_from_velocity`        ``fn(v, x, t) -> score`` (Proposition 1)
:func:`check_velocity_from_score`        ``fn(score, x, t) -> u`` (Proposition 1)
:func:`check_ou_moments`                 ``fn(x0, theta, s, t) -> (mean, var)``
:func:`check_langevin_step`              ``fn(score, x, t, step_size, noise) -> x_next``
:func:`check_weighted_minimiser`         ``fn(weight, c, t_min, t_max) -> theta``
=======================================  ======================================================
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor
from torchdiffeq import odeint

from .. import paths, solvers
from ._checkers import check_score_from_velocity
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
    "check_langevin_step",
    "check_ou_moments",
    "check_score_from_velocity",
    "check_velocity_from_score",
    "check_weighted_minimiser",
]


def check_velocity_from_score(
    fn: Callable, scheduler: paths.Scheduler | None = None, seed: int = 0, verbose: bool = True,
    time_limit: float | None = TIME_LIMIT,
) -> CheckResult:
    r"""Check the velocity of a score on a Gaussian path, ``fn(score, x, t)``.

    Proposition 1: :math:`u_t(x) = (\sigma_t^2\dot\alpha_t/\alpha_t - \dot\sigma_t\sigma_t)
    \nabla\log p_t(x) + \frac{\dot\alpha_t}{\alpha_t}x`; for CondOT (the default),
    :math:`((1 - t)\nabla\log p_t(x) + x)/t`. Tested at ``t`` in [0.05, 0.95].
    Shapes: ``score, x`` ``(B, d)``, ``t`` ``(B,)``; returns ``(B, d)``.
    Reference: the exact marginal fields of a finite data set, the score
    :func:`~fmbook.marginals.marginal_score` given, the velocity :func:`~fmbook.marginals.marginal_velocity`
    (computed from the posterior mean, not from the score) expected.
    """
    scheduler = check_scheduler(scheduler)
    g = generator(seed)
    cases = []
    for b, d in SHAPES:
        data = 1.5 * torch.randn(3 + b, d, generator=g, dtype=torch.float64)
        x = 2 * torch.randn(b, d, generator=g, dtype=torch.float64)
        t = times(b, g, 0.05, 0.95).double()
        score = paths.marginal_score(x, t, data, scheduler)
        ref = paths.marginal_velocity(x, t, data, scheduler)
        a, _, da, _ = (c[:, None] for c in scheduler(t))
        mistakes = {
            "the sign is flipped": -ref,
            "this is the velocity of the reversed time convention (t = 0 data, t = 1 noise)":
                -paths.velocity_from_score(score, x, 1 - t, scheduler),
            "the division by alpha_t is missing (for CondOT: by t)": a * ref,
            "the term alpha_t' / alpha_t x is missing (for CondOT: x / t)": ref - da / a * x,
            "the score term has the wrong sign": paths.velocity_from_score(-score, x, t, scheduler),
        }
        call = tensor_call(score, x, t, what="fn(score, x, t)", expected=ref)
        inputs = {"score": score, "x": x, "t": t}
        cases.append(Case(f"{b} point(s) in {d}-D, {data.shape[0]} data points, {scheduler!r}", inputs, call, ref,
                          mistakes))
    return run_cases("check_velocity_from_score", fn, cases, verbose, time_limit=time_limit)


def _pair(out: object, like: Tensor, what: str) -> Tensor:
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise Mismatch(f"{what} must return a pair of tensors of shape {tuple(like.shape)}")
    return torch.stack([as_tensor_like(o, like, what) for o in out], dim=1)


def _ou_moments_by_ode(x0: Tensor, theta: Tensor, s: Tensor, t: Tensor) -> Tensor:
    """``(mean, var)`` of the OU process at ``t``: the moment equations ``m' = -theta m``,
    ``V' = -2 theta V + s^2`` from ``(x0, 0)``, integrated by torchdiffeq (dopri5, rtol 1e-10),
    one row per case on the normalised time ``tau = time / t`` in [0, 1]."""

    def rhs(tau: Tensor, y: Tensor) -> Tensor:
        m, v = y.unbind(1)
        return t[:, None] * torch.stack([-theta * m, -2 * theta * v + s**2], dim=1)

    y0 = torch.stack([x0, torch.zeros_like(x0)], dim=1)
    grid = torch.tensor([0.0, 1.0], dtype=x0.dtype)
    return odeint(rhs, y0, grid, rtol=1e-10, atol=1e-12, method="dopri5")[-1]


def check_ou_moments(
    fn: Callable, seed: int = 0, verbose: bool = True, time_limit: float | None = TIME_LIMIT
) -> CheckResult:
    r"""Check the moments of the Ornstein-Uhlenbeck process, ``fn(x0, theta, s, t) -> (mean, var)``.

    For :math:`\mathrm dX_t = -\theta X_t\,\mathrm dt + s\,\mathrm dW_t`, :math:`X_0 = x_0`:
    :math:`\mathbb E X_t = x_0 e^{-\theta t}`, :math:`\operatorname{Var} X_t = \frac{s^2}{2\theta}(1 - e^{-2\theta t})`.
    All four arguments are float64 tensors ``(B,)`` (one process per row; ``theta`` in [0.2, 3],
    ``s`` in [0.1, 2], ``t`` in [0.05, 3]); returns the pair ``(mean, var)``, each ``(B,)``.
    Reference: the moment equations :math:`\dot m = -\theta m`, :math:`\dot V = -2\theta V + s^2`
    (Itô's formula) integrated numerically by ``torchdiffeq.odeint`` (not the closed form).
    """
    g = generator(seed)
    cases = []
    for b in [b for b, _ in SHAPES] + [0]:
        x0 = 3 * torch.randn(b, generator=g, dtype=torch.float64)
        theta = times(b, g, 0.2, 3.0).double()
        s = times(b, g, 0.1, 2.0).double()
        t = times(b, g, 0.05, 3.0).double()
        if b == 0:  # last, the exercise's process
            x0, theta, s, t = (torch.tensor([v], dtype=torch.float64) for v in (2.0, 1.0, 0.5, 1.0))
        ref = _ou_moments_by_ode(x0, theta, s, t)
        mean, var = ref.unbind(1)
        decay = torch.exp(-2 * theta * t)
        mistakes = {
            "the variance lacks the factor 1/2: s^2 / (2 theta) (1 - exp(-2 theta t))": torch.stack(
                [mean, 2 * var], 1
            ),
            "the exponent of the variance is -theta t: it is -2 theta t (the square of e^(-theta t))": torch.stack(
                [mean, s**2 / (2 * theta) * (1 - torch.exp(-theta * t))], 1
            ),
            "this is the standard deviation, not the variance": torch.stack([mean, var.sqrt()], 1),
            "this is the stationary variance s^2 / (2 theta): the process starts at the point x0": torch.stack(
                [mean, s**2 / (2 * theta)], 1
            ),
            "the variance uses s, not s^2": torch.stack([mean, s / (2 * theta) * (1 - decay)], 1),
            "the mean grows: it is x0 exp(-theta t)": torch.stack([x0 * torch.exp(theta * t), var], 1),
        }
        call = lambda fn, x0=x0, theta=theta, s=s, t=t: _pair(fn(x0, theta, s, t), x0, "fn(x0, theta, s, t)")
        inputs = {"x0": x0, "theta": theta, "s": s, "t": t}
        desc = "the exercise's process (x0 = 2, theta = 1, s = 0.5, t = 1)" if b == 0 else f"{b} processes"
        cases.append(Case(desc, inputs, call, ref, mistakes))
    return run_cases("check_ou_moments", fn, cases, verbose, rtol=1e-6, atol=1e-9, time_limit=time_limit)


def _test_score(x: Tensor, t: Tensor) -> Tensor:
    """score(x, t) = -(1 + t) x + sin(x reversed): nonlinear in x and depends on t."""
    return -(1 + t[:, None]) * x + torch.sin(x.flip(-1))


def check_langevin_step(
    fn: Callable, seed: int = 0, verbose: bool = True, time_limit: float | None = TIME_LIMIT
) -> CheckResult:
    r"""Check one unadjusted Langevin step ``fn(score, x, t, step_size, noise)``:
    :math:`x + \epsilon\,\nabla\log p_t(x) + \sqrt{2\epsilon}\,\xi` with the given standard
    normal ``noise`` :math:`\xi`.

    ``score(x, t)`` takes ``t`` ``(B,)``; ``x, noise`` ``(B, d)``; ``t`` and ``step_size`` floats;
    returns ``(B, d)``. Two kinds of cases. One step on a nonlinear score, compared with
    :func:`fmbook.solvers.langevin_corrector` fed the same noise. And the claim that the step
    leaves a Gaussian target :math:`\mathcal N(m, v I)` (nearly) invariant: 2000 chains started
    from it, 200 steps of ``fn`` with ``step_size`` :math:`\epsilon = 0.1 v`, and the sample mean and
    variance compared with the stationary law of the discretised chain, :math:`\mathcal N(m, v/(1 -
    \epsilon/(2v)))` (an AR(1) recursion), within 5 Monte Carlo standard errors.
    """
    g = generator(seed)
    cases = []
    for (b, d), eps in zip(SHAPES, (0.1, 0.01, 0.05, 0.2)):
        x = torch.randn(b, d, generator=g)
        t = round(float(torch.rand(1, generator=g)), 3)
        noise_seed = int(torch.randint(0, 2**31 - 1, (), generator=g))
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(noise_seed))
        ref = solvers.langevin_corrector(_test_score, x, t, eps, n_steps=1, generator=noise_seed)
        tt = torch.full((b,), t)
        s = _test_score(x, tt)
        mistakes = {
            "the noise is scaled by sqrt(step_size): Langevin's is sqrt(2 step_size)": x + eps * s + eps**0.5 * noise,
            "the noise is scaled by the step size, not by sqrt(2 step_size)": x + eps * s + eps * noise,
            "the score term has the wrong sign: x + eps * score climbs the density, x - eps * score "
            "descends it": x - eps * s + (2 * eps) ** 0.5 * noise,
            "the score is not multiplied by the step size": x + s + (2 * eps) ** 0.5 * noise,
            "the noise is missing: this is gradient ascent on log p, not Langevin": x + eps * s,
        }
        call = tensor_call(_test_score, x, t, eps, noise, what="fn(score, x, t, step_size, noise)", expected=ref)
        inputs = {"score": _test_score, "x": x, "t": t, "step_size": eps, "noise": noise}
        cases.append(Case(f"one step, {b} point(s) in {d}-D, step size {eps:g}", inputs, call, ref, mistakes))

    m = torch.tensor([1.0, -2.0], dtype=torch.float64)
    var, chains, n_steps = 0.5, 2000, 200
    eps = 0.1 * var
    stationary = var / (1 - eps / (2 * var))

    def gaussian_score(x: Tensor, t: Tensor) -> Tensor:
        """score of N(m, v I): -(x - m) / v"""
        return -(x - m) / var

    start = m + var**0.5 * torch.randn(chains, 2, generator=g, dtype=torch.float64)
    noise_seed = int(torch.randint(0, 2**31 - 1, (), generator=g))

    def run_chains(fn: Callable) -> Tensor:
        noise_g = torch.Generator().manual_seed(noise_seed)
        x = start
        for _ in range(n_steps):
            xi = torch.randn(x.shape, generator=noise_g, dtype=x.dtype)
            x = as_tensor_like(fn(gaussian_score, x, 0.5, eps, xi), start, "fn(score, x, t, step_size, noise)")
        return torch.cat([x.mean(0), x.var(0)])

    expected = torch.cat([m, torch.full((2,), stationary, dtype=torch.float64)])
    se = torch.cat([torch.full((2,), (stationary / chains) ** 0.5), torch.full((2,), stationary * (2 / chains) ** 0.5)])

    def compare(received: Tensor) -> tuple[bool, str]:
        if not bool(torch.isfinite(received).all()):
            return False, "the chains' mean or variance is NaN or inf (did the chains blow up?)"
        z = ((received - expected).abs() / se).max().item()
        detail = (
            f"after {n_steps} steps: mean {received[:2].tolist()}, variance {received[2:].tolist()}; "
            f"expected mean {m.tolist()}, variance {stationary:.4f} (within 5 standard errors; off by {z:.1f})"
        )
        return z < 5, detail

    desc = f"{chains} chains, {n_steps} steps: N(m, {var:g} I) stays (nearly) invariant"
    cases.append(Case(desc, {"score": gaussian_score, "x": start, "step_size": eps}, run_chains, expected,
                      compare=compare))
    return run_cases("check_langevin_step", fn, cases, verbose, time_limit=time_limit)


def _condot_moments(t: Tensor, c: float, reversed_time: bool = False) -> tuple[Tensor, Tensor]:
    """``E[X_t eps]`` and ``E[X_t^2]`` at each ``t`` for ``X_1 ~ N(0, c^2)``, by Gauss-Hermite
    quadrature of ``x_t = alpha x1 + sigma eps`` over ``(x1, eps)`` (exact for these polynomials)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(12)
    z = torch.as_tensor(nodes, dtype=torch.float64)
    w = torch.as_tensor(weights / weights.sum(), dtype=torch.float64)
    alpha, sigma = (1 - t, t) if reversed_time else (t, 1 - t)
    x = alpha[:, None, None] * c * z[None, :, None] + sigma[:, None, None] * z[None, None, :]
    ww = w[:, None] * w[None, :]
    return (ww * x * z[None, None, :]).sum((1, 2)), (ww * x**2).sum((1, 2))


def _weighted_theta(weight: Callable, c: float, t_min: float, t_max: float, how: str = "right") -> float:
    """The minimiser of ``E_t w(t) E(theta X_t - eps)^2`` for ``t ~ U[t_min, t_max]``, by
    Gauss-Legendre quadrature in ``t`` (and the values of typical mistakes)."""
    nodes, weights = np.polynomial.legendre.leggauss(200)
    t = torch.as_tensor(t_min + (t_max - t_min) * (nodes + 1) / 2, dtype=torch.float64)
    q = torch.as_tensor(weights, dtype=torch.float64)
    w = weight(t).to(torch.float64) * q
    xe, xx = _condot_moments(t, c, reversed_time=how == "reversed")
    if how == "unweighted":
        w = q
    if how == "no noise term":
        xx = xx - (1 - t) ** 2
    if how == "average of minimisers":
        return float((w * xe / xx).sum() / w.sum())
    return float((w * xe).sum() / (w * xx).sum())


def _weight_fm(t: Tensor) -> Tensor:
    """w(t) = 1 / t^2, flow matching on CondOT"""
    return 1 / t**2


def _weight_dsm(t: Tensor) -> Tensor:
    """w(t) = 1 / (1 - t)^2, denoising score matching on CondOT"""
    return 1 / (1 - t) ** 2


def _weight_one(t: Tensor) -> Tensor:
    """w(t) = 1, the noise-prediction loss"""
    return torch.ones_like(t)


def _as_number(out: object) -> Tensor:
    """A reader's number (a float, a one-element tensor or array, a NumPy scalar such as
    ``np.float32``, which is not a ``float``) as a ``(1,)`` float64 tensor, or :class:`Mismatch`."""
    if isinstance(out, Tensor) and out.numel() == 1:
        out = out.item()
    elif isinstance(out, (np.ndarray, np.generic)) and np.size(out) == 1:
        out = out.item()
    if isinstance(out, bool) or not isinstance(out, (int, float)):
        raise Mismatch(f"fn(weight, c, t_min, t_max) must return a number (theta), got {type(out).__name__}")
    return torch.tensor([float(out)], dtype=torch.float64)


def check_weighted_minimiser(
    fn: Callable, seed: int = 0, verbose: bool = True, time_limit: float | None = TIME_LIMIT
) -> CheckResult:
    r"""Check ``fn(weight, c, t_min, t_max) -> theta``, the minimiser of the weighted noise loss
    :math:`\mathbb E_t\,w(t)\,\mathbb E(\theta X_t - \varepsilon)^2` of the one-parameter noise
    predictor :math:`\hat\varepsilon_\theta(x, t) = \theta x`.

    CondOT path, :math:`X_t = t X_1 + (1 - t)\varepsilon`, :math:`X_1 \sim \mathcal N(0, c^2)`,
    :math:`t \sim U[t_{\min}, t_{\max}]`; ``weight`` maps a float64 tensor of times ``(T,)`` to
    the weights ``(T,)``; ``c, t_min, t_max`` floats. The answer is
    :math:`\mathbb E_t[w\sigma_t] / \mathbb E_t[w(\alpha_t^2c^2 + \sigma_t^2)]`; tested with the
    flow-matching, score-matching and unit weights, relative tolerance :math:`10^{-3}` (an integral
    over ``t`` by a quadrature on a fine grid passes; a Monte Carlo estimate is too rough).
    Reference: the weighted least-squares solution :math:`\sum w X\varepsilon / \sum w X^2` over a
    Gauss-Legendre (in ``t``) times Gauss-Hermite (in :math:`X_1, \varepsilon`) quadrature of the
    loss itself, not the closed-form moments.
    """
    g = generator(seed)
    cases = []
    settings = [(_weight_fm, 0.2, 0.05, 0.95), (_weight_dsm, 0.2, 0.05, 0.95), (_weight_one, 0.2, 0.05, 0.95)]
    c_extra = round(0.3 + 0.7 * float(torch.rand(1, generator=g)), 3)
    settings += [(_weight_fm, c_extra, 0.1, 0.9), (_weight_dsm, c_extra, 0.1, 0.9)]
    for weight, c, lo, hi in settings:
        ref = torch.tensor([_weighted_theta(weight, c, lo, hi)], dtype=torch.float64)
        hints = {
            "the weight w(t) is ignored: this is the unweighted minimiser": "unweighted",
            "this averages the per-time minimisers sigma_t / E[X_t^2]: minimise the averaged loss instead": (
                "average of minimisers"),
            "E[X_t^2] lacks the noise term sigma_t^2: E[X_t^2] = alpha_t^2 c^2 + sigma_t^2": "no noise term",
            "this is the reversed time convention (alpha_t = 1 - t, sigma_t = t)": "reversed",
        }
        mistakes = {}
        for text, how in hints.items():
            value = torch.tensor([_weighted_theta(weight, c, lo, hi, how)], dtype=torch.float64)
            if abs(value.item() / ref.item() - 1) > 1e-2:
                mistakes[text] = value
        call = lambda fn, w=weight, c=c, lo=lo, hi=hi: _as_number(fn(w, c, lo, hi))
        inputs = {"weight": weight, "c": c, "t_min": lo, "t_max": hi}
        desc = f"{weight.__doc__.split(',')[0]}, c = {c:.3g}, t in [{lo:g}, {hi:g}]"
        cases.append(Case(desc, inputs, call, ref, mistakes))
    return run_cases("check_weighted_minimiser", fn, cases, verbose, rtol=1e-3, atol=0.0, time_limit=time_limit)


r"""Checkers of the exercises of chapter 4, Optimal transport and kinetic energy.

Each checker runs the reader's function on seeded random cases against an independent
reference (see :mod:`fmbook.exercises._runner` for the time limit, the copies of the inputs and
the "not attempted" verdict) and returns a :class:`~fmbook.exercises._runner.CheckResult`.

=====================================  ===========================================================
checker                                the reader's function
=====================================  ===========================================================
:func:`check_kinetic_energy`           ``fn(trajectory, times) -> energy`` of the piecewise-linear path
:func:`check_straightness`             ``fn(trajectory, times) -> S``, the straightness of that path
:func:`check_w2_line`                  ``fn(a, b) -> W2`` between two samples of the line, by sorting
:func:`check_icfm_energy`              ``fn(m0, s0, m1, s1) -> energy`` of the I-CFM flow of two 1-D Gaussians
:func:`check_ot_pairing`               ``fn(x0, x1) -> perm``, an optimal pairing of a batch
:func:`check_curved_path`              ``fn(x0, x1, t, c) -> (x_t, dx_t)``, the curved conditional path
=====================================  ===========================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import ot
import torch
from torch import Tensor

from .. import losses
from ..models import MLPVelocityField
from ..ot import CurvedPath
from ._checkers import check_ot_pairing
from ._runner import (
    TIME_LIMIT,
    Case,
    CheckResult,
    Mismatch,
    as_tensor_like,
    close,
    generator,
    run_cases,
    times,
)

__all__: list[str] = [
    "check_curved_path",
    "check_icfm_energy",
    "check_kinetic_energy",
    "check_ot_pairing",
    "check_straightness",
    "check_w2_line",
]

F64 = torch.float64


def _as_number(out: object, what: str) -> Tensor:
    """A number returned by the reader (a float, an int, a numpy scalar, a one-element numpy array or
    tensor) as a float64 tensor ``(1,)``, or :class:`Mismatch` saying what was expected."""
    if isinstance(out, Tensor):
        if out.numel() != 1:
            raise Mismatch(f"{what} must return one number (a float or a 0-dim tensor), got a tensor of shape "
                           f"{tuple(out.shape)}")
        return out.detach().to("cpu", F64).reshape(1)
    if isinstance(out, np.ndarray) and out.dtype.kind in "iuf":
        if out.size != 1:
            raise Mismatch(f"{what} must return one number (a float or a 0-dim tensor), got an array of shape "
                           f"{out.shape}")
        return torch.tensor([float(out.reshape(()))], dtype=F64)
    if isinstance(out, (int, float, np.integer, np.floating)) and not isinstance(out, bool):
        return torch.tensor([float(out)], dtype=F64)
    raise Mismatch(f"{what} must return one number (a float or a 0-dim tensor), got {type(out).__name__}")


def _number(value: float) -> Tensor:
    return torch.tensor([float(value)], dtype=F64)


def _without_ties(mistakes: dict[str, Tensor], ref: Tensor) -> dict[str, Tensor]:
    """The mistakes whose value differs from the right answer (a mistake that gives it is no mistake)."""
    return {k: v for k, v in mistakes.items() if not close(v, ref, 1e-3, 1e-8)[0]}


# --------------------------------------------------------------------------- energy and straightness


def _grid(kind: str, n: int, g: torch.Generator, start: float = 0.0, stop: float = 1.0) -> Tensor:
    """A strictly increasing time grid ``(n,)`` from ``start`` to ``stop``: ``"random"`` (sorted uniform
    interior points) or ``"warped"`` (fine, denser near ``start``: ``(k / (n - 1))^2``)."""
    if kind == "random":
        inner = torch.rand(n - 2, generator=g, dtype=F64).sort().values
        u = torch.cat([torch.zeros(1, dtype=F64), inner, torch.ones(1, dtype=F64)])
    else:
        u = torch.linspace(0, 1, n, dtype=F64) ** 2
    return start + (stop - start) * u


def _curved(x0: Tensor, x1: Tensor, t: Tensor, c: float) -> Tensor:
    r"""States ``(B, T + 1, 2)`` of :math:`x_t = (1 - t)x_0 + t x_1 + c\,t(1 - t)R(x_1 - x_0)` at the times ``t``."""
    d = x1 - x0
    perp = torch.stack([-d[:, 1], d[:, 0]], dim=1)
    tt = t[None, :, None]
    return (1 - tt) * x0[:, None] + tt * x1[:, None] + c * tt * (1 - tt) * perp[:, None]


def _trajectory_cases(g: torch.Generator) -> list[tuple[str, Tensor, Tensor, float, float]]:
    r"""Trajectories with known kinetic energy and straightness, as
    ``(description, trajectory, times, energy, straightness)``; ``straightness`` is NaN for the
    case whose grid does not run from 0 to 1.

    Straight constant-speed paths have energy :math:`\lVert D\rVert^2 (t_T - t_0)` on any grid; the
    curved path :math:`c\,t(1 - t)RD` adds :math:`c^2\lVert D\rVert^2/3`; the accelerating straight path
    :math:`x_0 + t^2 D` has energy :math:`\tfrac43\lVert D\rVert^2` and straightness
    :math:`\tfrac13\lVert D\rVert^2`. On the fine grids the piecewise-linear path is within
    :math:`10^{-6}` (relative) of these limits. On a coarse grid the curved path's polyline has the
    exact energy :math:`\lVert D\rVert^2(1 + c^2/3) - \tfrac{c^2}3\lVert D\rVert^2\sum_k h_k^3`
    (steps :math:`h_k`: with a constant acceleration each chord's slope is the step's mean velocity,
    and the step loses :math:`\lVert\ddot x\rVert^2 h_k^3/12`), which tells the polyline from
    other quadratures of the energy.
    """
    out = []
    # straight, constant speed, a coarse random grid of [0, 1]: the discrete energy is exact
    x0, d = torch.randn(5, 2, generator=g, dtype=F64), torch.randn(5, 2, generator=g, dtype=F64)
    t = _grid("random", 6, g)
    traj = x0[:, None] + t[None, :, None] * d[:, None]
    sq = float(d.pow(2).sum(1).mean())
    out.append(("5 straight paths at constant speed, 2-D, 6 uneven times in [0, 1]", traj, t, sq, 0.0))
    # straight, constant speed, on [0.2, 0.7]: the energy of half the journey
    x0, d = torch.randn(4, 3, generator=g, dtype=F64), torch.randn(4, 3, generator=g, dtype=F64)
    t = _grid("random", 5, g, 0.2, 0.7)
    traj = x0[:, None] + t[None, :, None] * d[:, None]
    sq = float(d.pow(2).sum(1).mean())
    out.append(("4 straight paths in 3-D, 5 uneven times in [0.2, 0.7]", traj, t, 0.5 * sq, math.nan))
    # the curved path of the chapter, c = 1.5, on a fine uneven grid
    x0, x1 = torch.randn(6, 2, generator=g, dtype=F64), 2 * torch.randn(6, 2, generator=g, dtype=F64)
    t = _grid("warped", 2001, g)
    c = 1.5
    sq = float((x1 - x0).pow(2).sum(1).mean())
    out.append((f"6 curved paths (c = {c:g}), 2-D, 2001 uneven times in [0, 1]", _curved(x0, x1, t, c), t,
                sq * (1 + c**2 / 3), sq * c**2 / 3))
    # straight but accelerating, x_t = x0 + t^2 D, in 3-D
    x0, d = torch.randn(3, 3, generator=g, dtype=F64), torch.randn(3, 3, generator=g, dtype=F64)
    t = _grid("warped", 2001, g)
    traj = x0[:, None] + (t**2)[None, :, None] * d[:, None]
    sq = float(d.pow(2).sum(1).mean())
    out.append(("3 accelerating paths x0 + t^2 D, 3-D, 2001 uneven times", traj, t, 4 * sq / 3, sq / 3))
    # the curved path on a coarse uneven grid: the piecewise-linear path's own energy, exactly. Its
    # acceleration a = -2c R D is constant, so on a step of length h the chord's slope is the mean
    # velocity and the step loses |a|^2 h^3 / 12 = c^2 |D|^2 h^3 / 3 of the energy
    x0, x1 = torch.randn(5, 2, generator=g, dtype=F64), 2 * torch.randn(5, 2, generator=g, dtype=F64)
    t = _grid("random", 7, g)
    c = 2.0
    sq = float((x1 - x0).pow(2).sum(1).mean())
    lost = sq * c**2 / 3 * float((t[1:] - t[:-1]).pow(3).sum())
    out.append((f"5 curved paths (c = {c:g}), 2-D, 7 uneven times (the polyline's own energy)",
                _curved(x0, x1, t, c), t, sq * (1 + c**2 / 3) - lost, sq * c**2 / 3 - lost))
    return out


def _steps(traj: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Squared step lengths ``(B, T)`` and time steps ``(T,)`` of a trajectory."""
    return (traj[:, 1:] - traj[:, :-1]).pow(2).sum(-1), t[1:] - t[:-1]


def check_kinetic_energy(
    fn: Callable, seed: int = 0, verbose: bool = True, time_limit: float | None = TIME_LIMIT
) -> CheckResult:
    r"""Check the kinetic energy of a trajectory, ``fn(trajectory, times) -> energy``.

    The energy of the piecewise-linear path through the states :math:`x_{b,k}` at the times
    :math:`t_k` is :math:`\frac1B\sum_b\sum_k \lVert x_{b,k+1} - x_{b,k}\rVert^2/(t_{k+1} - t_k)`, the
    integral :math:`\int_{t_0}^{t_T}\E\lVert\dot X_t\rVert^2 dt` of that path. ``trajectory`` is
    ``(B, T + 1, d)`` and ``times`` ``(T + 1,)`` (strictly increasing, not evenly spaced), both float64;
    ``fn`` returns one number.

    Reference: closed forms. Straight constant-speed paths (energy
    :math:`\E\lVert D\rVert^2 (t_T - t_0)`, exact on any grid), the curved path
    :math:`c\,t(1 - t)R(x_1 - x_0)` (:math:`\E\lVert x_1 - x_0\rVert^2(1 + c^2/3)`) and the accelerating
    path :math:`x_0 + t^2 D` (:math:`\tfrac43\E\lVert D\rVert^2`) on grids of 2001 uneven times, where the
    piecewise-linear path is within :math:`10^{-6}` of them; and the curved path on 7 uneven times, where
    the polyline's energy :math:`\E\lVert D\rVert^2\big(1 + \frac{c^2}3(1 - \sum_k h_k^3)\big)` is exact and
    other quadratures of the energy (velocities by ``torch.gradient``, the trapezoid rule) differ.
    """
    g = generator(seed)
    cases = []
    for desc, traj, t, energy, _ in _trajectory_cases(g):
        ref = _number(energy)
        sq, dt = _steps(traj, t)
        b, d = traj.shape[0], traj.shape[2]
        span = float(t[-1] - t[0])
        mistakes = {
            "the squared steps were not divided by the time steps: the energy is sum_k |dx_k|^2 / dt_k":
                _number(sq.sum(1).mean()),
            "the squared steps were multiplied by the time steps: |dx/dt|^2 dt = |dx|^2 / dt":
                _number((sq * dt).sum(1).mean()),
            "the time steps were taken as even (span / T): use each step's own t_{k+1} - t_k":
                _number((sq / (span / dt.numel())).sum(1).mean()),
            "the steps were averaged (divided by T): the energy sums |dx_k|^2 / dt_k over the steps":
                _number((sq / dt).mean(1).mean()),
            "the energies of the paths were summed: average them over the batch": _number(b * energy),
            "the squares were averaged over the d coordinates: sum them": _number(energy / d),
            "this is the length of the paths (sum_k |dx_k|), not their energy": _number(sq.sqrt().sum(1).mean()),
        }
        call = lambda f, traj=traj, t=t: _as_number(f(traj, t), "fn(trajectory, times)")
        cases.append(Case(desc, {"trajectory": traj, "times": t}, call, ref, _without_ties(mistakes, ref)))
    return run_cases("check_kinetic_energy", fn, cases, verbose, rtol=1e-5, atol=1e-8, time_limit=time_limit)


def check_straightness(
    fn: Callable, seed: int = 0, verbose: bool = True, time_limit: float | None = TIME_LIMIT
) -> CheckResult:
    r"""Check the straightness of a trajectory, ``fn(trajectory, times) -> S``.

    :math:`S = \int_0^1 \E\lVert (X_1 - X_0) - \dot X_t\rVert^2 dt` for the piecewise-linear path
    through the states, whose velocity on step :math:`k` is
    :math:`(x_{k+1} - x_k)/(t_{k+1} - t_k)`; ``times`` runs from 0 to 1 (uneven steps).
    ``trajectory`` ``(B, T + 1, d)``, ``times`` ``(T + 1,)``, float64; ``fn`` returns one number.

    Reference: closed forms. :math:`S = 0` for straight constant-speed paths (on any grid),
    :math:`c^2\E\lVert x_1 - x_0\rVert^2/3` for the curved path of the chapter and
    :math:`\E\lVert D\rVert^2/3` for the accelerating path :math:`x_0 + t^2 D` (a straight line run at a
    changing speed), on grids of 2001 uneven times; and the exact
    :math:`\frac{c^2}3\E\lVert D\rVert^2(1 - \sum_k h_k^3)` of the curved path's polyline on 7 uneven times.
    """
    g = generator(seed)
    cases = []
    for desc, traj, t, energy, s in _trajectory_cases(g):
        if math.isnan(s):
            continue
        ref = _number(s)
        sq, dt = _steps(traj, t)
        chord = traj[:, -1] - traj[:, 0]
        even = (traj[:, 1:] - traj[:, :-1]) * dt.numel()  # the slopes if the steps were even
        mistakes = {
            "this is the kinetic energy: S subtracts |X1 - X0|^2 (or integrates |(X1 - X0) - dX/dt|^2)":
                _number(energy),
            "the sign is flipped: S = energy - |X1 - X0|^2 >= 0": _number(-s),
            "the time steps were taken as even (1 / T): use each step's own t_{k+1} - t_k": _number(
                ((chord[:, None] - even).pow(2).sum(-1) / dt.numel()).sum(1).mean()),
            "the values of the paths were summed: average them over the batch": _number(traj.shape[0] * s),
            "the squared differences were averaged over the steps (1 / T): weight each by its own dt_k":
                _number((chord[:, None] - (traj[:, 1:] - traj[:, :-1]) / dt[None, :, None]).pow(2).sum(-1)
                        .mean(1).mean()),
            "the squared differences were not weighted by the time steps (a sum, not an integral)":
                _number((chord[:, None] - (traj[:, 1:] - traj[:, :-1]) / dt[None, :, None]).pow(2).sum(-1)
                        .sum(1).mean()),
        }
        call = lambda f, traj=traj, t=t: _as_number(f(traj, t), "fn(trajectory, times)")
        cases.append(Case(desc, {"trajectory": traj, "times": t}, call, ref, _without_ties(mistakes, ref)))
    return run_cases("check_straightness", fn, cases, verbose, rtol=1e-4, atol=1e-6, time_limit=time_limit)


# --------------------------------------------------------------------------- W2 on the line


def check_w2_line(
    fn: Callable, seed: int = 0, verbose: bool = True, time_limit: float | None = TIME_LIMIT
) -> CheckResult:
    r"""Check :math:`W_2` between two samples of the line, ``fn(a, b) -> W2``.

    ``a`` and ``b`` are float64 tensors ``(n, 1)`` of equally weighted points (the same ``n``); the
    optimal plan pairs them in sorted order, so
    :math:`W_2 = \big(\frac1n\sum_i (a_{(i)} - b_{(i)})^2\big)^{1/2}` with :math:`a_{(i)}` the sorted values.
    ``fn`` returns one number.

    Reference: POT's exact solver, :math:`\sqrt{\texttt{ot.emd2}}` with the squared distance, which knows
    nothing of sorting; the mistake "no squares" is recognised as :math:`W_1`, from ``ot.emd2`` with the
    distance :math:`|a - b|` as cost (what ``scipy.stats.wasserstein_distance`` computes).
    """
    g = generator(seed)
    cases = []
    for n, kind in ((1, "Gaussians"), (7, "Gaussians"), (60, "exponential and Gaussian"), (200, "Gaussians")):
        if kind == "Gaussians":
            a = 1.0 + 0.5 * torch.randn(n, 1, generator=g, dtype=F64)
            b = -1.0 + 2.0 * torch.randn(n, 1, generator=g, dtype=F64)
        else:
            a = -torch.log(torch.rand(n, 1, generator=g, dtype=F64))
            b = 0.3 * torch.randn(n, 1, generator=g, dtype=F64)
        w = np.full(n, 1.0 / n)
        w2_sq = float(ot.emd2(w, w, ot.dist(a.numpy(), b.numpy())))
        ref = _number(math.sqrt(max(w2_sq, 0.0)))
        sa, sb = a.sort(dim=0).values, b.sort(dim=0).values
        mistakes = {
            "the samples were not sorted: the optimal plan of the line pairs them by rank": _number(
                (a - b).pow(2).mean().sqrt()),
            "this is W2 squared: take the square root of the mean squared difference": _number(w2_sq),
            "the differences were not squared: this is W1 = mean |a_(i) - b_(i)|": _number(
                ot.emd2(w, w, ot.dist(a.numpy(), b.numpy(), metric="euclidean"))),
            "one sample was sorted in decreasing order: pair the smallest with the smallest": _number(
                (sa - sb.flip(0)).pow(2).mean().sqrt()),
            "the squared differences were summed: average them (each point carries mass 1 / n)": _number(
                (sa - sb).pow(2).sum().sqrt()),
        }
        call = lambda f, a=a, b=b: _as_number(f(a, b), "fn(a, b)")
        cases.append(Case(f"{n} against {n} points ({kind})", {"a": a, "b": b}, call, ref,
                          _without_ties(mistakes, ref)))
    return run_cases("check_w2_line", fn, cases, verbose, rtol=1e-6, atol=1e-9, time_limit=time_limit)


# --------------------------------------------------------------------------- the I-CFM flow of two Gaussians


def _icfm_energy_by_quadrature(m0: float, s0: float, m1: float, s1: float) -> float:
    r"""The energy of the flow :math:`\psi_t(x) = m_t + s_t (x - m_0)/s_0` with
    :math:`s_t = \sqrt{(1 - t)^2 s_0^2 + t^2 s_1^2}`: :math:`\int_0^1 \E\,\dot\psi_t^2 dt
    = (m_1 - m_0)^2 + \int_0^1 \dot s_t^2 dt`, the integral by Gauss-Legendre quadrature (400 nodes)."""

    nodes, weights = np.polynomial.legendre.leggauss(400)  # on [-1, 1]; exact to rounding for this
    t, w = 0.5 * (nodes + 1), 0.5 * weights                 # smooth integrand (s_t > 0 on [0, 1])
    ds = ((s0**2 + s1**2) * t - s0**2) / np.sqrt((1 - t) ** 2 * s0**2 + t**2 * s1**2)
    return (m1 - m0) ** 2 + float((w * ds**2).sum())


def check_icfm_energy(
    fn: Callable, seed: int = 0, verbose: bool = True, time_limit: float | None = TIME_LIMIT
) -> CheckResult:
    r"""Check the kinetic energy of the I-CFM flow between two Gaussians of the line,
    ``fn(m0, s0, m1, s1) -> energy``.

    For independent :math:`X_0 \sim \mathcal N(m_0, s_0^2)`, :math:`X_1 \sim \mathcal N(m_1, s_1^2)` and the
    linear path, the marginal flow is :math:`\psi_t(x) = m_t + s_t (x - m_0)/s_0` with
    :math:`s_t^2 = (1 - t)^2 s_0^2 + t^2 s_1^2`, and its energy
    :math:`(m_1 - m_0)^2 + s_0^2 + s_1^2 - \frac\pi2 s_0 s_1`. The arguments are floats (``s0, s1 > 0``);
    ``fn`` returns one number.

    Reference: :math:`(m_1 - m_0)^2 + \int_0^1 \dot s_t^2\,dt` with the integral computed by
    Gauss-Legendre quadrature from the definition of :math:`s_t` (not from the closed form).
    """
    g = generator(seed)
    params = [(1.0, 0.5, -1.0, 2.0), (0.0, 1.0, 0.0, 2.0), (0.3, 1.2, 0.3, 1.2)]
    for _ in range(2):
        m0, m1 = (float(v) for v in torch.randn(2, generator=g))
        s0, s1 = (float(v) for v in 0.2 + 2 * torch.rand(2, generator=g))
        params.append((round(m0, 4), round(s0, 4), round(m1, 4), round(s1, 4)))
    cases = []
    for m0, s0, m1, s1 in params:
        ref = _number(_icfm_energy_by_quadrature(m0, s0, m1, s1))
        mean_sq = (m1 - m0) ** 2
        mistakes = {
            "this is the Jensen bound (m1 - m0)^2 + s0^2 + s1^2: the paths' bend, -(pi/2) s0 s1, is missing":
                _number(mean_sq + s0**2 + s1**2),
            "this is W2^2 = (m1 - m0)^2 + (s1 - s0)^2, the energy of the straight path of the same map":
                _number(mean_sq + (s1 - s0) ** 2),
            "the integral of dt / s_t^2 is pi / (2 s0 s1): the factor of s0 s1 is pi / 2, not pi":
                _number(mean_sq + s0**2 + s1**2 - math.pi * s0 * s1),
            "the mean's part (m1 - m0)^2 is missing": _number(float(ref) - mean_sq),
        }
        call = lambda f, p=(m0, s0, m1, s1): _as_number(f(*p), "fn(m0, s0, m1, s1)")
        inputs = {"m0": m0, "s0": s0, "m1": m1, "s1": s1}
        cases.append(Case(f"(m0, s0, m1, s1) = ({m0:g}, {s0:g}, {m1:g}, {s1:g})", inputs, call, ref,
                          _without_ties(mistakes, ref)))
    return run_cases("check_icfm_energy", fn, cases, verbose, rtol=1e-7, atol=1e-9, time_limit=time_limit)


# --------------------------------------------------------------------------- the curved path


def _path_call(fn: Callable, x0: Tensor, x1: Tensor, t: Tensor, c: float) -> tuple[Tensor, Tensor]:
    """``fn(x0, x1, t, c)`` read as the pair ``(x_t, dx_t)``, each of the shape of ``x0``."""
    what = "fn(x0, x1, t, c)"
    out = fn(x0, x1, t, c)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise Mismatch(f"{what} must return the pair (x_t, dx_t), got {type(out).__name__}")
    return as_tensor_like(out[0], x0, f"{what}[0] (x_t)"), as_tensor_like(out[1], x0, f"{what}[1] (dx_t)")


def _reversed_sample(x0: Tensor, x1: Tensor, t: Tensor, c: float) -> tuple[Tensor, Tensor]:
    """The path with the time convention reversed (t = 0 data, t = 1 noise), two ways of writing it:
    the book's path at ``1 - t``, and the path from ``x1`` to ``x0``; their x_t and dx_t."""
    path = CurvedPath(c)
    at = path.sample(x0, x1, 1 - t)
    swapped = path.sample(x1, x0, t)
    return torch.cat([at.x_t, swapped.x_t]), torch.cat([-at.dx_t, swapped.dx_t])


def check_curved_path(
    fn: Callable,
    amplitude: float = 1.0,
    seed: int = 0,
    verbose: bool = True,
    time_limit: float | None = TIME_LIMIT,
) -> CheckResult:
    r"""Check the curved conditional path of chapter 4, ``fn(x0, x1, t, c) -> (x_t, dx_t)``:

    .. math:: x_t = (1 - t)\,x_0 + t\,x_1 + c\,t(1 - t)\,R(x_1 - x_0),

    with :math:`R` the rotation by +90 degrees (:math:`R(a, b) = (-b, a)`), and its velocity
    :math:`\dot x_t = \frac{d}{dt}x_t`, the regression target of flow matching on this path.
    ``x0, x1`` ``(B, 2)``, ``t`` ``(B,)``, ``c`` a float (``amplitude``); returns two tensors ``(B, 2)``.

    Five cases: ``x_t`` at ``t = 0`` and ``t = 1`` (the noise ``x0`` and the data ``x1``); ``x_t`` at
    random times against :class:`~fmbook.paths.CurvedPath`; ``dx_t`` against central finite differences of
    the reader's own ``x_t`` in float64 (exact for a path quadratic in ``t``, so any missing term of the
    derivative shows); the CFM loss of a seeded network with the reader's ``(x_t, dx_t)`` against
    :func:`fmbook.losses.cfm_loss` with ``path=CurvedPath(c)``; and ``(x_t, dx_t)`` at a second amplitude
    ``c + 1.5`` against :class:`~fmbook.paths.CurvedPath`, since at the chapter's ``c = 1`` a missing factor
    ``c`` (or ``c`` taken as 1) changes nothing.
    """
    if isinstance(amplitude, bool) or not isinstance(amplitude, (int, float)) or not math.isfinite(amplitude):
        raise ValueError(f"amplitude must be a finite number, got {amplitude!r}")
    c = float(amplitude)
    path = CurvedPath(c)
    g = generator(seed)
    cases = []

    # 1. the ends of the path: x0 at t = 0, x1 at t = 1
    x0, x1 = torch.randn(5, 2, generator=g), 2 * torch.randn(5, 2, generator=g)
    zeros, ones = torch.zeros(5), torch.ones(5)
    ref = torch.cat([x0, x1])

    def ends(f: Callable, x0: Tensor = x0, x1: Tensor = x1, zeros: Tensor = zeros, ones: Tensor = ones) -> Tensor:
        return torch.cat([_path_call(f, x0, x1, zeros, c)[0], _path_call(f, x0, x1, ones, c)[0]])

    mistakes = {"the time convention is reversed: x_t must be the noise x0 at t = 0 and the data x1 at t = 1":
                torch.cat([x1, x0])}
    cases.append(Case("x_t at t = 0 is x0 and at t = 1 is x1 (5 pairs)", {"x0": x0, "x1": x1}, ends, ref, mistakes))

    # 2. x_t at random times
    x0, x1 = torch.randn(8, 2, generator=g), 2 * torch.randn(8, 2, generator=g)
    t = times(8, g)
    ref = path.sample(x0, x1, t).x_t
    rev_x, _ = _reversed_sample(x0, x1, t, c)
    mistakes = {
        "the time convention is reversed (t = 0 data, t = 1 noise)": rev_x[:8],
        "the time convention is reversed: the path runs from x1 to x0": rev_x[8:],
        "the path bends to the wrong side: R rotates by +90 degrees, R(a, b) = (-b, a)":
            CurvedPath(-c).sample(x0, x1, t).x_t,
        "this is the straight path: the bend c t (1 - t) R (x1 - x0) is missing": CurvedPath(0.0).sample(x0, x1, t).x_t,
    }
    call = lambda f, x0=x0, x1=x1, t=t: _path_call(f, x0, x1, t, c)[0]
    cases.append(Case(f"x_t at 8 random times, c = {c:g} (against fmbook.ot.CurvedPath)", {"x0": x0, "x1": x1, "t": t},
                      call, ref, _without_ties(mistakes, ref)))

    # 3. dx_t = d/dt x_t, by central differences of the reader's own x_t
    x0, x1 = torch.randn(6, 2, generator=g, dtype=F64), 2 * torch.randn(6, 2, generator=g, dtype=F64)
    t = times(6, g, 0.05, 0.95).double()
    right = path.sample(x0, x1, t)
    d = x1 - x0
    perp = torch.stack([-d[:, 1], d[:, 0]], dim=1)
    _, rev_v = _reversed_sample(x0, x1, t, c)
    tt = t[:, None]
    mistakes = {
        "a term of the product rule is missing: d/dt [t (1 - t)] = (1 - t) - t = 1 - 2t, not 1 - t":
            d + c * (1 - tt) * perp,
        "a term of the product rule is missing: d/dt [t (1 - t)] = (1 - t) - t = 1 - 2t, not -t":
            d - c * tt * perp,
        "the bend's factor is differentiated as if it were c t: d/dt [c t (1 - t)] = c (1 - 2t), not c":
            d + c * perp,
        "the bend's velocity has the wrong sign: d/dt [t (1 - t)] = 1 - 2t, not 2t - 1": d - c * (1 - 2 * tt) * perp,
        "the bend's velocity c (1 - 2t) R (x1 - x0) is missing: this is the straight path's velocity": d,
        "the sign is flipped (a velocity from data to noise?)": -right.dx_t,
        "this is the velocity of the reversed time convention (t = 0 data, t = 1 noise)": rev_v[:6],
        "you returned x_t, the point on the path, not its time derivative": right.x_t,
    }
    box: dict[str, Tensor] = {}
    h = 1e-4

    def velocity(f: Callable, x0: Tensor = x0, x1: Tensor = x1, t: Tensor = t) -> Tensor:
        _, v = _path_call(f, x0, x1, t, c)
        forward = _path_call(f, x0, x1, t + h, c)[0]
        backward = _path_call(f, x0, x1, t - h, c)[0]
        box["fd"] = (forward - backward) / (2 * h)
        return v

    def against_differences(received: Tensor) -> tuple[bool, str]:
        ok, detail = close(received, box["fd"], 1e-6, 1e-7)
        return ok, f"against central differences (x_(t+h) - x_(t-h)) / 2h of your x_t, h = {h:g}: {detail}"

    cases.append(Case("dx_t = d/dt x_t at 6 random t, float64 inputs (central differences of your x_t)",
                      {"x0": x0, "x1": x1, "t": t}, velocity, right.dx_t, _without_ties(mistakes, right.dx_t),
                      against_differences))

    # 4. a CFM loss with this path: the value against fmbook.losses.cfm_loss
    # (in float64, so that the comparison can be tight: the loss is dominated by the target)
    x0, x1 = torch.randn(16, 2, generator=g, dtype=F64), 2 * torch.randn(16, 2, generator=g, dtype=F64)
    t = times(16, g).double()
    with torch.random.fork_rng(devices=[]):  # leave the reader's global generator alone
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (), generator=g)))
        model = MLPVelocityField(dim=2, width=16, depth=2).double()

    def loss_of(x_t: Tensor, dx_t: Tensor, model: MLPVelocityField = model, t: Tensor = t) -> Tensor:
        with torch.no_grad():
            return (model(x_t, t) - dx_t).pow(2).sum(1).mean().double().reshape(1)

    with torch.no_grad():
        ref = losses.cfm_loss(model, x0, x1, t, path=path).double().reshape(1)
    straight = CurvedPath(0.0).sample(x0, x1, t)
    rev = path.sample(x0, x1, 1 - t)
    mistakes = {
        "this is the loss of the straight path": loss_of(straight.x_t, straight.dx_t),
        "this is the loss of the reversed time convention (t = 0 data, t = 1 noise)": loss_of(rev.x_t, -rev.dx_t),
    }
    call = lambda f, x0=x0, x1=x1, t=t: loss_of(*_path_call(f, x0, x1, t, c))
    tight = lambda received, ref=ref: close(received, ref, 1e-9, 1e-12)
    cases.append(Case("a CFM loss on your path, 16 pairs (against losses.cfm_loss)",
                      {"x0": x0, "x1": x1, "t": t}, call, ref, _without_ties(mistakes, ref), tight))

    # 5. the amplitude is an argument: x_t and dx_t at a second amplitude. At c = 1 a factor c
    # missing from x_t or dx_t (or c taken as 1) changes nothing, so cases 1 to 4 alone, run with the
    # chapter's amplitude 1, cannot see it.
    c2 = c + 1.5
    other = CurvedPath(c2)
    x0, x1 = torch.randn(6, 2, generator=g, dtype=F64), 2 * torch.randn(6, 2, generator=g, dtype=F64)
    t = times(6, g).double()
    tt = t[:, None]
    right2 = other.sample(x0, x1, t)
    ref2 = torch.cat([right2.x_t, right2.dx_t], dim=1)
    d = x1 - x0
    perp = torch.stack([-d[:, 1], d[:, 0]], dim=1)
    ones = CurvedPath(1.0).sample(x0, x1, t)
    mistakes = {
        f"the amplitude c is not used (this is the path of c = 1): scale the bend by c = {c2:g}":
            torch.cat([ones.x_t, ones.dx_t], dim=1),
        "the factor c of the bend's velocity is missing: d/dt [c t (1 - t)] = c (1 - 2t)":
            torch.cat([right2.x_t, d + (1 - 2 * tt) * perp], dim=1),
        "the factor c of the bend is missing from x_t: x_t = ... + c t (1 - t) R (x1 - x0)":
            torch.cat([right2.x_t - (c2 - 1) * tt * (1 - tt) * perp, right2.dx_t], dim=1),
    }
    both = lambda f, x0=x0, x1=x1, t=t, c2=c2: torch.cat(_path_call(f, x0, x1, t, c2), dim=1)
    # each row: x_t (2 columns), then dx_t (2 columns)
    cases.append(Case(f"[x_t, dx_t] at a second amplitude, c = {c2:g} (against fmbook.ot.CurvedPath)",
                      {"x0": x0, "x1": x1, "t": t}, both, ref2, _without_ties(mistakes, ref2)))
    return run_cases("check_curved_path", fn, cases, verbose, rtol=1e-4, atol=1e-5, time_limit=time_limit)

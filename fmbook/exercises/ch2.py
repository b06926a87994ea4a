r"""Checkers of the exercises of chapter 2, ODEs, flows and continuous normalizing flows.

Each checker runs the reader's function on seeded random cases against an independent
reference (see :mod:`fmbook.exercises._runner` for the time limit, the copies of the inputs and
the "not attempted" verdict) and returns a :class:`~fmbook.exercises._runner.CheckResult`.

=========================================  =====================================================
checker                                    the reader's function
=========================================  =====================================================
:func:`check_euler_step`                   ``fn(velocity, x, t, h) -> x_next``, one Euler step
:func:`check_midpoint_step`                ``fn(velocity, x, t, h) -> x_next``, one midpoint step
:func:`check_hutchinson_divergence`        ``fn(velocity, x, t, eps) -> (B,)`` Hutchinson's
                                           estimate of the divergence with the probes ``eps``
:func:`check_linear_flow`                  ``fn(A, x0, t) -> x_t`` the flow of ``u(x) = A x``
:func:`check_linear_flow_log_density`      ``fn(A, x, t) -> log p_t(x)`` for ``p_0 = N(0, I)``
=========================================  =====================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torchdiffeq
from torch import Tensor

from ._checkers import check_euler_step, check_midpoint_step
from ._runner import TIME_LIMIT, Case, CheckResult, generator, run_cases, tensor_call, times

__all__: list[str] = [
    "check_euler_step",
    "check_hutchinson_divergence",
    "check_linear_flow",
    "check_linear_flow_log_density",
    "check_midpoint_step",
]

# --------------------------------------------------------------------------- Hutchinson


def _random_field(d: int, g: torch.Generator) -> Callable[[Tensor, Tensor], Tensor]:
    r"""A random smooth field :math:`u_t(x) = W_2 \tanh(W_1 x + b + t c)`, float64, ``(B, d) -> (B, d)``.

    Its Jacobian :math:`W_2\,\mathrm{diag}(\tanh')\,W_1` is neither symmetric nor diagonal, and of order one.
    """
    width = 2 * d + 2
    w1 = torch.randn(width, d, generator=g, dtype=torch.float64)
    w2 = torch.randn(d, width, generator=g, dtype=torch.float64) / math.sqrt(width)
    bias = torch.randn(width, generator=g, dtype=torch.float64)
    c = torch.randn(width, generator=g, dtype=torch.float64)

    def velocity(x: Tensor, t: Tensor) -> Tensor:
        """a random smooth field u_t(x) = W2 tanh(W1 x + b + t c)"""
        return torch.tanh(x @ w1.T + bias + t[:, None] * c) @ w2.T

    return velocity


def _jacobians(velocity: Callable, x: Tensor, t: Tensor) -> Tensor:
    r"""The Jacobians :math:`\partial u_t(x_b) / \partial x`, ``(B, d, d)``, one full Jacobian per row."""
    rows = [
        torch.autograd.functional.jacobian(lambda y, b=b: velocity(y[None], t[b : b + 1])[0], x[b])
        for b in range(x.shape[0])
    ]
    return torch.stack(rows)


def _hutchinson_mistakes(jac: Tensor, eps: Tensor, ref: Tensor) -> dict[str, Tensor]:
    d = eps.shape[1]
    vjp = torch.einsum("bi,bij->bj", eps, jac)  # eps^T J
    mistakes = {
        "this is the exact divergence tr J: the estimate uses the probe, eps^T J eps": torch.diagonal(
            jac, dim1=-2, dim2=-1
        ).sum(-1).expand_as(ref).clone(),
        "this is the sum of the vector-Jacobian product eps^T J: multiply it by eps, then sum": vjp.sum(1),
        "the sign is flipped": -ref,
    }
    if d != 2:  # in 2-D the average over the coordinates is any factor 1/2: no hint there
        mistakes["this averages over the d coordinates: eps^T J eps is a sum"] = ref / d
    return mistakes


def check_hutchinson_divergence(
    fn: Callable, seed: int = 0, verbose: bool = True, time_limit: float | None = TIME_LIMIT
) -> CheckResult:
    r"""Check Hutchinson's estimator of the divergence (``ex-hutchinson``).

    The reader's ``fn(velocity, x, t, eps)`` returns, for each row ``b``, the one-probe estimate
    :math:`\varepsilon_b^\top J_b\,\varepsilon_b` with :math:`J_b = \partial u_t(x_b)/\partial x`, by one
    vector-Jacobian product (autograd), whatever the dimension. ``velocity(x, t)`` is a small
    random smooth field (float64); ``x`` and ``eps`` ``(B, d)``, ``t`` ``(B,)``;
    returns ``(B,)``.

    References: the full Jacobian of each row by :func:`torch.autograd.functional.jacobian`
    (Gaussian and Rademacher probes, compared value by value), and the claim of the exercise by
    Monte Carlo: over 4000 Gaussian probes at one point, the mean of the estimates must lie within
    4 standard errors of the exact divergence :math:`\operatorname{tr}J` and their variance within 4
    standard errors of :math:`2\lVert S\rVert_F^2`, :math:`S = (J + J^\top)/2`.
    """
    g = generator(seed)
    cases = []
    for b, d, probe in ((1, 3, "gaussian"), (5, 6, "gaussian"), (6, 4, "rademacher"), (4, 2, "gaussian")):
        net = _random_field(d, g)
        x = torch.randn(b, d, generator=g, dtype=torch.float64)
        t = times(b, g).double()
        if probe == "gaussian":
            eps = torch.randn(b, d, generator=g, dtype=torch.float64)
        else:
            eps = 2.0 * torch.randint(0, 2, (b, d), generator=g).double() - 1
        jac = _jacobians(net, x, t)
        ref = torch.einsum("bi,bij,bj->b", eps, jac, eps)
        call = tensor_call(net, x, t, eps, what="fn(velocity, x, t, eps)", expected=ref)
        inputs = {"velocity": net, "x": x, "t": t, "eps": eps}
        desc = f"{b} point(s) in {d}-D, {probe} probes: eps^T J eps"
        cases.append(Case(desc, inputs, call, ref, _hutchinson_mistakes(jac, eps, ref)))

    # Monte Carlo: the estimator is unbiased, with the variance 2 |S|_F^2
    k, d = 4000, 5
    net = _random_field(d, g)
    x = torch.randn(1, d, generator=g, dtype=torch.float64).expand(k, d).clone()
    t = torch.full((k,), 0.4, dtype=torch.float64)
    eps = torch.randn(k, d, generator=g, dtype=torch.float64)
    jac = _jacobians(net, x[:1], t[:1])
    trace = float(torch.trace(jac[0]))
    sym = 0.5 * (jac[0] + jac[0].T)
    variance = float(2 * (sym**2).sum())
    ref = torch.einsum("bi,ij,bj->b", eps, jac[0], eps)

    def compare(received: Tensor) -> tuple[bool, str]:
        if not bool(torch.isfinite(received).all()):
            return False, "the received value contains NaN or inf"
        mean, var = float(received.mean()), float(received.var())
        se_mean = float(received.std()) / math.sqrt(k)
        se_var = float(((received - mean) ** 2).std()) / math.sqrt(k)
        ok = abs(mean - trace) < 4 * se_mean and abs(var - variance) < 4 * se_var
        detail = (
            f"mean of the estimates {mean:.4f} +- {se_mean:.4f}, divergence {trace:.4f}; "
            f"variance {var:.4f} +- {se_var:.4f}, 2 |S|_F^2 = {variance:.4f}"
        )
        return ok, detail

    call = tensor_call(net, x, t, eps, what="fn(velocity, x, t, eps)", expected=ref)
    inputs = {"velocity": net, "x": x, "t": t, "eps": eps}
    desc = f"{k} Gaussian probes at one point in {d}-D: mean tr J, variance 2|S|^2"
    cases.append(Case(desc, inputs, call, ref, _hutchinson_mistakes(jac.expand(k, d, d), eps, ref), compare))
    return run_cases("check_hutchinson_divergence", fn, cases, verbose, time_limit=time_limit)


# --------------------------------------------------------------------------- the linear flow


def _linear_cases(g: torch.Generator) -> list[tuple[Tensor, Tensor, float]]:
    """``(A, points, t)`` of the linear-flow checks: dimensions 1 to 4, t in [0.2, 1] and t = 1."""
    cases = []
    for b, d, t in ((1, 1, None), (5, 2, 1.0), (6, 3, None), (4, 4, None)):
        a = 0.7 * torch.randn(d, d, generator=g, dtype=torch.float64)
        x = torch.randn(b, d, generator=g, dtype=torch.float64)
        if t is None:
            t = round(0.2 + 0.8 * float(torch.rand((), generator=g)), 3)
        cases.append((a, x, t))
    return cases


def _flow_matrix(a: Tensor, t: float) -> Tensor:
    r"""The flow of :math:`\dot x = A x` at time ``t`` as a matrix, :math:`\psi_t(x) = M_t x`: the
    columns of :math:`M_t` solve the ODE from the unit vectors (torchdiffeq, dopri5, tolerance 1e-10)."""
    d = a.shape[0]
    eye = torch.eye(d, dtype=torch.float64)
    grid = torch.tensor([0.0, t], dtype=torch.float64)
    # rows y are points: dy/dt = y A^T
    rows = torchdiffeq.odeint(lambda s, y: y @ a.T, eye, grid, method="dopri5", rtol=1e-10, atol=1e-10)[-1]
    return rows.T


def check_linear_flow(
    fn: Callable, seed: int = 0, verbose: bool = True, time_limit: float | None = TIME_LIMIT
) -> CheckResult:
    r"""Check the flow of the linear field :math:`u_t(x) = A x` (``ex-linear-flow``).

    The reader's ``fn(A, x0, t)`` returns :math:`\psi_t(x_0) = e^{tA} x_0` for each row of ``x0``
    (batch-first: ``x0 @ torch.linalg.matrix_exp(t * A).T``). ``A`` ``(d, d)``, ``x0`` ``(B, d)``,
    float64; ``t`` a float in [0, 1]; returns ``(B, d)``.

    Reference: the ODE :math:`\dot x = A x` solved numerically by torchdiffeq's dopri5 at a
    tolerance of :math:`10^{-10}`.
    """
    g = generator(seed)
    cases = []
    for a, x0, t in _linear_cases(g):
        ref = x0 @ _flow_matrix(a, t).T
        e = torch.linalg.matrix_exp(t * a)
        mistakes = {
            "x0 @ e^{tA} multiplies by the transpose: batch-first rows need x0 @ e^{tA}.T": x0 @ e,
            "torch.exp is the exponential of each entry: use torch.linalg.matrix_exp": x0 @ torch.exp(t * a).T,
            "the time is missing: this is e^{A} x0, the flow at t = 1": x0 @ torch.linalg.matrix_exp(a).T,
            "e^{-tA} x0 is the inverse map, the flow backwards in time": x0 @ torch.linalg.matrix_exp(-t * a).T,
            "x0 + t A x0 is one Euler step, not the flow": x0 + t * x0 @ a.T,
        }
        mistakes = {k: v for k, v in mistakes.items() if not torch.allclose(v, ref, rtol=1e-3, atol=1e-5)}
        call = tensor_call(a, x0, t, what="fn(A, x0, t)", expected=ref)
        b, d = x0.shape
        cases.append(Case(f"{b} point(s) in {d}-D, t = {t:g}", {"A": a, "x0": x0, "t": t}, call, ref, mistakes))
    return run_cases("check_linear_flow", fn, cases, verbose, rtol=1e-6, atol=1e-8, time_limit=time_limit)


def check_linear_flow_log_density(
    fn: Callable, seed: int = 0, verbose: bool = True, time_limit: float | None = TIME_LIMIT
) -> CheckResult:
    r"""Check the log-density along the linear flow :math:`u_t(x) = A x` from :math:`\mathcal N(0, I)`
    (``ex-linear-flow``).

    The reader's ``fn(A, x, t)`` returns :math:`\log p_t(x) = \log p_0(e^{-tA} x) - t\operatorname{tr}A`
    for each row of ``x``, with :math:`p_0 = \mathcal N(0, I)` (the instantaneous change of variables:
    the divergence of :math:`Ax` is :math:`\operatorname{tr} A`). ``A`` ``(d, d)``, ``x`` ``(B, d)``,
    float64; ``t`` a float in [0, 1]; returns ``(B,)``.

    Reference: :math:`p_t` is the Gaussian :math:`\mathcal N(0, M_t M_t^\top)` with :math:`M_t` the
    flow as a matrix, obtained by solving the ODE numerically (torchdiffeq, dopri5, tolerance
    :math:`10^{-10}`); its log-density by :class:`torch.distributions.MultivariateNormal`.
    """
    g = generator(seed)
    cases = []
    for a, x, t in _linear_cases(g):
        m = _flow_matrix(a, t)
        d = a.shape[0]
        law = torch.distributions.MultivariateNormal(torch.zeros(d, dtype=torch.float64), m @ m.T)
        ref = law.log_prob(x)

        def log_p0(y: Tensor, d: int = d) -> Tensor:
            return -0.5 * (y**2).sum(1) - 0.5 * d * math.log(2 * math.pi)

        back = x @ torch.linalg.matrix_exp(-t * a).T
        tr = float(torch.trace(a))
        mistakes = {
            "the sign of the divergence term is flipped: a flow that spreads points (tr A > 0) lowers "
            "the density, log p_t(x) = log p_0(e^{-tA} x) - t tr A": log_p0(back) + t * tr,
            "the divergence term -t tr A is missing": log_p0(back),
            "the point must be pulled back with e^{-tA}, not pushed with e^{tA}": log_p0(
                x @ torch.linalg.matrix_exp(t * a).T
            ) - t * tr,
            "the time is missing in front of tr A": log_p0(back) - tr,
            "the Gaussian's normalising constant -(d/2) log(2 pi) is missing": log_p0(back) - t * tr
            + 0.5 * d * math.log(2 * math.pi),
        }
        mistakes = {k: v for k, v in mistakes.items() if not torch.allclose(v, ref, rtol=1e-3, atol=1e-5)}
        call = tensor_call(a, x, t, what="fn(A, x, t)", expected=ref)
        b = x.shape[0]
        cases.append(Case(f"{b} point(s) in {d}-D, t = {t:g}", {"A": a, "x": x, "t": t}, call, ref, mistakes))
    return run_cases("check_linear_flow_log_density", fn, cases, verbose, rtol=1e-6, atol=1e-8,
                     time_limit=time_limit)

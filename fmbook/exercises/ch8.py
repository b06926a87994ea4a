r"""Checkers of the exercises of chapter 8, Flow matching in practice.

Each checker runs the reader's function on seeded random cases against an independent
reference (see :mod:`fmbook.exercises._runner` for the time limit, the copies of the inputs and
the "not attempted" verdict) and returns a :class:`~fmbook.exercises._runner.CheckResult`.

=======================================  =======================================================
checker                                  the reader's function
=======================================  =======================================================
:func:`check_class_log_posterior`        ``fn(x, t, data, labels, c) -> log p_t(c | x)``, the
                                         "classifier" that guidance raises to a power
                                         (``ex-ch8-classifier``)
:func:`check_ho_salimans_guidance`       ``fn(eps_c, eps_u, x, t, w_hs, scheduler) -> velocity``
                                         of noise predictions guided with Ho and Salimans' scale
                                         (``ex-ch8-cfg-convention``)
:func:`check_ralston_step`               ``fn(velocity, x, t, h) -> x_next``, one step of
                                         Ralston's second-order method (``ex-ch8-ralston``)
:func:`check_frechet_distance`           ``fn(features_a, features_b) -> d^2``, the Frechet
                                         distance of two feature sets (``ex-ch8-floor``)
=======================================  =======================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import ot
import torch
from torch import Tensor

from .. import guidance, paths, solvers
from ._checkers import _test_velocity
from ._runner import (
    TIME_LIMIT,
    Case,
    CheckResult,
    Mismatch,
    as_tensor_like,
    generator,
    run_cases,
    tensor_call,
)

__all__: list[str] = [
    "check_class_log_posterior",
    "check_ho_salimans_guidance",
    "check_ralston_step",
    "check_frechet_distance",
]


# --------------------------------------------------------------------------- the classifier of guidance


def _value_and_gradient(fn: Callable, x: Tensor, t: Tensor, data: Tensor, labels: Tensor, c: int) -> Tensor:
    """``fn(x, t, data, labels, c)`` ``(B,)`` and its gradient in ``x``, as one tensor ``(B, 1 + d)``."""
    xg = x.detach().clone().requires_grad_(True)
    out = fn(xg, t, data, labels, c)
    value = as_tensor_like(out, x[:, 0], "fn(x, t, data, labels, c)")
    if not isinstance(out, Tensor) or not out.requires_grad:
        raise Mismatch("log p_t(c | x) must be differentiable in x: compute it with torch operations on x")
    (grad,) = torch.autograd.grad(out.sum(), xg, allow_unused=True)
    if grad is None:
        raise Mismatch("your log p_t(c | x) does not depend on x")
    return torch.cat([value[:, None], grad.detach()], dim=1)


def check_class_log_posterior(
    fn: Callable, seed: int = 0, verbose: bool = True, time_limit: float | None = TIME_LIMIT
) -> CheckResult:
    r"""Check the class posterior of a labelled point set, ``fn(x, t, data, labels, c)``.

    The data are the rows of ``data`` ``(N, d)`` with classes ``labels`` ``(N,)`` (ints), the
    source is :math:`\mathcal N(0, I)` and the path CondOT, :math:`x_t = t x_1 + (1 - t) x_0`. The
    reader returns :math:`\log p_t(c \mid x) = \log p_t(x \mid c) + \log p(c) - \log p_t(x)`, shape
    ``(B,)``, for ``x`` ``(B, d)``, ``t`` ``(B,)`` in (0, 1) and a class ``c`` (an int). It must be
    differentiable in ``x``: its gradient is compared with
    :math:`\nabla\log p_t(x \mid c) - \nabla\log p_t(x)`, the guidance direction of chapter 8.
    References: the value as the total posterior weight of the class's points,
    :math:`\sum_{i: y_i = c} w_i(x)` (:func:`~fmbook.marginals.posterior_weights`), and the gradient as the
    difference of two :func:`~fmbook.marginals.marginal_score`.
    """
    g = generator(seed)
    cases = []
    for b, d, n in ((1, 2, 6), (6, 2, 12), (8, 3, 15), (5, 2, 20)):
        data = 1.5 * torch.randn(n, d, generator=g, dtype=torch.float64)
        labels = torch.randint(0, 3, (n,), generator=g)
        labels[:3] = torch.tensor([0, 1, 2])  # every class present, in unequal shares
        c = int(torch.randint(0, 3, (), generator=g))
        x = 1.5 * torch.randn(b, d, generator=g, dtype=torch.float64)
        t = 0.2 + 0.7 * torch.rand(b, generator=g, dtype=torch.float64)
        members = data[labels == c]
        weights = paths.posterior_weights(x, t, data)
        value = torch.log(weights[:, labels == c].sum(1))
        grad = paths.marginal_score(x, t, members) - paths.marginal_score(x, t, data)
        ref = torch.cat([value[:, None], grad], dim=1)
        log_prior = math.log(members.shape[0] / n)

        def bayes(
            xx, tt, sign_prior=1.0, flip=False, prob=False, prior=None, members=members, data=data, log_prior=log_prior
        ):
            tt = 1 - tt if flip else tt
            out = paths.marginal_log_density(xx, tt, members) - paths.marginal_log_density(xx, tt, data)
            out = out + (sign_prior * log_prior if prior is None else math.log(prior))
            return torch.exp(out) if prob else out

        variants = {
            "the prior log p(c) is missing: p_t(c | x) = p_t(x | c) p(c) / p_t(x)": lambda xx, tt, *_: bayes(
                xx, tt, 0.0
            ),
            "the ratio is upside down: log p_t(x | c) - log p_t(x), not the reverse": lambda xx, tt, *_: -bayes(
                xx, tt, 0.0
            ),
            "the time convention is reversed (t = 0 data, t = 1 noise)": lambda xx, tt, *_: bayes(xx, tt, flip=True),
            "this is p_t(c | x), not its logarithm": lambda xx, tt, *_: bayes(xx, tt, prob=True),
            "the prior p(c) is the share of the points in class c, not 1 / (number of classes)": lambda xx, tt, *_: (
                bayes(xx, tt, prior=1 / 3)
            ),
        }
        mistakes = {h: _value_and_gradient(f, x, t, data, labels, c) for h, f in variants.items()}
        mistakes = {h: v for h, v in mistakes.items() if not torch.allclose(v, ref)}

        def call(reader: Callable, x=x, t=t, data=data, labels=labels, c=c) -> Tensor:
            return _value_and_gradient(reader, x, t, data, labels, c)

        desc = f"{b} point(s) in {d}-D, {n} labelled points, class {c}: value, gradient"
        inputs = {"x": x, "t": t, "data": data, "labels": labels, "c": c}
        cases.append(Case(desc, inputs, call, ref, mistakes))
    return run_cases("check_class_log_posterior", fn, cases, verbose, rtol=1e-6, atol=1e-8, time_limit=time_limit)


# --------------------------------------------------------------------------- the guidance scale


def check_ho_salimans_guidance(
    fn: Callable, seed: int = 0, verbose: bool = True, time_limit: float | None = TIME_LIMIT
) -> CheckResult:
    r"""Check guidance of noise predictions with Ho and Salimans' scale, ``fn(eps_c, eps_u, x, t, w_hs, scheduler)``.

    Ho and Salimans (2022) guide noise predictions,
    :math:`\tilde\varepsilon = (1 + w_{\mathrm{HS}})\hat\varepsilon_c - w_{\mathrm{HS}}\hat\varepsilon_\varnothing`;
    the reader returns the velocity of the guided prediction on the affine path of ``scheduler``
    (a :class:`~fmbook.schedulers.Scheduler`) at ``x`` ``(B, d)`` and times ``t`` ``(B,)``. Shapes:
    ``eps_c, eps_u`` ``(B, d)``; ``w_hs`` a float; returns ``(B, d)``. Reference: the book's rule
    on the velocities, :func:`fmbook.guidance.combine_guidance` of the two converted velocities
    (:func:`~fmbook.parameterizations.convert`) with the book's scale :math:`w = 1 + w_{\mathrm{HS}}`
    (:func:`fmbook.guidance.guidance_scale_from_ho_salimans`).
    """
    g = generator(seed)
    plan = (
        ("CondOT", paths.CondOTScheduler(), 0.3, 1, 2),
        ("CondOT", paths.CondOTScheduler(), 2.0, 6, 2),
        ("VP", paths.VPScheduler(), 0.0, 5, 3),
        ("cosine", paths.CosineScheduler(), -1.0, 4, 2),
        ("cosine", paths.CosineScheduler(), 4.0, 8, 4),
    )
    cases = []
    for name, scheduler, w_hs, b, d in plan:
        x = torch.randn(b, d, generator=g, dtype=torch.float64)
        eps_c, eps_u = (torch.randn(b, d, generator=g, dtype=torch.float64) for _ in range(2))
        t = 0.1 + 0.8 * torch.rand(b, generator=g, dtype=torch.float64)

        def velocity(eps, tt, x=x, scheduler=scheduler):
            return paths.convert(eps, "epsilon", "velocity", x, tt, scheduler)

        v_c, v_u = velocity(eps_c, t), velocity(eps_u, t)
        w = guidance.guidance_scale_from_ho_salimans(w_hs)
        ref = guidance.combine_guidance(v_c, v_u, w)
        mistakes = {
            "w_HS was used as the book's scale: the book's w is 1 + w_HS": guidance.combine_guidance(v_c, v_u, w_hs),
            "the book's w is 1 + w_HS, not w_HS - 1": guidance.combine_guidance(v_c, v_u, w_hs - 1),
            "the conditional and the unconditional predictions are swapped": guidance.combine_guidance(v_u, v_c, w),
            "this is the guided noise prediction: convert it to a velocity": (1 + w_hs) * eps_c - w_hs * eps_u,
            "the time convention is reversed (t = 0 data, t = 1 noise)": guidance.combine_guidance(
                velocity(eps_c, 1 - t), velocity(eps_u, 1 - t), w
            ),
            "the conversion ignores the path: use the scheduler's alpha_t, sigma_t": guidance.combine_guidance(
                *(paths.convert(e, "epsilon", "velocity", x, t, paths.CondOTScheduler()) for e in (eps_c, eps_u)), w
            ),
        }
        mistakes = {h: v for h, v in mistakes.items() if not torch.allclose(v, ref)}
        call = tensor_call(eps_c, eps_u, x, t, w_hs, scheduler, what="fn(eps_c, eps_u, x, t, w_hs, scheduler)",
                           expected=ref)
        desc = f"{b} point(s) in {d}-D, {name} path, w_HS = {w_hs:g}"
        inputs = {"eps_c": eps_c, "eps_u": eps_u, "x": x, "t": t, "w_hs": w_hs, "scheduler": scheduler}
        cases.append(Case(desc, inputs, call, ref, mistakes))
    return run_cases("check_ho_salimans_guidance", fn, cases, verbose, rtol=1e-6, atol=1e-9, time_limit=time_limit)


# --------------------------------------------------------------------------- Ralston's method

#: Ralston's method as a Butcher tableau: nodes c, stage matrix A, weights b.
RALSTON_TABLEAU = {"c": (0.0, 2 / 3), "A": ((0.0, 0.0), (2 / 3, 0.0)), "b": (0.25, 0.75)}


def _explicit_rk(tableau: dict, velocity: Callable, x: Tensor, t: Tensor, h: Tensor) -> Tensor:
    r"""One step of the explicit Runge-Kutta method of a Butcher tableau:
    :math:`k_i = u(x + h\sum_{j<i} A_{ij} k_j,\ t + c_i h)`, :math:`x + h\sum_i b_i k_i`."""
    stages: list[Tensor] = []
    for c_i, row in zip(tableau["c"], tableau["A"]):
        y = x + h * sum((a * k for a, k in zip(row, stages) if a), torch.zeros_like(x))
        stages.append(velocity(y, t + c_i * h))
    return x + h * sum(b_i * k for b_i, k in zip(tableau["b"], stages))


def _two_stage(node: float, weights: tuple[float, float], time_node: float | None = None) -> dict:
    """The tableau of a two-stage method with second node ``node`` (its time at ``time_node``)."""
    return {"c": (0.0, node if time_node is None else time_node), "A": ((0.0, 0.0), (node, 0.0)), "b": weights}


def _tan_field(x: Tensor, t: Tensor | float) -> Tensor:
    r""":math:`\dot x = \cos(t)(1 + x^2)`, solved by :math:`x(t) = \tan(\arctan x(0) + \sin t)`."""
    t = torch.as_tensor(t, dtype=x.dtype)
    if t.ndim == 1:
        t = t[:, None]
    return torch.cos(t) * (1 + x * x)


def _measured_order(step: Callable) -> Tensor:
    """Minus the slope of log(max error at t = 1) against log(h), integrating ``_tan_field`` from t = 0
    with 16, 32 and 64 steps of ``step`` from x(0) in [-1, 0]."""
    x0 = -torch.linspace(0.0, 1.0, 8, dtype=torch.float64).reshape(4, 2)
    exact = torch.tan(torch.atan(x0) + math.sin(1.0))
    errors = []
    for n in (16, 32, 64):
        x, h = x0, torch.tensor(1.0 / n, dtype=torch.float64)
        for i in range(n):
            out = step(_tan_field, x, torch.tensor(i / n, dtype=torch.float64), h)
            x = as_tensor_like(out, x0, "fn(velocity, x, t, h)")
        errors.append(float((x - exact).abs().max()))
    if not all(math.isfinite(e) and e > 0 for e in errors):
        raise Mismatch(f"the integration did not give finite, nonzero errors: {errors}")
    slope = np.polyfit(np.log([1 / 16, 1 / 32, 1 / 64]), np.log(errors), 1)[0]
    return torch.tensor([slope], dtype=torch.float64)


def _judge_order(received: object) -> tuple[bool, str]:
    order = float(received[0]) if isinstance(received, Tensor) else float("nan")
    ok = abs(order - 2) < 0.15
    detail = f"measured order {order:.2f}; a second-order method has 2"
    if not ok and abs(order - 1) < 0.3:
        detail += " (this is first order: check the weights 1/4, 3/4 and the time t + 2h/3 of k2)"
    return ok, detail


def check_ralston_step(
    fn: Callable, seed: int = 0, verbose: bool = True, time_limit: float | None = TIME_LIMIT
) -> CheckResult:
    r"""Check one step of Ralston's method, ``fn(velocity, x, t, h)``:
    :math:`k_1 = u_t(x)`, :math:`k_2 = u_{t + 2h/3}(x + \tfrac23 h k_1)`, :math:`x + h(\tfrac14 k_1 + \tfrac34 k_2)`.

    ``velocity(x, t)`` is a nonlinear, time-dependent field; ``x`` ``(B, d)``; ``t`` and ``h`` are
    0-dim tensors (``h`` may be negative). Returns ``(B, d)``. References: one step of the generic
    explicit Runge-Kutta method with Ralston's Butcher tableau, and the order of convergence (2)
    measured on :math:`\dot x = \cos t\,(1 + x^2)`, whose solution is
    :math:`\tan(\arctan x_0 + \sin t)`.
    """
    g = generator(seed)
    cases = []
    for (b, d), h in zip(((1, 2), (5, 2), (8, 3), (4, 5)), (0.1, 0.25, -0.2, 0.05)):
        x = torch.randn(b, d, generator=g)
        t = torch.tensor(0.2 + 0.5 * float(torch.rand(1, generator=g)))
        h = torch.tensor(h)
        ref = _explicit_rk(RALSTON_TABLEAU, _test_velocity, x, t, h)
        mistakes = {
            "this is Heun's method (k2 at t + h, weights 1/2, 1/2); Ralston's k2 is at t + 2h/3": solvers.heun_step(
                _test_velocity, x, t, h
            ),
            "this is the midpoint method; Ralston's k2 is at t + 2h/3, weighted 3/4": solvers.midpoint_step(
                _test_velocity, x, t, h
            ),
            "this is an Euler step: the second stage k2 is missing": solvers.euler_step(_test_velocity, x, t, h),
            "k2 is evaluated at time t; its time is t + 2h/3": _explicit_rk(
                _two_stage(2 / 3, (0.25, 0.75), time_node=0.0), _test_velocity, x, t, h
            ),
            "k2 is evaluated at time t + h; its time is t + 2h/3": _explicit_rk(
                _two_stage(2 / 3, (0.25, 0.75), time_node=1.0), _test_velocity, x, t, h
            ),
            "the weights are swapped: x + h (k1 / 4 + 3 k2 / 4)": _explicit_rk(
                _two_stage(2 / 3, (0.75, 0.25)), _test_velocity, x, t, h
            ),
        }
        call = tensor_call(_test_velocity, x, t, h, what="fn(velocity, x, t, h)", expected=ref)
        inputs = {"velocity": _test_velocity, "x": x, "t": t, "h": h}
        desc = f"one step, {b} point(s) in {d}-D, t = {float(t):.3f}, h = {float(h):g}"
        cases.append(Case(desc, inputs, call, ref, mistakes))
    order_case = Case(
        "order on dx/dt = cos(t)(1 + x^2), 16 to 64 steps",
        {"velocity": _tan_field},
        _measured_order,
        torch.tensor([2.0], dtype=torch.float64),
        compare=_judge_order,
    )
    cases.append(order_case)
    return run_cases("check_ralston_step", fn, cases, verbose, rtol=1e-5, atol=1e-6, time_limit=time_limit)


# --------------------------------------------------------------------------- the Frechet distance


def _gaussian_fit(features: Tensor, biased: bool = False) -> tuple[np.ndarray, np.ndarray]:
    f = features.double().numpy()
    return f.mean(0), np.atleast_2d(np.cov(f.T, bias=biased))


def _frechet_variant(a: Tensor, b: Tensor, kind: str = "right") -> Tensor:
    """The squared Frechet distance by POT's Bures-Wasserstein distance, and the values that
    typical mistakes give."""
    (mu_a, cov_a), (mu_b, cov_b) = _gaussian_fit(a, kind == "biased"), _gaussian_fit(b, kind == "biased")
    w = float(ot.gaussian.bures_wasserstein_distance(mu_a, mu_b, cov_a, cov_b))
    d2 = w * w
    mean_term = float(((mu_a - mu_b) ** 2).sum())
    if kind == "sqrt":
        d2 = w
    elif kind == "no mean":
        d2 = d2 - mean_term
    elif kind == "no 2":
        cross = 0.5 * (np.trace(cov_a) + np.trace(cov_b) - (d2 - mean_term))  # Tr((A^1/2 B A^1/2)^1/2)
        d2 = mean_term + np.trace(cov_a) + np.trace(cov_b) - cross
    elif kind == "no root":
        d2 = mean_term + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(cov_a @ cov_b)
    return torch.tensor([d2], dtype=torch.float64)


def _read_number(out: object) -> Tensor:
    if isinstance(out, np.ndarray) and out.size == 1:  # e.g. np.asarray(d2) or a 1-element array
        out = out.reshape(()).item() if np.isrealobj(out) else complex(out.reshape(()))
    if isinstance(out, (complex, np.complexfloating)) or (isinstance(out, Tensor) and out.is_complex()):
        raise Mismatch(
            "fn(features_a, features_b) returned a complex number: the matrix square root of a product "
            "of covariances can carry a tiny imaginary part from rounding; return the real part"
        )
    if isinstance(out, Tensor):
        if out.numel() != 1:
            raise Mismatch(f"fn(features_a, features_b) must return one number, got shape {tuple(out.shape)}")
        return out.detach().double().reshape(1)
    if isinstance(out, (float, int, np.floating, np.integer)) and not isinstance(out, bool):
        return torch.tensor([float(out)], dtype=torch.float64)
    raise Mismatch(f"fn(features_a, features_b) must return a number (float or 0-dim tensor), got {type(out).__name__}")


def check_frechet_distance(
    fn: Callable, seed: int = 0, verbose: bool = True, time_limit: float | None = TIME_LIMIT
) -> CheckResult:
    r"""Check the Frechet distance of two feature sets, ``fn(features_a, features_b) -> d^2``.

    Gaussians are fitted to the rows (means and unbiased covariances, as ``torch.cov``) and
    :math:`d^2 = \lVert\mu_a - \mu_b\rVert^2
    + \operatorname{Tr}\big(\Sigma_a + \Sigma_b - 2(\Sigma_a^{1/2}\Sigma_b\Sigma_a^{1/2})^{1/2}\big)`
    is returned, the square of the 2-Wasserstein distance between the two Gaussians (the FID's
    convention). Shapes: ``features_a`` ``(n, k)``, ``features_b`` ``(m, k)`` (float32); returns
    a real number (a float, a 0-dim tensor or a one-element array). Reference: POT's
    ``ot.gaussian.bures_wasserstein_distance``, squared.
    """
    g = generator(seed)
    cases = []
    for n, m, k, shift in ((40, 40, 2, 0.0), (60, 50, 3, 0.5), (200, 150, 5, 0.2), (100, 120, 8, 1.0)):
        mix_a, mix_b = torch.randn(k, k, generator=g), torch.randn(k, k, generator=g)
        a = torch.randn(n, k, generator=g) @ mix_a
        b = torch.randn(m, k, generator=g) @ (mix_a if shift == 0.0 else mix_a + 0.5 * mix_b) + shift
        ref = _frechet_variant(a, b)
        mistakes = {
            "this is d, the distance; the Frechet distance (like the FID) is reported as d^2": _frechet_variant(
                a, b, "sqrt"
            ),
            "the term |mu_a - mu_b|^2 of the means is missing": _frechet_variant(a, b, "no mean"),
            "the cross term has a factor 2: Tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)": _frechet_variant(
                a, b, "no 2"
            ),
            "the matrix square root of S_a^1/2 S_b S_a^1/2 is missing": _frechet_variant(a, b, "no root"),
            "the covariances divide by n (biased); use the unbiased 1/(n - 1), as torch.cov": _frechet_variant(
                a, b, "biased"
            ),
        }
        mistakes = {h: v for h, v in mistakes.items() if not torch.allclose(v, ref, rtol=1e-3)}
        call = lambda reader, a=a, b=b: _read_number(reader(a, b))
        same = "the same distribution" if shift == 0.0 else f"shifted by {shift:g}"
        desc = f"{n} and {m} points in {k}-D, {same}"
        cases.append(Case(desc, {"features_a": a, "features_b": b}, call, ref, mistakes))
    return run_cases("check_frechet_distance", fn, cases, verbose, rtol=1e-4, atol=1e-6, time_limit=time_limit)

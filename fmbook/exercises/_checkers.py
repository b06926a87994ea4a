"""The checkers of the exercises on paths, solver steps, the CFM loss and OT pairings.

Signatures the reader's functions must have are listed in :mod:`fmbook.exercises`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import ot
import torch
import torchdiffeq
from torch import Tensor

from .. import losses, paths, solvers
from ..models import MLPVelocityField
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
    show,
    tensor_call,
    times,
)

# --------------------------------------------------------------------------- paths


def check_conditional_velocity(
    fn: Callable,
    scheduler: paths.Scheduler | None = None,
    form: str = "endpoints",
    seed: int = 0,
    verbose: bool = True,
    time_limit: float | None = TIME_LIMIT,
) -> CheckResult:
    r"""Check a conditional velocity of the affine path :math:`x_t = \alpha_t x_1 + \sigma_t x_0`.

    With ``form="endpoints"`` the reader's ``fn(x0, x1, t)`` returns
    :math:`\dot\alpha_t x_1 + \dot\sigma_t x_0` (for CondOT: :math:`x_1 - x_0`). With
    ``form="point"``, ``fn(x, x1, t)`` returns the velocity at a point ``x`` of the path
    conditioned on ``x1``, :math:`u_t(x \mid x_1) = \dot\alpha_t x_1 + \frac{\dot\sigma_t}{\sigma_t}(x - \alpha_t x_1)`
    (for CondOT: :math:`(x_1 - x)/(1 - t)`), tested at ``t`` in [0, 0.95].

    Shapes: ``x0, x1, x`` ``(B, d)``, ``t`` ``(B,)``; returns ``(B, d)``.
    Reference: :meth:`fmbook.paths.AffinePath.sample` and :func:`~fmbook.parameterizations.conditional_velocity`.
    """
    scheduler = check_scheduler(scheduler)
    if form not in ("endpoints", "point"):
        raise ValueError(f"form must be 'endpoints' or 'point', got {form!r}")
    g = generator(seed)
    path = paths.AffinePath(scheduler)
    cases = []
    for b, d in SHAPES:
        x0, x1 = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)
        t = times(b, g, 0.0, 1.0 if form == "endpoints" else 0.95)
        ref = path.sample(x0, x1, t)
        flipped = path.sample(x0, x1, 1 - t)
        mistakes = {
            "the sign is flipped (velocity from data to noise?)": -ref.dx_t,
            "this is the velocity of the reversed time convention (t = 0 data, t = 1 noise)": -flipped.dx_t,
        }
        if form == "endpoints":
            mistakes["you returned x_t, the point on the path, not its time derivative"] = ref.x_t
            call = tensor_call(x0, x1, t, what="fn(x0, x1, t)", expected=ref.dx_t)
            inputs = {"x0": x0, "x1": x1, "t": t}
        else:
            sig = scheduler.coefficients(t).sigma_t[:, None]
            mistakes["a factor 1 / sigma_t is missing (for CondOT: (x1 - x) / (1 - t))"] = sig * ref.dx_t
            mistakes["this is the velocity of the reversed time convention (t = 0 data, t = 1 noise)"] = (
                -paths.conditional_velocity(ref.x_t, x1, 1 - t, scheduler)
            )
            call = tensor_call(ref.x_t, x1, t, what="fn(x, x1, t)", expected=ref.dx_t)
            inputs = {"x": ref.x_t, "x1": x1, "t": t}
        cases.append(Case(f"{b} point(s) in {d}-D, {scheduler!r}", inputs, call, ref.dx_t, mistakes))
    return run_cases("check_conditional_velocity", fn, cases, verbose, time_limit=time_limit)


def check_score_from_velocity(
    fn: Callable, scheduler: paths.Scheduler | None = None, seed: int = 0, verbose: bool = True,
    time_limit: float | None = TIME_LIMIT,
) -> CheckResult:
    r"""Check the conversion of a velocity into a score on a Gaussian path (source N(0, I)).

    The reader's ``fn(v, x, t)`` turns a velocity ``v`` at the point ``x`` and time ``t`` into
    the score :math:`\nabla\log p_t(x) = -\hat x_0 / \sigma_t`, where
    :math:`\hat x_0 = (\alpha_t v - \dot\alpha_t x)/(\alpha_t\dot\sigma_t - \dot\alpha_t\sigma_t)`
    is the predicted noise;
    for CondOT, :math:`(t v - x)/(1 - t)`. Tested at ``t`` in [0.05, 0.95] where it is defined.
    Shapes: ``v, x`` ``(B, d)``, ``t`` ``(B,)``; returns ``(B, d)``.
    Reference: :func:`~fmbook.parameterizations.convert` from ``"velocity"`` to ``"score"``.
    """
    scheduler = check_scheduler(scheduler)
    g = generator(seed)
    cases = []
    for b, d in SHAPES:
        x, v = 2 * torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)
        t = times(b, g, 0.05, 0.95)
        ref = paths.convert(v, "velocity", "score", x, t, scheduler)
        flipped = paths.convert(v, "velocity", "score", x, 1 - t, scheduler)
        a, s, _, _ = (c[:, None] for c in scheduler.coefficients(t))
        mistakes = {
            "the sign is flipped": -ref,
            "this is the score of the reversed time convention (t = 0 data, t = 1 noise)": flipped,
            "this is the predicted noise x0 = -sigma_t * score, not the score": -s * ref,
            "the division by sigma_t is missing: the score is -x0 / sigma_t": s * ref,
        }
        call = tensor_call(v, x, t, what="fn(v, x, t)", expected=ref)
        cases.append(Case(f"{b} point(s) in {d}-D, {scheduler!r}", {"v": v, "x": x, "t": t}, call, ref, mistakes))
    return run_cases("check_score_from_velocity", fn, cases, verbose, time_limit=time_limit)


def check_marginal_velocity(
    fn: Callable, scheduler: paths.Scheduler | None = None, seed: int = 0, verbose: bool = True,
    time_limit: float | None = TIME_LIMIT,
) -> CheckResult:
    r"""Check the exact marginal velocity of a finite data set under a Gaussian source.

    The reader's ``fn(x, t, data)`` returns :math:`u_t(x) = \sum_i w_i(x)\, u_t(x \mid z_i)`,
    the conditional velocities averaged with the posterior weights
    :math:`w_i(x) \propto \mathcal N(x; \alpha_t z_i, \sigma_t^2 I)`. Tested at ``t`` in [0, 0.95].
    Shapes: ``x`` ``(B, d)``, ``t`` ``(B,)``, ``data`` ``(N, d)``; returns ``(B, d)``.
    Reference: :func:`~fmbook.marginals.marginal_velocity`.
    """
    scheduler = check_scheduler(scheduler)
    g = generator(seed)
    cases = []
    for b, d in SHAPES:
        data = 1.5 * torch.randn(4 + b, d, generator=g)
        x, t = torch.randn(b, d, generator=g), times(b, g, 0.0, 0.95)
        ref = paths.marginal_velocity(x, t, data, scheduler)
        each = torch.stack([paths.conditional_velocity(x, z.expand(b, d), t, scheduler) for z in data], dim=1)
        mistakes = {
            "the sign is flipped": -ref,
            "this is a plain average of the conditional velocities: weight them by the posterior w_i(x)": each.mean(1),
        }
        mistakes["the time convention is reversed (t = 0 data, t = 1 noise)"] = -paths.marginal_velocity(
            x, 1 - t, data, scheduler
        )
        call = tensor_call(x, t, data, what="fn(x, t, data)", expected=ref)
        inputs = {"x": x, "t": t, "data": data}
        cases.append(Case(f"{b} point(s) in {d}-D, {data.shape[0]} data points", inputs, call, ref, mistakes))
    return run_cases("check_marginal_velocity", fn, cases, verbose, time_limit=time_limit)


# --------------------------------------------------------------------------- solvers


def _test_velocity(x: Tensor, t: Tensor | float) -> Tensor:
    """u_t(x) = -(1 + t) x + cos(3 t) sin(x reversed): nonlinear in x and depends on t."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if t.ndim == 1:
        t = t[:, None]
    return -(1 + t) * x + torch.cos(3 * t) * torch.sin(x.flip(-1))


def _library_step(method: str, x: Tensor, t: Tensor, h: Tensor) -> Tensor:
    """One step of torchdiffeq's fixed-grid ``method`` (``"euler"`` or ``"midpoint"``) on the grid
    ``[t, t + h]`` for the test field: an implementation independent of :mod:`fmbook.solvers`."""
    grid = torch.stack([t, t + h]).to(x)
    return torchdiffeq.odeint(lambda s, y: _test_velocity(y, s), x, grid, method=method)[-1]


def _check_step(
    name: str, method: str, fn: Callable, seed: int, verbose: bool, time_limit: float | None
) -> CheckResult:
    g = generator(seed)
    reference = {"euler": solvers.euler_step, "midpoint": solvers.midpoint_step}[method]
    wrong_time = lambda v, x, t, h: reference(lambda y, s: v(y, s + h), x, t, h)
    cases = []
    for (b, d), h in zip(SHAPES, (0.1, 0.25, -0.2, 0.05)):
        x = torch.randn(b, d, generator=g)
        t = torch.tensor(0.2 + 0.5 * float(torch.rand(1, generator=g)))
        h = torch.tensor(h)
        ref = _library_step(method, x, t, h)
        mistakes = {
            "the step size h is missing (x + velocity instead of x + h * velocity)": reference(
                _test_velocity, x, t, torch.tensor(1.0)
            ),
            "the step goes backwards: the sign of h (or of the velocity) is flipped": reference(
                _test_velocity, x, t, -h
            ),
            "the velocity is evaluated at a time shifted by h (at t + h instead of t)": wrong_time(
                _test_velocity, x, t, h
            ),
        }
        if method == "midpoint":
            mistakes["this is an Euler step; the midpoint step evaluates u at (x + h/2 u_t(x), t + h/2)"] = (
                solvers.euler_step(_test_velocity, x, t, h)
            )
            mistakes["the second evaluation is at time t; the midpoint step uses t + h/2"] = x + h * _test_velocity(
                x + 0.5 * h * _test_velocity(x, t), t
            )
            mistakes["the half step uses h instead of h/2"] = x + h * _test_velocity(
                x + h * _test_velocity(x, t), t + 0.5 * h
            )
        call = tensor_call(_test_velocity, x, t, h, what="fn(velocity, x, t, h)", expected=ref)
        inputs = {"velocity": _test_velocity, "x": x, "t": t, "h": h}
        cases.append(Case(f"{b} point(s) in {d}-D, t = {float(t):.3f}, h = {float(h):g}", inputs, call, ref, mistakes))
    return run_cases(name, fn, cases, verbose, time_limit=time_limit)


def check_euler_step(
    fn: Callable, seed: int = 0, verbose: bool = True, time_limit: float | None = TIME_LIMIT
) -> CheckResult:
    r"""Check one Euler step ``fn(velocity, x, t, h)``: :math:`x + h\,u_t(x)`.

    ``velocity(x, t)`` is a nonlinear, time-dependent field; ``x`` ``(B, d)``; ``t`` and ``h``
    are 0-dim tensors (``h`` may be negative: a step backwards in time). Returns ``(B, d)``.
    Reference: one step of torchdiffeq's fixed-grid ``"euler"`` method on the grid ``[t, t + h]``
    (an implementation independent of :mod:`fmbook.solvers`).
    """
    return _check_step("check_euler_step", "euler", fn, seed, verbose, time_limit)


def check_midpoint_step(
    fn: Callable, seed: int = 0, verbose: bool = True, time_limit: float | None = TIME_LIMIT
) -> CheckResult:
    r"""Check one explicit midpoint step ``fn(velocity, x, t, h)``:
    :math:`x + h\,u_{t + h/2}\big(x + \tfrac h2 u_t(x)\big)`.

    Arguments as in :func:`check_euler_step`. Reference: one step of torchdiffeq's fixed-grid
    ``"midpoint"`` method on the grid ``[t, t + h]`` (independent of :mod:`fmbook.solvers`).
    """
    return _check_step("check_midpoint_step", "midpoint", fn, seed, verbose, time_limit)


# --------------------------------------------------------------------------- losses


def check_cfm_loss(
    fn: Callable,
    scheduler: paths.Scheduler | None = None,
    up_to_scale: bool = False,
    seed: int = 0,
    verbose: bool = True,
    time_limit: float | None = TIME_LIMIT,
) -> CheckResult:
    r"""Check a conditional flow-matching loss ``fn(model, x0, x1, t) -> scalar``.

    The book's loss is
    :math:`\frac1B \sum_b \lVert v_\theta(x_t^b, t^b) - (\dot\alpha_t x_1^b + \dot\sigma_t x_0^b)\rVert^2`
    with :math:`x_t = \alpha_t x_1 + \sigma_t x_0`: squared errors summed over coordinates, averaged
    over the batch. The value and its gradient with respect to the model's parameters are
    compared. With ``up_to_scale=True`` any constant positive multiple is accepted (for example
    ``F.mse_loss``, which also averages over the ``d`` coordinates, and has the same minimiser).

    ``model`` is a seeded :class:`fmbook.models.MLPVelocityField` called as ``model(x, t)``;
    ``x0, x1`` ``(B, d)``, ``t`` ``(B,)``. Reference: :func:`fmbook.losses.cfm_loss`.
    """
    scheduler = check_scheduler(scheduler)
    g = generator(seed)
    path = paths.AffinePath(scheduler)
    cases = []
    for b, d in SHAPES:
        with torch.random.fork_rng(devices=[]):  # leave the reader's global generator alone
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (), generator=g)))
            model = MLPVelocityField(dim=d, width=16, depth=2)
        params = list(model.parameters())
        x0, x1, t = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g), torch.rand(b, generator=g)

        def value_and_grad(loss_fn: Callable, model=model, params=params, x0=x0, x1=x1, t=t) -> Tensor:
            model.zero_grad()
            loss = loss_fn(model, x0, x1, t)
            if not isinstance(loss, Tensor) or loss.numel() != 1:
                raise Mismatch(f"fn(model, x0, x1, t) must return a scalar tensor, got {show(loss)}")
            if not loss.requires_grad:
                raise Mismatch("the loss does not depend on the model's parameters (was the prediction detached?)")
            grads = torch.autograd.grad(loss.reshape(()), params, allow_unused=True)
            flat = [torch.zeros_like(p) if gr is None else gr for p, gr in zip(params, grads)]
            return torch.cat([loss.detach().reshape(1)] + [gr.reshape(-1) for gr in flat])

        ref = value_and_grad(lambda m, *a: losses.cfm_loss(m, *a, path=path))
        wrong_sign = path.sample(x0, x1, t)  # target x0 - x1 instead of x1 - x0
        reversed_time = path.sample(x0, x1, 1 - t)  # x_t = (1 - t) x1 + t x0 with target x0 - x1
        mistakes = {
            text: value_and_grad(lambda m, _x0, _x1, _t, s=s: ((m(s.x_t, t) + s.dx_t) ** 2).sum(1).mean())
            for text, s in (
                ("the target has the wrong sign: the velocity goes from x0 (noise) to x1 (data)", wrong_sign),
                ("the time convention is reversed: x_t should be alpha_t x1 + sigma_t x0", reversed_time),
            )
        }
        mistakes["the loss averages over the d coordinates too (F.mse_loss): the book sums them"] = ref / d
        mistakes["the loss sums over the batch: the book averages over it"] = ref * b

        if up_to_scale:
            call = lambda loss_fn, vg=value_and_grad, ref=ref: _rescaled(vg(loss_fn), ref)
        else:
            call = value_and_grad
        inputs = {"x0": x0, "x1": x1, "t": t}
        desc = f"batch of {b} in {d}-D ({scheduler!r}): loss value and its gradient"
        cases.append(Case(desc, inputs, call, ref, mistakes))
    return run_cases("check_cfm_loss", fn, cases, verbose, time_limit=time_limit)


def _rescaled(received: Tensor, ref: Tensor) -> Tensor:
    """The received (loss, gradient) rescaled by the positive factor that matches the reference loss."""
    if float(received[0]) <= 0:
        return received
    return received * (ref[0] / received[0])


# --------------------------------------------------------------------------- optimal transport


def _ot_plan(x0: Tensor, x1: Tensor) -> Tensor:
    """The optimal permutation of an equal-size batch, by POT's exact solver (squared Euclidean cost)."""
    cost = ot.dist(x0.double().numpy(), x1.double().numpy())  # squared Euclidean by default
    b = x0.shape[0]
    plan = ot.emd(np.full(b, 1.0 / b), np.full(b, 1.0 / b), cost)
    return torch.as_tensor(plan.argmax(axis=1))


def _pairing_cost(x0: Tensor, x1: Tensor, perm: Tensor) -> Tensor:
    return ((x0.double() - x1.double()[perm]) ** 2).sum(1).mean().reshape(1)


def _index_vector(out: object, b: int) -> Tensor | None:
    """``out`` as a long tensor ``(b,)`` if it is a vector of integers (a tensor, a numpy array such as
    ``scipy.optimize.linear_sum_assignment`` returns, or a list), else None."""
    if isinstance(out, list) and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in out):
        out = torch.tensor(out, dtype=torch.long) if out else torch.zeros(0, dtype=torch.long)
    elif isinstance(out, np.ndarray) and out.dtype.kind in "iu":
        out = torch.as_tensor(out)
    if isinstance(out, Tensor) and out.shape == (b,) and not out.is_floating_point() and out.dtype != torch.bool:
        return out.long().cpu()
    return None


def _check_indices(idx: Tensor, b: int, name: str) -> None:
    if sorted(idx.tolist()) != list(range(b)):
        raise Mismatch(
            f"{name} must be a permutation of 0..{b - 1} (each data point used once; taking each x0's nearest "
            f"x1 can use one x1 twice), got {idx.tolist()}"
        )


def _as_permutation(out: object, x0: Tensor, x1: Tensor) -> Tensor:
    """Read a pairing returned by the reader: ``perm`` (B,) (a tensor, numpy array or list of integers),
    the index pair ``(rows, cols)`` with ``x0[rows[k]]`` paired with ``x1[cols[k]]`` (what
    ``scipy.optimize.linear_sum_assignment`` and :func:`fmbook.ot.ot_pair_indices` return), or the pair
    of reordered batches ``(x0_paired, x1_paired)``."""
    b = x0.shape[0]
    if isinstance(out, (tuple, list)) and len(out) == 2 and all(_index_vector(o, b) is not None for o in out):
        rows, cols = (_index_vector(o, b) for o in out)
        assert rows is not None and cols is not None
        _check_indices(rows, b, "rows (the first index vector)")
        _check_indices(cols, b, "cols (the second index vector)")
        perm = torch.empty(b, dtype=torch.long)
        perm[rows] = cols  # x0[rows[k]] is paired with x1[cols[k]]
        return perm
    if isinstance(out, (tuple, list)) and len(out) == 2 and _index_vector(list(out), b) is None:
        p0, p1 = (as_tensor_like(o, x0, "fn(x0, x1) -> (x0_paired, x1_paired)") for o in out)
        rows0 = torch.cdist(p0.double(), x0.double()).argmin(1)
        rows1 = torch.cdist(p1.double(), x1.double()).argmin(1)
        for rows, p, x, name in ((rows0, p0, x0, "x0_paired"), (rows1, p1, x1, "x1_paired")):
            if not torch.allclose(x[rows], p) or len(set(rows.tolist())) != b:
                raise Mismatch(f"{name} must be the rows of the input in some order, each row exactly once")
        perm = torch.empty(b, dtype=torch.long)
        perm[rows0] = rows1  # x0[rows0[k]] is paired with x1[rows1[k]]
        return perm
    perm = _index_vector(out, b)
    if perm is None:
        shape = tuple(out.shape) if isinstance(out, (Tensor, np.ndarray)) else type(out).__name__
        raise Mismatch(
            f"fn(x0, x1) must return an integer tensor perm of shape ({b},) (x1[perm] paired with x0), "
            f"the index pair (rows, cols) or the pair (x0_paired, x1_paired); got {shape}"
        )
    _check_indices(perm, b, "perm")
    return perm


def check_ot_pairing(
    fn: Callable, seed: int = 0, verbose: bool = True, time_limit: float | None = TIME_LIMIT
) -> CheckResult:
    r"""Check a mini-batch optimal-transport pairing ``fn(x0, x1)``.

    The pairing must minimise :math:`\frac1B\sum_i \lVert x_0^i - x_1^{\pi(i)}\rVert^2` over the
    permutations :math:`\pi` of the batch (the exact OT plan between the two empirical
    measures with uniform weights is a permutation). ``fn`` returns ``perm``, an integer tensor
    ``(B,)`` (or a numpy array or list of integers) with ``x1[perm[i]]`` paired with ``x0[i]``; or the
    index pair ``(rows, cols)`` with ``x0[rows[k]]`` paired with ``x1[cols[k]]`` (what
    ``scipy.optimize.linear_sum_assignment`` and :func:`fmbook.ot.ot_pair_indices` return); or the pair
    of reordered batches ``(x0_paired, x1_paired)``. The cost of the pairing is compared with the optimum computed by
    POT's exact solver ``ot.emd`` (the cost, not the permutation, is compared: ties are allowed).
    Shapes: ``x0, x1`` ``(B, d)``.
    """
    g = generator(seed)
    cases = []
    for b, d in ((1, 2), (6, 2), (16, 2), (12, 3)):
        x0, x1 = torch.randn(b, d, generator=g), 2 * torch.randn(b, d, generator=g) + 1
        best = _ot_plan(x0, x1)
        ref = _pairing_cost(x0, x1, best)
        nearest = torch.cdist(x0, x1).argmin(1)
        euclid = ot.emd(np.full(b, 1.0 / b), np.full(b, 1.0 / b), ot.dist(x0.numpy(), x1.numpy(), metric="euclidean"))
        mistakes = {
            "this is the cost of the independent pairing (perm = identity): no transport was solved": _pairing_cost(
                x0, x1, torch.arange(b)
            ),
            "the assignment was maximised instead of minimised": _pairing_cost(
                x0, x1, _ot_plan(x0, -x1) if b > 1 else torch.arange(b)
            ),
            "the cost is the distance |x0 - x1|: the book uses the squared distance": _pairing_cost(
                x0, x1, torch.as_tensor(euclid.argmax(1))
            ),
        }
        inverse = torch.empty(b, dtype=torch.long)
        inverse[best] = torch.arange(b)  # x0[inverse[j]] is the partner of x1[j]: plan.argmax(0)
        mistakes["perm is the inverse pairing (plan.argmax(0)?): x1[perm[i]] must be the partner of x0[i]"] = (
            _pairing_cost(x0, x1, inverse))
        if len(set(nearest.tolist())) == b:
            mistakes["each x0 took its nearest x1: greedy, not optimal"] = _pairing_cost(x0, x1, nearest)
        mistakes = {k: v for k, v in mistakes.items() if not torch.allclose(v, ref)}

        def call(pair_fn: Callable, x0=x0, x1=x1) -> Tensor:
            return _pairing_cost(x0, x1, _as_permutation(pair_fn(x0, x1), x0, x1))

        cases.append(Case(f"{b} pairs in {d}-D: mean squared distance of the pairing", {"x0": x0, "x1": x1}, call,
                           ref, mistakes))
    result = run_cases("check_ot_pairing", fn, cases, verbose=False, rtol=1e-9, atol=1e-9, time_limit=time_limit)
    for case in result.cases:
        if not case.passed and case.received is not None and case.detail.startswith("largest difference"):
            case.detail = f"your pairing costs {float(case.received):.6g}; the optimum is {float(case.expected):.6g}"
    if verbose:
        print(result.report())
    return result

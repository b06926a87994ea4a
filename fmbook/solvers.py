r"""ODE solvers for sampling a flow: :math:`\frac{d}{dt} X_t = u_t(X_t)`.

The fixed-step solvers are written out by hand, because they are what the book teaches;
each step of size :math:`h` from time :math:`t`:

* Euler (order 1, 1 evaluation): :math:`x + h\,u_t(x)`
* midpoint (order 2, 2 evaluations): :math:`x + h\,u_{t+h/2}\big(x + \tfrac h2 u_t(x)\big)`
* Heun (order 2, 2 evaluations): :math:`x + \tfrac h2 \big(k_1 + u_{t+h}(x + h k_1)\big)`, :math:`k_1 = u_t(x)`
* classical Runge-Kutta (order 4, 4 evaluations).

The adaptive Dormand-Prince solver comes from ``torchdiffeq``, and so does the adjoint method
(:func:`differentiable_solve`), which differentiates a solve with memory constant in the number of
steps; :func:`saved_tensor_bytes` measures what backpropagation stores. Every solver reports the
number of function evaluations (NFE) it used. A velocity is any callable ``velocity(x, t)``
with ``x`` of shape ``(B, ...)`` and ``t`` of shape ``(B,)``, such as a trained model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torchdiffeq import odeint, odeint_adjoint

from ._checks import (
    check_batch,
    check_callable,
    check_finite_result,
    check_flag,
    check_model_output,
    check_positive_float,
    check_positive_int,
    check_seed,
)
from .paths import Scheduler, check_scheduler

Velocity = Callable[[Tensor, Tensor], Tensor]
Step = Callable[[Velocity, Tensor, Tensor, Tensor], Tensor]


@dataclass
class Solution:
    """What every solver and sampler of fmbook returns: the ODE solvers, Euler-Maruyama and the
    DDPM and DDIM samplers (:mod:`fmbook.ddpm`).

    Attributes:
        x: the end points, shape ``(B, ...)``.
        nfe: the number of evaluations of the network (velocity, drift or noise predictor), each
            on the whole batch.
        times: the grid of the book's times that the solve visited, shape ``(T + 1,)`` (float64;
            for DDPM and DDIM the times :math:`t_k = 1 - k/T` of the steps, in the order visited).
        trajectory: the states on the grid, shape ``(B, T + 1, ...)`` (batch first), or None.
    """

    x: Tensor
    nfe: int
    times: Tensor
    trajectory: Tensor | None = None


def _at(t: Tensor, x: Tensor) -> Tensor:
    """A scalar time as a batch of times ``(B,)``."""
    return t.to(x.dtype).expand(x.shape[0])


def _step_args(velocity: object, x: object, t: object, h: object) -> tuple[Velocity, Tensor, Tensor]:
    """Check the arguments of a single step; ``t`` and ``h`` may be floats or 0-d tensors.

    Returns the velocity wrapped so that each evaluation's shape is checked (metadata only), and
    ``t``, ``h`` as 0-d tensors on ``x``'s device. Finite ``t`` and ``h`` are checked here, once per
    public step (for a 0-d tensor on a GPU that is one host sync); the solvers call the unchecked
    kernels instead, on a grid they checked once.
    """
    check_callable(velocity, "velocity", "velocity(x, t)")
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < 1:
        what = f"dtype {x.dtype}, shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise TypeError(f"x must be a floating-point tensor of shape (batch, ...), got {what}")
    out = []
    for name, value in (("t", t), ("h", h)):
        if isinstance(value, bool) or not isinstance(value, (int, float, Tensor)):
            raise TypeError(f"{name} must be a float or a 0-d tensor, got {type(value).__name__}")
        if isinstance(value, Tensor) and value.ndim != 0:
            raise ValueError(f"{name} must be a float or a 0-d tensor, got shape {tuple(value.shape)}")
        finite = math.isfinite(value) if not isinstance(value, Tensor) else bool(torch.isfinite(value))
        if not finite:
            raise ValueError(f"{name} must be finite, got {float(value)}")
        if not isinstance(value, Tensor):
            value = torch.tensor(float(value), dtype=torch.float64)
        out.append(value.to(x.device))
    return _CountingVelocity(velocity, x.shape), out[0], out[1]


def _euler(velocity: Velocity, x: Tensor, t: Tensor, h: Tensor) -> Tensor:
    return x + h * velocity(x, _at(t, x))


def _midpoint(velocity: Velocity, x: Tensor, t: Tensor, h: Tensor) -> Tensor:
    x_mid = x + 0.5 * h * velocity(x, _at(t, x))
    return x + h * velocity(x_mid, _at(t + 0.5 * h, x))


def _heun(velocity: Velocity, x: Tensor, t: Tensor, h: Tensor) -> Tensor:
    k1 = velocity(x, _at(t, x))
    k2 = velocity(x + h * k1, _at(t + h, x))
    return x + 0.5 * h * (k1 + k2)


def _rk4(velocity: Velocity, x: Tensor, t: Tensor, h: Tensor) -> Tensor:
    k1 = velocity(x, _at(t, x))
    k2 = velocity(x + 0.5 * h * k1, _at(t + 0.5 * h, x))
    k3 = velocity(x + 0.5 * h * k2, _at(t + 0.5 * h, x))
    k4 = velocity(x + h * k3, _at(t + h, x))
    return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


_STEP_DOC = """

    ``velocity(x, t)`` must return the shape of ``x`` ``(B, ...)`` (a ValueError otherwise); ``t`` and
    ``h`` are floats or 0-d tensors, finite (``h < 0`` steps backwards). Returns ``(B, ...)``. The
    values of the result are not checked (:func:`solve_ode` checks its end state once).
    """


def euler_step(velocity: Velocity, x: Tensor, t: float | Tensor, h: float | Tensor) -> Tensor:
    """One Euler step: ``x + h u_t(x)``."""
    return _euler(*_reorder(_step_args(velocity, x, t, h), x))


def midpoint_step(velocity: Velocity, x: Tensor, t: float | Tensor, h: float | Tensor) -> Tensor:
    """One explicit midpoint step: ``x + h u_{t+h/2}(x + h/2 u_t(x))``."""
    return _midpoint(*_reorder(_step_args(velocity, x, t, h), x))


def heun_step(velocity: Velocity, x: Tensor, t: float | Tensor, h: float | Tensor) -> Tensor:
    """One Heun step (explicit trapezoid): the average of the slopes at both ends of an Euler step."""
    return _heun(*_reorder(_step_args(velocity, x, t, h), x))


def rk4_step(velocity: Velocity, x: Tensor, t: float | Tensor, h: float | Tensor) -> Tensor:
    """One step of the classical fourth-order Runge-Kutta method."""
    return _rk4(*_reorder(_step_args(velocity, x, t, h), x))


for _step in (euler_step, midpoint_step, heun_step, rk4_step):
    _step.__doc__ += _STEP_DOC


def _reorder(checked: tuple[Velocity, Tensor, Tensor], x: Tensor) -> tuple[Velocity, Tensor, Tensor, Tensor]:
    velocity, t, h = checked
    return velocity, x, t, h


#: The hand-written fixed-step methods: name -> (step function, evaluations per step).
FIXED_STEP_METHODS: dict[str, tuple[Step, int]] = {
    "euler": (euler_step, 1),
    "midpoint": (midpoint_step, 2),
    "heun": (heun_step, 2),
    "rk4": (rk4_step, 4),
}
#: The same steps without the checks of a public call, for the solvers' loops.
_KERNELS: dict[str, Step] = {"euler": _euler, "midpoint": _midpoint, "heun": _heun, "rk4": _rk4}


def _check_time(value: object, name: str) -> float:
    """Check that ``value`` is a number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number in [0, 1], got {type(value).__name__}")
    if not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def time_grid(steps: int, t0: float = 0.0, t1: float = 1.0) -> Tensor:
    """A uniform grid of ``steps + 1`` times from ``t0`` to ``t1`` (float64, shape ``(steps + 1,)``)."""
    check_positive_int(steps, "steps")
    _check_time(t0, "t0")
    _check_time(t1, "t1")
    if t0 == t1:
        raise ValueError(f"t0 and t1 must differ, got t0 = t1 = {t0}")
    return torch.linspace(float(t0), float(t1), steps + 1, dtype=torch.float64)


def edm_time_grid(steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> Tensor:
    r"""The time grid of Karras et al. (2022, eq. 5) for the CondOT path, ``(steps + 1,)`` from 0 to 1.

    Karras et al. space the noise levels as :math:`\sigma_i = \big(\sigma_{\max}^{1/\rho} + \tfrac{i}{N - 1}
    (\sigma_{\min}^{1/\rho} - \sigma_{\max}^{1/\rho})\big)^{\rho}`, :math:`i < N`, and end at
    :math:`\sigma_N = 0`. On the CondOT path the noise-to-signal ratio is :math:`\sigma_t / \alpha_t = (1 - t)/t`,
    so :math:`\sigma_i` is the time :math:`t_i = 1 / (1 + \sigma_i)`. The first time (:math:`t_0 = 1/81` for
    :math:`\sigma_{\max} = 80`) is replaced by 0, where the book's samplers start from the noise. With
    :math:`\rho = 7` the steps are short near the data end, where the field changes fastest.
    ``steps`` >= 2; ``0 < sigma_min < sigma_max``; ``rho > 0``.
    """
    check_positive_int(steps, "steps", minimum=2)
    check_positive_float(sigma_min, "sigma_min")
    check_positive_float(sigma_max, "sigma_max")
    check_positive_float(rho, "rho")
    if not sigma_min < sigma_max:
        raise ValueError(f"sigma_min must be < sigma_max, got {sigma_min} and {sigma_max}")
    i = torch.arange(steps, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + i / (steps - 1) * (lo - hi)) ** rho
    t = 1.0 / (1.0 + sigmas)
    t[0] = 0.0
    return torch.cat([t, torch.ones(1, dtype=torch.float64)])


def _check_grid(t_grid: object, name: str = "t_grid") -> Tensor:
    if not isinstance(t_grid, Tensor) or t_grid.ndim != 1 or t_grid.shape[0] < 2:
        raise ValueError(f"{name} must be a 1-D tensor of at least two times")
    if not bool(torch.isfinite(t_grid).all()) or bool((t_grid < 0).any()) or bool((t_grid > 1).any()):
        raise ValueError(f"{name} must hold finite times in [0, 1]")
    diffs = t_grid[1:] - t_grid[:-1]
    if not (bool((diffs > 0).all()) or bool((diffs < 0).all())):
        raise ValueError(f"{name} must be strictly increasing or strictly decreasing")
    return t_grid


def _check_ends_agree(t_eval: Tensor, t0: object, t1: object) -> None:
    """With ``t_eval`` given, a ``t0`` or ``t1`` other than its default must equal the grid's end."""
    first, last = t_eval[0].item(), t_eval[-1].item()
    for name, value, default, end in (("t0", t0, 0.0, first), ("t1", t1, 1.0, last)):
        value = _check_time(value, name)
        if value != default and not math.isclose(value, end, abs_tol=1e-6):
            raise ValueError(
                f"{name}={value} disagrees with t_eval, which runs from {first:.6g} to {last:.6g}: when t_eval "
                "is given its first and last times define the interval, so leave t0 and t1 out"
            )


class _CountingVelocity:
    """Wraps a velocity: counts evaluations and checks the shape of its output."""

    def __init__(self, velocity: Velocity, shape: torch.Size, name: str = "velocity") -> None:
        check_callable(velocity, name, f"{name}(x, t)")
        self.velocity = velocity
        self.shape = shape
        self.name = name
        self.nfe = 0
        self.last: tuple[Tensor, Tensor] | None = None  # the last (t, output), read only after a failure

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        self.nfe += 1
        out = check_model_output(self.velocity(x, t), self.shape, f"{self.name}(x, t)")
        self.last = (t, out)
        return out


def solve_ode(
    velocity: Velocity,
    x0: Tensor,
    steps: int | None = None,
    method: str = "midpoint",
    t_grid: Tensor | None = None,
    t0: float = 0.0,
    t1: float = 1.0,
    return_trajectory: bool = False,
) -> Solution:
    """Integrate ``dx/dt = velocity(x, t)`` with a hand-written fixed-step method.

    Give either ``steps`` (a uniform grid from ``t0`` to ``t1``) or ``t_grid`` (any strictly
    monotone grid in [0, 1]; a decreasing grid integrates backwards in time).

    Args:
        velocity: callable ``velocity(x, t)``, ``x`` ``(B, ...)``, ``t`` ``(B,)``.
        x0: the initial states ``(B, ...)`` at the first time of the grid.
        steps: number of steps (>= 1).
        method: one of ``"euler"``, ``"midpoint"``, ``"heun"``, ``"rk4"``.
        t_grid: explicit time grid ``(T + 1,)``.
        t0, t1: the ends of the uniform grid.
        return_trajectory: also return the states on the grid, ``(B, T + 1, ...)``.

    Returns:
        :class:`Solution` with the end points and the NFE (steps times evaluations per step).

    The arguments are checked once, at the start; each evaluation's shape is checked (metadata, no
    host sync), and the end state once: NaN or inf there (from a velocity that returned them, or a
    solution that diverged) raises a ValueError that names ``velocity``.
    """
    if not isinstance(method, str) or method not in FIXED_STEP_METHODS:
        raise ValueError(f"method must be one of {sorted(FIXED_STEP_METHODS)}, got {method!r}")
    check_flag(return_trajectory, "return_trajectory")
    x = check_batch(x0, "x0")
    if (steps is None) == (t_grid is None):
        raise ValueError("give exactly one of steps (an int >= 1) or t_grid (a 1-D tensor of times)")
    grid = time_grid(steps, t0, t1) if t_grid is None else _check_grid(t_grid)
    return _integrate_fixed(velocity, x, grid, method, return_trajectory, "velocity")


def _integrate_fixed(
    velocity: Velocity, x: Tensor, grid: Tensor, method: str, return_trajectory: bool, culprit: str | None
) -> Solution:
    """:func:`solve_ode` on a checked grid; the end state is checked unless ``culprit`` is None
    (a loss inside a training loop, where :func:`fmbook.train.fit` checks the loss instead)."""
    grid = grid.to(device=x.device, dtype=torch.float64)
    step = _KERNELS[method]
    counted = _CountingVelocity(velocity, x.shape)
    states = [x] if return_trajectory else None
    for i in range(grid.shape[0] - 1):
        t, h = grid[i], grid[i + 1] - grid[i]
        x = step(counted, x, t, h.to(x.dtype))
        if states is not None:
            states.append(x)
    if culprit is not None:
        check_finite_result(x, culprit, "the solution at the end of the grid")
    trajectory = torch.stack(states, dim=1) if states is not None else None
    return Solution(x, counted.nfe, grid, trajectory)


#: The adaptive (error-controlled) methods of torchdiffeq that :func:`solve_adaptive` accepts.
ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")


def solve_adaptive(
    velocity: Velocity,
    x0: Tensor,
    t0: float = 0.0,
    t1: float = 1.0,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "dopri5",
    t_eval: Tensor | None = None,
    max_steps: int | None = 2_000,
) -> Solution:
    """Integrate with an adaptive step-size solver of ``torchdiffeq`` (Dormand-Prince by default).

    The step size is chosen so that the estimated local error stays below
    ``atol + rtol * |x|``; the NFE is therefore an output, not an input.

    Args:
        velocity: callable ``velocity(x, t)``, ``x`` ``(B, ...)``, ``t`` ``(B,)``.
        x0: the initial states ``(B, ...)`` at the start time (``t0``, or ``t_eval[0]``).
        t0, t1: start and end times in [0, 1] (``t1 < t0`` integrates backwards).
        rtol, atol: relative and absolute tolerances (> 0).
        method: a torchdiffeq adaptive method, e.g. ``"dopri5"``, ``"bosh3"``, ``"dopri8"``.
        t_eval: optional strictly monotone times ``(T + 1,)`` at which to report the
            trajectory. Its first and last times then define the interval, so leave ``t0``
            and ``t1`` out; one that is given must agree with them (a ValueError otherwise).
        max_steps: the most steps (accepted or rejected) the solver may take between two
            consecutive times of the grid; a RuntimeError when it needs more (a stiff field, or
            tolerances too tight for the dtype). The default 2000 is far above what a smooth
            field needs (tens of steps at the default tolerances, a few hundred at rtol = 1e-10 in
            float64) and fails a stiff one within seconds; None for no limit.

    Returns:
        :class:`Solution`; ``trajectory`` is ``(B, T + 1, ...)`` when ``t_eval`` is given.

    A velocity that returns NaN or inf raises a ValueError that names it (torchdiffeq would shrink the
    step until it underflows); a field so stiff that the step size underflows a RuntimeError. The end
    state is checked once.
    """
    x0 = check_batch(x0, "x0")
    check_positive_float(rtol, "rtol")
    check_positive_float(atol, "atol")
    if not isinstance(method, str) or method not in ADAPTIVE_METHODS:
        raise ValueError(f"method must be one of {list(ADAPTIVE_METHODS)}, got {method!r}")
    if t_eval is None:
        grid = time_grid(1, t0, t1)
    else:
        grid = _check_grid(t_eval, "t_eval")
        _check_ends_agree(grid, t0, t1)
    grid = grid.to(device=x0.device, dtype=x0.dtype)
    counted = _CountingVelocity(velocity, x0.shape)

    def rhs(t: Tensor, x: Tensor) -> Tensor:  # torchdiffeq's argument order is (t, x)
        return counted(x, t.expand(x.shape[0]))

    # Make the adaptive Runge-Kutta methods end their steps on the requested times: otherwise
    # torchdiffeq steps past the final time and interpolates back, evaluating the velocity at
    # times outside [0, 1], where a path may not be defined.
    options = {"step_t": grid[1:]}
    if max_steps is not None:
        options["max_num_steps"] = check_positive_int(max_steps, "max_steps")
    try:
        states = odeint(rhs, x0, grid, rtol=rtol, atol=atol, method=method, options=options)
    except AssertionError as error:  # torchdiffeq's checks: a step cap, a step underflow, a NaN state
        raise _adaptive_failure(error, counted, method, rtol, atol, max_steps) from error
    check_finite_result(states[-1], "velocity", "the solution at the end time")
    trajectory = states.movedim(0, 1) if t_eval is not None else None
    return Solution(states[-1], counted.nfe, grid, trajectory)


def _adaptive_failure(
    error: AssertionError, counted: _CountingVelocity, method: str, rtol: float, atol: float, max_steps: int | None
) -> Exception:
    """The error to raise for one of torchdiffeq's assertions, in the reader's terms."""
    if counted.last is not None and not bool(torch.isfinite(counted.last[1]).all()):
        t = counted.last[0].reshape(-1)[0].item()
        where = f" at t = {t:.6g}" if math.isfinite(t) else ""
        return ValueError(
            f"velocity(x, t) returned NaN or inf{where} during the adaptive solve ({counted.nfe} evaluations): "
            "look for NaN weights in the model, or a field that is not defined there"
        )
    if "max_num_steps exceeded" in str(error):
        return RuntimeError(
            f"the adaptive solver {method!r} needed more than max_steps={max_steps} steps for rtol={rtol:g}, "
            f"atol={atol:g} ({counted.nfe} evaluations): the velocity is stiff (or not a well-defined function "
            "of (x, t)); loosen rtol and atol, raise max_steps, or use a fixed-step solve_ode"
        )
    return RuntimeError(
        f"the adaptive solver {method!r} could not continue after {counted.nfe} evaluations (the step size "
        f"underflowed: {error}); the velocity is too stiff or singular for rtol={rtol:g}, atol={atol:g}"
    )


#: The fixed-grid methods of torchdiffeq that :func:`differentiable_solve` accepts with ``steps``.
ADJOINT_FIXED_METHODS = ("euler", "midpoint", "rk4")


@dataclass
class AdjointSolution(Solution):
    """What :func:`differentiable_solve` returns: a :class:`Solution` whose ``x`` is differentiable
    with respect to ``x0`` and the velocity's parameters (its gradients are computed by the adjoint,
    backward, solve, or by backpropagation through the solver's operations when ``adjoint=False``),
    and ``nfe`` counts the evaluations of the forward solve.

    Attributes:
        counter: counts every evaluation; after ``backward()``, ``counter.nfe - nfe`` is the cost
            of the backward solve (:attr:`nfe_backward`).
    """

    counter: _CountingVelocity | None = None

    @property
    def nfe_forward(self) -> int:
        """Evaluations of the velocity in the forward solve (``nfe``)."""
        return self.nfe

    @property
    def nfe_backward(self) -> int:
        """Evaluations made since the forward solve (the adjoint solve, once ``backward()`` has run;
        0 without the adjoint, where backpropagation re-evaluates nothing)."""
        return self.counter.nfe - self.nfe


def differentiable_solve(
    velocity: torch.nn.Module,
    x0: Tensor,
    t0: float = 0.0,
    t1: float = 1.0,
    method: str = "dopri5",
    steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    adjoint: bool = True,
) -> AdjointSolution:
    r"""Solve :math:`\dot x = u^\theta_t(x)` with torchdiffeq and make the result differentiable.

    With ``adjoint=False`` backpropagation runs through every operation of the solver, which
    stores them all: memory grows linearly with the number of steps. With the **adjoint
    method** (``adjoint=True``) the forward solve stores nothing for backpropagation. For a
    loss :math:`L(x_1)`, ``backward()`` then solves, from :math:`t_1` back to :math:`t_0`, the
    augmented ODE for the state, the adjoint :math:`a_t = \partial L/\partial x_t` and the
    parameter gradient:

    .. math:: \dot x_t = u^\theta_t(x_t),\qquad
              \dot a_t = -\Big(\frac{\partial u^\theta_t}{\partial x}(x_t)\Big)^{\!\top} a_t,\qquad
              \frac{dL}{d\theta} = \int_{t_0}^{t_1} \Big(\frac{\partial u^\theta_t}{\partial \theta}(x_t)\Big)^{\!\top}
              a_t\,dt,

    with :math:`a_{t_1} = \nabla L(x_1)` (Chen et al. 2018, torchdiffeq's ``odeint_adjoint``). Memory
    is constant in the number of steps; the price is a second solve, and the gradient is exact only
    up to the error of the two solves.

    Args:
        velocity: an ``nn.Module`` called as ``velocity(x, t)``, ``x`` ``(B, ...)``, ``t`` ``(B,)``;
            the gradients flow to its parameters.
        x0: initial states ``(B, ...)`` at ``t0``.
        t0, t1: start and end times.
        method: an adaptive torchdiffeq method (``"dopri5"``, ...), or with ``steps`` one of
            :data:`ADJOINT_FIXED_METHODS`.
        steps: number of equal fixed steps (fixed-grid methods only).
        rtol, atol: tolerances of the adaptive methods (forward and backward solves).
        adjoint: use the adjoint method (True) or backpropagate through the solver (False);
            the same solver and grid either way, so the two gradients differ only by the
            error of the backward solve.
    """
    if not isinstance(velocity, torch.nn.Module):
        got = type(velocity).__name__
        raise TypeError(f"velocity must be an nn.Module (its parameters get the gradients), got {got}")
    x0 = check_batch(x0, "x0")
    check_positive_float(rtol, "rtol")
    check_positive_float(atol, "atol")
    t0, t1 = _check_time(t0, "t0"), _check_time(t1, "t1")
    if steps is None:
        if method not in ADAPTIVE_METHODS:
            raise ValueError(f"method must be one of {list(ADAPTIVE_METHODS)} (or give steps), got {method!r}")
        options = None
    else:
        check_positive_int(steps, "steps")
        if method not in ADJOINT_FIXED_METHODS:
            raise ValueError(f"with steps, method must be one of {list(ADJOINT_FIXED_METHODS)}, got {method!r}")
        options = {"step_size": abs(t1 - t0) / steps}
    counted = _CountingVelocity(velocity, x0.shape)

    class _Rhs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.velocity = velocity

        def forward(self, t: Tensor, x: Tensor) -> Tensor:  # torchdiffeq's argument order is (t, x)
            return counted(x, t.expand(x.shape[0]))

    grid = time_grid(1, t0, t1).to(device=x0.device, dtype=x0.dtype)
    if not isinstance(adjoint, bool):
        raise TypeError(f"adjoint must be True or False, got {adjoint!r}")
    solve = odeint_adjoint if adjoint else odeint
    states = solve(_Rhs(), x0, grid, rtol=rtol, atol=atol, method=method, options=options)
    return AdjointSolution(states[-1], counted.nfe, grid.detach().to(torch.float64), counter=counted)


def saved_tensor_bytes(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Run ``fn()`` and return its result with the bytes of the tensors autograd saved for backward.

    Each tensor saved by an operation counts once per save (a tensor saved by two operations
    counts twice): the memory a backward pass through ``fn`` keeps alive, up to such sharing.
    """
    check_callable(fn, "fn", "fn()")
    total = 0

    def pack(t: Tensor) -> Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        result = fn()
    return result, total

# ---------------------------------------------------------------------------------------------
# Stochastic differential equations (chapter 6)
# ---------------------------------------------------------------------------------------------

#: A diffusion coefficient: a number g >= 0, or a callable ``g(t)`` with ``t`` ``(B,)``
#: returning ``(B,)`` (or a number) with values >= 0. The book writes it :math:`g_t`; it is not the
#: noise scale :math:`\sigma_t` of a path.
Diffusion = float | Callable[[Tensor], Tensor | float]


def diffusion_at(g: Diffusion, t: Tensor) -> Tensor:
    """Evaluate a diffusion coefficient at times ``t`` ``(B,)``; returns ``(B,)`` and checks g_t >= 0."""
    if not isinstance(t, Tensor) or t.ndim != 1 or not t.is_floating_point():
        what = f"shape {tuple(t.shape)}, {t.dtype}" if isinstance(t, Tensor) else type(t).__name__
        raise TypeError(f"t must be a floating-point tensor of times (B,), got {what}")
    if callable(g):
        value = g(t)
        value = torch.as_tensor(value, dtype=t.dtype, device=t.device).expand(t.shape[0])
    elif isinstance(g, (int, float)) and not isinstance(g, bool):
        value = torch.full_like(t, float(g))
    else:
        kind = type(g).__name__
        raise TypeError(f"g (the diffusion coefficient) must be a number >= 0 or a callable g(t), got {kind}")
    if not bool(torch.isfinite(value).all()) or bool((value < 0).any()):
        low = value.min().item()
        raise ValueError(f"g (the diffusion coefficient g_t) must be finite and >= 0, got values down to {low:.4g}")
    return value


def _generator_for(generator: torch.Generator | int | None, x: Tensor) -> torch.Generator | None:
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, bool) or not isinstance(generator, int):
        raise TypeError(f"generator must be a torch.Generator, an int seed >= 0 or None, got {generator!r}")
    return torch.Generator(device=x.device).manual_seed(check_seed(generator, "generator"))


def sde_drift(velocity: Velocity, score: Velocity, g: Diffusion) -> Velocity:
    r"""The drift of the SDE that keeps the marginals of a flow (chapter 6, "One flow, many SDEs"):

    .. math:: b_t(x) = u_t(x) + \frac{g_t^2}{2}\nabla\log p_t(x),

    so that :math:`dX_t = b_t(X_t)\,dt + g_t\,dW_t` has :math:`X_t \sim p_t` for every
    :math:`g_t \ge 0`. ``velocity`` and ``score`` are callables ``f(x, t)``; ``g`` is the
    diffusion coefficient (a number or a callable ``g(t)``). With ``g`` the coefficient of
    :func:`forward_sde_coefficients` this is the reverse-time SDE (:func:`reverse_sde_drift`).
    """
    for name, f in (("velocity", velocity), ("score", score)):
        if not callable(f):
            raise TypeError(f"{name} must be callable as {name}(x, t), got {type(f).__name__}")
    if not callable(g):
        diffusion_at(g, torch.zeros(1))  # check a constant early (a callable is checked where it is used)

    def drift(x: Tensor, t: Tensor) -> Tensor:
        g2 = diffusion_at(g, t).pow(2).reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)
        return velocity(x, t) + 0.5 * g2 * score(x, t)

    return drift


class ForwardSDE(NamedTuple):
    r"""Coefficients of the forward (noising) SDE :math:`dx = f(s)\,x\,ds + g(s)\,dW_s` at the
    diffusion time :math:`s = 1 - t`; each a tensor of shape ``(B,)``.

    Attributes:
        f: the drift coefficient :math:`f = \frac{d\log\alpha}{ds} = -\dot\alpha_t/\alpha_t`.
        g2: the squared diffusion coefficient :math:`g^2 = \frac{d\sigma^2}{ds} - 2f\sigma^2
            = 2\sigma_t(\sigma_t\dot\alpha_t/\alpha_t - \dot\sigma_t)`.
    """

    f: Tensor
    g2: Tensor


def forward_sde_coefficients(scheduler: Scheduler, t: float | Tensor) -> ForwardSDE:
    r"""The forward SDE of a Gaussian path (Kingma et al. 2021, "Variational diffusion models").

    The diffusion literature runs time from the data, :math:`s = 1 - t`, and noises the data with
    the linear SDE :math:`dx = f(s)\,x\,ds + g(s)\,dW_s`. Its kernel is
    :math:`\mathcal N(\alpha(s) x_1, \sigma(s)^2 I)` with :math:`\alpha(s) = \alpha_{1-s}` and
    :math:`\sigma(s) = \sigma_{1-s}` exactly when the mean and the variance solve
    :math:`\frac{d\alpha}{ds} = f\alpha` and :math:`\frac{d\sigma^2}{ds} = 2f\sigma^2 + g^2`, i.e.

    .. math:: f = \frac{d\log\alpha}{ds} = -\frac{\dot\alpha_t}{\alpha_t}, \qquad
              g^2 = \frac{d\sigma^2}{ds} - 2f\sigma^2
                  = 2\sigma_t\Big(\sigma_t\frac{\dot\alpha_t}{\alpha_t} - \dot\sigma_t\Big),

    with the dots derivatives in the book's time t. For a variance-preserving path
    (:math:`\alpha_t^2 + \sigma_t^2 = 1`) this is :math:`f = -\beta/2`, :math:`g^2 = \beta`
    (Song et al. 2021). Note :math:`g^2/2` is the score coefficient of
    :func:`~fmbook.parameterizations.velocity_from_score`.

    Args:
        scheduler: a :class:`~fmbook.schedulers.Scheduler`.
        t: the book's times, a float or ``(B,)`` in [0, 1].

    Returns:
        :class:`ForwardSDE` ``(f, g2)``, tensors ``(B,)`` evaluated at :math:`s = 1 - t`. Where
        :math:`\alpha_t = 0` (the noise end t = 0 of CondOT or cosine, zero terminal SNR) f is
        infinite: a ValueError. At :math:`\sigma_t = 0` the value of ``g2`` is as accurate as the
        scheduler's :math:`\sigma_t\dot\sigma_t` there.
    """
    a, s, da, ds = check_scheduler(scheduler)(t)
    if bool((a <= 0).any()):
        raise ValueError(
            "t: the forward SDE's drift f = d log(alpha)/ds is infinite where alpha_t = 0 "
            "(the noise end of a path with zero terminal SNR); keep t where alpha_t > 0"
        )
    ratio = da / a
    return ForwardSDE(-ratio, 2 * s * (s * ratio - ds))


def _forward_sde_at(scheduler: Scheduler, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    f, g2 = forward_sde_coefficients(scheduler, t)
    shape = (-1, *([1] * (x.ndim - 1)))
    return f.to(x.dtype).reshape(shape), g2.to(x.dtype).reshape(shape)


def forward_sde_diffusion(scheduler: Scheduler) -> Callable[[Tensor], Tensor]:
    r"""The diffusion coefficient of the forward SDE as a function of the book's time,
    :math:`g_t = g(1 - t) = \sqrt{g^2}` of :func:`forward_sde_coefficients`: a callable ``g(t)``,
    ``t`` ``(B,)`` -> ``(B,)``, to pass as ``g`` to :func:`euler_maruyama` or :func:`sde_drift`."""
    check_scheduler(scheduler)
    return lambda t: forward_sde_coefficients(scheduler, t).g2.clamp_min(0).sqrt()


def reverse_sde_drift(score: Velocity, scheduler: Scheduler) -> Velocity:
    r"""The drift of the reverse-time SDE (Anderson 1982; Song et al. 2021), in the book's time.

    In the diffusion time s the reverse SDE is :math:`dx = [f x - g^2\nabla\log p]\,ds + g\,d\bar W_s`,
    run from s = 1 down to 0. With :math:`t = 1 - s` running forward it reads
    :math:`dX_t = b_t(X_t)\,dt + g_t\,dW_t` with

    .. math:: b_t(x) = -f\,x + g^2\,\nabla\log p_t(x), \qquad f, g^2 \text{ at } s = 1 - t,

    which is :func:`sde_drift` with the probability-flow velocity (:func:`probability_flow_drift`)
    and the diffusion coefficient :math:`g_t = g(1 - t)` (:func:`forward_sde_diffusion`).
    ``score(x, t)`` with ``x`` ``(B, ...)``, ``t`` ``(B,)``; returns a callable ``drift(x, t)``.
    """
    check_callable(score, "score", "score(x, t)")
    check_scheduler(scheduler)

    def drift(x: Tensor, t: Tensor) -> Tensor:
        f, g2 = _forward_sde_at(scheduler, x, t)
        return -f * x + g2 * score(x, t)

    return drift


def probability_flow_drift(score: Velocity, scheduler: Scheduler) -> Velocity:
    r"""The probability-flow ODE of the forward SDE (Song et al. 2021), in the book's time.

    In the diffusion time s it is :math:`\frac{dx}{ds} = f x - \frac{g^2}{2}\nabla\log p`; since
    :math:`dt = -ds`, the velocity in the book's time is

    .. math:: u_t(x) = -f\,x + \frac{g^2}{2}\,\nabla\log p_t(x)
              = \frac{\dot\alpha_t}{\alpha_t}x + \Big(\sigma_t^2\frac{\dot\alpha_t}{\alpha_t}
              - \sigma_t\dot\sigma_t\Big)\nabla\log p_t(x),

    the marginal velocity of Proposition 1 (:func:`~fmbook.parameterizations.velocity_from_score`).
    ``score(x, t)`` with ``x`` ``(B, ...)``, ``t`` ``(B,)``; returns a callable ``velocity(x, t)``.
    """
    check_callable(score, "score", "score(x, t)")
    check_scheduler(scheduler)

    def velocity(x: Tensor, t: Tensor) -> Tensor:
        f, g2 = _forward_sde_at(scheduler, x, t)
        return -f * x + 0.5 * g2 * score(x, t)

    return velocity


def euler_maruyama(
    drift: Velocity,
    x0: Tensor,
    g: Diffusion,
    steps: int | None = None,
    t_grid: Tensor | None = None,
    t0: float = 0.0,
    t1: float = 1.0,
    generator: torch.Generator | int | None = None,
    return_trajectory: bool = False,
) -> Solution:
    r"""Simulate :math:`dX_t = b_t(X_t)\,dt + g_t\,dW_t` by the Euler-Maruyama method
    (chapter 6, "Sampling with Euler-Maruyama"): on a grid :math:`t_0 < t_1 < \dots`, with :math:`h = t_{n+1} - t_n`,

    .. math:: X_{t_{n+1}} = X_{t_n} + h\, b_{t_n}(X_{t_n}) + g_{t_n}\sqrt{h}\, z_n,
              \qquad z_n \sim \mathcal N(0, I).

    With ``g = 0`` it is the Euler method for the ODE.

    Args:
        drift: callable ``drift(x, t)``, ``x`` ``(B, ...)``, ``t`` ``(B,)``; e.g. :func:`sde_drift`.
        x0: initial states ``(B, ...)``.
        g: the diffusion coefficient :math:`g_t`, a number >= 0 or a callable ``g(t)``.
        steps: number of uniform steps from ``t0`` to ``t1``; or give ``t_grid``.
        t_grid: a strictly increasing grid of times in [0, 1].
        generator: a ``torch.Generator`` or an int seed for the Brownian increments.
        return_trajectory: also return the states on the grid, ``(B, T + 1, ...)``.

    Returns:
        :class:`Solution`; ``nfe`` counts the drift evaluations (one per step). The end state is
        checked once: NaN or inf there raises a ValueError that names ``drift``.
    """
    check_flag(return_trajectory, "return_trajectory")
    x = check_batch(x0, "x0")
    if (steps is None) == (t_grid is None):
        raise ValueError("give exactly one of steps (an int >= 1) or t_grid (a 1-D tensor of times)")
    grid = time_grid(steps, t0, t1) if t_grid is None else _check_grid(t_grid)
    if bool((grid[1:] <= grid[:-1]).any()):
        raise ValueError("the SDE is integrated forward in time: t_grid (or t0 < t1) must increase")
    grid = grid.to(device=x.device, dtype=torch.float64)
    gen = _generator_for(generator, x)
    counted = _CountingVelocity(drift, x.shape, "drift")
    diffusion_at(g, grid[:1].to(x.dtype))  # fail early on a bad g
    states = [x] if return_trajectory else None
    for i in range(grid.shape[0] - 1):
        t, h = _at(grid[i], x), (grid[i + 1] - grid[i]).item()
        s = diffusion_at(g, t).reshape(-1, *([1] * (x.ndim - 1)))
        noise = torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device)
        x = x + h * counted(x, t) + s * (h**0.5) * noise
        if states is not None:
            states.append(x)
    check_finite_result(x, "drift (or g)", "the solution at the end of the grid")
    trajectory = torch.stack(states, dim=1) if states is not None else None
    return Solution(x, counted.nfe, grid, trajectory)


def langevin_corrector(
    score: Velocity,
    x: Tensor,
    t: float,
    step_size: float,
    n_steps: int = 1,
    generator: torch.Generator | int | None = None,
) -> Tensor:
    r"""Unadjusted Langevin steps at a fixed time t, which leave :math:`p_t` invariant as the step
    size goes to 0:

    .. math:: x \leftarrow x + \epsilon\, \nabla\log p_t(x) + \sqrt{2\epsilon}\, z, \qquad z \sim \mathcal N(0, I).

    Used as a *corrector* after each step of a sampler (predictor-corrector sampling of Song et al.
    2021). ``score(x, t)`` with ``t`` ``(B,)``; ``x`` ``(B, ...)``; returns the moved points (checked
    once: NaN or inf raises a ValueError that names ``score``).
    """
    x = check_batch(x, "x")
    eps = check_positive_float(step_size, "step_size")
    check_positive_int(n_steps, "n_steps")
    if not isinstance(t, (int, float)) or isinstance(t, bool) or not 0 <= t <= 1:
        raise ValueError(f"t must be a number in [0, 1], got {t!r}")
    if not callable(score):
        raise TypeError(f"score must be callable as score(x, t), got {type(score).__name__}")
    gen = _generator_for(generator, x)
    tt = torch.full((x.shape[0],), float(t), dtype=x.dtype, device=x.device)
    for _ in range(n_steps):
        s = check_model_output(score(x, tt), x.shape, "score(x, t)")
        x = x + eps * s + (2 * eps) ** 0.5 * torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device)
    return check_finite_result(x, "score", "the moved points")

r"""ODE solvers for sampling a flow: :math:`\frac{d}{dt} X_t = u_t(X_t)`.

The fixed-step solvers are written out by hand, because they are what the book teaches;
each step of size :math:`h` from time :math:`t`:

* Euler (order 1, 1 evaluation): :math:`x + h\,u_t(x)`
* midpoint (order 2, 2 evaluations): :math:`x + h\,u_{t+h/2}\big(x + \tfrac h2 u_t(x)\big)`
* Heun (order 2, 2 evaluations): :math:`x + \tfrac h2 \big(k_1 + u_{t+h}(x + h k_1)\big)`, :math:`k_1 = u_t(x)`
* classical Runge-Kutta (order 4, 4 evaluations).

The adaptive Dormand-Prince solver comes from ``torchdiffeq``. Every solver reports the
number of function evaluations (NFE) it used. A velocity is any callable ``velocity(x, t)``
with ``x`` of shape ``(B, ...)`` and ``t`` of shape ``(B,)``, such as a trained model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torchdiffeq import odeint

from ._validation import (
    check_batch,
    check_callable,
    check_model_output,
    check_positive_float,
    check_positive_int,
)

Velocity = Callable[[Tensor, Tensor], Tensor]
Step = Callable[[Velocity, Tensor, Tensor, Tensor], Tensor]


@dataclass
class ODESolution:
    """The result of a solve.

    Attributes:
        x: the end points, shape ``(B, ...)``.
        nfe: the number of velocity evaluations used (each on the whole batch).
        times: the time grid, shape ``(T + 1,)``.
        trajectory: the states on the grid, shape ``(B, T + 1, ...)`` (batch first), or None.
    """

    x: Tensor
    nfe: int
    times: Tensor
    trajectory: Tensor | None = None


def _at(t: Tensor, x: Tensor) -> Tensor:
    """A scalar time as a batch of times ``(B,)``."""
    return t.to(x.dtype).expand(x.shape[0])


def _step_args(velocity: object, x: object, t: object, h: object) -> tuple[Tensor, Tensor]:
    """Check the arguments of a single step; ``t`` and ``h`` may be floats or 0-d tensors."""
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
        if not isinstance(value, Tensor):
            value = torch.tensor(float(value), dtype=torch.float64)
        out.append(value.to(x.device))
    return out[0], out[1]


def euler_step(velocity: Velocity, x: Tensor, t: float | Tensor, h: float | Tensor) -> Tensor:
    """One Euler step: ``x + h u_t(x)``."""
    t, h = _step_args(velocity, x, t, h)
    return x + h * velocity(x, _at(t, x))


def midpoint_step(velocity: Velocity, x: Tensor, t: float | Tensor, h: float | Tensor) -> Tensor:
    """One explicit midpoint step: ``x + h u_{t+h/2}(x + h/2 u_t(x))``."""
    t, h = _step_args(velocity, x, t, h)
    x_mid = x + 0.5 * h * velocity(x, _at(t, x))
    return x + h * velocity(x_mid, _at(t + 0.5 * h, x))


def heun_step(velocity: Velocity, x: Tensor, t: float | Tensor, h: float | Tensor) -> Tensor:
    """One Heun step (explicit trapezoid): the average of the slopes at both ends of an Euler step."""
    t, h = _step_args(velocity, x, t, h)
    k1 = velocity(x, _at(t, x))
    k2 = velocity(x + h * k1, _at(t + h, x))
    return x + 0.5 * h * (k1 + k2)


def rk4_step(velocity: Velocity, x: Tensor, t: float | Tensor, h: float | Tensor) -> Tensor:
    """One step of the classical fourth-order Runge-Kutta method."""
    t, h = _step_args(velocity, x, t, h)
    k1 = velocity(x, _at(t, x))
    k2 = velocity(x + 0.5 * h * k1, _at(t + 0.5 * h, x))
    k3 = velocity(x + 0.5 * h * k2, _at(t + 0.5 * h, x))
    k4 = velocity(x + h * k3, _at(t + h, x))
    return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


#: The hand-written fixed-step methods: name -> (step function, evaluations per step).
FIXED_STEP_METHODS: dict[str, tuple[Step, int]] = {
    "euler": (euler_step, 1),
    "midpoint": (midpoint_step, 2),
    "heun": (heun_step, 2),
    "rk4": (rk4_step, 4),
}


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

    def __init__(self, velocity: Velocity, shape: torch.Size) -> None:
        check_callable(velocity, "velocity", "velocity(x, t)")
        self.velocity = velocity
        self.shape = shape
        self.nfe = 0

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        self.nfe += 1
        return check_model_output(self.velocity(x, t), self.shape, "velocity(x, t)")


def solve_ode(
    velocity: Velocity,
    x0: Tensor,
    steps: int | None = None,
    method: str = "midpoint",
    t_grid: Tensor | None = None,
    t0: float = 0.0,
    t1: float = 1.0,
    return_trajectory: bool = False,
) -> ODESolution:
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
        :class:`ODESolution` with the end points and the NFE (steps times evaluations per step).
    """
    if not isinstance(method, str) or method not in FIXED_STEP_METHODS:
        raise ValueError(f"method must be one of {sorted(FIXED_STEP_METHODS)}, got {method!r}")
    x = check_batch(x0, "x0")
    if (steps is None) == (t_grid is None):
        raise ValueError("give exactly one of steps (an int >= 1) or t_grid (a 1-D tensor of times)")
    grid = time_grid(steps, t0, t1) if t_grid is None else _check_grid(t_grid)
    grid = grid.to(device=x.device, dtype=torch.float64)
    step, _ = FIXED_STEP_METHODS[method]
    counted = _CountingVelocity(velocity, x.shape)
    states = [x] if return_trajectory else None
    for i in range(grid.shape[0] - 1):
        t, h = grid[i], grid[i + 1] - grid[i]
        x = step(counted, x, t, h.to(x.dtype))
        if states is not None:
            states.append(x)
    trajectory = torch.stack(states, dim=1) if states is not None else None
    return ODESolution(x, counted.nfe, grid, trajectory)


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
) -> ODESolution:
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

    Returns:
        :class:`ODESolution`; ``trajectory`` is ``(B, T + 1, ...)`` when ``t_eval`` is given.
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
    options = {"step_t": grid[1:]} if method in ADAPTIVE_METHODS else None
    states = odeint(rhs, x0, grid, rtol=rtol, atol=atol, method=method, options=options)
    trajectory = states.movedim(0, 1) if t_eval is not None else None
    return ODESolution(states[-1], counted.nfe, grid, trajectory)


# ---------------------------------------------------------------------------------------------
# Stochastic differential equations (chapter 6)
# ---------------------------------------------------------------------------------------------

#: A diffusion coefficient: a number sigma >= 0, or a callable ``sigma(t)`` with ``t`` ``(B,)``
#: returning ``(B,)`` (or a number) with values >= 0.
Diffusion = float | Callable[[Tensor], Tensor | float]


def diffusion_at(sigma: Diffusion, t: Tensor) -> Tensor:
    """Evaluate a diffusion coefficient at times ``t`` ``(B,)``; returns ``(B,)`` and checks sigma_t >= 0."""
    if callable(sigma):
        value = sigma(t)
        value = torch.as_tensor(value, dtype=t.dtype, device=t.device).expand(t.shape[0])
    elif isinstance(sigma, (int, float)) and not isinstance(sigma, bool):
        value = torch.full_like(t, float(sigma))
    else:
        raise TypeError(f"sigma must be a number >= 0 or a callable sigma(t), got {type(sigma).__name__}")
    if not bool(torch.isfinite(value).all()) or bool((value < 0).any()):
        raise ValueError(f"sigma_t must be finite and >= 0, got values down to {value.min().item():.4g}")
    return value


def _generator_for(generator: torch.Generator | int | None, x: Tensor) -> torch.Generator | None:
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, bool) or not isinstance(generator, int) or generator < 0:
        raise TypeError(f"generator must be a torch.Generator, an int seed >= 0 or None, got {generator!r}")
    return torch.Generator(device=x.device).manual_seed(generator)


def sde_drift(velocity: Velocity, score: Velocity, sigma: Diffusion) -> Velocity:
    r"""The drift of the SDE that keeps the marginals of a flow (eq. 48 of the notes):

    .. math:: b_t(x) = u_t(x) + \frac{\sigma_t^2}{2}\nabla\log p_t(x),

    so that :math:`dX_t = b_t(X_t)\,dt + \sigma_t\,dW_t` has :math:`X_t \sim p_t` for every
    :math:`\sigma_t \ge 0`. ``velocity`` and ``score`` are callables ``f(x, t)``.
    """
    for name, f in (("velocity", velocity), ("score", score)):
        if not callable(f):
            raise TypeError(f"{name} must be callable as {name}(x, t), got {type(f).__name__}")
    diffusion_at(sigma, torch.zeros(1))  # check the type early

    def drift(x: Tensor, t: Tensor) -> Tensor:
        s2 = diffusion_at(sigma, t).pow(2).reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)
        return velocity(x, t) + 0.5 * s2 * score(x, t)

    return drift


def euler_maruyama(
    drift: Velocity,
    x0: Tensor,
    sigma: Diffusion,
    steps: int | None = None,
    t_grid: Tensor | None = None,
    t0: float = 0.0,
    t1: float = 1.0,
    generator: torch.Generator | int | None = None,
    return_trajectory: bool = False,
) -> ODESolution:
    r"""Simulate :math:`dX_t = b_t(X_t)\,dt + \sigma_t\,dW_t` by the Euler-Maruyama method
    (Algorithm 2 of the notes): on a grid :math:`t_0 < t_1 < \dots`, with :math:`h = t_{n+1} - t_n`,

    .. math:: X_{t_{n+1}} = X_{t_n} + h\, b_{t_n}(X_{t_n}) + \sigma_{t_n}\sqrt{h}\, z_n,
              \qquad z_n \sim \mathcal N(0, I).

    With ``sigma = 0`` it is the Euler method for the ODE.

    Args:
        drift: callable ``drift(x, t)``, ``x`` ``(B, ...)``, ``t`` ``(B,)``; e.g. :func:`sde_drift`.
        x0: initial states ``(B, ...)``.
        sigma: the diffusion coefficient, a number >= 0 or a callable ``sigma(t)``.
        steps: number of uniform steps from ``t0`` to ``t1``; or give ``t_grid``.
        t_grid: a strictly increasing grid of times in [0, 1].
        generator: a ``torch.Generator`` or an int seed for the Brownian increments.
        return_trajectory: also return the states on the grid, ``(B, T + 1, ...)``.

    Returns:
        :class:`ODESolution`; ``nfe`` counts the drift evaluations (one per step).
    """
    x = check_batch(x0, "x0")
    if (steps is None) == (t_grid is None):
        raise ValueError("give exactly one of steps (an int >= 1) or t_grid (a 1-D tensor of times)")
    grid = time_grid(steps, t0, t1) if t_grid is None else _check_grid(t_grid)
    if bool((grid[1:] <= grid[:-1]).any()):
        raise ValueError("the SDE is integrated forward in time: t_grid (or t0 < t1) must increase")
    grid = grid.to(device=x.device, dtype=torch.float64)
    gen = _generator_for(generator, x)
    counted = _CountingVelocity(drift, x.shape)
    diffusion_at(sigma, grid[:1].to(x.dtype))  # fail early on a bad sigma
    states = [x] if return_trajectory else None
    for i in range(grid.shape[0] - 1):
        t, h = _at(grid[i], x), (grid[i + 1] - grid[i]).item()
        s = diffusion_at(sigma, t).reshape(-1, *([1] * (x.ndim - 1)))
        noise = torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device)
        x = x + h * counted(x, t) + s * (h**0.5) * noise
        if states is not None:
            states.append(x)
    trajectory = torch.stack(states, dim=1) if states is not None else None
    return ODESolution(x, counted.nfe, grid, trajectory)


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
    2021). ``score(x, t)`` with ``t`` ``(B,)``; ``x`` ``(B, ...)``; returns the moved points.
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
    return x

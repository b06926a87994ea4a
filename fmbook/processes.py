r"""Three incremental generators between the same source and target, with no training.

All three are continuous-time Markov processes that start from samples of the source
:math:`P = \mathcal N(0, I)` at t = 0 and end, at t = 1, with samples of a *finite* target
:math:`Q`, uniform on the rows of ``data``. For a finite target the ideal velocity and score
are known exactly (:func:`~fmbook.marginals.marginal_velocity`, :func:`~fmbook.marginals.marginal_score`),
so every process can be simulated without a network:

* a **flow** (deterministic, smooth): :math:`dX_t = u_t(X_t)\,dt` (:func:`simulate_marginal_flow`);
* a **diffusion** (continuous, nowhere smooth):
  :math:`dX_t = \big[u_t(X_t) + \varepsilon\sigma_t^2\nabla\log p_t(X_t)\big]dt + \sqrt{2\varepsilon}\,\sigma_t\,dW_t`,
  which has the same marginals :math:`p_t` as the flow for every :math:`\varepsilon \ge 0`
  (:func:`simulate_marginal_diffusion`);
* a **jump process** (discontinuous): each point waits, then jumps once to a fresh sample
  of Q, at the rate :math:`\lambda_t = 1/(1 - t)`; its marginals form the mixture path
  :math:`p_t = (1 - t)P + tQ` (:func:`simulate_mixture_jumps`).

Every function returns trajectories ``(B, T + 1, d)`` on the uniform grid of ``steps``
steps from 0 to 1 (batch first, then time, then space).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._checks import as_generator, check_points, check_positive_float, check_positive_int
from .paths import CondOTScheduler, Scheduler, check_scheduler, marginal_score, marginal_velocity
from .solvers import FIXED_STEP_METHODS, euler_maruyama, solve_ode, time_grid


def _check_pair(x0: Tensor, data: Tensor) -> tuple[Tensor, Tensor]:
    x0 = check_points(x0, "x0")
    data = check_points(data, "data", dim=x0.shape[1])
    return x0, data.to(x0)


def simulate_marginal_flow(
    x0: Tensor, data: Tensor, steps: int = 100, method: str = "euler", scheduler: Scheduler | None = None
) -> Tensor:
    r"""Follow the exact marginal velocity of the finite target ``data``: :math:`dX_t = u_t(X_t)\,dt`.

    Args:
        x0: source points ``(B, d)`` at t = 0.
        data: the target set ``(N, d)``; Q is uniform on its rows.
        steps: solver steps on the uniform grid from 0 to 1.
        method: a fixed-step method of :mod:`fmbook.solvers` (``"euler"``, ``"midpoint"``, ...).
        scheduler: the path (CondOT when None).

    Returns:
        The trajectories ``(B, steps + 1, d)``.
    """
    x0, data = _check_pair(x0, data)
    check_positive_int(steps, "steps")
    if not isinstance(method, str) or method not in FIXED_STEP_METHODS:
        raise ValueError(f"method must be one of {sorted(FIXED_STEP_METHODS)}, got {method!r}")
    scheduler = CondOTScheduler() if scheduler is None else check_scheduler(scheduler)
    sol = solve_ode(
        lambda x, t: marginal_velocity(x, t, data, scheduler), x0, steps=steps, method=method, return_trajectory=True
    )
    return sol.trajectory


def simulate_marginal_diffusion(
    x0: Tensor,
    data: Tensor,
    steps: int = 100,
    epsilon: float = 1.0,
    scheduler: Scheduler | None = None,
    generator: int | torch.Generator | None = None,
) -> Tensor:
    r"""Euler-Maruyama simulation of a diffusion with the marginals of the flow of ``data``.

    The SDE :math:`dX_t = \big[u_t(X_t) + \varepsilon\sigma_t^2\nabla\log p_t(X_t)\big]dt
    + \sqrt{2\varepsilon}\,\sigma_t\,dW_t` adds to the flow a Langevin term whose drift and
    noise cancel in the Fokker-Planck equation, since
    :math:`\nabla\cdot(p\,\varepsilon\sigma_t^2\nabla\log p) = \varepsilon\sigma_t^2\Delta p`.
    The factor :math:`\sigma_t^2` keeps the drift :math:`\varepsilon\sigma_t^2\nabla\log p_t
    = -\varepsilon(x - \alpha_t E[X_1 \mid x])` bounded and switches the noise off at t = 1.
    Each step of size h: :math:`x \leftarrow x + h\,b_t(x) + \sqrt{2\varepsilon h}\,\sigma_t\,\xi`,
    :math:`\xi \sim \mathcal N(0, I)`.

    Args:
        x0: source points ``(B, d)`` at t = 0.
        data: the target set ``(N, d)``.
        steps: Euler-Maruyama steps from 0 to 1.
        epsilon: the strength of the Langevin term (>= 0; 0 gives the Euler flow).
        scheduler: the path (CondOT when None).
        generator: the randomness of the noise: an int seed, a ``torch.Generator`` (on the device
            of ``x0``) or None.

    Returns:
        The trajectories ``(B, steps + 1, d)``, by :func:`fmbook.solvers.euler_maruyama` with the
        drift above and :math:`g_t = \sqrt{2\varepsilon}\,\sigma_t`.
    """
    x0, data = _check_pair(x0, data)
    check_positive_int(steps, "steps")
    epsilon = check_positive_float(epsilon, "epsilon", allow_zero=True)
    scheduler = CondOTScheduler() if scheduler is None else check_scheduler(scheduler)

    def drift(x: Tensor, t: Tensor) -> Tensor:
        velocity = marginal_velocity(x, t, data, scheduler)
        if epsilon == 0:
            return velocity
        sigma = scheduler(t).sigma_t.reshape(-1, *([1] * (x.ndim - 1)))
        return velocity + epsilon * sigma**2 * marginal_score(x, t, data, scheduler)

    def g(t: Tensor) -> Tensor:
        return math.sqrt(2 * epsilon) * scheduler(t).sigma_t

    return euler_maruyama(drift, x0, g, steps=steps, generator=generator, return_trajectory=True).trajectory


def simulate_mixture_jumps(
    x0: Tensor, data: Tensor, steps: int = 100, generator: int | torch.Generator | None = None
) -> Tensor:
    r"""A jump process whose marginals are the mixture path :math:`p_t = (1 - t)P + tQ`.

    A point that has not jumped yet jumps at the rate :math:`\lambda_t = \dot\kappa_t/(1 - \kappa_t)
    = 1/(1 - t)` (with :math:`\kappa_t = t`) to a uniformly drawn row of ``data``, and stays
    there. On the grid, a point that has not jumped by t jumps during the step to t + h with
    probability :math:`(\kappa_{t+h} - \kappa_t)/(1 - \kappa_t) = h/(1 - t)`; the product of
    the survival probabilities telescopes to :math:`1 - t`, so the simulation is exact at every
    grid time (and the last step jumps with probability 1).

    Args:
        x0: source points ``(B, d)`` at t = 0.
        data: the target set ``(N, d)``.
        steps: grid steps from 0 to 1.
        generator: an int seed, a ``torch.Generator`` (on the device of ``x0``) or None.

    Returns:
        The trajectories ``(B, steps + 1, d)`` (piecewise constant in time).
    """
    x0, data = _check_pair(x0, data)
    check_positive_int(steps, "steps")
    generator = as_generator(generator, device=x0.device)
    grid = time_grid(steps).tolist()
    x, states = x0, [x0]
    jumped = torch.zeros(x0.shape[0], dtype=torch.bool, device=x0.device)
    for t, t_next in zip(grid[:-1], grid[1:]):
        p_jump = 1.0 if t_next >= 1.0 else (t_next - t) / (1 - t)
        u = torch.rand(x0.shape[0], generator=generator, device=x0.device, dtype=torch.float64)
        jumps = ~jumped & (u < p_jump)
        landing = data[torch.randint(0, data.shape[0], (x0.shape[0],), generator=generator, device=x0.device)]
        x = torch.where(jumps[:, None], landing, x)
        jumped = jumped | jumps
        states.append(x)
    return torch.stack(states, dim=1)

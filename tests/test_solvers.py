"""Tests of fmbook.solvers against closed-form solutions and against torchdiffeq."""

import math

import numpy as np
import pytest
import torch
from torchdiffeq import odeint

from fmbook import solvers


def rotation(x, t):
    """dx/dt = (1 + t) J x, J the 90-degree rotation: x(t) = R(t + t^2 / 2) x(0)."""
    return (1 + t)[:, None] * torch.stack([-x[:, 1], x[:, 0]], dim=1)


def exact_rotation(x0, t0, t1):
    angle = (t1 + t1**2 / 2) - (t0 + t0**2 / 2)
    c, s = math.cos(angle), math.sin(angle)
    return torch.stack([c * x0[:, 0] - s * x0[:, 1], s * x0[:, 0] + c * x0[:, 1]], dim=1)


X0 = torch.tensor([[1.0, 0.0], [0.3, -2.0]], dtype=torch.float64)


@pytest.mark.parametrize("method, order", [("euler", 1), ("midpoint", 2), ("heun", 2), ("rk4", 4)])
def test_convergence_orders(method, order):
    steps = [8, 16, 32, 64]
    errors = [
        (solvers.solve_ode(rotation, X0, steps=n, method=method).x - exact_rotation(X0, 0.0, 1.0)).norm().item()
        for n in steps
    ]
    slope = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert abs(slope - order) < 0.25, (method, slope, errors)


@pytest.mark.parametrize("method, per_step", [("euler", 1), ("midpoint", 2), ("heun", 2), ("rk4", 4)])
def test_nfe_and_trajectory(method, per_step):
    out = solvers.solve_ode(rotation, X0, steps=5, method=method, return_trajectory=True)
    assert out.nfe == 5 * per_step
    assert out.trajectory.shape == (2, 6, 2)
    assert torch.equal(out.trajectory[:, 0], X0) and torch.equal(out.trajectory[:, -1], out.x)
    assert out.times.shape == (6,)


@pytest.mark.parametrize("method", ["euler", "midpoint"])
def test_hand_written_steps_equal_torchdiffeq(method):
    grid = torch.linspace(0, 1, 11, dtype=torch.float64)
    ours = solvers.solve_ode(rotation, X0, t_grid=grid, method=method).x
    theirs = odeint(lambda t, x: rotation(x, t.expand(x.shape[0])), X0, grid, method=method)[-1]
    assert torch.allclose(ours, theirs, atol=1e-12)


def test_backward_integration_recovers_the_start():
    forward = solvers.solve_ode(rotation, X0, steps=200, method="rk4")
    back = solvers.solve_ode(rotation, forward.x, steps=200, method="rk4", t0=1.0, t1=0.0)
    assert torch.allclose(back.x, X0, atol=1e-10)


def test_non_uniform_grid():
    grid = torch.tensor([0.0, 0.1, 0.15, 0.5, 0.9, 1.0], dtype=torch.float64) ** 0.5
    out = solvers.solve_ode(rotation, X0, t_grid=grid, method="rk4")
    assert torch.allclose(out.x, exact_rotation(X0, 0.0, 1.0), atol=2e-3)


def test_adaptive_solver_accuracy_and_nfe():
    out = solvers.solve_adaptive(rotation, X0, rtol=1e-9, atol=1e-9)
    assert torch.allclose(out.x, exact_rotation(X0, 0.0, 1.0), atol=1e-7)
    loose = solvers.solve_adaptive(rotation, X0, rtol=1e-3, atol=1e-3)
    assert 0 < loose.nfe < out.nfe  # tighter tolerances cost more evaluations
    back = solvers.solve_adaptive(rotation, out.x, t0=1.0, t1=0.0, rtol=1e-9, atol=1e-9)
    assert torch.allclose(back.x, X0, atol=1e-7)
    traj = solvers.solve_adaptive(rotation, X0, t_eval=torch.linspace(0, 1, 5, dtype=torch.float64))
    assert traj.trajectory.shape == (2, 5, 2)


def test_adaptive_t_eval_defines_the_interval():
    # A decreasing grid integrates backwards from its first time; t0 and t1 may be left out
    # or repeated (up to float32 rounding), but never contradict it.
    grid = torch.tensor([1.0, 0.6, 0.3], dtype=torch.float64)
    left_out = solvers.solve_adaptive(rotation, X0, t_eval=grid, rtol=1e-9, atol=1e-9)
    given = solvers.solve_adaptive(rotation, X0, t0=1.0, t1=0.3, t_eval=grid, rtol=1e-9, atol=1e-9)
    assert torch.equal(left_out.x, given.x) and torch.equal(left_out.times, grid)
    assert torch.allclose(left_out.x, exact_rotation(X0, 1.0, 0.3), atol=1e-7)
    assert torch.allclose(left_out.trajectory[:, 1], exact_rotation(X0, 1.0, 0.6), atol=1e-7)
    solvers.solve_adaptive(rotation, X0.float(), t0=1.0, t1=0.3, t_eval=grid.float())
    with pytest.raises(ValueError, match=r"t1=0.5 disagrees with t_eval, which runs from 1 to 0.3"):
        solvers.solve_adaptive(rotation, X0, t1=0.5, t_eval=grid)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: solvers.solve_ode(rotation, X0, steps=0), "steps must be >= 1"),
        (lambda: solvers.solve_ode(rotation, X0), "exactly one of steps"),
        (lambda: solvers.solve_ode(rotation, X0, steps=4, method="rk45"), "method must be one of"),
        (lambda: solvers.solve_ode(rotation, X0, t_grid=torch.tensor([0.0, 0.5, 0.4, 1.0])), "t_grid must be strictly"),
        (lambda: solvers.solve_ode(rotation, X0, t_grid=torch.tensor([0.0, 1.5])), "t_grid must hold finite times"),
        (lambda: solvers.solve_ode(rotation, X0, steps=2, t1=1.2), "t1 must be a number in"),
        (lambda: solvers.solve_ode(rotation, torch.full((2, 2), math.nan), steps=2), "x0 must contain only finite"),
        (lambda: solvers.solve_ode(lambda x, t: x[:, :1], X0, steps=2), "velocity\\(x, t\\) must return"),
        (lambda: solvers.solve_ode("not callable", X0, steps=2), "velocity must be callable"),
        (lambda: solvers.solve_adaptive(rotation, X0, rtol=0.0), "rtol must be"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()

"""Convergence orders of the hand-written ODE solvers, the round trip of a flow, and bad input."""

import math

import numpy as np
import pytest
import torch

from fmbook.solvers import solve_adaptive, solve_ode

J = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)


def rotation_velocity(x, t):
    """u_t(x) = omega(t) J x with omega(t) = 2 + 3 t^2: a rotation by theta(t) = 2 t + t^3."""
    return (2 + 3 * t**2)[:, None] * (x @ J.T)


def rotation_solution(x0, t):
    theta = 2 * t + t**3
    c, s = math.cos(theta), math.sin(theta)
    rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    return x0 @ rot.T


X0 = torch.tensor([[1.0, 0.0], [0.3, -0.7]], dtype=torch.float64)
STEPS = [8, 16, 32, 64, 128]


def measured_order(method):
    exact = rotation_solution(X0, 1.0)
    ends = [solve_ode(rotation_velocity, X0, steps=n, method=method).x for n in STEPS]
    errors = [float((x - exact).norm(dim=1).max()) for x in ends]
    slope = np.polyfit(np.log(STEPS), np.log(errors), 1)[0]
    return -slope, errors


@pytest.mark.parametrize("method,order", [("euler", 1), ("midpoint", 2), ("heun", 2), ("rk4", 4)])
def test_convergence_order(method, order):
    measured, errors = measured_order(method)
    assert abs(measured - order) < 0.25, (method, measured, errors)
    assert all(a > b for a, b in zip(errors, errors[1:]))  # the error falls with every halving of h


@pytest.mark.parametrize("method,evals", [("euler", 1), ("midpoint", 2), ("heun", 2), ("rk4", 4)])
def test_nfe(method, evals):
    assert solve_ode(rotation_velocity, X0, steps=7, method=method).nfe == 7 * evals


def test_adaptive_matches_closed_form():
    sol = solve_adaptive(rotation_velocity, X0, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(sol.x, rotation_solution(X0, 1.0), atol=1e-8, rtol=0)


def test_adaptive_never_leaves_the_time_interval():
    seen = []

    def velocity(x, t):
        seen.append(t.clone())
        return rotation_velocity(x, t)

    solve_adaptive(velocity, X0, t0=0.0, t1=1.0)
    solve_adaptive(velocity, X0, t0=1.0, t1=0.0)
    times = torch.cat(seen)
    assert float(times.min()) >= 0.0 and float(times.max()) <= 1.0


@pytest.mark.parametrize("method,tol", [("midpoint", 2e-5), ("rk4", 1e-9)])
def test_round_trip_recovers_the_start(method, tol):
    x1 = solve_ode(rotation_velocity, X0, steps=200, method=method).x
    back = solve_ode(rotation_velocity, x1, steps=200, method=method, t0=1.0, t1=0.0).x
    torch.testing.assert_close(back, X0, atol=tol, rtol=0)


def test_bad_input():
    with pytest.raises(ValueError, match="x0"):
        solve_ode(rotation_velocity, torch.ones(3, dtype=torch.float64), steps=4)
    with pytest.raises(ValueError, match="finite"):
        solve_ode(rotation_velocity, torch.full((2, 2), float("inf")), steps=4)
    with pytest.raises(ValueError, match="shape"):
        solve_ode(lambda x, t: x[:, :1], X0, steps=4)
    with pytest.raises(ValueError, match="monotone|increasing"):
        solve_ode(rotation_velocity, X0, t_grid=torch.tensor([0.0, 0.5, 0.2, 1.0]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        solve_ode(rotation_velocity, X0, t_grid=torch.tensor([0.0, 0.5, 1.5]))
    with pytest.raises(ValueError, match="method"):
        solve_ode(rotation_velocity, X0, steps=4, method="leapfrog")
    with pytest.raises(ValueError, match="exactly one"):
        solve_ode(rotation_velocity, X0)
    with pytest.raises(ValueError, match="rtol"):
        solve_adaptive(rotation_velocity, X0, rtol=-1.0)

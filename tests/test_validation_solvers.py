"""Bad input to fmbook.solvers: fixed-step and adaptive solves, grids and single steps."""

import math

import pytest
import torch

from fmbook.solvers import (
    FIXED_STEP_METHODS,
    euler_step,
    heun_step,
    midpoint_step,
    rk4_step,
    solve_adaptive,
    solve_ode,
    time_grid,
)

X0 = torch.randn(5, 2)


def v(x, t):
    return -x


BAD_SOLVE_ODE = [
    (dict(method="rk45"), ValueError, r"method must be one of"),
    (dict(method=None), ValueError, r"method must be one of"),
    (dict(x0=X0.numpy()), TypeError, r"x0 must be a torch.Tensor"),
    (dict(x0=X0.long()), TypeError, r"x0 must be a floating-point tensor"),
    (dict(x0=torch.randn(5)), ValueError, r"x0 must have shape \(batch, \.\.\.\)"),
    (dict(x0=torch.randn(0, 2)), ValueError, r"x0 must hold at least one sample"),
    (dict(x0=torch.full((5, 2), math.nan)), ValueError, r"x0 must contain only finite values"),
    (dict(steps=None), ValueError, r"give exactly one of steps"),
    (dict(t_grid=torch.linspace(0, 1, 5)), ValueError, r"give exactly one of steps"),
    (dict(steps=0), ValueError, r"steps must be >= 1"),
    (dict(steps=4.0), TypeError, r"steps must be an int"),
    (dict(t0=-0.5), ValueError, r"t0 must be a number in \[0, 1\]"),
    (dict(t1=1.5), ValueError, r"t1 must be a number in \[0, 1\]"),
    (dict(t1=math.nan), ValueError, r"t1 must be a number in \[0, 1\]"),
    (dict(t0="0"), TypeError, r"t0 must be a number in \[0, 1\]"),
    (dict(t0=0.3, t1=0.3), ValueError, r"t0 and t1 must differ"),
    (dict(steps=None, t_grid=torch.tensor([0.0])), ValueError, r"t_grid must be a 1-D tensor of at least two times"),
    (dict(steps=None, t_grid=[0.0, 1.0]), ValueError, r"t_grid must be a 1-D tensor"),
    (dict(steps=None, t_grid=torch.tensor([0.0, 0.5, 1.2])), ValueError, r"t_grid must hold finite times in \[0, 1\]"),
    (dict(steps=None, t_grid=torch.tensor([0.0, math.nan])), ValueError, r"t_grid must hold finite times"),
    (dict(steps=None, t_grid=torch.tensor([0.0, 0.5, 0.5, 1.0])), ValueError, r"t_grid must be strictly increasing"),
    (dict(steps=None, t_grid=torch.tensor([0.0, 0.6, 0.4])), ValueError, r"t_grid must be strictly increasing"),
    (dict(velocity="field"), TypeError, r"velocity must be callable as velocity\(x, t\)"),
    (dict(velocity=lambda x, t: x[:, :1]), ValueError, r"velocity\(x, t\) must return a tensor of shape \(5, 2\)"),
    (dict(velocity=lambda x, t: 0.0), TypeError, r"velocity\(x, t\) must return a torch.Tensor"),
]


@pytest.mark.parametrize("change, exc, match", BAD_SOLVE_ODE, ids=[c[2] for c in BAD_SOLVE_ODE])
def test_solve_ode_bad_input(change, exc, match):
    args = dict(velocity=v, x0=X0, steps=4, method="midpoint") | change
    with pytest.raises(exc, match=match):
        solve_ode(**args)


BAD_ADAPTIVE = [
    (dict(method="midpoint"), ValueError, r"method must be one of \['dopri5'"),
    (dict(method="rk45"), ValueError, r"method must be one of"),
    (dict(rtol=0.0), ValueError, r"rtol must be a finite number > 0"),
    (dict(atol=-1e-5), ValueError, r"atol must be a finite number > 0"),
    (dict(atol=math.nan), ValueError, r"atol must be"),
    (dict(rtol="1e-5"), TypeError, r"rtol must be a number"),
    (dict(x0=torch.randn(0, 2)), ValueError, r"x0 must hold at least one sample"),
    (dict(x0=torch.full((5, 2), math.inf)), ValueError, r"x0 must contain only finite values"),
    (dict(x0=X0.int()), TypeError, r"x0 must be a floating-point tensor"),
    (dict(t0=2.0), ValueError, r"t0 must be a number in \[0, 1\]"),
    (dict(t0=1.0, t1=1.0), ValueError, r"t0 and t1 must differ"),
    (dict(t_eval=torch.tensor([0.0, 1.0, 0.5])), ValueError, r"t_eval must be strictly increasing"),
    (dict(t_eval=torch.tensor([0.0, 3.0])), ValueError, r"t_eval must hold finite times in \[0, 1\]"),
    (dict(t_eval=torch.zeros(2, 2)), ValueError, r"t_eval must be a 1-D tensor"),
    (dict(t_eval=torch.linspace(0, 1, 5), t0=0.5), ValueError, r"t0=0.5 disagrees with t_eval, which runs from 0 to 1"),
    (dict(t_eval=torch.linspace(0, 0.5, 5), t1=1.0 - 1e-3), ValueError, r"t1=0.999 disagrees with t_eval"),
    (dict(t_eval=torch.tensor([1.0, 0.0]), t0=0.5), ValueError, r"t0=0.5 disagrees with t_eval, which runs from 1 to"),
    (dict(t_eval=torch.tensor([1.0, 0.0]), t0=1.5), ValueError, r"t0 must be a number in \[0, 1\]"),
    (dict(t_eval=torch.tensor([1.0, 0.0]), t1=None), TypeError, r"t1 must be a number in \[0, 1\]"),
    (dict(velocity=None), TypeError, r"velocity must be callable"),
    (dict(velocity=lambda x, t: x.sum(1)), ValueError, r"velocity\(x, t\) must return a tensor of shape \(5, 2\)"),
]


@pytest.mark.parametrize("change, exc, match", BAD_ADAPTIVE, ids=[c[2] for c in BAD_ADAPTIVE])
def test_solve_adaptive_bad_input(change, exc, match):
    args = dict(velocity=v, x0=X0) | change
    with pytest.raises(exc, match=match):
        solve_adaptive(**args)


@pytest.mark.parametrize(
    "args, exc, match",
    [
        ((0,), ValueError, r"steps must be >= 1"),
        ((-3,), ValueError, r"steps must be >= 1"),
        ((True,), TypeError, r"steps must be an int"),
        ((4, -0.1, 1.0), ValueError, r"t0 must be a number in \[0, 1\]"),
        ((4, 0.0, math.inf), ValueError, r"t1 must be a number in \[0, 1\]"),
        ((4, None, 1.0), TypeError, r"t0 must be a number"),
        ((4, 0.5, 0.5), ValueError, r"t0 and t1 must differ"),
    ],
)
def test_time_grid_bad_input(args, exc, match):
    with pytest.raises(exc, match=match):
        time_grid(*args)


STEPS = [euler_step, midpoint_step, heun_step, rk4_step]
BAD_STEP = [
    (dict(x=X0.numpy()), TypeError, r"x must be a floating-point tensor"),
    (dict(x=X0.long()), TypeError, r"x must be a floating-point tensor of shape \(batch, \.\.\.\), got dtype"),
    (dict(t="0"), TypeError, r"t must be a float or a 0-d tensor"),
    (dict(h=torch.full((5,), 0.1)), ValueError, r"h must be a float or a 0-d tensor, got shape \(5,\)"),
    (dict(h=None), TypeError, r"h must be a float or a 0-d tensor"),
    (dict(velocity=1.0), TypeError, r"velocity must be callable"),
]


@pytest.mark.parametrize("step", STEPS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("change, exc, match", BAD_STEP, ids=[c[2] for c in BAD_STEP])
def test_single_step_bad_input(step, change, exc, match):
    args = dict(velocity=v, x=X0, t=0.0, h=0.1) | change
    with pytest.raises(exc, match=match):
        step(**args)


@pytest.mark.parametrize("method", sorted(FIXED_STEP_METHODS))
def test_single_steps_accept_floats_and_tensors(method):
    step, _ = FIXED_STEP_METHODS[method]
    a = step(v, X0, 0.25, 0.5)
    b = step(v, X0, torch.tensor(0.25, dtype=torch.float64), torch.tensor(0.5))
    assert torch.equal(a, b) and a.dtype == X0.dtype


def test_good_solves_in_float16_and_float64():
    """float16 and float64 states stay in their dtype; a decreasing grid integrates backwards."""
    for dtype in (torch.float16, torch.float64):
        sol = solve_ode(v, X0.to(dtype), steps=3, method="heun")
        assert sol.x.dtype == dtype and bool(torch.isfinite(sol.x).all())
    back = solve_ode(v, X0, t_grid=torch.tensor([1.0, 0.5, 0.0]), method="euler")
    assert back.nfe == 2

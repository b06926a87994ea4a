r"""Checkers of the exercises of chapter 3, Flow matching and the CFM theorem.

Each checker runs the reader's function on seeded random cases against an independent
reference (see :mod:`fmbook.exercises._runner` for the time limit, the copies of the inputs and
the "not attempted" verdict) and returns a :class:`~fmbook.exercises._runner.CheckResult`.

The moons project of the chapter (Exercise 6.2 of the source notes) is checked in steps:

====================================  ==========================================================
checker                               the reader's function
====================================  ==========================================================
:func:`check_velocity_network`        ``make() -> nn.Module`` with ``model(x, t)``: ``(B, 2)``,
                                      ``(B,)`` to ``(B, 2)`` (a class with default arguments)
:func:`check_cfm_loss`                ``loss(model, x0, x1, t) -> scalar``
:func:`check_training_loop`           ``train(model, data, steps, batch_size, lr) -> losses``
:func:`check_euler_sampler`           ``euler(velocity, x0, n_steps) -> x1``
:func:`check_adaptive_nfe`            ``solve(velocity, x0, rtol, atol) -> (x1, nfe)``
====================================  ==========================================================

and the other exercises by :func:`check_conditional_velocity` (``form="point"``),
:func:`check_conditional_continuity`, :func:`check_marginal_velocity` and
:func:`check_swapped_bregman_minimizer`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from .. import data, losses, metrics, paths, solvers
from ..models import MLPVelocityField
from ._checkers import _test_velocity, check_cfm_loss, check_conditional_velocity, check_marginal_velocity
from ._runner import (
    TIME_LIMIT,
    Case,
    CheckResult,
    Mismatch,
    as_tensor_like,
    close,
    generator,
    run_cases,
    show,
    tensor_call,
)

__all__: list[str] = [
    "check_adaptive_nfe",
    "check_cfm_loss",
    "check_conditional_continuity",
    "check_conditional_velocity",
    "check_euler_sampler",
    "check_marginal_velocity",
    "check_swapped_bregman_minimizer",
    "check_training_loop",
    "check_velocity_network",
]

#: Seconds :func:`check_training_loop` allows the reader's loop for its training case (a short
#: training run of a few seconds on one core; the margin is for a busy machine).
TRAINING_TIME_LIMIT = 120.0


def _finish(result: CheckResult, hints: dict[str, str], verbose: bool) -> CheckResult:
    """Attach the hints found while judging (by case description) and print the report."""
    for case in result.failures:
        if not case.hint:
            case.hint = hints.get(case.description, "") or _hint_from_error(case.detail)
    if verbose:
        print(result.report())
    return result


def _hint_from_error(detail: str) -> str:
    """A hint for the errors a shape mistake with the time usually raises inside torch."""
    if "raised" in detail and any(
        s in detail for s in ("Tensors must have same number of dimensions", "Sizes of tensors must match",
                              "must match the size of tensor", "cannot be multiplied")
    ):
        return ("t has shape (B,), x has shape (B, 2): turn t into a column, t[:, None] of shape (B, 1), "
                "before concatenating it with x or multiplying it with a row of frequencies")
    return ""


# --------------------------------------------------------------------------- step (a): the network


def _build(make: Callable, seed: int) -> nn.Module:
    """``make()``, seeded, checked to be a module with parameters."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make()
    if not isinstance(model, nn.Module):
        raise Mismatch(
            f"make() must return a torch.nn.Module (pass the class itself, called with no arguments), "
            f"got {type(model).__name__}"
        )
    return model


def _velocity_of(model: nn.Module, x: Tensor, t: Tensor, what: str = "model(x, t)") -> Tensor:
    out = model(x, t)
    if not isinstance(out, Tensor):
        raise Mismatch(f"{what} must return a torch.Tensor, got {type(out).__name__}")
    if out.shape != x.shape:
        raise Mismatch(f"{what} must return shape {tuple(x.shape)} (one velocity in R^2 per point), "
                       f"got {tuple(out.shape)}")
    if not bool(torch.isfinite(out).all()):
        raise Mismatch(f"{what} returned NaN or inf")
    return out


def check_velocity_network(
    make: Callable,
    seed: int = 0,
    verbose: bool = True,
    time_limit: float | None = TIME_LIMIT,
) -> CheckResult:
    r"""Check a time-dependent velocity network :math:`v_\theta(x, t)` for the moons.

    ``make()`` builds the network (pass a ``torch.nn.Module`` subclass whose arguments all have
    defaults, or any function of no arguments that returns a module); it is called as
    ``model(x, t)`` with ``x`` ``(B, 2)`` and ``t`` ``(B,)`` in [0, 1] and must return the
    velocities ``(B, 2)``. The cases check: the shape for several batch sizes (1, 5, 64); that
    the output depends on ``t`` (the same points at two times give different velocities); that
    each row uses its own time (the batch gives row by row what single points give, to 1e-5:
    no ``t[0]`` or ``t.mean()``, no layer that mixes the batch); finite outputs at ``t = 0`` and
    ``t = 1`` and far from the data; gradients with respect to the parameters (finite, not all
    zero) and to ``x``; a parameter count between 100 and 10^6.
    The references are these properties themselves: there is no single right network.
    """
    g = generator(seed)
    hints: dict[str, str] = {}
    cases = []

    def shape_case(b: int) -> Case:
        x, t = torch.randn(b, 2, generator=g), torch.rand(b, generator=g)
        desc = f"a batch of {b}: x ({b}, 2) and t ({b},) give ({b}, 2)"

        def call(fn: Callable) -> Tensor:
            out = _build(fn, seed)(x, t)
            if isinstance(out, Tensor) and out.shape != x.shape:
                if out.shape in ((b, 1), (b,)):
                    hints[desc] = ("the network returns one number per point; a velocity in R^2 has two: "
                                   "end with nn.Linear(width, 2)")
                elif out.ndim == 2 and out.shape[0] == b:
                    hints[desc] = ("the last layer must output 2 numbers (the dimension of the moons), "
                                   "nn.Linear(width, 2)")
                elif out.ndim > 2 or (out.ndim == 2 and out.shape[0] != b):
                    hints[desc] = ("the batch dimension is off: was t added as a row (1, B) or broadcast to (B, B)? "
                                   "Use t[:, None], shape (B, 1)")
            return _velocity_of(lambda *a: out, x, t)

        return Case(desc, {"x": x, "t": t}, call, None, compare=lambda out: (True, ""))

    for b in (1, 5, 64):
        cases.append(shape_case(b))

    x = torch.randn(64, 2, generator=g)
    early, late = torch.full((64,), 0.1), torch.full((64,), 0.9)
    desc_t = "64 points at t = 0.1 and at t = 0.9: the velocities differ"

    def depends_on_t(fn: Callable) -> Tensor:
        model = _build(fn, seed)
        with torch.no_grad():
            a, b = _velocity_of(model, x, early), _velocity_of(model, x, late)
        return (a - b).norm() / (a.norm() + b.norm() + 1e-12)

    def judge_t(gap: Tensor) -> tuple[bool, str]:
        if float(gap) > 1e-3:
            return True, ""
        hints[desc_t] = ("the output does not change with t: the network must read t (or features of t such as "
                         "sin(omega t), cos(omega t)) beside x")
        return False, f"relative difference between the two times {float(gap):.2g} (it should be > 1e-3)"

    cases.append(Case(desc_t, {"x": x, "t_early": early, "t_late": late}, depends_on_t, None, compare=judge_t))

    xr, tr = torch.randn(6, 2, generator=g), torch.rand(6, generator=g)
    desc_rows = "6 points at 6 times: each row uses its own x and t"

    def rows(fn: Callable) -> Tensor:
        model = _build(fn, seed)
        with torch.no_grad():
            batch = _velocity_of(model, xr, tr)
            single = torch.cat([_velocity_of(model, xr[i:i + 1], tr[i:i + 1]) for i in range(6)])
        return batch - single

    def judge_rows(diff: Tensor) -> tuple[bool, str]:
        worst = float(diff.abs().max())
        if worst <= 1e-5:
            return True, ""
        hints[desc_rows] = ("row i must depend on x[i] and t[i] only: did you use t[0], t.mean(), a flattened t, "
                            "or a layer that mixes the batch (BatchNorm)?")
        return False, f"the batch and the rows one at a time differ by up to {worst:.3g}"

    cases.append(Case(desc_rows, {"x": xr, "t": tr}, rows, None, compare=judge_rows))

    xe = torch.cat([5 * torch.randn(4, 2, generator=g), torch.randn(4, 2, generator=g)])
    te = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.5, 1.0])
    desc_ends = "t = 0 and t = 1, points far out: finite velocities"
    cases.append(Case(desc_ends, {"x": xe, "t": te}, lambda fn: _velocity_of(_build(fn, seed), xe, te), None,
                      compare=lambda out: (True, "")))

    xg, tg = torch.randn(16, 2, generator=g), torch.rand(16, generator=g)
    desc_grad = "gradients in x and the parameters; 100 to 10^6 parameters"

    def grads(fn: Callable) -> tuple[int, float, float]:
        model = _build(fn, seed)
        params = [p for p in model.parameters() if p.requires_grad]
        count = sum(p.numel() for p in params)
        if not params:
            raise Mismatch("the network has no trainable parameters (use nn.Linear layers, registered in __init__)")
        x_in = xg.clone().requires_grad_(True)
        out = _velocity_of(model, x_in, tg)
        if not out.requires_grad:
            raise Mismatch("the output is not differentiable (was it detached, or computed in numpy?)")
        got = torch.autograd.grad(out.square().sum(), [x_in, *params], allow_unused=True)
        g_x, g_params = got[0], [gr for gr in got[1:] if gr is not None]
        if g_x is None:
            raise Mismatch("the output does not depend on x through torch operations")
        size = sum(float(gr.square().sum()) for gr in g_params)
        finite = all(bool(torch.isfinite(gr).all()) for gr in [g_x, *g_params])
        return count, size if finite else math.nan, float(g_x.norm())

    def judge_grads(got: tuple[int, float, float]) -> tuple[bool, str]:
        count, size, _ = got
        if not math.isfinite(size) or size == 0.0:
            return False, "the gradient with respect to the parameters is zero or not finite"
        if count < 100:
            hints[desc_grad] = (f"{count} parameters cannot bend a Gaussian into two moons: use hidden layers "
                                "of width 64 or more")
            return False, f"{count} parameters (fewer than 100)"
        if count > 1_000_000:
            hints[desc_grad] = (f"{count} parameters: far more than the moons need, and slow to train on a CPU; "
                                "2 to 4 hidden layers of width 64 to 256 are plenty")
            return False, f"{count} parameters (more than 10^6)"
        return True, ""

    cases.append(Case(desc_grad, {"x": xg, "t": tg}, grads, None, compare=judge_grads))
    result = run_cases("check_velocity_network", make, cases, verbose=False, time_limit=time_limit)
    return _finish(result, hints, verbose)


# --------------------------------------------------------------------------- step (b): the training loop


class _ProbeField(nn.Module):
    r"""A small fixed field for the loss check, :math:`v(x, t) = s\, t\, x + c`, with ``s = 3`` and
    ``c = (1, -0.5)``: far from zero and depending on ``x`` and ``t``, so that the CFM loss, its
    wrong-sign and reversed-time versions and its rescalings all have different expectations."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(3.0))
        self.shift = nn.Parameter(torch.tensor([1.0, -0.5]))

    def forward(self, x: Tensor, t: Tensor | float) -> Tensor:
        t = torch.as_tensor(t, dtype=x.dtype).reshape(-1, 1)
        return self.scale * t * x + self.shift


def _loss_statistics(
    loss_of_batch: Callable[[Tensor, Tensor, Tensor], Tensor], n: int, seed: int
) -> tuple[float, float]:
    """Mean and standard deviation of per-sample losses over ``n`` Monte Carlo draws of (t, x0, x1)."""
    g = generator(seed)
    x1 = data.sample_moons(n, generator=seed)
    x0, t = torch.randn(n, 2, generator=g), torch.rand(n, generator=g)
    with torch.no_grad():
        per = loss_of_batch(x0, x1, t)
    return float(per.mean()), float(per.std())


def check_training_loop(
    fn: Callable,
    steps: int = 3000,
    seed: int = 0,
    verbose: bool = True,
    time_limit: float | None = TRAINING_TIME_LIMIT,
) -> CheckResult:
    r"""Check a conditional flow-matching training loop on the moons (CondOT path, Adam).

    The reader's ``fn(model, data, steps, batch_size, lr)`` trains ``model`` (called as
    ``model(x, t)``, ``x`` ``(B, 2)``, ``t`` ``(B,)``) in place for ``steps`` Adam steps on
    batches of ``batch_size`` rows of ``data`` ``(N, 2)``, with
    :math:`\lVert v_\theta(t x_1 + (1 - t) x_0, t) - (x_1 - x_0)\rVert^2` summed over
    coordinates and averaged over the batch, :math:`x_0 \sim \mathcal N(0, I)`,
    :math:`t \sim U[0, 1]`, and returns the ``steps`` losses (a list of floats or a tensor).
    The global generator is seeded before each call (and the reader's own state put back after).

    Cases:

    1. **The losses are CFM losses.** With ``lr=0`` (the parameters must not move), 20 steps of
       512 on a fixed field :math:`v(x, t) = 3 t x + (1, -0.5)`: the mean of the reported losses
       must agree with the expected CFM loss of that field, a Monte Carlo estimate of
       :func:`fmbook.losses.cfm_loss` over 200 000 draws, within 5 standard errors. A wrong sign,
       the reversed time convention, the mean over coordinates or the sum over the batch each
       give a different expectation (hints).
    2. **The loop trains.** A seeded :class:`fmbook.models.MLPVelocityField` (width 64, depth 3)
       trained for ``steps`` steps of 512 at ``lr=1e-3`` on 20 000 moons (about 4 s on one core)
       is sampled with 10 midpoint steps; the **bar**: its sliced W2 to fresh moons, averaged
       over 10 draws of 2000 points, below **2.5 times the noise floor**
       (:class:`fmbook.metrics.FloorReference`). Correct loops reach 1.4 to 1.9 times the floor
       over six seeds (1.89 at seed 0); a loop with the wrong sign or with the reversed time
       convention ends near 20 times (20.8 and 18.5 at seed 0). A failing model is compared with the exact
       marginal velocity of the moons to say which mistake it looks like.

    ``time_limit`` applies to each case (120 s by default, for a busy machine).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    hints: dict[str, str] = {}
    moons = data.sample_moons(20_000, generator=seed + 3)

    # ---- case 1: the reported losses, with lr = 0, against the expected CFM loss of a fixed field
    probe = _ProbeField()
    k, batch = 20, 512
    path = paths.AffinePath(paths.CondOTScheduler())

    def per_sample(x_t: Tensor, t: Tensor, target: Tensor) -> Tensor:
        return (probe(x_t, t) - target).square().sum(1)

    def cfm(x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        s = path.sample(x0, x1, t)
        return per_sample(s.x_t, t, s.dx_t)

    mean, sd = _loss_statistics(cfm, 200_000, seed + 11)
    with torch.no_grad():  # the reference is fmbook's tested loss, on one batch, to tie `cfm` to it
        g_ref = generator(seed + 12)
        x1r = data.sample_moons(4096, generator=seed + 12)
        x0r, tr = torch.randn(4096, 2, generator=g_ref), torch.rand(4096, generator=g_ref)
        assert torch.allclose(cfm(x0r, x1r, tr).mean(), losses.cfm_loss(probe, x0r, x1r, tr), rtol=1e-5)
    wrong = {  # the (mean, standard deviation) of the per-sample loss of each typical mistake
        "the target has the wrong sign: it should be x1 - x0 (towards the data), not x0 - x1": _loss_statistics(
            lambda x0, x1, t: per_sample(t[:, None] * x1 + (1 - t[:, None]) * x0, t, x0 - x1), 200_000, seed + 11
        ),
        "the time convention is reversed: x_t = t x1 + (1 - t) x0 (t = 0 noise, t = 1 data)": _loss_statistics(
            lambda x0, x1, t: per_sample((1 - t[:, None]) * x1 + t[:, None] * x0, t, x0 - x1), 200_000, seed + 11
        ),
        "the loss averages over the 2 coordinates (F.mse_loss): the book sums them": (mean / 2, sd / 2),
        "the loss sums over the batch: the book averages over it": (mean * batch, sd * batch),
    }
    tolerance = 5 * sd / math.sqrt(k * batch)
    desc_loss = f"lr = 0, {k} x {batch} on 3 t x + c: mean loss = CFM loss {mean:.2f}"

    def losses_at_lr0(train: Callable) -> Tensor:
        model = _ProbeField()
        before = [p.detach().clone() for p in model.parameters()]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 13)
            reported = train(model, moons, k, batch_size=batch, lr=0.0)
        values = _as_losses(reported, k)
        if any(not torch.equal(b, p.detach()) for b, p in zip(before, model.parameters())):
            hints[desc_loss] = ("with lr=0 the parameters changed: pass lr to the optimizer, "
                                "torch.optim.Adam(..., lr=lr)")
            raise Mismatch("the parameters changed although lr = 0")
        return values

    def judge_loss(values: Tensor) -> tuple[bool, str]:
        got = float(values.mean())
        if abs(got - mean) <= tolerance:
            return True, ""
        for text, (value, spread) in wrong.items():
            if abs(got - value) <= 5 * spread / math.sqrt(k * batch):
                hints[desc_loss] = text
                break
        return False, (f"the mean reported loss is {got:.4g}; the CFM loss of this field is {mean:.4g} "
                       f"(+- {tolerance:.2g}, 5 standard errors)")

    cases = [Case(desc_loss, {"data": moons}, losses_at_lr0, mean, compare=judge_loss)]

    # ---- case 2: the quality bar after a short training run
    bar, lr, train_batch = 2.5, 1e-3, 512
    desc_bar = f"{steps} steps, MLP 64 x 3: sliced W2 < {bar} x noise floor"
    floor_ref = metrics.FloorReference(data.sample_moons, 2000, repeats=10, seed=seed + 1000)

    def trained(train: Callable) -> tuple[metrics.FloorRatio, nn.Module]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = MLPVelocityField(dim=2, width=64, depth=3)
            initial = [p.detach().clone() for p in model.parameters()]
            reported = train(model, moons, steps, batch_size=train_batch, lr=lr)
        _as_losses(reported, steps)
        if all(torch.equal(b, p.detach()) for b, p in zip(initial, model.parameters())):
            hints[desc_bar] = "the parameters never changed: call optimizer.step() after loss.backward()"
            raise Mismatch("the model's parameters are the ones it started with")

        def sample(n: int, s: int) -> Tensor:
            with torch.no_grad():
                return solvers.solve_ode(model, data.sample_gaussian(n, generator=7000 + s), steps=10,
                                         method="midpoint").x

        return floor_ref.ratio(sample), model

    def judge_bar(got: tuple[metrics.FloorRatio, nn.Module]) -> tuple[bool, str]:
        ratio, model = got
        if ratio.ratio < bar:
            return True, f"sliced W2 = {ratio}"
        hints[desc_bar] = _diagnose(model, seed)
        return False, f"sliced W2 = {ratio}: not below {bar} x the noise floor"

    cases.append(Case(desc_bar, {"data": moons}, trained, None, compare=judge_bar))
    result = run_cases("check_training_loop", fn, cases, verbose=False, time_limit=time_limit)
    for case in result.cases:  # show the quality reached, also when it passed
        if case.description == desc_bar and isinstance(case.received, tuple):
            case.received = str(case.received[0])
    if result.passed and verbose:
        print(result.report())
        print(f"  sliced W2 after training: {result.cases[-1].received}")
        return result
    return _finish(result, hints, verbose)


def _as_losses(reported: object, steps: int) -> Tensor:
    """The reader's losses as a float tensor ``(steps,)``, or :class:`Mismatch`."""
    try:
        values = torch.as_tensor([float(v) for v in reported], dtype=torch.float64)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise Mismatch(
            f"fn(model, data, steps, batch_size, lr) must return the list of the {steps} losses, got {show(reported)}"
        ) from None
    if values.shape != (steps,):
        raise Mismatch(f"fn must return one loss per step, {steps} values, got {values.shape[0]}")
    if not bool(torch.isfinite(values).all()):
        raise Mismatch("the reported losses contain NaN or inf")
    return values


def _diagnose(model: nn.Module, seed: int) -> str:
    """Which typical mistake a badly trained model looks like: compare it with the exact marginal
    velocity u_t of the moons (and with -u_t, and with the field of the reversed time convention)."""
    g = generator(seed + 21)
    reference = data.sample_moons(3000, generator=seed + 22)
    n = 1000
    x0, x1 = torch.randn(n, 2, generator=g), data.sample_moons(n, generator=seed + 23)
    t = 0.1 + 0.75 * torch.rand(n, generator=g)
    x = t[:, None] * x1 + (1 - t[:, None]) * x0
    with torch.no_grad():
        v = model(x, t)
    u = paths.marginal_velocity(x, t, reference)
    u_rev = paths.marginal_velocity(x, 1 - t, reference)

    def err(w: Tensor) -> float:
        return float((v - w).square().sum(1).mean())

    candidates = {
        "": err(u),
        "the learned field points the wrong way (v is close to -u): the target should be x1 - x0, "
        "data minus noise": err(-u),
        "the learned field is the one of the reversed time convention (t = 0 data): use x_t = t x1 + (1 - t) x0 "
        "with x1 the data": min(err(-u_rev), err(u_rev)),
    }
    best = min(candidates, key=candidates.get)  # type: ignore[arg-type]
    if best:
        return best
    return ("the learned field is not yet close to the marginal velocity: check that x0 is Gaussian noise, t uniform "
            "in [0, 1], a new batch each step, and optimizer.zero_grad() before loss.backward()")


# --------------------------------------------------------------------------- step (c): sampling


class _Counter:
    """A velocity that counts its calls (the NFE) and records the times it was called at."""

    def __init__(self, velocity: Callable[[Tensor, Tensor], Tensor]) -> None:
        self.velocity = velocity
        self.calls = 0
        self.times: list[float] = []

    def __call__(self, x: Tensor, t: Tensor | float) -> Tensor:
        self.calls += 1
        tt = torch.as_tensor(t)
        self.times.append(float(tt.reshape(-1)[0]) if tt.numel() else math.nan)
        return self.velocity(x, t)

    def __repr__(self) -> str:
        return "velocity(x, t) = -(1 + t) x + cos(3 t) sin(x reversed)"


def check_euler_sampler(
    fn: Callable, seed: int = 0, verbose: bool = True, time_limit: float | None = TIME_LIMIT
) -> CheckResult:
    r"""Check an Euler sampler ``fn(velocity, x0, n_steps) -> x1``.

    On the uniform grid :math:`t_i = i/n`, ``n`` steps :math:`x \leftarrow x + \tfrac1n u_{t_i}(x)`
    from :math:`t = 0` to :math:`t = 1`, with exactly ``n`` evaluations of ``velocity(x, t)``
    (``x`` ``(B, d)``; ``t`` may be a float, a 0-dim tensor or ``(B,)``). ``velocity`` is a
    nonlinear, time-dependent field. Reference: :func:`fmbook.solvers.solve_ode` with
    ``method="euler"`` on the same grid, and a count of the calls.
    """
    g = generator(seed)
    hints: dict[str, str] = {}
    cases = []
    for (b, d), n in zip(((1, 2), (5, 2), (8, 3), (4, 5)), (1, 4, 16, 7)):
        x0 = torch.randn(b, d, generator=g)
        ref = solvers.solve_ode(_test_velocity, x0, steps=n, method="euler").x
        grid = torch.linspace(0, 1, n + 1)
        mistakes = {
            "the velocity is evaluated at the end of each step (t + h): Euler uses its start t": solvers.solve_ode(
                lambda y, s: _test_velocity(y, s + 1.0 / n), x0, steps=n, method="euler").x,
            "the step size h = 1/n is missing (x + velocity instead of x + h * velocity)": _steps(x0, grid[:-1], 1.0),
            "the integration runs from t = 1 to t = 0: the reader's convention is noise at t = 0": solvers.solve_ode(
                _test_velocity, x0, steps=n, method="euler", t0=1.0, t1=0.0).x,
            "this is n + 1 steps of size 1/n (the loop runs once too often)": _steps(
                x0, torch.arange(n + 1) / n, 1.0 / n),
        }
        desc = f"{b} point(s) in {d}-D, {n} step(s): end point, {n} evaluation(s)"

        def call(sampler: Callable, x0=x0, n=n, ref=ref, desc=desc) -> Tensor:
            counter = _Counter(_test_velocity)
            out = as_tensor_like(sampler(counter, x0, n), ref, "fn(velocity, x0, n_steps)")
            if counter.calls != n and close(out, ref, 1e-4, 1e-5)[0]:
                hints[desc] = ("the end point is right but the velocity was called "
                               f"{counter.calls} times: Euler with {n} steps needs {n} evaluations "
                               "(no extra call at t = 1)")
                raise Mismatch(f"velocity was called {counter.calls} times, expected {n}")
            return out

        cases.append(Case(desc, {"x0": x0}, call, ref, mistakes))
    result = run_cases("check_euler_sampler", fn, cases, verbose=False, time_limit=time_limit)
    return _finish(result, hints, verbose)


def _steps(x0: Tensor, starts: Tensor, h: float) -> Tensor:
    """Steps ``x + h u_t(x)`` from each time of ``starts`` (the typical mistakes' end points)."""
    x = x0
    for t in starts:
        x = x + h * _test_velocity(x, t)
    return x


def check_adaptive_nfe(
    fn: Callable, seed: int = 0, verbose: bool = True, time_limit: float | None = TIME_LIMIT
) -> CheckResult:
    r"""Check a measurement of the cost of an adaptive solver: ``fn(velocity, x0, rtol, atol) -> (x1, nfe)``.

    The reader solves :math:`\dot x = u_t(x)` from :math:`t = 0` to :math:`t = 1` with an adaptive
    Runge-Kutta method (Dormand-Prince, for example ``torchdiffeq.odeint(..., method="dopri5")``
    or :func:`fmbook.solvers.solve_adaptive`) and returns the end points ``(B, d)`` and the
    number of evaluations of ``velocity`` it used. References: the checker counts the calls
    itself (the reported ``nfe`` must equal that count), the end point is compared with an
    accurate solution (:func:`fmbook.solvers.solve_adaptive` at tolerance 1e-9, in float64)
    within ``50 (atol + rtol)`` per coordinate, and the count must grow when the tolerances go
    from 1e-3 to 1e-6 (a fixed-step solver does not adapt). :func:`fmbook.solvers.solve_adaptive`'s
    own NFE is shown beside it.
    """
    g = generator(seed)
    hints: dict[str, str] = {}
    cases = []
    counts: dict[int, tuple[float, int]] = {}
    for k, ((b, d), tol) in enumerate(zip(((16, 2), (5, 3), (16, 2)), (1e-3, 1e-5, 1e-6))):
        x0 = torch.randn(b, d, generator=g)
        accurate = solvers.solve_adaptive(_test_velocity, x0.double(), rtol=1e-9, atol=1e-9).x.float()
        fmbook_nfe = solvers.solve_adaptive(_test_velocity, x0, rtol=tol, atol=tol).nfe
        desc = f"{b} points in {d}-D, tol {tol:g}: nfe = calls (fmbook: {fmbook_nfe})"

        def call(solve: Callable, x0=x0, tol=tol, accurate=accurate, desc=desc, k=k) -> Tensor:
            counter = _Counter(_test_velocity)
            out = solve(counter, x0, tol, tol)
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                raise Mismatch(f"fn(velocity, x0, rtol, atol) must return a pair (x1, nfe), got {show(out)}")
            x1 = as_tensor_like(out[0], accurate, "the first element x1")
            try:
                nfe = int(out[1])
            except (TypeError, ValueError):
                raise Mismatch(f"nfe must be an int, got {show(out[1])}") from None
            if nfe != counter.calls:
                if counter.calls and nfe in (counter.calls // 6, (counter.calls - 2) // 6, (counter.calls - 1) // 6):
                    hints[desc] = ("this is the number of steps; each Dormand-Prince step evaluates the velocity "
                                   "6 times (7 stages, the last reused): count the calls of velocity instead")
                else:
                    hints[desc] = "count every call of velocity: wrap it in a function that increments a counter"
                raise Mismatch(f"you reported nfe = {nfe}, but velocity was called {counter.calls} times")
            counts[k] = (tol, nfe)
            if k == 2 and 0 in counts and counts[2][1] <= counts[0][1]:
                hints[desc] = ("the count did not grow from tolerance 1e-3 to 1e-6: is the solver adaptive, and "
                               "are rtol and atol passed to it?")
                raise Mismatch(f"{counts[0][1]} evaluations at 1e-3 and {nfe} at 1e-6")
            return x1

        cases.append(Case(desc, {"x0": x0}, call, accurate, {}))
        # the tolerance of the end point: 50 (atol + rtol) per coordinate, at least float32's 1e-5
        cases[-1].compare = _within(accurate, max(50 * 2 * tol, 1e-5))
    result = run_cases("check_adaptive_nfe", fn, cases, verbose=False, time_limit=time_limit)
    return _finish(result, hints, verbose)


def _within(expected: Tensor, tol: float) -> Callable[[Tensor], tuple[bool, str]]:
    return lambda received: close(received, expected, 0.0, tol)


# --------------------------------------------------------------------------- the conditional path


def _condot_log_density(x: Tensor, x1: Tensor, t: Tensor) -> Tensor:
    r"""log N(x; t x1, (1 - t)^2 I), row by row, written out: ``(B,)``."""
    d = x.shape[1]
    s = 1 - t
    return -((x - t[:, None] * x1) ** 2).sum(1) / (2 * s**2) - d * torch.log(s) - d / 2 * math.log(2 * math.pi)


def _continuity_residual(field: Callable, x: Tensor, x1: Tensor, t: Tensor, what: str) -> Tensor:
    r"""The relative residual :math:`(\partial_t p + \nabla\cdot(p u)) / (|\partial_t p| + |\nabla\cdot(p u)|)`
    of the Gaussian path :math:`p_t(\cdot \mid x_1) = \mathcal N(t x_1, (1 - t)^2 I)` at each row, by autograd."""
    x = x.detach().clone().requires_grad_(True)
    t = t.detach().clone().requires_grad_(True)
    p = _condot_log_density(x, x1, t).exp()
    u = field(x, x1, t)
    u = as_tensor_like(u, x, what) if not isinstance(u, Tensor) or u.shape != x.shape else u
    if not u.requires_grad:
        raise Mismatch(
            f"{what} is not differentiable in x and t (write it with torch operations, not numpy or .item())"
        )
    if not bool(torch.isfinite(u).all()):
        raise Mismatch(f"{what} returned NaN or inf")
    flux = p[:, None] * u
    div = torch.zeros_like(p)
    for k in range(x.shape[1]):  # rows are independent: d/dx_k of the sum is the row's own derivative
        (grad_k,) = torch.autograd.grad(flux[:, k].sum(), x, retain_graph=True, allow_unused=True)
        if grad_k is None:
            raise Mismatch(f"{what} does not depend on x")
        div = div + grad_k[:, k]
    (dp_dt,) = torch.autograd.grad(p.sum(), t)
    return ((dp_dt + div) / (dp_dt.abs() + div.abs() + 1e-300)).detach()


def check_conditional_continuity(
    fn: Callable, seed: int = 0, verbose: bool = True, time_limit: float | None = TIME_LIMIT
) -> CheckResult:
    r"""Check that a conditional velocity ``fn(x, x1, t)`` and the Gaussian conditional path solve the
    continuity equation :math:`\partial_t p_t + \nabla\cdot(p_t u_t) = 0`.

    :math:`p_t(x \mid x_1) = \mathcal N(x; t x_1, (1 - t)^2 I)` (CondOT, Gaussian source). Both
    derivatives are taken by automatic differentiation, in float64, at random points ``x``
    ``(B, d)``, data points ``x1`` ``(B, d)`` and times ``t`` ``(B,)`` in [0, 0.9]; the residual
    relative to the size of the two terms must be below 1e-8 at every row. ``fn`` must be
    written with torch operations (autograd differentiates it) and treat each row separately.
    The reference is the equation itself; for the velocity's values see
    :func:`check_conditional_velocity` with ``form="point"``.
    """
    g = generator(seed)
    cases = []
    for b, d in ((1, 2), (6, 2), (5, 3)):
        x = 1.5 * torch.randn(b, d, generator=g, dtype=torch.float64)
        x1 = torch.randn(b, d, generator=g, dtype=torch.float64)
        t = 0.9 * torch.rand(b, generator=g, dtype=torch.float64)
        wrong = {
            "a factor 1 / (1 - t) is missing: u_t(x | x1) = (x1 - x) / (1 - t)": lambda x, x1, t: x1 - x,
            "the sign is flipped": lambda x, x1, t: (x - x1) / (1 - t[:, None]),
            "this is x1 - x0 with x0 drawn afresh, not the velocity at x": lambda x, x1, t: x1 - x / (1 - t[:, None]),
        }
        mistakes = {text: _continuity_residual(w, x, x1, t, "w") for text, w in wrong.items()}
        desc = f"{b} point(s) in {d}-D: residual of the continuity equation"

        def call(field: Callable, x=x, x1=x1, t=t) -> Tensor:
            return _continuity_residual(field, x, x1, t, "fn(x, x1, t)")

        cases.append(Case(desc, {"x": x, "x1": x1, "t": t}, call, torch.zeros(b, dtype=torch.float64), mistakes))
    result = run_cases("check_conditional_continuity", fn, cases, verbose=False, rtol=0.0, atol=1e-8,
                       time_limit=time_limit)
    return _finish(result, {}, verbose)


# --------------------------------------------------------------------------- Bregman divergences


def _numerical_minimizer(targets: Tensor) -> Tensor:
    r"""argmin over b of :math:`\frac1N\sum_i D_\phi(b, a_i)` (prediction first) for log-cosh, by L-BFGS
    on the values of :data:`fmbook.losses.log_cosh` (float64), ``(d,)``."""
    b = targets.mean(0).clone().requires_grad_(True)
    opt = torch.optim.LBFGS([b], lr=1.0, max_iter=200, tolerance_grad=1e-13, tolerance_change=1e-15,
                            line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        value = losses.log_cosh(b.expand_as(targets), targets).mean()
        value.backward()
        return value

    for _ in range(5):
        opt.step(closure)
    return b.detach()


def check_swapped_bregman_minimizer(
    fn: Callable, seed: int = 0, verbose: bool = True, time_limit: float | None = TIME_LIMIT
) -> CheckResult:
    r"""Check the minimiser of a Bregman divergence with the prediction first, for log-cosh.

    The reader's ``fn(targets)`` takes ``N`` equally likely values of a random target ``A``,
    ``targets`` ``(N, d)`` (float64), and returns the ``b`` ``(d,)`` that minimises
    :math:`\frac1N \sum_i D_\phi(b, a_i)` for :math:`\phi(x) = \sum_j \log\cosh x_j`
    (``fmbook.losses.log_cosh(b, a)``: the prediction is the *first* argument). Reference: a
    numerical minimisation of that average by L-BFGS (tolerance 1e-6 on ``b``).
    """
    g = generator(seed)
    cases = []
    sets = [torch.tensor([[0.0], [0.0], [0.0], [6.0]], dtype=torch.float64)]
    for n, d in ((7, 2), (12, 3)):
        skew = -2.0 * torch.log(torch.rand(n, d, generator=g, dtype=torch.float64))  # exponential, mean 2
        sets.append(skew * torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)[:d])
    for targets in sets:
        ref = _numerical_minimizer(targets)
        mistakes = {
            "this is the mean, the minimiser with the target first, E D(A, b); with the prediction first it is "
            "(grad phi)^(-1)(E grad phi(A))": targets.mean(0),
            "this is E tanh(A); apply (grad phi)^(-1) = artanh to it": torch.tanh(targets).mean(0),
            "this is tanh of the mean; the minimiser is artanh of the mean of tanh(A)": torch.tanh(targets.mean(0)),
            "this is the median, the minimiser of the L1 distance": targets.median(0).values,
        }
        n, d = targets.shape
        call = tensor_call(targets, what="fn(targets)", expected=ref)
        cases.append(Case(f"{n} targets in {d}-D", {"targets": targets}, call, ref, mistakes))
    result = run_cases("check_swapped_bregman_minimizer", fn, cases, verbose=False, rtol=0.0, atol=1e-6,
                       time_limit=time_limit)
    return _finish(result, {}, verbose)


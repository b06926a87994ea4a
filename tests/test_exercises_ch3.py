"""The checkers of chapter 3 accept correct answers, name the typical mistakes and give a verdict on
broken code (raises, wrong shape, NaN, in-place mutation, endless loop, the untouched stub)."""

from __future__ import annotations

import math
import time

import pytest
import torch
from exercise_answers import passes
from torch import nn
from torchdiffeq import odeint

from fmbook import exercises as ex
from fmbook import losses, solvers
from fmbook.exercises import ch3
from fmbook.exercises._runner import REPORT_WIDTH

# ----------------------------------------------------------------- answers a reader might write


class Field(nn.Module):
    """The chapter's solution: sinusoidal features of t concatenated with x, an MLP."""

    def __init__(self, width: int = 64, n_frequencies: int = 8, mistake: str = "") -> None:
        super().__init__()
        self.mistake = mistake
        self.register_buffer("omega", torch.exp(torch.linspace(0.0, math.log(100.0), n_frequencies)))
        out = 1 if mistake == "one output" else 2
        self.net = nn.Sequential(
            nn.Linear(2 + 2 * n_frequencies, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
            nn.Linear(width, out),
        )

    def forward(self, x, t):
        if self.mistake == "t unused":
            t = torch.zeros_like(t)
        if self.mistake == "first time":
            t = t[0].expand(x.shape[0])
        if self.mistake == "t as a row":
            angles = t[None, :, None] * self.omega  # (1, B, F): broadcasts wrongly
            return self.net(torch.cat([x.expand(angles.shape[:2] + (2,)), angles.sin(), angles.cos()], -1))
        if self.mistake == "t not a column":
            return self.net(torch.cat([x, t], dim=1))
        angles = t[:, None] * self.omega
        return self.net(torch.cat([x, angles.sin(), angles.cos()], dim=1))


def cfm_loss(model, x0, x1, t):
    x_t = t[:, None] * x1 + (1 - t[:, None]) * x0
    return ((model(x_t, t) - (x1 - x0)) ** 2).sum(dim=1).mean()


def make_train(mistake: str = ""):
    def train(model, data, steps, batch_size=256, lr=3e-3):
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        history = []
        for _ in range(steps):
            x1 = data[torch.randint(0, data.shape[0], (batch_size,))]
            x0 = torch.randn_like(x1)
            t = torch.rand(batch_size)
            if mistake == "reversed time":
                x_t = (1 - t[:, None]) * x1 + t[:, None] * x0
                target = x0 - x1
            else:
                x_t = t[:, None] * x1 + (1 - t[:, None]) * x0
                target = x0 - x1 if mistake == "sign" else x1 - x0
            err = ((model(x_t, t) - target) ** 2).sum(dim=1)
            loss = err.sum() if mistake == "sum" else err.mean() / 2 if mistake == "mse" else err.mean()
            optimizer.zero_grad()
            loss.backward()
            if mistake != "no step":
                optimizer.step()
            history.append(loss.item())
        return history

    return train


def euler(velocity, x0, n_steps):
    x, h = x0, 1.0 / n_steps
    for i in range(n_steps):
        x = x + h * velocity(x, torch.full((x.shape[0],), i * h))
    return x


def adaptive(velocity, x0, rtol, atol):
    calls = 0

    def rhs(t, x):
        nonlocal calls
        calls += 1
        return velocity(x, t.expand(x.shape[0]))

    x1 = odeint(rhs, x0, torch.tensor([0.0, 1.0]), rtol=rtol, atol=atol, method="dopri5")[-1]
    return x1, calls


def fmbook_adaptive(velocity, x0, rtol, atol):
    sol = solvers.solve_adaptive(velocity, x0, rtol=rtol, atol=atol)
    return sol.x, sol.nfe


def conditional_velocity(x, x1, t):
    return (x1 - x) / (1 - t[:, None])


def swapped_minimizer(targets):
    return torch.atanh(torch.tanh(targets).mean(0))




def first_failure(result: ex.CheckResult):
    assert result.status == "failed", result.report()
    first = result.failures[0]
    assert first.detail, result.report()
    return first


def hint_of(result: ex.CheckResult) -> str:
    return " | ".join(c.hint for c in result.failures)


# ------------------------------------------------------------------------------ (a) correct answers


@pytest.mark.parametrize(
    ("checker", "answer"),
    [
        (ex.check_velocity_network, Field),
        (ex.check_velocity_network, lambda: Field(width=32)),
        (ex.check_euler_sampler, euler),
        (ex.check_adaptive_nfe, adaptive),
        (ex.check_adaptive_nfe, fmbook_adaptive),
        (ex.check_conditional_continuity, conditional_velocity),
        (ex.check_swapped_bregman_minimizer, swapped_minimizer),
    ],
)
def test_checkers_accept_correct_answers(checker, answer, capsys):
    for seed in (0, 1):
        assert passes(checker(answer, seed=seed))
    out = capsys.readouterr().out
    assert f"{checker.__name__}: PASSED" in out and "FAIL" not in out


def test_every_checker_of_chapter_3_is_listed():
    assert set(ex.BY_CHAPTER[3]) == set(ch3.__all__)
    for name in ch3.__all__:
        assert getattr(ex, name) is getattr(ch3, name)


def test_training_loop_passes_the_bar_and_wrong_loops_fail_it(capsys):
    """The quality bar (sliced W2 < 2.5 x the noise floor after 3000 steps) and its negative controls."""
    start = time.process_time()
    good = ex.check_training_loop(make_train())
    seconds = time.process_time() - start
    assert passes(good), good.report()
    assert "x floor" in capsys.readouterr().out
    assert seconds < 30  # CPU seconds: the chapter runs this check
    ratio = float(good.cases[-1].received.split()[0])
    assert ratio < 2.5
    # the negative controls: the same bar, failed by far, each with its hint
    for mistake, word in (("sign", "wrong way"), ("reversed time", "reversed time")):
        bad = ex.check_training_loop(make_train(mistake), verbose=False)
        assert not bad.cases[0].passed  # the loss check catches both too
        last = bad.cases[-1]
        assert not last.passed and "not below 2.5" in last.detail
        assert float(last.detail.split("= ")[1].split()[0]) > 10  # far above the bar (about 20)
        assert word in last.hint, last.hint


def test_training_loop_names_the_loss_mistakes():
    for mistake, word in (("sign", "wrong sign"), ("reversed time", "reversed"), ("mse", "averages over the 2"),
                          ("sum", "sums over the batch")):
        result = ex.check_training_loop(make_train(mistake), steps=5, verbose=False)
        first = result.cases[0]
        assert not first.passed and word in first.hint, (mistake, first.hint, first.detail)
    no_step = ex.check_training_loop(make_train("no step"), steps=50, verbose=False)
    assert no_step.cases[0].passed and "optimizer.step" in no_step.cases[-1].hint

    def ignores_lr(model, data, steps, batch_size=256, lr=3e-3):
        return make_train()(model, data, steps, batch_size, 1e-2)

    assert "lr" in ex.check_training_loop(ignores_lr, steps=5, verbose=False).cases[0].hint


def test_the_loss_part_uses_check_cfm_loss():
    assert passes(ex.check_cfm_loss(cfm_loss, verbose=False))
    wrong = ex.check_cfm_loss(lambda m, x0, x1, t: cfm_loss(m, x1, x0, t), verbose=False)
    assert not passes(wrong)


# ------------------------------------------------------------------------------ (b) the typical mistakes


def test_network_checker_names_typical_mistakes():
    cases = {
        "t unused": "does not change with t",
        "one output": "one number per point",
        "first time": "row i must depend on x[i] and t[i]",
        "t as a row": "batch dimension is off",
        "t not a column": "t[:, None]",
    }
    for mistake, word in cases.items():
        result = ex.check_velocity_network(lambda m=mistake: Field(mistake=m), verbose=False)
        assert not passes(result), mistake
        assert word in hint_of(result), (mistake, hint_of(result))
    tiny = ex.check_velocity_network(lambda: nn.Sequential(), verbose=False)
    assert not passes(tiny)

    class Linear(nn.Module):  # 8 parameters: depends on t, right shapes, far too small
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 2)

        def forward(self, x, t):
            return self.lin(torch.cat([x, t[:, None]], 1))

    assert "cannot bend" in hint_of(ex.check_velocity_network(Linear, verbose=False))
    huge = ex.check_velocity_network(lambda: Field(width=1200), verbose=False)
    assert "far more than the moons need" in hint_of(huge)
    not_module = ex.check_velocity_network(lambda: (lambda x, t: x), verbose=False)
    assert "torch.nn.Module" in first_failure(not_module).detail


def test_euler_checker_names_typical_mistakes():
    def at_end(velocity, x0, n):
        x, h = x0, 1.0 / n
        for i in range(n):
            x = x + h * velocity(x, (i + 1) * h)
        return x

    def no_h(velocity, x0, n):
        x = x0
        for i in range(n):
            x = x + velocity(x, i / n)
        return x

    def backwards(velocity, x0, n):
        x, h = x0, 1.0 / n
        for i in range(n):
            x = x - h * velocity(x, 1 - i * h)
        return x

    def extra_call(velocity, x0, n):
        out = euler(velocity, x0, n)
        velocity(out, 1.0)
        return out

    def once_more(velocity, x0, n):
        x, h = x0, 1.0 / n
        for i in range(n + 1):
            x = x + h * velocity(x, i * h)
        return x

    for answer, word in ((at_end, "end of each step"), (no_h, "step size"), (backwards, "t = 1 to t = 0"),
                         (extra_call, "needs"), (once_more, "n + 1 steps")):
        result = ex.check_euler_sampler(answer, verbose=False)
        assert not passes(result), answer.__name__
        assert word in hint_of(result), (answer.__name__, hint_of(result))
    # the fmbook sampler itself passes (its t is a (B,) tensor)
    assert passes(ex.check_euler_sampler(lambda v, x0, n: solvers.solve_ode(v, x0, steps=n, method="euler").x,
                                         verbose=False))


def test_adaptive_checker_names_typical_mistakes():
    def steps_not_calls(velocity, x0, rtol, atol):
        x1, calls = adaptive(velocity, x0, rtol, atol)
        return x1, (calls - 2) // 6

    def fixed_grid(velocity, x0, rtol, atol):
        sol = solvers.solve_ode(velocity, x0, steps=20, method="rk4")
        return sol.x, sol.nfe

    def loose(velocity, x0, rtol, atol):
        return adaptive(velocity, x0, 1e-1, 1e-1)

    assert "number of steps" in hint_of(ex.check_adaptive_nfe(steps_not_calls, verbose=False))
    assert "did not grow" in hint_of(ex.check_adaptive_nfe(fixed_grid, verbose=False))
    result = ex.check_adaptive_nfe(loose, verbose=False)
    assert not passes(result) and "largest difference" in first_failure(result).detail
    zero = ex.check_adaptive_nfe(lambda v, x0, r, a: (adaptive(v, x0, r, a)[0], 0), verbose=False)
    assert "counter" in hint_of(zero)


def test_continuity_checker_names_typical_mistakes():
    for answer, word in ((lambda x, x1, t: x1 - x, "1 / (1 - t) is missing"),
                         (lambda x, x1, t: (x - x1) / (1 - t[:, None]), "sign")):
        result = ex.check_conditional_continuity(answer, verbose=False)
        assert not passes(result) and word in hint_of(result), hint_of(result)
    numpy = ex.check_conditional_continuity(
        lambda x, x1, t: torch.as_tensor((x1 - x).detach().numpy() / (1 - t[:, None].detach().numpy())),
        verbose=False)
    assert "not differentiable" in first_failure(numpy).detail
    # the field of the reversed time convention does not solve this path's equation
    assert not passes(ex.check_conditional_continuity(lambda x, x1, t: (x1 - x) / t[:, None], verbose=False))


def test_bregman_checker_names_typical_mistakes():
    for answer, word in ((lambda a: a.mean(0), "target first"), (lambda a: torch.tanh(a).mean(0), "artanh"),
                         (lambda a: torch.tanh(a.mean(0)), "tanh of the mean"),
                         (lambda a: a.median(0).values, "median")):
        result = ex.check_swapped_bregman_minimizer(answer, verbose=False)
        assert not passes(result) and word in hint_of(result), hint_of(result)


def test_bregman_reference_is_a_numerical_minimum():
    targets = torch.tensor([[0.0], [0.0], [0.0], [6.0]], dtype=torch.float64)
    b = ch3._numerical_minimizer(targets)
    assert abs(b.item() - math.atanh(math.tanh(6.0) / 4)) < 1e-8
    value = lambda c: losses.log_cosh(torch.full((4, 1), c, dtype=torch.float64), targets).mean().item()
    assert value(b.item()) < min(value(b.item() - 1e-3), value(b.item() + 1e-3))


# ------------------------------------------------------------------------------ (c) broken code


def _stub(*args, **kwargs):
    raise NotImplementedError("your turn")


def _raises(*args, **kwargs):
    raise RuntimeError("not written yet")


def _forever(*args, **kwargs):
    while True:
        pass


class _BrokenField(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.lin = nn.Linear(3, 64)
        self.out = nn.Linear(64, 2)

    def forward(self, x, t):
        {"stub": _stub, "raises": _raises, "forever": _forever}.get(self.kind, lambda: None)()
        v = self.out(torch.tanh(self.lin(torch.cat([x, t[:, None]], 1))))
        if self.kind == "nan":
            return v * math.nan
        if self.kind == "shape":
            return v[:, :1]
        if self.kind == "mutate":
            x.mul_(2)
        return v


def _broken(checker: str, kind: str):
    """A reader's answer to ``checker`` that is broken in the way ``kind`` says."""
    if checker == "check_velocity_network":
        return lambda: _BrokenField(kind)
    base = {"stub": _stub, "raises": _raises, "forever": _forever}
    if kind in base:
        return base[kind]
    if checker == "check_training_loop":
        good = make_train()

        def train(model, data, steps, batch_size=256, lr=3e-3):
            losses_ = good(model, data, steps, batch_size, lr)
            if kind == "mutate":
                data.mul_(0.5)
            return {"nan": [math.nan] * steps, "shape": losses_[:-1]}.get(kind, losses_)

        return train
    answer = {"check_euler_sampler": euler, "check_adaptive_nfe": adaptive,
              "check_conditional_continuity": conditional_velocity,
              "check_swapped_bregman_minimizer": swapped_minimizer}[checker]

    def wrapped(*args):
        out = answer(*args)
        x = out[0] if isinstance(out, tuple) else out
        if kind == "mutate":
            args[1 if checker != "check_swapped_bregman_minimizer" else 0].mul_(2)
        if kind == "nan":
            x = x * math.nan
        if kind == "shape":
            x = x[..., :1]
        return (x, out[1]) if isinstance(out, tuple) else x

    return wrapped


CHECKERS = ["check_velocity_network", "check_training_loop", "check_euler_sampler", "check_adaptive_nfe",
            "check_conditional_continuity", "check_swapped_bregman_minimizer"]


@pytest.mark.parametrize("checker", CHECKERS)
@pytest.mark.parametrize("kind", ["stub", "raises", "shape", "nan", "mutate", "forever"])
def test_broken_answers_get_a_clear_verdict(checker, kind, capsys):
    check = getattr(ex, checker)
    kwargs = {"steps": 5} if checker == "check_training_loop" else {}
    if kind == "forever":
        kwargs["time_limit"] = 0.3
    result = check(_broken(checker, kind), **kwargs)
    out = capsys.readouterr().out
    if kind == "stub":
        assert result.status == "not attempted" and "not attempted yet" in out
        return
    first = first_failure(result)
    assert f"{checker}: FAILED" in out
    expected = {"raises": "RuntimeError: not written yet", "forever": "did not finish within 0.3 s",
                "mutate": "modified its input", "nan": "NaN", "shape": ""}[kind]
    assert expected in first.detail, first.detail
    if kind == "shape":
        assert any(w in first.detail for w in ("shape", "one loss per step")), first.detail
    if kind == "mutate":
        assert "originals" in first.detail


def test_bad_arguments():
    with pytest.raises(TypeError, match="fn must be"):
        ex.check_euler_sampler(3)
    with pytest.raises(ValueError, match="seed"):
        ex.check_velocity_network(Field, seed=-1)
    with pytest.raises(ValueError, match="steps"):
        ex.check_training_loop(make_train(), steps=0)


def test_reports_fit_the_output_box(capsys):
    def backwards(velocity, x0, n):
        return x0 - euler(lambda x, t: velocity(x, 1 - t), x0, n) + x0

    for checker, answer in ((ex.check_euler_sampler, backwards), (ex.check_velocity_network, _stub)):
        checker(answer)
    out = capsys.readouterr().out
    assert "not attempted" in out and "hint:" in out
    assert max(len(line) for line in out.splitlines()) <= REPORT_WIDTH

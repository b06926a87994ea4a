"""A fuzz of the whole public API: every public callable of fmbook, every parameter, a standard set of
bad inputs (issue 21, item 6).

The callables are found, not listed: the public names defined in each module of the package. Each is
first called with a *baseline*: every parameter without a default gets a sound value chosen by its
name (and its annotation), the others keep their defaults. Then one parameter at a time is replaced
by each bad input of a standard set (NaN and inf tensors, wrong shapes and dtypes, empty tensors,
strings, None, lists, negative ints, bools for numbers). Every outcome must be

* a ``ValueError`` or ``TypeError`` whose message names the parameter that was replaced (when the
  baseline itself ran; otherwise, some parameter of the callable), or
* a result whose tensors are all finite (a bad value the callable may accept, e.g. ``None`` for an
  optional argument).

Anything else (an ``AttributeError``, ``IndexError``, ``RuntimeError`` or ``AssertionError`` from
deep inside torch, a message that names no argument, NaN in the result) fails. Nothing is skipped
silently: a callable that cannot be driven generically is in :data:`EXEMPT` with the reason, and a
callable whose baseline cannot run is in :data:`NO_BASELINE`; the test checks that both lists name
existing callables and are exactly the ones needed. The standard set is driven exhaustively (about
5000 calls); hypothesis adds 400 draws of numbers and odd values with a fixed seed (derandomized), so
the run is the same every time and stays within about a minute on one core.
"""

from __future__ import annotations

import importlib
import inspect
import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import matplotlib
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

matplotlib.use("Agg")

from fmbook import ddpm, paths  # noqa: E402
from fmbook.models import MLPVelocityField  # noqa: E402

MODULES = (
    "conventions", "data", "ddpm", "likelihood", "losses", "marginals", "metrics", "models", "ot", "parameterizations",
    "paths", "processes", "schedulers", "scaling", "solvers", "train", "guidance", "viz", "grids", "interactive",
    "exercises", "__main__",
)

#: Callables that cannot be driven by generic bad inputs, with the reason.
EXEMPT: dict[str, str] = {
    "__main__.main": "the command line: parses sys.argv-style strings and trains for --steps; see tests/test_ddp.py",
    "scaling.init_distributed": "joins a process group from environment variables; tested in tests/test_ddp.py",
    "scaling.cleanup_distributed": "takes no argument and leaves a process group; tested in tests/test_ddp.py",
    "train.fit": "runs a training loop; every argument's check is tested in tests/test_validation_train.py",
    "train.train_flow_matching": "trains for steps (2000 by default); checked in tests/test_validation_train.py",
    "train.train_conditional_flow_matching": "trains; its argument checks are in tests/test_validation_train.py",
    "ot.train_with_coupling": "trains (1000 steps by default); its loss's checks are fuzzed through coupled_cfm_loss",
    "metrics.train_digits_classifier": "trains a classifier for 600 steps; checked in tests/test_clear_errors.py",
    "scaling.save_checkpoint": "writes files; bad paths and states are tested in tests/test_train_checkpoint.py",
    "scaling.load_checkpoint": "reads files; corrupted and malicious checkpoints in tests/test_train_checkpoint.py",
    "exercises": "the checkers run a reader's function on seeded cases, some training a network for "
                 "seconds; a non-callable fn, a bad time limit and every kind of broken reader code are "
                 "tested in tests/test_exercises_runner.py and tests/test_exercises_ch*.py",
    "viz": "figures: every argument check is tested in tests/test_validation_viz.py; a figure per case "
           "would take minutes",
    "grids": "figures: every argument check is tested in tests/test_validation_viz.py and "
             "tests/test_viz_plots.py; a figure per case would take minutes",
    "interactive": "animations and sliders: every argument check is tested in tests/test_validation_viz.py "
                   "and tests/test_viz.py; an animation or a slider per case would take minutes",
}

#: Callables whose baseline (sound values by parameter name) does not run, with the reason; their bad
#: inputs are still driven and must give a clear error naming one of their parameters.
NO_BASELINE: dict[str, str] = {}

_PER_STEP = "called at every training or solver step, so by design it checks shapes and dtypes but not values"
#: Callables that do not check the values of their tensors (no host sync per step): NaN or inf in
#: them may give NaN or inf out, and only that is allowed; every other bad input is driven as usual.
NO_VALUE_CHECKS: dict[str, str] = {
    "losses.squared_euclidean": _PER_STEP + " (the divergence of cfm_loss)",
    "losses.log_cosh": _PER_STEP + " (a divergence of cfm_loss)",
    "losses.l1_distance": _PER_STEP + " (a divergence of cfm_loss)",
    "losses.log_cosh_distance": _PER_STEP + " (a divergence of cfm_loss)",
    "solvers.euler_step": "one solver step (its t and h are checked; the state x is the caller's)",
    "solvers.midpoint_step": "one solver step (its t and h are checked; the state x is the caller's)",
    "solvers.heun_step": "one solver step (its t and h are checked; the state x is the caller's)",
    "solvers.rk4_step": "one solver step (its t and h are checked; the state x is the caller's)",
    "ddpm.ancestral_step": "one sampler step, called T times by ancestral_sample, which checks its end state",
    "likelihood.exact_divergence": _PER_STEP + " of the log-density ODE (log_prob checks its end state)",
    "likelihood.hutchinson_divergence": _PER_STEP + " of the log-density ODE (log_prob checks its end state)",
    "guidance.combine_guidance": _PER_STEP + " (the guided velocity at every solver step)",
    "guidance.combine_guidance_ho_salimans": _PER_STEP + " (the guided prediction at every solver step)",
    "scaling.local_rows": _PER_STEP + " (this process's rows of every batch under DDP)",
    "models.time_as_batch": _PER_STEP + " (the time input of every forward pass)",
}

# --------------------------------------------------------------------------- sound values


def _velocity(x, t):
    return -x


def _sound_values() -> dict[str, Callable[[], Any]]:
    """A sound value for each common parameter name (2-D points, 4 of them, N = 8 data points)."""
    pts = lambda: torch.randn(4, 2, generator=torch.Generator().manual_seed(0))  # noqa: E731
    data = lambda: torch.randn(8, 2, generator=torch.Generator().manual_seed(1))  # noqa: E731
    return {
        "x": pts, "x0": pts, "x1": pts, "x_t": pts, "a": pts, "b": pts, "samples": pts, "prediction": pts,
        "x1_pred": pts, "v_cond": pts, "v_uncond": pts, "pred_cond": pts, "pred_uncond": pts, "eps": pts,
        "noise": pts, "x_T": pts, "x_data": pts, "dx_t": pts, "velocity_tensor": pts, "reference": data,
        "data": data, "source": data, "nodes": pts, "features_a": data, "features_b": data, "x_hat": pts,
        "t": lambda: 0.5, "s": lambda: 0.5, "t0": lambda: 0.0, "t1": lambda: 1.0, "h": lambda: 0.1,
        "scheduler": paths.CondOTScheduler, "old": paths.CondOTScheduler, "new": paths.CosineScheduler,
        "schedule": lambda: ddpm.linear_schedule(10),
        "model": lambda: MLPVelocityField(width=8, depth=1), "velocity": lambda: _velocity,
        "drift": lambda: _velocity, "score": lambda: _velocity, "denoiser": lambda: (lambda x, t: x),
        "steps": lambda: 2, "n": lambda: 8, "dim": lambda: 2, "batch_size": lambda: 4, "seed": lambda: 0,
        "k": lambda: 1, "T": lambda: 10, "j": lambda: 0, "g": lambda: 0.5, "sigma": lambda: 0.5,
        "parameterization": lambda: "velocity", "mean": lambda: 0.0, "std": lambda: 1.0,
        "mean0": lambda: 0.0, "std0": lambda: 1.0, "mean1": lambda: 1.0, "std1": lambda: 2.0,
        "energy": lambda: 2.0, "w2_squared": lambda: 1.0, "fm_loss": lambda: 0.1, "lipschitz": lambda: 1.0,
        "decay": lambda: 0.9, "guidance_scale": lambda: 1.5, "w_ho_salimans": lambda: 0.5, "w_book": lambda: 1.5,
        "reg": lambda: 0.1, "name": lambda: "moons", "log_p": lambda: torch.zeros(4), "dx": lambda: 0.1,
        "trajectory": lambda: torch.randn(4, 3, 2, generator=torch.Generator().manual_seed(2)),
        "times": lambda: torch.tensor([0.0, 0.5, 1.0]), "angle": lambda: torch.tensor([0.3, 0.6]),
        "pixels": lambda: torch.tensor([0.0, 8.0, 16.0]), "images": lambda: torch.zeros(4, 1, 8, 8),
        "betas": lambda: torch.full((10,), 0.01), "end": lambda: 1, "data_second_moment": lambda: 1.0,
        "metric": lambda: (lambda a, b: 0.5), "sampler": lambda: (lambda n, seed=None: torch.zeros(n, 2)),
        "like": pts, "c": lambda: torch.tensor([0, 1, 0, 1]), "labels": lambda: torch.tensor([0, 1, 2, 3]),
        "alpha_ddim": lambda: 0.5, "log_snr": lambda: torch.tensor([0.0, 1.0]), "dtype": lambda: torch.float32,
        "jacobian": lambda: torch.eye(2), "integrated_jacobian": lambda: 0.1 * torch.eye(2),
        "probes": lambda: torch.ones(1, 4, 2), "antisymmetric": lambda: torch.tensor([[0.0, 1.0], [-1.0, 0.0]]),
        "plan": lambda: torch.full((4, 4), 1 / 16), "mean_vec": pts, "cov": lambda: torch.eye(2),
        "means": lambda: torch.zeros(2, 2), "stds": lambda: torch.ones(2), "fn": lambda: (lambda: 1.0),
        "step": lambda: 0, "value": lambda: 1.0, "ratio": lambda: 1.0, "stderr": lambda: 0.1, "floor": lambda: 1.0,
        "shape": lambda: (2,), "conditions": lambda: torch.tensor([0, 1, 0, 1, 0, 1, 0, 1]),
        "v": pts, "pred": pts, "epsilon": lambda: 0.5, "step_size": lambda: 0.01, "bin_width": lambda: 0.125,
        "classifier": lambda: importlib.import_module("fmbook.metrics").DigitsClassifier(),
        "images_a": lambda: torch.zeros(4, 1, 8, 8), "images_b": lambda: torch.ones(4, 1, 8, 8),
        "log_density": lambda: (lambda x, t: -(x**2).sum(1)), "test_function": lambda: (lambda x: x),
        "weights": lambda: torch.full((4,), 0.25), "amplitude": lambda: 1.0, "loss_fn": lambda: None,
        "phi": lambda: (lambda x: (x**2).sum(1)), "grad_phi": lambda: (lambda x: 2 * x),
        "generate": lambda: (lambda n, seed: torch.zeros(n, 2)), "interval": lambda: (0.2, 0.8),
        "mean_tensor": pts, "box": lambda: (-3.0, 3.0, -3.0, 3.0), "rows": lambda: 2, "p": lambda: 0.5,
        "x_0": pts, "channels": lambda: 8, "in_channels": lambda: 8, "out_channels": lambda: 8,
        "embedding_dim": lambda: 16, "factor": lambda: 2, "batch": lambda: 4,
    }


#: Per callable, sound values that differ from the generic ones (by parameter name).
SPECIAL: dict[str, dict[str, Callable[[], Any]]] = {
    "data.check_images": {"x": lambda: torch.zeros(4, 1, 8, 8)},
    "ot.gaussian_icfm_velocity": {"x": lambda: torch.randn(4, 1)},
    "parameterizations.convert": {"source": lambda: "velocity", "target": lambda: "x1"},
    "solvers.differentiable_solve": {"velocity": lambda: MLPVelocityField(width=8, depth=1), "steps": lambda: 2,
                                     "method": lambda: "euler"},
    "solvers.diffusion_at": {"t": lambda: torch.full((4,), 0.5)},
    "solvers.solve_ode": {"steps": lambda: 2},
    "solvers.euler_maruyama": {"steps": lambda: 2},
    "train.logit_normal_density": {"t": lambda: torch.tensor([0.3, 0.6])},
    "ot.gaussian_w2": {"mean0": lambda: torch.zeros(2), "mean1": lambda: torch.ones(2),
                       "cov0": lambda: torch.eye(2), "cov1": lambda: 2 * torch.eye(2)},
    "parameterizations.velocity_from_score": {"score": lambda: torch.randn(4, 2)},
    "parameterizations.score_from_velocity": {"velocity": lambda: torch.randn(4, 2)},
    "parameterizations.conditional_velocity": {"x1": lambda: torch.randn(4, 2)},
    "likelihood.AffineGaussianFlow": {"mean": lambda: torch.zeros(2), "scale_tril": lambda: torch.eye(2)},
    "likelihood.continuity_residual": {"velocity": lambda: _velocity},
    "likelihood.weak_continuity_sides": {"weights": lambda: torch.full((4,), 0.25), "t": lambda: 0.5},
    "metrics.moment_zscores": {"mean": lambda: torch.zeros(2), "cov": lambda: torch.eye(2)},
    "metrics.nearest_neighbour_distances": {"reference": lambda: torch.randn(8, 2)},
    "data.downsample": {"images": lambda: torch.zeros(4, 1, 8, 8)},
    "models.ResidualBlock": {},
    "models.check_labels": {"labels": lambda: torch.tensor([0, 1]), "num_classes": lambda: 2, "batch": lambda: 2},
    "ddpm.q_sample": {"k": lambda: torch.tensor([1, 2, 3, 4])},
    "ddpm.step_to_time": {"k": lambda: torch.tensor([0, 5, 10])},
    "ddpm.time_to_step": {"t": lambda: torch.tensor([0.0, 0.5, 1.0])},
    "ddpm.ancestral_step": {"eps": lambda: torch.zeros(4, 2), "k": lambda: 2},
    "ddpm.ddim_noise_gain": {"k": lambda: 5, "j": lambda: 2},
    "ddpm.ddim_timesteps": {"T": lambda: 10, "steps": lambda: 5},
    "guidance.sample_with_guidance": {"model": lambda: importlib.import_module("fmbook.models")
                                   .ConditionalMLPVelocityField(width=8, depth=1), "c": lambda: torch.tensor([0, 1])},
    "guidance.guided_velocity": {"model": lambda: importlib.import_module("fmbook.models")
                              .ConditionalMLPVelocityField(width=8, depth=1), "c": lambda: torch.tensor([0, 1])},
    "train.null_condition_of": {"model": lambda: importlib.import_module("fmbook.models")
                                .ConditionalMLPVelocityField(width=8, depth=1), "like": lambda: torch.tensor([0, 1])},
    "scaling.local_rows": {},
    "metrics.digits_frechet_distance": {},
    "metrics.classifier_accuracy": {"labels": lambda: torch.tensor([0, 1, 2, 3])},
    "ot.reflow_coupling": {},
    "ot.monotonicity_gaps": {},
    "solvers.langevin_corrector": {"t": lambda: 0.5, "step_size": lambda: 0.01},
    "solvers.edm_time_grid": {},
    "likelihood.hutchinson_divergence": {"t": lambda: torch.full((4,), 0.5)},
    "likelihood.exact_divergence": {"t": lambda: torch.full((4,), 0.5)},
    "likelihood.draw_probes": {},
    "losses.ddpm_loss": {"x1": lambda: torch.randn(4, 2), "k": lambda: None},
    "conventions.karras_from_book": {"x_t": lambda: torch.randn(4, 2)},
    "conventions.book_from_karras": {"x_hat": lambda: torch.randn(4, 2), "sigma": lambda: torch.full((4,), 0.5)},
}


# --------------------------------------------------------------------------- bad inputs


def _bad_inputs() -> list[tuple[str, Callable[[], Any]]]:
    return [
        ("nan tensor", lambda: torch.full((4, 2), math.nan)),
        ("inf tensor", lambda: torch.full((4, 2), math.inf)),
        ("wrong shape", lambda: torch.randn(3, 5, 7)),
        ("int tensor", lambda: torch.ones(4, 2, dtype=torch.long)),
        ("empty tensor", lambda: torch.zeros(0, 2)),
        ("0-d tensor", lambda: torch.tensor(0.5)),
        ("string", lambda: "abc"),
        ("None", lambda: None),
        ("list", lambda: [[0.0, 1.0], [2.0, 3.0]]),
        ("negative int", lambda: -3),
        ("bool", lambda: True),
        ("nan float", lambda: math.nan),
        ("inf float", lambda: math.inf),
    ]


# --------------------------------------------------------------------------- discovery


def _public_callables() -> dict[str, Any]:
    found = {}
    for name in MODULES:
        mod = importlib.import_module(f"fmbook.{name}")
        names = getattr(mod, "__all__", None) or [k for k in vars(mod) if not k.startswith("_")]
        for attr in names:
            obj = getattr(mod, attr)
            home = getattr(obj, "__module__", None) or ""
            if callable(obj) and (home == mod.__name__ or home.startswith(mod.__name__ + ".")):
                found[f"{name}.{attr}"] = obj
    return found


def _exempt(qualname: str) -> str | None:
    return EXEMPT.get(qualname) or EXEMPT.get(qualname.split(".")[0])


def _is_data_holder(obj: Any) -> bool:
    """NamedTuples, dataclasses and exceptions: constructors that store what they are given."""
    if not inspect.isclass(obj):
        return False
    return issubclass(obj, (tuple, BaseException)) or (
        hasattr(obj, "__dataclass_fields__") and not hasattr(obj, "__post_init__")
    )


@dataclass
class Case:
    qualname: str
    func: Any
    parameters: list[inspect.Parameter]
    baseline: dict[str, Any] | None


def _parameters(func: Any) -> list[inspect.Parameter]:
    sig = inspect.signature(func)
    return [p for p in sig.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _sound(qualname: str, p: inspect.Parameter) -> tuple[bool, Any]:
    special = SPECIAL.get(qualname, {})
    if p.name in special:
        return True, special[p.name]()
    if p.default is not inspect.Parameter.empty:
        return True, p.default
    table = _sound_values()
    if p.name in table:
        return True, table[p.name]()
    return False, None


def _arguments(qualname: str, params: list[inspect.Parameter]) -> dict[str, Any] | None:
    args = {}
    for p in params:
        ok, value = _sound(qualname, p)
        if not ok:
            return None
        args[p.name] = value
    return args


def _call(func: Any, args: dict[str, Any]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return func(**args)


def _tensors(obj: Any, depth: int = 0) -> list[torch.Tensor]:
    """The tensors in a result (tuples, lists, dicts, dataclasses, NamedTuples), a few levels deep."""
    if depth > 3:
        return []
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, nn.Module):
        return []
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _tensors(v, depth + 1)]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _tensors(v, depth + 1)]
    if hasattr(obj, "__dataclass_fields__"):
        return [t for k in obj.__dataclass_fields__ for t in _tensors(getattr(obj, k), depth + 1)]
    return []


def _finite(result: Any) -> bool:
    if isinstance(result, float) and not math.isfinite(result):
        return False
    for t in _tensors(result):
        if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t.detach()).all()):
            return False
    return True


def _names(message: str, name: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", message) is not None


def _outcome(func: Any, args: dict[str, Any], names: list[str], nonfinite_ok: bool = False) -> str | None:
    """None when the call ended well; otherwise what went wrong."""
    try:
        result = _call(func, args)
    except (ValueError, TypeError) as error:
        message = str(error)
        if any(_names(message, n) for n in names):
            return None
        return f"{type(error).__name__} naming none of {names}: {message[:160]}"
    except Exception as error:  # noqa: BLE001 - any other type is the finding
        return f"{type(error).__name__}: {str(error)[:160]}"
    if not nonfinite_ok and not _finite(result):
        return "a result with NaN or inf"
    return None


def _cases() -> list[Case]:
    cases = []
    for qualname, func in sorted(_public_callables().items()):
        if _exempt(qualname) or _is_data_holder(func):
            continue
        try:
            params = _parameters(func)
        except (TypeError, ValueError):
            continue
        cases.append(Case(qualname, func, params, _arguments(qualname, params)))
    return cases


# --------------------------------------------------------------------------- the tests


def test_the_exemptions_name_existing_callables():
    found = _public_callables()
    modules = {q.split(".")[0] for q in found}
    listed = {**EXEMPT, **NO_BASELINE, **NO_VALUE_CHECKS}
    for name in listed:
        assert name in found or name in modules, f"{name} is not a public callable of fmbook"
    assert all(len(reason) > 20 for reason in listed.values())


def test_every_public_callable_is_driven_or_exempt():
    # The public API is large: a fuzz that found few callables would be a fuzz of nothing.
    found = _public_callables()
    driven = _cases()
    assert len(found) > 150 and len(driven) > 100


def test_the_baselines_run_where_claimed():
    # A baseline that fails must be listed in NO_BASELINE (and one that is listed must fail), so the
    # stricter check (the error names the parameter that was replaced) covers every other callable.
    failing = {}
    for case in _cases():
        if case.baseline is None:
            failing[case.qualname] = "a parameter without a sound value"
            continue
        try:
            result = _call(case.func, dict(case.baseline))
        except Exception as error:  # noqa: BLE001
            failing[case.qualname] = f"{type(error).__name__}: {error}"
            continue
        if not _finite(result):
            failing[case.qualname] = "a result with NaN or inf"
    assert set(failing) == set(NO_BASELINE), {k: v for k, v in failing.items() if k not in NO_BASELINE}


def _drive_all() -> list[str]:
    """Every driven callable, every parameter, every bad input of :func:`_bad_inputs`."""
    problems = []
    bad = _bad_inputs()
    for case in _cases():
        names = [p.name for p in case.parameters]
        for p in case.parameters:
            for label, make in bad:
                if case.baseline is not None:
                    args = dict(case.baseline)
                else:
                    args = {q.name: _sound(case.qualname, q)[1] for q in case.parameters}
                args[p.name] = make()
                expected = [p.name] if case.baseline is not None else list(names)
                if label == "wrong shape":  # a mismatch: the error may name the other side of it
                    expected += [*names, "x"]
                if isinstance(args.get("name"), str):  # a checker told the argument's name by the caller
                    expected.append(args["name"])
                nonfinite_ok = case.qualname in NO_VALUE_CHECKS and label.startswith(("nan", "inf"))
                problem = _outcome(case.func, args, expected, nonfinite_ok)
                if problem is not None:
                    problems.append(f"{case.qualname}({p.name}={label}): {problem}")
    return problems


def test_bad_inputs_give_a_clear_error_or_a_finite_result():
    problems = _drive_all()
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- hypothesis: numbers and odd values

_DRIVEN = [(case, p) for case in _cases() if case.baseline is not None for p in case.parameters]


@settings(max_examples=400, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    which=st.integers(0, len(_DRIVEN) - 1),
    value=st.one_of(
        # NaN, inf, and finite values up to 1e18: beyond, squares exceed float32's range (3.4e38), where
        # inf is the correctly rounded answer, not a fault (gaussian_icfm_velocity is exact up to there).
        st.floats(min_value=-1e18, max_value=1e18) | st.sampled_from([math.nan, math.inf, -math.inf]),
        st.integers(-8, 64),  # small: a huge number of steps or points is a long run, not a bad input
        st.text(max_size=3),
        st.none(),
        st.lists(st.floats(-2, 2), max_size=3),
        st.tuples(st.integers(-2, 3), st.floats(-2, 2)),
    ),
)
def test_hypothesis_values_give_a_clear_error_or_a_finite_result(which, value):
    case, p = _DRIVEN[which]
    args = dict(case.baseline)
    args[p.name] = value
    names = [p.name, *([args["name"]] if isinstance(args.get("name"), str) else [])]
    number = isinstance(value, float) and not math.isfinite(value)
    problem = _outcome(case.func, args, names, case.qualname in NO_VALUE_CHECKS and number)
    assert problem is None, f"{case.qualname}({p.name}={value!r}): {problem}"

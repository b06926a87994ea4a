"""Argument checks shared by the public functions of :mod:`fmbook`.

Every check raises ``ValueError`` (or ``TypeError`` for a wrong type) with a message that
names the argument and says what was expected, so that a reader's mistake is reported
where it was made rather than deep inside torch.
"""

from __future__ import annotations

import math
import random
from typing import Union

import numpy as np
import torch
from torch import Tensor

TimeLike = Union[float, int, Tensor]


def check_tensor(x: object, name: str) -> Tensor:
    """Check that ``x`` is a floating-point tensor with only finite values."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} must contain only finite values (found NaN or inf)")
    return x


def check_points(x: object, name: str, dim: int | None = None) -> Tensor:
    """Check a batch of points: a finite float tensor of shape ``(B, d)`` with ``B >= 1``."""
    x = check_tensor(x, name)
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (batch, dim), got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one point, got an empty batch")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} must have {dim} columns, got shape {tuple(x.shape)}")
    return x


def check_batch(x: object, name: str) -> Tensor:
    """Check a batch of data of any event shape: ``(B, ...)`` with ``B >= 1``, finite."""
    x = check_tensor(x, name)
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape (batch, ...), got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one sample, got an empty batch")
    return x


def check_same_shape(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    """Check that two tensors have the same shape."""
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def broadcast_time(t: TimeLike, batch: int, like: Tensor, name: str = "t") -> Tensor:
    """Turn ``t`` (a float, or a tensor of shape ``()``, ``(B,)`` or ``(B, 1)``) into ``(B,)``.

    Only the type and shape are checked: no host-device synchronisation, so a model can call
    it at every training step on a GPU. The result has the dtype and device of ``like``.
    """
    if isinstance(t, bool):
        raise TypeError(f"{name} must be a float or a tensor, got bool")
    if not isinstance(t, (int, float, Tensor)):
        raise TypeError(f"{name} must be a float or a torch.Tensor, got {type(t).__name__}")
    if not isinstance(t, Tensor):
        return torch.full((batch,), float(t), dtype=like.dtype, device=like.device)
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim == 0:
        t = t.expand(batch)
    if t.ndim != 1 or t.shape[0] != batch:
        raise ValueError(
            f"{name} must be a float or have shape ({batch},) or ({batch}, 1) to match the "
            f"batch, got shape {tuple(t.shape)}"
        )
    return t.to(dtype=like.dtype, device=like.device)


def as_time(t: TimeLike, batch: int, like: Tensor, name: str = "t") -> Tensor:
    """:func:`broadcast_time`, then check that every value is finite and lies in [0, 1]."""
    if isinstance(t, (int, float)) and not isinstance(t, bool) and (not math.isfinite(t) or not 0.0 <= t <= 1.0):
        raise ValueError(f"{name} must lie in [0, 1], got {t}")
    t = broadcast_time(t, batch, like, name)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must contain only finite values (found NaN or inf)")
    if bool((t < 0).any()) or bool((t > 1).any()):
        raise ValueError(
            f"{name} must lie in [0, 1], got values in "
            f"[{t.min().item():.4g}, {t.max().item():.4g}]"
        )
    return t


def check_positive_int(value: object, name: str, minimum: int = 1) -> int:
    """Check that ``value`` is an int (not a bool) that is at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_positive_float(value: object, name: str, allow_zero: bool = False) -> float:
    """Check that ``value`` is a finite real number, > 0 (or >= 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    ok = value >= 0 if allow_zero else value > 0
    if not math.isfinite(value) or not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value}")
    return value


def check_unit_interval(value: object, name: str, open_low: bool = False, open_high: bool = False) -> float:
    """Check that ``value`` is a real number in [0, 1] (ends excluded when asked)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    low_ok = value > 0 if open_low else value >= 0
    high_ok = value < 1 if open_high else value <= 1
    if not (math.isfinite(value) and low_ok and high_ok):
        lo = "(" if open_low else "["
        hi = ")" if open_high else "]"
        raise ValueError(f"{name} must lie in {lo}0, 1{hi}, got {value}")
    return value


def check_callable(value: object, name: str, signature: str) -> None:
    """Check that ``value`` can be called (``signature`` shows how, e.g. ``"velocity(x, t)"``)."""
    if not callable(value):
        raise TypeError(f"{name} must be callable as {signature}, got {type(value).__name__}")


def check_box(box: object, name: str = "box") -> tuple[float, float, float, float]:
    """Check a drawing box ``(x_min, x_max, y_min, y_max)`` of finite numbers with min < max."""
    if not isinstance(box, (tuple, list)) or len(box) != 4:
        raise ValueError(f"{name} must be a tuple (x_min, x_max, y_min, y_max), got {box!r}")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in box):
        raise ValueError(f"{name} must hold four finite numbers (x_min, x_max, y_min, y_max), got {box!r}")
    if not (box[0] < box[1] and box[2] < box[3]):
        raise ValueError(f"{name} must have x_min < x_max and y_min < y_max, got {box!r}")
    return (float(box[0]), float(box[1]), float(box[2]), float(box[3]))


def check_model_output(out: object, expected_shape: torch.Size, name: str = "model(x, t)") -> Tensor:
    """Check that a velocity model returned a tensor of the shape of its input."""
    if not isinstance(out, Tensor):
        raise TypeError(f"{name} must return a torch.Tensor, got {type(out).__name__}")
    if out.shape != expected_shape:
        raise ValueError(
            f"{name} must return a tensor of shape {tuple(expected_shape)} (the shape of x), "
            f"got {tuple(out.shape)}"
        )
    return out


def check_flag(value: object, name: str) -> bool:
    """Check that ``value`` is True or False (a string such as ``"no"`` is not, though it is truthy)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


#: Seeds are used by Python's, NumPy's and scikit-learn's generators too, which take 0 <= seed < 2**32.
SEED_LIMIT = 2**32


def check_seed(value: object, name: str = "seed", margin: int = 0) -> int:
    """Check a seed: an int (not a bool) with ``0 <= value < 2**32 - margin`` (``margin``: the
    largest offset the caller adds to it)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    top = SEED_LIMIT - margin
    if value >= top:
        limit = "2**32" if margin == 0 else f"2**32 - {margin} = {top}"
        raise ValueError(f"{name} must be < {limit} (NumPy and scikit-learn take seeds below 2**32), got {value}")
    return value


def check_finite_result(x: Tensor, culprit: str, what: str = "the result") -> Tensor:
    """Check, once at the end of a computation, that ``x`` is finite; otherwise a ValueError that
    blames ``culprit`` (e.g. ``"velocity"``): the inputs were checked, so NaN or inf came from it.

    One host sync: call it after a solve, never at each of its steps."""
    finite = torch.isfinite(x.detach()).reshape(x.shape[0], -1).all(dim=1) if x.ndim else torch.isfinite(x)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(
            f"{what} is not finite in {bad} of {finite.numel()} samples: {culprit} returned NaN or inf, or the "
            "solution diverged (look for NaN weights in the model, or take smaller steps)"
        )
    return x


GeneratorLike = Union[int, torch.Generator, None]
"""The book's one way to pass randomness: an int seed, a ``torch.Generator``, or None (torch's global one)."""


def as_generator(
    generator: object, name: str = "generator", device: str | torch.device | None = None
) -> torch.Generator | None:
    """``generator`` as a ``torch.Generator`` or None.

    An int in [0, 2**32) gives a fresh generator seeded with it, on ``device`` (the CPU when None);
    a ``torch.Generator`` is returned as it is (its state advances as it is used); None stays None,
    which means torch's global generator. Anything else is a TypeError naming ``name``.
    """
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, bool) or not isinstance(generator, int):
        raise TypeError(f"{name} must be an int seed, a torch.Generator or None, got {type(generator).__name__}")
    return torch.Generator(device=device if device is not None else "cpu").manual_seed(check_seed(generator, name))


def check_point_clouds(
    a: object, b: object, names: tuple[str, str] = ("a", "b"), same_size: bool = False, to_float64_cpu: bool = False
) -> tuple[Tensor, Tensor]:
    """Check two point clouds ``(n, d)`` and ``(m, d)``: finite, float, the same dimension ``d``.

    ``same_size``: also ``n == m`` and the same device (for a pairing of the two). With
    ``to_float64_cpu`` the clouds come back as detached float64 CPU copies (for metrics and OT
    plans); otherwise ``b`` is cast to the dtype and device of ``a`` unless ``same_size`` asks
    for them to agree already.
    """
    a = check_points(a, names[0])
    b = check_points(b, names[1])
    if b.shape[1] != a.shape[1]:
        raise ValueError(
            f"{names[1]} must have {a.shape[1]} columns, as {names[0]} has ({names[0]} and {names[1]} must have "
            f"the same dimension), got {names[0]} of shape {tuple(a.shape)} and {names[1]} of shape {tuple(b.shape)}"
        )
    if same_size:
        if a.shape[0] != b.shape[0]:
            raise ValueError(
                f"{names[0]} and {names[1]} must hold the same number of points to be paired, "
                f"got {a.shape[0]} and {b.shape[0]}"
            )
        if a.device != b.device:
            raise ValueError(f"{names[0]} and {names[1]} must be on the same device, got {a.device} and {b.device}")
    if to_float64_cpu:
        return a.detach().to("cpu", torch.float64), b.detach().to("cpu", torch.float64)
    return a, b if same_size else b.to(a)


def check_batch_pair(a: object, b: object, names: tuple[str, str] = ("a", "b")) -> None:
    """Metadata checks of two batches that must match (float tensors ``(B, ...)``, ``B >= 1``, one shape).

    It reads no values, so it costs no device sync: the check for arguments that arrive once per
    training step.
    """
    for name, x in zip(names, (a, b)):
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
        if x.ndim < 2 or x.shape[0] == 0:
            raise ValueError(f"{name} must have shape (batch, ...) with batch >= 1, got {tuple(x.shape)}")
    check_same_shape(a, b, *names)


# --------------------------------------------------------------------------- figures


def check_text(value: object, name: str, what: str = "a str") -> str:
    """Check that ``value`` is a ``str`` (a title, a label, a figure's text alternative)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be {what}, got {type(value).__name__}")
    return value


def check_figure_size(size: object, name: str = "size") -> tuple[float, float]:
    """A figure size: one positive number (a square) or a pair (width, height) in inches."""
    if isinstance(size, (tuple, list)) and len(size) == 2:
        return (check_positive_float(size[0], name), check_positive_float(size[1], name))
    side = check_positive_float(size, name)
    return (side, side)


def check_trajectory(x: object, name: str = "trajectory", min_times: int = 1) -> Tensor:
    """A finite float trajectory of planar points ``(B, T + 1, 2)``, ``B >= 1``, ``T + 1 >= min_times``."""
    x = check_tensor(x, name)
    if x.ndim != 3 or x.shape[2] != 2 or x.shape[0] == 0 or x.shape[1] < min_times:
        raise ValueError(
            f"{name} must have shape (batch, times, 2) with batch >= 1 and times >= {min_times}, "
            f"got {tuple(x.shape)}"
        )
    return x


def check_value_range(value: object, name: str = "value_range") -> tuple[float, float]:
    """A pair ``(low, high)`` of finite numbers with ``low < high``."""
    ok = isinstance(value, (tuple, list)) and len(value) == 2
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    if not ok or not float(value[0]) < float(value[1]):
        raise ValueError(f"{name} must be a pair (low, high) with low < high, got {value!r}")
    return (float(value[0]), float(value[1]))


def check_labels(labels: object, count: int, name: str) -> list[str] | None:
    """None, or a sequence (not a str) of exactly ``count`` labels."""
    if labels is None:
        return None
    if isinstance(labels, str) or not hasattr(labels, "__len__") or len(labels) != count:
        raise ValueError(f"{name} must be a sequence of {count} labels, got {labels!r}")
    return [str(label) for label in labels]


def check_cfm_path_and_divergence(path: object, divergence: object) -> None:
    """The checks of a CFM loss's ``path`` (None or anything with ``sample(x0, x1, t)``) and ``divergence``."""
    check_callable(divergence, "divergence", "divergence(target, prediction)")
    if path is not None and not callable(getattr(path, "sample", None)):
        # Any path with sample(x0, x1, t) -> PathSample will do (an AffinePath, or the curved
        # path of chapter 4).
        raise TypeError(
            f"path must be an AffinePath such as AffinePath(CondOTScheduler()), or have a "
            f"sample(x0, x1, t) method, got {path!r}"
        )


# Device choice and seeding: the ground floor of every training run.


def default_device() -> torch.device:
    """CUDA if available, then Apple MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (all devices); ``seed`` an int in [0, 2**32)."""
    check_seed(seed, "seed")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

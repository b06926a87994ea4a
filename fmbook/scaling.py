"""Training at scale: several processes (DistributedDataParallel under torchrun), the choice of
the training device, and checkpoints that save and restore a run exactly (weights, optimiser,
schedule, EMA, history and every random generator's state).

:func:`fmbook.train.fit` uses all of it: it wraps the model in DDP when a process group exists
(:func:`init_distributed`), keeps this process's rows of each global batch (:func:`local_rows`),
and writes and resumes checkpoints (:func:`save_checkpoint`, :func:`load_checkpoint`). This
module sits below :mod:`fmbook.train` for that reason: the loop calls it, and it knows nothing of
the loop. Chapter 8 (flow matching in practice) shows each piece.
"""

from __future__ import annotations

import copy
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from ._checks import (
    check_positive_int,
    default_device,
)

PathLike = str | os.PathLike


#: The value of the ``format`` entry of every checkpoint file written by :func:`save_checkpoint`.
CHECKPOINT_FORMAT = "fmbook-checkpoint-1"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: truncated, not a checkpoint, or for another model."""


def _check_device(device: object) -> torch.device:
    """``device`` (a str or a torch.device) as a torch.device that exists on this machine.

    None gives the default training device (``default_device()``, or the process's GPU under DDP).
    """
    if device is None:
        return _training_device()
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be None, a str such as 'cuda:0' or a torch.device, got {type(device).__name__}")
    try:
        device = torch.device(device)
    except RuntimeError as error:
        raise ValueError(
            f"device must be None or a device torch knows, such as 'cpu', 'cuda', 'cuda:0' or 'mps', got {device!r}"
        ) from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} was asked for, but CUDA is not available; use 'cpu' or None")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r} does not exist: there are {torch.cuda.device_count()} CUDA GPUs")
    mps = getattr(torch.backends, "mps", None)
    if device.type == "mps" and (mps is None or not mps.is_available()):
        raise ValueError(f"device {str(device)!r} was asked for, but Apple MPS is not available; use 'cpu' or None")
    return device


def _check_flag(value: object, name: str) -> None:
    """A TypeError naming ``name`` unless ``value`` is True or False."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: its ``rank`` among ``world_size`` processes, and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on the process that writes files and prints (rank 0)."""
        return self.rank == 0


def is_distributed() -> bool:
    """True inside an initialised ``torch.distributed`` process group."""
    return dist.is_available() and dist.is_initialized()


def world() -> tuple[int, int]:
    """``(rank, world_size)``: ``(0, 1)`` outside a process group."""
    if is_distributed():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(backend: str | None = None, device: str | None = None) -> DistributedContext:
    """Join the process group that ``torchrun`` set up, or stand alone when not launched by it.

    ``torchrun`` exports ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address.
    ``device`` is ``"cuda"``, ``"mps"``, ``"cpu"`` or None for ``default_device()``; under
    ``torchrun`` it is ``"cuda"`` (process ``LOCAL_RANK`` drives ``cuda:LOCAL_RANK``; the default
    when a GPU is present) or ``"cpu"``. The backend is NCCL on CUDA and gloo on the CPU, unless
    ``backend`` is given. Call :func:`cleanup_distributed` at the end.
    """
    if device is not None and device not in ("cuda", "mps", "cpu"):
        raise ValueError(f"device must be 'cuda', 'mps', 'cpu' or None (automatic), got {device!r}")
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if not launched and not is_distributed():
        # 'cuda' without CUDA, or 'mps' without MPS: a clear error, not a context for a missing device
        return DistributedContext(0, 1, 0, default_device() if device is None else _check_device(device))
    if device == "mps":
        raise ValueError("device 'mps' drives one GPU; several processes need device 'cuda' or 'cpu'")
    if device == "cuda":
        _check_device(device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda" or (device is None and torch.cuda.is_available()):
        torch.cuda.set_device(local_rank)
        where = torch.device("cuda", local_rank)
    else:
        where = torch.device("cpu")
    if backend is None:
        backend = "nccl" if where.type == "cuda" else "gloo"
    if backend not in ("nccl", "gloo", "mpi"):
        raise ValueError(f"backend must be 'nccl', 'gloo' or 'mpi', got {backend!r}")
    if not is_distributed():
        dist.init_process_group(backend=backend, init_method="env://")
    return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank, where)


def cleanup_distributed() -> None:
    """Leave the process group (no-op outside one)."""
    if is_distributed():
        dist.destroy_process_group()


def local_rows(x: Tensor) -> Tensor:
    """This process's share of a global batch ``(B, ...)``: rows ``rank * B/W`` to ``(rank + 1) * B/W``.

    Outside a process group the whole batch. ``B`` must be a multiple of the world size ``W``,
    so that every process holds the same number of rows and the average of the processes'
    mean losses is the mean loss of the global batch.
    """
    if not isinstance(x, Tensor) or x.ndim == 0:
        what = "a 0-d tensor" if isinstance(x, Tensor) else type(x).__name__
        raise TypeError(f"x must be a batch tensor (B, ...), got {what}")
    rank, size = world()
    if size == 1:
        return x
    if x.shape[0] % size:
        raise ValueError(f"the global batch ({x.shape[0]} rows) must be a multiple of the world size {size}")
    share = x.shape[0] // size
    return x[rank * share : (rank + 1) * share]


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` read besides the weights: ``step`` done of ``steps``, the loss history."""

    step: int
    steps: int | None
    history: list[float]


def _rng_state() -> dict:
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.as_tensor(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(
    path: PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    ema: AveragedModel | None = None,
    step: int = 0,
    steps: int | None = None,
    history: Sequence[float] = (),
) -> Path:
    """Write a training state to ``path``: weights, optimizer, schedule, EMA, step, history, RNGs.

    The file is written next to ``path`` and then renamed onto it, so an interruption while
    saving never leaves a truncated checkpoint behind. Under DDP only rank 0 writes. Tensors
    and plain Python values only, so :func:`load_checkpoint` can read it with
    ``torch.load(..., weights_only=True)``.
    """
    check_positive_int(step, "step", minimum=0)
    path = Path(path)
    state = {
        "format": CHECKPOINT_FORMAT,
        "step": step,
        "steps": steps,
        "model": _unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "ema": ema.state_dict() if ema is not None else None,
        "history": [float(v) for v in history],
        "rng": _rng_state(),
    }
    if world()[0] == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        try:
            torch.save(state, tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)  # never leave a half-written file behind
            raise
    if is_distributed():
        dist.barrier()
    return path


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_rng_state(state: object) -> str | None:
    """What is wrong with the ``rng`` entry of a checkpoint (as :func:`_rng_state` writes it), or None."""
    if not isinstance(state, dict) or not {"torch", "cuda", "numpy", "python"} <= set(state):
        return "its rng entry is not a dict with keys torch, cuda, numpy and python"
    if not (isinstance(state["torch"], Tensor) and state["torch"].dtype == torch.uint8 and state["torch"].ndim == 1):
        return "its torch generator state is not a 1-D uint8 tensor"
    if not isinstance(state["cuda"], list) or not all(
        isinstance(s, Tensor) and s.dtype == torch.uint8 for s in state["cuda"]
    ):
        return "its cuda generator states are not a list of uint8 tensors"
    n = state["numpy"]
    if not (
        isinstance(n, dict)
        and isinstance(n.get("keys"), Tensor)
        and tuple(n["keys"].shape) == (624,)
        and _is_int(n.get("pos"))
        and 0 <= n["pos"] <= 624
        and _is_int(n.get("has_gauss"))
        and isinstance(n.get("cached_gaussian"), float)
    ):
        return "its numpy generator state is not 624 keys, a position, has_gauss and cached_gaussian"
    py = state["python"]
    if not (
        isinstance(py, list)
        and len(py) == 3
        and _is_int(py[0])
        and isinstance(py[1], list)
        and len(py[1]) == 625
        and all(_is_int(v) for v in py[1])
        and (py[2] is None or isinstance(py[2], float))
    ):
        return "its Python generator state is not [version, 625 integers, gauss]"
    return None


def _check_checkpoint_state(state: dict, path: Path, optimizer: object, ema: object, restore_rng: bool) -> None:
    """Raise :class:`CheckpointError` naming the first entry of ``state`` that cannot be loaded."""
    missing = {"step", "steps", "model", "optimizer", "scheduler", "ema", "history", "rng"} - set(state)
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r} lacks the entries {sorted(missing)}")
    if not _is_int(state["step"]) or state["step"] < 0:
        raise CheckpointError(f"checkpoint {str(path)!r} has step {state['step']!r}, not an int >= 0")
    if state["steps"] is not None and (not _is_int(state["steps"]) or state["steps"] < state["step"]):
        raise CheckpointError(f"checkpoint {str(path)!r} has steps {state['steps']!r}, not None or an int >= step")
    history = state["history"]
    if not isinstance(history, list) or not all(isinstance(v, float) for v in history):
        raise CheckpointError(f"checkpoint {str(path)!r} has a loss history that is not a list of floats")
    for name, obj in (("optimizer", optimizer), ("ema", ema)):
        if obj is not None and state[name] is None:
            raise CheckpointError(f"checkpoint {str(path)!r} holds no {name} state, but a {name} was given")
    if restore_rng and (problem := _check_rng_state(state["rng"])) is not None:
        raise CheckpointError(f"checkpoint {str(path)!r} cannot restore the random generators: {problem}")


def load_checkpoint(
    path: PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    ema: AveragedModel | None = None,
    restore_rng: bool = True,
) -> Checkpoint:
    """Load a file written by :func:`save_checkpoint` into ``model`` (and the other objects given).

    Reads with ``torch.load(path, weights_only=True)``: no arbitrary code runs. The whole file
    is checked before anything is loaded (format, step, steps, history, the random generators'
    states, and that the weights, the EMA and the optimizer state fit the objects given), and
    the objects are then loaded all or nothing: any failure raises :class:`CheckpointError` (a
    ValueError) and leaves ``model``, ``optimizer``, ``scheduler``, ``ema`` and the random
    generators exactly as they were.
    """
    _check_flag(restore_rng, "restore_rng")
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"path {str(path)!r} is not a checkpoint file (it does not exist)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types for damaged files (EOF, zip, pickle, ...)
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be read: the file is truncated or not a checkpoint ({error})"
        ) from error
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {str(path)!r} is not an fmbook checkpoint (format {CHECKPOINT_FORMAT!r})")
    _check_checkpoint_state(state, path, optimizer, ema, restore_rng)
    target = _unwrap(model)
    # Trial loads into copies: a mismatch is found before the caller's objects are touched.
    trials: list[tuple[str, Any, Any]] = [("model", copy.deepcopy(target), state["model"])]
    if ema is not None:
        trials.append(("EMA", copy.deepcopy(ema), state["ema"]))
    if optimizer is not None:
        trials.append(("optimizer", copy.deepcopy(optimizer), state["optimizer"]))
    if scheduler is not None and state["scheduler"] is not None:
        trials.append(("learning-rate schedule", copy.deepcopy(scheduler), state["scheduler"]))
    for name, trial, entry in trials:
        try:
            if isinstance(trial, nn.Module):
                trial.load_state_dict(entry, strict=True)
            else:
                trial.load_state_dict(entry)
        except Exception as error:  # RuntimeError, ValueError, KeyError, TypeError from torch
            raise CheckpointError(f"checkpoint {str(path)!r} does not match the {name}: {error}") from error
    # Everything fits: load, and restore the caller's state if anything still fails.
    saved_before = (
        copy.deepcopy(target.state_dict()),
        copy.deepcopy(optimizer.state_dict()) if optimizer is not None else None,
        copy.deepcopy(scheduler.state_dict()) if scheduler is not None else None,
        copy.deepcopy(ema.state_dict()) if ema is not None else None,
        _rng_state(),
    )
    try:
        target.load_state_dict(state["model"])
        if optimizer is not None:
            optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state["scheduler"] is not None:
            scheduler.load_state_dict(state["scheduler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        if restore_rng:
            _set_rng_state(state["rng"])
    except Exception as error:
        model_state, optimizer_state, scheduler_state, ema_state, rng_state = saved_before
        target.load_state_dict(model_state)
        if optimizer is not None:
            optimizer.load_state_dict(optimizer_state)
        if scheduler is not None:
            scheduler.load_state_dict(scheduler_state)
        if ema is not None:
            ema.load_state_dict(ema_state)
        _set_rng_state(rng_state)
        raise CheckpointError(f"checkpoint {str(path)!r} could not be loaded: {error}") from error
    return Checkpoint(state["step"], state["steps"], list(state["history"]))


def _check_checkpoint_path(path: PathLike) -> Path:
    """``path`` as a Path where :func:`save_checkpoint` can write, checked before training starts.

    Creates the missing parent folders and writes and removes a probe file next to ``path``,
    so an unwritable place is reported at once, not after all the training.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"checkpoint_path must be a str or a path, got {type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"checkpoint_path {str(path)!r} is a directory; give a file name such as 'run.pt'")
    if world()[0] == 0:
        probe = path.with_name(path.name + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(probe, "wb"):
                pass
            probe.unlink()
        except OSError as error:
            raise ValueError(f"checkpoint_path {str(path)!r} cannot be written: {error}") from error
    return path


def _training_device() -> torch.device:
    if is_distributed() and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return default_device()


def copy_to_cpu(model: nn.Module) -> nn.Module:
    """A CPU copy of a trained model, e.g. to plot or to compute exact metrics with POT."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return copy.deepcopy(_unwrap(model)).to("cpu")

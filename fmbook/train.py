"""The one training loop of the book.

:func:`fit` runs any loss; :func:`train_flow_matching` is the flow-matching recipe on top
of it (Algorithm 3 of the notes). Both run unchanged on a CPU, a CUDA GPU or Apple MPS:
the device is picked by :func:`default_device` unless given.
"""

from __future__ import annotations

import copy
import math
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from ._validation import check_points, check_positive_float, check_positive_int, check_unit_interval
from .losses import Divergence, cfm_loss, squared_euclidean
from .paths import AffinePath, CondOTScheduler

LossFunction = Callable[[nn.Module, int], Tensor]


class NonFiniteLossError(FloatingPointError):
    """Raised when the loss becomes NaN or infinite; the message names the step."""


def default_device() -> torch.device:
    """CUDA if available, then Apple MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (all devices)."""
    check_positive_int(seed, "seed", minimum=0)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class TrainResult:
    """What :func:`fit` returns.

    Attributes:
        model: the trained network (on the training device).
        ema_model: the exponential moving average of its weights, or None without EMA.
        history: the loss at every step.
        seconds: wall-clock training time.
        interrupted: True when training was stopped by a KeyboardInterrupt.
    """

    model: nn.Module
    ema_model: nn.Module | None
    history: list[float] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def sampling_model(self) -> nn.Module:
        """The network to sample with: the EMA weights when there are any."""
        return self.ema_model if self.ema_model is not None else self.model


def fit(
    model: nn.Module,
    loss_fn: LossFunction,
    steps: int,
    lr: float = 1e-3,
    device: str | torch.device | None = None,
    seed: int = 0,
    ema_decay: float | None = None,
    cosine_decay: bool = True,
    progress: bool = True,
    description: str = "training",
) -> TrainResult:
    """Train ``model`` with Adam on ``loss_fn(model, step)`` for ``steps`` steps.

    Args:
        model: the network; it is moved to ``device``.
        loss_fn: returns the scalar loss of one mini-batch; it draws its own batch.
        steps: number of optimisation steps (>= 1).
        lr: the learning rate of Adam (> 0).
        device: where to train; :func:`default_device` when None.
        seed: seeds every generator before training, for reproducible runs.
        ema_decay: keep an exponential moving average of the weights with this decay
            (in (0, 1), e.g. 0.99); None for no EMA.
        cosine_decay: anneal the learning rate to 0 along a cosine.
        progress: show a tqdm progress bar with the running loss.
        description: the label of the progress bar.

    Returns:
        :class:`TrainResult`. A non-finite loss raises :class:`NonFiniteLossError`; a
        KeyboardInterrupt stops training and returns what was trained so far.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError("loss_fn must be callable as loss_fn(model, step)")
    check_positive_int(steps, "steps")
    check_positive_float(lr, "lr")
    if ema_decay is not None:
        check_unit_interval(ema_decay, "ema_decay", open_low=True, open_high=True)
    seed_everything(seed)
    device = torch.device(device) if device is not None else default_device()
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = (
        torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
        if cosine_decay
        else None
    )
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay)) if ema_decay else None
    result = TrainResult(model, ema.module if ema is not None else None)
    bar = tqdm(range(steps), desc=description, disable=not progress, leave=False)
    start = time.perf_counter()
    try:
        for step in bar:
            loss = loss_fn(model, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            value = loss.item()
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    f"the loss became {value} at step {step}; lower lr or check the data for NaN"
                )
            result.history.append(value)
            if progress and step % 50 == 0:
                bar.set_postfix(loss=f"{np.mean(result.history[-50:]):.4f}")
    except KeyboardInterrupt:
        result.interrupted = True
        done = len(result.history)
        warnings.warn(f"training interrupted after {done} steps; returning the model so far", stacklevel=2)
    finally:
        bar.close()
        result.seconds = time.perf_counter() - start
    model.eval()
    if result.ema_model is not None:
        result.ema_model.eval()
    return result


def train_flow_matching(
    model: nn.Module,
    data: Tensor,
    steps: int = 2000,
    batch_size: int = 1024,
    source: Tensor | None = None,
    path: AffinePath | None = None,
    divergence: Divergence = squared_euclidean,
    **fit_kwargs: Any,
) -> TrainResult:
    """Flow matching with independent coupling (Algorithm 3 of the notes).

    At every step: draw ``batch_size`` data points ``x1`` from the rows of ``data``
    (with replacement), source points ``x0`` (standard Gaussian, or rows of ``source``),
    times ``t ~ U[0, 1]``, and minimise the CFM loss :func:`fmbook.losses.cfm_loss`.

    Args:
        model: velocity network ``model(x, t)``.
        data: the training set ``(N, d)``.
        steps: optimisation steps.
        batch_size: points per step.
        source: optional source set ``(M, d)``; a standard Gaussian when None.
        path: the affine path (CondOT when None).
        divergence: the CFM divergence (squared Euclidean by default).
        **fit_kwargs: passed to :func:`fit` (``lr``, ``device``, ``seed``, ``ema_decay``, ...).
    """
    data = check_points(data, "data")
    if source is not None:
        source = check_points(source, "source", dim=data.shape[1])
    check_positive_int(batch_size, "batch_size")
    path = path or AffinePath(CondOTScheduler())
    device = torch.device(fit_kwargs.pop("device", None) or default_device())
    data_on_device = data.to(device)
    source_on_device = source.to(device) if source is not None else None

    def loss_fn(net: nn.Module, step: int) -> Tensor:
        x1 = data_on_device[torch.randint(0, data_on_device.shape[0], (batch_size,), device=device)]
        if source_on_device is None:
            x0 = torch.randn_like(x1)
        else:
            x0 = source_on_device[torch.randint(0, source_on_device.shape[0], (batch_size,), device=device)]
        return cfm_loss(net, x0, x1, path=path, divergence=divergence)

    return fit(model, loss_fn, steps, device=device, **fit_kwargs)


def copy_to_cpu(model: nn.Module) -> nn.Module:
    """A CPU copy of a trained model, e.g. to plot or to compute exact metrics with POT."""
    return copy.deepcopy(model).to("cpu")

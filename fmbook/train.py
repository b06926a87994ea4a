"""The one training loop of the book, and what it takes to scale it up.

:func:`fit` runs any loss; :func:`train_flow_matching` is the flow-matching recipe on top
of it (chapter 3's training procedure), :func:`train_small_flow` its preset for 2-D data on a CPU,
and :func:`train_conditional_flow_matching` its
class- or image-conditional version with label dropout for classifier-free guidance.
Everything runs unchanged on a CPU, a CUDA GPU or Apple MPS: the device is picked by
``default_device()`` unless given.

Scaling up (chapter 8):

* mixed precision: ``fit(..., amp=True)`` runs the forward pass under ``torch.autocast`` in
  bfloat16 on CUDA (the weights, the optimizer and the EMA stay in float32; bfloat16 has the
  exponent range of float32, so no loss scaling is needed). It has no effect elsewhere.
* EMA: ``fit(..., ema_decay=0.999)`` keeps an exponential moving average of the weights.
* checkpoints: ``fit(..., checkpoint_path=..., checkpoint_every=...)`` saves the model, the
  optimizer, the learning-rate schedule, the EMA, the step, the loss history and the random
  generators; ``resume=True`` continues from the file and gives the same result as a run
  that was never interrupted (:func:`~fmbook.scaling.save_checkpoint`, :func:`~fmbook.scaling.load_checkpoint`).
* several GPUs: launched by ``torchrun``, :func:`~fmbook.scaling.init_distributed` joins the process group
  and :func:`fit` wraps the model in :class:`~torch.nn.parallel.DistributedDataParallel`.
  Every process draws the same *global* batch (same seed) and keeps its own slice
  (:func:`~fmbook.scaling.local_rows`), so the loss curve is that of one process with the global batch.
  ``torchrun --nproc_per_node=2 -m fmbook --data digits`` runs ``fmbook.__main__.main``.


"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from ._checks import (  # noqa: F401  (re-exported: the chapters call train.*)
    as_generator,
    check_batch,
    check_callable,
    check_cfm_path_and_divergence,
    check_points,
    check_positive_float,
    check_positive_int,
    check_seed,
    check_unit_interval,
    default_device,
    seed_everything,
)
from .losses import Divergence, _cfm_loss_of_checked_batch, squared_euclidean
from .paths import AffinePath, CondOTScheduler
from .scaling import (  # noqa: F401  (CheckpointError, init_distributed ...: re-exported for fit's readers)
    CheckpointError,
    PathLike,
    _check_checkpoint_path,
    _check_device,
    _check_flag,
    _training_device,
    _unwrap,
    cleanup_distributed,
    copy_to_cpu,
    init_distributed,
    is_distributed,
    load_checkpoint,
    local_rows,
    save_checkpoint,
    world,
)

LossFunction = Callable[[nn.Module, int], Tensor]
#: Called by :func:`fit` after every step as ``callback(step, loss, model)``.
StepCallback = Callable[[int, float, nn.Module], None]


class NonFiniteLossError(FloatingPointError):
    """Raised when the loss becomes NaN or infinite; the message names the step.

    :func:`fit` raises it before the bad loss reaches the weights: ``result`` is the
    :class:`TrainResult` of the steps before, whose model, EMA and history are those after
    the last step with a finite loss (None when raised elsewhere).
    """

    def __init__(self, message: str, result: TrainResult | None = None) -> None:
        super().__init__(message)
        self.result = result


class NonFiniteGradientError(NonFiniteLossError):
    """Raised by :func:`fit` when the loss is finite but its gradient is not (NaN or infinite).

    The bad gradient is never applied: ``result`` holds the model, the EMA and the history
    after the last step whose loss and gradient were both finite.
    """


def _attach_result(error: BaseException, result: TrainResult) -> None:
    """Give an exception that stops :func:`fit` the training done so far, as ``error.result``.

    :class:`NonFiniteLossError` carries it already; any other exception (raised by ``loss_fn``,
    by the callback or by a checkpoint write) gets the attribute and a note that says where the
    model, the EMA and the history are, so a failure late in training loses no work.
    """
    if getattr(error, "result", None) is result:
        return
    try:
        error.result = result  # type: ignore[attr-defined]
    except AttributeError:  # an exception type with __slots__: the work is still in the note's hint
        return
    error.add_note(
        f"fmbook.train.fit: the {len(result.history)} steps trained so far (model, EMA and loss "
        "history) are in this exception's .result"
    )


@dataclass
class TrainResult:
    """What :func:`fit` returns.

    Attributes:
        model: the trained network (on the training device; never the DDP wrapper).
        ema_model: the exponential moving average of its weights, or None without EMA.
        history: the loss at every step (under DDP: the mean over all processes, i.e. the
            loss of the global batch).
        seconds: wall-clock training time.
        interrupted: True when training was stopped by a KeyboardInterrupt.
        amp: True when the forward passes ran in bfloat16 autocast (CUDA only).
        start_step: the step training started from (> 0 after resuming from a checkpoint).
    """

    model: nn.Module
    ema_model: nn.Module | None
    history: list[float] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    amp: bool = False
    start_step: int = 0

    @property
    def sampling_model(self) -> nn.Module:
        """The network to sample with: the EMA weights when there are any."""
        return self.ema_model if self.ema_model is not None else self.model


def ema_half_life(decay: float) -> float:
    r"""The half-life of an exponential moving average, in steps: :math:`\ln 2 / (-\ln \text{decay})`.

    With :math:`\bar\theta \leftarrow d\,\bar\theta + (1 - d)\,\theta` after every step (``fit(...,
    ema_decay=d)``), the weights of one step count :math:`(1 - d)\,d^k` in the average ``k`` steps later:
    their share halves every ``ema_half_life(d)`` steps (69.0 for 0.99, 693 for 0.999). ``decay`` in (0, 1).
    """
    d = check_unit_interval(decay, "decay", open_low=True, open_high=True)
    return math.log(2.0) / -math.log(d)


def ema_start_weight(decay: float, steps: int) -> float:
    r"""The weight :math:`d^{n}` of the first step's weights in :func:`fit`'s EMA after ``steps`` = n more updates.

    :class:`~torch.optim.swa_utils.AveragedModel` copies the weights at its first update, so
    after ``n`` further updates the average is :math:`d^n \theta_1 + \sum_k (1 - d) d^{n - k} \theta_k`:
    with a long memory and a short run (0.9999 and 1000 steps: 0.905) it is still mostly the
    barely trained network. ``decay`` in (0, 1), ``steps`` >= 0.
    """
    d = check_unit_interval(decay, "decay", open_low=True, open_high=True)
    n = check_positive_int(steps, "steps", minimum=0)
    return d**n


# --------------------------------------------------------------------------------------
# The training loop
# --------------------------------------------------------------------------------------


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
    amp: bool = False,
    checkpoint_path: PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    callback: StepCallback | None = None,
) -> TrainResult:
    """Train ``model`` with Adam on ``loss_fn(model, step)`` for ``steps`` steps.

    Args:
        model: the network; it is moved to ``device``.
        loss_fn: returns the scalar loss of one mini-batch; it draws its own batch (under DDP,
            its share of the global batch, see :func:`~fmbook.scaling.local_rows`).
        steps: number of optimisation steps (>= 1).
        lr: the learning rate of Adam (> 0).
        device: where to train, e.g. ``"cpu"``, ``"cuda:0"`` or a ``torch.device``; it must
            exist on this machine. ``default_device()`` when None (under DDP the process's GPU).
        seed: an int in [0, 2**32) that seeds every generator before training, for reproducible runs
            (the same on every process, so that all draw the same global batch).
        ema_decay: keep an exponential moving average of the weights with this decay
            (in (0, 1), e.g. 0.99); None for no EMA.
        cosine_decay: anneal the learning rate to 0 along a cosine.
        progress: show a tqdm progress bar with the running loss.
        description: the label of the progress bar.
        amp: run ``loss_fn`` under bfloat16 autocast; only on CUDA, ignored elsewhere.
        checkpoint_path: where to save the training state (see :func:`~fmbook.scaling.save_checkpoint`): every
            ``checkpoint_every`` steps and at the end.
        checkpoint_every: save period in steps; None saves at the end only.
        resume: continue from ``checkpoint_path`` when the file exists (it must have been
            written by a run with the same ``steps``); the result equals an uninterrupted run.
        callback: called after every completed step as ``callback(step, loss, model)``, with
            the step index (from 0, as given to ``loss_fn``), the loss of that step (a float,
            the value appended to the history) and the network (never the DDP wrapper; it is
            in training mode, so inspect it under ``torch.no_grad()``). E.g. to update a live
            plot of the loss in a notebook, or to look at samples every few hundred steps.
            Under DDP every process calls it.

    Returns:
        :class:`TrainResult`.

    Failures lose no work and never leave a half-updated model:

    * a non-finite loss raises :class:`NonFiniteLossError`, and a finite loss with a NaN or
      infinite gradient raises :class:`NonFiniteGradientError` (a subclass), both before the
      step is applied; their ``result`` holds the model, the EMA and the history after the last
      good step. Loss and gradient norm are read in one host sync per step.
    * ``checkpoint_path`` is checked before the first step (not a directory, writable).
    * a KeyboardInterrupt stops training, writes the checkpoint of the steps done when
      ``checkpoint_path`` is given (whatever ``checkpoint_every`` is) and returns what was
      trained so far.
    * any other exception (from ``loss_fn``, the callback or a checkpoint write) propagates
      with the training so far attached as its ``result`` attribute.
    """
    checkpoint_path = _check_fit_arguments(
        model, loss_fn, steps, lr, seed, ema_decay, cosine_decay, progress, description, amp,
        checkpoint_path, checkpoint_every, resume, callback,
    )
    device = _check_device(device)
    seed_everything(seed)
    model.to(device).train()
    state = _training_state(model, steps, lr, device, ema_decay, cosine_decay, amp, checkpoint_path, resume)
    result = state.result
    trained = nn.parallel.DistributedDataParallel(model) if is_distributed() else model

    def checkpoint(step_done: int) -> None:
        save_checkpoint(checkpoint_path, model, state.optimizer, state.scheduler, state.ema, step_done, steps,
                        result.history)

    bar = tqdm(range(state.start, steps), desc=description, disable=not progress or world()[0] != 0, leave=False)
    began = time.perf_counter()
    try:
        for step in bar:
            value = _training_step(trained, loss_fn, step, device, state)
            if progress and step % 50 == 0:
                bar.set_postfix(loss=f"{np.mean(result.history[-50:]):.4f}")
            if checkpoint_every is not None and (step + 1) % checkpoint_every == 0 and step + 1 < steps:
                checkpoint(step + 1)
            if callback is not None:
                callback(step, value, model)
        if checkpoint_path is not None:
            checkpoint(steps)
    except KeyboardInterrupt:
        _stop_on_interrupt(result, state.start, checkpoint_path, checkpoint)
    except BaseException as error:
        _attach_result(error, result)
        raise
    finally:
        bar.close()
        result.seconds = time.perf_counter() - began
    model.eval()
    if result.ema_model is not None:
        result.ema_model.eval()
    return result


def _check_fit_arguments(
    model: object, loss_fn: object, steps: object, lr: object, seed: object, ema_decay: object,
    cosine_decay: object, progress: object, description: object, amp: object, checkpoint_path: object,
    checkpoint_every: object, resume: object, callback: object,
) -> Path | None:
    """The argument checks of :func:`fit`, all before the first step; returns the checked checkpoint path."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError("loss_fn must be callable as loss_fn(model, step)")
    check_positive_int(steps, "steps")
    check_positive_float(lr, "lr")
    if ema_decay is not None:
        check_unit_interval(ema_decay, "ema_decay", open_low=True, open_high=True)
    check_seed(seed, "seed")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(
            f"model must have trainable parameters for fit to optimise, but {type(model).__name__} has none "
            "(or all have requires_grad=False)"
        )
    for name, flag in (("cosine_decay", cosine_decay), ("progress", progress), ("amp", amp), ("resume", resume)):
        _check_flag(flag, name)
    if not isinstance(description, str):
        raise TypeError(f"description must be a str, got {type(description).__name__}")
    if callback is not None:
        check_callable(callback, "callback", "callback(step, loss, model)")
    if checkpoint_every is not None:
        check_positive_int(checkpoint_every, "checkpoint_every")
    if (checkpoint_every is not None or resume) and checkpoint_path is None:
        raise ValueError("checkpoint_path must be given with checkpoint_every or resume=True")
    return _check_checkpoint_path(checkpoint_path) if checkpoint_path is not None else None


@dataclass
class _TrainingState:
    """What :func:`fit` updates at every step: the optimiser, its schedule, the EMA and the result."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    ema: AveragedModel | None
    result: TrainResult
    parameters: list[Tensor]
    start: int = 0


def _training_state(
    model: nn.Module, steps: int, lr: float, device: torch.device, ema_decay: float | None, cosine_decay: bool,
    amp: bool, checkpoint_path: Path | None, resume: bool,
) -> _TrainingState:
    """Adam (fused where torch has it), the cosine schedule, the EMA, and the state of a resumed run."""
    # fused: one kernel updates every parameter (on a CPU 4 times faster than a loop over tensors)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, fused=device.type in ("cpu", "cuda"))
    scheduler = (
        torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
        if cosine_decay
        else None
    )
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay)) if ema_decay else None
    result = TrainResult(model, ema.module if ema is not None else None, amp=amp and device.type == "cuda")
    state = _TrainingState(optimizer, scheduler, ema, result, [p for p in model.parameters() if p.requires_grad])
    if resume and Path(checkpoint_path).is_file():
        saved = load_checkpoint(checkpoint_path, model, optimizer, scheduler, ema)
        if saved.steps != steps:
            raise CheckpointError(
                f"checkpoint {str(checkpoint_path)!r} was written by a run of steps={saved.steps}, not steps={steps}"
            )
        state.start, result.history, result.start_step = saved.step, saved.history, saved.step
    return state


def _training_step(trained: nn.Module, loss_fn: LossFunction, step: int, device: torch.device,
                   state: _TrainingState) -> float:
    """One step of :func:`fit`: the loss, its gradient, one host sync, then the update; returns the loss.

    A non-finite loss or gradient raises before the update touches the weights.
    """
    result, optimizer = state.result, state.optimizer
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=result.amp):
        loss = loss_fn(trained, step)
    _check_loss(loss, step)
    reported = _reported_loss(loss)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    # The one host sync of the step, before the loss or its gradient can touch the weights.
    value, gradient_norm = torch.stack([reported, _gradient_norm(state.parameters, reported)]).tolist()
    if not math.isfinite(value):
        optimizer.zero_grad(set_to_none=True)
        raise NonFiniteLossError(f"the loss became {value} at step {step}; lower lr or check the data for NaN", result)
    if not math.isfinite(gradient_norm):
        optimizer.zero_grad(set_to_none=True)
        raise NonFiniteGradientError(
            f"the loss {value:.4g} at step {step} is finite but its gradient norm is {gradient_norm}; "
            "the step was not applied (look for a sqrt, log or division at 0 in the loss)",
            result,
        )
    optimizer.step()
    if state.scheduler is not None:
        state.scheduler.step()
    if state.ema is not None:
        state.ema.update_parameters(result.model)
    result.history.append(value)
    return value


def _stop_on_interrupt(result: TrainResult, start: int, checkpoint_path: Path | None,
                       checkpoint: Callable[[int], None]) -> None:
    """A KeyboardInterrupt: keep the steps trained so far, on disk too when a checkpoint path is given."""
    result.interrupted = True
    done = len(result.history)
    if checkpoint_path is not None and done > start:
        checkpoint(done)  # the steps trained so far are on disk, whatever checkpoint_every says
    saved = f"; the state of step {done} is in {str(checkpoint_path)!r}" if checkpoint_path is not None else ""
    warnings.warn(f"training interrupted after {done} steps; returning the model so far{saved}", stacklevel=3)


def _check_loss(loss: object, step: int) -> None:
    """A clear error unless ``loss`` is a one-element tensor with a gradient (its metadata only: no sync)."""
    if not isinstance(loss, Tensor):
        raise TypeError(f"loss_fn must return a torch.Tensor, got {type(loss).__name__} at step {step}")
    if loss.numel() != 1:
        raise ValueError(f"loss_fn must return a scalar loss, got shape {tuple(loss.shape)} at step {step}")
    if not loss.requires_grad:
        raise ValueError(
            f"loss_fn returned a loss without a gradient at step {step} (detached, computed under "
            "torch.no_grad(), or the model has no trainable parameters)"
        )


def _reported_loss(loss: Tensor) -> Tensor:
    """The loss of the step as a float32 scalar tensor (no host sync); under DDP the mean over
    the processes (the loss of the global batch)."""
    reported = loss.detach().to(torch.float32, copy=True).reshape(())  # a copy: all_reduce works in place
    if is_distributed():
        dist.all_reduce(reported)
        reported /= dist.get_world_size()
    return reported


def _gradient_norm(parameters: Sequence[Tensor], like: Tensor) -> Tensor:
    """The Euclidean norm of all the gradients of ``parameters`` as a float32 scalar tensor on
    ``like``'s device, without a host sync (0 when no parameter has a gradient). NaN or inf in
    any gradient makes it non-finite. Under DDP the gradients are already averaged over the
    processes by ``backward``, so every process sees the same norm."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros((), dtype=torch.float32, device=like.device)
    norms = torch._foreach_norm(grads)
    return torch.linalg.vector_norm(torch.stack(norms).to(torch.float32)).to(like.device)


def _check_data(data: object, name: str = "data") -> Tensor:
    return check_batch(data, name)


def _as_model_dtype(x: Tensor, model: nn.Module) -> Tensor:
    """``x`` in the floating dtype of ``model``'s weights (the recipes accept e.g. float64 data for a
    float32 model, as NumPy arrays converted with ``torch.from_numpy`` are)."""
    weight = next((p for p in _unwrap(model).parameters() if p.is_floating_point()), None)
    return x if weight is None or x.dtype == weight.dtype else x.to(weight.dtype)


def _flow_matching_loss(
    data: Tensor,
    batch_size: int,
    device: torch.device,
    source: Tensor | None,
    path: AffinePath,
    divergence: Divergence,
    conditions: Tensor | None = None,
    p_uncond: float = 0.0,
    null_condition: Tensor | None = None,
) -> LossFunction:
    """The CFM loss of one step: draw the global batch, keep this process's rows (:func:`~fmbook.scaling.local_rows`).

    The data were checked once by the recipe; a step reads no tensor values (no host sync).
    """
    check_cfm_path_and_divergence(path, divergence)

    def loss_fn(net: nn.Module, step: int) -> Tensor:
        idx = torch.randint(0, data.shape[0], (batch_size,), device=device)
        x1 = data[idx]
        if source is None:
            x0 = torch.randn_like(x1)
        else:
            x0 = source[torch.randint(0, source.shape[0], (batch_size,), device=device)]
        t = torch.rand(batch_size, device=device, dtype=x1.dtype)
        if conditions is None:
            return _cfm_loss_of_checked_batch(net, local_rows(x0), local_rows(x1), local_rows(t), path, divergence)
        c = conditions[idx]
        if p_uncond > 0:
            drop = torch.rand(batch_size, device=device) < p_uncond
            c = torch.where(drop.reshape(-1, *([1] * (c.ndim - 1))), null_condition.to(c), c)
        c = local_rows(c)
        return _cfm_loss_of_checked_batch(
            lambda x, tt: net(x, tt, c), local_rows(x0), local_rows(x1), local_rows(t), path, divergence
        )

    return loss_fn


def logit_normal_density(t: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    r"""The logit-normal density of training times (Esser et al., 2024), elementwise on ``t`` in (0, 1):

    .. math:: \pi(t) = \frac{1}{s \sqrt{2\pi}}\, \frac{1}{t (1 - t)}\,
              \exp\Big(-\frac{(\operatorname{logit} t - m)^2}{2 s^2}\Big),

    the law of :math:`t = 1 / (1 + e^{-(m + s z)})` with :math:`z \sim \mathcal N(0, 1)`
    (:func:`logit_normal_times`). With :math:`m = 0, s = 1` it puts more weight on the middle of the
    path than :math:`U[0, 1]`, and vanishes at both ends. Returns a tensor shaped like ``t``.
    """
    check_positive_float(std, "std")
    if isinstance(mean, bool) or not isinstance(mean, (int, float)) or not math.isfinite(mean):
        raise ValueError(f"mean must be a finite real number, got {mean!r}")
    if not isinstance(t, Tensor) or not bool(((t > 0) & (t < 1)).all()):
        raise ValueError("t must be a tensor of times in the open interval (0, 1)")
    logit = torch.log(t) - torch.log1p(-t)
    return torch.exp(-0.5 * ((logit - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi) * t * (1 - t))


def logit_normal_times(
    n: int, mean: float = 0.0, std: float = 1.0, generator: int | torch.Generator | None = None,
    device: str | torch.device | None = None,
) -> Tensor:
    r"""``n`` training times ``(n,)`` from the logit-normal law :func:`logit_normal_density`: the sigmoid of
    :math:`\mathcal N(m, s^2)`. A drop-in replacement for ``torch.rand(n)`` in a CFM loss (which then weights
    the times by the density, as Esser et al. (2024) do for rectified-flow training)."""
    check_positive_int(n, "n")
    check_positive_float(std, "std")
    if isinstance(mean, bool) or not isinstance(mean, (int, float)) or not math.isfinite(mean):
        raise ValueError(f"mean must be a finite real number, got {mean!r}")
    if device is not None:
        device = _check_device(device)
    z = torch.randn(n, generator=as_generator(generator, device=device), device=device)
    return torch.sigmoid(mean + std * z)


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
    """Flow matching with independent coupling (chapter 3's training procedure).

    At every step: draw ``batch_size`` data points ``x1`` from the rows of ``data``
    (with replacement), source points ``x0`` (standard Gaussian, or rows of ``source``),
    times ``t ~ U[0, 1]``, and minimise the CFM loss :func:`fmbook.losses.cfm_loss`.
    Under DDP ``batch_size`` is the global batch, split between the processes.

    Args:
        model: velocity network ``model(x, t)``.
        data: the training set ``(N, d)`` (or images ``(N, C, H, W)``).
        steps: optimisation steps.
        batch_size: points per step.
        source: optional source set of the same event shape; a standard Gaussian when None.
            ``data`` and ``source`` are cast to the dtype of the model's weights.
        path: the affine path (CondOT when None).
        divergence: the CFM divergence (squared Euclidean by default).
        **fit_kwargs: passed to :func:`fit` (``lr``, ``device``, ``seed``, ``ema_decay``, ...).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    data = _as_model_dtype(_check_data(data), model)
    if source is not None:
        source = _as_model_dtype(_check_data(source, "source"), model)
        if source.shape[1:] != data.shape[1:]:
            raise ValueError(f"source must have rows of shape {tuple(data.shape[1:])}, got {tuple(source.shape)}")
    check_positive_int(batch_size, "batch_size")
    path = path or AffinePath(CondOTScheduler())
    device = _check_device(fit_kwargs.pop("device", None))
    loss_fn = _flow_matching_loss(
        data.to(device), batch_size, device, source.to(device) if source is not None else None, path, divergence
    )
    return fit(model, loss_fn, steps, device=device, **fit_kwargs)


class _Threads:
    """Set torch's intra-op thread count inside a ``with`` block, and restore it after (None: leave it)."""

    def __init__(self, threads: int | None) -> None:
        self.threads = threads

    def __enter__(self) -> None:
        self.saved = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.saved)


def train_small_flow(
    data: Tensor,
    steps: int = 6000,
    batch_size: int = 256,
    lr: float = 1e-2,
    width: int = 128,
    depth: int = 4,
    seed: int = 0,
    threads: int | None = 1,
    **fit_kwargs: Any,
) -> TrainResult:
    r"""Flow matching for low-dimensional data on a CPU: many small steps at a high learning rate.

    :func:`train_flow_matching` with a fresh ``MLPVelocityField(d, width, depth)`` (SiLU, sinusoidal
    time embedding), Adam with cosine decay from ``lr`` to 0 and an EMA of decay 0.99, on the CFM loss

    .. math:: \mathcal L(\theta) = \mathbb E_{t \sim U[0, 1],\, X_0 \sim \mathcal N(0, I),\, X_1 \sim Q}
              \lVert v_\theta(t X_1 + (1 - t) X_0, t) - (X_1 - X_0)\rVert^2 .

    For a small network on a CPU the cost of a step grows with the batch far more slowly than its
    gradient noise falls, and a single thread wastes no time on synchronisation: for about the same
    CPU seconds (20 to 23 on a shared two-core machine), 6000 steps of batch 256 at ``lr`` 1e-2 on
    one thread end sharper than 4000 steps of chapter 3's batch 1024 at 3e-3 (for the book's moons,
    an RMS distance of the samples to the moon curves, :func:`fmbook.metrics.moon_curve_rms`, of
    0.106 against 0.112; the data's own is 0.100). See ``benchmarks/sharp_fit.py`` and its figures
    in ``benchmarks/README.md``.
    The model is seeded by ``seed`` too, so one call is one reproducible training run.

    Args:
        data: the training set ``(N, d)``.
        steps: optimisation steps (the cosine schedule spans them).
        batch_size: points per step.
        lr: the initial learning rate.
        width, depth: of the MLP.
        seed: seeds the initial weights and every draw of training.
        threads: torch's intra-op threads during training (restored afterwards); None keeps the
            current setting.
        **fit_kwargs: passed to :func:`fit` (``device``, ``progress``, ``callback``, ``ema_decay``, ...).

    Returns:
        :class:`TrainResult`; sample with ``result.sampling_model``.
    """
    from .models import MLPVelocityField

    data = check_points(data, "data")
    if threads is not None:
        check_positive_int(threads, "threads")
    check_positive_int(seed, "seed", minimum=0)
    fit_kwargs.setdefault("ema_decay", 0.99)
    fit_kwargs.setdefault("progress", False)
    with _Threads(threads):
        torch.manual_seed(seed)
        model = MLPVelocityField(data.shape[1], width, depth)
        return train_flow_matching(model, data, steps=steps, batch_size=batch_size, lr=lr, seed=seed, **fit_kwargs)


def null_condition_of(model: nn.Module, like: Tensor) -> Tensor:
    """The "no condition" of ``model`` for conditions shaped like ``like``.

    Class labels (an integer tensor): ``model.null_class`` (the extra class of the embedding
    table); any other condition (e.g. a low-resolution image): zeros.
    """
    if not isinstance(like, Tensor):
        raise TypeError(f"like must be a tensor of conditions, got {type(like).__name__}")
    if like.is_floating_point():
        return torch.zeros_like(like)
    null = getattr(_unwrap(model), "null_class", None)
    if null is None:
        raise ValueError("model must have a null_class attribute to be used with class labels")
    return torch.full_like(like, int(null))


def train_conditional_flow_matching(
    model: nn.Module,
    data: Tensor,
    conditions: Tensor,
    steps: int = 2000,
    batch_size: int = 256,
    p_uncond: float = 0.1,
    path: AffinePath | None = None,
    divergence: Divergence = squared_euclidean,
    **fit_kwargs: Any,
) -> TrainResult:
    r"""Conditional flow matching with label dropout (classifier-free guidance training).

    Minimises :math:`\mathbb E\, \lVert v_\theta(X_t, t, C) - (\dot\alpha_t X_1 + \dot\sigma_t X_0)\rVert^2`
    over pairs :math:`(X_1, C)` drawn together from ``(data, conditions)``; with probability
    ``p_uncond`` the condition is replaced by the null condition (:func:`null_condition_of`),
    which trains the unconditional field :math:`v_\theta(x, t, \varnothing)` in the same network.

    Args:
        model: ``model(x, t, c)``, e.g. :class:`fmbook.models.UNet` or
            :class:`fmbook.models.ConditionalMLPVelocityField`.
        data: the training set ``(N, ...)``, cast to the dtype of the model's weights.
        conditions: one condition per row: class labels ``(N,)`` or, e.g., images ``(N, C, h, w)``.
        steps, batch_size: as in :func:`train_flow_matching`.
        p_uncond: label-dropout probability in [0, 1).
        path, divergence, \*\*fit_kwargs: as in :func:`train_flow_matching`.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    data = _as_model_dtype(_check_data(data), model)
    if not isinstance(conditions, Tensor) or conditions.ndim < 1 or conditions.shape[0] != data.shape[0]:
        shape = tuple(conditions.shape) if isinstance(conditions, Tensor) else type(conditions).__name__
        raise ValueError(f"conditions must have one row per data row ({data.shape[0]}), got {shape}")
    if not conditions.is_floating_point():
        from .models import check_labels

        null = getattr(_unwrap(model), "null_class", None)
        if null is None:
            raise ValueError("model must have a null_class attribute to be trained on class labels")
        check_labels(conditions, int(null), data.shape[0], allow_null=False, name="conditions")
    p_uncond = check_unit_interval(p_uncond, "p_uncond", open_high=True)
    check_positive_int(batch_size, "batch_size")
    path = path or AffinePath(CondOTScheduler())
    device = _check_device(fit_kwargs.pop("device", None))
    conditions = conditions.to(device)
    null = null_condition_of(model, conditions[:1])[0]
    loss_fn = _flow_matching_loss(
        data.to(device), batch_size, device, None, path, divergence, conditions, p_uncond, null
    )
    return fit(model, loss_fn, steps, device=device, **fit_kwargs)



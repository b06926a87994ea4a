r"""Training losses of flow matching.

The conditional flow-matching (CFM) loss regresses a network on the conditional velocity of
an affine path,

.. math:: \mathcal L_{\mathrm{CFM}}(\theta) = \mathbb E_{t, X_0, X_1}\,
          D\big(\dot\alpha_t X_1 + \dot\sigma_t X_0,\; v_\theta(X_t, t)\big),
          \qquad X_t = \alpha_t X_1 + \sigma_t X_0,

with :math:`t \sim U[0, 1]` and :math:`D` the squared Euclidean distance or, more generally,
any Bregman divergence :math:`D_\phi(a, b) = \phi(a) - \phi(b) - \langle \nabla\phi(b), a - b\rangle`.
For these, the gradient of the CFM loss equals the gradient of the marginal FM loss: the gradient in
the prediction, :math:`\nabla_b D_\phi(a, b) = \nabla^2\phi(b)\,(b - a)`, is affine in the target
``a`` (:meth:`Bregman.gradient_in_b`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ._checks import as_generator, as_time, check_batch, check_callable, check_cfm_path_and_divergence, check_same_shape
from .ddpm import DDPMSchedule, q_sample
from .paths import AffinePath, CondOTScheduler, Scheduler, check_scheduler

Divergence = Callable[[Tensor, Tensor], Tensor]


def _flat(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1)


def _check_pair(a: object, b: object) -> None:
    """Shape and dtype checks of a divergence's arguments (no value checks: no device sync)."""
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
        if x.ndim < 2 or x.shape[0] == 0:
            raise ValueError(f"{name} must have shape (batch, ...) with batch >= 1, got {tuple(x.shape)}")
    check_same_shape(a, b, "a", "b")


@dataclass(frozen=True)
class Bregman:
    r"""The Bregman divergence :math:`D_\phi(a, b) = \phi(a) - \phi(b) - \langle\nabla\phi(b), a - b\rangle`.

    ``phi`` maps ``(B, n)`` to ``(B,)`` and must be strictly convex; ``grad_phi`` is its
    gradient ``(B, n) -> (B, n)``; ``hess_phi`` (optional) its Hessian ``(B, n) -> (B, n, n)``.
    Calling the divergence on ``a, b`` of shape ``(B, ...)`` returns ``(B,)``.

    The target goes first. The divergence is *not* affine in ``a`` (``||a - b||^2`` is
    quadratic in ``a``); what is affine in ``a`` is :math:`D_\phi(a, b) - \phi(a)`, and
    equivalently the gradient in the prediction,
    :math:`\nabla_b D_\phi(a, b) = \nabla^2\phi(b)\,(b - a)` (:meth:`gradient_in_b`). That is
    what makes the conditional loss have the gradient of the marginal one.
    """

    name: str
    phi: Callable[[Tensor], Tensor]
    grad_phi: Callable[[Tensor], Tensor]
    hess_phi: Callable[[Tensor], Tensor] | None = None

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        _check_pair(a, b)
        a, b = _flat(a), _flat(b)
        return self.phi(a) - self.phi(b) - (self.grad_phi(b) * (a - b)).sum(dim=1)

    def gradient_in_b(self, a: Tensor, b: Tensor) -> Tensor:
        r"""The gradient of the divergence in its second argument, :math:`\nabla^2\phi(b)\,(b - a)`.

        Per sample: row ``i`` is :math:`\nabla_{b_i} D_\phi(a_i, b_i)`. Shapes: ``a`` and ``b``
        ``(B, ...)``; returns ``(B, ...)``. Needs ``hess_phi``.
        """
        if self.hess_phi is None:
            raise ValueError(f"hess_phi is None: the Bregman divergence {self.name!r} has no Hessian to use")
        _check_pair(a, b)
        a_flat, b_flat = _flat(a), _flat(b)
        return (self.hess_phi(b_flat) @ (b_flat - a_flat)[:, :, None])[:, :, 0].reshape(b.shape)


@dataclass(frozen=True)
class _SquaredEuclidean(Bregman):
    r"""The Bregman divergence of :math:`\phi(x) = \lVert x\rVert^2`, evaluated as :math:`\lVert a - b\rVert^2`.

    The Bregman form :math:`\phi(a) - \phi(b) - \langle 2b, a - b\rangle` is the same number in exact
    arithmetic, but subtracts terms of size :math:`\lVert a\rVert^2` to get one of size :math:`\lVert a - b\rVert^2`:
    for targets at a distance :math:`10^{3}` from the origin it is 7 percent off in float32, at
    :math:`10^{4}` a factor 29. The direct form is exact to rounding at every offset.
    """

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        _check_pair(a, b)
        return (_flat(a) - _flat(b)).square().sum(dim=1)


#: phi(x) = ||x||^2 gives D(a, b) = ||a - b||^2, the loss of the book's main text (computed directly).
squared_euclidean = _SquaredEuclidean(
    "squared Euclidean",
    lambda x: (x**2).sum(1),
    lambda x: 2 * x,
    lambda x: 2 * torch.eye(x.shape[1], dtype=x.dtype, device=x.device).expand(x.shape[0], -1, -1),
)

#: phi(x) = sum_i log cosh(x_i): quadratic near 0 and linear far away (robust to outliers).
log_cosh = Bregman(
    "log-cosh",
    lambda x: (torch.nn.functional.softplus(2 * x) - x - torch.log(torch.tensor(2.0, dtype=x.dtype))).sum(1),
    torch.tanh,
    lambda x: torch.diag_embed(torch.cosh(x) ** -2),  # sech^2, without the cancellation of 1 - tanh^2
)


def l1_distance(a: Tensor, b: Tensor) -> Tensor:
    """:math:`\\|a - b\\|_1` per sample, ``(B,)``. Not a Bregman divergence: its minimiser is a median."""
    _check_pair(a, b)
    return (_flat(a) - _flat(b)).abs().sum(dim=1)


def log_cosh_distance(a: Tensor, b: Tensor) -> Tensor:
    r""":math:`\sum_i \log\cosh(a_i - b_i)` per sample, ``(B,)``: smooth, but not a Bregman divergence.

    Shapes: ``a`` and ``b`` ``(B, ...)``. Its gradient in ``b``, :math:`-\tanh(a - b)`, is not
    affine in ``a``, so the minimiser over ``b`` of :math:`\mathbb E\,\log\cosh(A - b)` is not the mean
    of ``A`` in general (compare :data:`log_cosh`, the Bregman divergence of
    :math:`\phi(x) = \sum_i \log\cosh x_i`, whose minimiser is the mean).
    """
    _check_pair(a, b)
    d = _flat(a) - _flat(b)
    return (torch.nn.functional.softplus(2 * d) - d - math.log(2.0)).sum(dim=1)


def _check_model_dtype(model: object, x0: Tensor) -> None:
    """A TypeError naming ``x0`` and ``x1`` when they are not of the dtype of an ``nn.Module``'s weights
    (metadata only; under autocast any float input is fine)."""
    if not isinstance(model, nn.Module) or torch.is_autocast_enabled(x0.device.type):
        return
    weight = next((p for p in model.parameters() if p.is_floating_point()), None)
    if weight is not None and x0.dtype != weight.dtype:
        raise TypeError(
            f"x0 and x1 must have the dtype of the model's weights ({weight.dtype}), got {x0.dtype}; cast them "
            f"with x.to({weight.dtype}) (the training recipes of fmbook.train cast their data themselves)"
        )


def cfm_loss(
    model: nn.Module,
    x0: Tensor,
    x1: Tensor,
    t: float | Tensor | None = None,
    path: AffinePath | None = None,
    divergence: Divergence = squared_euclidean,
    generator: int | torch.Generator | None = None,
) -> Tensor:
    r"""The conditional flow-matching loss on one batch (chapter 3's training procedure).

    Args:
        model: the velocity field, called as ``model(x_t, t)``.
        x0: source samples ``(B, ...)``, e.g. Gaussian noise.
        x1: data samples of the same shape, paired with ``x0`` row by row.
        t: times in [0, 1] (a float or ``(B,)``); drawn from U[0, 1] when None.
        path: the affine path (CondOT when None).
        divergence: ``D(target, prediction) -> (B,)``; squared Euclidean by default.
        generator: the randomness of ``t``: an int seed, a ``torch.Generator`` or None (torch's global one).

    Returns:
        The scalar mean over the batch of ``D(dx_t, model(x_t, t))``.
    """
    check_callable(model, "model", "model(x_t, t)")
    check_cfm_path_and_divergence(path, divergence)
    x0 = check_batch(x0, "x0")
    x1 = check_batch(x1, "x1")
    check_same_shape(x0, x1, "x0", "x1")
    if t is None:
        gen = as_generator(generator, device=x0.device)
        t = torch.rand(x0.shape[0], generator=gen, device=x0.device, dtype=x0.dtype)
    else:
        t = as_time(t, x0.shape[0], x0)
    return _cfm_loss_of_checked_batch(model, x0, x1, t, path or AffinePath(CondOTScheduler()), divergence)


def _cfm_loss_of_checked_batch(
    model: nn.Module, x0: Tensor, x1: Tensor, t: Tensor, path: AffinePath, divergence: Divergence
) -> Tensor:
    r"""The CFM loss :math:`\frac1B \sum_i D(\dot x_{t_i}, v_\theta(x_{t_i}, t_i))` of a batch whose values
    were checked before: :func:`cfm_loss` without its value checks, for a training step.

    It reads no tensor values (no ``isfinite``, no ``bool(tensor)``: on a GPU each would be a host
    sync per step); it checks metadata only: the dtype of ``x0`` against the model's weights, and
    the shapes of the model's output and of the divergence's. ``x0``, ``x1``: ``(B, ...)``;
    ``t``: ``(B,)`` in [0, 1]. The training recipes of :mod:`fmbook.train` check their data once,
    before the first step, and call this at every step.
    """
    _check_model_dtype(model, x0)
    sample = path.sample(x0, x1, t)
    prediction = model(sample.x_t, sample.t)
    if not isinstance(prediction, Tensor):
        raise TypeError(f"model(x_t, t) must return a torch.Tensor, got {type(prediction).__name__}")
    if prediction.shape != sample.x_t.shape:
        raise ValueError(
            f"model(x_t, t) must return the shape of x_t {tuple(sample.x_t.shape)}, got {tuple(prediction.shape)}"
        )
    per_sample = divergence(sample.dx_t, prediction)
    if not isinstance(per_sample, Tensor) or per_sample.shape != (x0.shape[0],):
        shape = tuple(per_sample.shape) if isinstance(per_sample, Tensor) else type(per_sample).__name__
        raise ValueError(f"divergence must return one value per sample, shape ({x0.shape[0]},), got {shape}")
    return per_sample.mean()


# ---------------------------------------------------------------------------------------------
# Score matching and denoising diffusion (chapters 6 and 7)
# ---------------------------------------------------------------------------------------------


def _check_path(path: object) -> None:
    if path is not None and not callable(getattr(path, "sample", None)):
        raise TypeError(
            f"path must be an AffinePath such as AffinePath(CondOTScheduler()), or have a "
            f"sample(x0, x1, t) method, got {path!r}"
        )


def _gaussian_path_sample(x0: Tensor, x1: Tensor, t, path, generator):
    """Checked inputs, times (drawn from U[0, 1) when None) and the path coefficients."""
    _check_path(path)
    if path is not None and not isinstance(path, AffinePath):
        raise TypeError(f"path must be an AffinePath (a Gaussian path), got {type(path).__name__}")
    x0 = check_batch(x0, "x0")
    x1 = check_batch(x1, "x1")
    check_same_shape(x0, x1, "x0", "x1")
    if t is None:
        generator = as_generator(generator, device=x0.device)
        t = torch.rand(x0.shape[0], generator=generator, device=x0.device, dtype=x0.dtype)
    else:
        t = as_time(t, x0.shape[0], x0)
    path = path or AffinePath(CondOTScheduler())
    return x0, x1, t, path


def _reduce(per_sample: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "none":
        return per_sample
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def _checked_call(model: nn.Module, x: Tensor, t: Tensor) -> Tensor:
    out = model(x, t)
    if out.shape != x.shape:
        raise ValueError(f"model(x_t, t) must return the shape of x_t {tuple(x.shape)}, got {tuple(out.shape)}")
    return out


def denoising_score_matching_loss(
    model: nn.Module,
    x0: Tensor,
    x1: Tensor,
    t: float | Tensor | None = None,
    path: AffinePath | None = None,
    generator: int | torch.Generator | None = None,
    reduction: str = "mean",
) -> Tensor:
    r"""The conditional (denoising) score-matching loss on a Gaussian path.

    For a Gaussian source, :math:`X_t = \alpha_t X_1 + \sigma_t \varepsilon` with
    :math:`\varepsilon = X_0 \sim \mathcal N(0, I)`, and the conditional score is
    :math:`\nabla\log p_t(x_t \mid x_1) = -(x_t - \alpha_t x_1)/\sigma_t^2 = -\varepsilon/\sigma_t`, so

    .. math:: \mathcal L_{\mathrm{CSM}}(\theta) = \mathbb E\,\big\| s_\theta(X_t, t) + \varepsilon/\sigma_t \big\|^2 .

    The target is undefined where :math:`\sigma_t = 0` (the data end), which raises a ValueError;
    its size grows like :math:`1/\sigma_t`, the instability that DDPM removed by weighting with
    :math:`\sigma_t^2` (:func:`noise_prediction_loss`).

    Args:
        model: the score network ``model(x_t, t)``.
        x0: Gaussian noise :math:`\varepsilon` ``(B, ...)``; x1: data, same shape.
        t: times (a float or ``(B,)``); U[0, 1) when None.
        path: the affine path (CondOT when None).
        generator: random generator for ``t``.
        reduction: ``"mean"`` (a scalar) or ``"none"`` (the per-sample losses ``(B,)``).
    """
    check_callable(model, "model", "model(x_t, t)")
    x0, x1, t, path = _gaussian_path_sample(x0, x1, t, path, generator)
    sigma = path.scheduler.coefficients(t).sigma_t
    if bool((sigma <= 0).any()):
        raise ValueError(
            "the conditional score -x0 / sigma_t is undefined where sigma_t = 0; keep t below the data end"
        )
    sample = path.sample(x0, x1, t)
    target = -x0 / sigma.reshape(-1, *([1] * (x0.ndim - 1)))
    return _reduce(_flat(_checked_call(model, sample.x_t, t) - target).pow(2).sum(1), reduction)


def noise_prediction_loss(
    model: nn.Module,
    x0: Tensor,
    x1: Tensor,
    t: float | Tensor | None = None,
    path: AffinePath | None = None,
    generator: int | torch.Generator | None = None,
    reduction: str = "mean",
) -> Tensor:
    r"""The noise-prediction loss of DDPM in continuous time (chapter 7):

    .. math:: \mathcal L(\theta) = \mathbb E\,\big\| \hat\varepsilon_\theta(\alpha_t X_1 + \sigma_t\varepsilon, t)
              - \varepsilon\big\|^2,

    the score-matching loss weighted by :math:`\sigma_t^2`, with :math:`\hat\varepsilon_\theta = -\sigma_t s_\theta`.
    Arguments as in :func:`denoising_score_matching_loss`; finite at every t in [0, 1].
    """
    check_callable(model, "model", "model(x_t, t)")
    x0, x1, t, path = _gaussian_path_sample(x0, x1, t, path, generator)
    sample = path.sample(x0, x1, t)
    return _reduce(_flat(_checked_call(model, sample.x_t, t) - x0).pow(2).sum(1), reduction)


def epsilon_loss_weight(scheduler: Scheduler, t: float | Tensor, parameterization: str) -> Tensor:
    r"""The weight that turns the noise-prediction loss into the loss of another parameterization.

    Write any network on a Gaussian path (source N(0, I), :math:`x = \alpha_t x_1 + \sigma_t\varepsilon`)
    through a noise predictor :math:`\hat\varepsilon_\theta`. Then per sample

    .. math:: \|\text{prediction}_\theta - \text{target}\|^2 = w_t\,\|\hat\varepsilon_\theta - \varepsilon\|^2,

    with

    * ``"velocity"`` (flow matching, :math:`u_\theta = a_t x + b_t\hat\varepsilon_\theta`, target
      :math:`\dot\alpha_t x_1 + \dot\sigma_t\varepsilon`): :math:`w_t = b_t^2`,
      :math:`b_t = \dot\sigma_t - \sigma_t\dot\alpha_t/\alpha_t`; undefined where :math:`\alpha_t = 0`;
    * ``"score"`` (denoising score matching, :math:`s_\theta = -\hat\varepsilon_\theta/\sigma_t`,
      target :math:`-\varepsilon/\sigma_t`): :math:`w_t = 1/\sigma_t^2`; undefined where :math:`\sigma_t = 0`;
    * ``"x1"`` (:math:`\hat x_1 = (x - \sigma_t\hat\varepsilon_\theta)/\alpha_t`):
      :math:`w_t = \sigma_t^2/\alpha_t^2`; undefined where :math:`\alpha_t = 0`;
    * ``"epsilon"`` or ``"x0"``: :math:`w_t = 1`.

    So flow matching, score matching and noise prediction are one loss with different weights over t
    (Kingma and Gao 2023; Lipman et al. 2024, section 4.8): the same minimiser when the network can
    fit every t, different ones at finite capacity. ``t`` a float or ``(B,)``; returns ``(B,)``.
    An undefined weight raises a ValueError.
    """
    if parameterization not in ("velocity", "score", "x1", "epsilon", "x0"):
        raise ValueError(
            f"parameterization must be 'velocity', 'score', 'x1', 'epsilon' or 'x0', got {parameterization!r}"
        )
    a, s, da, ds = check_scheduler(scheduler)(t)
    if parameterization in ("epsilon", "x0"):
        return torch.ones_like(a)
    if parameterization == "score":
        if bool((s == 0).any()):
            raise ValueError("t: the score weight 1 / sigma_t^2 is undefined where sigma_t = 0 (the data end)")
        return s.pow(-2)
    if bool((a == 0).any()):
        raise ValueError(f"t: the {parameterization} weight is undefined where alpha_t = 0 (the noise end)")
    if parameterization == "x1":
        return (s / a).pow(2)
    return (ds - s * da / a).pow(2)


def ddpm_loss(
    model: nn.Module,
    x1: Tensor,
    schedule: DDPMSchedule,
    x0: Tensor | None = None,
    k: Tensor | None = None,
    generator: int | torch.Generator | None = None,
    reduction: str = "mean",
) -> Tensor:
    r"""The discrete-time DDPM loss (Ho et al. 2020, Algorithm 1, "L_simple").

    Draw a step :math:`k` uniformly in :math:`\{1, \dots, T\}`, noise the data in closed form,
    :math:`x_k = \sqrt{\bar\alpha_k}\, x_1 + \sqrt{1 - \bar\alpha_k}\,\varepsilon`, and regress the
    noise: :math:`\|\hat\varepsilon_\theta(x_k, t_k) - \varepsilon\|^2`. The network is called at the
    book's time :math:`t_k = 1 - k/T` (see :mod:`fmbook.ddpm`).

    Args:
        model: the noise predictor ``model(x, t)``.
        x1: data ``(B, ...)`` (DDPM's :math:`x_0`).
        schedule: a :class:`fmbook.ddpm.DDPMSchedule`.
        x0: the noise :math:`\varepsilon` (drawn when None), same shape as ``x1``.
        k: integer steps ``(B,)`` in 1..T (drawn uniformly when None).
        generator: random generator for ``k`` and the noise.
        reduction: ``"mean"`` or ``"none"``.
    """
    check_callable(model, "model", "model(x, t)")
    if not isinstance(schedule, DDPMSchedule):
        raise TypeError(f"schedule must be a fmbook.ddpm.DDPMSchedule, got {type(schedule).__name__}")
    x1 = check_batch(x1, "x1")
    gen = as_generator(generator, device=x1.device)
    if x0 is None:
        x0 = torch.randn(x1.shape, generator=gen, device=x1.device, dtype=x1.dtype)
    x0 = check_batch(x0, "x0")
    check_same_shape(x0, x1, "x0", "x1")
    if k is None:
        k = torch.randint(1, schedule.T + 1, (x1.shape[0],), generator=gen, device=x1.device)
    if not isinstance(k, Tensor) or k.dtype not in (torch.int32, torch.int64) or k.shape != (x1.shape[0],):
        raise ValueError(f"k must be an integer tensor of shape ({x1.shape[0]},)")
    if bool((k < 1).any()) or bool((k > schedule.T).any()):
        raise ValueError(f"k must hold steps in [1, {schedule.T}]")
    x_k = q_sample(x1, k.cpu(), schedule, x0)
    t = 1 - k.to(x1.dtype) / schedule.T
    return _reduce(_flat(_checked_call(model, x_k, t) - x0).pow(2).sum(1), reduction)

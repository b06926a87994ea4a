"""Classifier-free guidance (chapter 8, section "Classifier-free guidance").

The guided velocity ``v = v_uncond + w (v_cond - v_uncond)`` (the book's scale ``w``; ``w = 1``
is the conditional model, ``w = 0`` the unconditional one), its conversion to and from the
Ho-Salimans scale ``w_HS = w - 1``, the guided velocity field of a conditional model and sampling
with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ._checks import check_batch, check_seed, check_unit_interval
from .models import check_labels
from .solvers import solve_ode
from .train import _unwrap, null_condition_of  # noqa: F401  (the null condition of guidance)


def _check_scale(scale: object, name: str = "guidance_scale") -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(scale).__name__}")
    if not math.isfinite(scale):
        raise ValueError(f"{name} must be finite, got {scale}")
    return float(scale)


def _check_predictions(a: object, b: object, names: tuple[str, str]) -> None:
    """Floating-point tensors (metadata only: the guided field is evaluated at every solver step)."""
    for name, value in zip(names, (a, b)):
        if not isinstance(value, Tensor) or not value.is_floating_point():
            what = value.dtype if isinstance(value, Tensor) else type(value).__name__
            raise TypeError(f"{name} must be a floating-point tensor, got {what}")


def combine_guidance(v_cond: Tensor, v_uncond: Tensor, guidance_scale: float) -> Tensor:
    r"""Classifier-free guidance: :math:`\tilde v = v(x, t, \varnothing) + w\,(v(x, t, c) - v(x, t, \varnothing))`.

    ``w = 0`` is the unconditional field, ``w = 1`` the conditional one, ``w > 1`` pushes
    further along the conditional direction. Shapes: ``(B, ...)`` in and out.
    """
    w = _check_scale(guidance_scale)
    _check_predictions(v_cond, v_uncond, ("v_cond", "v_uncond"))
    if v_cond.shape != v_uncond.shape:
        raise ValueError(
            f"v_cond and v_uncond must have the same shape, got {tuple(v_cond.shape)} and {tuple(v_uncond.shape)}"
        )
    return v_uncond + w * (v_cond - v_uncond)


def guidance_scale_from_ho_salimans(w_ho_salimans: float) -> float:
    r"""The book's guidance scale for the scale :math:`w_{\mathrm{HS}}` of Ho and Salimans (2022):
    :math:`w = 1 + w_{\mathrm{HS}}`.

    Ho and Salimans write :math:`\tilde\varepsilon = (1 + w_{\mathrm{HS}})\,\varepsilon(z, c)
    - w_{\mathrm{HS}}\,\varepsilon(z)` (their eq. 6), which is :func:`combine_guidance` with
    :math:`w = 1 + w_{\mathrm{HS}}`: their :math:`w_{\mathrm{HS}} = 0` is plain conditional
    sampling (the book's ``w = 1``), and the unconditional field is their :math:`w_{\mathrm{HS}} = -1`.
    """
    return 1.0 + _check_scale(w_ho_salimans, "w_ho_salimans")


def combine_guidance_ho_salimans(pred_cond: Tensor, pred_uncond: Tensor, w_ho_salimans: float) -> Tensor:
    r"""Classifier-free guidance as Ho and Salimans (2022, eq. 6) write it:
    :math:`(1 + w_{\mathrm{HS}})\,\hat f(x, t, c) - w_{\mathrm{HS}}\,\hat f(x, t, \varnothing)`.

    ``pred_cond`` and ``pred_uncond`` ``(B, ...)`` are two predictions of the same kind (they
    guide noise predictions; on an affine path any parameterisation that is affine in the
    velocity with coefficients free of the condition gives the same guided field). Equal to
    ``combine_guidance(pred_cond, pred_uncond, guidance_scale_from_ho_salimans(w_ho_salimans))``.
    """
    w = _check_scale(w_ho_salimans, "w_ho_salimans")
    _check_predictions(pred_cond, pred_uncond, ("pred_cond", "pred_uncond"))
    if pred_cond.shape != pred_uncond.shape:
        raise ValueError(
            f"pred_cond and pred_uncond must have the same shape, got {tuple(pred_cond.shape)} "
            f"and {tuple(pred_uncond.shape)}"
        )
    return (1 + w) * pred_cond - w * pred_uncond


def guided_velocity(
    model: nn.Module, c: Tensor, guidance_scale: float = 1.0, interval: tuple[float, float] | None = None
) -> Callable[[Tensor, Tensor], Tensor]:
    r"""The guided velocity field ``velocity(x, t)`` of a conditional model, for conditions ``c``.

    :math:`v_w(x, t \mid c) = v_\theta(x, t, \varnothing) + w\,(v_\theta(x, t, c) - v_\theta(x, t, \varnothing))`
    (:func:`combine_guidance`); the conditional and the null evaluations run as one batch of
    ``2B``. With ``w = 1`` only the conditional field is evaluated, with ``w = 0`` only the null
    one. The result can be given to
    :func:`fmbook.solvers.solve_ode`.

    Args:
        model: ``model(x, t, c)`` with a null condition (class models: ``model.null_class``).
        c: the conditions ``(B, ...)``, one per sample (class labels or images).
        guidance_scale: ``w``, a finite real number.
        interval: ``(t_low, t_high)`` in [0, 1]: guide only at times in this interval and use the
            conditional field (``w = 1``) elsewhere, the limited interval of Kynkaanniemi et al.
            (2024); None guides at all times.
    """
    w = _check_scale(guidance_scale)
    if not isinstance(c, Tensor) or c.ndim < 1:
        raise TypeError(f"c must be a tensor of conditions (B, ...), got {type(c).__name__}")
    if interval is not None:
        if not isinstance(interval, (tuple, list)) or len(interval) != 2:
            raise ValueError(f"interval must be None or a pair (t_low, t_high), got {interval!r}")
        low = check_unit_interval(interval[0], "interval[0]")
        high = check_unit_interval(interval[1], "interval[1]")
        if not low < high:
            raise ValueError(f"interval must have t_low < t_high, got {interval!r}")
    null = null_condition_of(model, c)

    def velocity(x: Tensor, t: Tensor) -> Tensor:
        if x.shape[0] != c.shape[0]:
            raise ValueError(f"x must hold one sample per condition ({c.shape[0]}), got {tuple(x.shape)}")
        if w == 1.0:  # the conditional field alone
            return model(x, t, c)
        if interval is not None:
            inside = (t >= low) & (t <= high)  # (B,): guided rows
            if not bool(inside.any()):
                return model(x, t, c)
            v_cond, v_uncond = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([c, null])).chunk(2)
            scale = torch.where(inside, w, 1.0).reshape(-1, *([1] * (x.ndim - 1))).to(v_cond)
            return v_uncond + scale * (v_cond - v_uncond)
        if w == 0.0:  # the unconditional field alone
            return model(x, t, null)
        both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([c, null]))
        v_cond, v_uncond = both.chunk(2)
        return combine_guidance(v_cond, v_uncond, w)

    return velocity


def _check_sample_shape(shape: object) -> tuple[int, ...]:
    """``shape`` (the shape of one sample) as a tuple of ints >= 1; a TypeError or ValueError naming it."""
    if isinstance(shape, (str, bytes, Tensor)) or not isinstance(shape, Sequence):
        raise TypeError(f"shape must be a sequence of ints, the shape of one sample such as (1, 8, 8), got {shape!r}")
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in shape):
        raise TypeError(f"shape must hold ints, got {tuple(shape)!r}")
    if not shape or min(shape) < 1:
        raise ValueError(f"shape must be a non-empty shape of sizes >= 1, got {tuple(shape)!r}")
    return tuple(shape)


@torch.no_grad()
def sample_with_guidance(
    model: nn.Module,
    c: Tensor,
    shape: Sequence[int],
    guidance_scale: float = 1.0,
    steps: int = 20,
    method: str = "midpoint",
    seed: int | None = None,
    x0: Tensor | None = None,
    interval: tuple[float, float] | None = None,
) -> Tensor:
    """Draw one sample per condition: solve ``dx/dt = v_w(x, t | c)`` from Gaussian noise at t = 0 to t = 1.

    Args:
        model: a conditional velocity model ``model(x, t, c)``.
        c: conditions ``(B, ...)``: class labels (checked against ``model.num_classes``) or images.
        shape: the shape of one sample, e.g. ``(1, 8, 8)``.
        guidance_scale: ``w`` of :func:`guided_velocity`.
        steps, method: the fixed-step solver of :func:`fmbook.solvers.solve_ode`.
        seed: seed of the noise, an int in [0, 2**32) (a private generator: the global one is left alone).
        x0: the noise ``(B, *shape)`` itself, instead of drawing it.
        interval: guide only for times in ``(t_low, t_high)`` (see :func:`guided_velocity`).

    Returns:
        The samples ``(B, *shape)`` on the model's device.
    """

    _check_scale(guidance_scale)
    if not isinstance(model, nn.Module) or next(_unwrap(model).parameters(), None) is None:
        raise TypeError(f"model must be a conditional torch.nn.Module with parameters, got {type(model).__name__}")
    if not isinstance(c, Tensor) or c.ndim < 1 or c.shape[0] == 0:
        raise TypeError(f"c must be a non-empty tensor of conditions (B, ...), got {type(c).__name__}")
    device = next(_unwrap(model).parameters()).device
    if not c.is_floating_point():
        num_classes = getattr(_unwrap(model), "num_classes", None)
        if num_classes is None:
            raise ValueError("model must have num_classes to be sampled with class labels")
        check_labels(c, int(num_classes), c.shape[0], name="c")
    c = c.to(device)
    shape = _check_sample_shape(shape)
    if seed is not None:
        check_seed(seed, "seed")
    if x0 is None:
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        x0 = torch.randn((c.shape[0], *shape), generator=g).to(device)
    else:
        x0 = check_batch(x0, "x0")
        if tuple(x0.shape) != (c.shape[0], *shape):
            raise ValueError(f"x0 must have shape {(c.shape[0], *shape)}, got {tuple(x0.shape)}")
    velocity = guided_velocity(model, c, guidance_scale, interval)
    return solve_ode(velocity, x0.to(device), steps=steps, method=method).x

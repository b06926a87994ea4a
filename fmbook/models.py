"""Velocity-field networks, all called as ``model(x, t)`` with batch-first tensors."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ._validation import check_positive_float, check_positive_int


def time_as_batch(t: float | Tensor, x: Tensor) -> Tensor:
    """Broadcast ``t`` (a float, or a tensor of shape ``()``, ``(B,)`` or ``(B, 1)``) to ``(B,)``.

    Only shapes are checked here (no host-device synchronisation, so training on a GPU stays
    fast); the functions of :mod:`fmbook` that take times from a reader check their range.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 0:
        raise ValueError("x must have a batch dimension, got a 0-dimensional tensor")
    batch = x.shape[0]
    if not isinstance(t, Tensor):
        if isinstance(t, bool) or not isinstance(t, (int, float)):
            raise TypeError(f"t must be a float or a torch.Tensor, got {type(t).__name__}")
        return torch.full((batch,), float(t), dtype=x.dtype, device=x.device)
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim == 0:
        t = t.expand(batch)
    if t.ndim != 1 or t.shape[0] != batch:
        raise ValueError(
            f"t must be a float or have shape ({batch},) or ({batch}, 1) to match x, "
            f"got shape {tuple(t.shape)}"
        )
    return t.to(dtype=x.dtype, device=x.device)


class SinusoidalTimeEmbedding(nn.Module):
    r"""Features :math:`(\sin \omega_k t, \cos \omega_k t)_{k < K}` of a time t in [0, 1].

    The frequencies :math:`\omega_k` are spaced geometrically from 1 to ``max_frequency``, as
    the positional encoding of a Transformer, so that the network can resolve both slow and
    fast changes in t. Input ``(B,)``, output ``(B, dim)``.
    """

    def __init__(self, dim: int = 32, max_frequency: float = 1000.0) -> None:
        super().__init__()
        check_positive_int(dim, "dim", minimum=2)
        if dim % 2:
            raise ValueError(f"dim must be even (sines and cosines in pairs), got {dim}")
        check_positive_float(max_frequency, "max_frequency")
        freqs = torch.exp(torch.linspace(0.0, math.log(max_frequency), dim // 2))
        self.register_buffer("frequencies", freqs)
        self.dim = dim

    def forward(self, t: Tensor) -> Tensor:
        """Features of times ``t`` ``(B,)``: a tensor of shape ``(B, dim)``."""
        if not isinstance(t, Tensor) or t.ndim != 1:
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"t must be a tensor of shape (batch,), got {shape}")
        if not t.is_floating_point():
            raise TypeError(f"t must be a floating-point tensor, got dtype {t.dtype}")
        angles = t[:, None] * self.frequencies[None, :].to(t.dtype)
        return torch.cat([angles.sin(), angles.cos()], dim=1)


class MLPVelocityField(nn.Module):
    """A multilayer perceptron velocity field :math:`v_\\theta(x, t)` on :math:`\\mathbb R^d`.

    The input is the point ``x`` ``(B, d)`` concatenated with a sinusoidal embedding of ``t``;
    ``depth`` hidden layers of width ``width`` with SiLU activations; output ``(B, d)``.

    Args:
        dim: dimension d of the data.
        width: hidden width.
        depth: number of hidden layers (>= 1).
        time_embedding_dim: size of the time features (even).
    """

    def __init__(self, dim: int = 2, width: int = 128, depth: int = 4, time_embedding_dim: int = 32) -> None:
        super().__init__()
        check_positive_int(dim, "dim")
        check_positive_int(width, "width")
        check_positive_int(depth, "depth")
        check_positive_int(time_embedding_dim, "time_embedding_dim", minimum=2)
        if time_embedding_dim % 2:
            raise ValueError(f"time_embedding_dim must be even, got {time_embedding_dim}")
        self.dim = dim
        self.time_embedding = SinusoidalTimeEmbedding(time_embedding_dim)
        layers: list[nn.Module] = [nn.Linear(dim + time_embedding_dim, width), nn.SiLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.SiLU()]
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, t: float | Tensor) -> Tensor:
        """Velocity at points ``x`` ``(B, d)`` and times ``t`` (float, ``(B,)`` or ``(B, 1)``).

        Shapes, dtype and device are checked (cheap, no host-device synchronisation); the
        values of ``x`` and ``t`` are not, so that a training step on a GPU stays fast.
        """
        if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[1] != self.dim:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (batch, {self.dim}), got {shape}")
        if x.shape[0] == 0:
            raise ValueError(f"x must hold at least one point, got shape {tuple(x.shape)}")
        weight = self.net[0].weight
        if not x.is_floating_point() or (x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type)):
            raise TypeError(f"x must have the dtype of the model's weights ({weight.dtype}), got {x.dtype}")
        if x.device != weight.device:
            raise ValueError(f"x must be on the model's device ({weight.device}), got {x.device}")
        t = time_as_batch(t, x)
        return self.net(torch.cat([x, self.time_embedding(t)], dim=1))

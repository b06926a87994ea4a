"""Velocity-field networks, all called as ``model(x, t)`` with batch-first tensors."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ._checks import broadcast_time, check_positive_float, check_positive_int


def time_as_batch(t: float | Tensor, x: Tensor) -> Tensor:
    """Broadcast ``t`` (a float, or a tensor of shape ``()``, ``(B,)`` or ``(B, 1)``) to ``(B,)``.

    Only shapes are checked here (no host-device synchronisation, so training on a GPU stays
    fast); the functions of :mod:`fmbook` that take times from a reader check their range.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 0:
        raise ValueError("x must have a batch dimension, got a 0-dimensional tensor")
    return broadcast_time(t, x.shape[0], x)


def _shape(x: object) -> object:
    """The shape of a tensor, or the type name of anything else (for error messages)."""
    return tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__


def _check_time_embedding_dim(dim: int) -> None:
    check_positive_int(dim, "time_embedding_dim", minimum=2)
    if dim % 2:
        raise ValueError(f"time_embedding_dim must be even, got {dim}")


def _check_input(x: object, weight: Tensor, name: str = "x") -> Tensor:
    """``x`` must be a floating-point tensor of the dtype and on the device of ``weight`` (metadata only).

    Under ``torch.autocast`` a lower-precision input is allowed (autocast casts it)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point() or (x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type)):
        raise TypeError(
            f"{name} must have the dtype of the model's weights ({weight.dtype}), got {x.dtype}; "
            f"cast it with {name}.to({weight.dtype}) (or the model with model.to({x.dtype}))"
        )
    if x.device != weight.device:
        raise ValueError(f"{name} must be on the model's device ({weight.device}), got {x.device}")
    return x


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
        """Features of times ``t`` ``(B,)``: a tensor of shape ``(B, dim)``.

        The shape and dtype of ``t`` are checked; no value is checked: no host-device
        synchronisation at any training or solver step."""
        if not isinstance(t, Tensor) or t.ndim != 1:
            raise ValueError(f"t must be a tensor of shape (batch,), got {_shape(t)}")
        if not t.is_floating_point():
            raise TypeError(f"t must be a floating-point tensor, got dtype {t.dtype}")
        angles = t[:, None] * self.frequencies[None, :].to(t.dtype)
        return torch.cat([angles.sin(), angles.cos()], dim=1)


class _MLPField(nn.Module):
    """The body shared by :class:`MLPVelocityField` and :class:`ConditionalMLPVelocityField`.

    ``[x, features of t, extra features]`` -> ``depth`` hidden layers of width ``width`` with SiLU
    -> ``(B, dim)``; ``condition`` (an embedding of the class, or None) comes before the linear
    layers, so that their initial weights under ``torch.manual_seed`` do not depend on it.
    """

    def __init__(
        self,
        dim: int,
        width: int,
        depth: int,
        time_embedding_dim: int,
        max_frequency: float,
        condition: nn.Embedding | None = None,
    ) -> None:
        super().__init__()
        check_positive_int(dim, "dim")
        check_positive_int(width, "width")
        check_positive_int(depth, "depth")
        _check_time_embedding_dim(time_embedding_dim)
        self.dim = dim
        self.time_embedding = SinusoidalTimeEmbedding(time_embedding_dim, max_frequency)
        extra = 0
        if condition is not None:
            self.class_embedding = condition
            extra = condition.embedding_dim
        layers: list[nn.Module] = [nn.Linear(dim + time_embedding_dim + extra, width), nn.SiLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.SiLU()]
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)

    def _inputs(self, x: Tensor, t: float | Tensor) -> tuple[Tensor, Tensor]:
        """``x`` ``(B, dim)`` after the checks of its shape, dtype and device, and the features of ``t``."""
        if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (batch, {self.dim}), got {_shape(x)}")
        if x.shape[0] == 0:
            raise ValueError(f"x must hold at least one point, got shape {tuple(x.shape)}")
        _check_input(x, self.net[0].weight)
        return x, self.time_embedding(time_as_batch(t, x))


class MLPVelocityField(_MLPField):
    """A multilayer perceptron velocity field :math:`v_\\theta(x, t)` on :math:`\\mathbb R^d`.

    The input is the point ``x`` ``(B, d)`` concatenated with a sinusoidal embedding of ``t``;
    ``depth`` hidden layers of width ``width`` with SiLU activations; output ``(B, d)``.

    Args:
        dim: dimension d of the data.
        width: hidden width.
        depth: number of hidden layers (>= 1).
        time_embedding_dim: size of the time features (even).
        max_frequency: the highest frequency of the time features.
    """

    def __init__(
        self, dim: int = 2, width: int = 128, depth: int = 4, time_embedding_dim: int = 32, max_frequency: float = 1e3
    ) -> None:
        super().__init__(dim, width, depth, time_embedding_dim, max_frequency)

    def forward(self, x: Tensor, t: float | Tensor) -> Tensor:
        """Velocity ``(B, d)`` at points ``x`` ``(B, d)`` and times ``t`` (float, ``(B,)`` or ``(B, 1)``).

        Shapes, dtype and device are checked (metadata); no value is checked (no NaN or range
        check of ``x`` or ``t``): no host-device synchronisation at any training or solver step.
        """
        x, e = self._inputs(x, t)
        return self.net(torch.cat([x, e], dim=1))


def _check_label_tensor(c: object, batch: int) -> Tensor:
    """Class labels in a forward pass: an integer tensor ``(batch,)``; dtype and shape only (no values)."""
    if not isinstance(c, Tensor) or c.is_floating_point() or c.is_complex() or c.dtype == torch.bool:
        what = c.dtype if isinstance(c, Tensor) else type(c).__name__
        raise TypeError(f"c must be an integer tensor of class indices, got {what}")
    if c.ndim != 1 or c.shape[0] != batch:
        raise ValueError(f"c must have shape ({batch},) to match the batch, got {tuple(c.shape)}")
    return c


def check_labels(labels: object, num_classes: int, batch: int, allow_null: bool = True, name: str = "labels") -> Tensor:
    """Check class labels: an integer tensor ``(B,)`` with values in {0, ..., num_classes - 1}.

    With ``allow_null`` the value ``num_classes`` is also accepted: the "null" class of
    classifier-free guidance, which stands for "no condition". This reads the values (a host
    sync on a GPU): call it once at the boundary (the training recipe, guided sampling), not in
    a forward pass, which checks only the dtype and shape of its labels.
    """
    if not isinstance(allow_null, bool):
        raise TypeError(f"allow_null must be True or False, got {allow_null!r}")
    check_positive_int(num_classes, "num_classes")
    check_positive_int(batch, "batch", minimum=0)
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if not isinstance(labels, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of class indices, got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, got dtype {labels.dtype}")
    if labels.ndim != 1 or labels.shape[0] != batch:
        raise ValueError(f"{name} must have shape ({batch},) to match the batch, got {tuple(labels.shape)}")
    top = num_classes if allow_null else num_classes - 1
    if labels.numel() and (bool((labels < 0).any()) or bool((labels > top).any())):
        extra = f" ({num_classes} is the null class)" if allow_null else ""
        raise ValueError(
            f"{name} must lie in [0, {top}]{extra}, got values in "
            f"[{int(labels.min())}, {int(labels.max())}]"
        )
    return labels


class ConditionalMLPVelocityField(_MLPField):
    """A class-conditional MLP velocity field :math:`v_\\theta(x, t, c)` on :math:`\\mathbb R^d`.

    The layers of :class:`MLPVelocityField`, with a learned embedding of the class ``c`` ``(B,)``
    appended to the input. The embedding table has ``num_classes + 1`` rows: the extra index
    ``num_classes`` (:attr:`null_class`) is the "no condition" token that label dropout trains,
    so the same network is both conditional and unconditional (classifier-free guidance).
    Calling ``model(x, t)`` without ``c`` uses the null class. ``max_frequency`` is the highest
    frequency of the time features: a low one makes the field smooth in t, which high-order
    ODE solvers reward.
    """

    def __init__(
        self,
        dim: int = 2,
        num_classes: int = 2,
        width: int = 128,
        depth: int = 4,
        time_embedding_dim: int = 32,
        class_embedding_dim: int = 16,
        max_frequency: float = 1000.0,
    ) -> None:
        check_positive_int(num_classes, "num_classes")
        check_positive_int(class_embedding_dim, "class_embedding_dim")
        check_positive_float(max_frequency, "max_frequency")
        embedding = nn.Embedding(num_classes + 1, class_embedding_dim)
        super().__init__(dim, width, depth, time_embedding_dim, max_frequency, embedding)
        self.num_classes = num_classes

    @property
    def null_class(self) -> int:
        """The index of the "no condition" class."""
        return self.num_classes

    def forward(self, x: Tensor, t: float | Tensor, c: Tensor | None = None) -> Tensor:
        """Velocity ``(B, d)`` at ``x`` ``(B, d)``, times ``t`` and classes ``c`` ``(B,)`` (None: null).

        Shapes, dtypes and device are checked (metadata); no value is checked, neither of ``x``
        and ``t`` nor the range of ``c`` (:func:`check_labels` does that once, at the boundary):
        no host-device synchronisation at any training or solver step.
        """
        x, e = self._inputs(x, t)
        if c is None:
            c = torch.full((x.shape[0],), self.null_class, dtype=torch.long, device=x.device)
        c = _check_label_tensor(c, x.shape[0])
        return self.net(torch.cat([x, e, self.class_embedding(c.to(x.device))], dim=1))


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with group normalisation and SiLU, plus a skip connection.

    The embedding ``e`` ``(B, E)`` of time (and class) enters as a per-channel scale and shift
    after the first normalisation: ``h = GN(h) * (1 + scale(e)) + shift(e)`` (FiLM).
    Input ``(B, C_in, H, W)``, output ``(B, C_out, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, embedding_dim: int, groups: int = 8) -> None:
        super().__init__()
        check_positive_int(in_channels, "in_channels")
        check_positive_int(out_channels, "out_channels")
        check_positive_int(embedding_dim, "embedding_dim")
        check_positive_int(groups, "groups")
        for name, channels in (("in_channels", in_channels), ("out_channels", out_channels)):
            if channels % min(groups, channels):
                raise ValueError(
                    f"{name} must be a multiple of groups={groups} (group normalisation splits the channels into "
                    f"min(groups, channels) equal groups), got {channels}"
                )
        self.in_channels, self.out_channels, self.embedding_dim = in_channels, out_channels, embedding_dim
        self.norm1 = nn.GroupNorm(min(groups, in_channels), in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.film = nn.Linear(embedding_dim, 2 * out_channels)
        self.norm2 = nn.GroupNorm(min(groups, out_channels), out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        """``x`` ``(B, C_in, H, W)`` and the embedding ``e`` ``(B, E)`` -> ``(B, C_out, H, W)``.

        Shapes, dtype and device are checked (metadata); no value is checked (no NaN check): no
        host-device synchronisation at any training or solver step.
        """
        if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[0] == 0:
            raise ValueError(f"x must have shape (batch, {self.in_channels}, height, width), got {_shape(x)}")
        _check_input(x, self.conv1.weight)
        if not isinstance(e, Tensor) or e.shape != (x.shape[0], self.embedding_dim):
            raise ValueError(f"e must have shape ({x.shape[0]}, {self.embedding_dim}), got {_shape(e)}")
        _check_input(e, self.film.weight, "e")
        h = self.conv1(nn.functional.silu(self.norm1(x)))
        scale, shift = self.film(e)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(nn.functional.silu(h))
        return h + self.skip(x)


class UNet(nn.Module):
    """A small U-Net velocity field for small images, e.g. the 8x8 digits.

    Two resolutions: ``H x W`` with ``channels`` feature maps and ``H/2 x W/2`` with
    ``2 * channels``; the decoder concatenates the encoder's full-resolution features (the
    skip connection that gives the U-Net its name, Ronneberger et al. 2015). Time enters
    through a sinusoidal embedding and an MLP; every residual block receives it by FiLM.

    Two kinds of condition ``c``, fixed at construction:

    * ``num_classes = K``: ``c`` is a class index ``(B,)`` in {0, ..., K}; ``K`` is the null
      class of classifier-free guidance, used when ``c`` is None.
    * ``cond_channels = k``: ``c`` is an image ``(B, k, h, w)`` whose size divides ``H x W``
      (a low-resolution version, for super-resolution); it is upsampled (nearest neighbour) and
      concatenated to the input. The null condition is an all-zero image.

    Call: ``model(x, t, c)`` with ``x`` ``(B, in_channels, H, W)``, ``H`` and ``W`` even;
    returns the velocity, same shape as ``x``. The output layer starts at zero.
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: int = 32,
        num_classes: int | None = None,
        cond_channels: int = 0,
        time_embedding_dim: int = 64,
    ) -> None:
        super().__init__()
        check_positive_int(in_channels, "in_channels")
        check_positive_int(channels, "channels")
        check_positive_int(cond_channels, "cond_channels", minimum=0)
        _check_time_embedding_dim(time_embedding_dim)
        if num_classes is not None:
            check_positive_int(num_classes, "num_classes")
        if num_classes is not None and cond_channels:
            raise ValueError("give either num_classes (class labels) or cond_channels (an image condition), not both")
        for width in (channels, 2 * channels, 3 * channels, 4 * channels):  # the widths of the blocks' inputs
            if width % min(8, width):
                raise ValueError(
                    f"channels must be 1, 2 or a multiple of 8 (the blocks normalise {width} = "
                    f"{width // channels} x channels feature maps in min(8, {width}) equal groups), got {channels}"
                )
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.cond_channels = cond_channels
        e = 4 * channels
        self.time_embedding = nn.Sequential(
            SinusoidalTimeEmbedding(time_embedding_dim), nn.Linear(time_embedding_dim, e), nn.SiLU(), nn.Linear(e, e)
        )
        self.class_embedding = nn.Embedding(num_classes + 1, e) if num_classes is not None else None
        self.conv_in = nn.Conv2d(in_channels + cond_channels, channels, 3, padding=1)
        self.down1 = ResidualBlock(channels, channels, e)
        self.downsample = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        self.down2 = ResidualBlock(channels, 2 * channels, e)
        self.middle = ResidualBlock(2 * channels, 2 * channels, e)
        self.up2 = ResidualBlock(4 * channels, 2 * channels, e)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.up1 = ResidualBlock(3 * channels, channels, e)
        self.norm_out = nn.GroupNorm(min(8, channels), channels)
        self.conv_out = nn.Conv2d(channels, in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @property
    def null_class(self) -> int | None:
        """The index of the "no condition" class (None for a model without class labels)."""
        return self.num_classes

    def _check_x(self, x: object) -> Tensor:
        if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must have shape (batch, {self.in_channels}, height, width), got {_shape(x)}")
        if x.shape[0] == 0 or x.shape[2] == 0 or x.shape[3] == 0 or x.shape[2] % 2 or x.shape[3] % 2:
            raise ValueError(
                f"x must hold at least one image with an even height and width (one downsampling), got {tuple(x.shape)}"
            )
        return _check_input(x, self.conv_in.weight)

    def _condition_image(self, c: Tensor | None, x: Tensor) -> Tensor:
        batch, _, height, width = x.shape
        if c is None:
            return x.new_zeros(batch, self.cond_channels, height, width)
        if not isinstance(c, Tensor) or c.ndim != 4 or c.shape[:2] != (batch, self.cond_channels):
            raise ValueError(f"c must be an image of shape ({batch}, {self.cond_channels}, h, w), got {_shape(c)}")
        if c.shape[2] == 0 or c.shape[3] == 0 or height % c.shape[2] or width % c.shape[3]:
            raise ValueError(f"c must have a height and width that divide {height}x{width}, got {tuple(c.shape)}")
        c = c.to(dtype=x.dtype, device=x.device)
        return nn.functional.interpolate(c, size=(height, width), mode="nearest")

    def forward(self, x: Tensor, t: float | Tensor, c: Tensor | None = None) -> Tensor:
        """The velocity at images ``x`` ``(B, in_channels, H, W)``, times ``t`` (a float, ``(B,)`` or
        ``(B, 1)``) and conditions ``c``; returns the shape of ``x``.

        Shapes, dtypes and device are checked (metadata); no value is checked, neither of ``x``,
        ``t`` and an image ``c`` nor the range of class labels (:func:`check_labels` does that once,
        at the boundary): no host-device synchronisation at any training or solver step.
        """
        x = self._check_x(x)
        e = self.time_embedding(time_as_batch(t, x))
        if self.class_embedding is not None:
            if c is None:
                c = torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
            c = _check_label_tensor(c, x.shape[0])
            e = e + self.class_embedding(c.to(x.device))
        elif self.cond_channels:
            x = torch.cat([x, self._condition_image(c, x)], dim=1)
        elif c is not None:
            raise ValueError("c must be None: this U-Net was built without a condition")
        h1 = self.down1(self.conv_in(x), e)  # (B, C, H, W)
        h2 = self.down2(self.downsample(h1), e)  # (B, 2C, H/2, W/2)
        h = self.middle(h2, e)
        h = self.up2(torch.cat([h, h2], dim=1), e)  # (B, 2C, H/2, W/2)
        h = self.up1(torch.cat([self.upsample(h), h1], dim=1), e)  # (B, C, H, W)
        return self.conv_out(nn.functional.silu(self.norm_out(h)))

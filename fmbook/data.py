"""Seeded toy data sets in the plane, and the standard Gaussian source.

Every sampler has the signature ``sampler(n, generator=None) -> Tensor`` and returns a float32
tensor of shape ``(n, 2)`` (``(n, dim)`` for :func:`sample_gaussian`). ``generator`` is an int
seed (the same points on every call), a ``torch.Generator`` (its state advances: successive
calls give fresh points) or None, torch's global generator, so that ``torch.manual_seed``
makes a whole notebook reproducible.

The data sets are scaled to a common size: each fits in the box [-3.5, 3.5]^2 and has a
standard deviation of order one, like the Gaussian source.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ._checks import (
    as_generator,
    check_batch,
    check_positive_float,
    check_positive_int,
    check_seed,
    check_tensor,
    check_unit_interval,
)

Sampler = Callable[..., Tensor]


def _sklearn_seed(generator: int | torch.Generator | None) -> int:
    """The int ``random_state`` that scikit-learn needs, from ``generator``.

    An int seed passes straight through (the same points as scikit-learn's own call with that
    seed); a ``torch.Generator`` draws one int in [0, 2**31 - 1) from itself (its state
    advances); None draws it from torch's global generator, so ``torch.manual_seed`` fixes it.
    """
    if isinstance(generator, int) and not isinstance(generator, bool):
        return check_seed(generator, "generator")
    return int(torch.randint(0, 2**31 - 1, (), generator=as_generator(generator)))


def sample_moons_with_labels(
    n: int, generator: int | torch.Generator | None = None, noise: float = 0.05
) -> tuple[Tensor, Tensor]:
    """Canonical moons with the index of the moon (0 upper, 1 lower) of each point.

    The distribution of ``2 * (X - (0.5, 0.25))`` with ``X = make_moons(n, noise)``: the
    upper arc ``(cos a, sin a)`` and the lower arc ``(1 - cos a, 0.5 - sin a)``, ``a`` in
    [0, pi], each with probability 1/2, plus isotropic Gaussian noise of standard deviation
    ``noise`` (before the scaling by 2). The two moons are half circles of radius 2: the upper
    one centred at ``(-1, -0.5)`` (its points have y >= -0.5), the lower one at ``(1, 0.5)``
    (y <= 0.5); :func:`fmbook.metrics.moon_curve_distance` measures the distance to them.

    scikit-learn places the points of ``make_moons`` evenly along the arcs, a stratified
    rather than a random sample: two calls then give almost the same set, which would make
    the noise floor of a metric unreachably small for a model that samples independently.
    Here the arc position ``a`` is drawn uniformly at random, so the points are independent
    draws of the same distribution (the tests compare the two).

    Returns ``(x, y)``: float32 ``(n, 2)`` and int64 ``(n,)``.
    """
    check_positive_int(n, "n")
    check_positive_float(noise, "noise", allow_zero=True)
    g = as_generator(generator)
    y = torch.randint(0, 2, (n,), generator=g)
    a = torch.rand(n, generator=g, dtype=torch.float64) * math.pi
    upper = torch.stack([a.cos(), a.sin()], dim=1)
    lower = torch.stack([1 - a.cos(), 0.5 - a.sin()], dim=1)
    x = torch.where(y[:, None] == 0, upper, lower)
    x = x + noise * torch.randn(n, 2, generator=g, dtype=torch.float64)
    x = 2.0 * (x - torch.tensor([0.5, 0.25], dtype=torch.float64))
    return x.to(torch.float32), y


def sample_moons(n: int, generator: int | torch.Generator | None = None, noise: float = 0.05) -> Tensor:
    """The canonical two moons, float32 ``(n, 2)``; see :func:`sample_moons_with_labels`."""
    return sample_moons_with_labels(n, generator, noise)[0]


def canonical_moons_sklearn(n: int, generator: int | torch.Generator | None = 0, noise: float = 0.05) -> Tensor:
    """``2 * (X - (0.5, 0.25))`` with ``X = sklearn.datasets.make_moons(n, noise)``: the reference
    definition of the canonical moons (points evenly spaced along the arcs), float32 ``(n, 2)``."""
    check_positive_int(n, "n")
    check_positive_float(noise, "noise", allow_zero=True)
    from sklearn.datasets import make_moons  # scikit-learn only for this reference and the digits

    x, _ = make_moons(n_samples=n, noise=noise, random_state=_sklearn_seed(generator))
    return torch.as_tensor(2.0 * (x - np.array([0.5, 0.25])), dtype=torch.float32)


def sample_eight_gaussians(
    n: int, generator: int | torch.Generator | None = None, radius: float = 3.0, std: float = 0.3
) -> Tensor:
    """A mixture of eight equally weighted Gaussians with centres evenly spaced on a circle.

    Centres ``radius * (cos(k pi / 4), sin(k pi / 4))`` for k = 0..7, covariance ``std^2 I``.
    Returns a float32 tensor of shape ``(n, 2)``.
    """
    check_positive_int(n, "n")
    check_positive_float(radius, "radius")
    check_positive_float(std, "std")
    g = as_generator(generator)
    angles = torch.arange(8, dtype=torch.float64) * (math.pi / 4)
    centres = radius * torch.stack([angles.cos(), angles.sin()], dim=1)
    which = torch.randint(0, 8, (n,), generator=g)
    x = centres[which] + std * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return x.to(torch.float32)


def sample_checkerboard(n: int, generator: int | torch.Generator | None = None, cell: float = 1.5) -> Tensor:
    """Uniform on the dark cells of a 4 x 4 checkerboard of side ``4 * cell``, centred at 0.

    Returns a float32 tensor of shape ``(n, 2)``.
    """
    check_positive_int(n, "n")
    check_positive_float(cell, "cell")
    g = as_generator(generator)
    col = torch.randint(0, 4, (n,), generator=g)
    row = 2 * torch.randint(0, 2, (n,), generator=g) + (col % 2)  # rows of the same colour
    u = torch.rand(n, 2, generator=g, dtype=torch.float64)
    x = torch.stack([col + u[:, 0], row + u[:, 1]], dim=1) * cell - 2 * cell
    return x.to(torch.float32)


def sample_circles(
    n: int, generator: int | torch.Generator | None = None, noise: float = 0.05, radius: float = 3.0
) -> Tensor:
    """Two concentric circles of radii ``radius`` and ``radius / 2``, as scikit-learn's
    ``make_circles(factor=0.5)`` scaled by ``radius``, with the angle drawn at random (see
    :func:`sample_moons_with_labels` for why). ``noise`` is relative to the outer radius.
    Returns a float32 tensor of shape ``(n, 2)``.
    """
    check_positive_int(n, "n")
    check_positive_float(noise, "noise", allow_zero=True)
    check_positive_float(radius, "radius")
    g = as_generator(generator)
    r = torch.where(torch.rand(n, generator=g) < 0.5, 1.0, 0.5).to(torch.float64)
    a = torch.rand(n, generator=g, dtype=torch.float64) * 2 * math.pi
    x = r[:, None] * torch.stack([a.cos(), a.sin()], dim=1)
    x = x + noise * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return (radius * x).to(torch.float32)


def sample_spirals(
    n: int, generator: int | torch.Generator | None = None, noise: float = 0.1, turns: float = 1.5
) -> Tensor:
    """Two interleaved spiral arms, each the mirror image of the other through the origin.

    A point at angle ``theta`` in [0, 2 pi turns] on an arm has radius ``3 theta / (2 pi turns)``;
    Gaussian noise of standard deviation ``noise`` is added. Returns float32 ``(n, 2)``.
    """
    check_positive_int(n, "n")
    check_positive_float(noise, "noise", allow_zero=True)
    check_positive_float(turns, "turns")
    g = as_generator(generator)
    theta_max = 2 * math.pi * turns
    theta = torch.rand(n, generator=g, dtype=torch.float64).sqrt() * theta_max
    r = 3.0 * theta / theta_max
    arm = torch.where(torch.rand(n, generator=g) < 0.5, 1.0, -1.0).to(torch.float64)
    x = arm[:, None] * torch.stack([r * theta.cos(), r * theta.sin()], dim=1)
    x = x + noise * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return x.to(torch.float32)


def sample_gaussian(n: int, generator: int | torch.Generator | None = None, dim: int = 2) -> Tensor:
    """The standard Gaussian source N(0, I): a float32 tensor of shape ``(n, dim)``."""
    check_positive_int(n, "n")
    check_positive_int(dim, "dim")
    g = as_generator(generator)
    return torch.randn(n, dim, generator=g)


#: The samplers of :func:`sample`, by name.
DATASETS: dict[str, Sampler] = {
    "moons": sample_moons,
    "eight_gaussians": sample_eight_gaussians,
    "checkerboard": sample_checkerboard,
    "circles": sample_circles,
    "spirals": sample_spirals,
    "gaussian": sample_gaussian,
}


def sample(name: str, n: int, generator: int | torch.Generator | None = None) -> Tensor:
    """Draw ``n`` points of the data set called ``name`` (a key of :data:`DATASETS`)."""
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"name must be one of {sorted(DATASETS)}, got {name!r}")
    return DATASETS[name](n, generator)


# --------------------------------------------------------------------------------------
# The 8x8 digits of scikit-learn (shipped with the package: no download)
# --------------------------------------------------------------------------------------

#: Side length of a digits image, and the largest pixel value of scikit-learn's digits.
DIGITS_SIZE = 8
DIGITS_MAX_VALUE = 16.0


@dataclass(frozen=True)
class DigitsSplit:
    """The digits data set split into a training set and a held-out set.

    Images are float32 ``(N, 1, 8, 8)`` with values in [-1, 1] (0 ink-free, 16 full ink in
    scikit-learn's scale maps to -1 and 1); labels are int64 ``(N,)`` in {0, ..., 9}.
    """

    train_images: Tensor
    train_labels: Tensor
    heldout_images: Tensor
    heldout_labels: Tensor


def digits_to_unit_range(pixels: Tensor) -> Tensor:
    """Map scikit-learn's pixel values in [0, 16] to [-1, 1]: ``x / 8 - 1``.

    Raises a ValueError for values outside [0, 16] (e.g. 8-bit pixels in [0, 255]) or NaN,
    which would otherwise give images outside [-1, 1] without a word.
    """
    pixels = check_tensor(pixels, "pixels")  # a float tensor without NaN or inf
    if pixels.numel() and not (pixels.min() >= 0 and pixels.max() <= DIGITS_MAX_VALUE):
        raise ValueError(
            f"pixels must be scikit-learn's digit values in [0, {DIGITS_MAX_VALUE:g}], got values in "
            f"[{pixels.min().item():g}, {pixels.max().item():g}] (8-bit images: divide by 255 and multiply by 16)"
        )
    return pixels / (DIGITS_MAX_VALUE / 2) - 1.0


def load_digits_split(heldout_fraction: float = 0.25, generator: int | torch.Generator | None = 0) -> DigitsSplit:
    """scikit-learn's 1797 handwritten 8x8 digits, scaled to [-1, 1], with a stratified split.

    ``sklearn.datasets.load_digits`` reads a file that ships with scikit-learn, so this works
    offline. The split keeps the proportion of every class (``train_test_split`` with
    ``stratify``) and is the same for the same int ``generator``.

    Args:
        heldout_fraction: the share of images held out, in (0, 1).
        generator: the randomness of the split: an int seed is scikit-learn's ``random_state``
            itself; a ``torch.Generator`` (or None: torch's global one) draws that int.

    Returns:
        :class:`DigitsSplit` with images ``(N, 1, 8, 8)`` in [-1, 1] and labels ``(N,)``.
    """
    check_unit_interval(heldout_fraction, "heldout_fraction", open_low=True, open_high=True)
    seed = _sklearn_seed(generator)
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float32)[:, None]  # (N, 1, 8, 8)
    labels = torch.as_tensor(digits.target, dtype=torch.int64)
    idx_train, idx_heldout = train_test_split(
        np.arange(labels.shape[0]), test_size=heldout_fraction, random_state=seed, stratify=digits.target
    )
    idx_train, idx_heldout = torch.as_tensor(np.sort(idx_train)), torch.as_tensor(np.sort(idx_heldout))
    images = digits_to_unit_range(images)
    return DigitsSplit(images[idx_train], labels[idx_train], images[idx_heldout], labels[idx_heldout])


def check_images(x: object, name: str = "images", channels: int | None = None, size: int | None = None) -> Tensor:
    """Check a batch of images: a finite float tensor ``(B, C, H, W)`` (``C``, ``H = W`` if given)."""
    for label, value in (("channels", channels), ("size", size)):
        if value is not None:
            check_positive_int(value, label)
    x = check_batch(x, name)
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (batch, channels, height, width), got {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channel(s), got shape {tuple(x.shape)}")
    if size is not None and tuple(x.shape[2:]) != (size, size):
        raise ValueError(f"{name} must be {size}x{size} images, got shape {tuple(x.shape)}")
    return x


def downsample(images: Tensor, factor: int = 2) -> Tensor:
    """Average-pool images ``(B, C, H, W)`` by ``factor``: ``(B, C, H / factor, W / factor)``.

    The low-resolution version used as the condition of the super-resolution experiment
    (8x8 digits -> 4x4). ``H`` and ``W`` must be multiples of ``factor``.
    """
    images = check_images(images, "images")
    check_positive_int(factor, "factor")
    if images.shape[2] % factor or images.shape[3] % factor:
        raise ValueError(f"images height and width must be multiples of factor={factor}, got {tuple(images.shape)}")
    return torch.nn.functional.avg_pool2d(images, factor)

"""Tests of the conditional networks of fmbook.models: the U-Net and the conditional MLP."""

import pytest
import torch

from fmbook import models


def _perturb(model: torch.nn.Module, seed: int = 0) -> None:
    """Give the zero-initialised output layer random weights, so that every input matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))


def test_unet_shapes_and_zero_initial_output():
    torch.manual_seed(0)
    net = models.UNet(channels=16, num_classes=10)
    x = torch.randn(5, 1, 8, 8)
    out = net(x, torch.rand(5), torch.arange(5))
    assert out.shape == x.shape
    assert torch.equal(out, torch.zeros_like(out))  # the output convolution starts at zero
    assert net(torch.randn(3, 1, 16, 12), 0.5).shape == (3, 1, 16, 12)  # any even size


def test_unet_uses_time_class_and_default_null_class():
    torch.manual_seed(0)
    net = models.UNet(channels=16, num_classes=10)
    _perturb(net)
    x, t = torch.randn(4, 1, 8, 8), torch.full((4,), 0.3)
    c = torch.tensor([0, 1, 2, 3])
    base = net(x, t, c)
    assert (base - net(x, t, torch.tensor([4, 5, 6, 7]))).abs().max() > 1e-3
    assert (base - net(x, torch.full((4,), 0.8), c)).abs().max() > 1e-3
    null = torch.full((4,), net.null_class)
    assert net.null_class == 10
    assert torch.equal(net(x, t), net(x, t, null))
    # Each sample's output depends only on its own input (no mixing across the batch).
    single = net(x[1:2], t[1:2], c[1:2])
    assert torch.allclose(single, base[1:2], atol=1e-5)


def test_unet_image_condition():
    torch.manual_seed(0)
    net = models.UNet(channels=8, cond_channels=1)
    _perturb(net)
    x, t = torch.randn(3, 1, 8, 8), torch.rand(3)
    low = torch.randn(3, 1, 4, 4)
    out = net(x, t, low)
    assert out.shape == x.shape
    assert (out - net(x, t, low + 1)).abs().max() > 1e-3
    # The null condition is the all-zero image; a 4x4 condition equals its nearest upsampling to 8x8.
    assert torch.equal(net(x, t), net(x, t, torch.zeros(3, 1, 4, 4)))
    up = low.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    assert torch.allclose(net(x, t, up), out, atol=1e-6)


def test_unet_bad_input():
    net = models.UNet(channels=8, num_classes=10)
    with pytest.raises(ValueError, match="x must have shape"):
        net(torch.randn(2, 8, 8), 0.5)
    with pytest.raises(ValueError, match="x must have shape"):
        net(torch.randn(2, 3, 8, 8), 0.5)
    with pytest.raises(ValueError, match="even height"):
        net(torch.randn(2, 1, 7, 8), 0.5)
    # The range of the labels is checked once at the boundary (check_labels), not in the forward.
    with pytest.raises(ValueError, match=r"c must lie in \[0, 10\]"):
        models.check_labels(torch.tensor([3, 11]), net.num_classes, 2, name="c")
    with pytest.raises(ValueError, match=r"c must lie in"):
        models.check_labels(torch.tensor([-1, 0]), net.num_classes, 2, name="c")
    with pytest.raises(IndexError):  # the forward itself: the embedding refuses the index on the CPU
        net(torch.randn(2, 1, 8, 8), 0.5, torch.tensor([3, 11]))
    with pytest.raises(TypeError, match="integer tensor"):
        net(torch.randn(2, 1, 8, 8), 0.5, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        net(torch.randn(2, 1, 8, 8), 0.5, torch.tensor([0, 1, 2]))
    image_net = models.UNet(channels=8, cond_channels=1)
    with pytest.raises(ValueError, match="c must be an image"):
        image_net(torch.randn(2, 1, 8, 8), 0.5, torch.randn(2, 4, 4))
    with pytest.raises(ValueError, match="divide"):
        image_net(torch.randn(2, 1, 8, 8), 0.5, torch.randn(2, 1, 3, 3))
    with pytest.raises(ValueError, match="c must be None"):
        models.UNet(channels=8)(torch.randn(2, 1, 8, 8), 0.5, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="either num_classes"):
        models.UNet(num_classes=10, cond_channels=1)
    with pytest.raises(ValueError, match="channels"):
        models.UNet(channels=0)


def test_conditional_mlp():
    torch.manual_seed(0)
    net = models.ConditionalMLPVelocityField(dim=2, num_classes=2, width=32, depth=2)
    x, t = torch.randn(6, 2), torch.rand(6)
    c = torch.tensor([0, 1, 0, 1, 2, 2])
    out = net(x, t, c)
    assert out.shape == (6, 2)
    assert net.null_class == 2
    assert torch.equal(net(x, t), net(x, t, torch.full((6,), 2)))
    assert (net(x, t, torch.zeros(6, dtype=torch.long)) - net(x, t, torch.ones(6, dtype=torch.long))).abs().max() > 0
    with pytest.raises(ValueError, match=r"c must lie in \[0, 2\]"):
        models.check_labels(torch.tensor([0, 1, 0, 1, 2, 3]), net.num_classes, 6, name="c")
    with pytest.raises(IndexError):  # the forward itself: the embedding refuses the index on the CPU
        net(x, t, torch.tensor([0, 1, 0, 1, 2, 3]))
    with pytest.raises(ValueError, match="x must have shape"):
        net(torch.randn(6, 3), t, c)
    with pytest.raises(ValueError, match="num_classes"):
        models.ConditionalMLPVelocityField(num_classes=0)


def test_check_labels():
    assert models.check_labels(torch.tensor([0, 9]), 10, 2, allow_null=False).tolist() == [0, 9]
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 9\]"):
        models.check_labels(torch.tensor([0, 10]), 10, 2, allow_null=False)
    with pytest.raises(TypeError, match="torch.Tensor"):
        models.check_labels([0, 1], 10, 2)
    with pytest.raises(TypeError, match="integer"):
        models.check_labels(torch.tensor([True, False]), 10, 2)


class _ValueReads(torch.overrides.TorchFunctionMode):
    """Counts the tensor calls that copy a value to the host (a device sync on a GPU)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in {"item", "tolist", "__bool__", "__float__", "__int__", "_is_nonzero"}:
            self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(
    "net, x, c",
    [
        (models.MLPVelocityField(width=16, depth=2), torch.randn(4, 2), None),
        (models.ConditionalMLPVelocityField(width=16, depth=2), torch.randn(4, 2), torch.tensor([0, 1, 2, 1])),
        (models.UNet(channels=8, num_classes=10), torch.randn(4, 1, 8, 8), torch.tensor([0, 9, 10, 3])),
        (models.UNet(channels=8, cond_channels=1), torch.randn(4, 1, 8, 8), torch.randn(4, 1, 4, 4)),
    ],
)
def test_forwards_read_no_values(net, x, c):
    """A forward checks shapes and dtypes only: not one value is read on the host."""
    args = (x, torch.rand(4)) if c is None else (x, torch.rand(4), c)
    with _ValueReads() as reads:
        out = net(*args)
    assert out.shape == x.shape and reads.count == 0
    with _ValueReads() as reads:  # the counter itself sees a value check (negative control)
        models.check_labels(torch.tensor([0, 1]), 2, 2)
    assert reads.count > 0

"""Tests of fmbook.models."""

import pytest
import torch

from fmbook.models import MLPVelocityField, SinusoidalTimeEmbedding


def test_time_embedding_features():
    emb = SinusoidalTimeEmbedding(8, max_frequency=100.0)
    t = torch.tensor([0.0, 0.25, 1.0])
    out = emb(t)
    assert out.shape == (3, 8)
    freqs = torch.exp(torch.linspace(0, torch.log(torch.tensor(100.0)), 4))
    assert torch.allclose(out[:, :4], torch.sin(t[:, None] * freqs))
    assert torch.allclose(out[:, 4:], torch.cos(t[:, None] * freqs))


def test_mlp_accepts_every_time_format():
    torch.manual_seed(0)
    net = MLPVelocityField(dim=3, width=16, depth=2)
    x = torch.randn(5, 3)
    ref = net(x, torch.full((5,), 0.3))
    assert ref.shape == (5, 3)
    assert torch.allclose(net(x, 0.3), ref)
    assert torch.allclose(net(x, torch.full((5, 1), 0.3)), ref)
    assert torch.allclose(net(x, torch.tensor(0.3)), ref)


def test_mlp_depth_and_width():
    net = MLPVelocityField(dim=2, width=32, depth=3, time_embedding_dim=8)
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(10, 32), (32, 32), (32, 32), (32, 2)]


def test_mlp_is_smooth_in_t():
    # The velocity must vary continuously with t: a small change of t gives a small change of output.
    torch.manual_seed(0)
    net = MLPVelocityField()
    x = torch.randn(64, 2)
    d = (net(x, 0.5 + 1e-4) - net(x, 0.5)).abs().max()
    assert d < 1e-1


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda n: n(torch.randn(4, 3), 0.5), "x must have shape"),
        (lambda n: n(torch.randn(4), 0.5), "x must have shape"),
        (lambda n: n(torch.randn(4, 2), torch.rand(3)), "t must be"),
        (lambda n: n(torch.randn(4, 2), "0.5"), "t must be a float"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call(MLPVelocityField())


def test_bad_hyperparameters():
    with pytest.raises(ValueError, match="dim must be even"):
        SinusoidalTimeEmbedding(7)
    with pytest.raises(ValueError, match="depth must be >= 1"):
        MLPVelocityField(depth=0)
    with pytest.raises(TypeError, match="width must be an int"):
        MLPVelocityField(width=12.5)

"""Tests of fmbook.losses: the CFM loss and Bregman divergences."""

import pytest
import torch
from torch.func import grad

from fmbook import losses, paths


class Affine(torch.nn.Module):
    """A tiny model v(x, t) = W x + b t, enough to compare losses by hand."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([[0.5, -0.2], [0.1, 0.3]]))
        self.b = torch.nn.Parameter(torch.tensor([0.2, -0.4]))

    def forward(self, x, t):
        return x @ self.w.T + t[:, None] * self.b


def test_cfm_loss_matches_the_formula():
    torch.manual_seed(0)
    model = Affine()
    x0, x1, t = torch.randn(16, 2), torch.randn(16, 2), torch.rand(16)
    xt = t[:, None] * x1 + (1 - t[:, None]) * x0
    expected = ((model(xt, t) - (x1 - x0)) ** 2).sum(1).mean()
    assert torch.allclose(losses.cfm_loss(model, x0, x1, t), expected)
    l1 = (model(xt, t) - (x1 - x0)).abs().sum(1).mean()
    assert torch.allclose(losses.cfm_loss(model, x0, x1, t, divergence=losses.l1_distance), l1)


def test_cfm_loss_with_another_path():
    torch.manual_seed(0)
    model = Affine()
    sched = paths.CosineScheduler()
    x0, x1, t = torch.randn(8, 2), torch.randn(8, 2), torch.rand(8)
    a, s, da, ds = (c[:, None] for c in sched(t))
    expected = ((model(a * x1 + s * x0, t) - (da * x1 + ds * x0)) ** 2).sum(1).mean()
    got = losses.cfm_loss(model, x0, x1, t, path=paths.AffinePath(sched))
    assert torch.allclose(got, expected)


@pytest.mark.parametrize("div", [losses.squared_euclidean, losses.log_cosh])
def test_bregman_generators(div):
    torch.manual_seed(0)
    a, b = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, 3, dtype=torch.float64)
    # grad_phi is the gradient of phi (autograd), D >= 0, D(a, a) = 0.
    auto = torch.func.vmap(grad(lambda v: div.phi(v[None])[0]))(b)
    assert torch.allclose(div.grad_phi(b), auto, atol=1e-12)
    assert (div(a, b) >= 0).all()
    assert torch.allclose(div(a, a), torch.zeros(10, dtype=torch.float64), atol=1e-12)


def test_squared_euclidean_is_the_squared_distance():
    a, b = torch.randn(5, 4), torch.randn(5, 4)
    assert torch.allclose(losses.squared_euclidean(a, b), ((a - b) ** 2).sum(1), atol=1e-5)


@pytest.mark.parametrize("div", [losses.squared_euclidean, losses.log_cosh])
def test_bregman_mean_identity(div):
    # For a Bregman divergence, E_z D(a_z, b) = D(E a_z, b) + const(b-free): so every b has the
    # same gap, and the gradient in b of E_z D(a_z, b) equals that of D(E a_z, b).
    torch.manual_seed(1)
    a = torch.randn(50, 2, dtype=torch.float64)
    gaps = []
    for _ in range(4):
        b = torch.randn(1, 2, dtype=torch.float64)
        gaps.append(div(a, b.expand(50, 2)).mean() - div(a.mean(0, keepdim=True), b)[0])
        g1 = grad(lambda bb: div(a, bb.expand(50, 2)).mean())(b)
        g2 = grad(lambda bb: div(a.mean(0, keepdim=True), bb)[0])(b)
        assert torch.allclose(g1, g2, atol=1e-12)
    assert torch.allclose(torch.stack(gaps), gaps[0].expand(4), atol=1e-12)


def test_l1_breaks_the_identity():
    # The L1 distance is not Bregman: its minimiser over b is the median, not the mean.
    a = torch.tensor([[0.0], [0.0], [3.0]], dtype=torch.float64)
    g = grad(lambda bb: losses.l1_distance(a, bb.expand(3, 1)).mean())(torch.tensor([[1.0]], dtype=torch.float64))
    assert g.item() > 0  # at the mean (b = 1) the L1 objective still decreases towards the median 0


@pytest.mark.parametrize(
    "args, match",
    [
        (lambda: (torch.randn(4, 2), torch.randn(5, 2)), "x0 and x1 must have the same shape"),
        (lambda: (torch.randn(4, 2), torch.full((4, 2), float("inf"))), "x1 must contain only finite"),
        (lambda: (torch.randn(0, 2), torch.randn(0, 2)), "x0 must hold at least one"),
        (lambda: (torch.randint(0, 3, (4, 2)), torch.randn(4, 2)), "x0 must be a floating-point"),
    ],
)
def test_bad_input(args, match):
    x0, x1 = args()
    with pytest.raises((ValueError, TypeError), match=match):
        losses.cfm_loss(Affine(), x0, x1)


def test_bad_time_and_model_output():
    with pytest.raises(ValueError, match="t must lie in"):
        losses.cfm_loss(Affine(), torch.randn(4, 2), torch.randn(4, 2), t=torch.full((4,), 1.2))

    def wrong(x, t):
        return x[:, :1]

    with pytest.raises(ValueError, match="model\\(x_t, t\\) must return the shape"):
        losses.cfm_loss(wrong, torch.randn(4, 2), torch.randn(4, 2))

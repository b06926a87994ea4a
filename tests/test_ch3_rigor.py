"""Chapter 3's statements, each checked against an independent computation with a negative control."""

import pytest
import torch
from torch.func import grad, vmap

from fmbook import losses

BREGMAN = [losses.squared_euclidean, losses.log_cosh]


def _autograd_in_b(div, a, b):
    """Row i: the gradient of D(a_i, b_i) in b_i, by autograd (independent of gradient_in_b)."""
    return vmap(grad(lambda bb, aa: div(aa[None], bb[None])[0]))(b, a)


@pytest.mark.parametrize("div", BREGMAN)
def test_bregman_gradient_identity_against_autograd(div):
    # grad_b D(a, b) = Hess phi(b) (b - a), at outputs where Hess phi is far from constant.
    gen = torch.Generator().manual_seed(0)
    a = 2.0 * torch.randn(64, 3, generator=gen, dtype=torch.float64)
    b = 2.0 * torch.randn(64, 3, generator=gen, dtype=torch.float64)
    auto = _autograd_in_b(div, a, b)
    assert torch.allclose(div.gradient_in_b(a, b), auto, atol=1e-12)
    # Negative controls: the Hessian taken at a instead of b, and the flipped sign, both fail.
    at_a = (div.hess_phi(a) @ (b - a)[:, :, None])[:, :, 0]
    if div is losses.log_cosh:
        assert (at_a - auto).abs().max() > 0.1
    assert (-div.gradient_in_b(a, b) - auto).abs().max() > 0.1


def test_bregman_hessians_against_autograd():
    gen = torch.Generator().manual_seed(1)
    b = 1.5 * torch.randn(16, 3, generator=gen, dtype=torch.float64)
    for div in BREGMAN:
        auto = vmap(torch.func.hessian(lambda v: div.phi(v[None])[0]))(b)
        assert torch.allclose(div.hess_phi(b), auto, atol=1e-12)


@pytest.mark.parametrize("div", BREGMAN)
def test_bregman_gradient_is_affine_in_a_but_divergence_is_not(div):
    # The divergence itself is not affine in a; D(a, b) - phi(a) and grad_b D(a, b) are.
    gen = torch.Generator().manual_seed(2)
    a0, a1, b = (torch.randn(32, 2, generator=gen, dtype=torch.float64) for _ in range(3))
    lam = 0.3
    mix = lam * a0 + (1 - lam) * a1

    def chord_gap(f):
        return (f(mix) - (lam * f(a0) + (1 - lam) * f(a1))).abs().max()

    assert chord_gap(lambda a: div(a, b)) > 1e-2  # the divergence bends in a ...
    assert chord_gap(lambda a: div(a, b) - div.phi(a)) < 1e-12  # ... D - phi(a) does not
    assert chord_gap(lambda a: div.gradient_in_b(a, b)) < 1e-12
    # The smooth non-Bregman control: its gradient in b, -tanh(a - b), bends in a.
    assert chord_gap(lambda a: _autograd_in_b(losses.log_cosh_distance, a, b)) > 1e-2


def test_gradient_in_b_needs_a_hessian():
    no_hessian = losses.Bregman("no hessian", losses.log_cosh.phi, losses.log_cosh.grad_phi)
    with pytest.raises(ValueError, match="hess_phi is None"):
        no_hessian.gradient_in_b(torch.randn(3, 2), torch.randn(3, 2))


def test_log_cosh_distance_formula_and_minimiser():
    gen = torch.Generator().manual_seed(3)
    a, b = 3 * torch.randn(20, 2, generator=gen, dtype=torch.float64), torch.randn(20, 2, dtype=torch.float64)
    assert torch.allclose(losses.log_cosh_distance(a, b), torch.log(torch.cosh(a - b)).sum(1), atol=1e-12)
    # Its minimiser over b is not the mean of skewed targets; the Bregman log-cosh's is.
    targets = torch.tensor([[0.0], [0.0], [0.0], [6.0]], dtype=torch.float64)
    mean = targets.mean(0, keepdim=True)
    g_control = grad(lambda bb: losses.log_cosh_distance(targets, bb.expand(4, 1)).mean())(mean)
    g_bregman = grad(lambda bb: losses.log_cosh(targets, bb.expand(4, 1)).mean())(mean)
    assert abs(g_bregman.item()) < 1e-12
    assert abs(g_control.item()) > 0.1

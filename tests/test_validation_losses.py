"""Bad input to fmbook.losses: the CFM loss and the divergences."""

import math

import pytest
import torch

from fmbook.losses import cfm_loss, l1_distance, log_cosh, squared_euclidean
from fmbook.models import MLPVelocityField
from fmbook.paths import AffinePath, CondOTScheduler

MODEL = MLPVelocityField(2, 16, 2)
X0, X1 = torch.randn(8, 2), torch.randn(8, 2)

BAD_CFM = [
    (dict(x0=X0.numpy()), TypeError, r"x0 must be a torch.Tensor"),
    (dict(x0=X0.long()), TypeError, r"x0 must be a floating-point tensor"),
    (dict(x1=torch.ones(8, 2, dtype=torch.bool)), TypeError, r"x1 must be a floating-point tensor"),
    (dict(x0=torch.randn(8)), ValueError, r"x0 must have shape \(batch, \.\.\.\)"),
    (dict(x0=torch.randn(0, 2), x1=torch.randn(0, 2)), ValueError, r"x0 must hold at least one sample"),
    (dict(x1=torch.randn(7, 2)), ValueError, r"x0 and x1 must have the same shape"),
    (dict(x0=torch.full((8, 2), math.nan)), ValueError, r"x0 must contain only finite values"),
    (dict(x1=torch.full((8, 2), -math.inf)), ValueError, r"x1 must contain only finite values"),
    (dict(t=1.2), ValueError, r"t must lie in \[0, 1\]"),
    (dict(t=torch.full((8,), -0.1)), ValueError, r"t must lie in \[0, 1\]"),
    (dict(t=torch.rand(4)), ValueError, r"t must be a float or have shape \(8,\)"),
    (dict(t=torch.full((8,), math.nan)), ValueError, r"t must contain only finite values"),
    (dict(model="mlp"), TypeError, r"model must be callable as model\(x_t, t\)"),
    (dict(model=lambda x, t: x[:, :1]), ValueError, r"model\(x_t, t\) must return the shape of x_t \(8, 2\)"),
    (dict(model=lambda x, t: x.numpy()), TypeError, r"model\(x_t, t\) must return a torch.Tensor"),
    (dict(path=CondOTScheduler()), TypeError, r"path must be an AffinePath"),
    (dict(divergence=2.0), TypeError, r"divergence must be callable"),
    (dict(divergence=lambda a, b: ((a - b) ** 2).sum()), ValueError, r"divergence must return one value per sample"),
    (dict(x0=X0.double(), x1=X1.double()), TypeError, r"x0 and x1 must have the dtype of the model's weights"),
    (dict(x0=X0.half(), x1=X1.half()), TypeError, r"x0 and x1 must have the dtype of the model's weights"),
]


@pytest.mark.parametrize("change, exc, match", BAD_CFM, ids=[c[2] for c in BAD_CFM])
def test_cfm_loss_bad_input(change, exc, match):
    args = dict(model=MODEL, x0=X0, x1=X1, t=None, path=None, divergence=squared_euclidean) | change
    with pytest.raises(exc, match=match):
        cfm_loss(**args)


DIVERGENCES = [squared_euclidean, log_cosh, l1_distance]
A = torch.randn(5, 3)

BAD_DIVERGENCE = [
    (A.numpy(), A, TypeError, r"a must be a torch.Tensor"),
    (A, A.long(), TypeError, r"b must be a floating-point tensor"),
    (A, A[:4], ValueError, r"a and b must have the same shape"),
    (A, A[:, :2], ValueError, r"a and b must have the same shape"),
    (A[0], A[0], ValueError, r"a must have shape \(batch, \.\.\.\) with batch >= 1"),
    (torch.randn(0, 3), torch.randn(0, 3), ValueError, r"a must have shape \(batch, \.\.\.\) with batch >= 1"),
]


@pytest.mark.parametrize("divergence", DIVERGENCES, ids=["squared_euclidean", "log_cosh", "l1"])
@pytest.mark.parametrize("a, b, exc, match", BAD_DIVERGENCE, ids=[c[3] for c in BAD_DIVERGENCE])
def test_divergence_bad_input(divergence, a, b, exc, match):
    with pytest.raises(exc, match=match):
        divergence(a, b)


def test_good_calls():
    """Accepted forms: t a float, (B,) or (B, 1); images (B, C, H, W); a float64 model."""
    for t in (0.0, 1.0, torch.rand(8), torch.rand(8, 1)):
        assert torch.isfinite(cfm_loss(MODEL, X0, X1, t=t))
    img = torch.randn(3, 1, 4, 4)
    assert cfm_loss(lambda x, t: torch.zeros_like(x), img, img, path=AffinePath(CondOTScheduler())) >= 0
    model64 = MLPVelocityField(2, 8, 1).double()
    assert cfm_loss(model64, X0.double(), X1.double()).dtype == torch.float64

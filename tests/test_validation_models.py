"""Bad input to fmbook.models: constructor hyper-parameters and the shapes, dtypes and devices of calls."""

import pytest
import torch

from fmbook.models import MLPVelocityField, SinusoidalTimeEmbedding, time_as_batch

BAD_MLP = [
    (dict(dim=0), ValueError, r"dim must be >= 1"),
    (dict(dim=2.0), TypeError, r"dim must be an int"),
    (dict(width=0), ValueError, r"width must be >= 1"),
    (dict(width=None), TypeError, r"width must be an int"),
    (dict(depth=0), ValueError, r"depth must be >= 1"),
    (dict(depth=True), TypeError, r"depth must be an int"),
    (dict(time_embedding_dim=3), ValueError, r"time_embedding_dim must be even"),
    (dict(time_embedding_dim=0), ValueError, r"time_embedding_dim must be >= 2"),
    (dict(time_embedding_dim=8.0), TypeError, r"time_embedding_dim must be an int"),
]


@pytest.mark.parametrize("kwargs, exc, match", BAD_MLP, ids=[c[2] for c in BAD_MLP])
def test_mlp_bad_hyper_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        MLPVelocityField(**kwargs)


BAD_EMBEDDING = [
    (dict(dim=5), ValueError, r"dim must be even"),
    (dict(dim=1), ValueError, r"dim must be >= 2"),
    (dict(dim="8"), TypeError, r"dim must be an int"),
    (dict(max_frequency=0.0), ValueError, r"max_frequency must be a finite number > 0"),
    (dict(max_frequency=-10.0), ValueError, r"max_frequency must be"),
    (dict(max_frequency=float("inf")), ValueError, r"max_frequency must be"),
]


@pytest.mark.parametrize("kwargs, exc, match", BAD_EMBEDDING, ids=[c[2] for c in BAD_EMBEDDING])
def test_embedding_bad_hyper_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        SinusoidalTimeEmbedding(**kwargs)


@pytest.mark.parametrize(
    "t, exc, match",
    [
        (torch.rand(4, 1), ValueError, r"t must be a tensor of shape \(batch,\)"),
        (torch.tensor(0.5), ValueError, r"t must be a tensor of shape \(batch,\)"),
        (0.5, ValueError, r"t must be a tensor of shape \(batch,\)"),
        (torch.ones(4, dtype=torch.long), TypeError, r"t must be a floating-point tensor"),
    ],
)
def test_embedding_bad_times(t, exc, match):
    with pytest.raises(exc, match=match):
        SinusoidalTimeEmbedding(8)(t)


MODEL = MLPVelocityField(2, 16, 2)

BAD_FORWARD = [
    (torch.randn(4, 3), 0.5, ValueError, r"x must have shape \(batch, 2\)"),
    (torch.randn(4), 0.5, ValueError, r"x must have shape \(batch, 2\)"),
    (torch.randn(4, 2, 1), 0.5, ValueError, r"x must have shape \(batch, 2\)"),
    ([[0.0, 0.0]], 0.5, ValueError, r"x must have shape \(batch, 2\), got list"),
    (torch.randn(0, 2), 0.5, ValueError, r"x must hold at least one point"),
    (torch.ones(4, 2, dtype=torch.long), 0.5, TypeError, r"x must have the dtype of the model's weights"),
    (torch.randn(4, 2, dtype=torch.float64), 0.5, TypeError, r"x must have the dtype of the model's weights"),
    (torch.randn(4, 2, dtype=torch.float16), 0.5, TypeError, r"x must have the dtype of the model's weights"),
    (torch.randn(4, 2), torch.rand(3), ValueError, r"t must be a float or have shape \(4,\)"),
    (torch.randn(4, 2), torch.rand(4, 2), ValueError, r"t must be a float or have shape \(4,\)"),
    (torch.randn(4, 2), "0.5", TypeError, r"t must be a float or a torch.Tensor"),
    (torch.randn(4, 2), None, TypeError, r"t must be a float or a torch.Tensor"),
    (torch.randn(4, 2), True, TypeError, r"t must be a float or a tensor, got bool"),
]


@pytest.mark.parametrize("x, t, exc, match", BAD_FORWARD, ids=[c[3] for c in BAD_FORWARD])
def test_mlp_forward_bad_input(x, t, exc, match):
    with pytest.raises(exc, match=match):
        MODEL(x, t)


def test_mlp_forward_wrong_device():
    """A model on the meta device and x on the CPU: the device mismatch is named."""
    model = MLPVelocityField(2, 8, 1).to("meta")
    with pytest.raises(ValueError, match=r"x must be on the model's device \(meta\)"):
        model(torch.randn(3, 2), 0.5)


@pytest.mark.parametrize(
    "x, t, exc, match",
    [
        (None, 0.5, TypeError, r"x must be a torch.Tensor"),
        (torch.tensor(1.0), 0.5, ValueError, r"x must have a batch dimension"),
        (torch.randn(3, 2), torch.rand(2), ValueError, r"t must be a float or have shape \(3,\)"),
    ],
)
def test_time_as_batch_bad_input(x, t, exc, match):
    with pytest.raises(exc, match=match):
        time_as_batch(t, x)


def test_good_calls_and_float64_model():
    """Accepted forms of t, and a float64 model called with float64 points."""
    x = torch.randn(3, 2)
    for t in (0.5, 1, torch.tensor(0.5), torch.rand(3), torch.rand(3, 1)):
        assert MODEL(x, t).shape == (3, 2)
    model64 = MLPVelocityField(2, 8, 1).double()
    assert model64(x.double(), 0.0).dtype == torch.float64

"""Bad input to fmbook.train: fit, train_flow_matching and seed_everything."""

import math

import pytest
import torch

from fmbook.losses import squared_euclidean
from fmbook.models import MLPVelocityField
from fmbook.paths import CondOTScheduler
from fmbook.train import NonFiniteLossError, fit, seed_everything, train_flow_matching

DATA = torch.randn(64, 2)


def model():
    torch.manual_seed(0)
    return MLPVelocityField(2, 8, 1)


def quadratic_loss(net, step):
    return net(torch.randn(4, 2), 0.5).pow(2).mean()


BAD_FIT = [
    (dict(model=torch.zeros(3)), TypeError, r"model must be a torch.nn.Module"),
    (dict(model=lambda x, t: x), TypeError, r"model must be a torch.nn.Module"),
    (dict(loss_fn=1.0), TypeError, r"loss_fn must be callable as loss_fn\(model, step\)"),
    (dict(steps=0), ValueError, r"steps must be >= 1"),
    (dict(steps=10.0), TypeError, r"steps must be an int"),
    (dict(lr=0.0), ValueError, r"lr must be a finite number > 0"),
    (dict(lr=-1e-3), ValueError, r"lr must be a finite number > 0"),
    (dict(lr=math.nan), ValueError, r"lr must be a finite number > 0"),
    (dict(lr="1e-3"), TypeError, r"lr must be a number"),
    (dict(ema_decay=0.0), ValueError, r"ema_decay must lie in \(0, 1\)"),
    (dict(ema_decay=1.0), ValueError, r"ema_decay must lie in \(0, 1\)"),
    (dict(ema_decay=1.5), ValueError, r"ema_decay must lie in \(0, 1\)"),
    (dict(ema_decay="0.99"), TypeError, r"ema_decay must be a number"),
    (dict(seed=-1), ValueError, r"seed must be >= 0"),
    (dict(seed=0.5), TypeError, r"seed must be an int"),
    (dict(seed=True), TypeError, r"seed must be an int, got bool"),
    (dict(device="gpu0"), ValueError, r"device must be None or a device torch knows, such as 'cpu'"),
    (dict(device=""), ValueError, r"device must be None or a device torch knows"),
    (dict(device=0), TypeError, r"device must be None, a str such as 'cuda:0' or a torch.device, got int"),
    (dict(progress="yes"), TypeError, r"progress must be a bool, got str"),
    (dict(progress=1), TypeError, r"progress must be a bool, got int"),
    (dict(description=None), TypeError, r"description must be a str, got NoneType"),
    (dict(cosine_decay=0), TypeError, r"cosine_decay must be a bool, got int"),
    (dict(resume="no"), TypeError, r"resume must be a bool, got str"),
    (dict(callback="plot"), TypeError, r"callback must be callable as callback\(step, loss, model\)"),
]


@pytest.mark.parametrize("change, exc, match", BAD_FIT, ids=[c[2] for c in BAD_FIT])
def test_fit_bad_input(change, exc, match):
    args = dict(model=model(), loss_fn=quadratic_loss, steps=2, progress=False) | change
    with pytest.raises(exc, match=match):
        fit(**args)


BAD_TFM = [
    (dict(data=DATA.numpy()), TypeError, r"data must be a torch.Tensor"),
    (dict(data=DATA.long()), TypeError, r"data must be a floating-point tensor"),
    (dict(data=torch.randn(64)), ValueError, r"data must have shape \(batch, \.\.\.\)"),
    (dict(data=torch.randn(0, 2)), ValueError, r"data must hold at least one sample"),
    (dict(data=torch.full((8, 2), math.nan)), ValueError, r"data must contain only finite values"),
    (dict(source=torch.randn(10, 3)), ValueError, r"source must have rows of shape \(2,\)"),
    (dict(source=torch.randn(0, 2)), ValueError, r"source must hold at least one sample"),
    (dict(source=torch.full((10, 2), math.inf)), ValueError, r"source must contain only finite values"),
    (dict(batch_size=0), ValueError, r"batch_size must be >= 1"),
    (dict(batch_size=16.0), TypeError, r"batch_size must be an int"),
    (dict(steps=-2), ValueError, r"steps must be >= 1"),
    (dict(lr=0), ValueError, r"lr must be a finite number > 0"),
    (dict(ema_decay=2.0), ValueError, r"ema_decay must lie in \(0, 1\)"),
    (dict(device="gpu0"), ValueError, r"device must be None or a device torch knows"),
    # reported at the first step, by the CFM loss and the model
    (dict(path=CondOTScheduler()), TypeError, r"path must be an AffinePath"),
    (dict(divergence="l2"), TypeError, r"divergence must be callable"),
    (dict(data=torch.randn(64, 3)), ValueError, r"x must have shape \(batch, 2\)"),
]


@pytest.mark.parametrize("change, exc, match", BAD_TFM, ids=[c[2] for c in BAD_TFM])
def test_train_flow_matching_bad_input(change, exc, match):
    args = dict(model=model(), data=DATA, steps=2, batch_size=8, divergence=squared_euclidean, progress=False)
    args |= change
    with pytest.raises(exc, match=match):
        train_flow_matching(**args)


@pytest.mark.parametrize(
    "seed, exc, match",
    [(-1, ValueError, r"seed must be >= 0"), (1.0, TypeError, r"seed must be an int"), (None, TypeError, r"seed")],
)
def test_seed_everything_bad_input(seed, exc, match):
    with pytest.raises(exc, match=match):
        seed_everything(seed)


@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda", 1)])
def test_fit_on_a_missing_cuda_device(monkeypatch, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"device 'cuda(:\d)?' was asked for, but CUDA is not available"):
        fit(model(), quadratic_loss, steps=2, device=device, progress=False)


def test_fit_on_a_cuda_device_beyond_the_last(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ValueError, match=r"device 'cuda:2' does not exist: there are 2 CUDA GPUs"):
        fit(model(), quadratic_loss, steps=2, device="cuda:2", progress=False)


def test_fit_on_a_missing_mps_device(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"device 'mps' was asked for, but Apple MPS is not available"):
        fit(model(), quadratic_loss, steps=2, device="mps", progress=False)


def test_non_finite_loss_names_the_step():
    def loss(net, step):
        value = net(torch.randn(4, 2), 0.5).pow(2).mean()
        return value * (math.inf if step == 3 else 1.0)

    with pytest.raises(NonFiniteLossError, match=r"the loss became inf at step 3"):
        fit(model(), loss, steps=6, progress=False)

"""Tests of fmbook.train.fit and train_flow_matching: the API other chapters use, AMP, bad input."""

import copy

import pytest
import torch

from fmbook import data, models, scaling, train
from fmbook.losses import cfm_loss


def _moons_model():
    torch.manual_seed(0)
    return models.MLPVelocityField(dim=2, width=16, depth=2)


def test_train_flow_matching_draws_like_algorithm_3():
    # An independent re-implementation of the loop: seed, draw x1 (rows with replacement), x0 and t
    # from the global generator, Adam with a cosine schedule. The losses must agree exactly.
    x = data.sample_moons(500, generator=0)
    model = _moons_model()
    reference = copy.deepcopy(model)
    result = train.train_flow_matching(model, x, steps=12, batch_size=32, lr=1e-2, device="cpu", progress=False)
    train.seed_everything(0)
    opt = torch.optim.Adam(reference.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + torch.cos(torch.tensor(torch.pi * s / 12))).item()
    )
    losses = []
    for _ in range(12):
        x1 = x[torch.randint(0, 500, (32,))]
        x0 = torch.randn_like(x1)
        loss = cfm_loss(reference, x0, x1)  # draws t ~ U[0, 1] itself
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    assert result.history == pytest.approx(losses, rel=1e-6, abs=1e-7)
    assert isinstance(result, train.TrainResult) and result.start_step == 0 and not result.amp
    for p, q in zip(result.model.parameters(), reference.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_amp_is_ignored_off_cuda():
    x = data.sample_moons(200, generator=0)
    a = train.train_flow_matching(_moons_model(), x, steps=5, batch_size=16, device="cpu", progress=False, amp=True)
    b = train.train_flow_matching(_moons_model(), x, steps=5, batch_size=16, device="cpu", progress=False)
    assert not a.amp and a.history == b.history


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bfloat16 autocast is used on CUDA only")
def test_amp_runs_the_forward_pass_in_bfloat16_on_cuda():
    seen = []
    model = _moons_model()

    def loss_fn(net, step):
        out = net(torch.randn(8, 2, device="cuda"), torch.rand(8, device="cuda"))
        seen.append(out.dtype)
        return out.float().pow(2).mean()

    result = train.fit(model, loss_fn, 3, device="cuda", amp=True, progress=False)
    assert result.amp and seen == [torch.bfloat16] * 3
    assert next(result.model.parameters()).dtype == torch.float32


def test_images_and_ema():
    x = torch.rand(40, 1, 8, 8) * 2 - 1
    torch.manual_seed(0)
    net = models.UNet(channels=8)
    result = train.train_flow_matching(net, x, steps=4, batch_size=8, ema_decay=0.5, device="cpu", progress=False)
    assert len(result.history) == 4 and result.ema_model is not None
    assert result.sampling_model is result.ema_model
    assert any(not torch.equal(p, q) for p, q in zip(result.model.parameters(), result.ema_model.parameters()))


def test_fit_bad_input():
    net = _moons_model()
    with pytest.raises(ValueError, match="checkpoint_path"):
        train.fit(net, lambda m, s: m(torch.randn(2, 2), 0.5).sum(), 2, checkpoint_every=1, progress=False)
    with pytest.raises(ValueError, match="checkpoint_path"):
        train.fit(net, lambda m, s: m(torch.randn(2, 2), 0.5).sum(), 2, resume=True, progress=False)
    with pytest.raises(TypeError, match="amp must be a bool"):
        train.fit(net, lambda m, s: m(torch.randn(2, 2), 0.5).sum(), 2, amp="yes", progress=False)
    with pytest.raises(ValueError, match="checkpoint_every"):
        train.fit(net, lambda m, s: m(torch.randn(2, 2), 0.5).sum(), 2, checkpoint_every=0, checkpoint_path="x")
    with pytest.raises(train.NonFiniteLossError, match="step 0"):
        train.fit(net, lambda m, s: m(torch.randn(2, 2), 0.5).sum() * float("nan"), 2, progress=False)
    with pytest.raises(ValueError, match="source must have rows"):
        train.train_flow_matching(net, torch.randn(10, 2), steps=1, source=torch.randn(10, 3))


def _loss_with_nan_at(bad_step):
    def loss_fn(net, step):
        value = net(torch.randn(16, 2), torch.rand(16)).pow(2).mean()
        return value * (float("nan") if step == bad_step else 1.0)

    return loss_fn


def test_a_nan_loss_leaves_the_weights_of_the_last_good_step():
    # A NaN at step 3 stops training before backward: the model and the EMA are those of a
    # run of 3 steps (no cosine decay, whose schedule depends on the number of steps).
    kw = dict(lr=1e-2, ema_decay=0.9, cosine_decay=False, device="cpu", progress=False)
    model = _moons_model()
    with pytest.raises(train.NonFiniteLossError, match=r"the loss became nan at step 3") as caught:
        train.fit(model, _loss_with_nan_at(3), steps=6, **kw)
    three = train.fit(_moons_model(), _loss_with_nan_at(3), steps=3, **kw)
    stopped = caught.value.result
    assert stopped.model is model and stopped.history == three.history
    for a, b in zip(model.parameters(), three.model.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(stopped.ema_model.parameters(), three.ema_model.parameters()):
        assert torch.equal(a, b)


def test_callback_sees_every_step():
    calls = []

    def callback(step, loss, model):
        calls.append((step, loss, model))

    loss_fn = _loss_with_nan_at(None)
    result = train.fit(_moons_model(), loss_fn, steps=5, device="cpu", progress=False, callback=callback)
    assert [step for step, _, _ in calls] == [0, 1, 2, 3, 4]
    assert [loss for _, loss, _ in calls] == result.history
    assert all(model is result.model for _, _, model in calls)


def test_local_rows_outside_a_process_group():
    x = torch.arange(6)
    assert scaling.world() == (0, 1) and not scaling.is_distributed()
    assert torch.equal(scaling.local_rows(x), x)
    ctx = scaling.init_distributed()
    assert ctx.world_size == 1 and ctx.is_main and ctx.device == train.default_device()
    assert scaling.init_distributed(device="cpu").device == torch.device("cpu")  # chosen, not automatic
    with pytest.raises(ValueError, match=r"device must be 'cuda', 'mps', 'cpu' or None \(automatic\), got 'gpu'"):
        scaling.init_distributed(device="gpu")


def test_init_distributed_under_torchrun_refuses_mps(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match=r"device 'mps' drives one GPU; several processes need device 'cuda' or 'cpu'"):
        scaling.init_distributed(device="mps")

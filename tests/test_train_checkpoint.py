"""Tests of the checkpoints of fmbook.train: exact resumption, and clear errors for bad files."""

import pickle

import pytest
import torch

from fmbook import data, models, scaling, train


def _loss_fn(x, interrupt_at=None):
    def loss_fn(net, step):
        if interrupt_at is not None and step == interrupt_at:
            raise KeyboardInterrupt
        x1 = x[torch.randint(0, x.shape[0], (32,))]
        x0 = torch.randn_like(x1)
        t = torch.rand(32)
        target = x1 - x0
        return (net((1 - t[:, None]) * x0 + t[:, None] * x1, t) - target).pow(2).sum(1).mean()

    return loss_fn


def _model(width=16):
    torch.manual_seed(0)
    return models.MLPVelocityField(dim=2, width=width, depth=2)


def test_resuming_gives_the_same_result_as_an_uninterrupted_run(tmp_path):
    x = data.sample_moons(300, generator=0)
    kw = dict(steps=20, lr=1e-2, ema_decay=0.9, device="cpu", progress=False, checkpoint_every=5)
    full = train.fit(_model(), _loss_fn(x), checkpoint_path=tmp_path / "full.pt", **kw)
    with pytest.warns(UserWarning, match="interrupted after 13 steps"):
        cut = train.fit(_model(), _loss_fn(x, interrupt_at=13), checkpoint_path=tmp_path / "cut.pt", **kw)
    assert cut.interrupted and len(cut.history) == 13
    # The interruption writes the checkpoint of the 13 steps done.
    resumed = train.fit(_model(), _loss_fn(x), checkpoint_path=tmp_path / "cut.pt", resume=True, **kw)
    assert resumed.start_step == 13 and not resumed.interrupted
    assert resumed.history == full.history
    for a, b in zip(resumed.model.parameters(), full.model.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(resumed.ema_model.parameters(), full.ema_model.parameters()):
        assert torch.equal(a, b)
    # Resuming a finished run does no further step.
    again = train.fit(_model(), _loss_fn(x), checkpoint_path=tmp_path / "full.pt", resume=True, **kw)
    assert again.start_step == 20 and again.history == full.history


def test_checkpoint_round_trip_and_weights_only(tmp_path):
    model = _model()
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 2), 0.3).sum().backward()
    opt.step()
    path = scaling.save_checkpoint(tmp_path / "a.pt", model, opt, step=7, steps=9, history=[1.0, 0.5])
    state = torch.load(path, weights_only=True)  # plain tensors and Python values only
    assert state["format"] == scaling.CHECKPOINT_FORMAT and state["step"] == 7
    other = _model()
    with torch.no_grad():
        for p in other.parameters():
            p.zero_()
    opt2 = torch.optim.Adam(other.parameters())
    saved = scaling.load_checkpoint(path, other, opt2)
    assert saved.step == 7 and saved.steps == 9 and saved.history == [1.0, 0.5]
    for a, b in zip(model.parameters(), other.parameters()):
        assert torch.equal(a, b)
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_truncated_file(tmp_path):
    path = scaling.save_checkpoint(tmp_path / "a.pt", _model(), step=1)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    model = _model(width=16)
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(scaling.CheckpointError, match="truncated or not a checkpoint"):
        scaling.load_checkpoint(path, model)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_mismatched_model_and_other_files(tmp_path):
    path = scaling.save_checkpoint(tmp_path / "a.pt", _model(width=16), step=1)
    with pytest.raises(scaling.CheckpointError, match="does not match the model"):
        scaling.load_checkpoint(path, _model(width=32))
    with pytest.raises(ValueError, match="does not match the model"):  # CheckpointError is a ValueError
        scaling.load_checkpoint(path, models.UNet(channels=8))
    with pytest.raises(scaling.CheckpointError, match="holds no optimizer"):
        scaling.load_checkpoint(path, _model(), torch.optim.Adam(_model().parameters()))
    torch.save({"weights": torch.zeros(3)}, tmp_path / "b.pt")
    with pytest.raises(scaling.CheckpointError, match="not an fmbook checkpoint"):
        scaling.load_checkpoint(tmp_path / "b.pt", _model())
    with pytest.raises(scaling.CheckpointError, match="does not exist"):
        scaling.load_checkpoint(tmp_path / "missing.pt", _model())
    (tmp_path / "c.pt").write_text("hello")
    with pytest.raises(scaling.CheckpointError, match="truncated or not a checkpoint"):
        scaling.load_checkpoint(tmp_path / "c.pt", _model())


class _Payload:
    """An object that weights_only loading must refuse to rebuild."""

    def __reduce__(self):
        return (print, ("this must not run",))


def test_files_with_arbitrary_objects_are_refused(tmp_path):
    torch.save({"format": scaling.CHECKPOINT_FORMAT, "x": _Payload()}, tmp_path / "evil.pt", pickle_module=pickle)
    with pytest.raises(scaling.CheckpointError, match="cannot be read"):
        scaling.load_checkpoint(tmp_path / "evil.pt", _model())


def test_resuming_with_other_steps_is_refused(tmp_path):
    x = data.sample_moons(100, generator=0)
    train.fit(_model(), _loss_fn(x), 4, checkpoint_path=tmp_path / "a.pt", progress=False, device="cpu")
    with pytest.raises(scaling.CheckpointError, match="steps=4, not steps=6"):
        train.fit(_model(), _loss_fn(x), 6, checkpoint_path=tmp_path / "a.pt", resume=True, progress=False)

"""fit and load_checkpoint lose no work and leave nothing half-modified when something fails."""

import math

import pytest
import torch

from fmbook import data, models, scaling, train

MOONS = data.sample_moons(300, generator=0)


def _model(width=16):
    torch.manual_seed(0)
    return models.MLPVelocityField(dim=2, width=width, depth=2)


def _loss(nan_gradient_at=None, raise_at=None):
    """A flow-matching loss on the moons; at ``nan_gradient_at`` it stays finite but its gradient is NaN."""

    def loss_fn(net, step):
        if step == raise_at:
            raise RuntimeError("the data loader broke")
        x1 = MOONS[torch.randint(0, MOONS.shape[0], (32,))]
        x0, t = torch.randn_like(x1), torch.rand(32)
        loss = (net((1 - t[:, None]) * x0 + t[:, None] * x1, t) - (x1 - x0)).pow(2).sum(1).mean()
        if step == nan_gradient_at:
            zero = 0.0 * next(net.parameters()).sum()
            loss = loss + torch.sqrt(zero * zero)  # sqrt(0) = 0, but its derivative 0 * inf is NaN
        return loss

    return loss_fn


KW = dict(lr=1e-2, ema_decay=0.9, cosine_decay=False, device="cpu", progress=False)


def _same(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_a_finite_loss_with_a_nan_gradient_is_not_applied():
    model = _model()
    with pytest.raises(train.NonFiniteGradientError, match=r"step 3 is finite but its gradient norm is nan") as caught:
        train.fit(model, _loss(nan_gradient_at=3), steps=6, **KW)
    assert isinstance(caught.value, train.NonFiniteLossError)  # callers that catch the loss error catch this too
    three = train.fit(_model(), _loss(), steps=3, **KW)
    stopped = caught.value.result
    assert stopped.model is model and stopped.history == three.history and len(stopped.history) == 3
    assert _same(model, three.model) and _same(stopped.ema_model, three.ema_model)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_negative_control_without_the_check_the_nan_gradient_poisons_the_weights():
    # What fit guards against: one Adam step with this gradient makes the weights NaN.
    model = _model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.manual_seed(0)
    _loss(nan_gradient_at=0)(model, 0).backward()
    optimizer.step()
    assert not all(torch.isfinite(p).all() for p in model.parameters())


def test_the_loss_must_be_a_scalar_tensor_with_a_gradient():
    with pytest.raises(TypeError, match="loss_fn must return a torch.Tensor, got float"):
        train.fit(_model(), lambda net, step: 1.0, steps=2, **KW)
    with pytest.raises(ValueError, match=r"scalar loss, got shape \(4,\)"):
        train.fit(_model(), lambda net, step: net(torch.zeros(2, 2), torch.zeros(2)).flatten(), steps=2, **KW)
    with pytest.raises(ValueError, match="without a gradient"):
        train.fit(_model(), lambda net, step: _loss()(net, step).detach(), steps=2, **KW)


def test_a_bad_checkpoint_path_is_refused_before_the_first_step(tmp_path):
    calls = []

    def loss_fn(net, step):
        calls.append(step)
        return _loss()(net, step)

    with pytest.raises(ValueError, match="is a directory"):
        train.fit(_model(), loss_fn, steps=3, checkpoint_path=tmp_path, **KW)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match="cannot be written"):
        train.fit(_model(), loss_fn, steps=3, checkpoint_path=blocker / "run.pt", **KW)
    with pytest.raises(TypeError, match="checkpoint_path must be a str or a path"):
        train.fit(_model(), loss_fn, steps=3, checkpoint_path=3, **KW)
    assert calls == []  # nothing was trained, so nothing was lost
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # no stray probe or .tmp


def test_an_interrupt_writes_the_checkpoint_even_without_checkpoint_every(tmp_path):
    def interrupted(net, step):
        if step == 7:
            raise KeyboardInterrupt
        return _loss()(net, step)

    path = tmp_path / "run.pt"
    with pytest.warns(UserWarning, match=r"interrupted after 7 steps.*state of step 7"):
        cut = train.fit(_model(), interrupted, steps=12, checkpoint_path=path, **KW)
    assert cut.interrupted and path.is_file()
    resumed = train.fit(_model(), _loss(), steps=12, checkpoint_path=path, resume=True, **KW)
    whole = train.fit(_model(), _loss(), steps=12, **KW)
    assert resumed.start_step == 7 and resumed.history == whole.history
    assert _same(resumed.model, whole.model) and _same(resumed.ema_model, whole.ema_model)


def test_any_other_failure_carries_the_training_so_far():
    with pytest.raises(RuntimeError, match="the data loader broke") as caught:
        train.fit(_model(), _loss(raise_at=5), steps=9, **KW)
    result = caught.value.result
    assert len(result.history) == 5 and result.ema_model is not None
    assert _same(result.model, train.fit(_model(), _loss(), steps=5, **KW).model)
    assert any("in this exception's .result" in note for note in caught.value.__notes__)

    def callback(step, loss, model):
        if step == 2:
            raise ValueError("the live plot failed")

    with pytest.raises(ValueError, match="the live plot failed") as caught:
        train.fit(_model(), _loss(), steps=9, callback=callback, **KW)
    assert len(caught.value.result.history) == 3  # the step before the callback was completed


def test_a_failed_final_save_keeps_the_result_and_leaves_no_tmp_file(tmp_path, monkeypatch):
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)  # write part of the file, then fail as a full disk would
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left") as caught:
        train.fit(_model(), _loss(), steps=4, checkpoint_path=tmp_path / "run.pt", **KW)
    assert len(caught.value.result.history) == 4
    assert list(tmp_path.iterdir()) == []  # neither the checkpoint nor a stray run.pt.tmp


def _saved(tmp_path, **changes):
    """A valid checkpoint of a model trained 3 steps with Adam, with some entries changed."""
    model = _model()
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.zeros(1, 2), torch.zeros(1)).sum().backward()
    optimizer.step()
    path = scaling.save_checkpoint(tmp_path / "a.pt", model, optimizer, step=3, steps=9, history=[1.0, 0.5, 0.2])
    state = torch.load(path, weights_only=True)
    for key, value in changes.items():
        if value is KeyError:
            del state[key]
        elif callable(value):
            state[key] = value(state[key])
        else:
            state[key] = value
    torch.save(state, path)
    return path


def _garbage_torch_state(rng):
    rng["torch"] = torch.zeros(7, dtype=torch.uint8)  # a uint8 vector of the wrong size for the generator
    return rng


def _python_state_of_strings(rng):
    rng["python"][1] = ["x"] * 625
    return rng


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(rng=KeyError), r"lacks the entries \['rng'\]"),
        (dict(step="7"), "has step '7', not an int >= 0"),
        (dict(step=2.5), "has step 2.5, not an int >= 0"),
        (dict(history="bad"), "history that is not a list of floats"),
        (dict(rng=_python_state_of_strings), "Python generator state"),
        (dict(rng=_garbage_torch_state), "could not be loaded"),
    ],
)
def test_load_checkpoint_is_all_or_nothing(tmp_path, changes, message):
    path = _saved(tmp_path, **changes)
    model = _model(width=16)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # weights that differ from the file's
    optimizer = torch.optim.Adam(model.parameters())
    before = [p.clone() for p in model.parameters()]
    rng_before = torch.get_rng_state()
    with pytest.raises(scaling.CheckpointError, match=message):
        scaling.load_checkpoint(path, model, optimizer)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert optimizer.state_dict()["state"] == {}
    assert torch.equal(torch.get_rng_state(), rng_before)


def test_an_optimizer_over_other_parameters_is_refused_before_the_model_changes(tmp_path):
    path = _saved(tmp_path)
    model = _model()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(-1.0)
    before = [p.clone() for p in model.parameters()]
    other = torch.optim.Adam(models.MLPVelocityField(dim=2, width=8, depth=1).parameters())
    with pytest.raises(scaling.CheckpointError, match="does not match the optimizer"):
        scaling.load_checkpoint(path, model, other)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    # Negative control: the same file loads into a matching optimizer, and the model changes.
    scaling.load_checkpoint(path, model, torch.optim.Adam(model.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert math.isfinite(sum(p.sum().item() for p in model.parameters()))

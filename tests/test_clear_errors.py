"""Bad input that was reported deep inside torch or numpy (or under an internal name) now gets a
ValueError or TypeError that names the argument and says what was expected (issue 21, item 5).

The message checked is the part that names the argument. The tests of the loss checks of ``fit``
(fixed earlier) complete the issue's list; every other case failed before this round of fixes.
"""

import math

import pytest
import torch
from torch import nn

from fmbook import data, ddpm, guidance, losses, metrics, models, ot, paths, solvers, train

# --------------------------------------------------------------------------- schedulers, callables


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: paths.velocity_from_score(torch.ones(2, 2), torch.ones(2, 2), 0.5, "condot"), "scheduler must be"),
        (lambda: paths.score_from_velocity(torch.ones(2, 2), torch.ones(2, 2), 0.5, "condot"), "scheduler must be"),
        (lambda: ddpm.q_sample(torch.ones(2, 2), torch.tensor([1, 2]), "linear", torch.ones(2, 2)),
         "schedule must be a fmbook.ddpm.DDPMSchedule"),
        (lambda: ddpm.forward_chain(torch.ones(2, 2), "linear"), "schedule must be a fmbook.ddpm.DDPMSchedule"),
        (lambda: ddpm.ancestral_step(torch.ones(2, 2), torch.ones(2, 2), 1, "linear"),
         "schedule must be a fmbook.ddpm.DDPMSchedule"),
        (lambda: ddpm.ancestral_sample(lambda x, t: x, torch.ones(2, 2), "linear"),
         "schedule must be a fmbook.ddpm.DDPMSchedule"),
        (lambda: ddpm.ddim_sample(lambda x, t: x, torch.ones(2, 2), "cosine", 4),
         "schedule must be a fmbook.ddpm.DDPMSchedule"),
        (lambda: ddpm.ancestral_sample("model", torch.ones(2, 2), ddpm.linear_schedule(3)), "model must be callable"),
        (lambda: ddpm.ddim_sample(None, torch.ones(2, 2), ddpm.linear_schedule(3), 2), "model must be callable"),
    ],
)
def test_a_string_or_none_where_a_schedule_or_a_model_is_expected(call, match):
    with pytest.raises(TypeError, match=match):
        call()


def test_ddim_with_a_schedule_still_samples():
    out = ddpm.ddim_sample(lambda x, t: 0 * x, torch.ones(2, 2), ddpm.linear_schedule(4), 2)
    assert out.x.shape == (2, 2) and out.nfe == 2


# --------------------------------------------------------------------------- dtypes


def test_cfm_loss_names_x0_and_x1_for_float64_data_and_a_float32_model():
    model = models.MLPVelocityField(width=8, depth=1)
    with pytest.raises(TypeError, match=r"x0 and x1 must have the dtype of the model's weights \(torch.float32\)"):
        losses.cfm_loss(model, torch.zeros(4, 2, dtype=torch.float64), torch.zeros(4, 2, dtype=torch.float64))
    assert torch.isfinite(losses.cfm_loss(model, torch.zeros(4, 2), torch.ones(4, 2)))  # control


def test_the_recipes_cast_float64_data_to_the_model():
    # Once a TypeError about "x" deep in the first step; the recipes now cast the data (and the
    # source) to the model's dtype, and train exactly as on float32 data.
    moons = data.sample_moons(64, generator=0)
    runs = []
    for rows in (moons, moons.double()):
        torch.manual_seed(0)
        model = models.MLPVelocityField(width=16, depth=1)
        runs.append(train.train_flow_matching(model, rows, steps=3, batch_size=16, progress=False, device="cpu"))
    assert runs[0].history == runs[1].history
    torch.manual_seed(0)
    cond = models.ConditionalMLPVelocityField(dim=2, num_classes=2, width=16, depth=1)
    labels = torch.randint(0, 2, (64,))
    result = train.train_conditional_flow_matching(
        cond, moons.double(), labels, steps=2, batch_size=16, progress=False, device="cpu"
    )
    assert len(result.history) == 2 and all(math.isfinite(v) for v in result.history)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_conditional_models_and_the_classifier_name_a_wrong_input_dtype(dtype):
    # Once "mat1 and mat2 must have the same dtype" from torch (float64), or a silent float32
    # result for float16 input.
    mlp = models.ConditionalMLPVelocityField(dim=2, num_classes=2, width=8, depth=1)
    with pytest.raises(TypeError, match=r"x must have the dtype of the model's weights \(torch.float32\)"):
        mlp(torch.zeros(2, 2, dtype=dtype), 0.5)
    unet = models.UNet(channels=8)
    with pytest.raises(TypeError, match=r"x must have the dtype of the model's weights \(torch.float32\)"):
        unet(torch.zeros(2, 1, 8, 8, dtype=dtype), 0.5)
    classifier = metrics.DigitsClassifier()
    with pytest.raises(TypeError, match=r"images must have the dtype of the classifier's weights"):
        classifier(torch.zeros(2, 1, 8, 8, dtype=dtype))
    # Controls: the weights' dtype works, and so does a model cast to the input's dtype.
    assert mlp(torch.zeros(2, 2), 0.5).shape == (2, 2)
    assert mlp.to(torch.float64)(torch.zeros(2, 2, dtype=torch.float64), 0.5).dtype == torch.float64


# --------------------------------------------------------------------------- U-Net and its blocks


@pytest.mark.parametrize("channels", [3, 4, 12, 20])
def test_unet_channels_that_group_normalisation_cannot_split(channels):
    # Once "num_channels (12) must be divisible by num_groups (8)" from torch.nn.GroupNorm.
    with pytest.raises(ValueError, match=rf"channels must be 1, 2 or a multiple of 8.*got {channels}"):
        models.UNet(channels=channels)


@pytest.mark.parametrize("channels", [1, 2, 8, 16])
def test_unet_channels_that_work(channels):
    out = models.UNet(channels=channels)(torch.zeros(2, 1, 8, 8), 0.5)
    assert out.shape == (2, 1, 8, 8)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(in_channels=0, out_channels=4, embedding_dim=8), ValueError, "in_channels must be >= 1"),  # ZeroDivision
        (dict(in_channels=4, out_channels=4.0, embedding_dim=8), TypeError, "out_channels must be an int"),
        (dict(in_channels=4, out_channels=4, embedding_dim=-1), ValueError, "embedding_dim must be >= 1"),
        (dict(in_channels=12, out_channels=8, embedding_dim=8), ValueError, "in_channels must be a multiple of groups"),
        (dict(in_channels=8, out_channels=8, embedding_dim=8, groups=0), ValueError, "groups must be >= 1"),
    ],
)
def test_residual_block_constructor_checks(kwargs, error, match):
    with pytest.raises(error, match=match):
        models.ResidualBlock(**kwargs)


def test_residual_block_forward_checks_shapes():
    block = models.ResidualBlock(4, 8, 16)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 4, height, width\)"):
        block(torch.zeros(2, 3, 4, 4), torch.zeros(2, 16))  # once a GroupNorm RuntimeError
    with pytest.raises(ValueError, match=r"e must have shape \(2, 16\)"):
        block(torch.zeros(2, 4, 4, 4), torch.zeros(2, 15))  # once a matmul RuntimeError
    with pytest.raises(TypeError, match="x must have the dtype"):
        block(torch.zeros(2, 4, 4, 4, dtype=torch.float64), torch.zeros(2, 16))
    assert block(torch.zeros(2, 4, 4, 4), torch.zeros(2, 16)).shape == (2, 8, 4, 4)


# --------------------------------------------------------------------------- fit


def test_fit_names_a_model_without_parameters():
    # Once torch's "optimizer got an empty parameter list".
    with pytest.raises(ValueError, match="model must have trainable parameters"):
        train.fit(nn.Identity(), lambda m, s: torch.zeros((), requires_grad=True), 1, progress=False)
    frozen = models.MLPVelocityField(width=4, depth=1).requires_grad_(False)
    with pytest.raises(ValueError, match="model must have trainable parameters"):
        train.fit(frozen, lambda m, s: m(torch.zeros(2, 2), 0.5).sum(), 1, progress=False)


@pytest.mark.parametrize(
    ("loss", "error", "match"),
    [
        (lambda m, s: 1.0, TypeError, "loss_fn must return a torch.Tensor, got float"),
        (lambda m, s: m(torch.zeros(2, 2), 0.5), ValueError, r"loss_fn must return a scalar loss, got shape \(2, 2\)"),
        (lambda m, s: m(torch.zeros(2, 2), 0.5).sum().detach(), ValueError, "returned a loss without a gradient"),
    ],
)
def test_fit_names_a_loss_that_is_not_a_scalar_with_a_gradient(loss, error, match):
    with pytest.raises(error, match=match):
        train.fit(models.MLPVelocityField(width=4, depth=1), loss, 1, progress=False, device="cpu")


# --------------------------------------------------------------------------- seeds and devices


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda s: train.seed_everything(s), None, "seed must be"),
        (lambda s: train.fit(models.MLPVelocityField(width=4, depth=1), lambda m, k: m(torch.zeros(2, 2), 0.5).sum(),
                             1, progress=False, device="cpu", seed=s), None, "seed must be"),
        (lambda s: guidance.sample_with_guidance(models.ConditionalMLPVelocityField(width=4, depth=1),
                                              torch.tensor([0, 1]), (2,), steps=2, seed=s), None, "seed must be"),
        (lambda s: solvers.euler_maruyama(lambda x, t: x, torch.ones(2, 2), 0.1, steps=2, generator=s), None,
         "generator must be"),
        (lambda s: metrics.noise_floor(metrics.sliced_w2, data.sample_moons, 10, seed=s, repeats=2), None,
         "seed must be"),
        (lambda s: metrics.train_digits_classifier(torch.zeros(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]), steps=1,
                                                   seed=s), None, "seed must be"),
    ],
)
@pytest.mark.parametrize("seed", [2**32, 2**64, 2.5, "0"])
def test_seeds_beyond_2_to_the_32_or_not_integers(call, error, match, seed):
    # Once "Seed must be between 0 and 2**32 - 1" from NumPy, "Overflow when unpacking long" or
    # "manual_seed expected a long" from torch.
    expected = ValueError if isinstance(seed, int) else (ValueError, TypeError)
    with pytest.raises(expected, match=match):
        call(seed)


def test_the_largest_seed_works():
    train.seed_everything(2**32 - 1)
    out = guidance.sample_with_guidance(models.ConditionalMLPVelocityField(width=4, depth=1), torch.tensor([0]), (2,),
                                     steps=1, seed=2**32 - 1)
    assert out.shape == (1, 2)


@pytest.mark.skipif(torch.cuda.device_count() > 7, reason="needs a machine without an eighth GPU")
@pytest.mark.parametrize(
    "call",
    [
        lambda: ot.coupled_cfm_loss(torch.zeros(4, 2), 2, device="cuda:7"),
        lambda: ot.train_with_coupling(models.MLPVelocityField(width=4, depth=1), torch.zeros(4, 2), steps=1,
                                       device="cuda:7", progress=False),
        lambda: train.logit_normal_times(3, device="cuda:7"),
        lambda: train.train_flow_matching(models.MLPVelocityField(width=4, depth=1), torch.zeros(4, 2), steps=1,
                                          device="cuda:7", progress=False),
    ],
)
def test_a_device_that_does_not_exist_is_named(call):
    # Once an AssertionError "Torch not compiled with CUDA enabled" from torch outside fit.
    with pytest.raises(ValueError, match="device 'cuda:7'"):
        call()


# --------------------------------------------------------------------------- adaptive solver


def test_solve_adaptive_names_a_field_that_returns_nan():
    # Once torchdiffeq's AssertionError "underflow in dt 0.0".
    with pytest.raises(ValueError, match=r"velocity\(x, t\) returned NaN or inf"):
        solvers.solve_adaptive(lambda x, t: x * math.nan, torch.ones(2, 2))


def test_solve_adaptive_stops_a_stiff_field_at_max_steps():
    # Once no step cap at all: dx/dt = -1e7 x ran for millions of steps. The default cap is 2000.
    with pytest.raises(RuntimeError, match=r"max_steps=2000.*stiff"):
        solvers.solve_adaptive(lambda x, t: -1e7 * x, torch.ones(2, 2))
    with pytest.raises(RuntimeError, match=r"max_steps=50"):
        solvers.solve_adaptive(lambda x, t: -1e7 * x, torch.ones(2, 2), max_steps=50)
    sol = solvers.solve_adaptive(lambda x, t: -x, torch.ones(2, 2))  # control: a smooth field
    assert torch.allclose(sol.x, torch.full((2, 2), math.exp(-1)), atol=1e-4) and sol.nfe < 200

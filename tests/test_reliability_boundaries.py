"""Bad input at the public boundary gets a clear error naming the argument, not a silent wrong answer."""

import pytest
import torch

from fmbook import data, guidance, models, scaling


def test_digits_to_unit_range_refuses_values_outside_the_digits_range():
    assert data.digits_to_unit_range(torch.tensor([0.0, 16.0])).tolist() == [-1.0, 1.0]
    with pytest.raises(ValueError, match=r"pixels must be scikit-learn's digit values in \[0, 16\].*\[0, 255\]"):
        data.digits_to_unit_range(torch.tensor([0.0, 255.0]))  # 8-bit pixels, once silently 30.9
    with pytest.raises(ValueError, match="pixels must contain only finite values"):
        data.digits_to_unit_range(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="pixels must be"):
        data.digits_to_unit_range(torch.tensor([-0.5]))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_init_distributed_refuses_cuda_without_cuda():
    with pytest.raises(ValueError, match="device 'cuda' was asked for, but CUDA is not available"):
        scaling.init_distributed(device="cuda")
    assert scaling.init_distributed(device="cpu").device == torch.device("cpu")  # control: the CPU is fine


def _labelled_model():
    torch.manual_seed(0)
    return models.ConditionalMLPVelocityField(dim=2, num_classes=3, width=16, depth=1)


@pytest.mark.parametrize(
    ("shape", "error", "message"),
    [
        ((2.5,), TypeError, r"shape must hold ints, got \(2.5,\)"),
        ((True,), TypeError, "shape must hold ints"),
        ("2", TypeError, "shape must be a sequence of ints"),
        ((), ValueError, "non-empty shape"),
        ((0,), ValueError, "sizes >= 1"),
    ],
)
def test_sample_with_guidance_refuses_a_shape_that_is_not_one_of_ints(shape, error, message):
    with pytest.raises(error, match=message):
        guidance.sample_with_guidance(_labelled_model(), torch.tensor([0, 1]), shape, steps=2)


def test_sample_with_guidance_with_a_good_shape():
    x = guidance.sample_with_guidance(_labelled_model(), torch.tensor([0, 1]), (2,), steps=2, seed=0)
    assert x.shape == (2, 2) and torch.isfinite(x).all()


def test_sampling_builds_no_autograd_graph():
    # Sampling 10 solver steps of a network must not keep the graph of every step (memory grows
    # with it: on chapter 8's digits, gigabytes), so the samples carry no gradient history.
    model = _labelled_model()
    x = guidance.sample_with_guidance(model, torch.tensor([0, 1, 2]), (2,), guidance_scale=2.0, steps=10, seed=0)
    assert not x.requires_grad and x.grad_fn is None
    # Control: the same field integrated with autograd on records a graph, which the check would see.
    from fmbook import solvers

    velocity = guidance.guided_velocity(model, torch.tensor([0, 1, 2]), 2.0)
    traced = solvers.solve_ode(velocity, torch.zeros(3, 2), steps=2)
    assert traced.x.requires_grad

"""Tests of classifier-free guidance in fmbook.train: the formula, the exact tilted field, sampling,
and label dropout in conditional training."""

import pytest
import torch
from torch import nn

from fmbook import guidance, models, paths, train

# A labelled finite data set: two classes in the plane.
POINTS = torch.tensor([[2.0, 0.0], [1.5, 1.0], [-1.0, -1.0], [-2.0, 0.5], [0.0, 2.0]], dtype=torch.float64)
LABELS = torch.tensor([0, 0, 1, 1, 1])


class ExactConditionalField(nn.Module):
    """The exact marginal velocity of the class-conditional paths (class 2 is the null class)."""

    num_classes, null_class = 2, 2

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros((), dtype=torch.float64))  # gives the model a device

    def forward(self, x, t, c):
        out = torch.empty_like(x)
        for k in range(3):
            rows = c == k
            if rows.any():
                subset = POINTS if k == 2 else POINTS[LABELS == k]
                out[rows] = paths.marginal_velocity(x[rows], t[rows], subset)
        return out


def test_combine_guidance_formula():
    # float64: in float32, b + (a - b) rounds to within ~2e-7 of a, more than allclose's default
    # tolerance when an entry of a is near 0 (the test then depended on the random draw).
    a, b = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    assert torch.equal(guidance.combine_guidance(a, b, 0.0), b)
    assert torch.allclose(guidance.combine_guidance(a, b, 1.0), a)
    assert torch.allclose(guidance.combine_guidance(a, b, 3.0), b + 3 * (a - b))
    with pytest.raises(ValueError, match="same shape"):
        guidance.combine_guidance(a, b[:2], 1.0)


@pytest.mark.parametrize("w", [0.0, 1.0, 2.5, -0.5])
@pytest.mark.parametrize("t", [0.2, 0.6, 0.9])
def test_guided_velocity_is_the_velocity_of_the_tilted_density(w, t):
    # For a Gaussian path the velocity is affine in the score, so guiding velocities guides
    # scores: the score of p_t(x)^(1 - w) p_t(x | c)^w is (1 - w) s(x) + w s(x | c).
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 2, generator=g, dtype=torch.float64) * 1.5
    c = torch.tensor([0, 1, 0, 1, 0, 1, 1, 0])
    tt = torch.full((8,), t, dtype=torch.float64)
    guided = guidance.guided_velocity(ExactConditionalField(), c, w)(x, tt)
    score = torch.empty_like(x)
    for k in range(2):
        rows = c == k
        s_all = paths.marginal_score(x[rows], tt[rows], POINTS)
        s_cond = paths.marginal_score(x[rows], tt[rows], POINTS[LABELS == k])
        score[rows] = (1 - w) * s_all + w * s_cond
    expected = paths.convert(score, "score", "velocity", x, tt, paths.CondOTScheduler())
    assert torch.allclose(guided, expected, atol=1e-8, rtol=1e-6)


def test_sample_with_guidance_shapes_seed_w1_and_w0():
    torch.manual_seed(0)
    net = models.ConditionalMLPVelocityField(dim=2, num_classes=2, width=16, depth=2)
    c = torch.tensor([0, 1, 1])
    a = guidance.sample_with_guidance(net, c, (2,), 2.0, steps=4, seed=3)
    b = guidance.sample_with_guidance(net, c, (2,), 2.0, steps=4, seed=3)
    assert a.shape == (3, 2) and torch.equal(a, b)
    # w = 1 is plain conditional sampling: Euler by hand.
    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(5))
    got = guidance.sample_with_guidance(net, c, (2,), 1.0, steps=2, method="euler", x0=x)
    with torch.no_grad():
        x1 = x + 0.5 * net(x, torch.zeros(3), c)
        x1 = x1 + 0.5 * net(x1, torch.full((3,), 0.5), c)
    assert torch.allclose(got, x1, atol=1e-6)
    # w = 0 is plain unconditional sampling: the null class, by hand.
    got = guidance.sample_with_guidance(net, c, (2,), 0.0, steps=2, method="euler", x0=x)
    null = torch.full((3,), net.null_class)
    with torch.no_grad():
        x1 = x + 0.5 * net(x, torch.zeros(3), null)
        x1 = x1 + 0.5 * net(x1, torch.full((3,), 0.5), null)
    assert torch.allclose(got, x1, atol=1e-6)


def test_guidance_bad_input():
    net = models.ConditionalMLPVelocityField(dim=2, num_classes=2, width=8, depth=1)
    c = torch.tensor([0, 1])
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match="guidance_scale must be finite"):
            guidance.sample_with_guidance(net, c, (2,), bad)
        with pytest.raises(ValueError, match="guidance_scale must be finite"):
            guidance.guided_velocity(net, c, bad)
    with pytest.raises(TypeError, match="guidance_scale must be a real number"):
        guidance.sample_with_guidance(net, c, (2,), "2")
    with pytest.raises(ValueError, match=r"c must lie in \[0, 2\]"):
        guidance.sample_with_guidance(net, torch.tensor([0, 3]), (2,), 1.5)
    with pytest.raises(ValueError, match=r"c must lie in"):
        guidance.sample_with_guidance(net, torch.tensor([-1, 0]), (2,), 1.5)
    with pytest.raises(ValueError, match="x0 must have shape"):
        guidance.sample_with_guidance(net, c, (2,), 1.0, x0=torch.randn(3, 2))
    with pytest.raises(ValueError, match="one sample per condition"):
        guidance.guided_velocity(net, c, 2.0)(torch.randn(3, 2), torch.rand(3))


class _Recorder(nn.Module):
    """A conditional field that records the conditions it is trained on."""

    num_classes, null_class = 10, 10

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))
        self.seen = []

    def forward(self, x, t, c):
        self.seen.append(c.clone())
        return x * self.weight


def test_label_dropout_rate_and_pairs():
    x = torch.arange(100, dtype=torch.float32)[:, None].repeat(1, 2)
    y = torch.arange(100) % 10
    rec = _Recorder()
    train.train_conditional_flow_matching(
        rec, x, y, steps=20, batch_size=500, p_uncond=0.2, progress=False, device="cpu"
    )
    seen = torch.cat(rec.seen)
    share = (seen == 10).float().mean().item()
    assert abs(share - 0.2) < 4 * (0.2 * 0.8 / seen.numel()) ** 0.5  # 4 binomial standard deviations
    rec = _Recorder()
    train.train_conditional_flow_matching(rec, x, y, steps=2, batch_size=50, p_uncond=0.0, progress=False, device="cpu")
    assert (torch.cat(rec.seen) < 10).all()


def test_conditional_training_bad_input():
    net = models.ConditionalMLPVelocityField(dim=2, num_classes=2, width=8, depth=1)
    x = torch.randn(10, 2)
    with pytest.raises(ValueError, match="conditions must have one row per data row"):
        train.train_conditional_flow_matching(net, x, torch.zeros(9, dtype=torch.long), steps=1)
    with pytest.raises(ValueError, match=r"conditions must lie in \[0, 1\]"):
        train.train_conditional_flow_matching(net, x, torch.full((10,), 2), steps=1)
    with pytest.raises(ValueError, match="p_uncond"):
        train.train_conditional_flow_matching(net, x, torch.zeros(10, dtype=torch.long), steps=1, p_uncond=1.0)

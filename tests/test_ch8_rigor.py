"""Chapter 8's rigor checks: the guidance convention, solver orders, EMA, AMP, memorisation, bits/dim."""

import math

import pytest
import torch

from fmbook import data, paths, train

# ----------------------------------------------------------------------------------------------
# The classifier-free guidance convention: the book's w = 1 + w of Ho and Salimans (2022)
# ----------------------------------------------------------------------------------------------


def test_guidance_scale_from_ho_salimans_maps_their_landmarks():
    assert train.guidance_scale_from_ho_salimans(0.0) == 1.0  # their "no guidance" is the conditional model
    assert train.guidance_scale_from_ho_salimans(-1.0) == 0.0  # the unconditional model
    assert train.guidance_scale_from_ho_salimans(3) == 4.0


@pytest.mark.parametrize("scheduler", [paths.CondOTScheduler(), paths.VPScheduler()], ids=["condot", "vp"])
def test_guiding_noise_predictions_their_way_is_the_book_rule_on_velocities(scheduler):
    points, labels = data.sample_moons_with_labels(30, seed=1)
    points = points.double()
    x = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    t = torch.full((64,), 0.55, dtype=torch.float64)
    u_c = paths.marginal_velocity(x, t, points[labels == 0], scheduler)
    u_u = paths.marginal_velocity(x, t, points, scheduler)
    # Independent route: the noise predictions E[X0 | x] computed from the posterior means.
    a, s, _, _ = (c[:, None] for c in scheduler.coefficients(t))
    eps_c = (x - a * paths.posterior_mean(x, t, points[labels == 0], scheduler)) / s
    eps_u = (x - a * paths.posterior_mean(x, t, points, scheduler)) / s
    for w_hs in (0.25, 1.0, 4.0):
        eps = (1 + w_hs) * eps_c - w_hs * eps_u  # eq. 6 of Ho and Salimans, written out
        assert torch.allclose(train.combine_guidance_ho_salimans(eps_c, eps_u, w_hs), eps, atol=1e-12)
        theirs = paths.convert(eps, "epsilon", "velocity", x, t, scheduler)
        ours = train.combine_guidance(u_c, u_u, train.guidance_scale_from_ho_salimans(w_hs))
        assert torch.allclose(theirs, ours, atol=1e-9)
        # Negative control: reading w_HS as the book's w misses the field by |u_c - u_u|.
        unshifted = train.combine_guidance(u_c, u_u, w_hs)
        assert (theirs - unshifted).abs().mean() > 0.5 * (u_c - u_u).abs().mean()


def test_ho_salimans_guidance_bad_input():
    with pytest.raises(TypeError, match="w_ho_salimans"):
        train.guidance_scale_from_ho_salimans("1")
    with pytest.raises(ValueError, match="w_ho_salimans"):
        train.combine_guidance_ho_salimans(torch.zeros(2, 2), torch.zeros(2, 2), math.inf)
    with pytest.raises(ValueError, match="pred_cond and pred_uncond"):
        train.combine_guidance_ho_salimans(torch.zeros(2, 2), torch.zeros(3, 2), 1.0)

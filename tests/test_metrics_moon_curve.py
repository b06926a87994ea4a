"""Tests of metrics.moon_curve_distance and metrics.moon_curve_rms: the distance to the noiseless moons."""

import math

import numpy as np
import pytest
import torch

from fmbook import data, metrics


def _moon_polylines(vertices: int = 20_001) -> list[np.ndarray]:
    """The two noiseless moons as dense polylines ``(vertices, 2)``, from data.py's own parameterisation."""
    a = np.linspace(0.0, math.pi, vertices)
    upper = np.stack([np.cos(a), np.sin(a)], axis=1)
    lower = np.stack([1 - np.cos(a), 0.5 - np.sin(a)], axis=1)
    return [2.0 * (arc - np.array([0.5, 0.25])) for arc in (upper, lower)]


def _polyline_distance(x: np.ndarray, line: np.ndarray) -> np.ndarray:
    """Brute force: the distance of each point ``(B, 2)`` to the nearest segment of ``line``."""
    p, q = line[:-1], line[1:]
    pq = q - p
    rel = x[:, None, :] - p[None]
    s = np.clip((rel * pq[None]).sum(-1) / (pq * pq).sum(-1)[None], 0.0, 1.0)
    return np.linalg.norm(rel - s[..., None] * pq[None], axis=-1).min(axis=1)


def test_agrees_with_brute_force_polyline():
    g = torch.Generator().manual_seed(0)
    # Points everywhere: on and near the moons, inside the half circles, below the diameters (where an
    # endpoint is nearest), at the centres, and far away.
    pts = torch.cat(
        [
            data.sample_moons(300, generator=1),
            data.sample_moons(100, generator=2, noise=0.4),
            (torch.rand(400, 2, generator=g, dtype=torch.float64) - 0.5) * 10,
            torch.tensor([[-1.0, -0.5], [1.0, 0.5], [-3.0, -0.5], [3.0, 0.5], [-3.0, -2.0], [3.0, 2.0], [0.0, 0.0]]),
        ]
    ).numpy()
    brute = np.minimum(*[_polyline_distance(pts, line) for line in _moon_polylines()])
    exact = metrics.moon_curve_distance(torch.from_numpy(pts)).numpy()
    assert exact.shape == (pts.shape[0],)
    np.testing.assert_allclose(exact, brute, atol=1e-4, rtol=0)
    # The sagitta of a chord of the polyline is below 1e-8: the two agree far closer than the bar.
    assert np.abs(exact - brute).max() < 1e-6


def test_negative_control_polyline_through_vertices_of_a_wrong_radius_disagrees():
    # The same brute force against moons of radius 2.1 misses by about 0.1: the comparison above can fail.
    pts = data.sample_moons(300, generator=1, noise=0.0).double().numpy()
    wrong = [2.1 / 2.0 * (line - c) + c for line, c in zip(_moon_polylines(), [(-1.0, -0.5), (1.0, 0.5)])]
    brute = np.minimum(*[_polyline_distance(pts, line) for line in wrong])
    exact = metrics.moon_curve_distance(torch.from_numpy(pts)).numpy()
    assert np.abs(exact - brute).max() > 1e-4


def test_zero_on_noiseless_points_and_exact_off_the_curve():
    x = data.sample_moons(2000, generator=3, noise=0.0)
    # float32 points: exact to the rounding of the data (about 1e-7).
    assert metrics.moon_curve_distance(x).max() < 1e-6
    assert metrics.moon_curve_rms(x) < 1e-6
    # The upper arc's endpoints and apex, moved by 0.3 along the outward normal or straight down.
    pts = torch.tensor([[-1.0, 1.5 + 0.3], [1.0, -0.5 - 0.3], [-3.0, -0.8], [-1.0, 1.2]], dtype=torch.float64)
    # (-3, -0.8): below the upper moon's diameter, nearest its endpoint (-3, -0.5), 0.3 away.
    # (1, -0.8): 0.3 below the upper moon's endpoint (1, -0.5); the lower moon (apex (1, -1.5)) is 0.7 away.
    np.testing.assert_allclose(metrics.moon_curve_distance(pts).numpy(), [0.3, 0.3, 0.3, 0.3], atol=1e-12)


SEEDS = range(8)


def test_the_data_own_value_is_the_noise_standard_deviation():
    # Moons of noise 0.05 before the scaling by 2: isotropic noise of sd 0.1, RMS normal offset about 0.100
    # (0.0014 to 0.0016 between draws of 2000). Each seed within 0.100 +- 0.005 (over 3 sd), the mean of 8
    # within 0.100 +- 0.002 (about 3.5 standard errors).
    values = np.array([metrics.moon_curve_rms(data.sample_moons(2000, generator=1_000 + s)) for s in SEEDS])
    assert np.all(np.abs(values - 0.100) < 0.005), values
    assert abs(values.mean() - 0.100) < 0.002, values.mean()
    assert 0.0008 < values.std(ddof=1) < 0.0025, values.std(ddof=1)
    assert np.all(values <= 0.110)


def test_negative_control_blur_by_sqrt2_fails_the_bar():
    # Data with extra noise of sd 0.1: sqrt(2) thicker moons, RMS about 0.141, above the 0.110 bar on every seed.
    values = []
    for s in SEEDS:
        x = data.sample_moons(2000, generator=2_000 + s)
        blur = 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(s))
        values.append(metrics.moon_curve_rms(x + blur))
    values = np.array(values)
    assert np.all(np.abs(values - 0.141) < 0.007), values
    assert np.all(values > 0.110), values


@pytest.mark.parametrize(
    "bad",
    [
        torch.zeros(5, 3),
        torch.zeros(5),
        torch.zeros(0, 2),
        torch.tensor([[0.0, float("nan")]]),
        torch.tensor([[0.0, float("inf")]]),
    ],
)
def test_bad_input_raises_naming_samples(bad):
    with pytest.raises(ValueError, match="samples"):
        metrics.moon_curve_rms(bad)
    with pytest.raises(ValueError, match="samples"):
        metrics.moon_curve_distance(bad)


def test_non_tensor_and_integer_input_raise_type_error_naming_samples():
    for bad in ([[0.0, 1.0]], torch.zeros(3, 2, dtype=torch.int64)):
        with pytest.raises(TypeError, match="samples"):
            metrics.moon_curve_rms(bad)

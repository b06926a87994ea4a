"""Tests of fmbook.data: shapes, seeding, and the distributions against independent references."""

import math

import pytest
import torch

from fmbook import data, metrics


@pytest.mark.parametrize("name", sorted(data.DATASETS))
def test_shape_dtype_and_seeding(name):
    x = data.sample(name, 257, generator=3)
    assert x.shape == (257, 2) and x.dtype == torch.float32
    assert torch.equal(x, data.sample(name, 257, generator=3))
    assert not torch.equal(x, data.sample(name, 257, generator=4))
    torch.manual_seed(0)
    a = data.sample(name, 50)
    torch.manual_seed(0)
    assert torch.equal(a, data.sample(name, 50))


def test_moons_match_scikit_learn_distribution():
    # Our i.i.d. moons and scikit-learn's stratified make_moons describe the same distribution:
    # their sliced W2 is no larger than between two of our own independent draws (x 1.5 margin).
    ours = data.sample_moons(4000, generator=1)
    ref = data.canonical_moons_sklearn(4000, generator=2)
    floor = metrics.noise_floor(metrics.sliced_w2, data.sample_moons, 4000)
    assert metrics.sliced_w2(ours, ref) < 1.5 * floor


def test_moons_geometry_without_noise():
    x, y = data.sample_moons_with_labels(2000, generator=0, noise=0.0)
    upper_centre, lower_centre = torch.tensor([-1.0, -0.5]), torch.tensor([1.0, 0.5])
    # Before the shift, the upper arc is centred at (0, 0) and the lower at (1, 0.5), radius 1;
    # after x -> 2 (x - (0.5, 0.25)): centres (-1, -0.5) and (1, 0.5), radius 2.
    r_upper = (x[y == 0] - upper_centre).norm(dim=1)
    r_lower = (x[y == 1] - lower_centre).norm(dim=1)
    assert torch.allclose(r_upper, torch.full_like(r_upper, 2.0), atol=1e-5)
    assert torch.allclose(r_lower, torch.full_like(r_lower, 2.0), atol=1e-5)
    assert (x[y == 0, 1] >= -0.5 - 1e-6).all() and (x[y == 1, 1] <= 0.5 + 1e-6).all()
    assert abs(x.mean(0)[0].item()) < 0.1  # centred horizontally


def test_eight_gaussians_moments():
    x = data.sample_eight_gaussians(40_000, generator=0, radius=3.0, std=0.3).double()
    # Mean 0; E||x||^2 = radius^2 + 2 std^2.
    assert x.mean(0).abs().max() < 0.05
    assert abs((x**2).sum(1).mean().item() - (9.0 + 2 * 0.09)) < 0.1


def test_checkerboard_occupies_alternate_cells():
    x = data.sample_checkerboard(5000, generator=0, cell=1.5)
    ij = torch.floor((x + 3.0) / 1.5).long()
    assert ((ij >= 0) & (ij <= 3)).all()
    assert ((ij[:, 0] + ij[:, 1]) % 2 == 0).all()
    counts = torch.bincount(ij[:, 0] * 4 + ij[:, 1], minlength=16)
    occupied = counts[counts > 0]
    assert len(occupied) == 8 and occupied.min() > 500  # eight cells, roughly equal mass


def test_circles_radii():
    x = data.sample_circles(3000, generator=0, noise=0.0, radius=3.0)
    r = x.norm(dim=1)
    assert torch.all(torch.isclose(r, torch.tensor(3.0), atol=1e-4) | torch.isclose(r, torch.tensor(1.5), atol=1e-4))


def test_spirals_are_point_symmetric():
    x = data.sample_spirals(20_000, generator=0, noise=0.0)
    # The two arms are mirror images through the origin: the set is invariant under x -> -x.
    assert metrics.sliced_w2(x, -x) < 0.05
    assert x.norm(dim=1).max() <= 3.0 + 1e-5


def test_gaussian_dimension_and_moments():
    x = data.sample_gaussian(20_000, generator=0, dim=3).double()
    assert x.shape == (20_000, 3)
    assert x.mean(0).abs().max() < 0.03 and (x.var(0) - 1).abs().max() < 0.05


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_n(bad):
    with pytest.raises((ValueError, TypeError), match="n must"):
        data.sample_moons(bad)


def test_bad_arguments():
    with pytest.raises(ValueError, match="name must be one of"):
        data.sample("swissroll", 10)
    with pytest.raises(ValueError, match="generator must be >= 0"):
        data.sample_moons(10, generator=-1)
    with pytest.raises(ValueError, match="noise must"):
        data.sample_moons(10, noise=-0.1)
    with pytest.raises(ValueError, match="std must"):
        data.sample_eight_gaussians(10, std=math.inf)


@pytest.mark.parametrize("name", sorted(data.DATASETS))
def test_generator_int_or_stream(name):
    """An int seed is a fresh generator with that seed; a Generator is one stream that advances."""
    by_int = data.sample(name, 64, generator=5)
    g = torch.Generator().manual_seed(5)
    first, second = data.sample(name, 64, generator=g), data.sample(name, 64, generator=g)
    assert torch.equal(by_int, first) and not torch.equal(first, second)
    g = torch.Generator().manual_seed(5)
    assert torch.equal(data.sample(name, 64, generator=g), first)
    assert torch.equal(data.sample(name, 64, generator=g), second)


def test_sklearn_random_state_from_generator():
    """An int passes straight to scikit-learn; a Generator (or the global one) draws that int."""
    from sklearn.datasets import make_moons

    raw, _ = make_moons(n_samples=50, noise=0.05, random_state=7)
    expected = torch.as_tensor(2.0 * (raw - [0.5, 0.25]), dtype=torch.float32)
    assert torch.equal(data.canonical_moons_sklearn(50, generator=7), expected)
    drawn = int(torch.randint(0, 2**31 - 1, (), generator=torch.Generator().manual_seed(3)))
    assert torch.equal(
        data.canonical_moons_sklearn(50, generator=torch.Generator().manual_seed(3)),
        data.canonical_moons_sklearn(50, generator=drawn),
    )
    torch.manual_seed(11)
    a = data.canonical_moons_sklearn(50, generator=None)
    torch.manual_seed(11)
    assert torch.equal(a, data.canonical_moons_sklearn(50, generator=None))
    split = data.load_digits_split(generator=torch.Generator().manual_seed(3))
    assert torch.equal(split.heldout_labels, data.load_digits_split(generator=drawn).heldout_labels)
    assert not torch.equal(split.heldout_images, data.load_digits_split(generator=0).heldout_images)

"""Bad input to fmbook.data: every case raises a TypeError or ValueError naming the argument."""

import math

import pytest

from fmbook import data

SAMPLERS = [
    data.sample_moons,
    data.sample_eight_gaussians,
    data.sample_checkerboard,
    data.sample_circles,
    data.sample_spirals,
    data.sample_gaussian,
    data.sample_moons_with_labels,
]

# (bad value of n, exception, message) for every sampler
BAD_N = [
    (0, ValueError, r"n must be >= 1"),
    (-5, ValueError, r"n must be >= 1"),
    (2.5, TypeError, r"n must be an int"),
    ("10", TypeError, r"n must be an int"),
    (True, TypeError, r"n must be an int"),
    (None, TypeError, r"n must be an int"),
]

BAD_SEED = [
    (-1, ValueError, r"generator must be >= 0"),
    (2**40, ValueError, r"generator must be < 2\*\*32"),
    (1.0, TypeError, r"generator must be an int seed, a torch.Generator or None"),
    ("0", TypeError, r"generator must be an int seed, a torch.Generator or None"),
    (False, TypeError, r"generator must be an int seed, a torch.Generator or None"),
]


@pytest.mark.parametrize("sampler", SAMPLERS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("n, exc, match", BAD_N)
def test_bad_n(sampler, n, exc, match):
    with pytest.raises(exc, match=match):
        sampler(n, generator=0)


@pytest.mark.parametrize("sampler", SAMPLERS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("seed, exc, match", BAD_SEED)
def test_bad_seed(sampler, seed, exc, match):
    with pytest.raises(exc, match=match):
        sampler(4, generator=seed)


# (sampler, keyword, bad value, exception, message): the hyper-parameters of each data set
BAD_HYPER = [
    (data.sample_moons, "noise", -0.1, ValueError, r"noise must be a finite number >= 0"),
    (data.sample_moons, "noise", math.nan, ValueError, r"noise must be a finite number >= 0"),
    (data.sample_moons, "noise", math.inf, ValueError, r"noise must be a finite number >= 0"),
    (data.sample_moons, "noise", "0.1", TypeError, r"noise must be a number"),
    (data.sample_moons_with_labels, "noise", -1.0, ValueError, r"noise must be"),
    (data.canonical_moons_sklearn, "noise", -0.1, ValueError, r"noise must be a finite number >= 0"),
    (data.canonical_moons_sklearn, "generator", -3, ValueError, r"generator must be >= 0"),
    (data.canonical_moons_sklearn, "generator", 2**33, ValueError, r"generator must be < 2\*\*32"),
    (data.canonical_moons_sklearn, "generator", 1.0, TypeError, r"generator must be an int seed"),
    (data.sample_eight_gaussians, "radius", 0.0, ValueError, r"radius must be a finite number > 0"),
    (data.sample_eight_gaussians, "radius", -1.0, ValueError, r"radius must be"),
    (data.sample_eight_gaussians, "std", 0.0, ValueError, r"std must be a finite number > 0"),
    (data.sample_eight_gaussians, "std", math.nan, ValueError, r"std must be"),
    (data.sample_eight_gaussians, "std", None, TypeError, r"std must be a number"),
    (data.sample_checkerboard, "cell", 0.0, ValueError, r"cell must be a finite number > 0"),
    (data.sample_checkerboard, "cell", -math.inf, ValueError, r"cell must be"),
    (data.sample_circles, "noise", -0.5, ValueError, r"noise must be"),
    (data.sample_circles, "radius", 0, ValueError, r"radius must be a finite number > 0"),
    (data.sample_spirals, "noise", -0.5, ValueError, r"noise must be"),
    (data.sample_spirals, "turns", 0.0, ValueError, r"turns must be a finite number > 0"),
    (data.sample_spirals, "turns", math.inf, ValueError, r"turns must be"),
    (data.sample_gaussian, "dim", 0, ValueError, r"dim must be >= 1"),
    (data.sample_gaussian, "dim", 2.0, TypeError, r"dim must be an int"),
]


@pytest.mark.parametrize(
    "sampler, key, value, exc, match", BAD_HYPER, ids=[f"{c[0].__name__}-{c[1]}-{c[2]!r}" for c in BAD_HYPER]
)
def test_bad_hyper_parameters(sampler, key, value, exc, match):
    with pytest.raises(exc, match=match):
        sampler(8, **{key: value})


def test_canonical_moons_sklearn_bad_n():
    with pytest.raises(ValueError, match=r"n must be >= 1"):
        data.canonical_moons_sklearn(0)


@pytest.mark.parametrize(
    "name, exc, match",
    [
        ("moon", ValueError, r"name must be one of"),
        ("", ValueError, r"name must be one of"),
        (["moons"], ValueError, r"name must be one of"),
        (None, ValueError, r"name must be one of"),
    ],
)
def test_sample_bad_name(name, exc, match):
    with pytest.raises(exc, match=match):
        data.sample(name, 4, generator=0)


@pytest.mark.parametrize("n, exc, match", BAD_N[:3])
def test_sample_by_name_bad_n(n, exc, match):
    with pytest.raises(exc, match=match):
        data.sample("moons", n, generator=0)


def test_valid_calls_still_work():
    """The checks do not reject good input (a guard against over-eager validation)."""
    for sampler in SAMPLERS[:-1]:
        x = sampler(5, generator=0)
        assert x.shape[0] == 5
    assert data.sample_moons(3, generator=2**32 - 1).shape == (3, 2)
    assert data.sample_moons(3, noise=0).shape == (3, 2)
    assert data.canonical_moons_sklearn(4, generator=0, noise=0.0).shape == (4, 2)

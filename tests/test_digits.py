"""Tests of the digits data set (fmbook.data) and of the digits metrics (fmbook.metrics)."""

import numpy as np
import ot
import pytest
import torch
from sklearn.datasets import load_digits

from fmbook import data, metrics


@pytest.fixture(scope="module")
def split():
    return data.load_digits_split()


@pytest.fixture(scope="module")
def classifier(split):
    return metrics.train_digits_classifier(split.train_images, split.train_labels)


def test_split_shapes_range_and_stratification(split):
    assert split.train_images.shape == (1347, 1, 8, 8) and split.heldout_images.shape == (450, 1, 8, 8)
    assert split.train_images.dtype == torch.float32 and split.train_labels.dtype == torch.int64
    both = torch.cat([split.train_images, split.heldout_images])
    assert both.min() == -1.0 and both.max() == 1.0
    # Stratified: each class is ~25% held out.
    for k in range(10):
        n_train, n_held = int((split.train_labels == k).sum()), int((split.heldout_labels == k).sum())
        assert abs(n_held / (n_train + n_held) - 0.25) < 0.02


def test_split_is_a_partition_of_scikit_learns_digits(split):
    raw = load_digits()
    expected = torch.as_tensor(raw.images / 8.0 - 1.0, dtype=torch.float32).reshape(1797, 64)
    got = torch.cat([split.train_images, split.heldout_images]).reshape(1797, 64)
    labels = torch.cat([split.train_labels, split.heldout_labels])

    # Same multiset of (image, label) rows: sort both by a lexicographic key.
    def key(rows, lab):
        table = np.concatenate([rows.numpy(), lab.numpy()[:, None]], axis=1)
        return table[np.lexsort(table.T[::-1])]

    assert np.array_equal(key(got, labels), key(expected, torch.as_tensor(raw.target)))


def test_split_seeding():
    a, b = data.load_digits_split(generator=1), data.load_digits_split(generator=1)
    c = data.load_digits_split(generator=2)
    assert torch.equal(a.heldout_labels, b.heldout_labels) and torch.equal(a.heldout_images, b.heldout_images)
    assert not torch.equal(a.heldout_images, c.heldout_images)
    assert data.load_digits_split(heldout_fraction=0.5).heldout_images.shape[0] in (898, 899)
    with pytest.raises(ValueError, match="heldout_fraction"):
        data.load_digits_split(heldout_fraction=1.0)
    with pytest.raises(ValueError, match="generator must be >= 0"):
        data.load_digits_split(generator=-1)


def test_unit_range_and_downsample():
    assert data.digits_to_unit_range(torch.tensor([0.0, 8.0, 16.0])).tolist() == [-1.0, 0.0, 1.0]
    x = torch.randn(3, 2, 8, 6)
    low = data.downsample(x)
    assert low.shape == (3, 2, 4, 3)
    manual = x.reshape(3, 2, 4, 2, 3, 2).mean(dim=(3, 5))
    assert torch.allclose(low, manual, atol=1e-6)
    with pytest.raises(ValueError, match="multiples of factor"):
        data.downsample(torch.randn(1, 1, 8, 8), factor=3)
    with pytest.raises(ValueError, match=r"images must have shape \(batch, channels, height, width\)"):
        data.downsample(torch.randn(8, 8))
    with pytest.raises(ValueError, match="8x8"):
        data.check_images(torch.randn(2, 1, 4, 4), size=8)
    with pytest.raises(ValueError, match="1 channel"):
        data.check_images(torch.randn(2, 3, 8, 8), channels=1)


def test_frechet_distance_against_pot_and_closed_forms():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(400, 5, generator=g, dtype=torch.float64) @ torch.randn(5, 5, generator=g, dtype=torch.float64)
    b = torch.randn(300, 5, generator=g, dtype=torch.float64) * 2 + 1
    fd = metrics.frechet_distance(a, b)
    # POT's Bures-Wasserstein distance between the fitted Gaussians (its own matrix square roots).
    mu_a, mu_b = a.mean(0).numpy(), b.mean(0).numpy()
    cov_a, cov_b = np.cov(a.numpy().T), np.cov(b.numpy().T)
    reference = float(ot.gaussian.bures_wasserstein_distance(mu_a, mu_b, cov_a, cov_b)) ** 2
    assert abs(fd - reference) < 1e-8 * max(1.0, reference)
    # Diagonal covariances: d^2 = |mu_a - mu_b|^2 + sum (sqrt(s_a) - sqrt(s_b))^2.
    x = torch.randn(20_000, 3, generator=g, dtype=torch.float64)
    sa, sb = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 1.0])
    shift = torch.tensor([1.0, -2.0, 0.0])
    fa, fb = x * sa.sqrt(), (x * sb.sqrt() + shift)  # same x: exact sample covariances are diagonal up to noise
    expected = float((shift**2).sum() + ((sa.sqrt() - sb.sqrt()) ** 2).sum())
    assert abs(metrics.frechet_distance(fa, fb) - expected) < 0.05 * expected
    assert metrics.frechet_distance(a, a) < 1e-8
    assert abs(metrics.frechet_distance(a, b) - metrics.frechet_distance(b, a)) < 1e-8


def test_frechet_distance_bad_input():
    with pytest.raises(ValueError, match="columns"):
        metrics.frechet_distance(torch.randn(10, 3), torch.randn(10, 4))
    with pytest.raises(ValueError, match="at least 2 rows"):
        metrics.frechet_distance(torch.randn(1, 3), torch.randn(10, 3))


def test_classifier_score_and_feature_distance(split, classifier):
    assert metrics.classifier_accuracy(classifier, split.heldout_images, split.heldout_labels) > 0.95
    wrong = (split.heldout_labels + 1) % 10
    assert metrics.classifier_accuracy(classifier, split.heldout_images, wrong) < 0.05
    floor = metrics.digits_frechet_distance(classifier, split.train_images, split.heldout_images)
    noise = torch.rand(450, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert floor < 0.1 * metrics.digits_frechet_distance(classifier, noise, split.heldout_images)
    feats = classifier.features(split.heldout_images[:7])
    assert feats.shape == (7, 64)


def test_classifier_bad_input(split, classifier):
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 9\]"):
        metrics.classifier_accuracy(classifier, split.heldout_images[:2], torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="8x8"):
        metrics.classifier_accuracy(classifier, torch.randn(2, 1, 4, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        metrics.classifier_accuracy(classifier, split.heldout_images[:3], torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"labels must lie"):
        metrics.train_digits_classifier(split.train_images[:4], torch.tensor([0, 1, 2, 12]))

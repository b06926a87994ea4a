"""Tests of the chapter 4 additions to fmbook.ot: each against an independent computation."""

from __future__ import annotations

import itertools

import pytest
import torch

from fmbook import ot as fot


def _direct_gaps(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """Half the cost added by swapping the partners of rows i and j, entry by entry in Python floats."""
    n = x0.shape[0]
    a, b = x0.double().tolist(), x1.double().tolist()

    def c(i, j):
        return sum((p - q) ** 2 for p, q in zip(a[i], b[j]))

    return torch.tensor([[0.5 * (c(i, j) + c(j, i) - c(i, i) - c(j, j)) for j in range(n)] for i in range(n)],
                        dtype=torch.float64)


def test_monotonicity_gaps_are_half_the_swap_cost():
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(7, 3, generator=g), torch.randn(7, 3, generator=g) + 2.0
    gaps = fot.monotonicity_gaps(x0, x1)
    assert gaps.dtype == torch.float64 and gaps.shape == (7, 7)
    torch.testing.assert_close(gaps, _direct_gaps(x0, x1), rtol=0, atol=1e-10)
    torch.testing.assert_close(gaps, gaps.T, rtol=0, atol=0)
    assert float(gaps.diagonal().abs().max()) == 0.0
    # images are flattened
    img0, img1 = x0.reshape(7, 3, 1, 1), x1.reshape(7, 1, 3, 1)
    torch.testing.assert_close(fot.monotonicity_gaps(img0, img1.reshape(7, 3, 1, 1)), gaps)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_cheapest_pairing_is_monotone_and_a_non_monotone_one_is_improved_by_a_swap(seed):
    g = torch.Generator().manual_seed(seed)
    x0, x1 = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g) * 0.5 + 1.0
    cost = fot.squared_distances(x0, x1)
    perms = torch.tensor(list(itertools.permutations(range(6))))
    costs = cost[torch.arange(6), perms].mean(1)
    best = perms[costs.argmin()]
    assert float(fot.monotonicity_gaps(x0, x1[best]).min()) >= -1e-12
    worst = perms[costs.argmax()]
    gaps = fot.monotonicity_gaps(x0, x1[worst])
    i, j = divmod(int(gaps.argmin()), 6)
    assert float(gaps[i, j]) < 0  # the most expensive pairing is not monotone
    swapped = worst.clone()
    swapped[i], swapped[j] = worst[j], worst[i]
    saving = fot.transport_cost(x0, x1[worst]) - fot.transport_cost(x0, x1[swapped])
    assert saving == pytest.approx(-2 * float(gaps[i, j]) / 6, rel=1e-6)


def test_straight_paths_that_meet_have_a_negative_gap():
    # Two particles at the same place p at time t: the gap is -(1 - t)/t ||x0_i - x0_j||^2.
    t, p = 0.3, torch.tensor([0.5, -1.0], dtype=torch.float64)
    x0 = torch.tensor([[0.0, 0.0], [2.0, 1.0]], dtype=torch.float64)
    x1 = (p - (1 - t) * x0) / t  # so that (1 - t) x0 + t x1 = p for both rows
    gap = float(fot.monotonicity_gaps(x0, x1)[0, 1])
    assert gap == pytest.approx(-(1 - t) / t * float((x0[0] - x0[1]).pow(2).sum()), rel=1e-12)


def test_monotonicity_gaps_reject_bad_input():
    with pytest.raises(ValueError, match="same number of points"):
        fot.monotonicity_gaps(torch.randn(4, 2), torch.randn(5, 2))
    with pytest.raises(ValueError, match="x1"):
        fot.monotonicity_gaps(torch.randn(4, 2), torch.full((4, 2), float("nan")))

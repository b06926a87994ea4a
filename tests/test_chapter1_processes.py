"""Tests of fmbook.processes: flow, diffusion and jump simulations between the same P and Q."""

import math

import pytest
import torch
from scipy.stats import binomtest, chisquare

from fmbook import metrics
from fmbook.processes import simulate_marginal_diffusion, simulate_marginal_flow, simulate_mixture_jumps

DATA = torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.0]])


def _nearest(x, data):
    dist, idx = torch.cdist(x.double(), data.double()).min(dim=1)
    return dist, idx


def _exact_path_sample(n, t, seed):
    """Draws of X_t = t X1 + (1 - t) X0 for the CondOT path of DATA (independent of the simulators)."""
    g = torch.Generator().manual_seed(seed)
    x1 = DATA[torch.randint(0, DATA.shape[0], (n,), generator=g)]
    x0 = torch.randn(n, 2, generator=g)
    return t * x1 + (1 - t) * x0


@pytest.mark.parametrize("which", ["flow", "diffusion", "jumps"])
def test_all_three_end_uniformly_on_the_target(which):
    n = 3000
    x0 = torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    if which == "flow":
        traj = simulate_marginal_flow(x0, DATA, steps=100)
    elif which == "diffusion":
        traj = simulate_marginal_diffusion(x0, DATA, steps=100, epsilon=1.0, generator=g)
    else:
        traj = simulate_mixture_jumps(x0, DATA, steps=100, generator=g)
    assert traj.shape == (n, 101, 2)
    assert torch.equal(traj[:, 0], x0)
    dist, idx = _nearest(traj[:, -1], DATA)
    assert float(dist.max()) < 0.05  # every end point sits on a point of Q
    counts = torch.bincount(idx, minlength=3).numpy()
    assert chisquare(counts).pvalue > 1e-3  # ... and each point of Q gets a third of them


def test_flow_and_diffusion_follow_the_exact_path():
    n, t_index, steps = 4000, 50, 100
    x0 = torch.randn(n, 2, generator=torch.Generator().manual_seed(2))
    flow = simulate_marginal_flow(x0, DATA, steps=steps)[:, t_index]
    diff = simulate_marginal_diffusion(x0, DATA, steps=steps, generator=torch.Generator().manual_seed(3))[:, t_index]
    exact_a, exact_b = _exact_path_sample(n, 0.5, 4), _exact_path_sample(n, 0.5, 5)
    floor = metrics.sliced_w2(exact_a, exact_b)
    for x in (flow, diff):
        assert metrics.sliced_w2(x, exact_a) < 2.5 * floor + 0.02


def test_diffusion_is_rough_and_flow_is_smooth():
    x0 = torch.randn(500, 2, generator=torch.Generator().manual_seed(6))
    flow = simulate_marginal_flow(x0, DATA, steps=200)
    diff = simulate_marginal_diffusion(x0, DATA, steps=200, generator=torch.Generator().manual_seed(7))
    # Increments over the first half: O(h) for a flow, O(sqrt(h)) for a diffusion.
    inc_flow = (flow[:, 1:100] - flow[:, :99]).norm(dim=-1).mean()
    inc_diff = (diff[:, 1:100] - diff[:, :99]).norm(dim=-1).mean()
    assert inc_diff > 3 * inc_flow


def test_diffusion_with_zero_epsilon_is_the_euler_flow():
    x0 = torch.randn(100, 2, generator=torch.Generator().manual_seed(8))
    flow = simulate_marginal_flow(x0, DATA, steps=50, method="euler")
    diff = simulate_marginal_diffusion(x0, DATA, steps=50, epsilon=0.0)
    torch.testing.assert_close(diff, flow)


def test_jump_process_fraction_jumped_is_t_and_points_jump_once():
    n, steps = 4000, 40
    x0 = torch.randn(n, 2, generator=torch.Generator().manual_seed(9))
    traj = simulate_mixture_jumps(x0, DATA, steps=steps, generator=torch.Generator().manual_seed(10))
    moved = (traj != x0[:, None, :]).any(dim=-1)  # (n, steps + 1)
    for k in (10, 20, 30):
        jumped = int(moved[:, k].sum())
        assert binomtest(jumped, n, k / steps).pvalue > 1e-3
    # Once a point has moved it stays where it landed (a single jump).
    landed = traj[:, -1]
    assert torch.all(~moved | (traj == landed[:, None, :]).all(dim=-1))
    assert bool(moved[:, -1].all())


def test_jump_survival_probabilities_telescope():
    # prod_j (1 - h / (1 - t_j)) over the grid up to t_k equals 1 - t_k.
    steps = 16
    for k in range(steps):
        surv = math.prod(1 - (1 / steps) / (1 - j / steps) for j in range(k))
        assert surv == pytest.approx(1 - k / steps, abs=1e-12)


@pytest.mark.parametrize("fn", [simulate_marginal_flow, simulate_marginal_diffusion, simulate_mixture_jumps])
def test_bad_input(fn):
    x0 = torch.randn(10, 2)
    with pytest.raises(ValueError, match="x0"):
        fn(torch.randn(10), DATA)
    with pytest.raises(ValueError, match="x0"):
        fn(torch.full((10, 2), float("nan")), DATA)
    with pytest.raises(ValueError, match="data"):
        fn(x0, torch.randn(3, 5))
    with pytest.raises(TypeError, match="steps"):
        fn(x0, DATA, steps=2.5)
    with pytest.raises(ValueError, match="steps"):
        fn(x0, DATA, steps=0)


def test_bad_epsilon_and_method():
    x0 = torch.randn(10, 2)
    with pytest.raises(ValueError, match="epsilon"):
        simulate_marginal_diffusion(x0, DATA, epsilon=-1.0)
    with pytest.raises(ValueError, match="method"):
        simulate_marginal_flow(x0, DATA, method="leapfrog")

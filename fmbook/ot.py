r"""Optimal transport for flow matching: plans, W2, mini-batch couplings, kinetic energy, reflow.

Static optimal transport between two point clouds (the exact and the entropic plans) is
computed by POT (``import ot``) in float64 on the CPU; the functions accept float tensors on
any device and return indices or tensors on the device of their inputs.

* :func:`exact_plan`, :func:`sinkhorn_plan`, :func:`plan_cost`, :func:`w2`: the Kantorovich
  problem :math:`\min_\pi \sum_{ij} \pi_{ij} \lVert x_{0,i} - x_{1,j}\rVert^2` and
  :math:`W_2 = (\min_\pi \dots)^{1/2}`; :func:`gaussian_w2` is the closed form between two Gaussians;
  :func:`gaussian_icfm_velocity`, :func:`gaussian_icfm_energy`: the I-CFM flow between two Gaussians on
  the line, whose map is optimal and whose path is not.
* :func:`ot_pair_indices`, :func:`ot_pair`: the mini-batch OT coupling of OT-CFM (Tong et al.);
  :func:`monotonicity_gaps`, the pairwise test that an optimal pairing passes.
* :func:`kinetic_energy`, :func:`straightness`, :func:`normalized_path_energy`, :func:`energy_gap`:
  how much a flow moves, measured on its trajectories.
* :func:`coupled_cfm_loss`, :func:`train_with_coupling`: conditional flow matching with an
  independent, OT, entropic-OT or given ("paired") coupling of source and data.
* :func:`reflow_coupling`: the coupling :math:`(X_0, \psi_1(X_0))` of a trained flow, the
  training pairs of rectified flow's *reflow* (Liu et al.).
* :class:`~fmbook.paths.CurvedPath`: a conditional path that bows away from the straight line, and
  :func:`curl_2d`, the curl of a planar velocity field by automatic differentiation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import ot
import torch
from torch import Tensor, nn

from ._checks import (
    as_time,
    check_batch,
    check_cfm_path_and_divergence,
    check_point_clouds,
    check_points,
    check_positive_float,
    check_positive_int,
    check_same_shape,
    check_tensor,
)
from .losses import Divergence, _cfm_loss_of_checked_batch, squared_euclidean
from .paths import AffinePath, CondOTScheduler, CurvedPath
from .solvers import solve_ode
from .train import LossFunction, TrainResult, _check_device, fit

#: The couplings understood by :func:`coupled_cfm_loss`.
COUPLINGS = ("independent", "exact", "sinkhorn", "paired")


# --------------------------------------------------------------------------------------
# Static optimal transport between point clouds
# --------------------------------------------------------------------------------------


def _paired_batches(x0: object, x1: object) -> tuple[Tensor, Tensor]:
    """Two batches ``(B, ...)`` of one shape and device, to be paired row by row."""
    x0, x1 = check_batch(x0, "x0"), check_batch(x1, "x1")
    if x0.shape[0] != x1.shape[0]:
        raise ValueError(
            f"x0 and x1 must hold the same number of points to be paired, got {x0.shape[0]} and {x1.shape[0]}"
        )
    check_same_shape(x0, x1, "x0", "x1")
    if x0.device != x1.device:
        raise ValueError(f"x0 and x1 must be on the same device, got {x0.device} and {x1.device}")
    return x0, x1


def _weights(w: object, n: int, name: str) -> np.ndarray:
    """Uniform weights ``1/n`` when ``w`` is None; otherwise check a probability vector ``(n,)``."""
    if w is None:
        return np.full(n, 1.0 / n)
    w = check_tensor(w, name)
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) (one weight per point), got {tuple(w.shape)}")
    w = w.detach().to("cpu", torch.float64)
    if bool((w < 0).any()) or abs(float(w.sum()) - 1.0) > 1e-6:
        raise ValueError(f"{name} must be non-negative and sum to 1, got sum {float(w.sum()):.6g}")
    return (w / w.sum()).numpy()


def squared_distances(x0: Tensor, x1: Tensor) -> Tensor:
    r"""The cost matrix :math:`C_{ij} = \lVert x_{0,i} - x_{1,j}\rVert^2`, float64 on the CPU, ``(n, m)``."""
    a, b = check_point_clouds(x0, x1, ("x0", "x1"), to_float64_cpu=True)
    # One coordinate at a time into one (n, m) buffer: the same exact differences as a
    # (n, m, d) array summed over d, without that array (10 times faster for 256 x 256 points).
    cost = torch.zeros(a.shape[0], b.shape[0], dtype=torch.float64)
    for k in range(a.shape[1]):
        cost.add_((a[:, k : k + 1] - b[None, :, k]).square_())
    return cost


def exact_plan(x0: Tensor, x1: Tensor, weights0: Tensor | None = None, weights1: Tensor | None = None) -> Tensor:
    r"""The optimal plan of the Kantorovich problem with the squared Euclidean cost.

    .. math:: \pi^\star = \arg\min_{\pi \ge 0,\; \pi 1 = a,\; \pi^\top 1 = b}
              \sum_{ij} \pi_{ij} \lVert x_{0,i} - x_{1,j}\rVert^2,

    solved exactly by POT's network simplex (``ot.emd``).

    Args:
        x0: source points ``(n, d)``.
        x1: target points ``(m, d)``.
        weights0, weights1: the masses ``a`` ``(n,)`` and ``b`` ``(m,)`` (each summing to 1);
            uniform when None.

    Returns:
        The plan, a float64 CPU tensor ``(n, m)`` whose rows sum to ``a`` and columns to ``b``.
    """
    a_pts, b_pts = check_point_clouds(x0, x1, ("x0", "x1"), to_float64_cpu=True)
    a = _weights(weights0, a_pts.shape[0], "weights0")
    b = _weights(weights1, b_pts.shape[0], "weights1")
    cost = squared_distances(a_pts, b_pts).numpy()
    return torch.from_numpy(ot.emd(a, b, cost, numItermax=10_000_000))


def sinkhorn_plan(
    x0: Tensor,
    x1: Tensor,
    reg: float,
    weights0: Tensor | None = None,
    weights1: Tensor | None = None,
    max_iter: int = 10_000,
) -> Tensor:
    r"""The entropic optimal plan (Sinkhorn), computed in the log domain by POT.

    .. math:: \pi^\varepsilon = \arg\min_{\pi \in \Pi(a, b)} \sum_{ij} \pi_{ij} C_{ij}
              + \varepsilon \sum_{ij} \pi_{ij} (\log \pi_{ij} - 1),
              \qquad C_{ij} = \lVert x_{0,i} - x_{1,j}\rVert^2 .

    ``reg`` is :math:`\varepsilon`, in the units of the cost (squared distance). As
    :math:`\varepsilon \to 0` the plan tends to an exact optimal plan; as it grows, to the
    independent plan :math:`a b^\top`. Returns a float64 CPU tensor ``(n, m)``.
    """
    reg = check_positive_float(reg, "reg")
    check_positive_int(max_iter, "max_iter")
    a_pts, b_pts = check_point_clouds(x0, x1, ("x0", "x1"), to_float64_cpu=True)
    a = _weights(weights0, a_pts.shape[0], "weights0")
    b = _weights(weights1, b_pts.shape[0], "weights1")
    cost = squared_distances(a_pts, b_pts).numpy()
    plan = ot.sinkhorn(a, b, cost, reg, method="sinkhorn_log", numItermax=max_iter, stopThr=1e-10, warn=False)
    return torch.from_numpy(np.asarray(plan))


def plan_cost(plan: Tensor, x0: Tensor, x1: Tensor) -> float:
    r"""The transport cost :math:`\sum_{ij} \pi_{ij} \lVert x_{0,i} - x_{1,j}\rVert^2` of a plan ``(n, m)``.

    ``plan`` must be a coupling: non-negative, with total mass 1 (to :math:`10^{-6}`), as the plans of
    :func:`exact_plan` and :func:`sinkhorn_plan` are; a ValueError otherwise (a negative or unnormalised
    array would give a cost that is no transport cost at all).
    """
    plan = check_tensor(plan, "plan")
    a, b = check_point_clouds(x0, x1, ("x0", "x1"), to_float64_cpu=True)
    if plan.shape != (a.shape[0], b.shape[0]):
        raise ValueError(f"plan must have shape ({a.shape[0]}, {b.shape[0]}), got {tuple(plan.shape)}")
    plan = plan.detach().to("cpu", torch.float64)
    if bool((plan < 0).any()):
        raise ValueError(f"plan must be non-negative (a coupling), got a smallest entry {float(plan.min()):.6g}")
    if abs(float(plan.sum()) - 1.0) > 1e-6:
        raise ValueError(f"plan must have total mass 1 (a coupling), got {float(plan.sum()):.6g}")
    return float((plan * squared_distances(a, b)).sum())


def w2(x0: Tensor, x1: Tensor, weights0: Tensor | None = None, weights1: Tensor | None = None) -> float:
    r"""The 2-Wasserstein distance between two weighted point clouds (uniform weights when None),

    :math:`W_2 = \big(\min_\pi \sum_{ij}\pi_{ij}\lVert x_{0,i} - x_{1,j}\rVert^2\big)^{1/2}`, by :func:`exact_plan`.

    With uniform weights it agrees with :func:`fmbook.metrics.exact_w2`.
    """
    return math.sqrt(max(plan_cost(exact_plan(x0, x1, weights0, weights1), x0, x1), 0.0))


def _sqrtm_psd(m: Tensor) -> Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix (negative eigenvalues -> 0)."""
    values, vectors = torch.linalg.eigh(0.5 * (m + m.T))
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def _gaussian_w2_squared(m0: Tensor, c0: Tensor, m1: Tensor, c1: Tensor) -> Tensor:
    r"""The squared Gaussian W2, :math:`\lVert m_0 - m_1\rVert^2
    + \operatorname{tr}(\Sigma_0 + \Sigma_1 - 2(\Sigma_0^{1/2}\Sigma_1\Sigma_0^{1/2})^{1/2})`,
    of checked float64 means ``(d,)`` and covariances ``(d, d)``: the one computation behind
    :func:`gaussian_w2` and :func:`fmbook.metrics.frechet_distance`."""
    root0 = _sqrtm_psd(c0)
    cross = _sqrtm_psd(root0 @ c1 @ root0)
    return ((m0 - m1) ** 2).sum() + torch.trace(c0) + torch.trace(c1) - 2 * torch.trace(cross)


def gaussian_w2(mean0: Tensor, cov0: Tensor, mean1: Tensor, cov1: Tensor) -> float:
    r"""The closed form of :math:`W_2` between :math:`\mathcal N(m_0, \Sigma_0)` and :math:`\mathcal N(m_1, \Sigma_1)`:

    .. math:: W_2^2 = \lVert m_0 - m_1\rVert^2 + \operatorname{tr}\Big(\Sigma_0 + \Sigma_1
              - 2\big(\Sigma_0^{1/2}\Sigma_1\Sigma_0^{1/2}\big)^{1/2}\Big).

    In 1-D it reads :math:`(m_0 - m_1)^2 + (s_0 - s_1)^2`. Means ``(d,)``, covariances ``(d, d)``
    (symmetric positive semi-definite). Returns :math:`W_2` (not squared).
    """
    m0, m1 = check_tensor(mean0, "mean0"), check_tensor(mean1, "mean1")
    if m0.ndim != 1 or m1.shape != m0.shape:
        raise ValueError(f"mean0 and mean1 must both have shape (d,), got {tuple(m0.shape)} and {tuple(m1.shape)}")
    d = m0.shape[0]
    covs = []
    for name, c in (("cov0", cov0), ("cov1", cov1)):
        c = check_tensor(c, name).detach().to("cpu", torch.float64)
        if c.shape != (d, d):
            raise ValueError(f"{name} must have shape ({d}, {d}), got {tuple(c.shape)}")
        if not torch.allclose(c, c.T, atol=1e-10) or float(torch.linalg.eigvalsh(c).min()) < -1e-10:
            raise ValueError(f"{name} must be symmetric positive semi-definite")
        covs.append(c)
    c0, c1 = covs
    m0, m1 = m0.detach().to("cpu", torch.float64), m1.detach().to("cpu", torch.float64)
    return math.sqrt(max(float(_gaussian_w2_squared(m0, c0, m1, c1)), 0.0))


def _gaussian_1d_parameters(mean0: float, std0: float, mean1: float, std1: float) -> tuple[float, ...]:
    for name, value in (("mean0", mean0), ("mean1", mean1)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(mean0), check_positive_float(std0, "std0"), float(mean1), check_positive_float(std1, "std1")


def gaussian_icfm_velocity(
    x: Tensor, t: float | Tensor, mean0: float, std0: float, mean1: float, std1: float
) -> Tensor:
    r"""The exact marginal velocity of I-CFM between two Gaussians on the line.

    With :math:`X_0 \sim \mathcal N(m_0, s_0^2)` and :math:`X_1 \sim \mathcal N(m_1, s_1^2)`
    independent and the linear path :math:`X_t = (1 - t)X_0 + tX_1 \sim \mathcal N(m_t, s_t^2)`,
    :math:`m_t = (1 - t)m_0 + t m_1`, :math:`s_t^2 = (1 - t)^2 s_0^2 + t^2 s_1^2`, the pair
    :math:`(X_1 - X_0, X_t)` is jointly Gaussian, so :math:`E[X_1 - X_0 \mid X_t = x]` is affine in
    :math:`x`:

    .. math:: u_t(x) = (m_1 - m_0) + \frac{\dot s_t}{s_t}\,(x - m_t),
              \qquad \frac{\dot s_t}{s_t} = \frac{t s_1^2 - (1 - t) s_0^2}{s_t^2}.

    Its flow is :math:`\psi_t(x) = m_t + s_t (x - m_0)/s_0`; :math:`\psi_1` is increasing, the
    optimal transport map of the line. Shapes: ``x`` ``(B, 1)``, ``t`` a float or ``(B,)``;
    returns ``(B, 1)``.
    """
    m0, s0, m1, s1 = _gaussian_1d_parameters(mean0, std0, mean1, std1)
    x = check_points(x, "x", dim=1)
    t = as_time(t, x.shape[0], x)[:, None]
    # The ratio with both variances divided by the larger one: no overflow for standard deviations
    # up to the float maximum (s0 = 2e19 squares past float32's range).
    scale = max(s0, s1)
    r0, r1 = s0 / scale, s1 / scale
    var_t = (1 - t) ** 2 * r0**2 + t**2 * r1**2
    return (m1 - m0) + (t * r1**2 - (1 - t) * r0**2) / var_t * (x - ((1 - t) * m0 + t * m1))


def gaussian_icfm_energy(mean0: float, std0: float, mean1: float, std1: float) -> float:
    r"""The kinetic energy of the flow of :func:`gaussian_icfm_velocity`, in closed form:

    .. math:: \int_0^1 \E\, u_t(X_t)^2 \,dt = (m_1 - m_0)^2 + \int_0^1 \dot s_t^2\,dt
              = (m_1 - m_0)^2 + s_0^2 + s_1^2 - \tfrac{\pi}{2} s_0 s_1 .

    (:math:`\dot s_t^2 = A - s_0^2 s_1^2 / s_t^2` with :math:`A = s_0^2 + s_1^2`, and
    :math:`\int_0^1 dt / s_t^2 = \pi / (2 s_0 s_1)`.) It exceeds
    :math:`W_2^2 = (m_1 - m_0)^2 + (s_1 - s_0)^2` by :math:`(2 - \pi/2) s_0 s_1`, although the
    flow's map is the optimal one.
    """
    m0, s0, m1, s1 = _gaussian_1d_parameters(mean0, std0, mean1, std1)
    return (m1 - m0) ** 2 + s0**2 + s1**2 - 0.5 * math.pi * s0 * s1


# --------------------------------------------------------------------------------------
# The mini-batch OT coupling
# --------------------------------------------------------------------------------------


def ot_pair_indices(
    x0: Tensor,
    x1: Tensor,
    method: str = "exact",
    reg: float = 0.05,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Indices ``(i, j)`` that pair the rows of two batches by optimal transport.

    ``x0[i]`` and ``x1[j]`` are the pairs. With ``method="exact"``: two uniform batches of the
    same size always have an optimal plan that is a permutation (a vertex of the Birkhoff
    polytope; not every optimal plan is one when several tie), and the network simplex returns a
    vertex: ``i = arange(B)`` and ``j`` is that permutation, so every point is used once. With
    ``method="sinkhorn"`` the entropic plan (``reg`` relative to the mean cost of the batch)
    is sampled ``B`` times with replacement, as in Tong et al. (2023).

    Args:
        x0, x1: batches ``(B, ...)`` of the same shape, on the same device (CPU, CUDA or
            MPS; float32 or float64). Images are flattened for the cost.
        method: ``"exact"`` or ``"sinkhorn"``.
        reg: entropic regularisation for ``"sinkhorn"``, a fraction of the mean squared distance.
        generator: CPU random generator for sampling the entropic plan.

    Returns:
        Two int64 tensors ``(B,)`` on the device of ``x0``.
    """
    if method not in ("exact", "sinkhorn"):
        raise ValueError(f"method must be 'exact' or 'sinkhorn', got {method!r}")
    x0, x1 = _paired_batches(x0, x1)
    batch = x0.shape[0]
    a = x0.detach().reshape(batch, -1).to("cpu", torch.float64)
    b = x1.detach().reshape(batch, -1).to("cpu", torch.float64)
    if method == "exact":
        plan = exact_plan(a, b)
        j = plan.argmax(dim=1)
        if not bool((torch.bincount(j, minlength=batch) == 1).all()):
            raise RuntimeError("the exact OT plan of two uniform batches was not a permutation")
        i = torch.arange(batch)
    else:
        reg = check_positive_float(reg, "reg")
        cost = squared_distances(a, b)
        scale = float(cost.mean())
        if scale > 0:
            plan = sinkhorn_plan(a, b, reg * scale)
        else:  # every pair costs 0 (identical points): every coupling is optimal, the entropic one a b^T
            plan = torch.full((batch, batch), 1.0 / batch**2, dtype=torch.float64)
        flat = plan.reshape(-1).clamp_min(0)
        k = torch.multinomial(flat / flat.sum(), batch, replacement=True, generator=generator)
        i, j = k // batch, k % batch
    return i.to(x0.device), j.to(x0.device)


def monotonicity_gaps(x0: Tensor, x1: Tensor) -> Tensor:
    r"""The pairwise monotonicity gaps of a coupling given as paired rows: a float64 CPU matrix ``(B, B)``,

    .. math:: G_{ij} = \langle x_{0,i} - x_{0,j},\ x_{1,i} - x_{1,j}\rangle
              = \tfrac12\big(C_{ij} + C_{ji} - C_{ii} - C_{jj}\big),
              \qquad C_{ij} = \lVert x_{0,i} - x_{1,j}\rVert^2 .

    :math:`G_{ij}` is half what swapping the partners of rows ``i`` and ``j`` would add to the
    cost, so every pairing of minimal cost (an optimal permutation) has :math:`G \ge 0`: the
    two-point case of cyclical monotonicity, necessary for optimality (not sufficient). If
    :math:`G_{ij} > 0` the straight paths :math:`(1 - t)x_0 + t x_1` of rows ``i`` and ``j``
    never meet at a time :math:`t \in [0, 1)`, since meeting at :math:`t` forces
    :math:`G_{ij} = -\tfrac{1 - t}{t}\lVert x_{0,i} - x_{0,j}\rVert^2 \le 0`.

    Args:
        x0, x1: paired batches ``(B, ...)`` of the same shape (row ``k`` of ``x0`` is coupled
            with row ``k`` of ``x1``); images are flattened.
    """
    x0, x1 = _paired_batches(x0, x1)
    a = x0.detach().reshape(x0.shape[0], -1).to("cpu", torch.float64)
    b = x1.detach().reshape(x1.shape[0], -1).to("cpu", torch.float64)
    # <a_i - a_j, b_i - b_j> = <a_i, b_i> + <a_j, b_j> - <a_i, b_j> - <a_j, b_i>
    cross = a @ b.T
    diag = cross.diagonal()
    return (diag[:, None] + diag[None, :]) - (cross + cross.T)  # symmetric to the last bit


def ot_pair(
    x0: Tensor,
    x1: Tensor,
    method: str = "exact",
    reg: float = 0.05,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """The batches re-paired by :func:`ot_pair_indices`: ``(x0[i], x1[j])``, same shapes, dtype and device."""
    i, j = ot_pair_indices(x0, x1, method=method, reg=reg, generator=generator)
    return x0[i], x1[j]


# --------------------------------------------------------------------------------------
# Kinetic energy and straightness of trajectories
# --------------------------------------------------------------------------------------


def _trajectory(trajectory: object, times: object) -> tuple[Tensor, Tensor]:
    """Check a trajectory ``(B, T + 1, ...)`` and its increasing time grid ``(T + 1,)``."""
    x = check_tensor(trajectory, "trajectory")
    if x.ndim < 3 or x.shape[0] == 0 or x.shape[1] < 2:
        raise ValueError(
            f"trajectory must have shape (batch, times, ...) with batch >= 1 and at least 2 times, "
            f"got {tuple(x.shape)}"
        )
    t = check_tensor(times, "times")
    if t.ndim != 1 or t.shape[0] != x.shape[1]:
        raise ValueError(f"times must have shape ({x.shape[1]},) to match the trajectory, got {tuple(t.shape)}")
    t = t.detach().to("cpu", torch.float64)
    if not bool((t[1:] > t[:-1]).all()):
        raise ValueError("times must be strictly increasing")
    x = x.detach().to("cpu", torch.float64).reshape(x.shape[0], x.shape[1], -1)
    return x, t


def kinetic_energy(trajectory: Tensor, times: Tensor) -> float:
    r"""The kinetic energy :math:`\int_{t_0}^{t_T} \E\lVert \dot X_t\rVert^2 dt` of the piecewise-linear path
    through the states of a trajectory:

    .. math:: \frac1B \sum_b \sum_k \frac{\lVert x_{b,k+1} - x_{b,k}\rVert^2}{t_{k+1} - t_k}.

    For a straight constant-speed path it equals :math:`\lVert x_1 - x_0\rVert^2` on any grid; for
    a curved path it is a lower bound of the path's energy that grows to it as the grid is refined.

    Args:
        trajectory: states ``(B, T + 1, d)`` (as returned by :func:`fmbook.solvers.solve_ode`).
        times: the strictly increasing time grid ``(T + 1,)``.
    """
    x, t = _trajectory(trajectory, times)
    steps = (x[:, 1:] - x[:, :-1]).pow(2).sum(-1)  # (B, T)
    return float((steps / (t[1:] - t[:-1])).sum(1).mean())


def straightness(trajectory: Tensor, times: Tensor) -> float:
    r"""The straightness of Liu et al. (2023), :math:`S = \int_0^1 \E\lVert (X_1 - X_0) - \dot X_t\rVert^2 dt`,
    for the piecewise-linear path through the states of a trajectory on a grid from 0 to 1.

    :math:`S \ge 0`, and :math:`S = 0` exactly when every path is a straight line run at constant
    speed. Since :math:`\int_0^1 \dot X_t\,dt = X_1 - X_0`, it equals
    :math:`\text{kinetic energy} - \E\lVert X_1 - X_0\rVert^2`. Shapes as in :func:`kinetic_energy`.
    """
    x, t = _trajectory(trajectory, times)
    if abs(float(t[0])) > 1e-12 or abs(float(t[-1]) - 1.0) > 1e-12:
        raise ValueError(f"times must run from 0 to 1, got [{float(t[0]):.4g}, {float(t[-1]):.4g}]")
    h = (t[1:] - t[:-1])[None, :, None]
    slope = (x[:, 1:] - x[:, :-1]) / h  # (B, T, d)
    chord = (x[:, -1] - x[:, 0])[:, None, :]
    return float(((chord - slope).pow(2).sum(-1) * h[..., 0]).sum(1).mean())


def transport_cost(x0: Tensor, x1: Tensor) -> float:
    r"""The cost :math:`\E\lVert X_1 - X_0\rVert^2` of a coupling given as paired rows ``(B, ...)``.

    It is the kinetic energy of the straight conditional paths of the pairs, hence the Jensen
    bound on the kinetic energy of the marginal flow they define.
    """
    x0, x1 = _paired_batches(x0, x1)
    diff = (x1.detach() - x0.detach()).to(torch.float64).reshape(x0.shape[0], -1)
    return float(diff.pow(2).sum(1).mean())


def _check_energies(energy: float, w2_squared: float) -> None:
    for name, value in (("energy", energy), ("w2_squared", w2_squared)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    check_positive_float(energy, "energy", allow_zero=True)
    check_positive_float(w2_squared, "w2_squared")


def normalized_path_energy(energy: float, w2_squared: float) -> float:
    r"""The normalized path energy of Tong et al. (2023): :math:`|E - W_2^2| / W_2^2`.

    ``energy`` is the kinetic energy of a flow from :math:`P` to :math:`Q` and ``w2_squared``
    is :math:`W_2^2(P, Q)`; by the Benamou-Brenier formula 0 is reached only by the OT flow.
    The absolute value hides energies *below* :math:`W_2^2`, which no exact flow has (they
    reveal an estimate of :math:`W_2^2` that is too large, or a flow that misses :math:`Q`);
    :func:`energy_gap` keeps the sign.
    """
    _check_energies(energy, w2_squared)
    return abs(energy - w2_squared) / w2_squared


def energy_gap(energy: float, w2_squared: float) -> float:
    r"""The signed relative gap :math:`(E - W_2^2) / W_2^2` between a kinetic energy and a squared :math:`W_2`.

    For the energy :math:`E` of a flow :math:`\psi` measured by :func:`kinetic_energy` on the
    trajectories of points ``x0`` and ``w2_squared`` :math:`= W_2^2(x_0, \psi_1(x_0))`, the
    squared :math:`W_2` between ``x0`` and the flow's own end points (:func:`w2`), the gap is
    never negative: :math:`E \ge \frac1B\sum_b\lVert \psi_1(x_{0,b}) - x_{0,b}\rVert^2 \ge
    W_2^2(x_0, \psi_1(x_0))`, by the straight-path lemma for each piecewise-linear path and
    because the flow's pairing is one of the plans. It is 0 only for straight paths at constant
    speed whose pairing is optimal. Against an estimate of :math:`W_2^2(P, Q)` from independent
    samples it can be negative.
    """
    _check_energies(energy, w2_squared)
    return (energy - w2_squared) / w2_squared


def curl_2d(velocity: Callable[[Tensor, Tensor], Tensor], x: Tensor, t: float | Tensor) -> Tensor:
    r"""The curl :math:`\partial_1 v_2 - \partial_2 v_1` of a planar velocity field at points ``x`` ``(B, 2)``.

    Computed by automatic differentiation; ``velocity(x, t)`` must be differentiable in ``x``.
    A gradient field :math:`v = \nabla\phi` has zero curl. Returns ``(B,)``.
    """
    if not callable(velocity):
        raise TypeError(f"velocity must be callable as velocity(x, t), got {type(velocity).__name__}")
    x = check_points(x, "x", dim=2)
    t = as_time(t, x.shape[0], x)
    with torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        v = velocity(xg, t)
        if not isinstance(v, Tensor) or v.shape != x.shape:
            raise ValueError(f"velocity(x, t) must return a tensor of shape {tuple(x.shape)}")
        grad_v1 = torch.autograd.grad(v[:, 0].sum(), xg, retain_graph=True)[0]
        grad_v2 = torch.autograd.grad(v[:, 1].sum(), xg)[0]
    return (grad_v2[:, 0] - grad_v1[:, 1]).detach()


# --------------------------------------------------------------------------------------
# Training with a coupling, and reflow
# --------------------------------------------------------------------------------------


def coupled_cfm_loss(
    data: Tensor,
    batch_size: int,
    coupling: str = "exact",
    source: Tensor | None = None,
    path: AffinePath | CurvedPath | None = None,
    ot_batch_size: int | None = None,
    reg: float = 0.05,
    divergence: Divergence = squared_euclidean,
    device: str | torch.device | None = None,
) -> LossFunction:
    r"""A loss ``loss_fn(model, step)`` for :func:`fmbook.train.fit`: the CFM loss under a coupling.

    Each call draws ``batch_size`` rows ``x1`` of ``data`` and ``x0`` of ``source`` (a standard
    Gaussian when None), pairs them by ``coupling``, and returns :func:`fmbook.losses.cfm_loss`:

    * ``"independent"``: as drawn, :math:`\pi = P \otimes Q` (I-CFM);
    * ``"exact"``: re-paired by exact OT inside each mini-batch (OT-CFM), :func:`ot_pair`;
    * ``"sinkhorn"``: pairs sampled from the entropic plan with regularisation ``reg``;
    * ``"paired"``: rows ``k`` of ``source`` and ``data`` are drawn together (a given coupling,
      e.g. the one of :func:`reflow_coupling`); ``source`` must then have as many rows as ``data``.

    Args:
        data: data set ``(N, d)``; rows are drawn with replacement.
        batch_size: points per step.
        coupling: one of :data:`COUPLINGS`.
        source: source set ``(M, d)``; fresh Gaussian noise when None.
        path: conditional path (CondOT when None).
        ot_batch_size: solve OT on chunks of this size (``batch_size`` must be a multiple of
            it); the cost of exact OT grows like the cube of the batch, so chunks of a few
            hundred points keep it cheap. The whole batch when None.
        reg: Sinkhorn regularisation, relative to the mean cost of the batch.
        divergence: the CFM divergence.
        device: where the batches live (that of the model); ``default_device()`` when None.
    """
    if coupling not in COUPLINGS:
        raise ValueError(f"coupling must be one of {COUPLINGS}, got {coupling!r}")
    data = check_points(data, "data")
    check_positive_int(batch_size, "batch_size")
    if source is not None:
        source = check_points(source, "source", dim=data.shape[1])
    if coupling == "paired":
        if source is None or source.shape[0] != data.shape[0]:
            got = "None" if source is None else f"{source.shape[0]} rows"
            raise ValueError(f"coupling='paired' needs a source with as many rows as data ({data.shape[0]}), got {got}")
    chunk = batch_size if ot_batch_size is None else check_positive_int(ot_batch_size, "ot_batch_size")
    if batch_size % chunk:
        raise ValueError(f"batch_size ({batch_size}) must be a multiple of ot_batch_size ({chunk})")
    check_positive_float(reg, "reg")
    if path is not None and not callable(getattr(path, "sample", None)):
        raise TypeError(f"path must be an AffinePath or a CurvedPath (with sample(x0, x1, t)), got {path!r}")
    device = _check_device(device)
    data = data.to(device)
    source = source.to(device) if source is not None else None
    check_cfm_path_and_divergence(path, divergence)
    path = path or AffinePath(CondOTScheduler())

    def loss_fn(model: nn.Module, step: int) -> Tensor:
        k1 = torch.randint(0, data.shape[0], (batch_size,), device=device)
        x1 = data[k1]
        if coupling == "paired":
            x0 = source[k1]
        elif source is None:
            x0 = torch.randn_like(x1)
        else:
            x0 = source[torch.randint(0, source.shape[0], (batch_size,), device=device)]
        if coupling in ("exact", "sinkhorn"):
            pairs = [
                ot_pair(a, b, method=coupling, reg=reg)
                for a, b in zip(x0.split(chunk), x1.split(chunk))
            ]
            x0 = torch.cat([p[0] for p in pairs])
            x1 = torch.cat([p[1] for p in pairs])
        t = torch.rand(x0.shape[0], device=x0.device, dtype=x0.dtype)
        return _cfm_loss_of_checked_batch(model, x0, x1, t, path, divergence)

    return loss_fn


def train_with_coupling(
    model: nn.Module,
    data: Tensor,
    coupling: str = "exact",
    steps: int = 1000,
    batch_size: int = 1024,
    source: Tensor | None = None,
    path: AffinePath | CurvedPath | None = None,
    ot_batch_size: int | None = None,
    reg: float = 0.05,
    **fit_kwargs: Any,
) -> TrainResult:
    """Train ``model`` with :func:`fmbook.train.fit` on :func:`coupled_cfm_loss`.

    ``fit_kwargs`` go to :func:`fmbook.train.fit` (``lr``, ``device``, ``seed``, ``ema_decay``, ...).
    """
    device = _check_device(fit_kwargs.pop("device", None))
    loss_fn = coupled_cfm_loss(
        data, batch_size, coupling, source=source, path=path, ot_batch_size=ot_batch_size, reg=reg, device=device
    )
    return fit(model, loss_fn, steps, device=device, **fit_kwargs)


class Coupling(NamedTuple):
    """Paired samples: ``x0[k]`` is coupled with ``x1[k]``; both ``(B, d)``."""

    x0: Tensor
    x1: Tensor


@torch.no_grad()
def reflow_coupling(
    model: nn.Module | Callable[[Tensor, Tensor], Tensor],
    x0: Tensor,
    steps: int = 32,
    method: str = "midpoint",
    chunk: int = 8192,
) -> Coupling:
    r"""The coupling :math:`(X_0, \psi_1(X_0))` of a trained flow: rectified flow's reflow pairs.

    Each source point is pushed through the flow of ``model`` by :func:`fmbook.solvers.solve_ode`
    (``steps`` steps of ``method``) on the model's device. Training a new flow on these pairs
    (``coupling="paired"`` in :func:`coupled_cfm_loss`) gives the next rectified flow, whose
    paths are straighter (Liu et al., 2023).

    Args:
        model: the velocity field ``model(x, t)``.
        x0: source points ``(B, d)``, on any device.
        steps: solver steps.
        method: a fixed-step method of :func:`fmbook.solvers.solve_ode`.
        chunk: points per solve, to bound memory.

    Returns:
        :class:`Coupling` of ``x0`` and the end points, both on the device of ``x0``.
    """
    if not callable(model):
        raise TypeError(f"model must be callable as model(x, t), got {type(model).__name__}")
    x0 = check_points(x0, "x0")
    check_positive_int(steps, "steps")
    check_positive_int(chunk, "chunk")
    first = next(model.parameters(), None) if isinstance(model, nn.Module) else None
    device = first.device if first is not None else x0.device
    ends = [solve_ode(model, part.to(device), steps=steps, method=method).x.to(x0.device) for part in x0.split(chunk)]
    return Coupling(x0, torch.cat(ends))

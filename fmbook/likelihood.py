r"""Exact likelihoods of a flow: the instantaneous change of variables.

If :math:`X_t` follows :math:`\frac{d}{dt}X_t = u_t(X_t)` with :math:`X_0 \sim p_0`, the
log-density along a trajectory changes by minus the divergence of the velocity,

.. math:: \frac{d}{dt} \log p_t(X_t) = -\nabla\!\cdot u_t(X_t),
          \qquad
          \log p_1(x_1) = \log p_0(x_0) - \int_0^1 \nabla\!\cdot u_t(x_t)\,dt,

where :math:`x_t` is the trajectory through :math:`x_1` at time 1. :func:`log_prob` solves
the augmented ODE for :math:`(x_t, \ell_t)` with :math:`\dot\ell_t = \nabla\cdot u_t(x_t)`
backwards from :math:`(x_1, 0)` at t = 1 to t = 0, so that
:math:`\log p_1(x_1) = \log p_0(x_0) + \ell_0`.

The divergence (the trace of the Jacobian) is computed exactly with d backward passes
(:func:`exact_divergence`), or estimated with Hutchinson's unbiased estimator
:math:`\nabla\cdot u = \mathbb E_\varepsilon[\varepsilon^\top J \varepsilon]` for probes with
:math:`\mathbb E[\varepsilon\varepsilon^\top] = I` (:func:`hutchinson_divergence`).

Also here: a maximum-likelihood training objective for continuous normalizing flows
(:func:`cnf_nll_loss`, runnable by :func:`fmbook.train.fit`), the continuity-equation
residual (:func:`continuity_residual`), both sides of its weak form
(:func:`weak_continuity_sides`), velocities that move no mass
(:func:`divergence_free_perturbation`) and an affine flow between Gaussians whose density is known
in closed form at every time (:class:`AffineGaussianFlow`), used to test all of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ._checks import (
    as_generator,
    as_time,
    broadcast_time,
    check_batch,
    check_callable,
    check_flag,
    check_model_output,
    check_points,
    check_positive_float,
    check_positive_int,
)
from .solvers import ADAPTIVE_METHODS, FIXED_STEP_METHODS, _check_grid, _integrate_fixed, solve_adaptive, time_grid

Velocity = Callable[[Tensor, Tensor], Tensor]
LogDensity = Callable[[Tensor], Tensor]

#: The divergence estimators accepted by :func:`log_prob`.
DIVERGENCES = ("exact", "hutchinson")
#: The probe distributions of the Hutchinson estimator.
PROBES = ("gaussian", "rademacher")


def gaussian_log_prob(x: Tensor) -> Tensor:
    r"""The standard Gaussian log-density :math:`-\frac d2\log 2\pi - \frac12\|x\|^2`, ``(B, ...) -> (B,)``."""
    x = check_batch(x, "x")
    flat = x.reshape(x.shape[0], -1)
    return -0.5 * flat.shape[1] * math.log(2 * math.pi) - 0.5 * (flat**2).sum(dim=1)


def bits_per_dim(log_p: Tensor, dim: int) -> Tensor:
    r"""Bits per dimension :math:`-\log p(x) / (d \ln 2)` of log-densities ``(B,)`` in nats.

    The unit in which image likelihoods are reported: the number of bits an ideal code built
    on the model would spend per coordinate. Returns ``(B,)``.
    """
    if not isinstance(log_p, Tensor) or log_p.ndim != 1:
        shape = tuple(log_p.shape) if isinstance(log_p, Tensor) else type(log_p).__name__
        raise ValueError(f"log_p must be a 1-D tensor of log-densities (batch,), got {shape}")
    check_positive_int(dim, "dim")
    return -log_p / (dim * math.log(2.0))


def dequantized_bits_per_dim(log_p: Tensor, dim: int, bin_width: float) -> Tensor:
    r"""Bits per dimension of discrete data from the log-densities ``(B,)`` (nats) of dequantized points.

    Discrete data on a grid of spacing :math:`\Delta` (e.g. the digits' 17 grey levels scaled to
    [-1, 1]: :math:`\Delta = 1/8`; 8-bit images scaled to [0, 1] as :math:`k/256`: :math:`\Delta = 1/256`)
    are dequantized as :math:`y = x + \Delta (u - \tfrac12)`, :math:`u \sim U[0, 1)^d`. A density
    :math:`p` then gives the grid point :math:`x` the probability :math:`P(x) = \int_{\mathrm{bin}(x)} p`,
    and Jensen's inequality bounds its code length:
    :math:`-\log P(x) \le \E_u[-\log p(y)] - d \log \Delta`. In bits per dimension

    .. math:: \mathrm{bpd} = \frac{-\log p(y) - d \ln \Delta}{d \ln 2},

    returned per row (average over rows and over draws of ``u`` for the bound). A uniform density
    on the :math:`K` bins gives exactly :math:`\log_2 K`. ``dim`` >= 1, ``bin_width`` > 0.
    """
    check_positive_float(bin_width, "bin_width")
    return bits_per_dim(log_p, dim) - math.log2(bin_width)


def _with_grad(x: Tensor, create_graph: bool) -> Tensor:
    """``x`` ready for differentiation: kept in the graph when training, detached otherwise."""
    if create_graph and x.requires_grad:
        return x
    return x.detach().requires_grad_(True)


def _grad_or_zeros(output: Tensor, x: Tensor, create_graph: bool) -> Tensor:
    """The gradient of ``output`` (a scalar) in ``x``, or zeros where it does not depend on ``x``
    (a velocity constant in x has divergence 0; autograd would say "does not require grad")."""
    if not output.requires_grad:
        return torch.zeros_like(x)
    (g,) = torch.autograd.grad(output, x, create_graph=create_graph, retain_graph=True, allow_unused=True)
    return torch.zeros_like(x) if g is None else g


def _divergence_args(velocity: object, x: object, t: object, create_graph: object) -> Tensor:
    """Check the arguments of a divergence (metadata only: no host sync, as the log-density's ODE calls
    it at every evaluation); returns ``t`` as ``(B,)``."""
    check_callable(velocity, "velocity", "velocity(x, t)")
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < 2 or x.shape[0] == 0:
        what = f"dtype {x.dtype}, shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise TypeError(f"x must be a floating-point tensor of shape (batch, ...) with batch >= 1, got {what}")
    check_flag(create_graph, "create_graph")
    return broadcast_time(t, x.shape[0], x)


def _velocity(velocity: Velocity, x: Tensor, t: Tensor) -> Tensor:
    return check_model_output(velocity(x, t), x.shape, "model(x, t)")


def exact_divergence(velocity: Velocity, x: Tensor, t: Tensor, create_graph: bool = False) -> tuple[Tensor, Tensor]:
    r"""The velocity and its exact divergence :math:`\sum_i \partial u_i / \partial x_i`.

    One backward pass per coordinate: cost d times a forward pass. Differentiable with
    respect to the model's parameters when ``create_graph`` is True.

    Args:
        velocity: callable ``velocity(x, t)``.
        x: points ``(B, ...)``; t: times ``(B,)``.
        create_graph: keep the graph of the result (for training through it).

    Returns:
        ``(v, div)``: ``v`` of the shape of ``x`` and ``div`` of shape ``(B,)``. A velocity that does not
        depend on ``x`` has divergence 0.
    """
    t = _divergence_args(velocity, x, t, create_graph)
    with torch.enable_grad():
        x = _with_grad(x, create_graph)
        v = _velocity(velocity, x, t)
        flat_v = v.reshape(v.shape[0], -1)
        div = torch.zeros(x.shape[0], dtype=v.dtype, device=v.device)
        for i in range(flat_v.shape[1]):
            g = _grad_or_zeros(flat_v[:, i].sum(), x, create_graph)
            div = div + g.reshape(g.shape[0], -1)[:, i]
    if not create_graph:
        v, div = v.detach(), div.detach()
    return v, div


def draw_probes(
    x: Tensor, n_probes: int = 1, probe: str = "gaussian", generator: int | torch.Generator | None = None
) -> Tensor:
    r"""Probe vectors for the Hutchinson estimator, ``(n_probes, B, ...)`` like ``x``.

    ``"gaussian"``: :math:`\varepsilon \sim \mathcal N(0, I)`; ``"rademacher"``: independent
    signs :math:`\pm 1`. Both have :math:`\mathbb E[\varepsilon\varepsilon^\top] = I`.
    ``generator`` (on the device of ``x``) makes the draw reproducible.
    """
    if not isinstance(x, Tensor) or not x.is_floating_point():
        what = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise TypeError(f"x must be a floating-point tensor (the points the probes are for), got {what}")
    check_positive_int(n_probes, "n_probes")
    if not isinstance(probe, str) or probe not in PROBES:
        raise ValueError(f"probe must be one of {PROBES}, got {probe!r}")
    generator = as_generator(generator, device=x.device)
    shape = (n_probes, *x.shape)
    if probe == "gaussian":
        return torch.randn(shape, generator=generator, dtype=x.dtype, device=x.device)
    signs = torch.randint(0, 2, shape, generator=generator, device=x.device)
    return (2 * signs - 1).to(x.dtype)


def hutchinson_divergence(
    velocity: Velocity, x: Tensor, t: Tensor, probes: Tensor, create_graph: bool = False
) -> tuple[Tensor, Tensor]:
    r"""The velocity and Hutchinson's estimate of its divergence,
    :math:`\frac1K\sum_{k=1}^K \varepsilon_k^\top J\,\varepsilon_k` with :math:`J = \partial u/\partial x`.

    Each probe costs one vector-Jacobian product :math:`\varepsilon^\top J` (one backward
    pass), whatever the dimension. Unbiased: :math:`\mathbb E[\varepsilon^\top J\varepsilon]
    = \operatorname{tr}(J\,\mathbb E[\varepsilon\varepsilon^\top]) = \operatorname{tr} J`.

    Args:
        velocity: callable ``velocity(x, t)``.
        x: points ``(B, ...)``; t: times ``(B,)``.
        probes: ``(K, B, ...)`` from :func:`draw_probes`.
        create_graph: keep the graph of the result (for training through it).

    Returns:
        ``(v, div)``: ``v`` like ``x`` and ``div`` ``(B,)``, the mean over the K probes (0 for a velocity
        that does not depend on ``x``).
    """
    t = _divergence_args(velocity, x, t, create_graph)
    if not isinstance(probes, Tensor) or probes.shape[1:] != x.shape or probes.shape[0] == 0:
        shape = tuple(probes.shape) if isinstance(probes, Tensor) else type(probes).__name__
        raise ValueError(f"probes must have shape (n_probes, *x.shape) = (K, {tuple(x.shape)}), got {shape}")
    with torch.enable_grad():
        x = _with_grad(x, create_graph)
        v = _velocity(velocity, x, t)
        div = torch.zeros(x.shape[0], dtype=v.dtype, device=v.device)
        for eps in probes:
            g = _grad_or_zeros((v * eps).sum(), x, create_graph)
            div = div + (g * eps).reshape(x.shape[0], -1).sum(dim=1)
        div = div / probes.shape[0]
    if not create_graph:
        v, div = v.detach(), div.detach()
    return v, div


def hutchinson_variance(jacobian: Tensor, probe: str = "gaussian") -> Tensor:
    r"""The variance of one Hutchinson sample :math:`\varepsilon^\top J \varepsilon`, in closed form.

    With :math:`S = (J + J^\top)/2` (only the symmetric part enters the quadratic form):

    * Gaussian probes: :math:`2\|S\|_F^2 = 2\sum_{ij} S_{ij}^2`;
    * Rademacher probes: :math:`2\sum_{i \ne j} S_{ij}^2` (the diagonal is read without error).

    The mean of K independent probes has this variance divided by K.
    ``jacobian``: ``(d, d)`` or a batch ``(B, d, d)``; returns ``()`` or ``(B,)``.
    """
    if not isinstance(jacobian, Tensor) or jacobian.ndim not in (2, 3) or jacobian.shape[-1] != jacobian.shape[-2]:
        shape = tuple(jacobian.shape) if isinstance(jacobian, Tensor) else type(jacobian).__name__
        raise ValueError(f"jacobian must be a square matrix (d, d) or a batch (B, d, d), got {shape}")
    if probe not in PROBES:
        raise ValueError(f"probe must be one of {PROBES}, got {probe!r}")
    sym = 0.5 * (jacobian + jacobian.transpose(-1, -2))
    total = (sym**2).sum(dim=(-1, -2))
    if probe == "rademacher":
        total = total - (torch.diagonal(sym, dim1=-2, dim2=-1) ** 2).sum(dim=-1)
    return 2 * total


def hutchinson_density_ratio(integrated_jacobian: Tensor, probe: str = "gaussian") -> Tensor:
    r"""The bias of the density :math:`\exp(\widehat{\log p})` estimated with one fixed Hutchinson probe:
    :math:`\mathbb E[\hat p] / p`.

    Along a trajectory the estimate of the log-density is
    :math:`\widehat{\log p} = \log p + \operatorname{tr} B - \varepsilon^\top B\,\varepsilon` with
    :math:`B = \int_0^1 \frac{\partial u_t}{\partial x}(x_t)\,dt` (the trajectory does not depend on the
    probe), so it is unbiased, while by Jensen's inequality its exponential is biased upward. With
    :math:`S = (B + B^\top)/2`:

    * Gaussian probes: :math:`\mathbb E[\hat p]/p = e^{\operatorname{tr} S}\,\det(I + 2S)^{-1/2}` when
      :math:`I + 2S` is positive definite, and :math:`+\infty` otherwise;
    * Rademacher probes: the mean of :math:`e^{\operatorname{tr} S - \varepsilon^\top S\varepsilon}` over the
      :math:`2^d` sign vectors, computed exactly (d <= 16).

    ``integrated_jacobian``: ``B``, ``(d, d)``. Returns a scalar tensor, >= 1.
    """
    b = integrated_jacobian
    if not isinstance(b, Tensor) or b.ndim != 2 or b.shape[0] != b.shape[1]:
        shape = tuple(b.shape) if isinstance(b, Tensor) else type(b).__name__
        raise ValueError(f"integrated_jacobian must be a square matrix (d, d), got {shape}")
    if probe not in PROBES:
        raise ValueError(f"probe must be one of {PROBES}, got {probe!r}")
    sym = 0.5 * (b + b.T)
    d = sym.shape[0]
    if probe == "gaussian":
        eigenvalues = torch.linalg.eigvalsh(torch.eye(d, dtype=sym.dtype, device=sym.device) + 2 * sym)
        if bool((eigenvalues <= 0).any()):
            return torch.tensor(math.inf, dtype=sym.dtype, device=sym.device)
        return torch.exp(torch.trace(sym) - 0.5 * torch.log(eigenvalues).sum())
    if d > 16:
        raise ValueError(f"the Rademacher expectation is enumerated over 2^d sign vectors: d must be <= 16, got {d}")
    codes = torch.arange(2**d, device=sym.device)[:, None]
    signs = (2 * ((codes >> torch.arange(d, device=sym.device)) & 1) - 1).to(sym.dtype)
    quad = torch.einsum("ki,ij,kj->k", signs, sym, signs)
    return torch.exp(torch.trace(sym) - quad).mean()

@dataclass
class LogProbResult:
    """What :func:`integrate_log_density` returns.

    Attributes:
        log_prob: :math:`\\log p_1(x_1)`, shape ``(B,)``.
        x0: the points :math:`x_0 = \\psi_1^{-1}(x_1)` reached at t = 0, shape of ``x``.
        delta_log_p: :math:`\\log p_1(x_1) - \\log p_0(x_0) = -\\int_0^1 \\nabla\\cdot u_t(x_t)\\,dt`, ``(B,)``.
        nfe: evaluations of the augmented dynamics (each is one forward pass of the model
            plus d backward passes, exact, or one per probe, Hutchinson).
    """

    log_prob: Tensor
    x0: Tensor
    delta_log_p: Tensor
    nfe: int


class _AugmentedDynamics:
    r"""The right-hand side of the augmented ODE on :math:`z = (x, \ell)`, flattened to ``(B, D + 1)``:
    :math:`\dot x = u_t(x)`, :math:`\dot\ell = \nabla\cdot u_t(x)` (exact or Hutchinson)."""

    def __init__(
        self, model: Velocity, event_shape: torch.Size, divergence: str, probes: Tensor | None, create_graph: bool
    ) -> None:
        self.model = model
        self.event_shape = event_shape
        self.divergence = divergence
        self.probes = probes
        self.create_graph = create_graph

    def __call__(self, z: Tensor, t: Tensor) -> Tensor:
        x = z[:, :-1].reshape(z.shape[0], *self.event_shape)
        if self.divergence == "exact":
            v, div = exact_divergence(self.model, x, t, self.create_graph)
        else:
            v, div = hutchinson_divergence(self.model, x, t, self.probes, self.create_graph)
        return torch.cat([v.reshape(z.shape[0], -1), div[:, None]], dim=1)


def integrate_log_density(
    model: Velocity,
    x: Tensor,
    method: str = "dopri5",
    steps: int | None = None,
    t_grid: Tensor | None = None,
    divergence: str = "exact",
    n_probes: int = 1,
    probe: str = "gaussian",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    source_log_prob: LogDensity | None = None,
    generator: int | torch.Generator | None = None,
    create_graph: bool = False,
) -> LogProbResult:
    r"""Solve the augmented ODE from t = 1 to t = 0 and return :math:`\log p_1(x)` with details.

    Args:
        model: the velocity field, called as ``model(x, t)`` with ``x`` ``(B, ...)``, ``t`` ``(B,)``.
        x: the points at t = 1 whose log-density is wanted, ``(B, ...)`` (finite floats).
        method: ``"euler"``, ``"midpoint"``, ``"heun"``, ``"rk4"`` (hand-written, fixed steps)
            or an adaptive torchdiffeq method such as ``"dopri5"``.
        steps: number of fixed steps on the uniform grid from 1 to 0 (20 when neither
            ``steps`` nor ``t_grid`` is given); fixed-step methods only.
        t_grid: an explicit strictly decreasing grid from 1 to 0; fixed-step methods only.
        divergence: ``"exact"`` (d backward passes) or ``"hutchinson"``.
        n_probes: Hutchinson probes per evaluation (K >= 1); the same probes are used along
            the whole trajectory, so the integral is an unbiased estimate.
        probe: ``"gaussian"`` or ``"rademacher"``.
        rtol, atol: tolerances of the adaptive methods.
        source_log_prob: :math:`\log p_0`, ``(B, ...) -> (B,)``; standard Gaussian when None.
        generator: the randomness of the probes: an int seed, a ``torch.Generator`` (on the device
            of ``x``) or None.
        create_graph: keep the graph so that the result can be differentiated with respect
            to the model's parameters (maximum-likelihood training).

    Returns:
        :class:`LogProbResult`.
    """
    x = check_batch(x, "x")
    if not callable(model):
        raise TypeError(f"model must be callable as model(x, t), got {type(model).__name__}")
    check_flag(create_graph, "create_graph")
    if not isinstance(divergence, str) or divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")
    if not isinstance(method, str) or (method not in FIXED_STEP_METHODS and method not in ADAPTIVE_METHODS):
        raise ValueError(f"method must be one of {sorted(FIXED_STEP_METHODS) + list(ADAPTIVE_METHODS)}, got {method!r}")
    check_positive_int(n_probes, "n_probes")
    if probe not in PROBES:
        raise ValueError(f"probe must be one of {PROBES}, got {probe!r}")
    check_positive_float(rtol, "rtol")
    check_positive_float(atol, "atol")
    if source_log_prob is not None and not callable(source_log_prob):
        raise TypeError("source_log_prob must be callable as source_log_prob(x0) -> (B,)")
    if method in ADAPTIVE_METHODS and (steps is not None or t_grid is not None):
        raise ValueError(f"steps and t_grid are for the fixed-step methods; {method!r} chooses its own steps")
    if steps is not None and t_grid is not None:
        raise ValueError("give at most one of steps (an int >= 1) or t_grid (a decreasing grid from 1 to 0)")
    if t_grid is not None:
        t_grid = _check_grid(t_grid)
        if float(t_grid[0]) != 1.0 or float(t_grid[-1]) != 0.0:
            raise ValueError(
                f"t_grid must run from 1 down to 0 (decreasing), got {float(t_grid[0]):g} ... {float(t_grid[-1]):g}"
            )
    elif method in FIXED_STEP_METHODS:
        t_grid = time_grid(20 if steps is None else check_positive_int(steps, "steps"), 1.0, 0.0)

    probes = draw_probes(x, n_probes, probe, generator) if divergence == "hutchinson" else None
    dynamics = _AugmentedDynamics(model, x.shape[1:], divergence, probes, create_graph)
    z1 = torch.cat([x.reshape(x.shape[0], -1), x.new_zeros(x.shape[0], 1)], dim=1)
    if method in FIXED_STEP_METHODS:
        # Training (create_graph) checks its loss in fit; elsewhere the end state is checked once.
        sol = _integrate_fixed(dynamics, z1, t_grid, method, False, None if create_graph else "model")
    else:
        sol = solve_adaptive(dynamics, z1, t0=1.0, t1=0.0, rtol=rtol, atol=atol, method=method)
    x0 = sol.x[:, :-1].reshape(x.shape)
    delta = sol.x[:, -1]
    source = gaussian_log_prob if source_log_prob is None else source_log_prob
    log_p0 = source(x0)
    if not isinstance(log_p0, Tensor) or log_p0.shape != (x.shape[0],):
        raise ValueError(f"source_log_prob must return a tensor of shape ({x.shape[0]},)")
    return LogProbResult(log_p0 + delta, x0, delta, sol.nfe)


def log_prob(model: Velocity, x: Tensor, **kwargs: Any) -> Tensor:
    r"""The log-density :math:`\log p_1(x)` of the flow of ``model`` at points ``x`` ``(B, ...)``.

    Integrates the instantaneous change of variables from t = 1 to t = 0; keyword arguments
    as in :func:`integrate_log_density` (``method``, ``steps``, ``divergence``, ``n_probes``,
    ``probe``, ``rtol``, ``atol``, ...). Returns ``(B,)`` log-densities in nats, on the device
    of ``x`` (CPU, CUDA or MPS alike).
    """
    return integrate_log_density(model, x, **kwargs).log_prob


def cnf_nll_loss(
    data: Tensor,
    batch_size: int = 256,
    method: str = "midpoint",
    steps: int = 10,
    divergence: str = "exact",
    n_probes: int = 1,
    probe: str = "gaussian",
) -> Callable[[nn.Module, int], Tensor]:
    r"""The maximum-likelihood objective of a continuous normalizing flow, as a loss for :func:`fmbook.train.fit`.

    Returns ``loss_fn(model, step)``: draw ``batch_size`` rows of ``data`` and return
    :math:`-\frac1B\sum_b \log p_1^\theta(x^{(b)})`, computed by :func:`log_prob` with a
    fixed-step solver and the graph kept, so that backpropagation runs through every solver
    step and every divergence ("discretize, then optimise").

    Args:
        data: the training set ``(N, d)``.
        batch_size: points per step.
        method, steps: the fixed-step solver and its number of steps from 1 to 0.
        divergence, n_probes, probe: as in :func:`integrate_log_density`.
    """
    data = check_points(data, "data")
    check_positive_int(batch_size, "batch_size")
    if not isinstance(method, str) or method not in FIXED_STEP_METHODS:
        raise ValueError(f"method must be a fixed-step method {sorted(FIXED_STEP_METHODS)}, got {method!r}")
    check_positive_int(steps, "steps")
    if not isinstance(divergence, str) or divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")
    check_positive_int(n_probes, "n_probes")
    if probe not in PROBES:
        raise ValueError(f"probe must be one of {PROBES}, got {probe!r}")
    on_device: dict[torch.device, Tensor] = {}

    def loss_fn(model: nn.Module, step: int) -> Tensor:
        device = next(model.parameters()).device
        if device not in on_device:
            on_device[device] = data.to(device)
        rows = on_device[device]
        batch = rows[torch.randint(0, rows.shape[0], (batch_size,), device=device)]
        lp = log_prob(
            model, batch, method=method, steps=steps, divergence=divergence, n_probes=n_probes, probe=probe,
            create_graph=True,
        )
        return -lp.mean()

    return loss_fn


def continuity_residual(
    log_density: Callable[[Tensor, Tensor], Tensor], velocity: Velocity, x: Tensor, t: Tensor | float
) -> Tensor:
    r"""The continuity-equation residual divided by the density, by automatic differentiation:

    .. math:: \frac{\partial_t p_t + \nabla\cdot(p_t u_t)}{p_t}
              = \partial_t \log p_t + \nabla\cdot u_t + u_t\cdot\nabla\log p_t .

    It vanishes everywhere when ``velocity`` generates the path ``log_density`` (for a density that is
    continuously differentiable in (t, x)); conversely, a zero residual implies that ``velocity``
    generates the path when the velocity is locally Lipschitz and integrable along it (the mass
    conservation theorem).

    Args:
        log_density: ``log_density(x, t) -> (B,)``, differentiable in ``x`` and ``t``.
        velocity: ``velocity(x, t) -> (B, d)``.
        x: points ``(B, d)``; t: a time in [0, 1] or times ``(B,)``.

    Returns:
        ``(B,)`` residuals.
    """
    check_callable(log_density, "log_density", "log_density(x, t)")
    check_callable(velocity, "velocity", "velocity(x, t)")
    x = check_points(x, "x")
    t = as_time(t, x.shape[0], x)
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        tg = t.detach().requires_grad_(True)
        logp = log_density(xg, tg)
        if not isinstance(logp, Tensor) or logp.shape != (x.shape[0],):
            raise ValueError(f"log_density(x, t) must return a tensor of shape ({x.shape[0]},)")
        grad_x, grad_t = torch.autograd.grad(logp.sum(), (xg, tg), allow_unused=True)
        grad_x = torch.zeros_like(xg) if grad_x is None else grad_x  # a density constant in x or in t
        grad_t = torch.zeros_like(tg) if grad_t is None else grad_t
        v, div = exact_divergence(velocity, xg, tg)
    return (grad_t + div + (v * grad_x).sum(dim=1)).detach()


def divergence_free_perturbation(score: Velocity, antisymmetric: Tensor) -> Velocity:
    r"""A velocity :math:`w_t(x) = A\,\nabla\log p_t(x)` that moves no mass: :math:`\nabla\cdot(p_t w_t) = 0`.

    For an antisymmetric matrix :math:`A` (:math:`A^\top = -A`),
    :math:`p_t w_t = A\nabla p_t`, and :math:`\nabla\cdot(A\nabla p_t) = \sum_{ij} A_{ij}\,\partial_i\partial_j p_t
    = \operatorname{tr}(A\,\nabla^2 p_t) = 0` because the Hessian is symmetric. So if :math:`u_t`
    generates :math:`p_t`, the continuity equation holds for :math:`u_t + w_t` as well. For
    :math:`p_t = \mathcal N(0, I)` it is the rotation :math:`w(x) = -A x`.

    Args:
        score: :math:`\nabla\log p_t`, called as ``score(x, t)`` with ``x`` ``(B, d)``, returning ``(B, d)``.
        antisymmetric: ``A``, a ``(d, d)`` matrix with ``A.T == -A``.

    Returns:
        the velocity ``w(x, t) -> (B, d)``.
    """
    if not callable(score):
        raise TypeError(f"score must be callable as score(x, t), got {type(score).__name__}")
    square = isinstance(antisymmetric, Tensor) and antisymmetric.ndim == 2
    if not square or antisymmetric.shape[0] != antisymmetric.shape[1]:
        shape = tuple(antisymmetric.shape) if isinstance(antisymmetric, Tensor) else type(antisymmetric).__name__
        raise ValueError(f"antisymmetric must be a square matrix (d, d), got {shape}")
    if not torch.allclose(antisymmetric, -antisymmetric.T, rtol=0, atol=1e-12):
        raise ValueError("antisymmetric must satisfy A.T == -A (its symmetric part would move mass)")
    matrix = antisymmetric.detach().clone()

    def perturbation(x: Tensor, t: Tensor) -> Tensor:
        return score(x, t) @ matrix.to(x).T

    return perturbation

def weak_continuity_sides(
    test_function: Callable[[Tensor], Tensor],
    log_density: Callable[[Tensor, Tensor], Tensor],
    velocity: Velocity,
    nodes: Tensor,
    weights: Tensor,
    t: float,
    dt: float = 1e-4,
) -> tuple[Tensor, Tensor]:
    r"""Both sides of the weak continuity equation, by quadrature on a grid:

    .. math:: \frac{d}{dt}\int f\,p_t\,dx \;=\; \int \nabla f(x)\cdot u_t(x)\,p_t(x)\,dx,

    i.e. :math:`\frac{d}{dt}\mathbb E f(X_t) = \mathbb E[\nabla f(X_t)\cdot u_t(X_t)]` for every
    test function f. The left side is the central difference
    :math:`(F(t + dt) - F(t - dt)) / (2\,dt)` of :math:`F(s) = \sum_i w_i\,p_s(x_i) f(x_i)`, the
    right side :math:`\sum_i w_i\,p_t(x_i)\,\nabla f(x_i)\cdot u_t(x_i)` with :math:`\nabla f` by
    automatic differentiation. For a path that ``velocity`` generates they agree up to the
    quadrature error and :math:`O(dt^2)`.

    Args:
        test_function: ``f(x)``, ``(B, d) -> (B, K)``: K smooth test functions at once.
        log_density: ``log p_t(x)``, called as ``log_density(x, t)`` with ``t`` ``(B,)``, returning ``(B,)``.
        velocity: ``velocity(x, t) -> (B, d)``.
        nodes: quadrature nodes ``(B, d)``; weights: their weights ``(B,)`` (cell areas).
        t: the time, with ``[t - dt, t + dt]`` inside [0, 1].
        dt: the half-width of the central difference (> 0).

    Returns:
        ``(lhs, rhs)``, each ``(K,)``.
    """
    check_callable(test_function, "test_function", "test_function(x)")
    check_callable(log_density, "log_density", "log_density(x, t)")
    check_callable(velocity, "velocity", "velocity(x, t)")
    nodes = check_points(nodes, "nodes")
    if not isinstance(weights, Tensor) or weights.shape != (nodes.shape[0],):
        raise ValueError(f"weights must be a tensor of shape ({nodes.shape[0]},), one per node")
    check_positive_float(dt, "dt")
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not dt <= t <= 1 - dt:
        raise ValueError(f"t must be a number with [t - dt, t + dt] inside [0, 1], got t = {t!r}, dt = {dt!r}")
    x = nodes.detach().requires_grad_(True)
    with torch.enable_grad():
        f = test_function(x)
        if not isinstance(f, Tensor) or f.ndim != 2 or f.shape[0] != nodes.shape[0]:
            raise ValueError(f"test_function(x) must return a tensor of shape ({nodes.shape[0]}, K)")
        grads = torch.stack([torch.autograd.grad(f[:, k].sum(), x, retain_graph=True)[0] for k in range(f.shape[1])])
    f = f.detach()

    def density(s: float) -> Tensor:
        return log_density(nodes, torch.full((nodes.shape[0],), s, dtype=nodes.dtype, device=nodes.device)).exp()

    lhs = ((weights * (density(t + dt) - density(t - dt)))[:, None] * f).sum(0) / (2 * dt)
    u = velocity(nodes, torch.full((nodes.shape[0],), float(t), dtype=nodes.dtype, device=nodes.device))
    rhs = (weights * density(t) * (grads * u).sum(-1)).sum(-1)
    return lhs.detach(), rhs.detach()

class AffineGaussianFlow(nn.Module):
    r"""An affine flow from N(0, I) to N(m, L L^T), with every quantity in closed form.

    The flow is :math:`\psi_t(x_0) = M_t x_0 + t\,m` with :math:`M_t = (1 - t) I + t L` and
    ``L`` lower triangular with a positive diagonal (so :math:`M_t` is invertible for all t).
    Differentiating in t and substituting :math:`x_0 = M_t^{-1}(x - t m)` gives its velocity

    .. math:: u_t(x) = m + (L - I)\,M_t^{-1}(x - t\,m),

    its divergence :math:`\operatorname{tr}\big((L - I)M_t^{-1}\big)`, and the path
    :math:`p_t = \mathcal N(t\,m,\; M_t M_t^\top)`.

    Args:
        mean: ``m``, shape ``(d,)``.
        scale_tril: ``L``, shape ``(d, d)``, lower triangular with a positive diagonal.
    """

    def __init__(self, mean: Tensor, scale_tril: Tensor) -> None:
        super().__init__()
        mean = _check_vector(mean, "mean")
        d = mean.shape[0]
        if not isinstance(scale_tril, Tensor) or scale_tril.shape != (d, d):
            shape = tuple(scale_tril.shape) if isinstance(scale_tril, Tensor) else type(scale_tril).__name__
            raise ValueError(f"scale_tril must have shape ({d}, {d}) to match mean, got {shape}")
        if not bool(torch.isfinite(scale_tril).all()) or not torch.equal(scale_tril, scale_tril.tril()):
            raise ValueError("scale_tril must be a finite lower-triangular matrix")
        if bool((torch.diagonal(scale_tril) <= 0).any()):
            raise ValueError("scale_tril must have a positive diagonal")
        self.register_buffer("mean", mean.clone())
        self.register_buffer("scale_tril", scale_tril.clone())
        self.dim = d

    def matrix(self, t: Tensor) -> Tensor:
        """:math:`M_t = (1 - t) I + t L`, ``(B,) -> (B, d, d)``."""
        eye = torch.eye(self.dim, dtype=self.scale_tril.dtype, device=self.scale_tril.device)
        t = t.to(self.scale_tril.dtype)[:, None, None]
        return (1 - t) * eye + t * self.scale_tril

    def _whiten(self, x: Tensor, t: Tensor) -> Tensor:
        """:math:`M_t^{-1}(x - t m)`, ``(B, d)``."""
        rhs = (x - t[:, None] * self.mean)[:, :, None]
        return torch.linalg.solve_triangular(self.matrix(t), rhs, upper=False)[:, :, 0]

    def forward(self, x: Tensor, t: float | Tensor) -> Tensor:
        """The velocity :math:`u_t(x)` at ``x`` ``(B, d)``, ``t`` a float or ``(B,)``; returns ``(B, d)``.

        Unlike the networks of :mod:`fmbook.models` this closed-form reference checks values too
        (finite ``x``, ``t`` in [0, 1]): it is a test field, not a network trained step by step, so a
        host synchronisation per call costs nothing that matters."""
        x = check_points(x, "x", dim=self.dim)
        t = as_time(t, x.shape[0], x)
        eye = torch.eye(self.dim, dtype=x.dtype, device=x.device)
        return self.mean + self._whiten(x, t) @ (self.scale_tril - eye).T

    def flow(self, x0: Tensor, t: float | Tensor) -> Tensor:
        r""":math:`\psi_t(x_0) = M_t x_0 + t m`, ``(B, d)``."""
        x0 = check_points(x0, "x0", dim=self.dim)
        t = as_time(t, x0.shape[0], x0)
        return (self.matrix(t) @ x0[:, :, None])[:, :, 0] + t[:, None] * self.mean

    def divergence(self, t: float | Tensor, batch: int = 1) -> Tensor:
        r""":math:`\nabla\cdot u_t = \operatorname{tr}((L - I) M_t^{-1})` (the same at every x), ``(batch,)``."""
        like = self.scale_tril
        t = as_time(t, batch, like)
        eye = torch.eye(self.dim, dtype=like.dtype, device=like.device)
        m_inv = torch.linalg.solve_triangular(self.matrix(t), eye.expand(t.shape[0], -1, -1), upper=False)
        return torch.diagonal((self.scale_tril - eye) @ m_inv, dim1=-2, dim2=-1).sum(-1)

    def log_prob(self, x: Tensor, t: float | Tensor = 1.0) -> Tensor:
        r""":math:`\log p_t(x) = \log\mathcal N(x;\, t m,\, M_t M_t^\top)`, ``(B, d) -> (B,)``."""
        x = check_points(x, "x", dim=self.dim)
        t = as_time(t, x.shape[0], x)
        w = self._whiten(x, t)
        log_det = torch.log(torch.diagonal(self.matrix(t), dim1=-2, dim2=-1)).sum(-1)
        return -0.5 * self.dim * math.log(2 * math.pi) - log_det - 0.5 * (w**2).sum(dim=1)


def _check_vector(x: object, name: str) -> Tensor:
    """A finite floating-point vector ``(d,)`` with d >= 1."""
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim != 1 or x.shape[0] == 0:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a non-empty 1-D floating-point tensor (d,), got {shape}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} must contain only finite values (found NaN or inf)")
    return x

r"""Denoising diffusion in discrete time (DDPM) and its map onto the book's continuous time.

The diffusion literature counts steps from the data, :math:`k = 0`, to the noise, :math:`k = T`.
A *beta schedule* :math:`0 < \beta_1, \dots, \beta_T < 1` defines the noising chain

.. math:: x_k = \sqrt{1 - \beta_k}\, x_{k-1} + \sqrt{\beta_k}\, \varepsilon_k, \qquad
          \varepsilon_k \sim \mathcal N(0, I),

whose marginals have the closed form (:func:`q_sample`)

.. math:: x_k = \sqrt{\bar\alpha_k}\, x_0 + \sqrt{1 - \bar\alpha_k}\, \varepsilon, \qquad
          \bar\alpha_k = \prod_{j \le k} (1 - \beta_j), \quad \bar\alpha_0 = 1.

In the book's convention (noise at t = 0, data at t = 1) step :math:`k` sits at time
:math:`t_k = 1 - k/T`, and the chain is the affine Gaussian path with
:math:`\alpha_{t_k} = \sqrt{\bar\alpha_k}`, :math:`\sigma_{t_k} = \sqrt{1 - \bar\alpha_k}`
(:class:`DiscreteVPScheduler` interpolates between the steps). A noise predictor
:math:`\hat\varepsilon(x, t)` is therefore called with the *book's* time :math:`t_k`.

Samplers: :func:`ancestral_sample` (Ho et al. 2020, Algorithm 2) and :func:`ddim_sample`
(Song, Meng and Ermon 2021), both reporting their number of network evaluations (NFE);
:func:`ddim_noise_gain` is the factor by which a DDIM step passes on an error of the noise prediction.
Beware a clash of names: DDPM's :math:`\alpha_k = 1 - \beta_k` is *not* the book's
:math:`\alpha_t`; the book's :math:`\alpha_t` is DDPM's :math:`\sqrt{\bar\alpha_k}`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import (
    as_generator,
    check_batch,
    check_callable,
    check_finite_result,
    check_flag,
    check_model_output,
    check_positive_float,
    check_positive_int,
    check_unit_interval,
)
from .paths import SIGMA_FLOOR, Scheduler, SchedulerOutput, convert
from .solvers import Solution

NoiseModel = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class DDPMSchedule:
    r"""A discrete noise schedule :math:`\beta_1, \dots, \beta_T`.

    Attributes:
        betas: float64 tensor of shape ``(T,)``; ``betas[k - 1]`` is :math:`\beta_k`.

    Derived quantities are indexed by the step ``k = 0, ..., T`` (so ``alpha_bar[0] = 1``).
    """

    betas: Tensor

    def __post_init__(self) -> None:
        b = self.betas
        if not isinstance(b, Tensor) or b.ndim != 1 or b.shape[0] < 1:
            raise ValueError("betas must be a 1-D tensor of length T >= 1")
        if not bool(torch.isfinite(b).all()) or bool((b <= 0).any()) or bool((b >= 1).any()):
            low, high = b.min().item(), b.max().item()
            raise ValueError(f"betas must lie in the open interval (0, 1), got values in [{low:.4g}, {high:.4g}]")
        object.__setattr__(self, "betas", b.detach().to("cpu", torch.float64))

    @property
    def T(self) -> int:  # noqa: N802 - the symbol of the papers
        """The number of steps."""
        return self.betas.shape[0]

    @property
    def alpha_bar(self) -> Tensor:
        r""":math:`\bar\alpha_k = \prod_{j \le k}(1 - \beta_j)` for ``k = 0..T``, shape ``(T + 1,)``."""
        return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - self.betas, 0)])

    @property
    def log_alpha_bar(self) -> Tensor:
        r""":math:`\log\bar\alpha_k` for ``k = 0..T``, summed in log space for accuracy, shape ``(T + 1,)``."""
        return torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(torch.log1p(-self.betas), 0)])

    def beta(self, k: Tensor) -> Tensor:
        r""":math:`\beta_k` for integer steps ``k`` in ``1..T`` (any shape)."""
        return self.betas[_check_steps(k, self.T, minimum=1) - 1]

    def __repr__(self) -> str:
        b = self.betas
        return f"DDPMSchedule(T={self.T}, beta_1={b[0].item():.3g}, beta_T={b[-1].item():.3g})"


def check_schedule(schedule: object, name: str = "schedule") -> DDPMSchedule:
    """Check that ``schedule`` is a :class:`DDPMSchedule` (e.g. ``linear_schedule(1000)``)."""
    if not isinstance(schedule, DDPMSchedule):
        raise TypeError(
            f"{name} must be a fmbook.ddpm.DDPMSchedule such as linear_schedule(1000), got {type(schedule).__name__}"
        )
    return schedule


def _check_steps(k: object, T: int, minimum: int = 0) -> Tensor:  # noqa: N803
    if not isinstance(k, Tensor) or k.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"k must be an integer tensor of steps, got {type(k).__name__}")
    k = k.to("cpu", torch.int64)
    if bool((k < minimum).any()) or bool((k > T).any()):
        raise ValueError(f"k must hold steps in [{minimum}, {T}], got values in [{k.min().item()}, {k.max().item()}]")
    return k


def linear_schedule(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> DDPMSchedule:  # noqa: N803
    r"""The linear schedule of Ho et al. (2020): :math:`\beta_k` evenly spaced from ``beta_start`` to ``beta_end``."""
    check_positive_int(T, "T")
    check_unit_interval(beta_start, "beta_start", open_low=True, open_high=True)
    check_unit_interval(beta_end, "beta_end", open_low=True, open_high=True)
    return DDPMSchedule(torch.linspace(beta_start, beta_end, T, dtype=torch.float64))


def cosine_schedule(T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> DDPMSchedule:  # noqa: N803
    r"""The cosine schedule of Nichol and Dhariwal (2021).

    :math:`\bar\alpha_k = f(k)/f(0)` with :math:`f(k) = \cos^2\!\big(\frac{k/T + s}{1 + s}\frac\pi2\big)`,
    and :math:`\beta_k = \min(1 - \bar\alpha_k / \bar\alpha_{k-1}, \beta_{\max})` (the clip keeps
    :math:`\beta_T < 1`, where :math:`f(T) = 0`).
    """
    check_positive_int(T, "T")
    check_positive_float(s, "s")
    check_unit_interval(max_beta, "max_beta", open_low=True, open_high=True)
    k = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos((k / T + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(min=1e-12, max=max_beta)
    return DDPMSchedule(betas)


def step_to_time(k: Tensor, T: int) -> Tensor:  # noqa: N803
    """The book's time of DDPM step ``k``: :math:`t_k = 1 - k/T` (float64, same shape as ``k``)."""
    check_positive_int(T, "T")
    return 1 - _check_steps(k, T).to(torch.float64) / T


def time_to_step(t: Tensor, T: int) -> Tensor:  # noqa: N803
    """The nearest DDPM step of a book time: :math:`k = \\mathrm{round}(T(1 - t))` (int64)."""
    check_positive_int(T, "T")
    if not isinstance(t, Tensor) or not t.is_floating_point():
        raise TypeError("t must be a floating-point tensor of times in [0, 1]")
    if not bool(torch.isfinite(t).all()) or bool((t < 0).any()) or bool((t > 1).any()):
        raise ValueError("t must hold finite times in [0, 1]")
    return torch.round(T * (1 - t.to(torch.float64))).to(torch.int64)


def q_sample(x_data: Tensor, k: Tensor, schedule: DDPMSchedule, noise: Tensor) -> Tensor:
    r"""The closed-form forward noising :math:`x_k = \sqrt{\bar\alpha_k} x_0 + \sqrt{1 - \bar\alpha_k}\,\varepsilon`.

    Args:
        x_data: clean data (DDPM's :math:`x_0`, the book's :math:`x_1`), shape ``(B, ...)``.
        k: integer steps in ``0..T``, shape ``(B,)``.
        schedule: the beta schedule.
        noise: :math:`\varepsilon`, same shape as ``x_data``.
    """
    check_schedule(schedule)
    x_data = check_batch(x_data, "x_data")
    noise = check_batch(noise, "noise")
    if noise.shape != x_data.shape:
        raise ValueError(f"noise must have the shape of x_data {tuple(x_data.shape)}, got {tuple(noise.shape)}")
    k = _check_steps(k, schedule.T)
    if k.shape != (x_data.shape[0],):
        raise ValueError(f"k must have shape ({x_data.shape[0]},), got {tuple(k.shape)}")
    ab = schedule.alpha_bar[k].to(x_data)
    ab = ab.reshape(-1, *([1] * (x_data.ndim - 1)))
    return ab.sqrt() * x_data + (1 - ab).sqrt() * noise


def forward_chain(
    x_data: Tensor,
    schedule: DDPMSchedule,
    generator: int | torch.Generator | None = None,
    keep: list[int] | None = None,
) -> dict[int, Tensor]:
    r"""Run the noising chain :math:`x_k = \sqrt{1-\beta_k} x_{k-1} + \sqrt{\beta_k}\varepsilon_k` step by step.

    Returns ``{k: x_k}`` for the steps in ``keep`` (all of ``0..T`` when None), each ``(B, ...)``.
    This is the definition that :func:`q_sample` shortcuts.
    """
    check_schedule(schedule)
    x = check_batch(x_data, "x_data")
    generator = as_generator(generator, device=x.device)
    if keep is not None and (isinstance(keep, (str, bytes, Tensor)) or not hasattr(keep, "__iter__")):
        raise TypeError(f"keep must be None or a list of integer steps, got {type(keep).__name__}")
    keep = list(range(schedule.T + 1)) if keep is None else list(keep)
    if any(isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= schedule.T for k in keep):
        raise ValueError(f"keep must hold integer steps in [0, {schedule.T}]")
    keep_set = set(keep)
    out = {0: x} if 0 in keep_set else {}
    for k in range(1, schedule.T + 1):
        b = schedule.betas[k - 1].item()
        eps = _noise(x, generator)
        x = math.sqrt(1 - b) * x + math.sqrt(b) * eps
        if k in keep_set:
            out[k] = x
    return out


class DiscreteVPScheduler(Scheduler):
    r"""A DDPM schedule as a continuous variance-preserving path in the book's time.

    With the continuous step :math:`s = T(1 - t) \in [0, T]`, :math:`\log\bar\alpha(s)` is the
    piecewise-linear interpolation of :math:`\log\bar\alpha_k`; then
    :math:`\alpha_t = \bar\alpha(s)^{1/2}`, :math:`\sigma_t = (1 - \bar\alpha(s))^{1/2}`. At every
    step :math:`\alpha_{t_k} = \sqrt{\bar\alpha_k}` exactly, :math:`\alpha_t^2 + \sigma_t^2 = 1`, and
    :math:`\dot\alpha_t = -\tfrac T2\,\alpha_t \log(1 - \beta_k)` on the interval of step k (a
    continuous-time rate :math:`\beta(s) = -T\log(1 - \beta_k) \approx T\beta_k`, as in Song et al. 2021).
    :math:`\dot\sigma_t = -\alpha_t\dot\alpha_t/\sigma_t` is exact wherever :math:`\sigma_t > 0`; at the
    data end t = 1, where :math:`\sigma_1 = 0`, :data:`~fmbook.schedulers.SIGMA_FLOOR` replaces it.
    """

    def __init__(self, schedule: DDPMSchedule) -> None:
        if not isinstance(schedule, DDPMSchedule):
            raise TypeError(f"schedule must be a DDPMSchedule, got {type(schedule).__name__}")
        self.schedule = schedule
        self._log_ab = schedule.log_alpha_bar

    def coefficients(self, t: Tensor) -> SchedulerOutput:
        T = self.schedule.T  # noqa: N806
        log_ab = self._log_ab.to(t.device)
        s = (T * (1 - t.to(torch.float64))).clamp(0, T)
        j = s.floor().long().clamp(max=T - 1)
        slope = log_ab[j + 1] - log_ab[j]
        log_a2 = log_ab[j] + (s - j) * slope
        a = torch.exp(0.5 * log_a2)
        sigma = torch.sqrt((-torch.expm1(log_a2)).clamp_min(0))
        da = -0.5 * T * slope * a
        ds = -a * da / torch.where(sigma > 0, sigma, torch.full_like(sigma, SIGMA_FLOOR))
        return SchedulerOutput(*(c.to(t.dtype) for c in (a, sigma, da, ds)))

    def __repr__(self) -> str:
        return f"DiscreteVPScheduler({self.schedule!r})"


def _predict(model: NoiseModel, x: Tensor, k: int, T: int) -> Tensor:  # noqa: N803
    t = torch.full((x.shape[0],), 1 - k / T, dtype=x.dtype, device=x.device)
    return check_model_output(model(x, t), x.shape, "model(x, t)")


def _noise(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise shaped like ``x``; ``generator`` already read by :func:`as_generator`."""
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def ancestral_step(
    eps: Tensor, x: Tensor, k: int, schedule: DDPMSchedule, variance: str = "beta", noise: Tensor | None = None
) -> Tensor:
    r"""One step of DDPM ancestral sampling, from step k to k - 1 (Ho et al. 2020, Algorithm 2):

    .. math:: x_{k-1} = \frac{1}{\sqrt{1-\beta_k}}\Big(x_k - \frac{\beta_k}{\sqrt{1 - \bar\alpha_k}}\,
              \hat\varepsilon\Big) + s_k z,

    with :math:`s_k^2 = \beta_k` (``variance="beta"``) or :math:`\tilde\beta_k` (``"posterior"``), as
    in :func:`ancestral_sample`. ``noise`` is :math:`z` (``x``'s shape); with ``noise=None``, or at
    k = 1, no noise is added and the step returns the mean of :math:`x_{k-1}` given :math:`x_k`.
    ``eps`` is the noise prediction :math:`\hat\varepsilon(x_k, t_k)`, shape ``(B, ...)`` like ``x``.
    """
    check_schedule(schedule)
    if variance not in ("beta", "posterior"):
        raise ValueError(f"variance must be 'beta' or 'posterior', got {variance!r}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= schedule.T:
        raise ValueError(f"k must be an int step in [1, {schedule.T}], got {k!r}")
    for name, value in (("x", x), ("eps", eps)) + ((("noise", noise),) if noise is not None else ()):
        if not isinstance(value, Tensor) or not value.is_floating_point():
            what = value.dtype if isinstance(value, Tensor) else type(value).__name__
            raise TypeError(f"{name} must be a floating-point tensor, got {what}")
        if value.shape != x.shape or x.ndim < 2 or x.shape[0] == 0:
            raise ValueError(f"{name} must have the shape of x (batch, ...), got {tuple(value.shape)}")
    ab, b = schedule.alpha_bar, schedule.betas[k - 1].item()
    x = (x - b / math.sqrt(1 - ab[k].item()) * eps) / math.sqrt(1 - b)
    if k > 1 and noise is not None:
        var = b if variance == "beta" else b * (1 - ab[k - 1].item()) / (1 - ab[k].item())
        x = x + math.sqrt(var) * noise
    return x


@torch.no_grad()
def ancestral_sample(
    model: NoiseModel,
    x_T: Tensor,  # noqa: N803
    schedule: DDPMSchedule,
    variance: str = "beta",
    generator: int | torch.Generator | None = None,
    return_trajectory: bool = False,
) -> Solution:
    r"""DDPM ancestral sampling (Ho et al. 2020, Algorithm 2): for k = T, ..., 1,

    .. math:: x_{k-1} = \frac{1}{\sqrt{1-\beta_k}}\Big(x_k - \frac{\beta_k}{\sqrt{1 - \bar\alpha_k}}
              \hat\varepsilon(x_k, t_k)\Big) + s_k z, \qquad z \sim \mathcal N(0, I) \ (z = 0 \text{ at } k = 1),

    with :math:`s_k^2 = \beta_k` (``variance="beta"``) or the posterior variance
    :math:`\tilde\beta_k = \frac{1 - \bar\alpha_{k-1}}{1 - \bar\alpha_k}\beta_k` (``"posterior"``).

    Args:
        model: noise predictor called as ``model(x, t)`` with the book's time :math:`t_k = 1 - k/T`.
        x_T: the starting noise ``(B, ...)``.
        schedule: the beta schedule the model was trained with.
        variance: ``"beta"`` or ``"posterior"``.
        generator: the randomness of the injected noise: an int seed, a ``torch.Generator`` or None.
        return_trajectory: also return the T + 1 states.

    Returns:
        :class:`~fmbook.solvers.Solution` with NFE = T. The end state is checked once: NaN or inf there raises a
        ValueError that names ``model``.
    """
    check_callable(model, "model", "model(x, t)")
    check_schedule(schedule)
    if variance not in ("beta", "posterior"):
        raise ValueError(f"variance must be 'beta' or 'posterior', got {variance!r}")
    check_flag(return_trajectory, "return_trajectory")
    x = check_batch(x_T, "x_T")
    generator = as_generator(generator, device=x.device)
    T = schedule.T  # noqa: N806
    states = [x] if return_trajectory else None
    for k in range(T, 0, -1):
        eps = _predict(model, x, k, T)
        x = ancestral_step(eps, x, k, schedule, variance, _noise(x, generator) if k > 1 else None)
        if states is not None:
            states.append(x)
    check_finite_result(x, "model", "the sample")
    times = step_to_time(torch.arange(T, -1, -1), T)
    return Solution(x, T, times, torch.stack(states, 1) if states is not None else None)


def ddim_timesteps(T: int, steps: int) -> list[int]:  # noqa: N803
    """A decreasing sub-sequence ``T = k_0 > k_1 > ... > k_S = 0`` of ``steps + 1`` evenly spaced steps."""
    check_positive_int(T, "T")
    check_positive_int(steps, "steps")
    if steps > T:
        raise ValueError(f"steps must be <= T = {T}, got {steps}")
    return [round(T * (1 - i / steps)) for i in range(steps + 1)]


def ddim_noise_gain(schedule: DDPMSchedule, k: int, j: int) -> float:
    r"""How much the deterministic DDIM step from step ``k`` to an earlier step ``j`` moves per unit error of
    the noise prediction.

    With :math:`\eta = 0` the step of :func:`ddim_sample` is affine in :math:`\hat\varepsilon`:
    substituting :math:`\hat x_0` into
    :math:`x_j = \sqrt{\bar\alpha_j}\hat x_0 + \sqrt{1 - \bar\alpha_j}\,\hat\varepsilon`,

    .. math:: x_j = \sqrt{\bar\alpha_j/\bar\alpha_k}\, x_k + c_{k \to j}\,\hat\varepsilon, \qquad
              c_{k \to j} = \sigma_j - \frac{\alpha_j\,\sigma_k}{\alpha_k}
              = \sqrt{1 - \bar\alpha_j} - \sqrt{\bar\alpha_j}\,\frac{\sqrt{1 - \bar\alpha_k}}{\sqrt{\bar\alpha_k}},

    in the book's symbols :math:`\alpha = \sqrt{\bar\alpha}`, :math:`\sigma = \sqrt{1 - \bar\alpha}`. An error
    :math:`\delta` of :math:`\hat\varepsilon(x_k)` therefore moves :math:`x_j` by exactly :math:`c_{k \to j}\,\delta`;
    :math:`|c_{k \to j}|` is the error factor of the step (it is negative: :math:`\tau = \sigma/\alpha` decreases).

    Args:
        schedule: the beta schedule.
        k: the step the DDIM step starts from, in ``1..T``.
        j: the step it lands on, in ``0..k-1``.

    Returns:
        :math:`c_{k \to j}` as a float (computed in float64).
    """
    if not isinstance(schedule, DDPMSchedule):
        raise TypeError(f"schedule must be a DDPMSchedule, got {type(schedule).__name__}")
    check_positive_int(k, "k")
    if k > schedule.T:
        raise ValueError(f"k must be a step in [1, {schedule.T}], got {k}")
    if isinstance(j, bool) or not isinstance(j, int):
        raise TypeError(f"j must be an int, got {type(j).__name__}")
    if not 0 <= j < k:
        raise ValueError(f"j must be a step in [0, k - 1] = [0, {k - 1}], got {j}")
    log_ab = schedule.log_alpha_bar
    a_k, a_j = torch.exp(0.5 * log_ab[k]), torch.exp(0.5 * log_ab[j])
    s_k, s_j = torch.sqrt(-torch.expm1(log_ab[k])), torch.sqrt(-torch.expm1(log_ab[j]))
    return (s_j - a_j * s_k / a_k).item()


@torch.no_grad()
def ddim_sample(
    model: NoiseModel,
    x_T: Tensor,  # noqa: N803
    schedule: DDPMSchedule,
    steps: int,
    eta: float = 0.0,
    generator: int | torch.Generator | None = None,
    return_trajectory: bool = False,
) -> Solution:
    r"""DDIM sampling (Song, Meng and Ermon 2021, eq. 12) on the steps of :func:`ddim_timesteps`.

    From step :math:`k` to the earlier step :math:`j < k`, with :math:`\hat\varepsilon = \hat\varepsilon(x_k, t_k)`:

    .. math:: \hat x_0 = \frac{x_k - \sqrt{1 - \bar\alpha_k}\,\hat\varepsilon}{\sqrt{\bar\alpha_k}}, \qquad
              x_j = \sqrt{\bar\alpha_j}\,\hat x_0 + \sqrt{1 - \bar\alpha_j - s^2}\,\hat\varepsilon + s z,

    :math:`s = \eta\sqrt{\frac{1 - \bar\alpha_j}{1 - \bar\alpha_k}\big(1 - \frac{\bar\alpha_k}{\bar\alpha_j}\big)}`.
    ``eta = 0`` is deterministic (an Euler step of the probability-flow ODE in the variables
    :math:`x/\alpha_t` and :math:`\sigma_t/\alpha_t`); ``eta = 1`` matches ancestral sampling
    with the posterior variance when ``steps = T``.

    Returns:
        :class:`~fmbook.solvers.Solution` with NFE = ``steps``. The end state is checked once: NaN or inf there
        raises a ValueError that names ``model``.
    """
    check_callable(model, "model", "model(x, t)")
    check_schedule(schedule)
    check_positive_float(eta, "eta", allow_zero=True)
    check_flag(return_trajectory, "return_trajectory")
    x = check_batch(x_T, "x_T")
    generator = as_generator(generator, device=x.device)
    ks = ddim_timesteps(schedule.T, steps)
    ab = schedule.alpha_bar
    states = [x] if return_trajectory else None
    for k, j in zip(ks[:-1], ks[1:]):
        eps = _predict(model, x, k, schedule.T)
        a_k, a_j = ab[k].item(), ab[j].item()
        x0_hat = (x - math.sqrt(1 - a_k) * eps) / math.sqrt(a_k)
        s = eta * math.sqrt((1 - a_j) / (1 - a_k) * (1 - a_k / a_j))
        x = math.sqrt(a_j) * x0_hat + math.sqrt(max(1 - a_j - s * s, 0.0)) * eps
        if s > 0:
            x = x + s * _noise(x, generator)
        if states is not None:
            states.append(x)
    check_finite_result(x, "model", "the sample")
    times = step_to_time(torch.tensor(ks), schedule.T)
    return Solution(x, steps, times, torch.stack(states, 1) if states is not None else None)


def probability_flow_velocity(model: NoiseModel, scheduler: Scheduler) -> Callable[[Tensor, Tensor], Tensor]:
    r"""The velocity of the probability-flow ODE of a noise predictor on an affine Gaussian path.

    With :math:`\hat x_0 = \hat\varepsilon` and :math:`\hat x_1 = (x - \sigma_t\hat\varepsilon)/\alpha_t`,
    :math:`u_t(x) = \dot\alpha_t \hat x_1 + \dot\sigma_t \hat\varepsilon` (:func:`~fmbook.parameterizations.convert`
    from ``"epsilon"`` to ``"velocity"`` with ``clamp=True``: a divisor is floored only where its magnitude
    is below :func:`~fmbook.schedulers.edge_floor`, so :math:`\alpha_t > 0` of a DDPM schedule is used exactly,
    however small, e.g. :math:`\alpha_0 \approx 4.9\cdot10^{-5}` of the cosine schedule). Returns a callable
    ``velocity(x, t)`` for the ODE solvers of :mod:`fmbook.solvers`.
    """
    if not callable(model):
        raise TypeError(f"model must be callable as model(x, t), got {type(model).__name__}")
    if not isinstance(scheduler, Scheduler):
        kind = type(scheduler).__name__
        raise TypeError(f"scheduler must be a fmbook.paths.Scheduler such as DiscreteVPScheduler(schedule), got {kind}")

    def velocity(x: Tensor, t: Tensor) -> Tensor:
        return convert(model(x, t), "epsilon", "velocity", x, t, scheduler, clamp=True)

    return velocity

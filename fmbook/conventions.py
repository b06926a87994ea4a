r"""Conventions of the literature mapped onto the book's: the formulas of the convention crosswalk.

The book's convention: time runs from :math:`t = 0` (source, noise) to :math:`t = 1` (data), the
affine path is :math:`x_t = \alpha_t x_1 + \sigma_t x_0`, a network is called ``model(x, t)`` and the
diffusion coefficient of an SDE is :math:`g_t`. The papers the book cites write the same objects
in other variables; each function below is one translation, named after the paper it serves:

* score SDEs (Song et al. 2021): their time :math:`s = 1 - t` (:func:`song_time`), the VP and VE
  perturbation kernels (:func:`song_vp_kernel`, :func:`song_ve_noise_scale`,
  :func:`song_ve_kernel_std`), their SDEs (:func:`song_vp_sde`, :func:`song_ve_sde`) and the
  forward SDE of any of the book's Gaussian paths (:func:`diffusion_sde_of_scheduler`);
* DDPM and DDIM: the continuous limit of a linear beta schedule (:func:`ddpm_vp_limit`) and DDIM's
  :math:`\alpha` (DDPM's :math:`\bar\alpha`) as the book's pair :math:`(\alpha_t, \sigma_t)`
  (:func:`ddim_alpha_to_book`); the step-to-time map itself is :func:`fmbook.ddpm.step_to_time`;
* EDM (Karras et al. 2022): the scaled state and noise level (:func:`karras_from_book`,
  :func:`book_from_karras`), the ODE of a denoiser in the book's time (:func:`karras_velocity`),
  the preconditioning and loss weight (:func:`edm_preconditioning`, :func:`edm_loss_weight`);
* classifier-free guidance (Ho and Salimans 2022): their scale :math:`w` is the book's
  :math:`w - 1` (:func:`~fmbook.guidance.guidance_scale_from_ho_salimans`, :func:`guidance_scale_to_ho_salimans`),
  and their variance-preserving path indexed by the log-SNR (:func:`vp_coefficients_from_log_snr`);
* rectified flow (Liu et al. 2022) and I-CFM (Tong et al. 2023): the linear interpolant, with
  Tong's optional constant noise (:func:`linear_interpolant`);
* loss weightings: the factor that turns the noise-prediction loss into the loss of another
  parameterization, sample by sample (:func:`fmbook.losses.epsilon_loss_weight`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ._checks import TimeLike, as_time, broadcast_time, check_batch, check_positive_float, check_same_shape
from .ddpm import DDPMSchedule
from .guidance import _check_scale, guidance_scale_from_ho_salimans  # noqa: F401  (re-exported here)
from .paths import PathSample, Scheduler, check_scheduler, time_at_snr


def _times(t: TimeLike, name: str = "t") -> Tensor:
    """A float or a tensor of times in [0, 1] as a 1-D float tensor (float64 for a Python float)."""
    if isinstance(t, Tensor):
        flat = t.reshape(-1) if t.is_floating_point() else t.reshape(-1).to(torch.float64)
        return as_time(flat, flat.shape[0], flat, name)
    return as_time(t, 1, torch.empty(0, dtype=torch.float64), name)


def _positive(x: Tensor | float, name: str) -> Tensor:
    """A float or a floating-point tensor of finite values > 0, as a tensor (float64 for a Python float)."""
    if isinstance(x, bool) or not isinstance(x, (int, float, Tensor)):
        raise TypeError(f"{name} must be a float or a floating-point tensor, got {type(x).__name__}")
    x = torch.as_tensor(x, dtype=torch.float64) if not isinstance(x, Tensor) else x
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if not bool(torch.isfinite(x).all()) or bool((x <= 0).any()):
        raise ValueError(f"{name} must hold finite values > 0")
    return x


def _check_range(low: float, high: float, low_name: str, high_name: str, strict: bool) -> tuple[float, float]:
    low = check_positive_float(low, low_name)
    high = check_positive_float(high, high_name)
    if high < low or (strict and high == low):
        relation = ">" if strict else ">="
        raise ValueError(f"{high_name} must be {relation} {low_name}, got {low_name}={low}, {high_name}={high}")
    return low, high


# ---------------------------------------------------------------------------------------------
# Score-based SDEs (Song et al. 2021): data at s = 0, noise at s = 1
# ---------------------------------------------------------------------------------------------


def song_time(t: TimeLike) -> Tensor:
    r"""The time :math:`s = 1 - t` of Song et al. (2021) at the book's time :math:`t` (and back).

    Song et al. run their SDEs from the data at :math:`s = 0` to the noise at :math:`s = 1`; the map
    is its own inverse, so ``song_time(song_time(t)) == t``. ``t``: a float or a tensor of values
    in [0, 1]; returns a 1-D tensor ``(B,)``.
    """
    return 1 - _times(t)


def song_vp_kernel(s: TimeLike, beta_min: float = 0.1, beta_max: float = 20.0) -> tuple[Tensor, Tensor]:
    r"""The VP perturbation kernel of Song et al. (2021), :math:`x(s) \mid x(0) \sim \mathcal N(m_s\, x(0), v_s I)`.

    With the linear rate :math:`\beta(s) = \beta_{\min} + s(\beta_{\max} - \beta_{\min})` and
    :math:`T(s) = \int_0^s \beta = s\beta_{\min} + \tfrac{s^2}{2}(\beta_{\max} - \beta_{\min})`:
    :math:`m_s = e^{-T(s)/2}` and :math:`v_s = 1 - e^{-T(s)}`. Returns :math:`(m_s, \sqrt{v_s})`, each
    ``(B,)``, for ``s`` a float or a tensor in [0, 1]. At the book's time :math:`t = 1 - s` these are
    the :math:`(\alpha_t, \sigma_t)` of :class:`~fmbook.schedulers.VPScheduler`; Lipman et al. (2022) write
    the same :math:`m_s` as :math:`\alpha_s`, hence their :math:`\alpha_{1-t}`.
    """
    beta_min, beta_max = _check_range(beta_min, beta_max, "beta_min", "beta_max", strict=False)
    s = _times(s, "s")
    big_t = s * beta_min + 0.5 * s**2 * (beta_max - beta_min)
    return torch.exp(-0.5 * big_t), torch.sqrt(-torch.expm1(-big_t))


def song_ve_noise_scale(s: TimeLike, sigma_min: float = 0.01, sigma_max: float = 10.0) -> Tensor:
    r"""The geometric noise scale :math:`\sigma(s) = \sigma_{\min}(\sigma_{\max}/\sigma_{\min})^s` of the VE SDE.

    Song et al. (2021), ``s`` a float or a tensor in [0, 1]; returns ``(B,)``. At :math:`t = 1 - s`
    it is the :math:`\sigma_t` of :class:`~fmbook.schedulers.VEScheduler` (the VE path of Lipman et al. 2022).
    """
    sigma_min, sigma_max = _check_range(sigma_min, sigma_max, "sigma_min", "sigma_max", strict=True)
    s = _times(s, "s")
    return sigma_min * torch.exp(s * math.log(sigma_max / sigma_min))


def song_ve_kernel_std(s: TimeLike, sigma_min: float = 0.01, sigma_max: float = 10.0) -> Tensor:
    r"""The standard deviation :math:`\sqrt{\sigma(s)^2 - \sigma(0)^2}` of the VE kernel :math:`x(s) \mid x(0)`.

    Song et al. (2021), Appendix B: the VE SDE :math:`\dd x = \sqrt{\dd[\sigma^2(s)]/\dd s}\;\dd w`
    gives :math:`x(s) \mid x(0) \sim \mathcal N(x(0), (\sigma(s)^2 - \sigma(0)^2) I)`, which vanishes at
    :math:`s = 0`. The book's VE path keeps the full :math:`\sigma(s)` (its :math:`\sigma_1 = \sigma_{\min}`):
    it is the kernel from a clean data point when :math:`x(0)` itself carries the smallest noise
    level, :math:`\sigma(s)^2 = \text{std}^2 + \sigma_{\min}^2`. ``s``: a float or a tensor in [0, 1].
    """
    scale = song_ve_noise_scale(s, sigma_min, sigma_max)
    return torch.sqrt((scale**2 - sigma_min**2).clamp_min(0))


def song_vp_sde(s: TimeLike, beta_min: float = 0.1, beta_max: float = 20.0) -> tuple[Tensor, Tensor]:
    r"""The VP SDE :math:`\dd x = -\tfrac12\beta(s)\,x\,\dd s + \sqrt{\beta(s)}\,\dd w` of Song et al. (2021).

    Returns its drift coefficient :math:`f_s = -\tfrac12\beta(s)` (the drift is :math:`f_s x`) and
    its diffusion coefficient :math:`g(s) = \sqrt{\beta(s)}`, each ``(B,)``. The book's diffusion
    coefficient at time :math:`t` is :math:`g_t = g(1 - t)`.
    """
    beta_min, beta_max = _check_range(beta_min, beta_max, "beta_min", "beta_max", strict=False)
    s = _times(s, "s")
    beta = beta_min + s * (beta_max - beta_min)
    return -0.5 * beta, torch.sqrt(beta)


def song_ve_sde(s: TimeLike, sigma_min: float = 0.01, sigma_max: float = 10.0) -> tuple[Tensor, Tensor]:
    r"""The VE SDE :math:`\dd x = \sqrt{\dd[\sigma^2(s)]/\dd s}\;\dd w` of Song et al. (2021).

    With :math:`\sigma(s)` of :func:`song_ve_noise_scale`,
    :math:`\dd\sigma^2/\dd s = 2\sigma(s)^2\log(\sigma_{\max}/\sigma_{\min})`. Returns the drift
    coefficient 0 and :math:`g(s) = \sigma(s)\sqrt{2\log(\sigma_{\max}/\sigma_{\min})}`, each ``(B,)``.
    """
    scale = song_ve_noise_scale(s, sigma_min, sigma_max)
    return torch.zeros_like(scale), scale * math.sqrt(2 * math.log(sigma_max / sigma_min))


def diffusion_sde_of_scheduler(scheduler: Scheduler, t: TimeLike) -> tuple[Tensor, Tensor]:
    r"""The forward (noising) SDE, in Song's time :math:`s = 1 - t`, whose kernels are a Gaussian path of the book.

    For :math:`x_t = \alpha_t x_1 + \sigma_t \varepsilon`, the linear SDE
    :math:`\dd x = f\,x\,\dd s + g\,\dd w` run from the data at :math:`s = 0` has the kernels
    :math:`\mathcal N(\alpha_{1-s} x_1, \sigma_{1-s}^2 I)` when (dots are derivatives in the book's :math:`t`)

    .. math:: f = -\frac{\dot\alpha_t}{\alpha_t}, \qquad
              g^2 = 2\sigma_t\Big(\sigma_t\frac{\dot\alpha_t}{\alpha_t} - \dot\sigma_t\Big)
                  = -\frac{\dd\sigma_t^2}{\dd t} + 2\frac{\dot\alpha_t}{\alpha_t}\sigma_t^2 ,

    both evaluated at :math:`t = 1 - s`. Returns :math:`(f, g)`, each ``(B,)``; :math:`g` is the book's
    diffusion coefficient :math:`g_t` of the same path, and :math:`\tfrac12 g_t^2` is the coefficient
    :math:`b_t` of the score in the probability-flow velocity (:func:`~fmbook.parameterizations.velocity_coefficients`).
    Undefined where :math:`\alpha_t = 0` (a ValueError), e.g. at :math:`t = 0` of CondOT.
    """
    scheduler = check_scheduler(scheduler)
    a, s, da, ds = scheduler(_times(t))
    rate = da / a
    if bool((a <= 0).any()) or not bool(torch.isfinite(rate).all()):
        raise ValueError(
            "the diffusion SDE of a scheduler is undefined where alpha_t = 0 (e.g. t = 0 of CondOT), "
            "and overflows where alpha_t is so close to 0 that d(alpha_t)/alpha_t is not finite"
        )
    return -rate, torch.sqrt((2 * s * (s * rate - ds)).clamp_min(0))


# ---------------------------------------------------------------------------------------------
# DDPM (Ho et al. 2020) and DDIM (Song, Meng and Ermon 2021)
# ---------------------------------------------------------------------------------------------


def ddpm_vp_limit(schedule: DDPMSchedule) -> tuple[float, float]:
    r"""The continuous VP rate of a linear DDPM schedule: :math:`(\beta_{\min}, \beta_{\max}) = (T\beta_1, T\beta_T)`.

    Song et al. (2021) take the limit of many steps with :math:`\beta(k/T) \approx T\beta_k`, so the
    schedule of Ho et al. (:math:`T = 1000`, :math:`\beta_k` from :math:`10^{-4}` to 0.02) becomes
    :math:`\beta(s) = 0.1 + 19.9 s`, i.e. :class:`~fmbook.schedulers.VPScheduler` ``(0.1, 20)``. Raises a
    ValueError for a schedule whose betas are not evenly spaced (only a linear schedule has a linear limit).
    """
    if not isinstance(schedule, DDPMSchedule):
        raise TypeError(f"schedule must be a fmbook.ddpm.DDPMSchedule, got {type(schedule).__name__}")
    b = schedule.betas
    if schedule.T > 2:
        steps = b[1:] - b[:-1]
        if bool((steps - steps.mean()).abs().max() > 1e-9 * max(b.abs().max().item(), 1e-12)):
            raise ValueError("schedule must be linear (evenly spaced betas, as ddpm.linear_schedule)")
    return schedule.T * b[0].item(), schedule.T * b[-1].item()


def ddim_alpha_to_book(alpha_ddim: Tensor | float) -> tuple[Tensor, Tensor]:
    r"""DDIM's :math:`\alpha` as the book's pair: :math:`\alpha_t = \sqrt{\alpha^{\mathrm{DDIM}}}`,
    :math:`\sigma_t = \sqrt{1 - \alpha^{\mathrm{DDIM}}}`.

    Song, Meng and Ermon (2021) write :math:`q(x_t \mid x_0) = \mathcal N(\sqrt{\alpha_t} x_0, (1 - \alpha_t) I)`:
    their :math:`\alpha_t` is DDPM's :math:`\bar\alpha_t`, not DDPM's :math:`\alpha_t = 1 - \beta_t`,
    and not the book's :math:`\alpha_t`. ``alpha_ddim``: a float or a tensor of values in (0, 1];
    returns two tensors of its shape.
    """
    a = _positive(alpha_ddim, "alpha_ddim")
    if bool((a > 1).any()):
        raise ValueError("alpha_ddim must hold values in (0, 1]")
    return a.sqrt(), (1 - a).clamp_min(0).sqrt()


# ---------------------------------------------------------------------------------------------
# EDM (Karras et al. 2022): a noise level sigma and the scaled state x / s(t)
# ---------------------------------------------------------------------------------------------


def _alpha_sigma(scheduler: Scheduler, t: Tensor, like: Tensor) -> tuple[Tensor, ...]:
    c = check_scheduler(scheduler).coefficients(t)
    return tuple(v.reshape(v.shape[0], *([1] * (like.ndim - 1))) for v in c)


def karras_from_book(x_t: Tensor, t: TimeLike, scheduler: Scheduler) -> tuple[Tensor, Tensor]:
    r"""EDM's variables of a point of the path: :math:`\hat x = x_t/\alpha_t`, :math:`\sigma = \sigma_t/\alpha_t`.

    Karras et al. (2022) write a diffusion as :math:`x = s(t)\,(y + \sigma(t)\,n)` with :math:`y` the data
    and :math:`n \sim \mathcal N(0, I)`; the book's :math:`x_t = \alpha_t x_1 + \sigma_t x_0` is that form with
    :math:`s = \alpha_t`, :math:`\sigma = \sigma_t/\alpha_t` (so :math:`\sigma^2 = 1/\mathrm{SNR}_t`) and the
    scaled state :math:`\hat x = x_t/\alpha_t = x_1 + \sigma x_0`. ``x_t``: ``(B, ...)``; ``t``: a float or
    ``(B,)``. Returns :math:`(\hat x, \sigma)` with :math:`\sigma` of shape ``(B,)``. Undefined where
    :math:`\alpha_t = 0` (a ValueError): EDM's noise level is infinite there.
    """
    x_t = check_batch(x_t, "x_t")
    t = as_time(t, x_t.shape[0], x_t)
    a, s, _, _ = _alpha_sigma(scheduler, t, x_t)
    if bool((a <= 0).any()):
        raise ValueError("the EDM noise level sigma_t / alpha_t is infinite where alpha_t = 0; use t > 0")
    return x_t / a, (s / a).reshape(-1)


def book_from_karras(x_hat: Tensor, sigma: Tensor, scheduler: Scheduler) -> tuple[Tensor, Tensor]:
    r"""The inverse of :func:`karras_from_book`: the time of noise level :math:`\sigma`, and :math:`\alpha_t\hat x`.

    The time is found by :func:`~fmbook.schedulers.time_at_snr` at the angle
    :math:`\operatorname{atan2}(\alpha_t, \sigma_t) = \operatorname{atan2}(1, \sigma)`, so every
    scheduler of the book (whose SNR increases with :math:`t`) can be used; ``sigma`` (``(B,)``, > 0)
    must lie in the scheduler's range of :math:`\sigma_t/\alpha_t`. ``x_hat``: ``(B, ...)``. Returns
    :math:`(x_t, t)`.
    """
    x_hat = check_batch(x_hat, "x_hat")
    sigma = _positive(sigma, "sigma")
    if sigma.shape != (x_hat.shape[0],):
        raise ValueError(f"sigma must have shape ({x_hat.shape[0]},), got {tuple(sigma.shape)}")
    angle = torch.atan2(torch.ones_like(sigma), sigma)
    t = time_at_snr(angle, check_scheduler(scheduler))
    a = _alpha_sigma(scheduler, t, x_hat)[0]
    return a * x_hat, t


Denoiser = Callable[[Tensor, Tensor], Tensor]


def karras_velocity(denoiser: Denoiser, scheduler: Scheduler) -> Callable[[Tensor, Tensor], Tensor]:
    r"""The book's velocity of an EDM denoiser :math:`D(\hat x; \sigma)`, from the ODE of Karras et al. (2022, eq. 4).

    Their probability-flow ODE for :math:`x = s\,\hat x` is
    :math:`\dd x = \big[\frac{\dot s}{s} x - s^2\dot\sigma\sigma\,\nabla_x\log p(x/s; \sigma)\big]\dd\tau`, where the
    gradient in :math:`x` is :math:`\nabla_x\log p(x/s; \sigma) = (D(x/s; \sigma) - x/s)/(s\sigma^2)` (their eq. 3).
    With :math:`s = \alpha_t`, :math:`\sigma = \tilde\sigma_t = \sigma_t/\alpha_t` and the book's :math:`t` as clock,

    .. math:: u_t(x) = \frac{\dot\alpha_t}{\alpha_t}\,x
              + \alpha_t\,\frac{\dd\tilde\sigma_t}{\dd t}\,
                \frac{x/\alpha_t - D(x/\alpha_t; \tilde\sigma_t)}{\tilde\sigma_t} .

    ``denoiser(x_hat, sigma)``: ``x_hat`` ``(B, ...)``, ``sigma`` ``(B,)``, returns the denoised data
    ``(B, ...)``: the book's :math:`x_1`-prediction. Returns ``velocity(x, t)`` for the solvers of
    :mod:`fmbook.solvers`; it needs :math:`\alpha_t > 0` and :math:`\sigma_t > 0` (open interval of CondOT).
    """
    if not callable(denoiser):
        raise TypeError(f"denoiser must be callable as denoiser(x_hat, sigma), got {type(denoiser).__name__}")
    check_scheduler(scheduler)

    def velocity(x: Tensor, t: Tensor) -> Tensor:
        t = broadcast_time(t, x.shape[0], x)
        a, s, da, ds = _alpha_sigma(scheduler, t, x)
        sigma = s / a
        d_sigma = (ds * a - s * da) / a**2
        x_hat = x / a
        return da / a * x + a * d_sigma * (x_hat - denoiser(x_hat, sigma.reshape(-1))) / sigma

    return velocity


def edm_preconditioning(sigma: Tensor | float, sigma_data: float = 0.5) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""EDM's preconditioning :math:`D = c_{\mathrm{skip}}x + c_{\mathrm{out}}F(c_{\mathrm{in}}x; c_{\mathrm{noise}})`.

    :math:`c_{\mathrm{skip}} = \sigma_d^2/(\sigma^2 + \sigma_d^2)`,
    :math:`c_{\mathrm{out}} = \sigma\sigma_d/\sqrt{\sigma^2 + \sigma_d^2}`,
    :math:`c_{\mathrm{in}} = 1/\sqrt{\sigma^2 + \sigma_d^2}`, :math:`c_{\mathrm{noise}} = \tfrac14\log\sigma`, with
    :math:`\sigma_d` the standard deviation of the data (0.5 in the paper). ``sigma``: a float or a tensor
    of values > 0; returns four tensors of its shape.
    """
    sigma = _positive(sigma, "sigma")
    sd = check_positive_float(sigma_data, "sigma_data")
    total = sigma**2 + sd**2
    return sd**2 / total, sigma * sd / total.sqrt(), 1 / total.sqrt(), 0.25 * torch.log(sigma)


def edm_loss_weight(sigma: Tensor | float, sigma_data: float = 0.5) -> Tensor:
    r"""The loss weight :math:`\lambda(\sigma) = (\sigma^2 + \sigma_d^2)/(\sigma\sigma_d)^2` of Karras et al. (2022).

    It multiplies the denoising loss :math:`\lVert D(y + \sigma n; \sigma) - y\rVert^2`, an
    :math:`x_1`-prediction loss in the book's terms, and equals :math:`1/c_{\mathrm{out}}^2`
    (:func:`edm_preconditioning`). ``sigma``: a float or a tensor of values > 0.
    """
    sigma = _positive(sigma, "sigma")
    sd = check_positive_float(sigma_data, "sigma_data")
    weight = (sigma**2 + sd**2) / (sigma * sd) ** 2
    if not bool(torch.isfinite(weight).all()):
        raise ValueError("sigma must not be so close to 0 that the weight 1/sigma^2 overflows (a noise level > 0)")
    return weight


# ---------------------------------------------------------------------------------------------
# Classifier-free guidance and the log-SNR clock (Ho and Salimans 2022)
# ---------------------------------------------------------------------------------------------


def guidance_scale_to_ho_salimans(w_book: float) -> float:
    r"""Ho and Salimans' guidance scale of the book's :math:`w`: :math:`w - 1`.

    The inverse of :func:`~fmbook.guidance.guidance_scale_from_ho_salimans`.
    """
    return _check_scale(w_book, "w_book") - 1.0


def vp_coefficients_from_log_snr(log_snr: Tensor) -> tuple[Tensor, Tensor]:
    r"""The variance-preserving path of log-SNR :math:`\lambda`: :math:`\alpha^2 = \mathrm{sigmoid}(\lambda)`.

    Ho and Salimans (2022) write :math:`z_\lambda = \alpha_\lambda x + \sigma_\lambda\varepsilon` with these
    coefficients; their :math:`\lambda` is :func:`~fmbook.schedulers.log_snr` of the book's time for any
    scheduler with :math:`\alpha_t^2 + \sigma_t^2 = 1`, and it increases towards the data. ``log_snr``: a
    floating-point tensor (any shape, finite); returns :math:`(\alpha, \sigma)` of its shape, computed
    as :math:`\sqrt{\mathrm{sigmoid}(\pm\lambda)}` so that both stay accurate for large :math:`|\lambda|`.
    """
    if not isinstance(log_snr, Tensor) or not log_snr.is_floating_point():
        raise TypeError("log_snr must be a floating-point tensor")
    if not bool(torch.isfinite(log_snr).all()):
        raise ValueError("log_snr must hold finite values")
    return torch.sigmoid(log_snr).sqrt(), torch.sigmoid(-log_snr).sqrt()


# ---------------------------------------------------------------------------------------------
# Rectified flow (Liu et al. 2022) and I-CFM (Tong et al. 2023)
# ---------------------------------------------------------------------------------------------


def linear_interpolant(
    x0: Tensor, x1: Tensor, t: TimeLike, sigma: float = 0.0, noise: Tensor | None = None
) -> PathSample:
    r"""The linear interpolant of rectified flow and I-CFM.

    :math:`x_t = t x_1 + (1 - t) x_0 + \sigma\varepsilon`, with the regression target :math:`x_1 - x_0`.

    Liu et al. (2022) write :math:`X_t = t X_1 + (1 - t) X_0` with :math:`X_0 \sim \pi_0` the source,
    which is the book's CondOT path; Tong et al. (2023) add a constant noise :math:`\sigma \ge 0` around
    the line, :math:`p_t(x \mid x_0, x_1) = \mathcal N(t x_1 + (1 - t) x_0, \sigma^2 I)`, whose conditional
    velocity is still :math:`x_1 - x_0`. For :math:`\sigma > 0` this is not an affine path of the book
    (it has a third, independent noise term). ``x0``, ``x1``: ``(B, ...)`` paired row by row; ``t``: a
    float or ``(B,)``; ``noise``: :math:`\varepsilon`, same shape, needed when ``sigma > 0``.
    Returns a :class:`fmbook.paths.PathSample`.
    """
    x0 = check_batch(x0, "x0")
    x1 = check_batch(x1, "x1")
    check_same_shape(x0, x1, "x0", "x1")
    sigma = check_positive_float(sigma, "sigma", allow_zero=True)
    t = as_time(t, x0.shape[0], x0)
    tt = t.reshape(-1, *([1] * (x0.ndim - 1)))
    x_t = tt * x1 + (1 - tt) * x0
    if sigma > 0:
        if noise is None:
            raise ValueError("noise must be given when sigma > 0")
        noise = check_batch(noise, "noise")
        check_same_shape(noise, x0, "noise", "x0")
        x_t = x_t + sigma * noise
    return PathSample(x_t, x1 - x0, t)

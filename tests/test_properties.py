"""Property-based tests (hypothesis): random schedulers, times, shapes and dtypes.

Every scheduler, conversion, loss and solver of fmbook must give finite numbers over the whole
of t in [0, 1], endpoints included, in float32 and float64 (the ends where a formula divides
are guarded by documented clamps, or raise a ValueError that names the undefined quantity).
"""

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmbook import data, metrics, paths
from fmbook._checks import as_time
from fmbook.losses import cfm_loss, l1_distance, log_cosh, squared_euclidean
from fmbook.paths import PARAMETERIZATIONS, AffinePath
from fmbook.solvers import FIXED_STEP_METHODS, solve_adaptive, solve_ode

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DTYPES = st.sampled_from([torch.float32, torch.float64])
UNIT = st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def schedulers(draw):
    """Any scheduler of fmbook with random (valid) hyper-parameters."""
    kind = draw(st.sampled_from(["condot", "poly", "cosine", "vp", "ve", "ot"]))
    if kind == "condot":
        return paths.CondOTScheduler()
    if kind == "poly":
        return paths.PolynomialScheduler(draw(st.floats(1.0, 10.0)))  # n < 1 is refused
    if kind == "cosine":
        return paths.CosineScheduler()
    if kind == "vp":
        beta_min = draw(st.floats(0.01, 2.0))
        return paths.VPScheduler(beta_min, beta_min + draw(st.floats(0.0, 40.0)))
    if kind == "ve":
        sigma_min = draw(st.floats(1e-3, 0.5))
        return paths.VEScheduler(sigma_min, sigma_min * draw(st.floats(1.5, 1e4)))
    return paths.OTScheduler(draw(st.floats(1e-6, 0.5)))


@st.composite
def times(draw, dtype):
    """Random times in [0, 1] with both endpoints always included."""
    values = draw(st.lists(UNIT, min_size=0, max_size=14))
    return torch.tensor([0.0, 1.0, *values], dtype=dtype)


def finite(*tensors):
    return all(bool(torch.isfinite(x).all()) for x in tensors)


@SETTINGS
@given(scheduler=schedulers(), dtype=DTYPES, data_=st.data())
def test_scheduler_coefficients_finite_on_closed_interval(scheduler, dtype, data_):
    t = data_.draw(times(dtype))
    out = scheduler(t)
    assert all(c.dtype == dtype and c.shape == t.shape for c in out)
    assert finite(*out), (scheduler, t, out)
    assert bool((out.sigma_t >= 0).all()) and bool((out.alpha_t >= 0).all())


@SETTINGS
@given(
    scheduler=schedulers(),
    dtype=DTYPES,
    source=st.sampled_from(PARAMETERIZATIONS),
    target=st.sampled_from(PARAMETERIZATIONS),
    batch=st.integers(1, 6),
    dim=st.integers(1, 4),
    data_=st.data(),
)
def test_clamped_conversions_finite_on_closed_interval(scheduler, dtype, source, target, batch, dim, data_):
    t = data_.draw(st.lists(UNIT, min_size=batch, max_size=batch))
    t = torch.tensor(t, dtype=dtype)
    t[0] = data_.draw(st.sampled_from([0.0, 1.0]))  # an endpoint in every example
    g = torch.Generator().manual_seed(data_.draw(st.integers(0, 2**16)))
    x_t = torch.randn(batch, dim, generator=g).to(dtype)
    prediction = torch.randn(batch, dim, generator=g).to(dtype)
    out = paths.convert(prediction, source, target, x_t, t, scheduler, clamp=True)
    assert out.shape == x_t.shape and out.dtype == dtype
    assert finite(out), (scheduler, source, target, t)


@pytest.mark.parametrize("t", [0.0, 1.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("source", PARAMETERIZATIONS)
@pytest.mark.parametrize("target", PARAMETERIZATIONS)
def test_unclamped_conversions_at_the_ends_are_finite_or_named(t, dtype, source, target):
    """Without clamping, a conversion at t = 0 or 1 is finite where defined, else a ValueError."""
    g = torch.Generator().manual_seed(0)
    x_t, prediction = torch.randn(3, 2, generator=g).to(dtype), torch.randn(3, 2, generator=g).to(dtype)
    for scheduler in (paths.CondOTScheduler(), paths.CosineScheduler(), paths.VPScheduler(), paths.VEScheduler()):
        try:
            out = paths.convert(prediction, source, target, x_t, t, scheduler)
        except ValueError as error:
            assert "undefined" in str(error)
        else:
            assert finite(out), (scheduler, source, target, t)


@SETTINGS
@given(
    scheduler=schedulers(),
    dtype=DTYPES,
    batch=st.integers(1, 12),
    event=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    divergence=st.sampled_from([squared_euclidean, log_cosh, l1_distance]),
    t_end=st.sampled_from([None, 0.0, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_cfm_loss_finite(scheduler, dtype, batch, event, divergence, t_end, seed):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(batch, *event, generator=g).to(dtype)
    x1 = (3 * torch.randn(batch, *event, generator=g)).to(dtype)
    t = torch.rand(batch, generator=g).to(dtype)
    if t_end is not None:
        t[:] = t_end

    def model(x, tt):
        return torch.tanh(x) * tt.reshape(-1, *[1] * (x.ndim - 1))

    loss = cfm_loss(model, x0, x1, t=t, path=AffinePath(scheduler), divergence=divergence)
    assert loss.dtype == dtype and loss.ndim == 0
    assert math.isfinite(loss.item()) and loss.item() >= 0


@SETTINGS
@given(
    scheduler=schedulers(),
    dtype=DTYPES,
    method=st.sampled_from(sorted(FIXED_STEP_METHODS)),
    steps=st.integers(1, 12),
    batch=st.integers(1, 8),
    dim=st.integers(1, 3),
    n_data=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_fixed_step_solvers_finite_with_exact_marginal_field(scheduler, dtype, method, steps, batch, dim, n_data, seed):
    """Solving the exact marginal flow from t = 0 to t = 1 (the data end, where sigma_t may be 0)."""
    g = torch.Generator().manual_seed(seed)
    points = torch.randn(n_data, dim, generator=g).to(dtype)
    x0 = torch.randn(batch, dim, generator=g).to(dtype)
    sol = solve_ode(lambda x, t: paths.marginal_velocity(x, t, points, scheduler), x0, steps=steps, method=method)
    assert sol.x.dtype == dtype and sol.x.shape == x0.shape
    assert finite(sol.x), (scheduler, method, steps)
    assert sol.nfe == steps * FIXED_STEP_METHODS[method][1]


@SETTINGS
@given(dtype=DTYPES, batch=st.integers(1, 8), t0=st.sampled_from([0.0, 1.0]), rate=st.floats(-3.0, 3.0))
def test_adaptive_solver_finite_and_accurate(dtype, batch, t0, rate):
    """dx/dt = rate * x between the ends of [0, 1], either way: x(t1) = x(t0) exp(rate (t1 - t0))."""
    x0 = torch.linspace(-2, 2, batch, dtype=dtype)[:, None]
    sol = solve_adaptive(lambda x, t: rate * x, x0, t0=t0, t1=1.0 - t0, rtol=1e-6, atol=1e-6)
    expected = x0 * math.exp(rate * (1.0 - 2 * t0))
    assert finite(sol.x) and sol.x.dtype == dtype
    torch.testing.assert_close(sol.x, expected, rtol=1e-4, atol=1e-4)


@SETTINGS
@given(
    scheduler=schedulers(),
    dtype=DTYPES,
    batch=st.integers(1, 8),
    dim=st.integers(1, 3),
    n_data=st.integers(1, 6),
    seed=st.integers(0, 2**16),
    data_=st.data(),
)
def test_marginal_fields_finite_on_closed_interval(scheduler, dtype, batch, dim, n_data, seed, data_):
    g = torch.Generator().manual_seed(seed)
    points = torch.randn(n_data, dim, generator=g).to(dtype)
    x = (2 * torch.randn(batch, dim, generator=g)).to(dtype)
    t = torch.tensor(data_.draw(st.lists(UNIT, min_size=batch, max_size=batch)), dtype=dtype)
    t[0] = data_.draw(st.sampled_from([0.0, 1.0]))
    for field in (paths.posterior_mean, paths.marginal_velocity, paths.marginal_score, paths.marginal_log_density):
        out = field(x, t, points, scheduler)
        assert out.dtype == dtype and finite(out), (field.__name__, scheduler, t)


@SETTINGS
@given(batch=st.integers(1, 20), form=st.sampled_from(["float", "0d", "flat", "column"]), value=UNIT)
def test_time_forms_broadcast_to_batch(batch, form, value):
    like = torch.zeros(batch, 3, dtype=torch.float64)
    t = {
        "float": value,
        "0d": torch.tensor(value),
        "flat": torch.full((batch,), value),
        "column": torch.full((batch, 1), value),
    }[form]
    out = as_time(t, batch, like)
    assert out.shape == (batch,) and out.dtype == torch.float64
    assert bool((out == torch.tensor(value, dtype=torch.float32).double()).all() | (out == value).all())


@SETTINGS
@given(
    name=st.sampled_from(sorted(data.DATASETS)),
    n=st.integers(1, 300),
    seed=st.integers(0, 2**32 - 1),
)
def test_samplers_shape_dtype_finite_and_seeded(name, n, seed):
    x = data.sample(name, n, generator=seed)
    assert x.shape == (n, 2) and x.dtype == torch.float32 and finite(x)
    assert torch.equal(x, data.sample(name, n, generator=seed))
    assert float(x.abs().max()) < 10.0


@SETTINGS
@given(n=st.integers(1, 40), m=st.integers(1, 40), dim=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_sliced_w2_is_a_finite_symmetric_nonnegative_distance(n, m, dim, seed):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(n, dim, generator=g), torch.randn(m, dim, generator=g) + 1
    ab, ba = metrics.sliced_w2(a, b, 32), metrics.sliced_w2(b, a, 32)
    assert math.isfinite(ab) and ab >= 0
    assert ab == pytest.approx(ba, rel=1e-12, abs=1e-12)
    assert metrics.sliced_w2(a, a, 32) == 0.0

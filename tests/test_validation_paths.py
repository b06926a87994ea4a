"""Bad input to fmbook.paths: schedulers, the affine path, conversions and marginal fields."""

import math

import pytest
import torch

from fmbook import paths
from fmbook.paths import (
    AffinePath,
    CondOTScheduler,
    CosineScheduler,
    OTScheduler,
    PolynomialScheduler,
    VEScheduler,
    VPScheduler,
)

X = torch.randn(4, 2)
DATA = torch.randn(6, 2)

BAD_CONSTRUCTORS = [
    (lambda: PolynomialScheduler(0.0), ValueError, r"n must be a finite number > 0"),
    (lambda: PolynomialScheduler(-1.0), ValueError, r"n must be"),
    (lambda: PolynomialScheduler(math.nan), ValueError, r"n must be"),
    (lambda: PolynomialScheduler("2"), TypeError, r"n must be a number"),
    (lambda: VPScheduler(beta_min=0.0), ValueError, r"beta_min must be a finite number > 0"),
    (lambda: VPScheduler(beta_max=-1.0), ValueError, r"beta_max must be"),
    (lambda: VPScheduler(beta_min=5.0, beta_max=1.0), ValueError, r"beta_max must be >= beta_min"),
    (lambda: VPScheduler(beta_max=math.inf), ValueError, r"beta_max must be"),
    (lambda: VEScheduler(sigma_min=0.0), ValueError, r"sigma_min must be a finite number > 0"),
    (lambda: VEScheduler(sigma_max=-2.0), ValueError, r"sigma_max must be"),
    (lambda: VEScheduler(sigma_min=3.0, sigma_max=2.0), ValueError, r"sigma_max must be > sigma_min"),
    (lambda: VEScheduler(sigma_min=2.0, sigma_max=2.0), ValueError, r"sigma_max must be > sigma_min"),
    (lambda: OTScheduler(0.0), ValueError, r"sigma_min must lie in \(0, 1\)"),
    (lambda: OTScheduler(1.0), ValueError, r"sigma_min must lie in \(0, 1\)"),
    (lambda: OTScheduler(-0.1), ValueError, r"sigma_min must lie in"),
    (lambda: OTScheduler(None), TypeError, r"sigma_min must be a number"),
]


@pytest.mark.parametrize("make, exc, match", BAD_CONSTRUCTORS, ids=[c[2] for c in BAD_CONSTRUCTORS])
def test_bad_scheduler_hyper_parameters(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


SCHEDULERS = [
    CondOTScheduler(),
    PolynomialScheduler(2.0),
    CosineScheduler(),
    VPScheduler(),
    VEScheduler(),
    OTScheduler(),
]

BAD_TIMES = [
    (-0.1, ValueError, r"t must lie in \[0, 1\]"),
    (1.5, ValueError, r"t must lie in \[0, 1\]"),
    (math.nan, ValueError, r"t must lie in \[0, 1\]"),
    (math.inf, ValueError, r"t must lie in \[0, 1\]"),
    (True, TypeError, r"t must be a float or a tensor, got bool"),
    ("0.5", TypeError, r"t must be a float or a torch.Tensor"),
    (torch.tensor([0.2, -0.01]), ValueError, r"t must lie in \[0, 1\]"),
    (torch.tensor([0.2, 1.01]), ValueError, r"t must lie in \[0, 1\]"),
    (torch.tensor([0.2, math.nan]), ValueError, r"t must contain only finite values"),
    (torch.tensor([math.inf]), ValueError, r"t must contain only finite values"),
]


@pytest.mark.parametrize("scheduler", SCHEDULERS, ids=repr)
@pytest.mark.parametrize("t, exc, match", BAD_TIMES, ids=[repr(c[0]) for c in BAD_TIMES])
def test_scheduler_bad_times(scheduler, t, exc, match):
    with pytest.raises(exc, match=match):
        scheduler(t)


def test_scheduler_accepts_int_and_float16_times():
    out = CondOTScheduler()(torch.tensor([0, 1]))
    assert out.alpha_t.tolist() == [0.0, 1.0]
    half = CosineScheduler()(torch.tensor([0.0, 0.5, 1.0], dtype=torch.float16))
    assert half.alpha_t.dtype == torch.float16 and bool(torch.isfinite(half.d_sigma_t).all())


BAD_SAMPLE = [
    (dict(x0=X.numpy()), TypeError, r"x0 must be a torch.Tensor"),
    (dict(x0=X.long()), TypeError, r"x0 must be a floating-point tensor"),
    (dict(x1=torch.ones(4, 2, dtype=torch.int32)), TypeError, r"x1 must be a floating-point tensor"),
    (dict(x0=torch.randn(4)), ValueError, r"x0 must have shape \(batch, \.\.\.\)"),
    (dict(x0=torch.randn(0, 2), x1=torch.randn(0, 2)), ValueError,
     r"x0 must have shape \(batch, \.\.\.\) with batch >= 1"),
    (dict(x1=torch.randn(3, 2)), ValueError, r"x0 and x1 must have the same shape"),
    (dict(x1=torch.randn(4, 3)), ValueError, r"x0 and x1 must have the same shape"),
    (dict(t=torch.rand(3)), ValueError, r"t must be a float or have shape \(4,\)"),
    (dict(t=torch.rand(4, 2)), ValueError, r"t must be a float or have shape \(4,\)"),
]


@pytest.mark.parametrize("change, exc, match", BAD_SAMPLE, ids=[c[2] for c in BAD_SAMPLE])
def test_affine_path_sample_bad_input(change, exc, match):
    args = dict(x0=X, x1=X + 1, t=0.5) | change
    with pytest.raises(exc, match=match):
        AffinePath(CondOTScheduler()).sample(**args)


#: Values that AffinePath.sample does not read (it runs once per training step: no host sync); the
#: same values are refused at the public boundary, by the fields and conversions of the same path.
BAD_VALUES = [
    (dict(x0=torch.full((4, 2), math.nan)), ValueError, r"x0 must contain only finite values"),
    (dict(x1=torch.full((4, 2), math.inf)), ValueError, r"x1 must contain only finite values"),
    (dict(t=2.0), ValueError, r"t must lie in \[0, 1\]"),
    (dict(t=torch.tensor([0.1, 0.2, 0.3, -1.0])), ValueError, r"t must lie in \[0, 1\]"),
]


@pytest.mark.parametrize("change, exc, match", BAD_VALUES)
def test_affine_path_sample_reads_no_values(change, exc, match):
    args = dict(x0=X, x1=X + 1, t=0.5) | change
    out = AffinePath(CondOTScheduler()).sample(**args)  # no check of values, no sync
    assert out.x_t.shape == X.shape and out.dx_t.shape == X.shape
    with pytest.raises(exc, match=match.replace("x0", "x_t").replace("x1 must", "x1 must")):
        paths.conditional_velocity(args["x0"], args["x1"], args["t"], CondOTScheduler())


@pytest.mark.parametrize("bad", [None, CondOTScheduler, "condot", 1.0])
def test_affine_path_bad_scheduler(bad):
    with pytest.raises(TypeError, match=r"scheduler must be a fmbook.paths.Scheduler instance"):
        AffinePath(bad)


def test_affine_path_mixed_dtypes_follow_x0():
    out = AffinePath(CondOTScheduler()).sample(X.double(), X.double(), torch.full((4,), 0.5, dtype=torch.float16))
    assert out.x_t.dtype == torch.float64 and out.t.dtype == torch.float64


BAD_VELOCITY_FROM_X1 = [
    (dict(x1_pred=X[:3]), ValueError, r"x1_pred and x_t must have the same shape"),
    (dict(x1_pred=X.int()), TypeError, r"x1_pred must be a floating-point tensor"),
    (dict(x_t=torch.full((4, 2), math.nan)), ValueError, r"x_t must contain only finite values"),
    (dict(x_t=torch.randn(0, 2), x1_pred=torch.randn(0, 2)), ValueError, r"x_t must hold at least one sample"),
    (dict(t=torch.rand(5)), ValueError, r"t must be a float or have shape \(4,\)"),
    (dict(t=-0.5), ValueError, r"t must lie in \[0, 1\]"),
    (dict(scheduler=None), TypeError, r"scheduler must be a fmbook.paths.Scheduler instance"),
]


@pytest.mark.parametrize("change, exc, match", BAD_VELOCITY_FROM_X1, ids=[c[2] for c in BAD_VELOCITY_FROM_X1])
def test_velocity_from_x1_bad_input(change, exc, match):
    args = dict(x1_pred=X, x_t=X, t=torch.rand(4), scheduler=CondOTScheduler()) | change
    with pytest.raises(exc, match=match):
        paths.velocity_from_x1(**args)


BAD_CONVERT = [
    (dict(source="eps"), ValueError, r"source must be one of"),
    (dict(target="noise"), ValueError, r"target must be one of"),
    (dict(source=None), ValueError, r"source must be one of"),
    (dict(prediction=X[:, :1]), ValueError, r"prediction and x_t must have the same shape"),
    (dict(prediction=X.long()), TypeError, r"prediction must be a floating-point tensor"),
    (dict(x_t=[[0.0, 1.0]]), TypeError, r"x_t must be a torch.Tensor"),
    (dict(prediction=torch.full((4, 2), math.inf)), ValueError, r"prediction must contain only finite values"),
    (dict(t=1.5), ValueError, r"t must lie in \[0, 1\]"),
    (dict(t=torch.rand(2)), ValueError, r"t must be a float or have shape \(4,\)"),
    (dict(scheduler="cosine"), TypeError, r"scheduler must be a fmbook.paths.Scheduler instance"),
    # exact divisions by zero at the ends, without clamping
    (dict(source="x1", target="velocity", t=1.0), ValueError, r"x0 from an x1 prediction \(sigma_t = 0\)"),
    (dict(source="epsilon", target="x1", t=0.0), ValueError, r"alpha_t = 0"),
    (dict(source="velocity", target="score", t=1.0), ValueError, r"the score \(sigma_t = 0\)"),
    (dict(source="velocity", target="x1", t=0.0, scheduler=PolynomialScheduler(2.0)), ValueError, r"velocity -> "),
]


@pytest.mark.parametrize("change, exc, match", BAD_CONVERT, ids=[c[2] for c in BAD_CONVERT])
def test_convert_bad_input(change, exc, match):
    args = dict(prediction=X, source="velocity", target="x1", x_t=X, t=0.5, scheduler=CondOTScheduler()) | change
    with pytest.raises(exc, match=match):
        paths.convert(**args)


@pytest.mark.parametrize(
    "change, exc, match",
    [
        (dict(parameterization="u"), ValueError, r"parameterization must be one of"),
        (dict(scheduler=None), TypeError, r"scheduler must be a fmbook.paths.Scheduler instance"),
        (dict(t=torch.tensor([0.5, 0.5, 0.5, math.nan])), ValueError, r"t must contain only finite values"),
    ],
)
def test_endpoints_from_bad_input(change, exc, match):
    args = dict(prediction=X, parameterization="velocity", x_t=X, t=0.5, scheduler=CondOTScheduler()) | change
    with pytest.raises(exc, match=match):
        paths.endpoints_from(**args)


MARGINALS = [paths.posterior_mean, paths.marginal_velocity, paths.marginal_score, paths.marginal_log_density]

BAD_MARGINAL = [
    (dict(x_t=torch.randn(4, 3)), ValueError, r"data must have 3 columns"),
    (dict(x_t=torch.randn(4)), ValueError, r"x_t must have shape \(batch, dim\)"),
    (dict(x_t=torch.randn(0, 2)), ValueError, r"x_t must hold at least one point"),
    (dict(x_t=X.long()), TypeError, r"x_t must be a floating-point tensor"),
    (dict(x_t=torch.full((4, 2), math.nan)), ValueError, r"x_t must contain only finite values"),
    (dict(data=torch.randn(0, 2)), ValueError, r"data must hold at least one point"),
    (dict(data=torch.randn(5, 2, 1)), ValueError, r"data must have shape \(batch, dim\)"),
    (dict(data=torch.full((5, 2), math.inf)), ValueError, r"data must contain only finite values"),
    (dict(data=DATA.numpy()), TypeError, r"data must be a torch.Tensor"),
    (dict(t=-1e-3), ValueError, r"t must lie in \[0, 1\]"),
    (dict(t=torch.rand(3)), ValueError, r"t must be a float or have shape \(4,\)"),
    (dict(scheduler=CosineScheduler), TypeError, r"scheduler must be a fmbook.paths.Scheduler instance"),
]


@pytest.mark.parametrize("fn", MARGINALS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("change, exc, match", BAD_MARGINAL, ids=[c[2] for c in BAD_MARGINAL])
def test_marginal_fields_bad_input(fn, change, exc, match):
    args = dict(x_t=X, t=0.5, data=DATA, scheduler=None) | change
    with pytest.raises(exc, match=match):
        fn(**args)


def test_marginal_fields_accept_float64_queries_with_float32_data():
    v = paths.marginal_velocity(X.double(), 0.3, DATA)
    assert v.dtype == torch.float64 and bool(torch.isfinite(v).all())

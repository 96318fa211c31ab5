"""Tests of the fused BatchNorm / LayerNorm kernels: compiled vs NumPy twin vs a float64 oracle.

The oracle below is written independently of both kernels: statistics with np.mean / np.var in
float64, and the backward by the step-by-step chain rule (through var and mean), not by the
closed form the kernels implement. Finite differences check that closed form once more.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_modules import compiled_module, implementations, relayout

from minigrad.kernels import reference

_norm = compiled_module("_norm")
IMPLS = implementations("_norm")

DTYPES = [np.float32, np.float64]
# Error bound relative to the largest magnitude involved: float32 results come from float64
# statistics and a few float32 roundings per element; float64 ones from a few float64 roundings.
TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-11}
EPS = 1e-5
MOMENTUM = 0.9


def assert_close(actual, expected, dtype, scale=None):
    """|actual - expected| <= tol * max(1, scale) elementwise, scale defaulting to max|expected|."""
    actual = np.asarray(actual)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape
    if scale is None:
        scale = float(np.max(np.abs(expected))) if expected.size else 1.0
    tol = TOL[np.dtype(dtype)] * max(1.0, scale)
    np.testing.assert_allclose(actual.astype(np.float64), expected, rtol=0, atol=tol)


LAYOUTS = ["contiguous", "transposed", "step", "negative", "unaligned"]


# ----------------------------------------------------------------------------- float64 oracle


def oracle_normalize(x2, gamma2, beta2, mean=None, var=None):
    """Normalise the columns of (M, K) x2 over axis 0; returns (y, mean, var)."""
    if mean is None:
        mean, var = x2.mean(axis=0), x2.var(axis=0)
    x_hat = (x2 - mean) / np.sqrt(var + EPS)
    return x_hat * gamma2 + beta2, mean, var


def oracle_backward(dy2, x2, gamma2, mean, var, training=True):
    """dx of the column normalisation by the chain rule through var and mean."""
    count = x2.shape[0]
    rstd = 1.0 / np.sqrt(var + EPS)
    dx_hat = dy2 * gamma2
    if not training:
        return dx_hat * rstd
    xc = x2 - mean
    dvar = np.sum(dx_hat * xc, axis=0) * -0.5 * rstd**3
    dmean = -np.sum(dx_hat * rstd, axis=0) + dvar * np.mean(-2.0 * xc, axis=0)
    return dx_hat * rstd + dvar * 2.0 * xc / count + dmean / count


def to_columns(a):
    """(N, C, ...) -> (N * ..., C) float64, channel as the column."""
    return np.moveaxis(a.astype(np.float64), 1, -1).reshape(-1, a.shape[1])


def from_columns(a2, shape):
    moved = (shape[0],) + tuple(shape[2:]) + (shape[1],)
    return np.moveaxis(a2.reshape(moved), -1, 1)


def oracle_batchnorm_forward(x, gamma, beta, running_mean, running_var, training):
    """(y, mean, rstd, new_running_mean, new_running_var) in float64."""
    channels = x.shape[1]
    g = np.ones(channels) if gamma is None else gamma.astype(np.float64)
    b = np.zeros(channels) if beta is None else beta.astype(np.float64)
    x2 = to_columns(x)
    if training:
        y2, mean, var = oracle_normalize(x2, g, b)
    else:
        mean, var = running_mean.astype(np.float64), running_var.astype(np.float64)
        y2, _, _ = oracle_normalize(x2, g, b, mean, var)
    new_rm = new_rv = None
    if training and running_mean is not None:
        count = x2.shape[0]
        new_rm = running_mean * MOMENTUM + mean * (1 - MOMENTUM)
        new_rv = running_var * MOMENTUM + var * count / (count - 1) * (1 - MOMENTUM)
    return from_columns(y2, x.shape), mean, 1.0 / np.sqrt(var + EPS), new_rm, new_rv


def oracle_batchnorm_backward(dy, x, gamma, mean, var, training):
    channels = x.shape[1]
    g = np.ones(channels) if gamma is None else gamma.astype(np.float64)
    x2, dy2 = to_columns(x), to_columns(dy)
    dx2 = oracle_backward(dy2, x2, g, mean, var, training)
    x_hat = (x2 - mean) / np.sqrt(var + EPS)
    return from_columns(dx2, x.shape), np.sum(dy2 * x_hat, axis=0), np.sum(dy2, axis=0)


def oracle_layernorm(x, gamma, beta, dy, k):
    """(y, mean, rstd, dx, dgamma, dbeta) in float64, normalising the trailing k axes."""
    lead, tail = x.shape[: x.ndim - k], x.shape[x.ndim - k :]
    d = int(np.prod(tail))
    x2 = x.astype(np.float64).reshape(-1, d).T  # (D, R): samples as columns
    dy2 = dy.astype(np.float64).reshape(-1, d).T
    g = np.ones((d, 1)) if gamma is None else gamma.astype(np.float64).reshape(d, 1)
    b = np.zeros((d, 1)) if beta is None else beta.astype(np.float64).reshape(d, 1)
    y2, mean, var = oracle_normalize(x2, g, b)
    dx2 = oracle_backward(dy2, x2, g, mean, var)
    x_hat = (x2 - mean) / np.sqrt(var + EPS)
    dgamma = np.sum(dy2 * x_hat, axis=1).reshape(tail)
    dbeta = np.sum(dy2, axis=1).reshape(tail)
    rstd = 1.0 / np.sqrt(var + EPS)
    return (
        y2.T.reshape(x.shape),
        mean.reshape(lead),
        rstd.reshape(lead),
        dx2.T.reshape(x.shape),
        dgamma,
        dbeta,
    )


def random_data(rng, shape, dtype, channel_axis=None):
    """Normal data with an offset and a spread that differ along ``channel_axis``."""
    x = rng.standard_normal(shape) * 3.0 + 2.0
    if channel_axis is not None and len(shape) > channel_axis:
        vary = np.linspace(0.5, 4.0, shape[channel_axis])
        x = x * vary.reshape((-1,) + (1,) * (len(shape) - channel_axis - 1))
    return x.astype(dtype)


# ----------------------------------------------------------------------------- BatchNorm

BN_SHAPES = [
    (2, 1),
    (2, 3),
    (5, 1),
    (7, 13),
    (64, 33),
    (3, 70),
    (300, 5),
    (3, 1, 1),
    (2, 3, 5),
    (4, 2, 7),
    (1, 3, 9),
    (2, 3, 1, 1),
    (3, 2, 5, 7),
    (2, 4, 1, 9),
    (1, 3, 2, 2),
    (5, 17, 3, 3),
]
LARGE_BN_SHAPES = [(520, 600), (8, 16, 48, 48)]  # above the threading threshold


def run_batchnorm(impl, shape, dtype, layout, affine, running, training=True, seed=0):
    rng = np.random.default_rng(seed)
    channels = shape[1]
    x = random_data(rng, shape, dtype, channel_axis=1)
    dy = random_data(rng, shape, dtype)
    gamma = rng.uniform(0.5, 2.0, channels).astype(dtype) if affine else None
    beta = rng.standard_normal(channels).astype(dtype) if affine else None
    rm = rng.standard_normal(channels).astype(dtype) if running else None
    rv = rng.uniform(0.5, 2.0, channels).astype(dtype) if running else None
    rm0 = None if rm is None else rm.copy()
    rv0 = None if rv is None else rv.copy()
    xl, dyl = relayout(x, layout), relayout(dy, layout)
    y, mean, rstd = impl.batchnorm_forward(xl, gamma, beta, rm, rv, MOMENTUM, EPS, training)
    ey, emean, erstd, new_rm, new_rv = oracle_batchnorm_forward(x, gamma, beta, rm0, rv0, training)
    assert y.dtype == dtype and y.shape == shape
    assert mean.dtype == np.float64 and mean.shape == (channels,)
    assert rstd.dtype == np.float64 and rstd.shape == (channels,)
    assert_close(y, ey, dtype)
    assert_close(mean, emean, dtype)
    assert_close(rstd, erstd, dtype)
    if training and running:
        assert_close(rm, new_rm, dtype)
        assert_close(rv, new_rv, dtype)
    elif running:  # eval leaves the buffers alone
        np.testing.assert_array_equal(rm, rm0)
        np.testing.assert_array_equal(rv, rv0)
    evar = 1.0 / erstd**2 - EPS
    dx, dgamma, dbeta = impl.batchnorm_backward(dyl, xl, gamma, mean, rstd, training)
    edx, edgamma, edbeta = oracle_batchnorm_backward(dy, x, gamma, emean, evar, training)
    assert dx.dtype == dtype and dgamma.dtype == dtype and dbeta.dtype == dtype
    assert dgamma.shape == (channels,) and dbeta.shape == (channels,)
    # dx is a difference of terms as large as |gamma * rstd * dy|: scale the bound by that
    dx_scale = float(np.max(np.abs(to_columns(dy) * erstd * (1 if gamma is None else gamma))))
    assert_close(dx, edx, dtype, scale=dx_scale)
    grad_scale = float(np.sum(np.abs(to_columns(dy)), axis=0).max()) * 3
    assert_close(dgamma, edgamma, dtype, scale=grad_scale)
    assert_close(dbeta, edbeta, dtype, scale=grad_scale)
    scales = [None, None, None, dx_scale, grad_scale, grad_scale]
    return [y, mean, rstd, dx, dgamma, dbeta], scales


def assert_same_results(compiled, twin, dtype):
    """Compiled and twin results agree within twice the bound each has to the oracle."""
    (values, scales), (twin_values, _) = compiled, twin
    for a, b, scale in zip(values, twin_values, scales, strict=True):
        if scale is None:
            scale = float(np.max(np.abs(b))) if b.size else 1.0
        assert_close(a, b, dtype, scale=2 * max(1.0, scale))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BN_SHAPES)
def test_batchnorm_matches_oracle(impl, dtype, shape):
    run_batchnorm(impl, shape, dtype, "contiguous", affine=True, running=True)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS[1:])
@pytest.mark.parametrize("shape", [(7, 13), (3, 2, 5, 7), (4, 3, 6)])
def test_batchnorm_noncontiguous(impl, dtype, layout, shape):
    run_batchnorm(impl, shape, dtype, layout, affine=True, running=True)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("running", [False, True])
@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 4, 5)])
def test_batchnorm_options(impl, affine, running, shape):
    run_batchnorm(impl, shape, np.float32, "contiguous", affine=affine, running=running)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(6, 5), (1, 3), (2, 3, 4, 5), (1, 2, 1, 1)])
def test_batchnorm_eval_uses_running_statistics(impl, dtype, shape):
    # N = 1 and M = 1 are fine in eval: nothing is estimated from the batch
    run_batchnorm(impl, shape, dtype, "transposed", affine=True, running=True, training=False)


@pytest.mark.skipif(_norm is None, reason="compiled kernels not built")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", LARGE_BN_SHAPES)
def test_batchnorm_large_and_thread_count_independent(dtype, shape):
    results = []
    for threads in (1, 2):
        _norm.set_num_threads(threads)
        try:
            results.append(run_batchnorm(_norm, shape, dtype, "contiguous", True, True))
        finally:
            _norm.set_num_threads(2)
    for one, two in zip(results[0][0], results[1][0], strict=True):
        np.testing.assert_array_equal(one, two)


@pytest.mark.skipif(_norm is None, reason="compiled kernels not built")
@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 9),
    c=st.integers(1, 40),
    spatial=st.sampled_from([(), (1,), (5,), (3, 4), (1, 7), (2, 1)]),
    dtype=st.sampled_from(DTYPES),
    layout=st.sampled_from(LAYOUTS),
    affine=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_batchnorm_compiled_vs_twin(n, c, spatial, dtype, layout, affine, seed):
    shape = (n, c) + spatial
    if n * int(np.prod(spatial)) < 2:
        n, shape = 2, (2, c) + spatial
    compiled = run_batchnorm(_norm, shape, dtype, layout, affine, True, seed=seed)
    twin = run_batchnorm(reference, shape, dtype, layout, affine, True, seed=seed)
    assert_same_results(compiled, twin, dtype)


@pytest.mark.parametrize("impl", IMPLS)
def test_running_statistics_follow_the_seed_formula(impl):
    """Five training calls, then the buffers against a scalar hand computation."""
    rng = np.random.default_rng(7)
    rm, rv = np.zeros(3), np.ones(3)
    hand_mean, hand_var = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    for step in range(5):
        x = rng.standard_normal((4, 3, 2)) * (step + 1) + step
        impl.batchnorm_forward(x, None, None, rm, rv, MOMENTUM, EPS, True)
        for c in range(3):
            values = [float(v) for v in x[:, c, :].ravel()]
            m = sum(values) / len(values)
            unbiased = sum((v - m) ** 2 for v in values) / (len(values) - 1)
            hand_mean[c] = hand_mean[c] * MOMENTUM + m * (1 - MOMENTUM)
            hand_var[c] = hand_var[c] * MOMENTUM + unbiased * (1 - MOMENTUM)
    np.testing.assert_allclose(rm, hand_mean, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(rv, hand_var, rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------- LayerNorm

LN_CASES = [
    ((5,), 1),
    ((2, 1), 1),
    ((3, 7), 1),
    ((17, 33), 1),
    ((64, 128), 1),
    ((4, 6, 5), 2),
    ((4, 6, 5), 3),
    ((2, 3, 4, 5), 3),
    ((3, 1, 1), 2),
    ((2, 1, 16), 1),
    ((3, 4, 31), 1),
]
LARGE_LN_CASES = [((600, 513), 1), ((9, 70, 420), 1)]


def run_layernorm(impl, shape, k, dtype, layout, affine, seed=0):
    rng = np.random.default_rng(seed)
    tail = shape[len(shape) - k :]
    x = random_data(rng, shape, dtype, channel_axis=0)
    dy = random_data(rng, shape, dtype)
    gamma = rng.uniform(0.5, 2.0, tail).astype(dtype) if affine else None
    beta = rng.standard_normal(tail).astype(dtype) if affine else None
    xl, dyl = relayout(x, layout), relayout(dy, layout)
    y, mean, rstd = impl.layernorm_forward(xl, gamma, beta, EPS, k)
    dx, dgamma, dbeta = impl.layernorm_backward(dyl, xl, gamma, mean, rstd)
    ey, emean, erstd, edx, edgamma, edbeta = oracle_layernorm(x, gamma, beta, dy, k)
    lead = shape[: len(shape) - k]
    assert y.dtype == dtype and dx.dtype == dtype and y.shape == shape and dx.shape == shape
    assert mean.dtype == np.float64 and mean.shape == lead and rstd.shape == lead
    assert dgamma.shape == tail and dbeta.shape == tail and dgamma.dtype == dtype
    assert_close(y, ey, dtype)
    assert_close(mean, emean, dtype)
    assert_close(rstd, erstd, dtype)
    g = 1.0 if gamma is None else gamma
    dx_scale = float(np.max(np.abs(dy * g))) * float(np.max(erstd))
    assert_close(dx, edx, dtype, scale=dx_scale)
    grad_scale = float(np.sum(np.abs(dy.reshape((-1,) + tail)), axis=0).max()) * 3
    assert_close(dgamma, edgamma, dtype, scale=grad_scale)
    assert_close(dbeta, edbeta, dtype, scale=grad_scale)
    return [y, mean, rstd, dx, dgamma, dbeta], [None, None, None, dx_scale, grad_scale, grad_scale]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("shape", "k"), LN_CASES)
def test_layernorm_matches_oracle(impl, dtype, shape, k):
    run_layernorm(impl, shape, k, dtype, "contiguous", affine=True)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS[1:])
@pytest.mark.parametrize(("shape", "k"), [((7, 13), 1), ((4, 6, 5), 2)])
def test_layernorm_noncontiguous(impl, dtype, layout, shape, k):
    run_layernorm(impl, shape, k, dtype, layout, affine=True)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("gamma", "beta"), [(False, False), (True, False), (False, True)])
def test_layernorm_partial_affine(impl, gamma, beta):
    rng = np.random.default_rng(3)
    x = random_data(rng, (6, 10), np.float64)
    g = rng.uniform(0.5, 2, 10) if gamma else None
    b = rng.standard_normal(10) if beta else None
    y, mean, rstd = impl.layernorm_forward(x, g, b, EPS, 1)
    ey = oracle_layernorm(x, g, b, x, 1)[0]
    assert_close(y, ey, np.float64)


@pytest.mark.skipif(_norm is None, reason="compiled kernels not built")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("shape", "k"), LARGE_LN_CASES)
def test_layernorm_large_and_thread_count_independent(dtype, shape, k):
    results = []
    for threads in (1, 2):
        _norm.set_num_threads(threads)
        try:
            results.append(run_layernorm(_norm, shape, k, dtype, "contiguous", True))
        finally:
            _norm.set_num_threads(2)
    for one, two in zip(results[0][0], results[1][0], strict=True):
        np.testing.assert_array_equal(one, two)


@pytest.mark.skipif(_norm is None, reason="compiled kernels not built")
@settings(max_examples=40, deadline=None)
@given(
    lead=st.sampled_from([(), (1,), (3,), (2, 5)]),
    tail=st.sampled_from([(1,), (7,), (16,), (33,), (2, 9)]),
    dtype=st.sampled_from(DTYPES),
    layout=st.sampled_from(LAYOUTS),
    affine=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_layernorm_compiled_vs_twin(lead, tail, dtype, layout, affine, seed):
    shape, k = lead + tail, len(tail)
    compiled = run_layernorm(_norm, shape, k, dtype, layout, affine, seed=seed)
    twin = run_layernorm(reference, shape, k, dtype, layout, affine, seed=seed)
    assert_same_results(compiled, twin, dtype)


# ----------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", ["batchnorm1d", "batchnorm2d", "layernorm"])
def test_float32_mean_1e4_normalises_accurately(impl, kind):
    rng = np.random.default_rng(11)
    shape = {"batchnorm1d": (4096, 8), "batchnorm2d": (16, 4, 32, 32), "layernorm": (8, 4096)}
    x = (1e4 + rng.standard_normal(shape[kind])).astype(np.float32)
    x64 = x.astype(np.float64)
    if kind == "layernorm":
        y = impl.layernorm_forward(x, None, None, EPS, 1)[0]
        axes = -1
    else:
        y = impl.batchnorm_forward(x, None, None, None, None, MOMENTUM, EPS, True)[0]
        axes = (0, 2, 3) if kind == "batchnorm2d" else 0
    mean = x64.mean(axis=axes, keepdims=True)
    expected = (x64 - mean) / np.sqrt(x64.var(axis=axes, keepdims=True) + EPS)
    assert np.max(np.abs(y - expected)) < 1e-2
    # the check has teeth: a float32 one-pass E[x^2] - E[x]^2 is far off on the same data
    naive_var = (x * x).mean(axis=axes, keepdims=True) - x.mean(axis=axes, keepdims=True) ** 2
    naive = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(np.maximum(naive_var, 0) + EPS)
    assert np.max(np.abs(naive - expected)) > 1e-2


# ----------------------------------------------------------------------------- finite differences


def numeric_grad(f, a, h=1e-6):
    """Central differences of the scalar f() with respect to every element of a (in place)."""
    grad = np.zeros_like(a)
    flat, gflat = a.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        up = f()
        flat[i] = old - h
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * h)
    return grad


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 4), (2, 3, 2, 3)])
def test_batchnorm_backward_finite_differences(impl, training, shape):
    rng = np.random.default_rng(5)
    channels = shape[1]
    x = rng.standard_normal(shape)
    gamma, beta = rng.uniform(0.5, 2, channels), rng.standard_normal(channels)
    rm, rv = rng.standard_normal(channels), rng.uniform(0.5, 2, channels)
    cot = rng.standard_normal(shape)  # random cotangent: f = sum(y * cot)

    def f():
        buffers = (rm.copy(), rv.copy()) if not training else (None, None)
        y = impl.batchnorm_forward(x, gamma, beta, *buffers, MOMENTUM, EPS, training)[0]
        return float(np.sum(y * cot))

    buffers = (rm, rv) if not training else (None, None)
    _, mean, rstd = impl.batchnorm_forward(x, gamma, beta, *buffers, MOMENTUM, EPS, training)
    dx, dgamma, dbeta = impl.batchnorm_backward(cot, x, gamma, mean, rstd, training)
    for analytic, a in ((dx, x), (dgamma, gamma), (dbeta, beta)):
        np.testing.assert_allclose(analytic, numeric_grad(f, a), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("shape", "k"), [((4, 5), 1), ((2, 3, 4), 2), ((3, 1, 6), 1)])
def test_layernorm_backward_finite_differences(impl, shape, k):
    rng = np.random.default_rng(6)
    tail = shape[len(shape) - k :]
    x = rng.standard_normal(shape)
    gamma, beta = rng.uniform(0.5, 2, tail), rng.standard_normal(tail)
    cot = rng.standard_normal(shape)

    def f():
        return float(np.sum(impl.layernorm_forward(x, gamma, beta, EPS, k)[0] * cot))

    _, mean, rstd = impl.layernorm_forward(x, gamma, beta, EPS, k)
    dx, dgamma, dbeta = impl.layernorm_backward(cot, x, gamma, mean, rstd)
    for analytic, a in ((dx, x), (dgamma, gamma), (dbeta, beta)):
        np.testing.assert_allclose(analytic, numeric_grad(f, a), rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------- errors

F32 = np.float32


def bn_args(**change):
    args = dict(
        x=np.ones((4, 3), F32),
        gamma=np.ones(3, F32),
        beta=np.zeros(3, F32),
        running_mean=np.zeros(3, F32),
        running_var=np.ones(3, F32),
        momentum=MOMENTUM,
        eps=EPS,
        training=True,
    )
    args.update(change)
    return args


BN_FORWARD_ERRORS = [
    (dict(x=np.ones((4, 3), np.int64)), TypeError, "float32 or float64"),
    (dict(x=[[1.0, 2.0]]), TypeError, "numpy.ndarray"),
    (dict(x=np.ones(3, F32)), ValueError, r"\(N, C\).*got shape \(3,\)"),
    (dict(x=np.ones((2, 3, 4, 5, 6), F32)), ValueError, "got shape"),
    (dict(gamma=np.ones(4, F32)), ValueError, r"gamma must have shape \(3,\).*got shape \(4,\)"),
    (dict(beta=np.ones((3, 1), F32)), ValueError, r"beta must have shape \(3,\)"),
    (dict(gamma=np.ones(3)), TypeError, "gamma has dtype float64 but x has dtype float32"),
    (dict(running_var=None), ValueError, "both"),
    (dict(running_mean=np.zeros(2, F32)), ValueError, r"running_mean must have shape \(3,\)"),
    (dict(running_var=np.ones(3)), TypeError, "running_var has dtype float64"),
    (dict(training=False, running_mean=None, running_var=None), ValueError, "training=False"),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("change", "error", "match"), BN_FORWARD_ERRORS)
def test_batchnorm_forward_rejects(impl, change, error, match):
    with pytest.raises(error, match=match):
        impl.batchnorm_forward(**bn_args(**change))


@pytest.mark.parametrize("impl", IMPLS)
def test_batchnorm_forward_read_only_buffer(impl):
    rm = np.zeros(3, F32)
    rm.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        impl.batchnorm_forward(**bn_args(running_mean=rm))
    # read-only data and parameters are fine
    x = np.ones((4, 3), F32)
    x.flags.writeable = False
    impl.batchnorm_forward(**bn_args(x=x, running_mean=None, running_var=None))


BN_BACKWARD_ERRORS = [
    (dict(grad_out=np.ones((4, 2), F32)), ValueError, r"grad_out must have shape \(4, 3\)"),
    (dict(grad_out=np.ones((4, 3))), TypeError, "grad_out has dtype float64"),
    (dict(mean=np.zeros(4)), ValueError, r"mean must have shape \(3,\)"),
    (dict(rstd=np.ones((3, 1))), ValueError, r"rstd must have shape \(3,\)"),
    (dict(gamma=np.ones(2, F32)), ValueError, "gamma must have shape"),
    (dict(x=np.ones((4, 3), np.int32)), TypeError, "float32 or float64"),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("change", "error", "match"), BN_BACKWARD_ERRORS)
def test_batchnorm_backward_rejects(impl, change, error, match):
    args = dict(
        grad_out=np.ones((4, 3), F32),
        x=np.ones((4, 3), F32),
        gamma=None,
        mean=np.zeros(3),
        rstd=np.ones(3),
    )
    args.update(change)
    with pytest.raises(error, match=match):
        impl.batchnorm_backward(**args)


LN_FORWARD_ERRORS = [
    (dict(normalized_ndim=0), ValueError, r"normalized_ndim must be in \[1, x.ndim\]"),
    (dict(normalized_ndim=3), ValueError, r"\[1, 2\].*got 3"),
    (dict(normalized_ndim=1.0), TypeError, "normalized_ndim must be an int"),
    (dict(gamma=np.ones(4, F32)), ValueError, r"gamma must have shape \(5,\).*got shape \(4,\)"),
    (dict(beta=np.ones(5)), TypeError, "beta has dtype float64"),
    (dict(x=np.ones((4, 0), F32)), ValueError, "empty"),
    (dict(x=np.ones((4, 5), np.float16)), TypeError, "float32 or float64"),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("change", "error", "match"), LN_FORWARD_ERRORS)
def test_layernorm_forward_rejects(impl, change, error, match):
    args = dict(x=np.ones((4, 5), F32), gamma=None, beta=None, eps=EPS, normalized_ndim=1)
    args.update(change)
    with pytest.raises(error, match=match):
        impl.layernorm_forward(**args)


LN_BACKWARD_ERRORS = [
    (dict(mean=np.zeros(3)), ValueError, "mean must have the leading"),
    (dict(mean=np.zeros((4, 5)), rstd=np.ones((4, 5))), ValueError, "mean must have the leading"),
    (dict(rstd=np.ones(3)), ValueError, r"rstd must have shape \(4,\)"),
    (dict(grad_out=np.ones((4, 6), F32)), ValueError, "grad_out must have shape"),
    (dict(gamma=np.ones(6, F32)), ValueError, r"gamma must have shape \(5,\)"),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("change", "error", "match"), LN_BACKWARD_ERRORS)
def test_layernorm_backward_rejects(impl, change, error, match):
    args = dict(
        grad_out=np.ones((4, 5), F32),
        x=np.ones((4, 5), F32),
        gamma=None,
        mean=np.zeros(4),
        rstd=np.ones(4),
    )
    args.update(change)
    with pytest.raises(error, match=match):
        impl.layernorm_backward(**args)


@pytest.mark.parametrize("impl", IMPLS)
def test_empty_batches(impl):
    x = np.ones((0, 3, 2), F32)
    y, mean, rstd = impl.batchnorm_forward(
        x, None, None, np.zeros(3, F32), np.ones(3, F32), MOMENTUM, EPS, False
    )
    assert y.shape == x.shape
    np.testing.assert_allclose(mean, 0.0)
    dx, dgamma, dbeta = impl.batchnorm_backward(x, x, None, mean, rstd, True)
    assert dx.shape == x.shape and np.all(dgamma == 0) and np.all(dbeta == 0)
    x = np.ones((0, 4), F32)
    y, mean, rstd = impl.layernorm_forward(x, None, None, EPS, 1)
    assert y.shape == (0, 4) and mean.shape == (0,)
    dx, dgamma, dbeta = impl.layernorm_backward(x, x, None, mean, rstd)
    assert dx.shape == (0, 4) and np.all(dgamma == 0) and np.all(dbeta == 0)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", [(0, 3), (0, 3, 4), (2, 3, 0), (1, 3), (1, 3, 1, 1)])
def test_batchnorm_training_with_at_most_one_value_per_channel(impl, shape):
    # The public function refuses this; the kernel must still not read what is not there and
    # give what the formulas give: NaN statistics for no values, a NaN running_var for one.
    x = np.full(shape, 2.0, F32)
    rm, rv = np.zeros(3, F32), np.ones(3, F32)
    y, mean, rstd = impl.batchnorm_forward(x, None, None, rm, rv, MOMENTUM, EPS, True)
    count = x.size // 3
    assert y.shape == x.shape
    np.testing.assert_array_equal(mean, np.full(3, np.nan if count == 0 else 2.0))
    np.testing.assert_array_equal(np.isnan(rstd), np.full(3, count == 0))
    assert np.all(np.isnan(rv))

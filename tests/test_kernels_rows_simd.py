"""The float32 row loops on wide vectors (_simd_layernorm.h, _simd_reduce.h): LayerNorm and
RMSNorm rows, var's row moments and the eight-row column sums, against the NumPy twins and
float64 NumPy, over every row length around the vector widths (the masked tails), both dtypes,
strided inputs, empty inputs, NaN and inf; and the same bits whatever the path or thread count.
"""

from __future__ import annotations

import numpy as np
import pytest
from kernel_modules import compiled_module

from minigrad.kernels import reference

_norm = compiled_module("_norm")
_reduce = compiled_module("_reduce")
pytestmark = pytest.mark.skipif(_norm is None or _reduce is None,
                                reason="compiled kernels not built")

DTYPES = [np.float32, np.float64]
TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-11}
EPS = 1e-5
# every tail of the 16-float write loops and of the 32 float64 lanes of the sums, and more
LENGTHS = list(range(1, 70)) + [95, 96, 97, 127, 128, 129, 512, 513]


def assert_close(actual, expected, dtype, scale):
    """Same NaN positions and infinities; finite values within TOL of ``scale``."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(actual[~finite & ~np.isnan(expected)],
                                  expected[~finite & ~np.isnan(expected)])
    np.testing.assert_allclose(actual[finite].astype(np.float64),
                               expected[finite].astype(np.float64), rtol=0,
                               atol=TOL[np.dtype(dtype)] * max(1.0, scale))


def data(rng, shape, dtype, special=False, strided=False):
    """Normal data shifted by 3; with ``special``, a few NaN, +-inf and -0.0; with ``strided``,
    every other element of a wider array."""
    x = (rng.standard_normal(shape) + 3.0).astype(dtype)
    if special:
        flat = x.reshape(-1)
        picks = rng.choice(flat.size, size=max(1, flat.size // 50), replace=False)
        flat[picks] = rng.choice(np.array([np.nan, np.inf, -np.inf, -0.0], dtype), picks.size)
    if strided:
        wide = np.zeros(shape[:-1] + (2 * shape[-1],), dtype)
        wide[..., ::2] = x
        x = wide[..., ::2]
    return x


def scales(x, dy, gamma, rstd):
    """Error scales of (y, mean, rstd, dx, dgamma, dbeta) as in test_kernels_norm: dx is a
    difference of terms as large as |dy * gamma| * rstd, a parameter gradient a sum over
    samples of terms as large as |dy| (times |x_hat| <= sqrt(D))."""
    g = 1.0 if gamma is None else np.abs(gamma).max()
    y = np.abs(x).max() * float(np.max(rstd)) * g + 3
    dx = float(np.abs(dy).max()) * g * float(np.max(rstd))
    grads = float(np.abs(dy).sum(axis=0).max()) * 3 * np.sqrt(x.shape[-1])
    return [y, float(np.abs(x).max()), float(np.max(rstd)), dx, grads, grads]


def layernorm_step(impl, x, dy, gamma, beta):
    y, mean, rstd = impl.layernorm_forward(x, gamma, beta, EPS, 1)
    dx, dgamma, dbeta = impl.layernorm_backward(dy, x, gamma, mean, rstd)
    return y, mean, rstd, dx, dgamma, dbeta


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("strided", [False, True])
@pytest.mark.parametrize("affine", [False, True])
def test_layernorm_rows_of_every_length_match_the_twin(dtype, strided, affine):
    rng = np.random.default_rng(1)
    for d in LENGTHS:
        x = data(rng, (5, d), dtype, strided=strided)
        dy = data(rng, (5, d), dtype, strided=strided)
        gamma = rng.uniform(0.5, 2.0, d).astype(dtype) if affine else None
        beta = rng.standard_normal(d).astype(dtype) if affine else None
        ours = layernorm_step(_norm, x, dy, gamma, beta)
        twin = layernorm_step(reference, x, dy, gamma, beta)
        for a, b, scale in zip(ours, twin, scales(x, dy, gamma, twin[2]), strict=True):
            assert_close(a, b, dtype, scale)


@pytest.mark.parametrize("dtype", DTYPES)
def test_layernorm_rows_with_nan_and_inf_match_the_twin(dtype):
    rng = np.random.default_rng(2)
    for d in [1, 7, 16, 31, 33, 64, 100, 513]:
        x = data(rng, (40, d), dtype, special=True)
        dy = data(rng, (40, d), dtype, special=True)
        gamma = rng.uniform(0.5, 2.0, d).astype(dtype)
        beta = rng.standard_normal(d).astype(dtype)
        with np.errstate(all="ignore"):
            ours = layernorm_step(_norm, x, dy, gamma, beta)
            twin = layernorm_step(reference, x, dy, gamma, beta)
        for a, b in zip(ours, twin, strict=True):
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
            ok = np.isfinite(b) & np.isfinite(a)
            np.testing.assert_allclose(a[ok], b[ok], rtol=1e-4 if dtype == np.float32 else 1e-9,
                                       atol=1e-3 if dtype == np.float32 else 1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rmsnorm_rows_of_every_length_match_the_twin(dtype):
    rng = np.random.default_rng(3)
    for d in LENGTHS:
        x = data(rng, (4, d), dtype)
        dy = data(rng, (4, d), dtype)
        w = rng.uniform(0.5, 2.0, d).astype(dtype)
        for weight in (w, None):
            ours = _norm.rmsnorm_forward(x, weight, EPS, 1)
            twin = reference.rmsnorm_forward(x, weight, EPS, 1)
            grads = _norm.rmsnorm_backward(dy, x, weight, ours[1])
            twin_grads = reference.rmsnorm_backward(dy, x, weight, twin[1])
            sy, _, sr, sdx, sgrad, _ = scales(x, dy, weight, twin[1])
            for a, b, scale in zip(ours + grads, twin + twin_grads, [sy, sr, sdx, sgrad],
                                   strict=True):
                assert_close(a, b, dtype, scale)


@pytest.mark.parametrize("dtype", DTYPES)
def test_layernorm_of_no_samples(dtype):
    x = np.ones((0, 37), dtype)
    gamma = np.full(37, 2.0, dtype)
    y, mean, rstd, dx, dgamma, dbeta = layernorm_step(_norm, x, x, gamma, gamma)
    assert y.shape == dx.shape == (0, 37) and mean.shape == rstd.shape == (0,)
    assert dgamma.dtype == dtype and np.all(dgamma == 0) and np.all(dbeta == 0)
    dx, dweight = _norm.rmsnorm_backward(x, x, gamma, rstd)
    assert dx.shape == (0, 37) and np.all(dweight == 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_layernorm_threads_give_the_same_bits(dtype):
    # 600 x 513 splits over threads (forward rows, backward blocks of samples)
    rng = np.random.default_rng(4)
    x, dy = data(rng, (600, 513), dtype), data(rng, (600, 513), dtype)
    gamma = rng.uniform(0.5, 2.0, 513).astype(dtype)
    before = _norm.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            _norm.set_num_threads(n)
            results.append(layernorm_step(_norm, x, dy, gamma, gamma))
    finally:
        _norm.set_num_threads(before)
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_var_rows_of_every_length(dtype):
    rng = np.random.default_rng(5)
    for d in LENGTHS:
        x = data(rng, (3, d), dtype) * 10 + 1e3  # |mean| >> std: the shifted sums matter
        var, mean = _reduce.var(x, -1)
        var2, mean2 = _reduce.var(x, (1,))  # the general path: the same bits
        np.testing.assert_array_equal(var, var2)
        np.testing.assert_array_equal(mean, mean2)
        x64 = x.astype(np.float64)
        assert_close(mean, np.mean(x64, -1).astype(dtype), dtype, scale=1e3)
        assert_close(var, np.var(x64, -1).astype(dtype), dtype, scale=float(np.var(x64)))
        twin_var, _ = reference.var(x, -1)
        assert_close(var, twin_var, dtype, scale=float(np.var(x64)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_var_rows_with_nan_and_inf(dtype):
    rng = np.random.default_rng(6)
    for d in [5, 32, 45, 100]:
        x = data(rng, (30, d), dtype, special=True)
        with np.errstate(all="ignore"):
            got = _reduce.var(x, -1)
            want = reference.var(x, -1)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
            np.testing.assert_array_equal(np.isinf(a), np.isinf(b))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", list(range(1, 18)) + [31, 32, 33])
def test_column_sums_in_sweeps_of_eight_rows(dtype, rows):
    # axis 0 adds eight rows per sweep (the last sweep shorter): the one-axis path, the general
    # path and two threads give the same bits, within rounding of the float64 sum
    rng = np.random.default_rng(rows)
    for n in [1, 3, 4, 5, 8, 33, 520]:
        x = data(rng, (rows, n), dtype)
        x[0, 0] = 2.0**25 if dtype == np.float32 else 2.0**60  # cancels in float32 sums
        x[rows - 1, 0] = -x[0, 0] if rows > 1 else x[0, 0]
        fast = _reduce.sum(x, 0)
        np.testing.assert_array_equal(fast, _reduce.sum(x, (0,)))
        np.testing.assert_array_equal(_reduce.mean(x, 0), _reduce.mean(x, (0,)))
        exact = np.sum(x.astype(np.float64), 0)
        assert_close(fast, exact.astype(dtype), dtype, scale=float(np.abs(x[1:-1]).sum()))
        assert_close(fast, reference.sum(x, 0), dtype, scale=float(np.abs(x[1:-1]).sum()))
        strided = data(rng, (rows, n), dtype, strided=True)
        np.testing.assert_array_equal(_reduce.sum(strided, 0),
                                      _reduce.sum(np.ascontiguousarray(strided), 0))


def test_column_sums_threads_give_the_same_bits():
    x = np.random.default_rng(7).standard_normal((1003, 77)).astype(np.float32)
    before = _reduce.get_num_threads()
    thresholds = _reduce.parallel_min_work()
    try:
        _reduce.parallel_min_work(**dict.fromkeys(thresholds, 0))
        results = []
        for n in (1, 2):
            _reduce.set_num_threads(n)
            results.append((_reduce.sum(x, 0), _reduce.sum(x.reshape(1003, 7, 11), (0, 2))))
    finally:
        _reduce.set_num_threads(before)
        _reduce.parallel_min_work(**thresholds)
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)

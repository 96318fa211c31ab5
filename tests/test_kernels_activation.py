"""Tests of the GELU kernels: compiled vs NumPy twin vs a float64 reference built on math.erfc,
over dtypes, memory layouts, special values and bad arguments."""

from __future__ import annotations

import math

import numpy as np
import pytest
from kernel_modules import implementations, relayout

IMPLS = implementations("_activation")
DTYPES = [np.float32, np.float64]
# absolute bound in units of max(1, |x|): the float32 erfc fit has fractional error 1.2e-7,
# plus a few roundings; float64 goes through libm's erfc
TOL = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-14}
LAYOUTS = ["contiguous", "transposed", "step", "unaligned"]

_erfc64 = np.vectorize(math.erfc, otypes=[np.float64])


def reference(x: np.ndarray, g: np.ndarray):
    """float64 y, cdf and dx by the textbook formulas."""
    x64, g64 = x.astype(np.float64), g.astype(np.float64)
    cdf = 0.5 * _erfc64(-x64 / math.sqrt(2))
    pdf = np.exp(-0.5 * x64 * x64) / math.sqrt(2 * math.pi)
    return x64 * cdf, cdf, g64 * (cdf + x64 * pdf)


def assert_close(got, want, x, dtype):
    assert got.dtype == np.dtype(dtype) and got.shape == want.shape
    bound = TOL[np.dtype(dtype)] * np.maximum(1.0, np.abs(x.astype(np.float64)))
    finite = np.isfinite(want)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(got[~finite], want[~finite])
    assert np.all(np.abs(got[finite] - want[finite]) <= bound[finite])


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (64, 300), (3, 4, 33)])
def test_gelu_matches_float64(impl, dtype, layout, shape):
    rng = np.random.default_rng(sum(shape))
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    y64, cdf64, dx64 = reference(x, g)
    y, cdf = impl.gelu_forward(relayout(x, layout))
    assert_close(y, y64, x, dtype)
    assert_close(cdf, cdf64, x, dtype)
    dx = impl.gelu_backward(relayout(g, layout), relayout(x, layout), relayout(cdf, layout))
    assert_close(dx, dx64, x, dtype)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gelu_special_values(impl, dtype):
    x = np.array([0.0, -0.0, 1e-30, -1e-30, 6.0, -6.0, 30.0, -30.0, 1e30, -1e30,
                  np.inf, -np.inf, np.nan], dtype=dtype)
    with np.errstate(invalid="ignore", over="ignore"):  # the twin computes inf * 0 for x = -inf
        y, cdf = impl.gelu_forward(x)
        y64, cdf64, _ = reference(x, np.ones_like(x))
    np.testing.assert_array_equal(np.isnan(y), np.isnan(y64))
    finite = np.isfinite(x)
    assert np.all(np.abs(cdf[finite] - cdf64[finite]) <= TOL[np.dtype(dtype)])
    assert y[x == np.inf][0] == np.inf and cdf[x == -np.inf][0] == 0
    assert np.all((cdf[finite] >= 0) & (cdf[finite] <= 1))


@pytest.mark.parametrize("impl", IMPLS)
def test_gelu_empty_and_bad_arguments(impl):
    y, cdf = impl.gelu_forward(np.zeros((0, 3), np.float32))
    assert y.shape == cdf.shape == (0, 3)
    x = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError):
        impl.gelu_forward(np.ones(3, np.int64))
    with pytest.raises(TypeError):
        impl.gelu_backward(np.ones((2, 3), np.float64), x, x)
    with pytest.raises(ValueError):
        impl.gelu_backward(np.ones((3, 2), np.float32), x, x)
    with pytest.raises(ValueError):
        impl.gelu_backward(x, x, np.ones(3, np.float32))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gelu_reads_read_only_arrays(impl, dtype):
    """The kernels only read x, grad_out and cdf: read-only arrays give the same bits (before
    the wrappers took data pointers, the compiled backward refused them: a typed memoryview of
    a read-only buffer)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 7, 5)).astype(dtype)
    g = rng.standard_normal((2, 7, 5)).astype(dtype)
    y, cdf = impl.gelu_forward(x)
    dx = impl.gelu_backward(g, x, cdf)
    for a in (x, g, cdf):
        a.flags.writeable = False
    y_ro, cdf_ro = impl.gelu_forward(x)
    assert y_ro.tobytes() == y.tobytes() and cdf_ro.tobytes() == cdf.tobytes()
    assert impl.gelu_backward(g, x, cdf).tobytes() == dx.tobytes()

"""Tests of the reduction kernels (sum, mean, var, max, min, logsumexp): compiled vs NumPy twin
vs a float64 NumPy oracle, over shapes, axes, keepdims, dtypes and memory layouts.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_modules import compiled_module, implementations

from minigrad.kernels import reference

_reduce = compiled_module("_reduce")
IMPLS = implementations("_reduce")
needs_compiled = pytest.mark.skipif(_reduce is None, reason="compiled kernels not built")

DTYPES = [np.float32, np.float64]
# Bound relative to the largest magnitude involved. Both implementations accumulate in float64,
# so they differ by a few roundings of the result; the float64 oracle is exact to ~1e-16.
TOL = {np.dtype(np.float32): 2e-6, np.dtype(np.float64): 1e-12}
LAYOUTS = ["contiguous", "transposed", "step", "negative"]


def assert_close(actual, expected, dtype, scale=None):
    """|actual - expected| <= tol * max(1, scale), scale defaulting to max|expected|; NaNs match."""
    actual = np.asarray(actual)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape
    assert actual.dtype == np.dtype(dtype)
    assert isinstance(actual, np.ndarray)
    finite = np.isfinite(expected)
    if scale is None:
        scale = float(np.max(np.abs(expected[finite]))) if finite.any() else 1.0
    tol = TOL[np.dtype(dtype)] * max(1.0, scale)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_array_equal(actual[~finite], expected[~finite])
    np.testing.assert_allclose(
        actual[finite].astype(np.float64), expected[finite], rtol=0, atol=tol
    )


def relayout(a: np.ndarray, layout: str) -> np.ndarray:
    """The same values as ``a`` in another memory layout."""
    if layout == "contiguous" or a.ndim == 0:
        return a
    if layout == "transposed":  # Fortran order: every axis permuted in memory
        return np.ascontiguousarray(a.T).T
    if layout == "step":  # every other element of a twice-as-long last axis
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    if layout == "negative":  # reversed first axis, read backwards
        return a[::-1].copy()[::-1]
    raise ValueError(layout)


@st.composite
def problems(draw, max_dims=4):
    """(x, axis, keepdims): a float array of 0..4 dims in some layout and a valid axis spec."""
    ndim = draw(st.integers(0, max_dims))
    sizes = st.one_of(st.integers(1, 6), st.sampled_from([1, 7, 17, 33, 64, 100]))
    shape = draw(st.lists(sizes, min_size=ndim, max_size=ndim))
    while np.prod(shape) > 20000:  # keep examples small so the whole file stays fast
        shape[int(np.argmax(shape))] = 3
    shape = tuple(shape)
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = np.asarray(rng.standard_normal(shape) * draw(st.sampled_from([1.0, 1e-3, 1e3])) + draw(
        st.sampled_from([0.0, 5.0])), dtype=dtype)  # kernels take ndarrays, never NumPy scalars
    x = relayout(x, draw(st.sampled_from(LAYOUTS)))
    kind = draw(st.sampled_from(["none", "int", "tuple"]))
    if kind == "none" or ndim == 0:
        axis = None
    elif kind == "int":
        axis = draw(st.integers(-ndim, ndim - 1))
    else:
        axes = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
        axis = tuple(a - ndim if draw(st.booleans()) else a for a in axes)
    return x, axis, draw(st.booleans())


def oracle_max(x64, axis, keepdims, find):
    """Value and first C-order index over the reduced axes, in float64 by plain NumPy."""
    axes = reference.reduced_axes(x64.ndim, axis)
    kept = [a for a in range(x64.ndim) if a not in axes]
    n = int(np.prod([x64.shape[a] for a in axes]))
    flat = np.transpose(x64, kept + list(axes)).reshape([x64.shape[a] for a in kept] + [n])
    index = find(flat, axis=-1)
    value = np.max(flat, axis=-1) if find is np.argmax else np.min(flat, axis=-1)
    if keepdims:
        index, value = np.expand_dims(index, axes), np.expand_dims(value, axes)
    return value, index


# ---- compiled vs twin vs float64 oracle ----------------------------------------------------------

@needs_compiled
@settings(max_examples=300, deadline=None)
@given(problems())
def test_all_reductions_match_twin_and_float64(problem):
    x, axis, keepdims = problem
    x64 = x.astype(np.float64)
    axes = reference.reduced_axes(x.ndim, axis)
    count = int(np.prod([x.shape[a] for a in axes]))
    # Error scales: a sum is off by a few roundings of sum|x|, a mean of max|x|, a variance of
    # max (x - mean)^2; the float64 oracle is plain NumPy (float32 data are exact in float64).
    big = float(np.max(np.abs(x64))) if x.size else 1.0
    spread = float(np.max((x64 - np.mean(x64, axis, keepdims=True)) ** 2)) if x.size else 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for impl in (_reduce, reference):
            assert_close(impl.sum(x, axis, keepdims), np.sum(x64, axis, keepdims=keepdims),
                         x.dtype, scale=float(np.sum(np.abs(x64))))
            assert_close(impl.mean(x, axis, keepdims), np.mean(x64, axis, keepdims=keepdims),
                         x.dtype, scale=big)
            var, mean = impl.var(x, axis, keepdims, correction=1)
            if count > 1:
                expected = np.var(x64, axis, ddof=1, keepdims=keepdims)
                assert_close(var, expected, x.dtype, scale=spread)
            assert_close(mean, np.mean(x64, axis, keepdims=keepdims), x.dtype, scale=big)
            m = np.max(x64, axis=axis, keepdims=True) if x.size else 0
            lse = np.log(np.sum(np.exp(x64 - m), axis=axis, keepdims=True)) + m
            lse = lse if keepdims else np.squeeze(lse, reference.reduced_axes(x.ndim, axis))
            assert_close(impl.logsumexp(x, axis, keepdims), lse, x.dtype)
            for name, find in (("max", np.argmax), ("min", np.argmin)):
                value, index = getattr(impl, name)(x, axis, keepdims)
                ev, ei = oracle_max(x64, axis, keepdims, find)
                np.testing.assert_array_equal(value, ev.astype(x.dtype))
                np.testing.assert_array_equal(index, ei)
                assert index.dtype == np.int64 and index.shape == value.shape
    # and the compiled kernel agrees with its twin directly
    assert_close(_reduce.sum(x, axis, keepdims), reference.sum(x, axis, keepdims), x.dtype,
                 scale=float(np.sum(np.abs(x64))))
    assert_close(_reduce.mean(x, axis, keepdims), reference.mean(x, axis, keepdims), x.dtype,
                 scale=big)
    assert_close(_reduce.logsumexp(x, axis, keepdims), reference.logsumexp(x, axis, keepdims),
                 x.dtype)
    var, mean = _reduce.var(x, axis, keepdims)
    var_ref, mean_ref = reference.var(x, axis, keepdims)
    assert_close(var, var_ref, x.dtype, scale=spread)
    assert_close(mean, mean_ref, x.dtype, scale=big)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape, axis",
    [((1024, 300), 0), ((1024, 300), 1), ((300, 1024), -1), ((16, 8, 32, 32), (0, 2, 3)),
     ((8, 16, 8, 16), (0, 2)), ((5, 6, 7, 8), (1, 3)), ((4, 4000), None)],
)
def test_large_shapes(impl, dtype, shape, axis):
    x = np.random.default_rng(3).standard_normal(shape).astype(dtype) + 2
    x64 = x.astype(np.float64)
    assert_close(impl.sum(x, axis), np.sum(x64, axis), dtype, scale=float(np.abs(x64).sum()))
    var, mean = impl.var(x, axis)
    assert_close(var, np.var(x64, axis), dtype)
    assert_close(mean, np.mean(x64, axis), dtype)
    value, index = impl.max(x, axis)
    ev, ei = oracle_max(x64, axis, False, np.argmax)
    np.testing.assert_array_equal(value, ev.astype(dtype))
    np.testing.assert_array_equal(index, ei)
    expected = np.log(np.sum(np.exp(x64), axis))
    assert_close(impl.logsumexp(x, axis), expected, dtype)


# ---- accuracy ----------------------------------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
def test_float32_axis0_sum_mean_accuracy(impl):
    x = np.random.default_rng(0).uniform(0, 1, (65536, 16)).astype(np.float32)
    exact_sum = np.sum(x.astype(np.float64), axis=0)
    got = impl.sum(x, 0).astype(np.float64)
    assert np.max(np.abs(got - exact_sum) / exact_sum) < 2e-7
    got = impl.mean(x, 0).astype(np.float64)
    assert np.max(np.abs(got - exact_sum / 65536) / (exact_sum / 65536)) < 2e-7


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape, axis", [((16, 65536), -1), ((256, 512), -1), ((256, 512), 0),
                                         ((1024, 1024), -1), ((8, 4096, 4), 1)])
def test_float32_sums_are_correctly_rounded(impl, shape, axis):
    # float64 accumulation: the only error left is the final rounding to float32, half an ulp
    # (relative 6e-8); NumPy's own float32 sum is about 100x worse on such data
    x = np.random.default_rng(2).uniform(0, 1, shape).astype(np.float32)
    exact = np.sum(x.astype(np.float64), axis=axis)
    for got in (impl.sum(x, axis), impl.mean(x, axis) * np.float64(shape[axis])):
        assert np.max(np.abs(got.astype(np.float64) - exact) / exact) < 1e-7
    half_ulp = 0.5 * np.spacing(exact.astype(np.float32)).astype(np.float64)
    assert np.all(np.abs(impl.sum(x, axis).astype(np.float64) - exact) <= half_ulp * 1.001)


@pytest.mark.parametrize("impl", IMPLS)
def test_float32_row_sums_of_cancelling_values_are_exact(impl):
    # terms that float32 accumulation would lose entirely: 1 + 2^25 - 2^25 + ... per row
    big = np.float32(2.0**25)
    x = np.zeros((5, 999), np.float32)
    x[:, ::3] = big
    x[:, 1::3] = 1.0
    x[:, 2::3] = -big
    for axis, y in ((-1, x), (0, np.ascontiguousarray(x.T))):
        np.testing.assert_array_equal(impl.sum(y, axis), np.full(5, 333, np.float32))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("axis", [0, -1, None])
def test_float32_var_of_shifted_data(impl, axis):
    rng = np.random.default_rng(1)
    x = (1e4 + rng.standard_normal((512, 256))).astype(np.float32)  # mean = 1e4 x std
    expected = np.var(x.astype(np.float64), axis=axis)
    var, mean = impl.var(x, axis)
    assert np.max(np.abs(var - expected) / expected) < 1e-3
    np.testing.assert_allclose(mean, np.mean(x.astype(np.float64), axis=axis), rtol=1e-7)


@pytest.mark.parametrize("impl", IMPLS)
def test_var_correction(impl):
    x = np.array([[1.0, 2.0, 4.0], [3.0, 3.0, 3.0]])
    np.testing.assert_allclose(impl.var(x, 1, correction=1)[0], np.var(x, 1, ddof=1))
    np.testing.assert_allclose(impl.var(x, 1, correction=0)[0], np.var(x, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning either
        var, _ = impl.var(np.ones((2, 1)), 1, correction=1)  # 0 / 0
        assert np.all(np.isnan(var))
        var, _ = impl.var(np.array([[1.0, 2.0]]), 1, correction=2)  # 0.5 / 0
        assert np.all(np.isinf(var))


# ---- special values and empty reductions ------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_logsumexp_special_values(impl, dtype):
    inf, nan = np.inf, np.nan
    x = np.array(
        [[-inf, -inf, -inf], [inf, 1, 2], [nan, 1, 2], [-inf, 0, 0], [1e4, 1e4, -1e4],
         [inf, -inf, 0], [inf, nan, 0]], dtype=dtype,
    )
    got = impl.logsumexp(x, axis=1)
    expected = np.array([-inf, inf, nan, np.log(2), 1e4 + np.log(2), inf, nan])
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got[~np.isnan(got)], expected[~np.isnan(expected)], rtol=1e-6)
    # same along axis 0 (the feature-inside loop)
    got0 = impl.logsumexp(np.ascontiguousarray(x.T), axis=0)
    np.testing.assert_array_equal(got0, got)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [5, 100, 1000])
def test_max_min_nan_inf_and_ties(impl, dtype, n):
    x = np.zeros((3, n), dtype=dtype)
    x[0, [1, n - 2]] = np.nan  # first NaN wins
    x[1, [2, n - 1]] = np.inf  # first of the tied maxima
    x[2, :] = -np.inf
    x[2, n // 2] = -1.0
    for name, find in (("max", np.argmax), ("min", np.argmin)):
        value, index = getattr(impl, name)(x, axis=1)
        expected = getattr(np, name)(x, axis=1)
        np.testing.assert_array_equal(value, expected)
        np.testing.assert_array_equal(index, find(x, axis=1))
        value, index = getattr(impl, name)(np.ascontiguousarray(x.T), axis=0)
        np.testing.assert_array_equal(value, expected)
        np.testing.assert_array_equal(index, find(x, axis=1))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [64, 97, 128, 130, 1000])
def test_max_min_one_nan_anywhere(impl, dtype, n):
    # one NaN per row, at every position class the vector loops treat apart: the first block,
    # the main loop (either half of a 32-element block, any quarter of a 64-element one) and
    # the scalar tail
    rng = np.random.default_rng(n)
    positions = sorted({0, 31, 32, 40, 63, 64, 80, 100, 127, n // 2, n - 33, n - 1}
                       & set(range(n)))
    x = rng.standard_normal((len(positions), n)).astype(dtype)
    for row, p in enumerate(positions):
        x[row, p] = np.nan
    for name, find in (("max", np.argmax), ("min", np.argmin)):
        value, index = getattr(impl, name)(x, axis=1)
        assert np.all(np.isnan(value))
        np.testing.assert_array_equal(index, find(x, axis=1))
        lse = impl.logsumexp(x, axis=1)
        assert np.all(np.isnan(lse))


# ---- the one-axis path and the general path --------------------------------------------------

ROW_LENGTHS = [1, 2, 31, 32, 33, 63, 64, 65, 96, 127, 128, 129, 200, 512, 1000]


@needs_compiled
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", ROW_LENGTHS)
@pytest.mark.parametrize("rows", [1, 2, 3, 5])
def test_one_axis_path_gives_the_bits_of_the_general_path(dtype, n, rows):
    # an int axis of a C-contiguous array takes a shorter path than a tuple of axes or another
    # layout: both must give the same bits, and agree with the twin and float64 NumPy
    rng = np.random.default_rng(n * 10 + rows)
    x = (rng.standard_normal((rows, n)) * 3 + 1).astype(dtype)
    x64 = x.astype(np.float64)
    for y, axis in ((x, -1), (x, 1), (np.ascontiguousarray(x.T), 0), (x.reshape(rows, n, 1), 1),
                    (x.reshape(1, rows, n), -1), (x.reshape(rows, 1, n), 0)):
        for name in ("sum", "mean"):
            fast = getattr(_reduce, name)(y, axis)
            general = getattr(_reduce, name)(y, (axis,))
            np.testing.assert_array_equal(fast, general)
            assert fast.dtype == dtype and fast.shape == general.shape
            expected = getattr(np, name)(y.astype(np.float64), axis=axis)
            assert_close(fast, expected, dtype, scale=float(np.abs(x64).sum()))
            assert_close(getattr(reference, name)(y, axis), expected, dtype,
                         scale=float(np.abs(x64).sum()))
        for name, find in (("max", np.argmax), ("min", np.argmin)):
            value, index = getattr(_reduce, name)(y, axis)
            value2, index2 = getattr(_reduce, name)(y, (axis,))
            np.testing.assert_array_equal(value, value2)
            np.testing.assert_array_equal(index, index2)
            np.testing.assert_array_equal(index, find(y, axis=axis))
            np.testing.assert_array_equal(value, getattr(np, name)(y, axis=axis))
            assert index.dtype == np.int64


@needs_compiled
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", ROW_LENGTHS)
@pytest.mark.parametrize("keepdims", [False, True])
def test_full_reduction_path_gives_the_bits_of_the_general_path(dtype, n, keepdims):
    # axis=None of a C-contiguous array takes the short path; every axis named as a tuple (and
    # a non-contiguous copy of the same values) takes the general one: the same bits
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((3, n)) * 3 + 1).astype(dtype)
    strided = np.empty((3, 2 * n), dtype)[:, ::2]
    strided[...] = x
    for name in ("sum", "mean", "max", "min"):
        fast = getattr(_reduce, name)(x, None, keepdims)
        for other in (getattr(_reduce, name)(x, (0, 1), keepdims),
                      getattr(_reduce, name)(strided, None, keepdims)):
            for a, b in zip(fast if isinstance(fast, tuple) else (fast,),
                            other if isinstance(other, tuple) else (other,), strict=True):
                np.testing.assert_array_equal(a, b)
                assert a.shape == b.shape == ((1, 1) if keepdims else ())
                assert a.dtype == b.dtype
    np.testing.assert_array_equal(_reduce.max(x)[1], np.argmax(x))
    assert_close(_reduce.sum(x), np.sum(x.astype(np.float64)), dtype,
                 scale=float(np.abs(x.astype(np.float64)).sum()))


@needs_compiled
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [64, 65, 128, 200, 1000])
def test_max_min_ties_and_specials_in_long_rows(dtype, n):
    # the extreme repeated in later blocks and lanes: the first one wins; infinities;
    # -0.0 against 0.0 (equal: the first of them is reported, as argmax does)
    rng = np.random.default_rng(n)
    x = rng.standard_normal((6, n)).astype(dtype)
    for row, positions in enumerate([(0, n - 1), (n - 1, n // 2), (17, (16 + 64) % n), (40,)]):
        for p in positions:
            x[row, p] = 10.0
            x[row, (p + 1) % n] = -10.0
    x[4] = 0.0
    x[4, [3, n - 2]] = -0.0
    x[5, :] = -np.inf
    x[5, n // 3] = np.inf
    for name, find in (("max", np.argmax), ("min", np.argmin)):
        for impl in (_reduce, reference):
            value, index = getattr(impl, name)(x, -1)
            np.testing.assert_array_equal(index, find(x, axis=-1))
            np.testing.assert_array_equal(value, getattr(np, name)(x, axis=-1))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sums_of_rows_with_infinities_and_nan(impl, dtype):
    x = np.ones((4, 300), dtype)
    x[0, 7] = np.inf
    x[1, [5, 250]] = [np.inf, -np.inf]
    x[2, 299] = np.nan
    x[3, 100] = np.finfo(dtype).max  # float64 accumulation: no overflow for float32 data
    x[3, 200] = np.finfo(dtype).max
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # inf - inf, and NumPy's own casts
        expected = np.sum(x.astype(np.float64), axis=-1).astype(dtype)
        for axis, y in ((-1, x), (0, np.ascontiguousarray(x.T))):
            np.testing.assert_array_equal(impl.sum(y, axis), expected)


@pytest.mark.parametrize("impl", IMPLS)
def test_one_axis_calls_the_short_path_refuses(impl):
    # what the short path leaves to the general one: still checked, still right
    x = np.random.default_rng(4).standard_normal((3, 70)).astype(np.float32)
    swapped = x.astype(x.dtype.newbyteorder(">"))
    for name in ("sum", "mean", "max", "min"):
        fn = getattr(impl, name)
        with pytest.raises(TypeError, match="byte order"):
            fn(swapped, -1)
        with pytest.raises(TypeError, match="keepdims"):
            fn(x, -1, 1)
        with pytest.raises(np.exceptions.AxisError):
            fn(x, 2)
        with pytest.raises(np.exceptions.AxisError):
            fn(x, -3)
        with pytest.raises(np.exceptions.AxisError):
            fn(np.array(1.0, np.float32), 0)
        got = fn(x, np.int64(-1), np.bool_(True))
        want = fn(x, -1, True)
        for a, b in zip(got if isinstance(got, tuple) else (got,),
                        want if isinstance(want, tuple) else (want,), strict=True):
            np.testing.assert_array_equal(a, b)
            assert a.shape == (3, 1)
    # a misaligned float32 view of a byte buffer
    raw = np.zeros(x.nbytes + 1, np.uint8)
    y = raw[1:].view(np.float32).reshape(x.shape)
    y[...] = x
    assert not y.flags.aligned
    np.testing.assert_allclose(impl.sum(y, -1), np.sum(x.astype(np.float64), -1), rtol=1e-6)
    np.testing.assert_array_equal(impl.max(y, -1)[1], np.argmax(x, -1))


@pytest.mark.parametrize("impl", IMPLS)
def test_empty_reductions(impl):
    x = np.zeros((3, 0), dtype=np.float32)
    for name in ("max", "min"):
        with pytest.raises(ValueError):
            getattr(impl, name)(x, axis=1)
        with pytest.raises(ValueError):
            getattr(impl, name)(np.zeros((0, 0)), axis=1)
        value, index = getattr(impl, name)(x, axis=0)  # nothing to reduce into: fine
        assert value.shape == (0,) and index.shape == (0,)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(impl.sum(x, axis=1), np.zeros(3, np.float32))
        assert np.all(np.isnan(impl.mean(x, axis=1)))
        assert np.all(np.isnan(impl.var(x, axis=1)[0]))
        np.testing.assert_array_equal(impl.logsumexp(x, axis=1), np.full(3, -np.inf))
        assert impl.sum(np.zeros(0)).shape == ()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape, axis", [
    ((2, 3, 2, 3, 0), (0, 2, 4)), ((2, 3, 2, 3, 0), (1, 3)), ((2, 3, 2, 3, 0), None),
    ((0, 4, 5), (0, 2)), ((4, 0, 5), (0, 2)), ((3, 0), 1), ((0, 3), 1), ((2, 0, 3), -2),
])
@pytest.mark.parametrize("dtype", DTYPES)
def test_reductions_of_empty_arrays_give_numpy_answers(impl, shape, axis, dtype):
    # any layout of any empty array: zeros, NaN and -inf where NumPy gives them, and max/min
    # raise exactly when NumPy does (a reduced axis of size 0)
    for layout in LAYOUTS[:2]:
        x = relayout(np.zeros(shape, dtype), layout)
        for keepdims in (False, True):
            want = np.sum(x, axis=axis, keepdims=keepdims)
            np.testing.assert_array_equal(impl.sum(x, axis, keepdims), want)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                want_mean = np.mean(x, axis=axis, keepdims=keepdims)
                want_var = np.var(x, axis=axis, keepdims=keepdims)
            np.testing.assert_array_equal(impl.mean(x, axis, keepdims), want_mean)
            var, mean = impl.var(x, axis, keepdims)
            np.testing.assert_array_equal(var, want_var)
            np.testing.assert_array_equal(mean, want_mean)
            lse = impl.logsumexp(x, axis, keepdims)
            np.testing.assert_array_equal(lse, np.full(want.shape, -np.inf, dtype))
            for name, fn in (("max", np.max), ("min", np.min)):
                try:
                    expected = fn(x, axis=axis, keepdims=keepdims)
                except ValueError:
                    with pytest.raises(ValueError, match="zero-size reduction"):
                        getattr(impl, name)(x, axis, keepdims)
                else:
                    value, index = getattr(impl, name)(x, axis, keepdims)
                    assert value.shape == index.shape == expected.shape


def test_public_sum_of_an_empty_axis(backend):
    import minigrad as mg

    y = mg.zeros(2, 3, 2, 3, 0).sum(axis=(0, 2, 4))
    np.testing.assert_array_equal(y.numpy(), np.zeros((3, 3), np.float32))
    assert np.all(np.isnan(mg.zeros(2, 3, 2, 3, 0).var(axis=(0, 2, 4)).numpy()))


@pytest.mark.parametrize("impl", IMPLS)
def test_full_reduction_returns_0d_array(impl):
    x = np.arange(6.0).reshape(2, 3)
    for result in (impl.sum(x), impl.mean(x), impl.logsumexp(x), *impl.var(x), *impl.max(x)):
        assert isinstance(result, np.ndarray) and result.shape == ()
    assert impl.max(x)[1] == 5 and impl.min(x)[1] == 0
    assert impl.sum(x, keepdims=True).shape == (1, 1)


# ---- errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", ["sum", "mean", "var", "max", "min", "logsumexp"])
def test_bad_calls_raise(impl, name):
    fn = getattr(impl, name)
    x = np.ones((2, 3), dtype=np.float32)
    with pytest.raises(np.exceptions.AxisError):
        fn(x, axis=2)
    with pytest.raises(np.exceptions.AxisError):
        fn(x, axis=(0, -3))
    with pytest.raises(ValueError, match="repeated"):
        fn(x, axis=(1, -1))
    with pytest.raises(TypeError, match="int64"):
        fn(np.ones((2, 3), dtype=np.int64))
    with pytest.raises(TypeError, match="float16"):
        fn(np.ones(3, dtype=np.float16))


# ---- threads -----------------------------------------------------------------------------------

@needs_compiled
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lowered", [False, True])
@pytest.mark.parametrize(
    "shape, axis", [((600, 512), 0), ((600, 512), 1), ((4, 300, 256), (0, 2)), ((300000,), 0),
                    ((37, 1000), -1), ((37, 1000), 0), ((5, 70, 3), 1), ((9, 129), (1,))],
)
def test_results_do_not_depend_on_thread_count(dtype, shape, axis, lowered):
    # lowered: every reduction threads from one element on, so that these small arrays take
    # the OpenMP paths with two threads and the one-thread paths with one
    x = np.random.default_rng(5).standard_normal(shape).astype(dtype)
    before = _reduce.get_num_threads()
    thresholds = _reduce.parallel_min_work()
    try:
        if lowered:
            _reduce.parallel_min_work(**dict.fromkeys(thresholds, 0))
        results = []
        for n in (1, 2):
            _reduce.set_num_threads(n)
            results.append([_reduce.sum(x, axis), *_reduce.var(x, axis), *_reduce.max(x, axis),
                            *_reduce.min(x, axis), _reduce.logsumexp(x, axis),
                            _reduce.mean(x, axis)])
    finally:
        _reduce.set_num_threads(before)
        _reduce.parallel_min_work(**thresholds)
    assert _reduce.parallel_min_work() == thresholds
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        _reduce.set_num_threads(0)
    with pytest.raises(ValueError):
        _reduce.parallel_min_work(sum=-1)
    with pytest.raises(TypeError, match="unknown"):
        _reduce.parallel_min_work(summ=0)

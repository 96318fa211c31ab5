"""Tests of the softmax-family kernels (softmax, log_softmax, their backward passes, softmax
cross-entropy) and of the vectorised exp inside them: compiled vs NumPy twin vs float64 NumPy.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_modules import compiled_module, implementations

from minigrad.kernels import reference

_softmax = compiled_module("_softmax")
IMPLS = implementations("_softmax")
needs_compiled = pytest.mark.skipif(_softmax is None, reason="compiled kernels not built")

DTYPES = [np.float32, np.float64]
# Bound relative to the largest magnitude involved (softmax outputs are <= 1, log_softmax and
# cross-entropy scale with the logits); a handful of roundings in the result's precision.
TOL = {np.dtype(np.float32): 4e-6, np.dtype(np.float64): 1e-13}
LAYOUTS = ["contiguous", "transposed", "step", "negative"]


def assert_close(actual, expected, dtype, scale=1.0, result_dtype=None):
    """|actual - expected| <= tol * max(1, scale) elementwise, tol that of ``dtype``; NaN and inf
    must match exactly. The result has ``dtype`` unless ``result_dtype`` says otherwise."""
    actual = np.asarray(actual)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape
    assert actual.dtype == np.dtype(result_dtype or dtype)
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_array_equal(actual[~finite], expected[~finite])
    tol = TOL[np.dtype(dtype)] * max(1.0, scale)
    np.testing.assert_allclose(
        actual[finite].astype(np.float64), expected[finite], rtol=0, atol=tol
    )


def relayout(a: np.ndarray, layout: str) -> np.ndarray:
    """The same values as ``a`` in another memory layout."""
    if layout == "contiguous":
        return a
    if layout == "transposed":
        return np.ascontiguousarray(a.T).T
    if layout == "step":
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    if layout == "negative":
        return a[::-1].copy()[::-1]
    raise ValueError(layout)


def softmax64(x, axis):
    """The float64 oracle: softmax by the textbook formula."""
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


@st.composite
def problems(draw):
    """(x, grad, axis): float arrays of 1..4 dims in some layout and one valid axis."""
    ndim = draw(st.integers(1, 4))
    sizes = st.one_of(st.integers(1, 6), st.sampled_from([1, 7, 17, 33, 64, 100]))
    shape = draw(st.lists(sizes, min_size=ndim, max_size=ndim))
    while np.prod(shape) > 20000:  # keep examples small so the whole file stays fast
        shape[int(np.argmax(shape))] = 3
    shape = tuple(shape)
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([1.0, 10.0, 1e-3]))
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    grad = rng.standard_normal(shape).astype(dtype)
    layout = draw(st.sampled_from(LAYOUTS))
    return relayout(x, layout), relayout(grad, layout), draw(st.integers(-ndim, ndim - 1))


# ---- exp -----------------------------------------------------------------------------------

@needs_compiled
@pytest.mark.parametrize("dtype", DTYPES)
def test_vectorised_exp_matches_numpy(dtype):
    rng = np.random.default_rng(0)
    info = np.finfo(dtype)
    specials = [0.0, -0.0, np.inf, -np.inf, np.nan, info.tiny, -info.tiny, info.smallest_subnormal,
                -info.smallest_subnormal, info.max, -info.max, 1.0, -1.0]
    edges = [88.72, 88.7228, 88.7229, 89.0, -87.3, -87.4, -103.9, -103.98, -104.0, 709.78,
             709.79, -708.4, -745.1, -745.2, -746.0]
    x = np.concatenate([
        rng.uniform(-800, 800, 20000), rng.uniform(-110, 95, 20000), rng.standard_normal(20000),
        rng.uniform(-1e-30, 1e-30, 1000), specials, edges,
    ]).astype(dtype)
    got = _softmax._vexp(x)
    with np.errstate(over="ignore", under="ignore"):
        expected = np.exp(x)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(got[~finite], expected[~finite])  # inf and the NaNs
    # within 2 units in the last place everywhere, denormal results included
    bits = np.int32 if dtype == np.float32 else np.int64
    ulps = np.abs(got[finite].view(bits).astype(np.int64) - expected[finite].view(bits))
    assert ulps.max() <= 2
    assert np.all(got[x < -746] == 0) and np.all(got[x == -np.inf] == 0)


# ---- softmax / log_softmax and their backward passes -----------------------------------------

@needs_compiled
@settings(max_examples=250, deadline=None)
@given(problems())
def test_softmax_family_matches_twin_and_float64(problem):
    x, grad, axis = problem
    dtype = x.dtype
    x64, g64 = x.astype(np.float64), grad.astype(np.float64)
    y64 = softmax64(x64, axis)
    logy64 = np.log(y64)
    dot = np.sum(g64 * y64, axis=axis, keepdims=True)
    big = float(np.max(np.abs(x64)))
    gbig = float(np.max(np.abs(g64)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for impl in (_softmax, reference):
            y = impl.softmax(x, axis)
            assert_close(y, y64, dtype)
            assert_close(impl.log_softmax(x, axis), logy64, dtype, scale=big)
            y_in = y64.astype(dtype)
            # the backward kernels work from the given output y; the oracle uses the same y
            yy = y_in.astype(np.float64)
            expected = yy * (g64 - np.sum(g64 * yy, axis=axis, keepdims=True))
            assert_close(impl.softmax_backward(y_in, grad, axis), expected, dtype, scale=gbig)
            ly_in = logy64.astype(dtype)
            expected = g64 - np.exp(ly_in.astype(np.float64)) * np.sum(g64, axis, keepdims=True)
            assert_close(impl.log_softmax_backward(ly_in, grad, axis), expected, dtype,
                         scale=gbig * x.shape[axis])
    assert np.isfinite(dot).all()
    assert_close(_softmax.softmax(x, axis), reference.softmax(x, axis).astype(np.float64), dtype)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_special_rows(impl, dtype, axis):
    inf, nan = np.inf, np.nan
    x = np.array([[-inf, -inf, -inf], [inf, 1, 2], [nan, 1, 2], [-inf, 0, 0], [1e4, -1e4, 0]],
                 dtype=dtype)
    if axis == 0:
        x = np.ascontiguousarray(x.T)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = impl.softmax(x, axis)
        logy = impl.log_softmax(x, axis)
    rows = y if axis != 0 else y.T
    logrows = logy if axis != 0 else logy.T
    assert np.all(np.isnan(rows[:3]))  # all -inf, +inf and NaN rows: NaN, as the formula gives
    assert np.all(np.isnan(logrows[:3]))
    np.testing.assert_allclose(rows[3], [0, 0.5, 0.5], rtol=1e-6)
    np.testing.assert_array_equal(logrows[3, 0], -inf)
    np.testing.assert_allclose(rows[4], [1, 0, 0], atol=0)
    np.testing.assert_allclose(logrows[4], [0, -2e4, -1e4], rtol=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
def test_softmax_bad_calls(impl):
    x = np.ones((2, 3), dtype=np.float32)
    with pytest.raises(np.exceptions.AxisError):
        impl.softmax(x, 2)
    with pytest.raises(TypeError):
        impl.log_softmax(x, (0, 1))
    with pytest.raises(TypeError, match="int32"):
        impl.softmax(np.ones(3, dtype=np.int32))
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        impl.softmax_backward(x, np.ones((3, 2), dtype=np.float32))
    with pytest.raises(TypeError, match="float64"):
        impl.log_softmax_backward(x, np.ones((2, 3)))
    assert impl.softmax(np.zeros((0, 3), np.float32)).shape == (0, 3)


# ---- cross-entropy -----------------------------------------------------------------------------

def xent64(logits, target, ls, ignore_index):
    """The float64 oracle: loss and gradient straight from the definitions, row by row."""
    n, c = logits.shape
    loss, grad = np.zeros(n), np.zeros((n, c))
    for i in range(n):
        if target[i] == ignore_index:
            continue
        m = np.max(logits[i])
        lse = m + np.log(np.sum(np.exp(logits[i] - m)))
        q = np.full(c, ls / c)
        q[target[i]] += 1 - ls
        loss[i] = np.sum(q * (lse - logits[i]))
        grad[i] = np.exp(logits[i] - lse) - q
    return loss, grad


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (64, 10), (33, 1000), (300, 17)])
@pytest.mark.parametrize("ls", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_cross_entropy(impl, dtype, shape, ls, layout):
    rng = np.random.default_rng(7)
    n, c = shape
    logits = relayout((rng.standard_normal(shape) * 4).astype(dtype), layout)
    target = rng.integers(0, c, n).astype(np.int32)
    target[::4] = -100
    grad_loss = rng.uniform(0.5, 2, n).astype(dtype)
    loss, lse = impl.cross_entropy_forward(logits, target, label_smoothing=ls)
    expected_loss, expected_grad = xent64(logits.astype(np.float64), target, ls, -100)
    big = float(np.max(np.abs(logits)))
    assert_close(loss, expected_loss, dtype, scale=big)
    # the row log-sum-exp comes back as its parts (row max, log of the shifted sum), in float64
    # whatever the logits' dtype (the backward uses them)
    assert lse.shape == (n, 2) and lse.dtype == np.float64
    np.testing.assert_array_equal(lse[:, 0], np.max(logits, axis=1))
    assert_close(lse.sum(axis=1), np.log(np.sum(np.exp(logits.astype(np.float64)), axis=1)), dtype,
                 scale=big, result_dtype=np.float64)
    dlogits = impl.cross_entropy_backward(grad_loss, logits, target, lse, label_smoothing=ls)
    assert_close(dlogits, expected_grad * grad_loss[:, None], dtype, scale=2.0)
    assert np.all(dlogits[target == -100] == 0)
    scalar = impl.cross_entropy_backward(np.asarray(2.0, dtype), logits, target, lse, ls)
    assert_close(scalar, expected_grad * 2.0, dtype, scale=2.0)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_extreme_logits(impl, dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [-1e4, 1e4, 1e4]], dtype=dtype)
    target = np.array([1, 2, 0], dtype=np.uint8)
    for ls in (0.0, 0.2):
        loss, lse = impl.cross_entropy_forward(logits, target, ls, ignore_index=255)
        dlogits = impl.cross_entropy_backward(np.ones(3, dtype), logits, target, lse, ls, 255)
        assert np.all(np.isfinite(loss)) and np.all(np.isfinite(dlogits))
        expected_loss, expected_grad = xent64(logits.astype(np.float64), target, ls, 255)
        assert_close(loss, expected_loss, dtype, scale=1e4)
        assert_close(dlogits, expected_grad, dtype, scale=1e4)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("offset", [1e3, 1e4, 1e6])
@pytest.mark.parametrize("ls", [0.0, 0.1])
def test_float32_cross_entropy_of_offset_logits(impl, offset, ls):
    # A common offset cancels in lse - x_t; rounding lse to float32 first cost 3e-5 at offset
    # 1e3, 4e-4 at 1e4 and 2.7e-2 at 1e6. PyTorch float32 on these inputs is off by at most
    # 7.3e-7 (1.4e-6 with label_smoothing=0.1): the tolerance below is no looser.
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((256, 100)) * 3 + offset).astype(np.float32)
    target = rng.integers(0, 100, 256)
    expected, _ = xent64(logits.astype(np.float64), target, ls, -100)
    loss, _ = impl.cross_entropy_forward(logits, target, ls, -100)
    np.testing.assert_allclose(loss, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offset", [1e8, 1e12, 1e17, 1e30])
@pytest.mark.parametrize("ls", [0.0, 0.1])
def test_cross_entropy_of_huge_logits_keeps_the_log_sum(impl, dtype, offset, ls):
    """Logits near 1e17 share a max m with m + log(s) == m even in float64: the backward's
    exp(x - lse) needs log(s) apart from m, and the smoothing term mean_j (m - x_j) must not
    cancel through sum_j x_j / C. Loss and gradient against the float64 definition, formed in
    exact shifted terms (m - x_j is exact for these inputs)."""
    rng = np.random.default_rng(int(np.log10(offset)))
    steps = rng.integers(-1, 2, (5, 4)).astype(np.float64)  # ties, and one ulp apart
    steps[0] = 0  # one row of equal logits: the softmax is 1/4 each
    logits = (dtype(offset) + steps * np.spacing(dtype(offset))).astype(dtype)
    target = rng.integers(0, 4, 5)
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True).astype(np.float64)
    loss64, grad64 = xent64(shifted, target, ls, -100)  # the loss does not see the offset
    loss, parts = impl.cross_entropy_forward(logits, target, ls)
    dlogits = impl.cross_entropy_backward(np.ones(5, dtype), logits, target, parts, ls)
    assert_close(loss, loss64, dtype, scale=float(np.max(np.abs(loss64))))
    assert_close(dlogits, grad64, dtype)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [3, 40])
def test_cross_entropy_rows_holding_nan(impl, dtype, c):
    """A NaN anywhere in a row makes its loss and gradient NaN and its lse parts (0, NaN) on
    both backends, wherever the NaN sits (the compiled max loops may step over it)."""
    logits = np.tile(np.linspace(-1, 2, c), (5, 1)).astype(dtype)
    logits[0, 0] = logits[1, 1] = logits[2, -1] = logits[3, 1] = np.nan
    logits[3, 33 if c > 33 else -1] = 1e30  # in the NaN's vector lane: a max skipping it misses it
    target = np.array([1, 0, 0, 0, 0])
    with np.errstate(invalid="ignore", over="ignore"):
        loss, parts = impl.cross_entropy_forward(logits, target, 0.1)
        dlogits = impl.cross_entropy_backward(np.ones(5, dtype), logits, target, parts, 0.1)
    np.testing.assert_array_equal(parts[:4, 0], 0.0)
    assert np.all(np.isnan(parts[:4, 1])) and np.all(np.isnan(loss[:4]))
    assert np.all(np.isnan(dlogits[:4]))
    assert parts[4, 0] == dtype(2) and np.all(np.isfinite(dlogits[4]))


@pytest.mark.parametrize("impl", IMPLS)
def test_cross_entropy_bad_calls(impl):
    logits = np.zeros((3, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="target 4"):
        impl.cross_entropy_forward(logits, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match="target -1"):
        impl.cross_entropy_forward(logits, np.array([0, -1, 1]))
    with pytest.raises(ValueError, match=r"\(2,\)"):
        impl.cross_entropy_forward(logits, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"\(3, 4, 1\)"):
        impl.cross_entropy_forward(logits[..., None], np.array([0, 1, 2]))
    with pytest.raises(TypeError, match="float64"):
        impl.cross_entropy_forward(logits, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(TypeError, match="int64"):
        impl.cross_entropy_forward(logits.astype(np.int64), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"\(4,\)"):
        impl.cross_entropy_backward(np.ones(4, np.float32), logits, np.array([0, 1, 2]),
                                    np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match=r"lse_parts must have shape \(3, 2\)"):
        impl.cross_entropy_backward(np.ones(3, np.float32), logits, np.array([0, 1, 2]),
                                    np.zeros(3, np.float64))
    # every row ignored: zero loss and gradient
    loss, lse = impl.cross_entropy_forward(logits, np.full(3, -100))
    assert np.all(loss == 0)
    dlogits = impl.cross_entropy_backward(np.ones(3, np.float32), logits, np.full(3, -100), lse)
    assert np.all(dlogits == 0)


# ---- compiled vs twin, threads -------------------------------------------------------------------

@needs_compiled
@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_compiled_matches_twin(dtype):
    rng = np.random.default_rng(9)
    logits = (rng.standard_normal((257, 101)) * 5).astype(dtype)
    target = rng.integers(0, 101, 257)
    target[::7] = -100
    grad = rng.standard_normal(257).astype(dtype)
    for ls in (0.0, 0.3):
        a = _softmax.cross_entropy_forward(logits, target, ls)
        b = reference.cross_entropy_forward(logits, target, ls)
        assert_close(a[0], b[0], dtype, scale=20.0)
        assert_close(a[1], b[1], dtype, scale=20.0, result_dtype=np.float64)
        assert_close(_softmax.cross_entropy_backward(grad, logits, target, b[1], ls),
                     reference.cross_entropy_backward(grad, logits, target, b[1], ls), dtype)


@needs_compiled
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, axis", [((600, 512), 1), ((600, 512), 0), ((3, 400, 300), 1)])
def test_results_do_not_depend_on_thread_count(dtype, shape, axis):
    rng = np.random.default_rng(11)
    x = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    target = rng.integers(0, 512, 600)
    before = _softmax.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            _softmax.set_num_threads(n)
            y, logy = _softmax.softmax(x, axis), _softmax.log_softmax(x, axis)
            out = [y, logy, _softmax.softmax_backward(y, g, axis),
                   _softmax.log_softmax_backward(logy, g, axis)]
            if x.ndim == 2:
                loss, lse = _softmax.cross_entropy_forward(x, target, 0.1)
                out += [loss, lse, _softmax.cross_entropy_backward(g[:, 0], x, target, lse, 0.1)]
            results.append(out)
    finally:
        _softmax.set_num_threads(before)
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)

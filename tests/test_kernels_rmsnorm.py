"""Tests of the RMSNorm kernels (the LayerNorm cores without centring): compiled vs NumPy twin vs
a float64 oracle that builds each sample's Jacobian instead of using the closed form."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_modules import compiled_module, implementations

from minigrad.kernels import reference

_norm = compiled_module("_norm")
IMPLS = implementations("_norm")
DTYPES = [np.float32, np.float64]
TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-11}
LAYOUTS = ["contiguous", "transposed", "step", "unaligned"]
F32 = np.float32
EPS = 1e-5


def relayout(a: np.ndarray, layout: str) -> np.ndarray:
    if layout == "transposed":
        return np.ascontiguousarray(a.T).T
    if layout == "step":
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    return a


def oracle(x, weight, dy, k, eps):
    """y, dx, dweight in float64: dx = J^T (dy * w) with J the Jacobian of x -> x * r per row."""
    d = int(np.prod(x.shape[x.ndim - k:]))
    x2 = x.reshape(-1, d).astype(np.float64)
    dy2 = dy.reshape(-1, d).astype(np.float64)
    w = np.ones(d) if weight is None else weight.reshape(d).astype(np.float64)
    r = 1.0 / np.sqrt(np.mean(x2**2, axis=1) + eps)
    y = x2 * r[:, None] * w
    dx = np.empty_like(x2)
    for i, (row, ri) in enumerate(zip(x2, r, strict=True)):
        jacobian = ri * np.eye(d) - np.outer(row, row) * ri**3 / d  # d(x r)_a / d x_b
        dx[i] = jacobian.T @ (dy2[i] * w)
    dweight = np.sum(dy2 * x2 * r[:, None], axis=0)
    return y.reshape(x.shape), dx.reshape(x.shape), dweight.reshape(x.shape[x.ndim - k:])


def run(impl, shape, k, dtype, layout, affine, seed=0, offset=0.0):
    rng = np.random.default_rng(seed)
    x = relayout((offset + rng.standard_normal(shape) * 2).astype(dtype), layout)
    dy = relayout(rng.standard_normal(shape).astype(dtype), layout)
    weight = rng.standard_normal(shape[len(shape) - k:]).astype(dtype) if affine else None
    y, rstd = impl.rmsnorm_forward(x, weight, EPS, k)
    dx, dweight = impl.rmsnorm_backward(dy, x, weight, rstd)
    return (y, dx, dweight, rstd), (x, weight, dy)


def assert_close(actual, expected, dtype):
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    assert actual.dtype == expected.dtype or actual.dtype == dtype
    np.testing.assert_allclose(actual.astype(np.float64), expected, rtol=0,
                               atol=TOL[np.dtype(dtype)] * scale)


CASES = [((6, 5), 1), ((3, 4, 7), 1), ((2, 3, 4), 2), ((5,), 1), ((4, 1), 1), ((1, 33), 1)]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize(("shape", "k"), CASES)
def test_rmsnorm_matches_oracle(impl, dtype, layout, affine, shape, k):
    (y, dx, dweight, rstd), (x, weight, dy) = run(impl, shape, k, dtype, layout, affine)
    y_ref, dx_ref, dw_ref = oracle(x, weight, dy, k, EPS)
    assert y.dtype == dtype and dx.dtype == dtype and dweight.dtype == dtype
    assert rstd.dtype == np.float64 and rstd.shape == shape[: len(shape) - k]
    assert_close(y, y_ref, dtype)
    assert_close(dx, dx_ref, dtype)
    assert_close(dweight, dw_ref, dtype)


@pytest.mark.parametrize("impl", IMPLS)
def test_rmsnorm_float32_far_from_zero(impl):
    (y, dx, dweight, _), (x, _, dy) = run(impl, (8, 4096), 1, F32, "contiguous", False,
                                           offset=1e4)
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    r = 1.0 / np.sqrt(np.mean(x64**2, axis=1, keepdims=True) + EPS)
    np.testing.assert_allclose(y, x64 * r, rtol=2e-7)
    dx_ref = r * (dy64 - x64 * r**2 * np.mean(dy64 * x64, axis=1, keepdims=True))
    assert np.abs(dx - dx_ref).max() < 1e-6 * np.abs(dx_ref).max()


@pytest.mark.skipif(_norm is None, reason="compiled kernels not built")
@pytest.mark.parametrize("dtype", DTYPES)
def test_rmsnorm_large_and_thread_count_independent(dtype):
    results = []
    for threads in (1, 2):
        _norm.set_num_threads(threads)
        try:
            results.append(run(_norm, (512, 1024), 1, dtype, "contiguous", True)[0])
        finally:
            _norm.set_num_threads(2)
    for one, two in zip(*results, strict=True):
        np.testing.assert_array_equal(one, two)


@pytest.mark.skipif(_norm is None, reason="compiled kernels not built")
@settings(max_examples=40, deadline=None)
@given(lead=st.sampled_from([(), (1,), (3,), (2, 5)]),
       tail=st.sampled_from([(1,), (7,), (16,), (33,), (2, 9)]),
       dtype=st.sampled_from(DTYPES), layout=st.sampled_from(LAYOUTS), affine=st.booleans(),
       seed=st.integers(0, 2**16))
def test_rmsnorm_compiled_vs_twin(lead, tail, dtype, layout, affine, seed):
    shape, k = lead + tail, len(tail)
    compiled = run(_norm, shape, k, dtype, layout, affine, seed=seed)[0]
    twin = run(reference, shape, k, dtype, layout, affine, seed=seed)[0]
    for a, b in zip(compiled, twin, strict=True):
        scale = max(1.0, float(np.max(np.abs(b)))) if b.size else 1.0
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL[np.dtype(dtype)] * scale)


@pytest.mark.parametrize("impl", IMPLS)
def test_rmsnorm_empty_batch(impl):
    x = np.ones((0, 4), F32)
    y, rstd = impl.rmsnorm_forward(x, None, EPS, 1)
    assert y.shape == (0, 4) and rstd.shape == (0,)
    dx, dweight = impl.rmsnorm_backward(x, x, None, rstd)
    assert dx.shape == (0, 4) and dweight.shape == (4,) and np.all(dweight == 0)


FORWARD_ERRORS = [
    (dict(normalized_ndim=0), ValueError, r"rmsnorm_forward: normalized_ndim must be in \[1"),
    (dict(normalized_ndim=1.0), TypeError, "normalized_ndim must be an int"),
    (dict(weight=np.ones(4, F32)), ValueError, r"weight must have shape \(5,\).*got shape \(4,\)"),
    (dict(weight=np.ones(5)), TypeError, "weight has dtype float64"),
    (dict(x=np.ones((4, 0), F32)), ValueError, "empty"),
    (dict(x=np.ones((4, 5), np.float16)), TypeError, "float32 or float64"),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("change", "error", "match"), FORWARD_ERRORS)
def test_rmsnorm_forward_rejects(impl, change, error, match):
    args = dict(x=np.ones((4, 5), F32), weight=None, eps=EPS, normalized_ndim=1)
    args.update(change)
    with pytest.raises(error, match=match):
        impl.rmsnorm_forward(**args)


BACKWARD_ERRORS = [
    (dict(rstd=np.ones(3)), ValueError, "rmsnorm_backward: rstd must have the leading"),
    (dict(rstd=np.ones((4, 5))), ValueError, "rstd must have the leading"),
    (dict(rstd=[1.0] * 4), TypeError, "rstd must be a numpy.ndarray"),
    (dict(grad_out=np.ones((4, 6), F32)), ValueError, "grad_out must have shape"),
    (dict(weight=np.ones(6, F32)), ValueError, r"weight must have shape \(5,\)"),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("change", "error", "match"), BACKWARD_ERRORS)
def test_rmsnorm_backward_rejects(impl, change, error, match):
    args = dict(grad_out=np.ones((4, 5), F32), x=np.ones((4, 5), F32), weight=None,
                rstd=np.ones(4))
    args.update(change)
    with pytest.raises(error, match=match):
        impl.rmsnorm_backward(**args)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name, position", [("forward", 0), ("forward", 1), ("backward", 0),
                                            ("backward", 1), ("backward", 2), ("backward", 3)])
def test_rmsnorm_refuses_byte_swapped_arrays(impl, name, position):
    x = np.ones((4, 5), F32)
    args = ([x, np.ones(5, F32), EPS, 1] if name == "forward"
            else [x, x, np.ones(5, F32), np.ones(4)])
    args[position] = args[position].astype(args[position].dtype.newbyteorder(">"))
    with pytest.raises(TypeError, match="non-native byte order"):
        getattr(impl, f"rmsnorm_{name}")(*args)

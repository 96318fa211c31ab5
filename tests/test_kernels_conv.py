"""The convolution kernels, compiled and NumPy twin, against each other and a float64 oracle.

The oracle is the twin run on float64 copies (itself checked against a direct loop nest in
tests/test_conv.py); both implementations are compared with it over shapes, strides, padding,
dilation, groups, both dtypes and memory layouts, and a bad direct call must raise the same
exception with the same message on both.
"""

from __future__ import annotations

import numpy as np
import pytest
from kernel_modules import compiled_module, implementations

from minigrad.kernels import _conv_twin

_conv = compiled_module("_conv")
IMPLS = implementations("_conv")
TOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}

# (x shape, weight shape, stride, padding (top, bottom, left, right), dilation, groups)
GEOMETRIES = [
    ((2, 3, 8, 8), (4, 3, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    ((3, 1, 9, 7), (5, 1, 3, 3), (2, 2), (0, 0, 0, 0), (1, 1), 1),
    ((2, 4, 7, 10), (6, 2, 2, 3), (1, 3), (2, 0, 1, 3), (2, 1), 2),
    ((2, 6, 6, 6), (6, 1, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 6),  # depthwise
    ((1, 2, 5, 5), (3, 2, 5, 5), (1, 1), (0, 0, 0, 0), (1, 1), 1),  # kernel = input
    ((2, 2, 4, 4), (2, 2, 3, 3), (3, 3), (4, 4, 4, 4), (2, 2), 1),  # padding > kernel
    ((2, 80, 4, 4), (4, 80, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),  # many rows: one dW GEMM
    ((0, 2, 4, 4), (3, 2, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),  # empty batch
    ((2, 2, 1, 9), (3, 2, 1, 3), (1, 2), (0, 0, 1, 1), (1, 1), 1),  # conv1d's unit height
    # output rows as long as the input's: each tap is one shifted run (the flat path)
    ((2, 6, 5, 7), (6, 2, 3, 3), (1, 1), (2, 2, 2, 2), (2, 2), 3),  # dilated, three groups
    ((2, 3, 4, 6), (2, 3, 2, 3), (1, 1), (0, 1, 0, 2), (1, 1), 1),  # even kernel, one side
    ((1, 1, 2, 3), (2, 1, 1, 7), (1, 1), (0, 0, 3, 3), (1, 1), 1),  # taps wholly in padding
    ((3, 16, 4, 4), (8, 16, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),  # the digits CNN's 4x4
]


def _layout(a, layout):
    if layout == "transposed":
        return np.ascontiguousarray(a.T).T
    if layout == "step":
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    return a


def assert_close(actual, expected, dtype):
    assert actual.dtype == dtype and actual.shape == expected.shape
    scale = max(1.0, float(np.abs(expected).max())) if expected.size else 1.0
    np.testing.assert_allclose(actual.astype(np.float64), expected, rtol=0,
                               atol=TOL[np.dtype(dtype)] * scale * 10)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "step"])
@pytest.mark.parametrize("xs, ws, stride, padding, dilation, groups", GEOMETRIES)
def test_forward_and_backward_match_the_float64_oracle(impl, dtype, layout, xs, ws, stride,
                                                       padding, dilation, groups):
    rng = np.random.default_rng(1)
    x64, w64, b64 = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    geometry = (stride, padding, dilation, groups)
    y64 = _conv_twin.conv2d_forward(x64, w64, b64, *geometry)
    dy64 = rng.standard_normal(y64.shape)
    expected = _conv_twin.conv2d_backward(dy64, x64, w64, *geometry, (True, True, True))
    x, w, b, dy = (_layout(a.astype(dtype), layout) for a in (x64, w64, b64, dy64))
    assert_close(impl.conv2d_forward(x, w, b, *geometry), y64, dtype)
    assert_close(impl.conv2d_forward(x, w, None, *geometry), y64 - b64.reshape(1, -1, 1, 1),
                 dtype)
    for needs in [(True, True, True), (True, False, False), (False, True, False),
                  (False, False, True), (False, True, True)]:
        got = impl.conv2d_backward(dy, x, w, *geometry, needs)
        for want, g, e in zip(needs, got, expected, strict=True):
            if want:
                assert_close(g, e, dtype)
            else:
                assert g is None


@pytest.mark.skipif(_conv is None, reason="compiled kernels not built")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_and_twin_agree_on_a_benchmark_shape(dtype):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((16, 8, 14, 14)).astype(dtype)
    w = rng.standard_normal((16, 8, 3, 3)).astype(dtype)
    b = rng.standard_normal(16).astype(dtype)
    geometry = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    y = _conv.conv2d_forward(x, w, b, *geometry)
    assert_close(y, _conv_twin.conv2d_forward(x.astype(np.float64), w.astype(np.float64),
                                              b.astype(np.float64), *geometry), dtype)
    grads = _conv.conv2d_backward(y, x, w, *geometry, (True, True, True))
    twins = _conv_twin.conv2d_backward(y.astype(np.float64), x.astype(np.float64),
                                       w.astype(np.float64), *geometry, (True, True, True))
    for g, t in zip(grads, twins, strict=True):
        assert_close(g, t, dtype)


def _bad_calls():
    x, w = np.zeros((2, 4, 5, 5), np.float32), np.zeros((6, 2, 3, 3), np.float32)
    g = ((1, 1), (0, 0, 0, 0), (1, 1), 2)
    dy = np.zeros((2, 6, 3, 3), np.float32)
    return [
        ("fwd", (x.astype(np.float64), w, None) + g, TypeError),
        ("fwd", (x, w, np.zeros(5, np.float32)) + g, ValueError),
        ("fwd", (x, w, None, (1, 1), (0, 0, 0, 0), (1, 1), 3), ValueError),
        ("fwd", (x, w, None, (0, 1), (0, 0, 0, 0), (1, 1), 2), ValueError),
        ("fwd", (x, w, None, (1, 1), (0, -1, 0, 0), (1, 1), 2), ValueError),
        ("fwd", (x, w, None, (1, 1), (0, 0), (1, 1), 2), TypeError),
        ("fwd", (x, w, None, (1, 1.0), (0, 0, 0, 0), (1, 1), 2), TypeError),
        ("fwd", (x, w, None, (1, 1), (0, 0, 0, 0), (3, 3), 2), ValueError),  # span 7 > 5
        ("fwd", (x[:, :, :2], w, None) + g, ValueError),
        ("fwd", (x[0], w, None) + g, ValueError),
        ("fwd", (x.astype(">f4"), w, None) + g, TypeError),
        ("fwd", (x, w, None, (1, 1), (0, 0, 0, 0), (1, 1), 2**40), ValueError),
        ("fwd", (x, w, None, (1, 1), (0, 0, 0, 2**40), (1, 1), 2), ValueError),
        ("bwd", (dy[:, :, :2], x, w) + g + ((True, True, True),), ValueError),
        ("bwd", (dy.astype(np.float64), x, w) + g + ((True, True, True),), TypeError),
        ("bwd", (dy, x, w) + g + ((True, 1, True),), TypeError),
        ("bwd", (dy, x, w) + g + ((True, True),), TypeError),
        ("bwd", ([[0.0]], x, w) + g + ((True, True, True),), TypeError),
    ]


@pytest.mark.parametrize("kind, args, error", _bad_calls())
def test_a_bad_direct_call_raises_the_same_error_on_both(kind, args, error):
    messages = []
    for impl in [p.values[0] for p in IMPLS]:
        fn = impl.conv2d_forward if kind == "fwd" else impl.conv2d_backward
        with pytest.raises(error) as info:
            fn(*args)
        messages.append(str(info.value))
    assert len(set(messages)) == 1, messages

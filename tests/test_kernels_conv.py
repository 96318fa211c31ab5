"""The convolution kernels, compiled and NumPy twin, against each other and a float64 oracle.

The oracle is the twin run on float64 copies (itself checked against a direct loop nest in
tests/test_conv.py); both implementations are compared with it over shapes, strides, padding,
dilation, groups, both dtypes and memory layouts, and a bad direct call must raise the same
exception with the same message on both.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import tracemalloc

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


@pytest.mark.skipif(_conv is None, reason="compiled kernels not built")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("block_bytes", [1, 3000])
@pytest.mark.parametrize("ws, groups", [((6, 4, 3, 3), 1), ((8, 1, 3, 3), 4),
                                        ((8, 20, 2, 2), 1)])
def test_samples_in_blocks_give_the_same_result(monkeypatch, dtype, block_bytes, ws, groups):
    """The kernels run a block of samples at a time (as many as fit in BLOCK_BYTES): one sample
    per block, a few, or all of them give the same values; dW sums over the blocks, both of
    its layouts (few rows per group: a product per sample; many: one per block)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((7, ws[1] * groups, 6, 5)).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    geometry = ((1, 2), (1, 1, 0, 2), (1, 1), groups)
    y = _conv.conv2d_forward(x, w, b, *geometry)
    dy = rng.standard_normal(y.shape).astype(dtype)
    whole = _conv.conv2d_backward(dy, x, w, *geometry, (True, True, True))
    monkeypatch.setattr(_conv, "BLOCK_BYTES", block_bytes)
    assert_close(_conv.conv2d_forward(x, w, b, *geometry), y.astype(np.float64), dtype)
    blocks = _conv.conv2d_backward(dy, x, w, *geometry, (True, True, True))
    for got, want in zip(blocks, whole, strict=True):
        assert_close(got, want.astype(np.float64), dtype)
    twin = _conv_twin.conv2d_backward(dy, x, w, *geometry, (True, True, True))
    for got, want in zip(blocks, twin, strict=True):
        assert_close(got, want.astype(np.float64), dtype)


@pytest.mark.skipif(_conv is None, reason="compiled kernels not built")
@pytest.mark.parametrize("needs", [(True, True, True), (False, True, True), (True, False, False)])
def test_backward_allocates_at_most_one_im2col_buffer(needs):
    """Measured with tracemalloc in a fresh thread (whose work buffer does not exist yet): the
    peak above the inputs is at most one block of work (BLOCK_BYTES) plus the gradients
    returned, and so below the im2col buffer of the whole call; a second call allocates no
    work buffer at all."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((64, 8, 16, 16)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((64, 16, 16, 16)).astype(np.float32)
    geometry = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    outputs = x.nbytes * needs[0] + w.nbytes * needs[1] + 64 * needs[2]
    im2col = 64 * (8 * 9 + 1) * 16 * 16 * 4
    peaks = []

    def run():
        for _ in range(2):
            tracemalloc.start()
            try:
                _conv.conv2d_backward(dy, x, w, *geometry, needs)
                peaks.append(tracemalloc.get_traced_memory()[1])
            finally:
                tracemalloc.stop()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    slack = 64 * 1024  # small arrays: dW's partial products, reshapes, sums
    assert peaks[0] <= _conv.BLOCK_BYTES + outputs + slack < im2col, peaks
    assert peaks[1] <= outputs + slack, peaks


@pytest.mark.skipif(_conv is None, reason="compiled kernels not built")
def test_threads_calling_at_once_each_get_their_own_work_buffer():
    """Python threads running the kernels at the same time (the GIL is released in the loops)
    each fill their own work buffer: every result equals the one computed alone."""
    rng = np.random.default_rng(5)
    geometry = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    cases = []
    for _ in range(4):
        x = rng.standard_normal((16, 4, 12, 12)).astype(np.float32)
        w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
        dy = rng.standard_normal((16, 8, 12, 12)).astype(np.float32)
        alone = (_conv.conv2d_forward(x, w, None, *geometry),
                 *_conv.conv2d_backward(dy, x, w, *geometry, (True, True, False))[:2])
        cases.append((x, w, dy, alone))
    errors = []

    def run(case):
        x, w, dy, alone = case
        for _ in range(30):
            got = (_conv.conv2d_forward(x, w, None, *geometry),
                   *_conv.conv2d_backward(dy, x, w, *geometry, (True, True, False))[:2])
            if not all(np.array_equal(g, a) for g, a in zip(got, alone, strict=True)):
                errors.append("differs")

    threads = [threading.Thread(target=run, args=(case,)) for case in cases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


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


# Geometries the direct path covers (stride 1, output rows as long as the input's), run with
# the path forced: each must take it.
DIRECT_GEOMETRIES = [
    ((3, 16, 4, 4), (8, 16, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),  # the digits CNN's 4x4
    ((2, 1, 8, 8), (5, 1, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),  # one input channel
    ((2, 6, 5, 7), (6, 2, 3, 3), (1, 1), (2, 2, 2, 2), (2, 2), 3),  # dilated, three groups
    ((2, 4, 7, 10), (6, 2, 2, 3), (1, 1), (2, 0, 1, 1), (2, 1), 2),  # padding above only
    ((3, 1, 9, 7), (5, 1, 3, 3), (1, 1), (0, 3, 0, 2), (1, 1), 1),  # padding right and below
    ((2, 6, 6, 6), (6, 1, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 6),  # depthwise
    ((2, 40, 4, 4), (37, 40, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),  # 1x1, ragged tiles
    ((2, 3, 5, 9), (7, 3, 4, 5), (1, 1), (3, 0, 8, 0), (2, 2), 1),  # taps reach left and up
    ((1, 4, 2, 3), (5, 4, 1, 7), (1, 1), (0, 0, 3, 3), (1, 1), 1),  # taps wholly in padding
    ((2, 3, 6, 5), (4, 3, 3, 3), (1, 1), (0, 0, 1, 1), (1, 1), 1),  # fewer output rows
    ((2, 2, 3, 3), (3, 2, 3, 3), (1, 1), (4, 4, 1, 1), (1, 1), 1),  # rows of padding only
    ((3, 17, 9, 9), (19, 17, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),  # 81 positions
    ((2, 3, 1, 9), (4, 3, 1, 3), (1, 1), (0, 0, 1, 1), (1, 1), 1),  # conv1d's unit height
    # padding wider than the output, left or above: a tap's run starts past the row's end
    ((1, 1, 1, 1), (1, 1, 1, 2), (1, 1), (0, 0, 128, 128), (1, 256), 1),
    ((2, 3, 1, 3), (4, 3, 2, 3), (1, 1), (32, 32, 1, 1), (64, 1), 1),
]


@pytest.mark.skipif(_conv is None, reason="compiled kernels not built")
@pytest.mark.parametrize("path", ["direct", "im2col"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
@pytest.mark.parametrize("xs, ws, stride, padding, dilation, groups", DIRECT_GEOMETRIES)
def test_both_paths_match_the_float64_oracle(monkeypatch, path, dtype, layout, xs, ws, stride,
                                             padding, dilation, groups):
    """Each algorithm forced in turn, over the geometries both cover: values and the gradients
    asked for, with and without bias, against the float64 twin."""
    monkeypatch.setattr(_conv, "PATH", path)
    rng = np.random.default_rng(5)
    x64, w64, b64 = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    geometry = (stride, padding, dilation, groups)
    y64 = _conv_twin.conv2d_forward(x64, w64, b64, *geometry)
    dy64 = rng.standard_normal(y64.shape)
    expected = _conv_twin.conv2d_backward(dy64, x64, w64, *geometry, (True, True, True))
    x, w, b, dy = (_layout(a.astype(dtype), layout) for a in (x64, w64, b64, dy64))
    for kind in ("forward", "dx", "dw"):
        assert _conv._algorithm(x, w, stride, *y64.shape[2:], kind) == path
    assert_close(_conv.conv2d_forward(x, w, b, *geometry), y64, dtype)
    assert_close(_conv.conv2d_forward(x, w, None, *geometry), y64 - b64.reshape(1, -1, 1, 1),
                 dtype)
    for needs in [(True, True, True), (True, False, False), (False, True, False),
                  (False, False, True)]:
        got = _conv.conv2d_backward(dy, x, w, *geometry, needs)
        for want, g, e in zip(needs, got, expected, strict=True):
            assert (g is not None) == want
            if want:
                assert_close(g, e, dtype)


@pytest.mark.skipif(_conv is None, reason="compiled kernels not built")
def test_the_size_rule_takes_the_direct_path_where_it_was_measured_faster():
    def path(xs, ws, kind, stride=(1, 1)):
        x, w = np.zeros(xs, np.float32), np.zeros(ws, np.float32)
        return _conv._algorithm(x, w, stride, xs[2], xs[3], kind)

    for kind in ("forward", "dx", "dw"):
        assert path((64, 16, 4, 4), (32, 16, 3, 3), kind) == "direct"
        assert path((128, 32, 14, 14), (64, 32, 3, 3), kind) == "direct"
        assert path((64, 16, 8, 8), (32, 16, 3, 3), kind, stride=(2, 2)) == "im2col"  # not covered
    for xs, ws in [((64, 1, 8, 8), (16, 1, 3, 3)), ((128, 1, 28, 28), (32, 1, 3, 3))]:
        assert path(xs, ws, "forward") == "direct"
        assert path(xs, ws, "dw") == "direct"
        assert path(xs, ws, "dx") == "im2col"  # nine rows


@pytest.mark.skipif(_conv is None, reason="compiled kernels not built")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("needs", [(True, True, True), (True, False, True), (False, True, True)])
def test_one_call_may_take_dw_on_the_direct_path_and_dx_on_the_im2col_one(dtype, needs):
    """A first layer's backward (nine rows): dW on the direct path, dx on the im2col one,
    together in one call, as each alone and as the twin."""
    rng = np.random.default_rng(9)
    x64, w64 = rng.standard_normal((5, 1, 6, 7)), rng.standard_normal((4, 1, 3, 3))
    geometry = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    dy64 = rng.standard_normal((5, 4, 6, 7))
    expected = _conv_twin.conv2d_backward(dy64, x64, w64, *geometry, (True, True, True))
    x, w, dy = (a.astype(dtype) for a in (x64, w64, dy64))
    got = _conv.conv2d_backward(dy, x, w, *geometry, needs)
    for k, (want, g, e) in enumerate(zip(needs, got, expected, strict=True)):
        assert (g is not None) == want
        if want:
            assert_close(g, e, dtype)
            alone = _conv.conv2d_backward(dy, x, w, *geometry, tuple(i == k for i in range(3)))
            np.testing.assert_array_equal(g, alone[k])


@pytest.mark.skipif(_conv is None, reason="compiled kernels not built")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("channels", [16, 1])  # dW by broadcasts, and over positions
def test_the_direct_path_gives_the_same_bits_on_one_and_two_threads(monkeypatch, dtype,
                                                                     channels):
    """Split across threads (the threshold forced down): samples for forward and dx, rows of
    dW^T or out channels for dW, each sum over the samples in order whichever thread makes
    it."""
    import minigrad as mg

    monkeypatch.setattr(_conv, "PATH", "direct")
    monkeypatch.setattr(_conv, "DIRECT_PARALLEL_MIN_MACS", 0)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((24, channels, 8, 8)).astype(dtype)
    w = rng.standard_normal((32, channels, 3, 3)).astype(dtype)
    b = rng.standard_normal(32).astype(dtype)
    geometry = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    dy = rng.standard_normal((24, 32, 8, 8)).astype(dtype)
    previous = mg.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            mg.set_num_threads(threads)
            results.append((_conv.conv2d_forward(x, w, b, *geometry),)
                           + _conv.conv2d_backward(dy, x, w, *geometry, (True, True, True)))
    finally:
        mg.set_num_threads(previous)
    for one, two in zip(*results, strict=True):
        np.testing.assert_array_equal(one, two)


@pytest.mark.skipif(_conv is None, reason="compiled kernels not built")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("block_bytes", [1, 20000])
@pytest.mark.parametrize("xs, ws", [((9, 6, 5, 5), (10, 3, 3, 3)),  # 27 rows: by broadcasts
                                    ((9, 2, 5, 5), (6, 1, 3, 3)),  # 9 rows: over positions
                                    ((7, 2, 4, 4), (10, 1, 3, 3))])  # 16 positions: in place
def test_the_direct_path_sums_dw_over_blocks_of_samples(monkeypatch, dtype, block_bytes, xs,
                                                        ws):
    """Blocks of one sample and of several (BLOCK_BYTES for the broadcast kernel,
    WG_CHUNK_BYTES for the one over positions), against the twin."""
    monkeypatch.setattr(_conv, "PATH", "direct")
    monkeypatch.setattr(_conv, "BLOCK_BYTES", block_bytes)
    monkeypatch.setattr(_conv, "WG_CHUNK_BYTES", block_bytes // 100)
    rng = np.random.default_rng(7)
    x64, w64 = rng.standard_normal(xs), rng.standard_normal(ws)
    geometry = ((1, 1), (1, 1, 1, 1), (1, 1), 2)
    dy64 = rng.standard_normal((xs[0], ws[0]) + xs[2:])
    expected = _conv_twin.conv2d_backward(dy64, x64, w64, *geometry, (True, True, True))
    got = _conv.conv2d_backward(dy64.astype(dtype), x64.astype(dtype), w64.astype(dtype),
                                *geometry, (True, True, True))
    for g, e in zip(got, expected, strict=True):
        assert_close(g, e, dtype)


@pytest.mark.skipif(_conv is None, reason="compiled kernels not built")
@pytest.mark.parametrize("path", ["direct", "im2col"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("special", [np.inf, -np.inf, np.nan])
def test_dx_takes_a_weight_only_through_the_outputs_its_tap_reaches(monkeypatch, path, dtype,
                                                                    special):
    """dx[q] sums w[tap] dy[p] over the outputs p whose window holds q: a tap that reaches no
    output from q adds no term, so a non-finite weight does not turn the dx of the pixels on
    the border into NaN (0 * inf); the same values on both paths and the twin."""
    monkeypatch.setattr(_conv, "PATH", path)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 4, 5)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    w[1, 2, 0, 0] = special  # tap (0, 0): the last row and column of x reach no output with it
    geometry = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    dy = rng.standard_normal((2, 4, 4, 5)).astype(dtype)
    expected = _conv_twin.conv2d_backward(dy, x, w, *geometry, (True, False, False))[0]
    assert np.isfinite(expected[:, :, -1, :]).all() and np.isfinite(expected[..., -1]).all()
    dx = _conv.conv2d_backward(dy, x, w, *geometry, (True, False, False))[0]
    np.testing.assert_array_equal(np.isnan(dx), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(dx), np.isinf(expected))
    finite = np.isfinite(expected)
    assert_close(np.where(finite, dx, 0), np.where(finite, expected, 0).astype(np.float64), dtype)


_WIDE_PADDING = """
import numpy as np
from minigrad.kernels import _conv, _conv_twin
_conv.PATH = "im2col"
for xs, ws, padding, dilation in [((1, 1, 1, 1), (1, 1, 1, 2), (0, 0, 128, 128), (1, 256)),
                                  ((2, 3, 1, 3), (4, 3, 2, 3), (32, 32, 1, 1), (64, 1))]:
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    y = _conv.conv2d_forward(x, w, None, (1, 1), padding, dilation, 1)
    want = _conv_twin.conv2d_forward(x, w, None, (1, 1), padding, dilation, 1)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
print("ok")
"""


@pytest.mark.skipif(_conv is None, reason="compiled kernels not built")
def test_im2col_rows_of_a_padding_wider_than_the_output_stay_inside_the_buffer():
    """A left or top padding wider than the output put a tap's run past its buffer row, and
    the zeros before it were written past the row's end (a heap overflow, seen as an abort
    when the process freed its memory). In a fresh process, with glibc's heap checks on."""
    run = subprocess.run([sys.executable, "-c", _WIDE_PADDING], capture_output=True, text=True,
                         timeout=60, env=dict(os.environ, MALLOC_CHECK_="3"))
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]

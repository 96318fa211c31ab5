"""The pooling kernels called directly: the compiled module against its NumPy twin over shapes,
both dtypes, memory layouts and thread counts (the float64 loop-nest reference of
tests/test_pool.py checks the values themselves), and the same clean error on both for a bad
direct call."""

from __future__ import annotations

import numpy as np
import pytest
from kernel_modules import compiled_module, implementations, relayout

import minigrad as mg
from minigrad.kernels import _pool_twin as twin

_pool = compiled_module("_pool")
IMPLS = implementations("_pool")
TOL = {np.dtype(np.float32): 3e-6, np.dtype(np.float64): 1e-13}

# (shape, kernel, stride, padding, dilation, out): geometry as the public functions produce it,
# plus windows that hang over the ends (ceil_mode) and, once, windows with no input at all
GEOMETRIES = [
    ((2, 3, 8, 8), (2, 2), (2, 2), (0, 0), (1, 1), (4, 4)),
    ((3, 2, 7, 9), (3, 3), (2, 2), (1, 1), (1, 1), (4, 5)),
    ((1, 4, 6, 5), (2, 3), (3, 2), (1, 1), (1, 1), (3, 3)),
    ((2, 2, 9, 8), (3, 2), (1, 2), (1, 1), (2, 3), (7, 4)),
    ((1, 1, 1, 1), (1, 1), (1, 1), (0, 0), (1, 1), (1, 1)),
    ((2, 3, 17, 33), (3, 4), (2, 3), (1, 2), (1, 1), (9, 12)),
    ((1, 2, 3, 3), (2, 2), (4, 4), (0, 0), (1, 1), (2, 2)),  # second window past the input
    ((0, 3, 4, 4), (2, 2), (2, 2), (0, 0), (1, 1), (2, 2)),
]


def assert_close(got, want, dtype):
    finite = np.abs(want[np.isfinite(want)])
    scale = max(1.0, float(finite.max())) if finite.size else 1.0
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL[np.dtype(dtype)] * scale)


def _run_all(impl, x, geometry, include_pad, g_max, g_avg):
    _, k, s, p, d, o = geometry
    y, idx = impl.max_pool2d_forward(x, k, s, p, d, o)
    dx = impl.max_pool2d_backward(g_max, idx, x.shape[2:])
    a = impl.avg_pool2d_forward(x, k, s, p, o, include_pad)
    da = impl.avg_pool2d_backward(g_avg, x.shape[2:], k, s, p, include_pad)
    return y, idx, dx, a, da


@pytest.mark.skipif(_pool is None, reason="compiled kernels not built (NumPy-only run)")
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "step"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_compiled_matches_twin(rng, geometry, dtype, layout):
    shape, out = geometry[0], geometry[-1]
    x = relayout(rng.standard_normal(shape).astype(dtype), layout)
    g = relayout(rng.standard_normal(shape[:2] + out).astype(dtype), layout)
    for include_pad in (True, False):
        compiled = _run_all(_pool, x, geometry, include_pad, g, g)
        expected = _run_all(twin, x, geometry, include_pad, g, g)
        for c, t in zip(compiled, expected, strict=True):
            if c.dtype == np.int64:
                np.testing.assert_array_equal(c, t)
            else:
                assert_close(c, t, dtype)


@pytest.mark.skipif(_pool is None, reason="compiled kernels not built (NumPy-only run)")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, out", [((2, 3, 7, 9), (3, 4)), ((1, 2, 28, 28), (1, 1)),
                                        ((2, 1, 5, 3), (7, 4)), ((1, 1, 40, 40), (3, 1)),
                                        ((0, 2, 4, 4), (2, 2)),
                                        # global pooling's own loops: planes of 1 to 63 values
                                        # (four partial sums and a tail) and of 64 (SIMD lanes)
                                        ((3, 5, 4, 4), (1, 1)), ((2, 3, 1, 1), (1, 1)),
                                        ((2, 3, 3, 5), (1, 1)), ((1, 2, 8, 8), (1, 1)),
                                        ((2, 0, 4, 4), (1, 1))])
def test_compiled_adaptive_matches_twin(rng, shape, out, dtype):
    x = relayout(rng.standard_normal(shape).astype(dtype), "transposed")
    g = rng.standard_normal(shape[:2] + out).astype(dtype)
    assert_close(_pool.adaptive_avg_pool2d_forward(x, out),
                 twin.adaptive_avg_pool2d_forward(x, out), dtype)
    assert_close(_pool.adaptive_avg_pool2d_backward(g, shape[2:]),
                 twin.adaptive_avg_pool2d_backward(g, shape[2:]), dtype)


@pytest.mark.skipif(_pool is None, reason="compiled kernels not built (NumPy-only run)")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_average_pool_matches_the_general_loops(rng, dtype):
    """The 1x1 output's own loops against the general ones (an output of (1, 2) runs those
    on the same windows as two halves): the means agree to rounding (the float64 partial sums
    differ), the spread gradient bit for bit, signed zeros included: a -0.0 gradient spreads
    as +0.0 in both, as adding it to zeros does."""
    x = rng.standard_normal((3, 4, 5, 6)).astype(dtype)
    halves = _pool.adaptive_avg_pool2d_forward(np.concatenate([x, x], axis=3), (1, 2))
    assert_close(_pool.adaptive_avg_pool2d_forward(x, (1, 1)), halves[..., :1], dtype)
    g = rng.standard_normal((3, 4, 1, 1)).astype(dtype)
    g[0, 0] = -0.0
    dx = _pool.adaptive_avg_pool2d_backward(g, (5, 6))
    general = _pool.adaptive_avg_pool2d_backward(np.concatenate([g, g], axis=3), (5, 12))
    np.testing.assert_array_equal(dx, general[..., :6])
    assert not np.signbit(dx[0, 0]).any()


@pytest.mark.skipif(_pool is None, reason="compiled kernels not built (NumPy-only run)")
@pytest.mark.parametrize("threads", [1, 2])
def test_threads_split_planes_without_changing_results(rng, threads):
    """Above the size threshold the planes go to threads; every result stays bit-identical."""
    x = rng.standard_normal((8, 32, 32, 40)).astype(np.float32)
    g = rng.standard_normal((8, 32, 16, 20)).astype(np.float32)
    previous = mg.get_num_threads()
    mg.set_num_threads(min(threads, mg.kernels.max_threads()))
    try:
        geometry = (x.shape, (2, 2), (2, 2), (0, 0), (1, 1), (16, 20))
        compiled = _run_all(_pool, x, geometry, True, g, g)
        gx = _pool.adaptive_avg_pool2d_backward(g, (32, 40))
    finally:
        mg.set_num_threads(previous)
    serial = _run_all(_pool, x, geometry, True, g, g)
    for c, s in zip(compiled, serial, strict=True):
        np.testing.assert_array_equal(c, s)
    np.testing.assert_array_equal(gx, _pool.adaptive_avg_pool2d_backward(g, (32, 40)))
    expected = _run_all(twin, x, geometry, True, g, g)
    for c, t in zip(compiled, expected, strict=True):
        if c.dtype == np.int64:
            np.testing.assert_array_equal(c, t)
        else:
            assert_close(c, t, np.float32)


def test_empty_windows_give_minus_inf_and_no_gradient():
    """A window with no input element (reachable only by a direct call) is -inf, index -1."""
    for impl in [p.values[0] for p in IMPLS]:
        x = np.ones((1, 1, 2, 2))
        y, idx = impl.max_pool2d_forward(x, (1, 1), (3, 3), (0, 0), (1, 1), (2, 2))
        np.testing.assert_array_equal(idx[0, 0], [[0, -1], [-1, -1]])
        assert y[0, 0, 0, 0] == 1 and np.all(y[0, 0].ravel()[1:] == -np.inf)
        dx = impl.max_pool2d_backward(np.ones((1, 1, 2, 2)), idx, (2, 2))
        np.testing.assert_array_equal(dx[0, 0], [[1, 0], [0, 0]])
        a = impl.avg_pool2d_forward(x, (1, 1), (3, 3), (0, 0), (2, 2), False)
        np.testing.assert_array_equal(a[0, 0], [[1, 0], [0, 0]])


X = np.zeros((1, 2, 4, 4))
G = np.zeros((1, 2, 2, 2))
IDX = np.zeros((1, 2, 2, 2), np.int64)
BAD_CALLS = [
    ("3-D x", "max_pool2d_forward", (X[0], (2, 2), (2, 2), (0, 0), (1, 1), (2, 2)), ValueError,
     "x must be 4-D"),
    ("int x", "avg_pool2d_forward", (X.astype(int), (2, 2), (2, 2), (0, 0), (2, 2), True),
     TypeError, "float32 or float64"),
    ("list x", "adaptive_avg_pool2d_forward", (X.tolist(), (1, 1)), TypeError, "ndarray"),
    ("int kernel", "max_pool2d_forward", (X, 2, (2, 2), (0, 0), (1, 1), (2, 2)), TypeError,
     "kernel_size must be a tuple of 2 ints"),
    ("zero stride", "avg_pool2d_forward", (X, (2, 2), (0, 2), (0, 0), (2, 2), True), ValueError,
     r"stride must be ints in \[1"),
    ("negative out", "adaptive_avg_pool2d_forward", (X, (-1, 2)), ValueError, "out_size"),
    ("negative in_size", "avg_pool2d_backward", (G, (-4, 4), (2, 2), (2, 2), (0, 0), True),
     ValueError, "in_size"),
    ("float indices", "max_pool2d_backward", (G, IDX.astype(float), (4, 4)), TypeError, "int64"),
    ("short indices", "max_pool2d_backward", (G, IDX[:, :1], (4, 4)), ValueError,
     "shape of grad_out"),
    ("index past plane", "max_pool2d_backward", (G, IDX + 16, (4, 4)), ValueError,
     "index 16 is outside the input plane of 16 elements"),
    ("index below -1", "max_pool2d_backward", (G, IDX - 2, (4, 4)), ValueError, "index -2"),
    ("index into empty plane", "max_pool2d_backward", (G, IDX, (0, 4)), ValueError, "index 0"),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name, fn, args, exc, match", BAD_CALLS, ids=[b[0] for b in BAD_CALLS])
def test_bad_direct_calls_raise_the_same_clean_error(impl, name, fn, args, exc, match):
    with pytest.raises(exc, match=match):
        getattr(impl, fn)(*args)



# 2x2 windows at stride 2 without padding take a path of their own when every window lies inside
# the plane; the last shape's ceil_mode column hangs over the edge and takes the general loops
# rows of 8 or more outputs take the blend loop, shorter ones the loop that loads (BLEND_MIN_OW)
PAIR_SHAPES = [((2, 3, 8, 8), (4, 4)), ((2, 3, 7, 9), (3, 4)), ((2, 3, 6, 16), (3, 8)),
               ((1, 2, 5, 37), (2, 18)), ((1, 2, 2, 2), (1, 1)), ((3, 1, 5, 2), (2, 1)),
               ((1, 2, 6, 7), (3, 4))]


def _tied_with_nans(rng, shape, dtype):
    """Few distinct values (many ties within a window), some -inf and some NaN, at times several
    NaN in one window."""
    x = rng.integers(-2, 3, shape).astype(dtype)
    x[rng.random(shape) < 0.1] = -np.inf
    x[rng.random(shape) < 0.15] = np.nan
    return x


@pytest.mark.skipif(_pool is None, reason="compiled kernels not built (NumPy-only run)")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, out", PAIR_SHAPES)
@pytest.mark.parametrize("data", ["normal", "tied", "all nan", "all -inf"])
def test_max_pairs_match_twin_exactly(rng, shape, out, dtype, data):
    """Same maxima and the same argmax (first maximal tap in row-major order, first NaN) as the
    twin, bit for bit."""
    if data == "normal":
        x = rng.standard_normal(shape).astype(dtype)
    elif data == "tied":
        x = _tied_with_nans(rng, shape, dtype)
    else:
        x = np.full(shape, np.nan if data == "all nan" else -np.inf, dtype)
    geometry = ((2, 2), (2, 2), (0, 0), (1, 1), out)
    y, idx = _pool.max_pool2d_forward(x, *geometry)
    want_y, want_idx = twin.max_pool2d_forward(x, *geometry)
    assert y.dtype == want_y.dtype
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(idx, want_idx)


@pytest.mark.skipif(_pool is None, reason="compiled kernels not built (NumPy-only run)")
def test_max_pairs_tie_and_nan_order():
    """Within one window: ties keep the first tap in row-major order; the first NaN wins."""
    W = [[1, 1], [1, 1]], [[0, 2], [2, 2]], [[0, 1], [np.nan, np.nan]], [[np.nan, 5], [np.nan, 9]]
    x = np.array(W, np.float32).reshape(1, 4, 2, 2)
    y, idx = _pool.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0), (1, 1), (1, 1))
    np.testing.assert_array_equal(idx.ravel(), [0, 1, 2, 0])
    np.testing.assert_array_equal(y.ravel(), [1, 2, np.nan, np.nan])


def _general_loops(pool, x, out):
    """pool(x, out) through the general loops: one more output column, which hangs over the
    right edge (x gets a spare column when its width is even), cut off again; max's indices
    mapped back to x's width."""
    W = x.shape[3]
    if W % 2 == 0:
        x = np.concatenate([x, np.zeros(x.shape[:3] + (1,), x.dtype)], axis=3)
    result = pool(x, (out[0], out[1] + 1))
    if not isinstance(result, tuple):
        return result[..., :out[1]]
    y, idx = (r[..., :out[1]] for r in result)
    return y, idx // x.shape[3] * W + idx % x.shape[3]


@pytest.mark.skipif(_pool is None, reason="compiled kernels not built (NumPy-only run)")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, out", PAIR_SHAPES[:4])
def test_pairs_match_the_general_loops_bit_for_bit(rng, shape, out, dtype):
    """Max and average of 2x2 windows at stride 2 give what the general loops give, to the bit
    (average sums in the same order from 0.0, so four -0.0 average to +0.0)."""
    x = rng.standard_normal(shape).astype(dtype) * 10.0 ** rng.integers(-8, 9, shape)
    x[..., :2, :2] = -0.0

    def max_pool(a, o):
        return _pool.max_pool2d_forward(a, (2, 2), (2, 2), (0, 0), (1, 1), o)

    y, idx = max_pool(x, out)
    want_y, want_idx = _general_loops(max_pool, x, out)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(y, want_y)
    for include_pad in (True, False):

        def avg_pool(a, o, include_pad=include_pad):
            return _pool.avg_pool2d_forward(a, (2, 2), (2, 2), (0, 0), o, include_pad)

        assert avg_pool(x, out).tobytes() == _general_loops(avg_pool, x, out).tobytes()


# 2x2 windows that tile every plane exactly (H = 2 OH, W = 2 OW) are picked over all planes at
# once, as one tall plane (vertical pass first); rows longer than the chunk (1024) and planes
# with an odd side, or a ceil_mode window over the edge, keep the per-plane loops
TALL_SHAPES = [((3, 2, 8, 8), (4, 4)), ((2, 3, 4, 4), (2, 2)), ((1, 1, 2, 2), (1, 1)),
               ((5, 3, 6, 10), (3, 5)), ((2, 2, 16, 16), (8, 8)), ((4, 1, 2, 1024), (1, 512)),
               ((1, 2, 4, 1026), (2, 513)), ((2, 3, 9, 8), (4, 4)), ((2, 3, 8, 9), (4, 4)),
               ((2, 3, 7, 7), (4, 4)), ((2, 3, 8, 8), (4, 5)),
               # the widths _pool_max.h inlines (2, 4, 8) over several chunks of row pairs
               ((7, 5, 6, 2), (3, 1)), ((40, 9, 4, 4), (2, 2)), ((33, 5, 8, 8), (4, 4)),
               ((3, 4, 12, 12), (6, 6))]


def _special_values(rng, shape, dtype, data):
    """Values that stress the pick: ties (signed zeros included), NaN, +-inf."""
    if data == "normal":
        return rng.standard_normal(shape).astype(dtype)
    if data == "tied":
        return _tied_with_nans(rng, shape, dtype)
    pool = {"zeros": [0.0, -0.0], "specials": [0.0, -0.0, 1.0, np.inf, -np.inf, np.nan]}[data]
    return rng.choice(np.array(pool), shape).astype(dtype)


@pytest.mark.skipif(_pool is None, reason="compiled kernels not built (NumPy-only run)")
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "step"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, out", TALL_SHAPES)
@pytest.mark.parametrize("data", ["normal", "tied", "zeros", "specials"])
def test_tiled_pairs_match_twin_and_general_loops_to_the_bit(rng, shape, out, dtype, layout,
                                                             data):
    """The picks of the tiled planes are the twin's (first maximal tap in row-major order, first
    NaN), values compared as bits so that -0.0 against +0.0 counts, and those of the general
    loops (which pay no attention to the tiling)."""
    x = relayout(_special_values(rng, shape, dtype, data), layout)
    geometry = ((2, 2), (2, 2), (0, 0), (1, 1), out)
    y, idx = _pool.max_pool2d_forward(x, *geometry)
    want_y, want_idx = twin.max_pool2d_forward(x, *geometry)
    np.testing.assert_array_equal(idx, want_idx)
    assert y.dtype == want_y.dtype and y.tobytes() == want_y.tobytes()
    if 2 * out[1] <= shape[3]:  # _general_loops adds a column that must hang over the edge
        general_y, general_idx = _general_loops(
            lambda a, o: _pool.max_pool2d_forward(a, (2, 2), (2, 2), (0, 0), (1, 1), o), x, out)
        np.testing.assert_array_equal(idx, general_idx)
        assert y.tobytes() == np.ascontiguousarray(general_y).tobytes()


@pytest.mark.skipif(_pool is None, reason="compiled kernels not built (NumPy-only run)")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiled_pairs_break_ties_by_window_position(dtype):
    """Picked down each column first, a window's bottom-left tap (position 2) can meet its
    top-right one (position 1): on a tie, or when both are NaN, the top-right one wins."""
    nan = np.nan
    windows = [[[0, 5], [5, 0]], [[0, nan], [nan, 0]], [[-1, -0.0], [0.0, -1]],
               [[-1, 0.0], [-0.0, -1]], [[1, 1], [1, 1]], [[nan, 0], [0, nan]],
               [[0, 1], [2, 2]], [[-np.inf, -np.inf], [-np.inf, -np.inf]], [[0, 5], [7, 7]]]
    # the windows side by side in one plane, and stacked one per plane
    side = np.array(windows, dtype).transpose(1, 0, 2).reshape(1, 1, 2, 2 * len(windows))
    stacked = np.array(windows, dtype).reshape(len(windows), 1, 2, 2)
    want_idx = [1, 1, 1, 1, 0, 0, 2, 0, 2]
    for x, out in ((side, (1, len(windows))), (stacked, (1, 1))):
        y, idx = _pool.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0), (1, 1), out)
        flat = x.reshape(len(windows) if out == (1, 1) else 1, -1)
        cols = np.arange(len(windows)) * 2 if out != (1, 1) else np.zeros(len(windows), int)
        rows, offs = np.divmod(np.array(want_idx), 2)
        np.testing.assert_array_equal(idx.ravel(), rows * x.shape[3] + cols + offs)
        picked = flat[np.arange(flat.shape[0]).repeat(len(windows) // flat.shape[0]),
                      rows * x.shape[3] + cols + offs]
        assert y.ravel().tobytes() == picked.tobytes()


@pytest.mark.skipif(_pool is None, reason="compiled kernels not built (NumPy-only run)")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiled_pairs_split_over_threads_give_the_same_bits(rng, dtype):
    """Above the size threshold threads take chunks of row pairs of the tall plane (chunks that
    straddle planes); the picks stay those of one thread and of the twin."""
    x = _special_values(rng, (16, 12, 34, 38), dtype, "specials")
    geometry = ((2, 2), (2, 2), (0, 0), (1, 1), (17, 19))
    previous = mg.get_num_threads()
    mg.set_num_threads(min(2, mg.kernels.max_threads()))
    try:
        y, idx = _pool.max_pool2d_forward(x, *geometry)
    finally:
        mg.set_num_threads(previous)
    mg.set_num_threads(1)
    try:
        serial_y, serial_idx = _pool.max_pool2d_forward(x, *geometry)
    finally:
        mg.set_num_threads(previous)
    want_y, want_idx = twin.max_pool2d_forward(x, *geometry)
    np.testing.assert_array_equal(idx, serial_idx)
    np.testing.assert_array_equal(idx, want_idx)
    assert y.tobytes() == serial_y.tobytes() == want_y.tobytes()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_backward_overwrites_recycled_memory(impl, dtype):
    """dx comes from uninitialised memory that the kernel zeroes plane by plane: after arrays
    of NaN were freed, every tap no index names (all of them for -1) must still be 0."""
    junk = [np.full((64, 16, 8, 8), np.nan, dtype) for _ in range(3)]
    del junk
    grad = np.arange(1.0, 2 * 3 * 4 * 4 + 1, dtype=dtype).reshape(2, 3, 4, 4)
    idx = np.full(grad.shape, -1, np.int64)
    idx[0, 1, 2, 3] = 2 * 8 + 7
    dx = impl.max_pool2d_backward(grad, idx, (8, 8))
    want = np.zeros((2, 3, 8, 8), dtype)
    want[0, 1].flat[2 * 8 + 7] = grad[0, 1, 2, 3]
    assert dx.tobytes() == want.tobytes()

"""The exact bits of the compiled global average pooling (a 1x1 adaptive output) on small
planes: the float64 sum over four partial sums in a fixed order, then one division (a multiply
by 1 / S when S is a power of two, the same value), rounded once; on one thread and two."""

from __future__ import annotations

import numpy as np
import pytest
from kernel_modules import compiled_module

import minigrad as mg

_pool = compiled_module("_pool")
pytestmark = pytest.mark.skipif(_pool is None, reason="compiled kernels not built")

ROW_SUM_MIN = 64  # from this plane size on, the sums are _simd.h's row sums (another order)


def _means_in_order(x: np.ndarray) -> np.ndarray:
    """Per plane of S values: a_j = the values at k = j mod 4 of the whole runs of four, in
    order from 0.0; the last S mod 4 values added to a_0; (a_0 + a_1) + (a_2 + a_3); / S."""
    n, c, h, w = x.shape
    s = h * w
    v = x.reshape(n * c, s).astype(np.float64)
    a = np.zeros((4, n * c))
    whole = s - s % 4
    for k in range(whole):
        a[k % 4] = a[k % 4] + v[:, k]
    for k in range(whole, s):
        a[0] = a[0] + v[:, k]
    total = (a[0] + a[1]) + (a[2] + a[3])
    return (total / s).astype(x.dtype).reshape(n, c, 1, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hw", [(1, 1), (1, 3), (2, 2), (1, 5), (2, 3), (3, 3), (4, 4),
                                (3, 5), (4, 5), (5, 5), (6, 6), (7, 7), (7, 9)])
def test_global_means_are_the_float64_sums_in_order(dtype, hw):
    rng = np.random.default_rng(12)
    x = (rng.standard_normal((3, 5) + hw) * 10.0 ** rng.integers(-8, 8, (3, 5) + hw))
    x = x.astype(dtype)
    assert hw[0] * hw[1] < ROW_SUM_MIN
    y = _pool.adaptive_avg_pool2d_forward(x, (1, 1))
    np.testing.assert_array_equal(y.view(np.uint8), _means_in_order(x).view(np.uint8))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_means_on_two_threads_are_the_same_bits(dtype):
    rng = np.random.default_rng(13)
    x = rng.standard_normal((128, 160, 4, 4)).astype(dtype)  # enough values for two threads
    previous = mg.get_num_threads()
    try:
        for threads in (1, min(2, mg.kernels.max_threads())):
            mg.set_num_threads(threads)
            y = _pool.adaptive_avg_pool2d_forward(x, (1, 1))
            np.testing.assert_array_equal(y, _means_in_order(x))
    finally:
        mg.set_num_threads(previous)

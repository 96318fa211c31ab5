"""The exact bits of the compiled convolution's bias gradient: db is a float64 sum in a fixed
order (position by position over the samples, then over the positions), rounded once, on
every path that computes it and on any number of threads."""

from __future__ import annotations

import functools
import operator

import numpy as np
import pytest
from kernel_modules import compiled_module

_conv = compiled_module("_conv")
pytestmark = pytest.mark.skipif(_conv is None, reason="compiled kernels not built")

GEOMETRY = ((1, 1), (1, 1, 1, 1), (1, 1), 1)


def _db_in_order(dy: np.ndarray) -> np.ndarray:
    """sum_k (sum_n dy[n, o, k]) per o, each sum in order from 0.0, in float64 (Python floats
    for the outer one), rounded to dy's dtype."""
    n, o = dy.shape[:2]
    rows = np.zeros((o, dy[0, 0].size))
    for sample in dy.reshape(n, o, -1):
        rows = rows + sample.astype(np.float64)
    return np.array([functools.reduce(operator.add, map(float, row), 0.0) for row in rows],
                    dy.dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(5, 3, 6, 7),  # one run of rows, a sample left after fours
                                   (8, 4, 1, 1),  # one position
                                   (3, 40, 8, 8),  # several runs of rows
                                   (64, 32, 4, 4),  # the digits CNN's: dx and dW together
                                   (64, 32, 16, 16)])  # enough values for two threads
@pytest.mark.parametrize("path, needs", [("direct", (False, False, True)),
                                         ("direct", (False, True, True)),
                                         ("direct", (True, True, True)),
                                         ("im2col", (False, False, True))])
def test_db_is_the_float64_sum_in_order_on_every_path(monkeypatch, dtype, shape, needs, path):
    """Every path but one: the im2col path with dW too takes db from dW's product (the bias
    column of [dW | db]), BLAS's sums in the input's dtype."""
    import minigrad as mg

    monkeypatch.setattr(_conv, "PATH", path)
    monkeypatch.setattr(_conv, "DIRECT_PARALLEL_MIN_MACS", 0)  # two threads: every split taken
    rng = np.random.default_rng(11)
    x = rng.standard_normal((shape[0], 2) + shape[2:]).astype(dtype)
    w = rng.standard_normal((shape[1], 2, 3, 3)).astype(dtype)
    dy = (rng.standard_normal(shape) * 10.0 ** rng.integers(-6, 6, shape)).astype(dtype)
    dy[0, 0] = -0.0  # a channel's first sample of zeros of either sign
    expected = _db_in_order(dy)
    previous = mg.get_num_threads()
    try:
        for threads in (1, 2):
            mg.set_num_threads(threads)
            db = _conv.conv2d_backward(dy, x, w, *GEOMETRY, needs)[2]
            assert db.dtype == dtype
            np.testing.assert_array_equal(db.view(np.uint8), expected.view(np.uint8))
    finally:
        mg.set_num_threads(previous)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_db_of_an_empty_batch_is_zeros(dtype):
    x = np.zeros((0, 2, 4, 4), dtype)
    w = np.ones((3, 2, 3, 3), dtype)
    db = _conv.conv2d_backward(np.zeros((0, 3, 4, 4), dtype), x, w, *GEOMETRY,
                               (False, False, True))[2]
    assert db.dtype == dtype
    np.testing.assert_array_equal(db, np.zeros(3, dtype))

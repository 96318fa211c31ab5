"""The compiled BatchNorm kernels take the common call (plain arrays: exact, aligned,
C-contiguous ndarrays in native byte order) through data pointers and every other call through
the checks and C-contiguous copies first. Both paths must give the same bits, update the
caller's running buffers in place, and refuse what the checks refuse."""

from __future__ import annotations

import numpy as np
import pytest
from kernel_modules import compiled_module

_norm = compiled_module("_norm")
pytestmark = pytest.mark.skipif(_norm is None, reason="compiled kernels not built")

MOMENTUM, EPS = 0.9, 1e-5
SHAPES = [(6, 3), (64, 16, 8, 8), (8, 4, 3, 5), (5, 7, 9)]


def unaligned(a: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of a whose data starts one byte past an aligned address."""
    raw = np.zeros(a.nbytes + a.itemsize, np.uint8)
    out = raw[1:a.nbytes + 1].view(a.dtype).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned
    return out


def strided(a: np.ndarray) -> np.ndarray:
    """The same values as 1-D a, every other element of a buffer twice as long."""
    big = np.zeros(2 * a.size, a.dtype)
    big[::2] = a
    return big[::2]


class Sub(np.ndarray):
    """An ndarray subclass: not a plain array, so its calls take the general path."""


def data(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    gamma, beta = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    rm, rv = rng.standard_normal(c).astype(dtype), (rng.random(c) + 0.5).astype(dtype)
    return x, g, gamma, beta, rm, rv


def assert_same_bits(actual, expected):
    for a, e in zip(actual, expected, strict=True):
        a, e = np.asarray(a), np.asarray(e)
        assert a.shape == e.shape and a.dtype == e.dtype
        assert a.tobytes() == e.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("relu", [False, True])
def test_unaligned_and_strided_arrays_give_the_plain_bits(shape, dtype, relu):
    x, g, gamma, beta, rm, rv = data(shape, dtype)
    rm0, rv0 = rm.copy(), rv.copy()
    y, mean, rstd = _norm.batchnorm_forward(x, gamma, beta, rm, rv, MOMENTUM, EPS, True, relu)
    expected_bwd = _norm.batchnorm_backward(g, x, gamma, mean, rstd, True,
                                            relu_out=y if relu else None)
    # the same call with every array unaligned, the vectors strided
    srm, srv = strided(rm0), strided(rv0)
    out = _norm.batchnorm_forward(unaligned(x), strided(gamma), unaligned(beta), srm, srv,
                                  MOMENTUM, EPS, True, relu)
    assert_same_bits(out, (y, mean, rstd))
    assert_same_bits((srm, srv), (rm, rv))  # updated in place through the copies
    bwd = _norm.batchnorm_backward(unaligned(g), unaligned(x), strided(gamma),
                                   strided(mean), unaligned(rstd), True,
                                   relu_out=unaligned(y) if relu else None)
    assert_same_bits(bwd, expected_bwd)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_running_buffers_of_one_owner_are_updated_in_place(dtype):
    x, _, gamma, beta, rm, rv = data((16, 4, 3, 3), dtype)
    both = np.concatenate([rm, rv])
    y, mean, rstd = _norm.batchnorm_forward(x, gamma, beta, rm, rv, MOMENTUM, EPS, True)
    out = _norm.batchnorm_forward(x, gamma, beta, both[:4], both[4:], MOMENTUM, EPS, True)
    assert_same_bits(out, (y, mean, rstd))
    assert_same_bits((both[:4], both[4:]), (rm, rv))


def test_running_buffer_overlapping_x_is_refused():
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="overlap"):
        _norm.batchnorm_forward(x, None, None, x[0], np.ones(3, np.float32), MOMENTUM, EPS,
                                True)
    with pytest.raises(ValueError, match="overlap"):
        _norm.batchnorm_forward(x, None, None, np.zeros(3, np.float32), x[1], MOMENTUM, EPS,
                                True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_eval_reads_read_only_and_strided_buffers(dtype):
    x, g, gamma, beta, rm, rv = data((8, 5, 2, 2), dtype)
    expected = _norm.batchnorm_forward(x, gamma, beta, rm, rv, MOMENTUM, EPS, False)
    frozen_m, frozen_v = rm.copy(), strided(rv)
    frozen_m.flags.writeable = False
    out = _norm.batchnorm_forward(x, gamma, beta, frozen_m, frozen_v, MOMENTUM, EPS, False)
    assert_same_bits(out, expected)
    assert_same_bits((frozen_m, frozen_v), (rm, rv))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saved_statistics_of_another_dtype_or_layout(dtype):
    x, g, gamma, _, _, _ = data((32, 6, 4), dtype)
    _, mean, rstd = _norm.batchnorm_forward(x, gamma, None, None, None, MOMENTUM, EPS, True)
    expected = _norm.batchnorm_backward(g, x, gamma, mean, rstd, True)
    # float32 statistics are widened (the twin widens them the same way)
    m32, r32 = mean.astype(np.float32), rstd.astype(np.float32)
    assert_same_bits(_norm.batchnorm_backward(g, x, gamma, m32, r32, True),
                     _norm.batchnorm_backward(g, x, gamma, m32.astype(np.float64),
                                              r32.astype(np.float64), True))
    # a subclass and Fortran-ordered data: the plain values
    assert_same_bits(_norm.batchnorm_backward(g, x.view(Sub), gamma, mean, rstd, True), expected)
    assert_same_bits(_norm.batchnorm_backward(np.asfortranarray(g), np.asfortranarray(x), gamma,
                                              mean, rstd, True), expected)


def test_outputs_are_fresh_arrays():
    x, g, gamma, beta, rm, rv = data((8, 3, 2), np.float32)
    y, mean, rstd = _norm.batchnorm_forward(x, gamma, beta, rm, rv, MOMENTUM, EPS, True)
    dx, dgamma, dbeta = _norm.batchnorm_backward(g, x, gamma, mean, rstd, True)
    for a in (y, mean, rstd, dx, dgamma, dbeta):
        assert a.flags.c_contiguous and a.flags.writeable and a.flags.owndata
    assert y.shape == x.shape and dx.shape == x.shape
    assert mean.dtype == rstd.dtype == np.float64 and dgamma.dtype == dbeta.dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(64, 16, 8, 8), (64, 32, 4, 4), (9, 5, 3), (33, 7)])
def test_small_calls_split_over_threads_give_the_same_bits(shape, dtype):
    # parallel_min_work(0) sends even small calls to the threads: channels for BatchNorm's
    # sums, samples for its writes and for LayerNorm, blocks of samples for its backward
    x, g, gamma, beta, rm, rv = data(shape, dtype)
    rows = (shape[0], int(np.prod(shape[1:])))

    def run():
        out = []
        for relu in (False, True):
            rm1, rv1 = rm.copy(), rv.copy()
            y, mean, rstd = _norm.batchnorm_forward(x, gamma, beta, rm1, rv1, MOMENTUM, EPS, True,
                                                    relu)
            out += [y, mean, rstd, rm1, rv1]
            out += _norm.batchnorm_backward(g, x, gamma, mean, rstd, True,
                                            relu_out=y if relu else None)
        y, mean, rstd = _norm.layernorm_forward(x.reshape(rows), None, None, EPS, 1)
        out += [y, mean, rstd, *_norm.layernorm_backward(g.reshape(rows), x.reshape(rows), None,
                                                          mean, rstd)]
        return out

    before, threads = _norm.parallel_min_work(), _norm.get_num_threads()
    try:
        _norm.set_num_threads(1)
        one = run()
        _norm.set_num_threads(2)
        _norm.parallel_min_work(batchnorm=0, layernorm=0)
        two = run()
    finally:
        _norm.parallel_min_work(**before)
        _norm.set_num_threads(threads)
    assert _norm.parallel_min_work() == before
    assert_same_bits(two, one)


@pytest.mark.parametrize("name", ["_norm", "_reduce", "_softmax"])
def test_parallel_min_work_rejects_unknown_kernels_and_bad_values(name):
    # every module with its own thresholds checks changes by one rule, and leaves them as
    # they were when it refuses
    module = compiled_module(name)
    before = module.parallel_min_work()
    kernel = next(iter(before))
    with pytest.raises(TypeError, match="unknown kernels"):
        module.parallel_min_work(groupnorm=0)
    for bad in (-1, 1.5, True, None):
        with pytest.raises(ValueError, match=f"{kernel} must be an int >= 0"):
            module.parallel_min_work(**{kernel: bad})
    assert module.parallel_min_work() == before

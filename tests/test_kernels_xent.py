"""The paths inside the compiled cross-entropy kernels: the common call (read through data
pointers) and the general one (checked, then copied) must give the same bits; rows shorter than
32 values (swept a block of 16 rows at a time) and longer ones must agree with the float64
definition around every block edge; and the split of rows among threads never changes a bit.
Also the count of kept class targets (with their range test) on both backends.
"""

from __future__ import annotations

import numpy as np
import pytest
from kernel_modules import compiled_module, implementations, relayout

_softmax = compiled_module("_softmax")
IMPLS = implementations("_softmax")
needs_compiled = pytest.mark.skipif(_softmax is None, reason="compiled kernels not built")

DTYPES = [np.float32, np.float64]
TOL = {np.dtype(np.float32): 4e-6, np.dtype(np.float64): 1e-13}


def same_bits(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def problem(n, c, dtype, ignore_index, seed=0):
    """Logits with a spread of magnitudes, targets with some rows ignored (when there are
    rows to spare) and a gradient per row."""
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((n, c)) * rng.uniform(0.5, 8, (n, 1))).astype(dtype)
    target = rng.integers(0, c, n)
    if n > 2:
        target[1::3] = ignore_index
    return logits, target, rng.uniform(0.5, 2, n).astype(dtype)


def all_outputs(logits, target, grad, ls, ignore_index):
    loss, parts = _softmax.cross_entropy_forward(logits, target, ls, ignore_index)
    dx = _softmax.cross_entropy_backward(grad, logits, target, parts, ls, ignore_index)
    scalar = _softmax.cross_entropy_backward(grad[:1].reshape(()), logits, target, parts, ls,
                                             ignore_index)
    return (loss, parts, dx, scalar, *_softmax.cross_entropy_fused(logits, target, ls,
                                                                    ignore_index))


SHAPES = [(n, c) for n in (1, 15, 16, 17, 40) for c in (1, 2, 9, 16, 17, 31, 32, 33, 100)]


@needs_compiled
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("n", "c"), SHAPES)
@pytest.mark.parametrize(("ls", "ignore_index"), [(0.0, -100), (0.1, 1)])
def test_common_and_general_calls_give_the_same_bits(dtype, n, c, ls, ignore_index):
    logits, target, grad = problem(n, c, dtype, ignore_index)
    common = all_outputs(logits, target, grad, ls, ignore_index)
    # Fortran-ordered logits, int32 targets and a NumPy integer ignore_index: the general path
    general = all_outputs(relayout(logits, "transposed"), target.astype(np.int32), grad, ls,
                          np.int64(ignore_index))
    for a, b in zip(common, general, strict=True):
        assert same_bits(a, b)


def xent64(logits, target, ls, ignore_index):
    """loss and gradient (for a gradient of 1 per row) from the definitions, in float64 and in
    terms of d = x - max x (exact here), so that a large offset of a row costs no precision"""
    x = logits.astype(np.float64)
    n, c = x.shape
    d = x - np.max(x, axis=1, keepdims=True)
    lse = np.log(np.sum(np.exp(d), axis=1, keepdims=True))
    q = np.full((n, c), ls / c)
    kept = target != ignore_index
    picked = d[np.arange(n), np.where(kept, target, 0)]
    q[np.arange(n)[kept], target[kept]] += 1 - ls
    with np.errstate(invalid="ignore"):  # 0 * inf where ls is 0 and a logit is -inf
        smooth = ls * np.mean(lse - d, axis=1) if ls else 0.0
    loss = np.where(kept, (1 - ls) * (lse[:, 0] - picked) + smooth, 0.0)
    return loss, np.where(kept[:, None], np.exp(d - lse) - q, 0.0)


def assert_close(actual, expected, atol):
    """within atol elementwise (atol may be per row), infinities equal"""
    actual = actual.astype(np.float64)
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(actual[~finite], expected[~finite])
    atol = np.broadcast_to(atol, expected.shape)[finite]
    assert np.all(np.abs(actual[finite] - expected[finite]) <= atol)


@needs_compiled
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [1, 2, 3, 7, 15, 16, 17, 30, 31, 32, 33, 48, 63, 64, 65])
@pytest.mark.parametrize("ls", [0.0, 0.3])
def test_short_and_long_rows_against_float64(dtype, c, ls):
    n = 37  # two full blocks of 16 rows and a part of one
    logits, target, _ = problem(n, c, dtype, -100, seed=c)
    logits[3] += dtype(1e4)  # a large common offset in one row
    if c > 1:
        logits[5, 0] = -np.inf  # a logit with no weight
    loss, parts = _softmax.cross_entropy_forward(logits, target, ls)
    dx = _softmax.cross_entropy_backward(np.ones(n, dtype), logits, target, parts, ls)
    expected_loss, expected_dx = xent64(logits, target, ls, -100)
    tol = TOL[np.dtype(dtype)]
    scale = np.maximum(1.0, np.max(np.abs(np.where(np.isfinite(logits), logits, 0)), axis=1))
    assert_close(loss, expected_loss, tol * 8 * scale)
    assert_close(dx, expected_dx, tol * 2)
    np.testing.assert_array_equal(parts[:, 0], np.max(logits, axis=1))


@needs_compiled
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("n", "c"), [(37, 10), (5, 1000), (64, 33), (3, 1)])
def test_the_split_among_threads_gives_the_same_bits(dtype, n, c):
    logits, target, grad = problem(n, c, dtype, 2, seed=n)
    threads, before = _softmax.get_num_threads(), _softmax.parallel_min_work(cross_entropy=0)
    try:
        results = []
        for count in (1, 2):
            _softmax.set_num_threads(count)
            results.append(all_outputs(logits, target, grad, 0.1, 2))
    finally:
        _softmax.set_num_threads(threads)
        _softmax.parallel_min_work(**before)
    for a, b in zip(*results, strict=True):
        assert same_bits(a, b)


@needs_compiled
def test_parallel_min_work_checks_its_arguments():
    with pytest.raises(TypeError, match="unknown kernels"):
        _softmax.parallel_min_work(softmax=0)
    with pytest.raises(ValueError, match="int >= 0"):
        _softmax.parallel_min_work(cross_entropy=-1)
    before = _softmax.parallel_min_work()
    assert set(before) == {"cross_entropy"} and before["cross_entropy"] > 0


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("ignore_index", [-100, 2])
def test_class_target_count(impl, ignore_index):
    rng = np.random.default_rng(3)
    target = rng.integers(0, 5, (6, 7))
    target[0, :3] = ignore_index
    kept = int(np.count_nonzero(target != ignore_index))
    for t in (target, target.astype(np.int32), target.T, target[:, ::2]):  # every path
        expected = int(np.count_nonzero(t != ignore_index))
        assert impl.class_target_count(t, 5, ignore_index) == expected
    assert impl.class_target_count(target, 5, ignore_index) == kept
    assert impl.class_target_count(target[:0], 5, ignore_index) == 0
    for bad in (5, -1, 2**40):
        worse = target.copy()
        worse[3, 4] = bad
        assert impl.class_target_count(worse, 5, ignore_index) == -1
    assert impl.class_target_count(target, 4, ignore_index) == -1  # the 4s are out of range
    # compared in the targets' own dtype: 2**64 - 100 is no -100
    wrapped = np.array([2**64 - 100, 1], np.uint64)
    assert impl.class_target_count(wrapped, 5, -100) == -1
    assert impl.class_target_count(np.array([-100, 1]), 5, -100) == 1
    with pytest.raises(TypeError, match="integer"):
        impl.class_target_count(target.astype(np.float32), 5, ignore_index)
    with pytest.raises(TypeError, match="integer"):
        impl.class_target_count([0, 1], 5, ignore_index)

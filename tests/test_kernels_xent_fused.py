"""``cross_entropy_fused``: the mean cross-entropy's forward and backward in one kernel call,
which mg.compile replays. On each backend it must give the very bits of the two calls it
replaces (``cross_entropy_forward``, then ``cross_entropy_backward`` with the mean's
gradient 1 / count), and the compiled kernel must agree with its twin."""

from __future__ import annotations

import numpy as np
import pytest
from kernel_modules import compiled_module, implementations

IMPLS = implementations("_softmax")
DTYPES = [np.float32, np.float64]
CASES = [(64, 10, 0.0, -100), (5, 3, 0.1, -100), (7, 4, 0.0, 2), (1, 1, 0.0, -100),
         (0, 5, 0.0, -100), (300, 1000, 0.2, 7)]


def same_bits(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return (a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)
            and np.array_equal(np.signbit(a), np.signbit(b)))


def case(n, c, dtype, ignore_index, seed=0, special=False):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((n, c)) * 3).astype(dtype)
    target = rng.integers(0, c, n)
    if n > 2 and ignore_index >= 0:
        target[::3] = ignore_index  # some rows ignored (a valid class index here)
    if special and n > 1:
        logits[0, 0] = np.inf
        logits[1, :] = -np.inf
        logits += 1e4  # a large common offset
    return logits, target


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("n", "c", "ls", "ignore_index"), CASES)
@pytest.mark.parametrize("special", [False, True])
def test_fused_gives_the_bits_of_forward_then_backward(impl, dtype, n, c, ls, ignore_index,
                                                       special):
    logits, target = case(n, c, dtype, ignore_index, special=special)
    with np.errstate(all="ignore"):
        loss, lse = impl.cross_entropy_forward(logits, target, ls, ignore_index)
        count = int(np.count_nonzero(target != ignore_index))
        grad = np.ones((), dtype) / dtype(max(count, 1))
        dlogits = impl.cross_entropy_backward(np.asarray(grad), logits, target, lse, ls,
                                              ignore_index)
        got = impl.cross_entropy_fused(logits, target, ls, ignore_index)
    assert same_bits(got[0], loss) and got[1] == count and same_bits(got[2], dlogits)


@pytest.mark.parametrize("impl", IMPLS)
def test_all_rows_ignored(impl):
    logits, target = case(4, 3, np.float32, -100)
    loss, count, dlogits = impl.cross_entropy_fused(logits, np.full(4, 2), 0.0, 2)
    assert count == 0 and not loss.any() and not dlogits.any()


@pytest.mark.parametrize("impl", IMPLS)
def test_bad_arguments_raise_as_the_separate_kernels_do(impl):
    logits, target = case(4, 3, np.float32, -100)
    with pytest.raises(ValueError, match="cross_entropy_fused: target 3 is out of range"):
        impl.cross_entropy_fused(logits, np.array([0, 1, 2, 3]), 0.0, -100)
    with pytest.raises(ValueError, match="cross_entropy_fused: logits must be 2-D"):
        impl.cross_entropy_fused(logits[0], target[:1], 0.0, -100)
    with pytest.raises(TypeError, match="cross_entropy_fused: target must hold integer"):
        impl.cross_entropy_fused(logits, target.astype(np.float32), 0.0, -100)
    with pytest.raises(TypeError, match="cross_entropy_fused: logits must be float32"):
        impl.cross_entropy_fused(logits.astype(np.int32), target, 0.0, -100)


@pytest.mark.skipif(compiled_module("_softmax") is None, reason="compiled kernels not built")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("n", "c", "ls", "ignore_index"), CASES)
def test_compiled_agrees_with_the_twin(dtype, n, c, ls, ignore_index):
    twin, compiled = (m.values[0] for m in IMPLS)
    logits, target = case(n, c, dtype, ignore_index, seed=2)
    a = compiled.cross_entropy_fused(logits, target, ls, ignore_index)
    b = twin.cross_entropy_fused(logits, target, ls, ignore_index)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert a[1] == b[1]
    for x, y in ((a[0], b[0]), (a[2], b[2])):
        np.testing.assert_allclose(x, y, rtol=tol, atol=tol)

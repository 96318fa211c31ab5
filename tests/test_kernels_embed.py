"""The embedding kernel called directly: the compiled scatter-add against its NumPy twin and a
float64 loop over shapes, both dtypes, repeated and padding indices, memory layouts, and the
same clean error on both for a bad direct call."""

from __future__ import annotations

import numpy as np
import pytest
from kernel_modules import implementations

IMPLS = implementations("_embed")
TOL = {np.dtype(np.float32): 2e-6, np.dtype(np.float64): 1e-14}

# (N, D, num_embeddings, padding_idx)
CASES = [
    (1, 1, 1, -1),
    (6, 3, 5, -1),
    (6, 3, 5, 2),
    (40, 17, 7, 0),   # many repeats per row
    (300, 64, 1000, 999),
    (0, 4, 3, -1),    # no positions: a zero table gradient
    (5, 0, 3, 1),     # vectors of size zero
]


def reference(grad, indices, num_embeddings, padding_idx):
    dw = np.zeros((num_embeddings, grad.shape[1]))
    for i, k in enumerate(indices):
        if k != padding_idx:
            dw[k] += grad[i].astype(np.float64)
    return dw


def relayout(a, layout):
    if layout == "transposed":
        return np.asfortranarray(a)
    if layout == "step":
        wide = np.zeros((a.shape[0], 2 * a.shape[1]), a.dtype)
        wide[:, ::2] = a
        return wide[:, ::2]
    return a


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("layout", ["c", "transposed", "step"])
def test_scatter_add_matches_reference(impl, dtype, case, layout):
    n, d, v, padding_idx = case
    rng = np.random.default_rng(n * 31 + d)
    grad = relayout(rng.standard_normal((n, d)).astype(dtype), layout)
    indices = rng.integers(0, v, size=n)
    if n > 2:
        indices[:3] = indices[0]  # the same row three times
        indices[-1] = max(padding_idx, 0)
    dw = impl.embedding_backward(grad, indices, v, padding_idx)
    assert dw.dtype == dtype and dw.shape == (v, d)
    want = reference(grad, indices, v, padding_idx)
    scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
    np.testing.assert_allclose(dw, want, rtol=0, atol=TOL[np.dtype(dtype)] * scale)


def test_compiled_equals_twin_bit_for_bit():
    # Both add the rows in index order, so the float32 sums agree exactly.
    impls = [p.values[0] for p in IMPLS]
    if len(impls) < 2:
        pytest.skip("compiled kernels not built (NumPy-only run)")
    rng = np.random.default_rng(7)
    grad = rng.standard_normal((2000, 33)).astype(np.float32)
    indices = rng.integers(0, 50, size=2000)
    twin, compiled = (m.embedding_backward(grad, indices, 50, 3) for m in impls)
    np.testing.assert_array_equal(twin, compiled)


GOOD = (np.ones((3, 2), np.float32), np.array([0, 1, 2]), 4, -1)


@pytest.mark.parametrize("position, value, error, match", [
    (0, np.ones((3, 2), np.int64), TypeError, "float32 or float64"),
    (0, np.ones(3, np.float32), ValueError, "2-D"),
    (0, [[1.0, 2.0]] * 3, TypeError, "numpy.ndarray"),
    (0, np.ones((3, 2), ">f4"), TypeError, "byte order"),
    (1, np.array([0, 1, 2], np.int32), TypeError, "int64"),
    (1, [0, 1, 2], TypeError, "numpy.ndarray"),
    (1, np.array([0, 1]), ValueError, r"shape \(3,\)"),
    (1, np.array([0, 4, 1]), ValueError, "index 4 is out of range for a table of 4 rows"),
    (1, np.array([0, -1, 1]), ValueError, "index -1 is out of range"),
    (2, -1, ValueError, "num_embeddings must be >= 0"),
    (2, 4.0, TypeError, "num_embeddings must be an int"),
    (3, 4, ValueError, "padding_idx 4 is not a row"),
    (3, -2, ValueError, "padding_idx must be >= -1"),
])
@pytest.mark.parametrize("impl", IMPLS)
def test_bad_direct_call_is_refused_alike(impl, position, value, error, match):
    args = list(GOOD)
    args[position] = value
    with pytest.raises(error, match=match):
        impl.embedding_backward(*args)

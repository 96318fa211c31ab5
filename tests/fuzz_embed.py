"""Fuzz group for the embedding kernel: random gradients in every layout (NaN and inf
included), index arrays that repeat, hit the padding row or fall outside the table, and now and
then arguments of the wrong type, dtype or shape. Every call agrees with the NumPy twin (float32
results also with the twin in float64), or both raise the same clean error."""

from __future__ import annotations

import numpy as np
from fuzz_common import arrays, assert_close, describe, finite_scale, fuzz_settings, same_outcome
from hypothesis import given
from hypothesis import strategies as st

from minigrad.kernels import compiled, reference


@st.composite
def _indices(draw, n, rows):
    """Mostly int64 (n,) in [0, rows); sometimes a value outside, another dtype or shape."""
    seed = draw(st.integers(0, 2**32 - 1))
    values = np.random.default_rng(seed).integers(0, max(rows, 1), size=n).astype(np.int64)
    trouble = draw(st.integers(0, 11))
    if trouble == 0 and n:
        values[draw(st.integers(0, n - 1))] = draw(st.sampled_from([-1, rows, 2**40, -2**40]))
    elif trouble == 1:
        values = values.astype(draw(st.sampled_from([np.int32, np.uint64, np.float64])))
    elif trouble == 2:
        values = values[:-1] if n else np.zeros(1, np.int64)
    elif trouble == 3:
        values = values[::-1]  # a negative stride: still a valid, readable index array
    return values


def _compare(grad):
    scale = finite_scale(grad) * max(1, grad.shape[0] if grad.ndim else 1)

    def compare(c, t, *_):
        assert c.dtype == t.dtype, f"embedding_backward dtype {c.dtype} != {t.dtype}"
        assert_close(c, t, c.dtype, f"embedding_backward {describe([grad])}", scale=scale)
    return compare


def run_embed(n):
    @fuzz_settings(n)
    @given(data=st.data())
    def case(data):
        grad = data.draw(arrays(min_ndim=2, max_ndim=2) if data.draw(st.integers(0, 9))
                         else arrays())
        rows = data.draw(st.integers(0, 20))
        n_rows = grad.shape[0] if grad.ndim else 1
        indices = data.draw(_indices(n_rows, rows))
        num = rows if data.draw(st.integers(0, 15)) else data.draw(
            st.sampled_from([-1, 2.0, True, None]))
        padding_idx = data.draw(st.integers(-1, rows - 1)) if data.draw(st.integers(0, 15)) \
            else data.draw(st.sampled_from([-2, rows, None, 1.0]))
        args = [grad, indices, num, padding_idx]
        kind, out, _ = same_outcome("embedding_backward", compiled.embedding_backward,
                                    reference.embedding_backward, args, compare=_compare(grad))
        if kind == "ok" and grad.dtype == np.float32:
            want = reference.embedding_backward(grad.astype(np.float64), *args[1:])
            assert_close(out, want, np.float32, f"float32 against float64 {describe(args)}",
                         scale=finite_scale(grad) * max(1, n_rows))

    case()

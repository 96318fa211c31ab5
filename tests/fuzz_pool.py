"""Fuzz group for the pooling kernels: random (N, C, H, W) arrays in every layout, NaN and inf,
and any window geometry of small non-negative ints (valid or not for PyTorch: the kernels must
stay in bounds whatever they are given), sometimes wrong types and corrupted argmax indices;
a quarter of the cases are 2x2 max pooling at stride 2 over planes of any size, whose picks must
be the twin's to the bit (ties, signed zeros, NaN). Every call agrees with the NumPy twin (and
float32 results with the twin in float64), or both raise the same clean error."""

from __future__ import annotations

import numpy as np
from fuzz_common import arrays, assert_close, describe, finite_scale, fuzz_settings, same_outcome
from hypothesis import given
from hypothesis import strategies as st

from minigrad.kernels import compiled, reference


@st.composite
def pairs(draw, low, high):
    """Mostly a pair of ints in [low, high]; now and then a value a kernel must refuse."""
    if draw(st.integers(0, 19)) == 0:
        return draw(st.sampled_from([3, (1,), (1, 2, 3), (1.0, 2), (-1, 2), (True, 1), None]))
    return (draw(st.integers(low, high)), draw(st.integers(low, high)))


def _compare(kind, x):
    what = f"{kind} {describe([x])}"
    scale = finite_scale(x) * 16

    def compare(c, t, *_):
        c, t = (c, t) if isinstance(c, tuple) else ((c,), (t,))
        for got, want in zip(c, t, strict=True):
            if want.dtype == np.int64:
                np.testing.assert_array_equal(got, want, err_msg=f"{what} indices")
            else:
                assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
                assert_close(got, want, got.dtype, what, scale=scale)
    return compare


def _float64_agrees(name, args, out, compare):
    """A float32 result also matches the twin run on the same values in float64."""
    x = args[0]
    if x.dtype != np.float32:
        return
    wide = getattr(reference, name)(x.astype(np.float64), *args[1:])
    wide = tuple(w.astype(np.float32) if w.dtype == np.float64 else w for w in wide) \
        if isinstance(wide, tuple) else wide.astype(np.float32)
    compare(out, wide)


def _case(data):
    x = data.draw(arrays(min_ndim=4, max_ndim=4))
    if data.draw(st.integers(0, 29)) == 0:
        x = data.draw(st.sampled_from([x.sum(axis=0), x.astype(np.int32), x.tolist()]))
    k, s, p = data.draw(pairs(1, 4)), data.draw(pairs(1, 3)), data.draw(pairs(0, 2))
    d, o = data.draw(pairs(1, 3)), data.draw(pairs(0, 6))
    include_pad = data.draw(st.booleans())
    kind = data.draw(st.sampled_from(["max", "avg", "adaptive"]))
    shape = np.shape(x)
    ok_x = isinstance(x, np.ndarray) and x.ndim == 4
    lead = tuple(shape[:2]) if len(shape) >= 2 else (1, 1)  # x.tolist() of an empty x: []
    grad = np.random.default_rng(len(shape)).standard_normal(
        lead + (o if ok_x and isinstance(o, tuple) and len(o) == 2
                                and all(type(v) is int and v >= 0 for v in o) else (1, 1)))
    return x, k, s, p, d, o, include_pad, kind, grad.astype(getattr(x, "dtype", np.float64))


def _same_bits(c, t, *_):
    """Max pooling picks values: the same picks as the twin, value bits and all (-0.0, NaN)."""
    for got, want in zip(c, t, strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes(), (got, want)


def _tiled(data):
    """2x2 windows at stride 2 over planes of any size: the output that tiles them exactly
    (a path of its own when both sides are even), or one more row/column (ceil_mode)."""
    x = data.draw(arrays(min_ndim=4, max_ndim=4))
    if data.draw(st.booleans()):  # few distinct values: ties, signed zeros, NaN, +-inf
        pool = np.array([0.0, -0.0, 1.0, np.nan, np.inf, -np.inf], x.dtype)
        x = pool[np.random.default_rng(x.size).integers(0, 6, x.shape)]
        if data.draw(st.booleans()):  # the same values, stored transposed
            x = np.ascontiguousarray(x.transpose(3, 2, 1, 0)).transpose(3, 2, 1, 0)
    H, W = x.shape[2:]
    o = (H // 2 + data.draw(st.integers(0, H % 2)), W // 2 + data.draw(st.integers(0, W % 2)))
    same_outcome("max_pool2d_forward", compiled.max_pool2d_forward,
                 reference.max_pool2d_forward, [x, (2, 2), (2, 2), (0, 0), (1, 1), o],
                 compare=_same_bits)


def run_pool(n):
    @fuzz_settings(n)
    @given(data=st.data())
    def case(data):
        if data.draw(st.integers(0, 3)) == 0:
            _tiled(data)
            return
        x, k, s, p, d, o, include_pad, kind, grad = _case(data)
        if kind == "max":
            args = [x, k, s, p, d, o]
            kind_c, out, _ = same_outcome("max_pool2d_forward", compiled.max_pool2d_forward,
                                          reference.max_pool2d_forward, args,
                                          compare=_compare("max forward", x))
            if kind_c != "ok":
                return
            _float64_agrees("max_pool2d_forward", args, out, _compare("max float64", x))
            indices = out[1]
            if data.draw(st.integers(0, 9)) == 0 and indices.size:
                indices = indices.copy()
                indices.flat[0] = data.draw(st.sampled_from([-2, x.shape[2] * x.shape[3], 2**40]))
            same_outcome("max_pool2d_backward", compiled.max_pool2d_backward,
                         reference.max_pool2d_backward, [grad, indices, x.shape[2:]],
                         compare=_compare("max backward", grad))
        elif kind == "avg":
            args = [x, k, s, p, o, include_pad]
            kind_c, out, _ = same_outcome("avg_pool2d_forward", compiled.avg_pool2d_forward,
                                          reference.avg_pool2d_forward, args,
                                          compare=_compare("avg forward", x))
            if kind_c == "ok":
                _float64_agrees("avg_pool2d_forward", args, out, _compare("avg float64", x))
                same_outcome("avg_pool2d_backward", compiled.avg_pool2d_backward,
                             reference.avg_pool2d_backward,
                             [grad, x.shape[2:], k, s, p, include_pad],
                             compare=_compare("avg backward", grad))
        else:
            kind_c, out, _ = same_outcome("adaptive_avg_pool2d_forward",
                                          compiled.adaptive_avg_pool2d_forward,
                                          reference.adaptive_avg_pool2d_forward, [x, o],
                                          compare=_compare("adaptive forward", x))
            if kind_c == "ok":
                same_outcome("adaptive_avg_pool2d_backward",
                             compiled.adaptive_avg_pool2d_backward,
                             reference.adaptive_avg_pool2d_backward, [grad, x.shape[2:]],
                             compare=_compare("adaptive backward", grad))

    case()

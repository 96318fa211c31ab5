"""Fuzz group "conv": the compiled convolution kernels against their NumPy twins.

Random small geometries (half of them of the kind the direct path covers; batch 0 included;
stride, padding, dilation and groups from valid to out of range: a kernel larger than the
padded input, channel counts groups does not divide, zero or negative strides, huge paddings,
wrong tuple lengths), both dtypes, and transposed or strided inputs. Every call must give the
twin's results or raise the same clean exception on both; a read or write out of bounds
crashes the child process. Each case runs the compiled kernels with the size rule's algorithm
or either one forced, the direct path split across threads or not, its dW over positions in
blocks of one sample or of many.
"""

from __future__ import annotations

import numpy as np
from fuzz_common import assert_close, finite_scale, fuzz_settings, same_outcome
from hypothesis import given
from hypothesis import strategies as st

from minigrad.kernels import _conv, _conv_twin


def _array(rng, shape, dtype, layout):
    if layout == "transposed":
        return np.ascontiguousarray(rng.standard_normal(shape[::-1]).T).astype(dtype)
    if layout == "strided" and shape:
        return rng.standard_normal((shape[0] * 2,) + shape[1:]).astype(dtype)[::2]
    return rng.standard_normal(shape).astype(dtype)


@st.composite
def geometries(draw):
    """(x shape, weight shape, stride, padding, dilation, groups): usually valid."""
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg, og = draw(st.integers(0, 3)), draw(st.integers(1, 3))
    channels = cg * groups + draw(st.sampled_from([0, 0, 0, 0, 1]))  # sometimes indivisible
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    xs = (draw(st.integers(0, 3)), channels, draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    ws = (og * groups, max(cg, 1) if channels else 0, kh, kw)
    stride = tuple(draw(st.lists(st.integers(0, 4), min_size=2, max_size=2)))
    padding = tuple(draw(st.lists(st.integers(0, 4), min_size=4, max_size=4)))
    dilation = tuple(draw(st.lists(st.integers(1, 3), min_size=2, max_size=2)))
    if draw(st.booleans()):  # the direct path's kind: stride 1, rows as long as the input's
        stride = (1, 1)
        across = dilation[1] * (kw - 1)
        left = draw(st.integers(0, across))
        padding = padding[:2] + (left, across - left)
    garbage = draw(st.sampled_from([None] * 8 + ["padding", "stride", "groups", "length"]))
    if garbage == "padding":
        padding = padding[:3] + (draw(st.sampled_from([-1, 2**31, 2**62])),)
    elif garbage == "stride":
        stride = (draw(st.sampled_from([-1, 0, 2**31, 1.0])), stride[1])
    elif garbage == "groups":
        groups = draw(st.sampled_from([0, -1, 2**63, 2.0, None]))
    elif garbage == "length":
        dilation = dilation[:1]
    return xs, ws, stride, padding, dilation, groups


def run_conv(n):
    @fuzz_settings(n)
    @given(geometry=geometries(), dtype=st.sampled_from([np.float32, np.float64]),
           layout=st.sampled_from(["c", "transposed", "strided"]), bias=st.booleans(),
           needs=st.tuples(st.booleans(), st.booleans(), st.booleans()),
           seed=st.integers(0, 2**32 - 1), path=st.sampled_from(["auto", "direct", "im2col"]),
           split=st.booleans(), chunk=st.sampled_from([4096, 4096, 1]))
    def case(geometry, dtype, layout, bias, needs, seed, path, split, chunk):
        xs, ws, stride, padding, dilation, groups = geometry
        _conv.PATH = path  # the algorithm: the size rule's, or either one forced
        # the direct path on every thread even for these small shapes, or on one
        _conv.DIRECT_PARALLEL_MIN_MACS = 0 if split else 1 << 62
        _conv.WG_CHUNK_BYTES = chunk  # dW over positions: blocks of many samples, or of one
        rng = np.random.default_rng(seed)
        x = _array(rng, xs, dtype, layout)
        w = _array(rng, ws, dtype, "c")
        b = rng.standard_normal(ws[0]).astype(dtype) if bias else None
        args = (x, w, b, stride, padding, dilation, groups)

        def compare(c, t, *_):
            assert_close(c, t, dtype, "conv2d_forward", scale=finite_scale(t) * 10)

        kind, y, _ = same_outcome("conv2d_forward", _conv.conv2d_forward,
                                  _conv_twin.conv2d_forward, args, compare=compare)
        if kind != "ok":
            return
        dy = _array(rng, y.shape, dtype, layout)

        def compare_grads(c, t, *_):
            for name, gc, gt in zip(("dx", "dw", "db"), c, t, strict=True):
                assert (gc is None) == (gt is None), name
                if gc is not None:
                    assert_close(gc, gt, dtype, f"conv2d_backward {name}",
                                 scale=finite_scale(gt) * 10)

        same_outcome("conv2d_backward", _conv.conv2d_backward, _conv_twin.conv2d_backward,
                     (dy, x, w, stride, padding, dilation, groups, needs),
                     compare=compare_grads)

    case()

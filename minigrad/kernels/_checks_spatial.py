# cython: annotation_typing=False
"""Memory-safety checks of the pooling and convolution kernels (both backends call them).

Their window geometry decides which addresses the loops touch, so here it is memory safety,
not only semantics; the shared primitives are in ``_checks``."""

from __future__ import annotations

import numpy as np

from ._checks import (
    float_array,
    same_as,
)

# ------------------------------------------------------------------------------ pooling kernels
# A pooling kernel trusts the window geometry (the public functions apply PyTorch's rules), but
# every window position is bounds-tested against the input inside the loops, so any geometry of
# non-negative ints is memory-safe. What is checked here: the arrays, and ints of the right sign.

_PAIR_MIN = {"kernel_size": 1, "stride": 1, "dilation": 1, "padding": 0, "out_size": 0,
             "in_size": 0}


def pool_pairs(fn: str, **pairs: object) -> tuple[tuple[int, int], ...]:
    """Each named argument as a pair of Python ints of at least its minimum (1 for
    kernel_size, stride and dilation; 0 for padding and the sizes)."""
    result = []
    for name, pair in pairs.items():
        if (type(pair) is not tuple or len(pair) != 2
                or type(pair[0]) is not int or type(pair[1]) is not int):
            raise TypeError(f"{fn}: {name} must be a tuple of 2 ints, got {pair!r:.60}")
        low = _PAIR_MIN[name]
        if pair[0] < low or pair[1] < low or max(pair) > 2**31 - 1:
            raise ValueError(f"{fn}: {name} must be ints in [{low}, 2**31 - 1], got {pair}")
        result.append(pair)
    return tuple(result)


def pool_input(fn: str, name: str, x: object) -> np.ndarray:
    """A float32/float64 array of shape (N, C, H, W)."""
    float_array(fn, name, x)
    if x.ndim != 4:
        raise ValueError(f"{fn}: {name} must be 4-D (N, C, H, W), got shape {x.shape}")
    return x


def pool_indices(fn: str, indices: object, grad_out: np.ndarray) -> np.ndarray:
    """max_pool2d's saved argmax: int64 of grad_out's shape (values are range-tested in the
    scatter itself: -1, an empty window, or a flat index into the input plane)."""
    if not isinstance(indices, np.ndarray):
        raise TypeError(f"{fn}: indices must be a numpy.ndarray, got {type(indices).__name__}")
    if indices.dtype != np.int64:
        raise TypeError(f"{fn}: indices must be int64, got dtype {indices.dtype}")
    if indices.shape != grad_out.shape:
        raise ValueError(f"{fn}: indices must have the shape of grad_out {grad_out.shape}, "
                         f"got shape {indices.shape}")
    return indices


def pool_index_error(fn: str, index: int, plane: int) -> ValueError:
    """The error of a saved argmax outside its input plane of ``plane`` elements."""
    return ValueError(f"{fn}: index {index} is outside the input plane of {plane} elements "
                      "(expected -1 or 0 <= index < H * W)")


# ------------------------------------------------------------------------ convolution kernels
# A convolution kernel reads x at rows oy * sh - top + i * dh (and likewise for columns), so its
# geometry (stride, padding, dilation, groups) is memory safety, not only semantics: every one
# is checked here, on both backends, before an index is computed.


def _int_tuple(fn: str, name: str, value: object, n: int, low: int) -> tuple:
    """``value`` as a tuple of n Python ints >= low; TypeError or ValueError otherwise."""
    if type(value) is not tuple or len(value) != n:
        raise TypeError(f"{fn}: {name} must be a tuple of {n} ints, got {value!r:.80}")
    for v in value:
        if type(v) is not int:
            raise TypeError(f"{fn}: {name} must be a tuple of {n} ints, got {value!r:.80}")
        if not low <= v <= 2**31 - 1:
            raise ValueError(f"{fn}: {name} must hold ints in [{low}, 2**31 - 1], "
                             f"got {value!r:.80}")
    return value


def conv2d_geometry(fn, x, weight, stride, padding, dilation, groups) -> tuple[int, int]:
    """Check x (N, C, H, W), weight (O, C / groups, kh, kw) of x's dtype and the geometry
    (stride and dilation pairs >= 1, padding (top, bottom, left, right) >= 0, groups dividing
    C and O); return the output size (Ho, Wo), which must be >= 1 each."""
    float_array(fn, "x", x)
    float_array(fn, "weight", weight)
    if x.ndim != 4 or weight.ndim != 4:
        raise ValueError(f"{fn}: x must be (N, C, H, W) and weight (O, C/groups, kh, kw), got "
                         f"shapes {x.shape} and {weight.shape}")
    if weight.dtype != x.dtype:
        raise TypeError(f"{fn}: weight has dtype {weight.dtype} but x has dtype {x.dtype}")
    sh, sw = _int_tuple(fn, "stride", stride, 2, 1)
    top, bottom, left, right = _int_tuple(fn, "padding", padding, 4, 0)
    dh, dw = _int_tuple(fn, "dilation", dilation, 2, 1)
    if type(groups) is not int or groups < 1:
        raise ValueError(f"{fn}: groups must be an int >= 1, got {groups!r:.40}")
    O, Cg, kh, kw = weight.shape
    if x.shape[1] != Cg * groups or O % groups or O == 0:
        raise ValueError(f"{fn}: weight of shape {weight.shape} with groups={groups} needs x "
                         f"with {Cg * groups} channels and out channels divisible by groups, "
                         f"got x of shape {x.shape}")
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    rows, cols = x.shape[2] + top + bottom, x.shape[3] + left + right
    if kh == 0 or kw == 0 or span_h > rows or span_w > cols:
        raise ValueError(f"{fn}: kernel spans ({span_h}, {span_w}) but the padded input is "
                         f"({rows}, {cols})")
    return (rows - span_h) // sh + 1, (cols - span_w) // sw + 1


def conv2d_forward_args(x, weight, bias, stride, padding, dilation, groups) -> tuple[int, int]:
    """Check a ``conv2d_forward`` call; return (Ho, Wo)."""
    fn = "conv2d_forward"
    out = conv2d_geometry(fn, x, weight, stride, padding, dilation, groups)
    if bias is not None:
        same_as(fn, "bias", bias, x, weight.shape[:1], "one per out channel")
    return out


def conv2d_backward_args(grad_out, x, weight, stride, padding, dilation, groups,
                         needs) -> tuple[int, int]:
    """Check a ``conv2d_backward`` call; return (Ho, Wo). ``needs`` is three bools: which of
    dx, dweight and dbias to compute."""
    fn = "conv2d_backward"
    out = conv2d_geometry(fn, x, weight, stride, padding, dilation, groups)
    same_as(fn, "grad_out", grad_out, x, (x.shape[0], weight.shape[0]) + out,
            "the output's shape")
    if type(needs) is not tuple or len(needs) != 3 or any(type(n) is not bool for n in needs):
        raise TypeError(f"{fn}: needs must be a tuple of 3 bools, got {needs!r:.80}")
    return out

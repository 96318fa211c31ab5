"""The argument rules of the public functions, each written once.

Every function of ``minigrad.functional`` checks its semantic arguments here, before any work,
for the fused and the composite (``fused=False``) path alike; the kernels below trust them.
Layers call the same rules for their configuration so that a bad option fails where the layer
is made. Type errors are ``TypeError``; values out of range are ``ValueError``.
"""

from __future__ import annotations

import math
import sys
from numbers import Real
from typing import Any

import numpy as np
from numpy.lib.array_utils import normalize_axis_tuple

from .. import kernels
from ._convert import data_of

REDUCTIONS = ("mean", "sum", "none")
_FLOAT_MAX = sys.float_info.max
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


# ----------------------------------------------------------------------------- numbers


def _real(value: Any, what: str) -> float:
    """``value`` as a float, or TypeError unless it is a real number (bools are not)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{what} must be a real number, got {type(value).__name__} {value!r}")
    return float(value)


def check_eps(eps: Any, op: str) -> float:
    """eps must be finite and >= 0: a negative one makes var + eps negative and rstd NaN."""
    if type(eps) is float and 0.0 <= eps <= _FLOAT_MAX:  # the common case, NaN fails here
        return eps
    value = _real(eps, f"{op}: eps")
    if not 0.0 <= value <= _FLOAT_MAX:
        raise ValueError(f"{op}: eps must be a finite number >= 0, got {eps!r}")
    return value


def check_momentum(momentum: Any, op: str) -> float:
    """momentum must be in [0, 1]: outside, the running variance can turn negative."""
    if type(momentum) is float and 0.0 <= momentum <= 1.0:
        return momentum
    value = _real(momentum, f"{op}: momentum")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{op}: momentum must be in [0, 1], got {momentum!r}")
    return value


def check_label_smoothing(label_smoothing: Any) -> float:
    """label_smoothing is the weight of the uniform distribution: in [0, 1]."""
    if type(label_smoothing) is float and 0.0 <= label_smoothing <= 1.0:
        return label_smoothing
    value = _real(label_smoothing, "label_smoothing")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
    return value


def check_dropout(p: Any, training: Any) -> float:
    """Dropout's p is a probability in [0, 1] (1 zeroes everything); training is a bool."""
    check_training(training, "dropout")
    value = _real(p, "dropout probability")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p!r}")
    return value


def check_negative_slope(negative_slope: Any) -> float:
    """leaky_relu's slope for x < 0: any finite number."""
    value = _real(negative_slope, "leaky_relu: negative_slope")
    if not math.isfinite(value):
        raise ValueError(f"leaky_relu: negative_slope must be finite, got {negative_slope!r}")
    return value


def check_correction(correction: Any) -> float:
    """var/std's correction (0 biased, 1 unbiased): a finite number >= 0."""
    if type(correction) is int and correction >= 0:
        return correction
    value = _real(correction, "var: correction")
    if not 0.0 <= value <= _FLOAT_MAX:
        raise ValueError(f"var: correction must be a finite number >= 0, got {correction!r}")
    return value


def check_clip_bounds(lo: Any, hi: Any) -> None:
    """clip needs at least one bound."""
    if lo is None and hi is None:
        raise ValueError("clip needs at least one of min and max")


def check_flag(value: Any, name: str, op: str | None = None) -> bool:
    """A yes/no option is a bool (or NumPy bool), not any truth value: the string "False" or
    "no" would be true. The one home of that rule, for every flag of every function."""
    if value is not True and value is not False and not isinstance(value, np.bool_):
        prefix = "" if op is None else f"{op}: "
        raise TypeError(f"{prefix}{name} must be a bool, got {value!r}")
    return bool(value)


def check_training(training: Any, op: str) -> None:
    """``training`` is a flag like any other (see ``check_flag``)."""
    check_flag(training, "training", op)


def check_reduction(reduction: Any) -> None:
    """A loss reduction is "mean", "sum" or "none"."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def check_ignore_index(ignore_index: Any) -> int:
    """ignore_index is an int64 integer: a float such as 2.7 is refused, not truncated."""
    if type(ignore_index) is int and _INT64_MIN <= ignore_index <= _INT64_MAX:
        return ignore_index  # the common case
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int | np.integer):
        raise TypeError(f"ignore_index must be an int, got {ignore_index!r}")
    if not _INT64_MIN <= ignore_index <= _INT64_MAX:
        raise ValueError(f"ignore_index must fit in int64, got {ignore_index!r}")
    return int(ignore_index)


# ----------------------------------------------------------------------------- targets


def check_class_targets(input_shape: tuple[int, ...], target: Any, ignore_index: int) -> np.ndarray:
    """Class-index targets for logits of ``input_shape``, as an int64 copy the graph owns.

    Targets are integers of shape (N, d1, ...) for input (N, C, d1, ...) (() for input (C,)),
    each in [0, C) or equal to ignore_index. The range is tested in the targets' own dtype, so
    a uint64 2**64 - 100 is out of range rather than wrapped onto ignore_index = -100.
    """
    target = np.asarray(data_of(target))
    if target.dtype.kind not in "iu":
        raise TypeError(
            f"target must hold integer class indices, got dtype {target.dtype} "
            "(probability targets are not supported)"
        )
    expected = input_shape[:1] + input_shape[2:] if len(input_shape) > 1 else ()
    if target.shape != expected:
        raise ValueError(
            f"target shape {target.shape} does not match input shape {input_shape} "
            f"(expected {expected})"
        )
    classes = input_shape[1] if len(input_shape) > 1 else input_shape[0]
    owned = target.astype(np.int64)  # always a copy
    # One cheap test first, a C loop over the copy on the compiled backend (uint64 targets in
    # their own dtype: their int64 copy could wrap onto ignore_index); only then find the value
    # to name.
    tested = target if target.dtype == np.uint64 else owned
    if kernels.impl.class_target_count(tested, classes, ignore_index) < 0:
        bad = (target != ignore_index) & ((target < 0) | (target >= classes))
        raise ValueError(f"target {target[bad].flat[0]} is out of range for {classes} "
                         f"classes (ignore_index={ignore_index})")
    return owned


# ----------------------------------------------------------------------------- axes


def normalize_axis(axis: int, ndim: int) -> int:
    """Map a possibly negative axis into [0, ndim), raising NumPy's AxisError when out of range."""
    if isinstance(axis, bool) or not isinstance(axis, int | np.integer):
        raise TypeError(f"axis must be an int, got {type(axis).__name__} {axis!r}")
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(axis, ndim)
    return int(axis) % ndim


def check_axis(axis: Any, ndim: int) -> int | tuple[int, ...] | None:
    """A reduction's axis: None, an int or a tuple (or list) of distinct ints in range.

    Bools are refused as NumPy refuses them (``sum(axis=True)`` is a TypeError, not axis 1).
    """
    if axis is None:
        return None
    if type(axis) is int and -ndim <= axis < ndim:
        return axis
    if isinstance(axis, list):
        axis = tuple(axis)
    for a in axis if isinstance(axis, tuple) else (axis,):
        if isinstance(a, bool) or not isinstance(a, int | np.integer):
            raise TypeError(
                f"axis must be an int, a tuple of ints or None, got {type(a).__name__} {a!r}"
            )
    normalize_axis_tuple(axis, ndim)  # AxisError when out of range, ValueError when repeated
    return axis


def check_extreme_reduction(shape: tuple[int, ...], axis: Any, op: str) -> None:
    """max/min have no identity: reducing over zero elements is an error (as in NumPy)."""
    axes = tuple(range(len(shape))) if axis is None else normalize_axis_tuple(axis, len(shape))
    if math.prod(shape[a] for a in axes) == 0:
        raise ValueError(f"zero-size reduction over axes {tuple(sorted(axes))} of an array of "
                         f"shape {shape}: {op} has no identity")


def check_keepdims(keepdims: Any) -> None:
    """``keepdims`` decides the output's shape: a flag (see ``check_flag``)."""
    check_flag(keepdims, "keepdims")


def single_axis(axis: Any, ndim: int) -> int:
    """softmax-style functions take exactly one int axis."""
    if isinstance(axis, bool) or not isinstance(axis, int | np.integer):
        raise TypeError(f"softmax takes one int axis, got {axis!r}")
    return normalize_axis_tuple(int(axis), ndim)[0]


# ----------------------------------------------------------------------------- shapes, dtypes


def check_float_input(x: Any, op: str) -> Any:
    """The Tensor ``x`` if its dtype is floating-point; TypeError naming the op otherwise."""
    dtype = x._data.dtype  # the slot: this runs on every call of most functions
    if dtype.kind != "f":
        raise TypeError(f"{op} needs a floating-point input, got dtype {dtype}")
    return x


def check_same_shape(input: Any, target: Any, op: str) -> None:
    """Elementwise losses compare input and target element by element: no broadcasting."""
    if input.shape != target.shape:
        raise ValueError(f"{op}: input shape {input.shape} and target shape "
                         f"{target.shape} differ")


def check_size(n: Any, what: str) -> int:
    """A feature count is an int >= 1 (a float such as 4.0 is refused, not truncated)."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise TypeError(f"{what} must be a positive int, got {n!r}")
    if n < 1:
        raise ValueError(f"{what} must be a positive int, got {n!r}")
    return int(n)


def normalized_shape_of(normalized_shape: Any, op: str) -> tuple[int, ...]:
    """LayerNorm's trailing shape: an int or a non-empty sequence of positive ints."""
    if type(normalized_shape) is tuple and len(normalized_shape) == 1:
        n = normalized_shape[0]  # the common case, a layer's own (D,): no conversion needed
        if type(n) is int and n >= 1:
            return normalized_shape
    if isinstance(normalized_shape, int | np.integer) and not isinstance(normalized_shape, bool):
        normalized_shape = (normalized_shape,)
    if not isinstance(normalized_shape, tuple | list) or not normalized_shape:
        raise ValueError(f"{op}: normalized_shape must be an int or a non-empty tuple of ints, "
                         f"got {normalized_shape!r}")
    return tuple(check_size(n, f"{op}: normalized_shape") for n in normalized_shape)


def check_per_channel(shape: tuple[int, ...]) -> None:
    """Training batch statistics need more than one value per channel (axis 1)."""
    if math.prod(shape) // max(shape[1], 1) <= 1:
        raise ValueError(
            f"expected more than 1 value per channel when training, got input of shape {shape}"
        )


def check_param_dtype(x: Any, *params: Any) -> None:
    """A layer's input must have its parameters' (and buffers') float dtype.

    Mixed dtypes would otherwise train silently in float64 with float32 weights, or fail deep
    in a kernel; the message names both dtypes and both fixes.
    """
    dtype = x._data.dtype
    for p in params:
        if p is None:
            continue
        expected = p.dtype  # Tensors and ndarrays alike
        if expected is not dtype and expected != dtype:
            raise TypeError(_dtype_message(dtype, expected))


def _dtype_message(got: np.dtype, expected: np.dtype) -> str:
    to_input = "x.double()" if expected == np.float64 else "x.float()"
    to_model = "model.double()" if got == np.float64 else "model.float()"
    fixes = f"convert the input ({to_input})"
    if got.kind == "f":
        fixes += f" or the model ({to_model})"
    return f"input dtype {got} does not match the parameter dtype {expected}: {fixes}"


# ------------------------------------------------- the normalization family (group, instance, rms)


def check_groups(num_groups: Any, num_channels: int, op: str) -> int:
    """GroupNorm splits the C channels into num_groups equal groups: C % num_groups == 0."""
    num_groups = check_size(num_groups, f"{op}: num_groups")
    if num_channels % num_groups:
        raise ValueError(f"{op}: num_channels={num_channels} is not divisible by "
                         f"num_groups={num_groups}")
    return num_groups


def check_spatial(shape: tuple[int, ...], op: str, use_input_stats: bool) -> None:
    """Instance norm needs (N, C, *spatial); its own statistics need more than one spatial
    value per (sample, channel)."""
    if len(shape) < 3:
        raise ValueError(f"{op} expects input (N, C, *spatial) with at least one spatial axis, "
                         f"got shape {shape}")
    if use_input_stats and math.prod(shape[2:]) <= 1:
        raise ValueError(f"{op}: expected more than 1 spatial value per channel, got input of "
                         f"shape {shape}")


def check_bool(value: Any, what: str) -> bool:
    """A flag such as use_input_stats is a bool: a string such as "False" would be true."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{what} must be a bool, got {value!r}")
    return bool(value)


def check_trailing(shape: tuple[int, ...], normalized_shape: tuple[int, ...], op: str) -> None:
    """The input must end with ``normalized_shape``."""
    k = len(normalized_shape)
    if len(shape) < k or shape[len(shape) - k:] != normalized_shape:
        raise ValueError(f"{op}: expected input with trailing shape {normalized_shape}, "
                         f"got shape {shape}")


def rms_eps(eps: Any, dtype: np.dtype, op: str) -> float:
    """RMSNorm's eps: None means the machine epsilon of the input dtype (as PyTorch)."""
    if eps is None:
        return float(np.finfo(dtype).eps)
    return check_eps(eps, op)


# ----------------------------------------------------------------------------- indices


def integer_indices(indices: Any, op: str) -> np.ndarray:
    """Integer indices (a Tensor, ndarray or nested list) as an int64 copy the graph owns;
    TypeError for floats or bools (a float index such as 2.7 is refused, not truncated)."""
    array = np.asarray(data_of(indices))
    if array.dtype.kind not in "iu":
        raise TypeError(f"{op} needs integer indices, got dtype {array.dtype}")
    if array.dtype.kind == "u" and array.size and array.max() > _INT64_MAX:
        raise IndexError(f"{op}: index {array.max()} is out of range")
    return array.astype(np.int64)  # always a copy


def check_index_range(indices: np.ndarray, size: int, op: str, what: str) -> None:
    """Every index lies in [0, size): IndexError naming the first one that does not."""
    if indices.size and (indices.min() < 0 or indices.max() >= size):
        bad = indices[(indices < 0) | (indices >= size)].flat[0]
        raise IndexError(f"{op}: index {bad} is out of range for {what} ({size} rows, valid "
                         f"indices 0..{size - 1})")


def check_padding_idx(padding_idx: Any, num_embeddings: int, op: str) -> int:
    """PyTorch's padding_idx: None, or an int in [-num_embeddings, num_embeddings) (a negative
    one counts from the end). Returns it as a row in [0, num_embeddings), or -1 for None."""
    if padding_idx is None:
        return -1
    if isinstance(padding_idx, bool) or not isinstance(padding_idx, int | np.integer):
        raise TypeError(f"{op}: padding_idx must be an int or None, got {padding_idx!r}")
    if not -num_embeddings <= padding_idx < num_embeddings:
        raise ValueError(f"{op}: padding_idx must be within [-{num_embeddings}, "
                         f"{num_embeddings}) for {num_embeddings} embeddings, got {padding_idx}")
    return int(padding_idx) % num_embeddings


def check_max_norm(max_norm: Any, norm_type: Any, op: str) -> tuple[float | None, float]:
    """Embedding's renormalisation: max_norm None or a real >= 0, norm_type a real > 0 (inf
    allowed: the largest absolute value)."""
    norm_type = _real(norm_type, f"{op}: norm_type")
    if not norm_type > 0:
        raise ValueError(f"{op}: norm_type must be > 0, got {norm_type}")
    if max_norm is None:
        return None, norm_type
    max_norm = _real(max_norm, f"{op}: max_norm")
    if not 0 <= max_norm < math.inf:
        raise ValueError(f"{op}: max_norm must be a finite number >= 0 or None, got {max_norm}")
    return max_norm, norm_type


def check_num_classes(num_classes: Any, indices: np.ndarray) -> int:
    """one_hot's num_classes: -1 infers max(indices) + 1 (refused for empty indices, which
    have no maximum), otherwise an int >= 1 above every index."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer):
        raise TypeError(f"one_hot: num_classes must be an int, got {num_classes!r}")
    if num_classes == -1:
        if indices.size == 0:
            raise ValueError("one_hot: cannot infer num_classes from empty indices; pass it")
        num_classes = int(indices.max()) + 1
    elif num_classes < 1:
        raise ValueError(f"one_hot: num_classes must be -1 or >= 1, got {num_classes}")
    if indices.size and indices.min() < 0:
        raise ValueError(f"one_hot: class values must be non-negative, got {indices.min()}")
    if indices.size and indices.max() >= num_classes:
        raise ValueError(f"one_hot: class value {indices.max()} is not smaller than "
                         f"num_classes={num_classes}")
    return int(num_classes)

# cython: annotation_typing=False
"""Memory-safety checks shared by every kernel, compiled and twin alike, and the axis helpers.

A kernel trusts its semantic arguments (eps, momentum, label_smoothing, which class to
ignore): the public functions above it check those once. What a kernel must still refuse is an
array it could not read or write safely: not an ndarray, a dtype other than float32/float64, a
foreign byte order, a shape that disagrees with its partner, an axis or class index outside
the array, a read-only buffer it must write, or two buffers that overlap. Both backends call
these helpers, so a bad direct call raises the same ``TypeError``/``ValueError`` with the same
message on either backend, and never crashes.

setup.py also compiles this module with Cython (the hints stay hints), which halves its cost on
the hot path; without a build the same source runs as plain Python. Rebuild after editing it.
"""

from __future__ import annotations

import math
import operator

import numpy as np
from numpy.lib.array_utils import normalize_axis_tuple

Axis = int | tuple[int, ...] | None

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def float_array(fn: str, name: str, a: object) -> np.ndarray:
    """Return ``a`` unchanged if it is a native-byte-order float32/float64 ndarray; else raise."""
    if type(a) is not np.ndarray and not isinstance(a, np.ndarray):
        raise TypeError(f"{fn}: {name} must be a numpy.ndarray, got {type(a).__name__}")
    dtype = a.dtype
    if dtype is not FLOAT_DTYPES[0] and dtype is not FLOAT_DTYPES[1] and dtype not in FLOAT_DTYPES:
        if dtype.kind == "f" and dtype.itemsize in (4, 8) and not dtype.isnative:
            raise TypeError(
                f"{fn}: {name} has non-native byte order ({dtype.str}); "
                "convert it with a.astype(a.dtype.newbyteorder('='))"
            )
        raise TypeError(f"{fn}: {name} must be float32 or float64, got dtype {dtype}")
    return a


def same_shape(fn: str, name: str, a: np.ndarray, other: str, b: np.ndarray) -> None:
    """Raise unless ndarrays ``a`` and ``b`` have one shape (no broadcasting between them)."""
    if a.shape != b.shape:
        raise ValueError(f"{fn}: {name} has shape {a.shape} but {other} has shape {b.shape}")


def same_as(fn: str, name: str, a: object, x: np.ndarray, shape: tuple, what: str) -> np.ndarray:
    """Raise unless ``a`` is an ndarray with x's dtype and the given ``shape`` (``what`` says
    why that shape, e.g. "one per channel")."""
    if type(a) is not np.ndarray or a.dtype is not x.dtype:
        float_array(fn, name, a)
        if a.dtype != x.dtype:
            raise TypeError(f"{fn}: {name} has dtype {a.dtype} but x has dtype {x.dtype}")
    if a.shape != shape:
        raise ValueError(
            f"{fn}: {name} must have shape {shape} ({what}) for x of shape {x.shape}, "
            f"got shape {a.shape}"
        )
    return a


def stats_array(fn: str, name: str, a: object, shape: tuple, x: np.ndarray) -> np.ndarray:
    """Raise unless ``a`` (a saved mean or rstd, of any float dtype) is a float ndarray of
    ``shape``."""
    float_array(fn, name, a)
    if a.shape != shape:
        raise ValueError(
            f"{fn}: {name} must have shape {shape} for x of shape {x.shape}, got shape {a.shape}"
        )
    return a


def writeable(fn: str, name: str, a: np.ndarray) -> None:
    """Raise unless the kernel may write into ``a`` in place."""
    if not a.flags.writeable:
        raise ValueError(f"{fn}: {name} is updated in place but is read-only")


def disjoint(fn: str, **arrays: np.ndarray | None) -> None:
    """Raise if any two of the named arrays share memory (an in-place kernel would read what
    it already wrote)."""
    named = [(n, a) for n, a in arrays.items() if a is not None]
    for i, (name_a, a) in enumerate(named):
        for name_b, b in named[i + 1:]:
            if np.shares_memory(a, b):
                raise ValueError(f"{fn}: {name_a} and {name_b} overlap in memory")


# ------------------------------------------------------------------------ optimizer kernels
# An optimizer kernel takes one list per kind of array (params, grads, each state), one entry
# per tensor. Tensors are updated one after the other, in list order, so two tensors may share
# memory (each sees the other's earlier update, as in PyTorch's per-parameter loop); the arrays
# of ONE tensor must not overlap, since its update reads and writes them element by element.

MAX_STEP = 2**62  # a step count fits a C integer with room to spare


def real(value: object) -> float:
    """``value`` as a float, refused exactly as a compiled ``double`` argument refuses it."""
    math.isfinite(value)  # type: ignore[arg-type]  # TypeError for what PyFloat_AsDouble refuses
    return float(value)  # type: ignore[arg-type]


def _private(a: np.ndarray, b: np.ndarray) -> bool:
    """True when a and b cannot share memory: two distinct arrays that own their data, or
    arrays NumPy proves disjoint."""
    if a is b:
        return False
    if a.base is None and b.base is None:
        return True
    return not np.shares_memory(a, b)


def tensor_lists(fn: str, params: object, grads: object, **states: object) -> None:
    """Raise unless ``params`` and ``grads`` are lists of same-shape arrays of one float
    dtype (params writeable) and each state is None or a list holding, per tensor, a writeable
    C-contiguous array like its parameter; the arrays of one tensor must not overlap."""
    if type(params) is not list or type(grads) is not list:
        raise TypeError(f"{fn}: params and grads must be lists, got {type(params).__name__} "
                        f"and {type(grads).__name__}")
    n = len(params)
    named = {"grads": grads, **{k: v for k, v in states.items() if v is not None}}
    for name, arrays in named.items():
        if type(arrays) is not list:
            raise TypeError(f"{fn}: {name} must be a list or None, got {type(arrays).__name__}")
        if len(arrays) != n:
            raise ValueError(f"{fn}: {name} has {len(arrays)} entries for {n} params")
    for i in range(n):
        p = float_array(fn, f"params[{i}]", params[i])
        if p.dtype != params[0].dtype:
            raise TypeError(f"{fn}: params[{i}] is {p.dtype} but params[0] is "
                            f"{params[0].dtype}; one dtype per call")
        writeable(fn, f"params[{i}]", p)
        for name, arrays in named.items():
            a = float_array(fn, f"{name}[{i}]", arrays[i])
            if a.dtype != p.dtype:
                raise TypeError(f"{fn}: {name}[{i}] is {a.dtype} but params[{i}] is {p.dtype}")
            if a.shape != p.shape:
                raise ValueError(f"{fn}: {name}[{i}] has shape {a.shape} but params[{i}] has "
                                 f"shape {p.shape}")
            if name != "grads":
                if not a.flags.c_contiguous:
                    raise ValueError(f"{fn}: {name}[{i}] must be C-contiguous")
                writeable(fn, f"{name}[{i}]", a)
        arrays = [("params", p)] + [(name, named[name][i]) for name in named]
        for k, (name_a, a) in enumerate(arrays):
            for name_b, b in arrays[k + 1:]:
                if not _private(a, b):
                    raise ValueError(f"{fn}: {name_a}[{i}] and {name_b}[{i}] overlap in memory")


def flag_list(fn: str, name: str, flags: object, n: int) -> None:
    """Raise unless ``flags`` is a list of n bools."""
    if type(flags) is not list or len(flags) != n or any(f is not True and f is not False
                                                         for f in flags):
        raise TypeError(f"{fn}: {name} must be a list of {n} bools, got {flags!r:.80}")


def step_list(fn: str, name: str, steps: object, n: int) -> None:
    """Raise unless ``steps`` is a list of n ints in [1, MAX_STEP] (a bias correction
    1 - beta**t needs t >= 1)."""
    if type(steps) is not list or len(steps) != n:
        raise TypeError(f"{fn}: {name} must be a list of {n} ints, got {steps!r:.80}")
    for i, t in enumerate(steps):
        if type(t) is not int or not 1 <= t <= MAX_STEP:
            raise ValueError(f"{fn}: {name}[{i}] must be an int in [1, 2**62], got {t!r:.40}")


def _separate_owners(*arrays: np.ndarray) -> bool:
    """True when each array is, or views, a different array that owns its memory: then no two
    can overlap. The cheap test a hot kernel runs before the exact ``disjoint``."""
    owners = []
    for a in arrays:
        owner = a if a.base is None else a.base
        if type(owner) is not np.ndarray or owner.base is not None:
            return False
        for seen in owners:
            if seen is owner:
                return False
        owners.append(owner)
    return True


def keepdims_flag(fn: str, keepdims: object) -> bool:
    """``keepdims`` decides the output's shape, so it must be a bool, not any truth value."""
    if keepdims is not True and keepdims is not False and not isinstance(keepdims, np.bool_):
        raise TypeError(f"{fn}: keepdims must be a bool, got {keepdims!r}")
    return bool(keepdims)


def reduced_axes(ndim: int, axis: Axis) -> tuple[int, ...]:
    """Normalise ``axis`` (None, int or tuple; negatives allowed) to a sorted tuple of axes.

    Raises numpy's AxisError for an out-of-range axis and ValueError for a repeated one.
    """
    if axis is None:
        return tuple(range(ndim))
    return tuple(sorted(normalize_axis_tuple(axis, ndim)))


def single_axis(ndim: int, axis: object) -> int:
    """The one axis of a softmax-style kernel as a non-negative int (a float or tuple raises)."""
    if type(axis) is int and -ndim <= axis < ndim:  # the common call, without NumPy's helper
        return axis % ndim
    if isinstance(axis, tuple) or axis is None:
        raise TypeError(f"axis must be a single int, got {axis!r}")
    return normalize_axis_tuple(operator.index(axis), ndim)[0]


def class_targets(fn: str, target: object, n: int, classes: int,
                  ignore_index: object) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(target as int64, mask of ignored rows)`` for (n,) integer class indices.

    Every row that is not ignored must index one of the ``classes`` columns: the kernel reads
    ``logits[i, target[i]]``. Unsigned values beyond int64 are refused rather than wrapped.
    """
    if not isinstance(target, np.ndarray):
        raise TypeError(f"{fn}: target must be a numpy.ndarray, got {type(target).__name__}")
    if target.dtype.kind not in "iu":
        raise TypeError(f"{fn}: target must hold integer class indices, got dtype {target.dtype}")
    if target.shape != (n,):
        raise ValueError(f"{fn}: target must have shape ({n},) for logits with {n} rows, "
                         f"got shape {target.shape}")
    if target.dtype.kind == "u" and target.dtype.itemsize == 8 and n and target.max() > 2**63 - 1:
        raise ValueError(f"{fn}: target {int(target.max())} is out of range for "
                         f"{classes} classes")
    target = target.astype(np.int64, copy=False)
    ignored = target == ignore_index
    bad = (target < 0) | (target >= classes)
    if bad.any():
        bad &= ~ignored
        if bad.any():
            raise ValueError(f"{fn}: target {int(target[bad][0])} is out of range for "
                             f"{classes} classes (ignore_index={ignore_index})")
    return target, ignored


def class_target_count(target: object, classes: int, ignore_index: object) -> int:
    """How many of the integer class targets are not ``ignore_index``, or -1 when one of those
    lies outside [0, classes): the range test a cross-entropy's targets must pass and the count
    its mean divides by. Values are compared in the targets' own dtype (a uint64 2**64 - 100 is
    out of range, not -100). The compiled kernel module runs int64 targets through one C loop."""
    if not isinstance(target, np.ndarray) or target.dtype.kind not in "iu":
        raise TypeError("class_target_count: target must be an integer numpy.ndarray, got "
                        f"{getattr(target, 'dtype', type(target).__name__)}")
    kept = target != ignore_index
    if np.any(kept & ((target < 0) | (target >= classes))):
        return -1
    return int(np.count_nonzero(kept))


# ------------------------------------------------------------- the argument sets of kernels


def cross_entropy_args(fn: str, logits: object, target: object,
                       ignore_index: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Memory-safety checks of both cross-entropy kernels: logits (N, C) with C >= 1 and
    targets that index a column unless ignored. Returns ``(logits, target int64, ignored)``."""
    logits = float_array(fn, "logits", logits)
    if logits.ndim != 2:
        raise ValueError(f"{fn}: logits must be 2-D (N, C), got shape {logits.shape}")
    n, c = logits.shape
    if c == 0:
        raise ValueError(f"{fn}: logits need at least one class, got shape {logits.shape}")
    target, ignored = class_targets(fn, target, n, c, ignore_index)
    return logits, target, ignored


def batchnorm_forward_args(x, gamma, beta, running_mean, running_var, training) -> int:
    """Check a ``batchnorm_forward`` call; return C. The running buffers are written in
    training, so they must be writeable and share no memory with x or each other."""
    fn = "batchnorm_forward"
    C = _batchnorm_channels(fn, x)
    if gamma is not None:
        same_as(fn, "gamma", gamma, x, (C,), "one per channel")
    if beta is not None:
        same_as(fn, "beta", beta, x, (C,), "one per channel")
    if running_mean is None or running_var is None:
        if running_mean is not running_var:
            raise ValueError(f"{fn}: running_mean and running_var must both be arrays or both None")
        if not training:
            raise ValueError(
                f"{fn}: training=False needs running_mean and running_var (without running "
                "statistics, normalise with the batch statistics: training=True)"
            )
        return C
    same_as(fn, "running_mean", running_mean, x, (C,), "one per channel")
    same_as(fn, "running_var", running_var, x, (C,), "one per channel")
    if training:
        writeable(fn, "running_mean", running_mean)
        writeable(fn, "running_var", running_var)
        if not _separate_owners(x, running_mean, running_var):
            disjoint(fn, x=x, running_mean=running_mean, running_var=running_var)
    return C


def batchnorm_backward_args(grad_out, x, gamma, mean, rstd) -> int:
    """Check a ``batchnorm_backward`` call; return C."""
    fn = "batchnorm_backward"
    C = _batchnorm_channels(fn, x)
    same_as(fn, "grad_out", grad_out, x, x.shape, "the shape of x")
    if gamma is not None:
        same_as(fn, "gamma", gamma, x, (C,), "one per channel")
    stats_array(fn, "mean", mean, (C,), x)
    stats_array(fn, "rstd", rstd, (C,), x)
    return C


def _batchnorm_channels(fn: str, x: object) -> int:
    float_array(fn, "x", x)
    if not 2 <= x.ndim <= 4:
        raise ValueError(
            f"{fn}: x must have shape (N, C), (N, C, L) or (N, C, H, W), got shape {x.shape}"
        )
    return x.shape[1]


def layernorm_forward_args(x, gamma, beta, normalized_ndim) -> tuple[int, ...]:
    """Check a ``layernorm_forward`` call; return the normalized shape (never empty)."""
    fn = "layernorm_forward"
    shape = _normalized_shape(fn, x, normalized_ndim)
    if gamma is not None:
        same_as(fn, "gamma", gamma, x, shape, "the normalized shape")
    if beta is not None:
        same_as(fn, "beta", beta, x, shape, "the normalized shape")
    return shape


def layernorm_backward_args(grad_out, x, gamma, mean, rstd) -> tuple[int, ...]:
    """Check a ``layernorm_backward`` call; return the normalized shape (never empty)."""
    fn = "layernorm_backward"
    float_array(fn, "x", x)
    same_as(fn, "grad_out", grad_out, x, x.shape, "the shape of x")
    float_array(fn, "mean", mean)
    if mean.ndim >= x.ndim or mean.shape != x.shape[: mean.ndim]:
        raise ValueError(
            f"{fn}: mean must have the leading (unnormalized) shape of x of shape {x.shape}, "
            f"got shape {mean.shape}"
        )
    stats_array(fn, "rstd", rstd, mean.shape, x)
    shape = x.shape[mean.ndim:]
    _nonempty(fn, shape)
    if gamma is not None:
        same_as(fn, "gamma", gamma, x, shape, "the normalized shape")
    return shape


def _normalized_shape(fn: str, x, normalized_ndim) -> tuple[int, ...]:
    """x's trailing ``normalized_ndim`` sizes, checked: a float array and a non-empty shape."""
    float_array(fn, "x", x)
    if isinstance(normalized_ndim, bool) or not isinstance(normalized_ndim, int | np.integer):
        raise TypeError(f"{fn}: normalized_ndim must be an int, got {normalized_ndim!r}")
    if not 1 <= normalized_ndim <= x.ndim:
        raise ValueError(
            f"{fn}: normalized_ndim must be in [1, x.ndim] = [1, {x.ndim}] for x of shape "
            f"{x.shape}, got {normalized_ndim}"
        )
    shape = x.shape[x.ndim - normalized_ndim:]
    _nonempty(fn, shape)
    return shape


def rmsnorm_forward_args(x, weight, normalized_ndim) -> tuple[int, ...]:
    """Check an ``rmsnorm_forward`` call; return the normalized shape (never empty)."""
    fn = "rmsnorm_forward"
    shape = _normalized_shape(fn, x, normalized_ndim)
    if weight is not None:
        same_as(fn, "weight", weight, x, shape, "the normalized shape")
    return shape


def rmsnorm_backward_args(grad_out, x, weight, rstd) -> tuple[int, ...]:
    """Check an ``rmsnorm_backward`` call; return the normalized shape (never empty)."""
    fn = "rmsnorm_backward"
    float_array(fn, "x", x)
    same_as(fn, "grad_out", grad_out, x, x.shape, "the shape of x")
    float_array(fn, "rstd", rstd)
    if rstd.ndim >= x.ndim or rstd.shape != x.shape[: rstd.ndim]:
        raise ValueError(
            f"{fn}: rstd must have the leading (unnormalized) shape of x of shape {x.shape}, "
            f"got shape {rstd.shape}"
        )
    shape = x.shape[rstd.ndim:]
    _nonempty(fn, shape)
    if weight is not None:
        same_as(fn, "weight", weight, x, shape, "the normalized shape")
    return shape


def _nonempty(fn: str, shape: tuple[int, ...]) -> None:
    if 0 in shape:
        raise ValueError(f"{fn}: cannot normalise over an empty shape {shape}")


def embedding_backward_args(grad_out, indices, num_embeddings, padding_idx) -> None:
    """Check an ``embedding_backward`` call: grad_out (N, D) float, indices int64 (N,), a
    table of ``num_embeddings`` >= 0 rows and ``padding_idx`` in [-1, num_embeddings) (-1:
    none). The values of indices are range-tested by the scatter itself (it writes the rows
    they name)."""
    fn = "embedding_backward"
    float_array(fn, "grad_out", grad_out)
    if grad_out.ndim != 2:
        raise ValueError(f"{fn}: grad_out must be 2-D (N, D), got shape {grad_out.shape}")
    if not isinstance(indices, np.ndarray):
        raise TypeError(f"{fn}: indices must be a numpy.ndarray, got {type(indices).__name__}")
    if indices.dtype != np.int64:
        raise TypeError(f"{fn}: indices must be int64, got dtype {indices.dtype}")
    if indices.shape != grad_out.shape[:1]:
        raise ValueError(f"{fn}: indices must have shape ({grad_out.shape[0]},) for grad_out "
                         f"of shape {grad_out.shape}, got shape {indices.shape}")
    for name, value, low in (("num_embeddings", num_embeddings, 0),
                             ("padding_idx", padding_idx, -1)):
        if type(value) is not int and not isinstance(value, np.integer):
            raise TypeError(f"{fn}: {name} must be an int, got {value!r:.40}")
        if value < low:
            raise ValueError(f"{fn}: {name} must be >= {low}, got {value}")
    if padding_idx >= num_embeddings:
        raise ValueError(f"{fn}: padding_idx {padding_idx} is not a row of a table of "
                         f"{num_embeddings} rows")


def embedding_index_error(fn: str, index: int, num_embeddings: int) -> ValueError:
    """The error of an index that names no row of the table."""
    return ValueError(f"{fn}: index {index} is out of range for a table of {num_embeddings} rows")

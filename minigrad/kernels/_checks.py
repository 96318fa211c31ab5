"""Memory-safety checks shared by every kernel, compiled and twin alike.

A kernel trusts its semantic arguments (eps, momentum, axes, class counts): the public
functions above it check those once. What a kernel must still refuse is an array it could not
read or write safely: not an ndarray, a dtype other than float32/float64, a foreign byte
order, a shape that disagrees with its partner, a read-only buffer it must write, or two
buffers that overlap. Both backends call these helpers, so a bad direct call raises the same
``TypeError``/``ValueError`` with the same message on either backend, and never crashes.
"""

from __future__ import annotations

import math

import numpy as np

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

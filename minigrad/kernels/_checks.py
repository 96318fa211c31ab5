"""Memory-safety checks shared by every kernel, compiled and twin alike.

A kernel trusts its semantic arguments (eps, momentum, axes, class counts): the public
functions above it check those once. What a kernel must still refuse is an array it could not
read or write safely: not an ndarray, a dtype other than float32/float64, a foreign byte
order, a shape that disagrees with its partner, a read-only buffer it must write, or two
buffers that overlap. Both backends call these helpers, so a bad direct call raises the same
``TypeError``/``ValueError`` with the same message on either backend, and never crashes.
"""

from __future__ import annotations

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

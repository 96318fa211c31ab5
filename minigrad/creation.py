"""Functions that make new tensors: from data, filled with constants, ranges and random draws."""

from __future__ import annotations

from typing import Any

import numpy as np

from .conversion import DEFAULT_FLOAT
from .kernels._checks import FLOAT_DTYPES
from .random import generator
from .tensor import Tensor


def _shape(shape: tuple) -> tuple[int, ...]:
    """Accept both zeros(2, 3) and zeros((2, 3))."""
    if len(shape) == 1 and isinstance(shape[0], tuple | list):
        shape = tuple(shape[0])
    if any(not isinstance(n, int | np.integer) or n < 0 for n in shape):
        raise ValueError(f"a shape needs non-negative ints, got {shape}")
    return tuple(int(n) for n in shape)




def _dtype(dtype: Any, float_only: bool = False) -> np.dtype:
    """The dtype to create (float32 by default); raise TypeError for one minigrad cannot use.

    Tensors hold bools, ints or float32/float64: ops and kernels have no float16, complex,
    object or string paths, so such a dtype is refused here rather than deep inside an op.
    """
    if dtype is None:
        return DEFAULT_FLOAT
    dt = np.dtype(dtype)
    if dt in FLOAT_DTYPES or (not float_only and dt.kind in "biu"):
        return dt
    expected = "float32 or float64" if float_only else "bool, an integer type, float32 or float64"
    raise TypeError(f"unsupported tensor dtype {dt}; expected {expected}")


def _like_dtype(x: Any, dtype: Any) -> np.dtype:
    """An explicit dtype, else a Tensor's own, else the one dtype rule's (floats: float32)."""
    if dtype is not None:
        return _dtype(dtype)
    if isinstance(x, Tensor):
        return x.dtype
    x = np.asarray(x)
    return DEFAULT_FLOAT if x.dtype.kind == "f" else _dtype(x.dtype)


def _wrap(array: np.ndarray, requires_grad: bool) -> Tensor:
    """A tensor holding ``array`` as is (its dtype was chosen by the caller)."""
    return Tensor(array, dtype=array.dtype, requires_grad=requires_grad)


def from_numpy(array: np.ndarray, requires_grad: bool = False) -> Tensor:
    """A tensor sharing memory with ``array`` and keeping its dtype (float64 stays float64).

    Changes through either one are seen by the other. Raises ``TypeError`` for a dtype
    tensors cannot hold (float16, complex, objects) and for anything but an ndarray.
    """
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy expects a numpy.ndarray, got {type(array).__name__}")
    if array.dtype.kind == "f" and array.dtype not in FLOAT_DTYPES:
        raise TypeError(f"from_numpy: unsupported dtype {array.dtype}; expected float32 or "
                        f"float64 (use mg.tensor to convert)")
    return _wrap(array, requires_grad)


def tensor(data: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Make a tensor from data (copied). Every float (Python floats, float16/32/64 arrays)
    becomes float32 unless ``dtype`` is given; ints become int64, bools bool.

    Raises:
        TypeError: data of a kind minigrad cannot compute with (objects, strings, complex,
            float16 asked for explicitly), or ``requires_grad`` on non-float data.
        ValueError: ragged nested lists.
    """
    if dtype is not None:
        dtype = _dtype(dtype)
    t = Tensor(data, dtype=dtype, requires_grad=requires_grad)
    if t.data.dtype.kind not in "biuf":  # e.g. an object or complex ndarray passed as is
        raise TypeError(
            f"cannot make a tensor from data of dtype {t.data.dtype}; expected bools, "
            "integers or floats"
        )
    if isinstance(data, np.ndarray | Tensor) and np.shares_memory(t.data, np.asarray(data)):
        t.data = t.data.copy()
    return t


def zeros(*shape: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Zeros of a shape given as ``zeros(2, 3)`` or ``zeros((2, 3))``; float32 unless
    ``dtype`` says otherwise (bool, an integer type or float64)."""
    return _wrap(np.zeros(_shape(shape), _dtype(dtype)), requires_grad=requires_grad)


def ones(*shape: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Ones of a shape given as ``ones(2, 3)`` or ``ones((2, 3))``; float32 unless ``dtype``
    says otherwise."""
    return _wrap(np.ones(_shape(shape), _dtype(dtype)), requires_grad=requires_grad)


def full(shape: Any, fill_value: float, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """``fill_value`` everywhere; ``shape`` is an int or a tuple. float32 unless ``dtype`` says
    otherwise, even for an int ``fill_value`` (PyTorch would make int64)."""
    shape = _shape((shape,) if isinstance(shape, int) else tuple(shape))
    return _wrap(np.full(shape, fill_value, _dtype(dtype)), requires_grad=requires_grad)


def zeros_like(x: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Zeros with the shape (and, by default, the dtype) of x."""
    return _wrap(np.zeros(np.shape(x), _like_dtype(x, dtype)), requires_grad)


def ones_like(x: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Ones with the shape (and, by default, the dtype) of x."""
    return _wrap(np.ones(np.shape(x), _like_dtype(x, dtype)), requires_grad)


def randn(*shape: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples from minigrad's seeded generator."""
    data = generator().standard_normal(_shape(shape)).astype(_dtype(dtype, float_only=True))
    return _wrap(data, requires_grad=requires_grad)


def rand(*shape: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1) from minigrad's seeded generator."""
    data = generator().random(_shape(shape)).astype(_dtype(dtype, float_only=True))
    return _wrap(data, requires_grad=requires_grad)


def arange(start: float, stop: float | None = None, step: float = 1, dtype: Any = None,
           requires_grad: bool = False) -> Tensor:
    """Evenly spaced values in [start, stop); ints give int64 unless a dtype is given."""
    if step == 0:  # NumPy raises ZeroDivisionError, which does not say which argument
        raise ValueError("arange: step must not be zero")
    data = np.arange(start, stop, step) if stop is not None else np.arange(start)
    if dtype is not None:
        data = data.astype(_dtype(dtype))
    elif data.dtype.kind == "f":
        data = data.astype(DEFAULT_FLOAT)
    return _wrap(data, requires_grad=requires_grad)


def eye(n: int, m: int | None = None, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """The n x m identity matrix (m defaults to n)."""
    return _wrap(np.eye(n, m, dtype=_dtype(dtype)), requires_grad=requires_grad)

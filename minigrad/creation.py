"""Functions that make new tensors: from data, filled with constants, ranges and random draws."""

from __future__ import annotations

from typing import Any

import numpy as np

from .random import generator
from .tensor import DEFAULT_FLOAT, Tensor


def _shape(shape: tuple) -> tuple[int, ...]:
    """Accept both zeros(2, 3) and zeros((2, 3))."""
    if len(shape) == 1 and isinstance(shape[0], tuple | list):
        shape = tuple(shape[0])
    if any(not isinstance(n, int | np.integer) or n < 0 for n in shape):
        raise ValueError(f"a shape needs non-negative ints, got {shape}")
    return tuple(int(n) for n in shape)


_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _dtype(dtype: Any, float_only: bool = False) -> np.dtype:
    """The dtype to create (float32 by default); raise TypeError for one minigrad cannot use.

    Tensors hold bools, ints or float32/float64: ops and kernels have no float16, complex,
    object or string paths, so such a dtype is refused here rather than deep inside an op.
    """
    if dtype is None:
        return DEFAULT_FLOAT
    dt = np.dtype(dtype)
    if dt in _FLOAT_DTYPES or (not float_only and dt.kind in "biu"):
        return dt
    expected = "float32 or float64" if float_only else "bool, an integer type, float32 or float64"
    raise TypeError(f"unsupported tensor dtype {dt}; expected {expected}")


def _like_dtype(x: np.ndarray, dtype: Any) -> np.dtype:
    """An explicit dtype, else x's, with other floats (float16) becoming float32 as in tensor."""
    if dtype is None and x.dtype.kind == "f" and x.dtype not in _FLOAT_DTYPES:
        return DEFAULT_FLOAT
    return _dtype(x.dtype if dtype is None else dtype)


def tensor(data: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Make a tensor from data (copied). Floats default to float32; float64 arrays stay float64.

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
    """A tensor of zeros."""
    return Tensor(np.zeros(_shape(shape), _dtype(dtype)), requires_grad=requires_grad)


def ones(*shape: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor of ones."""
    return Tensor(np.ones(_shape(shape), _dtype(dtype)), requires_grad=requires_grad)


def full(shape: Any, fill_value: float, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor filled with ``fill_value``."""
    shape = _shape((shape,) if isinstance(shape, int) else tuple(shape))
    return Tensor(np.full(shape, fill_value, _dtype(dtype)), requires_grad=requires_grad)


def zeros_like(x: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Zeros with the shape (and, by default, the dtype) of x."""
    x = x.data if isinstance(x, Tensor) else np.asarray(x)
    return Tensor(np.zeros(x.shape, _like_dtype(x, dtype)), requires_grad=requires_grad)


def ones_like(x: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Ones with the shape (and, by default, the dtype) of x."""
    x = x.data if isinstance(x, Tensor) else np.asarray(x)
    return Tensor(np.ones(x.shape, _like_dtype(x, dtype)), requires_grad=requires_grad)


def randn(*shape: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples from minigrad's seeded generator."""
    data = generator().standard_normal(_shape(shape)).astype(_dtype(dtype, float_only=True))
    return Tensor(data, requires_grad=requires_grad)


def rand(*shape: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1) from minigrad's seeded generator."""
    data = generator().random(_shape(shape)).astype(_dtype(dtype, float_only=True))
    return Tensor(data, requires_grad=requires_grad)


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
    return Tensor(data, requires_grad=requires_grad)


def eye(n: int, m: int | None = None, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """The n x m identity matrix (m defaults to n)."""
    return Tensor(np.eye(n, m, dtype=_dtype(dtype)), requires_grad=requires_grad)

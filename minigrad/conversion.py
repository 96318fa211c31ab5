"""The dtype half of Tensor's methods (``astype``, ``float()``, ``argmax`` ...) and the one
dtype rule that turns user data into a tensor's array."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .ops import shape as shape_ops

if TYPE_CHECKING:
    from .tensor import Tensor

DEFAULT_FLOAT = np.dtype(np.float32)


def to_array(data: Any, dtype: Any = None) -> np.ndarray:
    """Convert user data to an ndarray following minigrad's one dtype rule.

    An explicit ``dtype`` wins. Otherwise every float (Python floats, float16/32/64 arrays)
    becomes float32, integers int64 and bools bool. Anything else (objects, complex numbers,
    strings) is a TypeError.
    """
    if isinstance(data, ConversionMixin):
        data = data._data
    if dtype is not None:
        array = np.array(data, dtype=np.dtype(dtype), copy=None)
    else:
        array = np.asarray(data)
        if array.dtype.kind == "f":
            array = array.astype(DEFAULT_FLOAT, copy=False)
        elif array.dtype.kind in "iu" and not isinstance(data, np.ndarray | np.generic):
            array = array.astype(np.int64, copy=False)  # Python ints: int64 on every platform
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"cannot make a tensor from {type(data).__name__} data of dtype {array.dtype}; "
            "expected numbers, bools or nested sequences of them"
        )
    return array


class ConversionMixin:
    """Conversions between dtypes and to Python numbers, and the arg-reductions."""

    __slots__ = ()

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def astype(self, dtype: Any) -> Tensor:
        """This tensor converted to ``dtype``; differentiable between float dtypes, cut from
        the graph for integer and bool targets (as ``.long()`` in PyTorch)."""
        dtype = _checked_dtype(dtype)
        if dtype == self._data.dtype:
            return self
        if dtype.kind != "f" or self._data.dtype.kind != "f":
            return self._from_op(self._data.astype(dtype), None)
        return shape_ops.cast(self, dtype)

    def to(self, dtype: Any) -> Tensor:
        """Same as ``astype`` (PyTorch's name)."""
        return self.astype(dtype)

    def float(self) -> Tensor:
        """This tensor as float32."""
        return self.astype(np.float32)

    def double(self) -> Tensor:
        """This tensor as float64."""
        return self.astype(np.float64)

    def argmax(self, axis: int | None = None, keepdims: bool = False, *, dim=None,
               keepdim=None) -> Tensor:
        """Index (int64) of the largest value over ``axis``, or of the flattened tensor."""
        return self._arg(np.argmax, axis if dim is None else dim,
                         keepdims if keepdim is None else keepdim)

    def argmin(self, axis: int | None = None, keepdims: bool = False, *, dim=None,
               keepdim=None) -> Tensor:
        """Index (int64) of the smallest value over ``axis``, or of the flattened tensor."""
        return self._arg(np.argmin, axis if dim is None else dim,
                         keepdims if keepdim is None else keepdim)

    def _arg(self, fn, axis, keepdims: bool) -> Tensor:
        if axis is not None and (isinstance(axis, bool) or not isinstance(axis, int | np.integer)):
            raise TypeError(f"{fn.__name__}: axis must be an int or None, got {axis!r}")
        if self._data.size == 0:
            raise ValueError(f"{fn.__name__} of an empty tensor (shape {self.shape})")
        out = fn(self._data, axis=axis, keepdims=bool(keepdims))
        return self._from_op(np.asarray(out, dtype=np.int64), None)


def _checked_dtype(dtype: Any) -> np.dtype:
    """A dtype tensors can hold (bool, integers, float32, float64), else TypeError."""
    dt = np.dtype(dtype)
    if dt.kind in "biu" or dt in (np.float32, np.float64):
        return dt
    raise TypeError(f"unsupported tensor dtype {dt}; expected bool, an integer type, float32 or "
                    "float64")

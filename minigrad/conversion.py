"""Tensor's conversions: to other dtypes (``astype``, ``float()`` ...), to Python and NumPy
objects (``item``, ``tolist``, ``repr``, ``__array__``), the arg-reductions, and the one dtype
rule that turns user data into a tensor's array."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .dlpack import DLPackMixin
from .functional import shape as shape_ops
from .kernels._checks import FLOAT_DTYPES

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


class ConversionMixin(DLPackMixin):
    """The conversion methods of Tensor (a mixin: Tensor holds the data and the state); the
    DLPack protocol comes from ``DLPackMixin``."""

    __slots__ = ()

    def item(self) -> float | int | bool:
        """Return the value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.data.item()

    def tolist(self) -> Any:
        """The values as nested lists of Python numbers (a bare number for a 0-d tensor),
        detached from any graph."""
        return self.data.tolist()

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return len(self.data)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __array__(self, dtype=None, copy=None):
        # NumPy's protocol: copy=True must copy, copy=False must not (or fail), None may share;
        # a shared array is read-only when the tensor requires grad, as .numpy() is
        if copy is False and dtype is not None and np.dtype(dtype) != self.data.dtype:
            raise ValueError(f"cannot view a {self.data.dtype} tensor as {dtype} without a copy")
        array = self.numpy() if dtype is None else self.data.astype(dtype, copy=False)
        return array.copy() if copy and np.may_share_memory(array, self.data) else array

    def __repr__(self) -> str:
        body = np.array2string(self.data, separator=", ", prefix="tensor(")
        extras = ""
        if self.data.dtype != DEFAULT_FLOAT:
            extras += f", dtype={self.data.dtype}"
        if self._ctx is not None:
            extras += f", grad_fn={self._ctx.fn.__name__}"
        elif self._requires_grad:
            extras += ", requires_grad=True"
        return f"tensor({body}{extras})"

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise ValueError(
                f"the truth value of a tensor with {self.data.size} elements is ambiguous"
            )
        return bool(self.data)

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
        """``astype(float32)``: self when already float32, else a new, differentiable tensor
        (a copy, unlike ``Module.float()``, which converts in place)."""
        return self.astype(np.float32)

    def double(self) -> Tensor:
        """``astype(float64)``: self when already float64, else a new, differentiable tensor."""
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
    if dt.kind in "biu" or dt in FLOAT_DTYPES:
        return dt
    raise TypeError(f"unsupported tensor dtype {dt}; expected bool, an integer type, float32 or "
                    "float64")

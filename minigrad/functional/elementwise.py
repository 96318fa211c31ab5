"""Elementwise arithmetic, unary math and ``where`` on Tensors: operand conversion and dtype
promotion, then one Function each (``minigrad.ops.elementwise``, ``minigrad.ops.select``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import tensor as _tensor  # read at call time: see _convert
from ..ops import elementwise as ops
from ..ops.select import Where
from ._convert import as_tensor, constant
from ._rules import check_clip_bounds

# ----------------------------------------------------------------------------- binary


def add(a: Any, b: Any):
    """a + b with broadcasting."""
    a, b = _operands(a, b)
    return ops.Add.apply(a, b)


def sub(a: Any, b: Any):
    """a - b with broadcasting."""
    a, b = _operands(a, b)
    return ops.Sub.apply(a, b)


def mul(a: Any, b: Any):
    """a * b with broadcasting."""
    a, b = _operands(a, b)
    return ops.Mul.apply(a, b)


def div(a: Any, b: Any):
    """a / b with broadcasting; dividing integers gives float32 (true division, as PyTorch)."""
    a, b = _operands(a, b)
    if a.data.dtype.kind != "f" and b.data.dtype.kind != "f":
        a = constant(a.data.astype(np.float32))
        b = constant(b.data.astype(np.float32))
    return ops.Div.apply(a, b)


def pow(a: Any, b: Any):
    """a ** b with broadcasting; a scalar exponent is the common case."""
    a, b = _operands(a, b)
    return ops.Pow.apply(a, b)


def _operands(a: Any, b: Any):
    """Both operands as Tensors; a scalar takes the other operand's float dtype.

    An integer or boolean operand meeting a float one takes the float's dtype (PyTorch's rule:
    ``int_tensor * 0.5`` is float32, where NumPy would promote to float64).
    """
    Tensor = _tensor.Tensor
    if isinstance(a, Tensor):
        b = b if isinstance(b, Tensor) else as_tensor(b, like=a)
    else:
        b = as_tensor(b)
        a = as_tensor(a, like=b)
    kind_a, kind_b = a._data.dtype.kind, b._data.dtype.kind  # the slot: this runs per op
    if kind_a != kind_b and "f" in (kind_a, kind_b):
        if kind_a != "f":
            a = constant(a.data.astype(b.data.dtype))
        elif kind_b != "f":
            b = constant(b.data.astype(a.data.dtype))
    return a, b


# ----------------------------------------------------------------------------- unary


def neg(x: Any):
    """-x."""
    return ops.Neg.apply(as_tensor(x))


def exp(x: Any):
    """Elementwise e**x."""
    return ops.Exp.apply(as_tensor(x))


def log(x: Any):
    """Elementwise natural logarithm."""
    return ops.Log.apply(as_tensor(x))


def sqrt(x: Any):
    """Elementwise square root."""
    return ops.Sqrt.apply(as_tensor(x))


def abs(x: Any):
    """Elementwise |x| (gradient sign(x), 0 at 0)."""
    return ops.Abs.apply(as_tensor(x))


def clip(x: Any, min: float | None = None, max: float | None = None):
    """Clamp x to [min, max]; either bound may be None; the gradient passes where inside."""
    check_clip_bounds(min, max)
    return ops.Clip.apply(as_tensor(x), lo=min, hi=max)


def where(cond: Any, a: Any, b: Any):
    """Elementwise ``a if cond else b``; cond must be boolean; a and b broadcast with it.

    A scalar a or b takes the other's dtype; two tensors of different float dtypes promote
    as in NumPy (float32 with float64 gives float64).
    """
    cond = as_tensor(cond)
    if cond.dtype != np.bool_:
        raise TypeError(f"where: cond must be a boolean tensor, got dtype {cond.dtype}")
    a, b = _operands(a, b)
    try:
        np.broadcast_shapes(cond.shape, a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"where: shapes {cond.shape} (cond), {a.shape} (a) and {b.shape} (b) do not "
            "broadcast together"
        ) from None
    return Where.apply(cond, a, b)

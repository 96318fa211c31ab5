"""Turning user arguments into Tensors: ``as_tensor`` and ``data_of``, shared by every wrapper."""

from __future__ import annotations

from typing import Any

import numpy as np

# tensor.py imports this package while it is still being defined, so ``from ..tensor import
# Tensor`` would fail at import time; the module reference is read at call time instead (one
# attribute lookup, the cost of the global it replaces).
from .. import tensor as _tensor


def as_tensor(x: Any, like: Any = None):
    """Return ``x`` as a Tensor; a Python or NumPy scalar takes the float dtype of ``like``.

    This is why ``float32_tensor * 2.0`` stays float32: scalars never upcast a tensor.
    """
    Tensor = _tensor.Tensor
    if isinstance(x, Tensor):
        return x
    # A float ndarray operand takes the tensor's float dtype too: float64 data meeting a
    # float64 tensor must not be rounded to float32 by the one dtype rule.
    if like is not None and (isinstance(x, np.ndarray) or np.ndim(x) == 0):
        value = np.asarray(x)
        if like._data.dtype.kind == "f" and value.dtype.kind in "biuf":
            return Tensor._from_op(value.astype(like._data.dtype), None)
        if value.dtype.kind == "f":  # a float scalar with an integer tensor: default float
            return Tensor._from_op(value.astype(np.float32), None)
    return Tensor(x)


def data_of(x: Any) -> Any:
    """The ndarray behind a Tensor, or ``x`` itself."""
    return x.data if isinstance(x, _tensor.Tensor) else x


def constant(array: np.ndarray):
    """A Tensor outside the graph wrapping ``array`` as is (no conversion, no copy)."""
    return _tensor.Tensor._from_op(array, None)

"""Differentiable ops, one ``Function`` subclass each, grouped by family.

Each family module also holds the small Tensor-level functions (``add``, ``sum``, ...) that
turn user arguments into Tensors and keyword attributes and call ``Function.apply``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import autograd


def as_tensor(x: Any, like: Any = None):
    """Return ``x`` as a Tensor; a Python or NumPy scalar takes the float dtype of ``like``.

    This is why ``float32_tensor * 2.0`` stays float32: scalars never upcast a tensor.
    """
    # autograd.Tensor is the class itself (autograd imports it at its end): a function-level
    # import here would cost about a microsecond on every op.
    Tensor = autograd.Tensor
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


def normalize_axis(axis: int, ndim: int) -> int:
    """Map a possibly negative axis into [0, ndim), raising NumPy's AxisError when out of range."""
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(axis, ndim)
    return axis % ndim

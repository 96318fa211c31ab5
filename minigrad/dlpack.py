"""DLPack exchange: ``Tensor.__dlpack__`` (through ``DLPackMixin``) and ``mg.from_dlpack``.

Both directions share memory with the other framework; nothing is copied unless asked. The
contract, as PyTorch's own ``from_dlpack``:

- What crosses is the array, never the graph: the other framework sees plain values with no
  autograd history, and ``mg.from_dlpack`` gives a leaf that does not require grad.
- Version counters are not shared. A write through the other framework is invisible to
  minigrad's counter (and a write through minigrad to theirs), exactly as a write through
  ``tensor.data``. So a tensor that requires grad is not exported (``BufferError``, the fix
  is ``.detach()`` for a deliberate alias or ``copy=True`` for a safe copy), and a value a
  graph saved for backward must not be changed from outside before ``backward()`` runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .kernels._checks import FLOAT_DTYPES

_CPU = 1  # DLPack's device type kDLCPU


class DLPackMixin:
    """The DLPack protocol methods of Tensor (a mixin: Tensor holds the data)."""

    __slots__ = ()

    def __dlpack__(self, *, stream: Any = None, max_version: tuple[int, int] | None = None,
                   dl_device: tuple[int, int] | None = None, copy: bool | None = None) -> Any:
        """A DLPack capsule of the tensor's array, sharing its memory (unless ``copy=True``).

        Called by ``torch.from_dlpack``, ``np.from_dlpack``, ``jax.dlpack.from_dlpack``...,
        not directly. A tensor that requires grad is refused (``BufferError``) unless
        ``copy=True``: the other framework could write into values a graph depends on
        without minigrad's version counter seeing it. ``t.detach()`` shares the memory on
        purpose.
        """
        if self._requires_grad and not copy:
            raise BufferError(
                "cannot export a tensor that requires grad through DLPack (writes from the "
                "other framework would bypass the version counter); use tensor.detach() to "
                "share its memory on purpose, or pass copy=True"
            )
        return self._data.__dlpack__(stream=stream, max_version=max_version,
                                     dl_device=dl_device, copy=copy)

    def __dlpack_device__(self) -> tuple[int, int]:
        """(device type, device id): always the CPU, (1, 0)."""
        return self._data.__dlpack_device__()


def from_dlpack(obj: Any, *, copy: bool | None = None) -> Any:
    """A minigrad Tensor sharing memory with ``obj``, any array with ``__dlpack__`` on the CPU
    (a PyTorch tensor, a NumPy or JAX array, a minigrad Tensor).

    The result keeps ``obj``'s dtype and does not require grad; writes through either side
    are seen by the other, but neither side's version counter or autograd graph sees the
    other's (see this module's docstring); from a minigrad Tensor the result is
    ``obj.detach()``, which shares the version counter too. ``copy=True`` copies instead;
    ``copy=False`` raises rather than copy. A PyTorch tensor with the negative bit set (a
    lazily negated view such as ``z.conj().imag``) is copied with its true values.

    Raises:
        BufferError: ``obj`` lives on another device, or refuses export (a PyTorch tensor that
            requires grad: pass ``t.detach()``).
        TypeError: a dtype minigrad tensors cannot hold (float16, bfloat16, complex).

    Example:
        >>> t = torch.arange(3.0)
        >>> x = mg.from_dlpack(t)   # no copy: t.add_(1) is seen by x
    """
    from .tensor import Tensor  # here: this module is imported while tensor.py loads

    if not hasattr(obj, "__dlpack__"):
        raise TypeError(f"from_dlpack expects an object with __dlpack__, got "
                        f"{type(obj).__name__}")
    if isinstance(obj, Tensor) and not copy and not obj.requires_grad:
        # minigrad to minigrad: share the version counter with the memory (as detach() does),
        # so a graph that saved either one sees in-place changes made through the other
        return obj.detach()
    device = obj.__dlpack_device__() if hasattr(obj, "__dlpack_device__") else (_CPU, 0)
    if device[0] != _CPU:
        raise BufferError(f"from_dlpack: minigrad computes on the CPU, the array lives on "
                          f"DLPack device {tuple(device)}; move it to the CPU first")
    obj = _resolve_negative_view(obj, copy)
    try:
        array = np.from_dlpack(obj, copy=copy)
    except (BufferError, TypeError, RuntimeError, ValueError) as exc:
        if "dtype" in str(exc):  # e.g. bfloat16, which NumPy has no dtype for
            raise TypeError(f"from_dlpack: {type(obj).__name__} of dtype "
                            f"{getattr(obj, 'dtype', '?')}: {exc}; minigrad tensors hold bool, "
                            f"integers, float32 or float64") from exc
        raise BufferError(f"from_dlpack: {type(obj).__name__} refused export: {exc}") from exc
    _check_dtype(array.dtype, "from_dlpack")
    return Tensor(array, dtype=array.dtype)


def _resolve_negative_view(obj: Any, copy: bool | None) -> Any:
    """``obj``, or a copy holding its values when it is a PyTorch tensor with the negative bit
    set (e.g. ``z.conj().imag``): PyTorch exports such a view's memory, which holds the
    values with the opposite sign, without saying so."""
    is_neg = getattr(obj, "is_neg", None)
    if not callable(is_neg) or not is_neg():
        return obj
    if copy is False:
        raise BufferError("from_dlpack: the PyTorch tensor is a negated view (is_neg()); its "
                          "memory holds the opposite values, so it cannot be shared without a "
                          "copy: pass copy=True or call .resolve_neg() first")
    return obj.resolve_neg()


def _check_dtype(dtype: np.dtype, where: str) -> None:
    if not (dtype in FLOAT_DTYPES or dtype.kind in "biu"):
        raise TypeError(f"{where}: minigrad tensors hold bool, integers, float32 or float64, "
                        f"got {dtype}; convert it first (e.g. .float() in PyTorch)")


def foreign_array(value: Any) -> np.ndarray | str:
    """The ndarray of another framework's CPU tensor (a PyTorch or JAX state-dict entry),
    through DLPack without a copy; a PyTorch tensor that requires grad is read through
    ``.detach()``. Returns the reason as a string when it cannot be read."""
    if getattr(value, "requires_grad", False) and callable(getattr(value, "detach", None)):
        value = value.detach()
    try:
        return np.from_dlpack(_resolve_negative_view(value, None))
    except (BufferError, TypeError, RuntimeError, ValueError) as exc:
        dtype = getattr(value, "dtype", None)
        kind = type(value).__name__ + (f" of dtype {dtype}" if dtype is not None else "")
        return f"{kind} that DLPack cannot read on the CPU ({exc})"

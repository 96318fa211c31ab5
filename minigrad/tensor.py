"""Tensor: an ndarray plus what autograd needs. Operators and methods call ops; no math here."""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import autograd, versions
from .conversion import ConversionMixin, to_array
from .functional import activation, linalg, reduce
from .functional import elementwise as ew
from .functional import shape as shape_ops
from .inplace import InplaceMixin
from .ops import inplace as inplace_ops
from .versions import FRESH_COUNTER

if TYPE_CHECKING:  # hooks.py imports this module
    from .hooks import RemovableHandle


class Tensor(ConversionMixin, InplaceMixin):
    """An n-dimensional array that can record the operations applied to it.

    Args:
        data: anything ``numpy.asarray`` accepts, or a Tensor.
        dtype: NumPy dtype to convert to; by default every float becomes float32 (use
            ``dtype=mg.float64`` or ``mg.from_numpy`` to keep float64).
        requires_grad: record operations so that ``backward`` fills ``.grad``; only
            floating-point tensors can require grad.

    Example:
        >>> x = Tensor([[1.0, 2.0]], requires_grad=True)
        >>> (x * x).sum().backward()
        >>> x.grad.numpy()
        array([[2., 4.]], dtype=float32)
    """

    # _counter is the version counter [version, shared, stamp] (see versions.own_counter):
    # views share their base's list, so a change through either is seen by both.
    __slots__ = ("_data", "grad", "_requires_grad", "_ctx", "_counter", "__weakref__")
    __array_priority__ = 1000  # ndarray (op) Tensor defers to Tensor's reflected operators

    def __init__(self, data: Any, dtype: Any = None, requires_grad: bool = False):
        self._data: np.ndarray = to_array(data, dtype)
        self.grad: Tensor | None = None
        self._ctx: autograd.Context | None = None
        self._counter = FRESH_COUNTER
        self._requires_grad = False
        self.requires_grad = requires_grad

    @classmethod
    def _from_op(cls, data: np.ndarray, ctx: autograd.Context | None) -> Tensor:
        """Fast internal constructor: no conversion, no checks (data is already right)."""
        t = object.__new__(Tensor)
        t._data = data
        t.grad = None
        t._ctx = ctx
        t._counter = FRESH_COUNTER
        t._requires_grad = ctx is not None
        return t

    # ----------------------------------------------------------------- attributes
    def _set_data(self, value: Any) -> None:
        self._data = value._data if isinstance(value, Tensor) else np.asarray(value)

    # The getter is a C callable: ops read .data on every call, and a Python getter would
    # cost about twice as much per read.
    data = property(
        operator.attrgetter("_data"), _set_data,
        doc="""The ndarray holding the values; assigning a Tensor stores its array.

        Changing it (``x.data[0] = 1``, ``p.data -= lr * g``) bypasses autograd: no version
        bump, no error. That is the escape hatch for updates a graph must not see.
        """)

    @property
    def _version(self) -> int:
        """How many in-place changes the data has had (shared with views of the same data)."""
        return self._counter[0]

    @_version.setter
    def _version(self, value: int) -> None:  # ``t._version += 1`` after changing t's data
        versions.mark_changed(self)
        self._counter[0] = value
    @property
    def requires_grad(self) -> bool:
        """Whether gradients flow to (and, for a leaf, accumulate in) this tensor."""
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if value and self.data.dtype.kind != "f":
            raise TypeError(
                f"only floating-point tensors can require grad, got dtype {self.data.dtype}"
            )
        if not value and self._ctx is not None:
            raise RuntimeError(
                "cannot turn off requires_grad of a non-leaf tensor; use .detach() instead"
            )
        self._requires_grad = bool(value)

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape tuple, as ``ndarray.shape``."""
        return self._data.shape

    @property
    def ndim(self) -> int:
        """Number of axes (0 for a scalar), as ``ndarray.ndim`` and PyTorch's ``dim()``."""
        return self._data.ndim

    @property
    def size(self) -> int:
        """Number of elements, as ``ndarray.size``: a property, whereas PyTorch's ``size()``
        is a method giving the shape (use ``.shape``)."""
        return self._data.size

    @property
    def dtype(self) -> np.dtype:
        """The NumPy dtype of the data."""
        return self._data.dtype

    @property
    def is_leaf(self) -> bool:
        """True for tensors not produced by a recorded op (their grads accumulate in .grad)."""
        return self._ctx is None

    @property
    def grad_fn(self) -> autograd.Context | None:
        """The graph node that produced this tensor, or None for a leaf."""
        return self._ctx

    def numpy(self) -> np.ndarray:
        """The values as an ndarray sharing memory with the tensor.

        For a tensor that requires grad the array is a read-only view: writing into it would
        change values a graph may have saved, behind the version counter's back. ``.data``
        is the writable escape hatch.
        """
        if not self._requires_grad:
            return self._data
        view = self._data.view()
        view.flags.writeable = False
        return view

    # Identity hash, as a C slot: optimizer state is keyed by tensors, and a Python
    # __hash__ would cost a function call per lookup. It must be set explicitly because
    # __eq__ is elementwise (defining __eq__ alone would make tensors unhashable).
    __hash__ = object.__hash__

    # ----------------------------------------------------------------- autograd
    def backward(self, grad: Any = None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into ``.grad`` of every leaf that requires grad.

        Args:
            grad: d(loss)/d(self), with self's shape. May be omitted only for a one-element
                tensor (it is then 1).
            retain_graph: keep saved arrays so that backward can run through the graph again.
        """
        if not self._requires_grad:
            raise RuntimeError(
                "backward() on a tensor that does not require grad: no input of the "
                "computation had requires_grad=True (or it ran under no_grad())"
            )
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() without a gradient needs a scalar (one-element) tensor, got "
                    f"shape {self.shape}; pass grad= with that shape"
                )
            seed = np.empty(self.data.shape, self.data.dtype)
            seed.fill(1)  # cheaper than np.ones, which is a Python-level wrapper
        else:
            seed = np.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=self.dtype)
            if seed.shape != self.shape:
                raise ValueError(
                    f"backward() gradient has shape {seed.shape}, expected the tensor's shape "
                    f"{self.shape}"
                )
        autograd.run_backward(self, seed, retain_graph=retain_graph)

    def register_hook(self, hook: Callable[[Tensor], Tensor | None]) -> RemovableHandle:
        """Call ``hook(grad)`` whenever backward computes this tensor's gradient; a returned
        Tensor (same shape and dtype) replaces the gradient. ``grad`` is read-only.

        On a leaf the hook sees the gradient summed over the leaf's uses, before it is added
        to ``.grad``; on a non-leaf, before it flows on to the tensor's inputs. Hooks run in
        registration order. Returns a handle whose ``remove()`` unregisters the hook.
        """
        from . import hooks

        return hooks.register_tensor_hook(self, hook)

    def retain_grad(self) -> None:
        """Make backward fill ``.grad`` of this non-leaf tensor too (after its hooks ran),
        accumulating like a leaf's. Nothing to do on a leaf."""
        from . import hooks

        hooks.retain_grad(self)

    @property
    def retains_grad(self) -> bool:
        """True when ``retain_grad()`` was called on this non-leaf tensor."""
        from . import hooks

        return hooks.retains_grad(self)

    def detach(self) -> Tensor:
        """A new leaf sharing this tensor's data (and version counter), cut from the graph."""
        t = Tensor._from_op(self._data, None)
        counter = t._counter = versions.own_counter(self)
        counter[1] = True
        return t

    def clone(self) -> Tensor:
        """A copy with its own memory that stays in the graph (the gradient passes through)."""
        return inplace_ops.Clone.apply(self)

    def zero_grad(self) -> None:
        """Forget the accumulated gradient (sets ``.grad`` to None)."""
        self.grad = None

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Set ``requires_grad`` in place and return self."""
        self.requires_grad = requires_grad
        return self

    # ----------------------------------------------------------------- arithmetic
    def __add__(self, other: Any) -> Tensor:
        return ew.add(self, other)

    def __radd__(self, other: Any) -> Tensor:
        return ew.add(other, self)

    def __sub__(self, other: Any) -> Tensor:
        return ew.sub(self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return ew.sub(other, self)

    def __mul__(self, other: Any) -> Tensor:
        return ew.mul(self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return ew.mul(other, self)

    def __truediv__(self, other: Any) -> Tensor:
        return ew.div(self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return ew.div(other, self)

    def __pow__(self, other: Any) -> Tensor:
        return ew.pow(self, other)

    def __rpow__(self, other: Any) -> Tensor:
        return ew.pow(other, self)

    def __matmul__(self, other: Any) -> Tensor:
        return linalg.matmul(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return linalg.matmul(other, self)

    def __neg__(self) -> Tensor:
        return ew.neg(self)

    def __pos__(self) -> Tensor:
        return self

    # comparisons: plain boolean tensors, outside the graph
    def __eq__(self, other: Any) -> Tensor:  # type: ignore[override]
        return Tensor._from_op(np.equal(self.data, _data(other)), None)

    def __ne__(self, other: Any) -> Tensor:  # type: ignore[override]
        return Tensor._from_op(np.not_equal(self.data, _data(other)), None)

    def __lt__(self, other: Any) -> Tensor:
        return Tensor._from_op(np.less(self.data, _data(other)), None)

    def __le__(self, other: Any) -> Tensor:
        return Tensor._from_op(np.less_equal(self.data, _data(other)), None)

    def __gt__(self, other: Any) -> Tensor:
        return Tensor._from_op(np.greater(self.data, _data(other)), None)

    def __ge__(self, other: Any) -> Tensor:
        return Tensor._from_op(np.greater_equal(self.data, _data(other)), None)

    # ----------------------------------------------------------------- elementwise
    def exp(self) -> Tensor:
        """Elementwise e**x."""
        return ew.exp(self)

    def log(self) -> Tensor:
        """Elementwise natural logarithm."""
        return ew.log(self)

    def sqrt(self) -> Tensor:
        """Elementwise square root."""
        return ew.sqrt(self)

    def abs(self) -> Tensor:
        """Elementwise absolute value (gradient sign(x), 0 at 0)."""
        return ew.abs(self)

    __abs__ = abs

    def tanh(self) -> Tensor:
        """Elementwise hyperbolic tangent."""
        return activation.tanh(self)

    def sigmoid(self) -> Tensor:
        """Elementwise logistic sigmoid 1 / (1 + e**-x)."""
        return activation.sigmoid(self)

    def relu(self) -> Tensor:
        """Elementwise max(x, 0) (gradient 0 at 0)."""
        return activation.relu(self)

    def clip(self, min: float | None = None, max: float | None = None) -> Tensor:
        """Clamp to [min, max]; the gradient passes where min <= x <= max."""
        return ew.clip(self, min, max)

    clamp = clip

    # ----------------------------------------------------------------- shape
    def reshape(self, *shape: int | Sequence[int]) -> Tensor:
        """Same data viewed with a new shape (one dimension may be -1)."""
        return shape_ops.reshape(self, _shape_args(shape))

    view = reshape

    def transpose(self, axis0: int = -2, axis1: int = -1) -> Tensor:
        """Swap two axes (by default the last two, as for matrices)."""
        return shape_ops.transpose(self, axis0, axis1)

    @property
    def T(self) -> Tensor:
        """All axes reversed, as ``ndarray.T``."""
        return shape_ops.permute(self, tuple(range(self.ndim - 1, -1, -1)))

    def permute(self, *axes: int | Sequence[int]) -> Tensor:
        """Reorder the axes: ``x.permute(2, 0, 1)``."""
        return shape_ops.permute(self, _shape_args(axes))

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        """Merge dims start_dim..end_dim into one."""
        return shape_ops.flatten(self, start_dim, end_dim)

    def squeeze(self, axis: int | Sequence[int] | None = None, *, dim=None) -> Tensor:
        """Drop size-1 axes (all of them, or the given ones)."""
        return shape_ops.squeeze(self, axis if dim is None else dim)

    def unsqueeze(self, axis: int | None = None, *, dim=None) -> Tensor:
        """Insert a size-1 axis at ``axis``."""
        return shape_ops.unsqueeze(self, axis if dim is None else dim)

    def __getitem__(self, index: Any) -> Tensor:
        return shape_ops.getitem(self, index)

    # ----------------------------------------------------------------- reductions
    def sum(self, axis=None, keepdims: bool = False, *, dim=None, keepdim=None) -> Tensor:
        """Sum over ``axis`` (int, tuple or None for all)."""
        return reduce.sum(self, **reduce.axis_args(axis, keepdims, dim, keepdim))

    def mean(self, axis=None, keepdims: bool = False, *, dim=None, keepdim=None) -> Tensor:
        """Arithmetic mean over ``axis``."""
        return reduce.mean(self, **reduce.axis_args(axis, keepdims, dim, keepdim))

    def var(self, axis=None, keepdims: bool = False, *, correction: int = 0, dim=None,
            keepdim=None) -> Tensor:
        """Variance over ``axis``: sum((x - mean)**2) / (n - correction); biased by default."""
        args = reduce.axis_args(axis, keepdims, dim, keepdim)
        return reduce.var(self, correction=correction, **args)

    def std(self, axis=None, keepdims: bool = False, *, correction: int = 0, dim=None,
            keepdim=None) -> Tensor:
        """Standard deviation: sqrt of ``var`` with the same arguments."""
        args = reduce.axis_args(axis, keepdims, dim, keepdim)
        return reduce.std(self, correction=correction, **args)

    def max(self, axis=None, keepdims: bool = False, *, dim=None, keepdim=None) -> Tensor:
        """Maximum over ``axis``; the gradient goes to the first maximal element."""
        return reduce.max(self, **reduce.axis_args(axis, keepdims, dim, keepdim))

    def min(self, axis=None, keepdims: bool = False, *, dim=None, keepdim=None) -> Tensor:
        """Minimum over ``axis``; the gradient goes to the first minimal element."""
        return reduce.min(self, **reduce.axis_args(axis, keepdims, dim, keepdim))

    def logsumexp(self, axis=None, keepdims: bool = False, *, dim=None, keepdim=None) -> Tensor:
        """log(sum(exp(x))) over ``axis``, computed stably."""
        return reduce.logsumexp(self, **reduce.axis_args(axis, keepdims, dim, keepdim))

    def softmax(self, axis: int = -1, *, dim: int | None = None) -> Tensor:
        """exp(x) / sum(exp(x)) along one axis."""
        return reduce.softmax(self, axis=axis if dim is None else dim)

    def log_softmax(self, axis: int = -1, *, dim: int | None = None) -> Tensor:
        """x - logsumexp(x) along one axis."""
        return reduce.log_softmax(self, axis=axis if dim is None else dim)



def _data(x: Any) -> Any:
    """The ndarray behind a Tensor, or x itself (for comparisons)."""
    return x.data if isinstance(x, Tensor) else x


def _shape_args(args: tuple) -> tuple[int, ...]:
    """Accept both f(2, 3) and f((2, 3))."""
    if len(args) == 1 and isinstance(args[0], Sequence | np.ndarray):
        return tuple(int(a) for a in args[0])
    return tuple(int(a) for a in args)

"""Tensor: an ndarray plus what autograd needs. Operators and methods call ops; no math here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import autograd
from .functional import activation, linalg, reduce
from .functional import elementwise as ew
from .functional import shape as shape_ops

_FLOAT_DTYPES = (np.float32, np.float64)
DEFAULT_FLOAT = np.dtype(np.float32)


def _to_array(data: Any, dtype: Any = None) -> np.ndarray:
    """Convert user data to an ndarray following minigrad's dtype rules.

    An explicit ``dtype`` wins. Otherwise Python numbers and lists of floats become float32,
    NumPy float64 data stays float64, float16 becomes float32, ints and bools keep their kind.
    Anything else (objects, complex numbers, strings) is a TypeError.
    """
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        array = np.array(data, dtype=np.dtype(dtype), copy=None)
    elif isinstance(data, np.ndarray | np.generic):
        array = np.asarray(data)
        if array.dtype.kind == "f" and array.dtype not in _FLOAT_DTYPES:
            array = array.astype(DEFAULT_FLOAT)
    else:
        array = np.asarray(data)
        if array.dtype.kind == "f":
            array = array.astype(DEFAULT_FLOAT)
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"cannot make a tensor from {type(data).__name__} data of dtype {array.dtype}; "
            "expected numbers, bools or nested sequences of them"
        )
    return array


class Tensor:
    """An n-dimensional array that can record the operations applied to it.

    Args:
        data: anything ``numpy.asarray`` accepts, or a Tensor.
        dtype: NumPy dtype to convert to; by default floats become float32 (float64
            ndarrays stay float64).
        requires_grad: record operations so that ``backward`` fills ``.grad``; only
            floating-point tensors can require grad.

    Example:
        >>> x = Tensor([[1.0, 2.0]], requires_grad=True)
        >>> (x * x).sum().backward()
        >>> x.grad.numpy()
        array([[2., 4.]], dtype=float32)
    """

    # _version counts in-place changes of the data (see autograd: saved inputs are checked)
    __slots__ = ("data", "grad", "_requires_grad", "_ctx", "_version", "__weakref__")
    __array_priority__ = 1000  # ndarray (op) Tensor defers to Tensor's reflected operators

    def __init__(self, data: Any, dtype: Any = None, requires_grad: bool = False):
        self.data: np.ndarray = _to_array(data, dtype)
        self.grad: Tensor | None = None
        self._ctx: autograd.Context | None = None
        self._version = 0
        self._requires_grad = False
        self.requires_grad = requires_grad

    @classmethod
    def _from_op(cls, data: np.ndarray, ctx: autograd.Context | None) -> Tensor:
        """Fast internal constructor: no conversion, no checks (data is already right)."""
        t = object.__new__(Tensor)
        t.data = data
        t.grad = None
        t._ctx = ctx
        t._version = 0
        t._requires_grad = ctx is not None
        return t

    # ----------------------------------------------------------------- attributes
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
        return self.data.shape

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return self.data.ndim

    @property
    def size(self) -> int:
        """Number of elements."""
        return self.data.size

    @property
    def dtype(self) -> np.dtype:
        """The NumPy dtype of the data."""
        return self.data.dtype

    @property
    def is_leaf(self) -> bool:
        """True for tensors not produced by a recorded op (their grads accumulate in .grad)."""
        return self._ctx is None

    @property
    def grad_fn(self) -> autograd.Context | None:
        """The graph node that produced this tensor, or None for a leaf."""
        return self._ctx

    def numpy(self) -> np.ndarray:
        """Return the underlying ndarray (shared, not copied)."""
        return self.data

    def item(self) -> float | int | bool:
        """Return the value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.data.item()

    def tolist(self) -> Any:
        """Return the data as nested Python lists."""
        return self.data.tolist()

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return len(self.data)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __array__(self, dtype=None, copy=None):
        # NumPy's protocol: copy=True must copy, copy=False must not (or fail), None may share
        if copy is False and dtype is not None and np.dtype(dtype) != self.data.dtype:
            raise ValueError(f"cannot view a {self.data.dtype} tensor as {dtype} without a copy")
        array = self.data if dtype is None else self.data.astype(dtype, copy=False)
        return array.copy() if copy and array is self.data else array

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

    def __hash__(self) -> int:
        return id(self)

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

    def detach(self) -> Tensor:
        """A new leaf sharing this tensor's data, cut from the graph."""
        return Tensor._from_op(self.data, None)

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


autograd.Tensor = Tensor  # the spine's constructor for op outputs

"""The autograd spine: Function and its Context, and the iterative backward pass.

Every differentiable op is a ``Function`` subclass with two static methods working on ndarrays:
``forward(ctx, *arrays, **attrs) -> ndarray`` and ``backward(ctx, grad) -> one gradient per
array input`` (``None`` for inputs that need none). ``Function.apply`` wraps the result in a
Tensor that remembers its Context; ``backward`` walks those Contexts in reverse topological
order. No math lives here; grad mode is in grad_mode.py, the version counter in versions.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .grad_mode import _check_finite, _modes
from .versions import _clock, own_counter


class Context:
    """What one graph node remembers between its forward and its backward.

    ``fn`` is the Function class, ``inputs`` the parent Tensors, ``needs_input_grad`` which of
    them want a gradient, and ``saved`` the ndarrays kept by ``save_for_backward``. Functions
    may also set small non-array attributes (an axis, a shape) directly on the context.

    For the in-place checks it also keeps ``epoch`` (the in-place clock when the forward ran),
    ``out`` (the output array) and ``out_counter`` (the output's version counter).
    """

    # Slots for the fields the engine reads on every node (faster than a dict lookup); the
    # __dict__ slot still lets a Function store its own attributes.
    __slots__ = ("fn", "inputs", "needs_input_grad", "saved", "epoch", "out", "out_counter",
                 "__dict__", "__weakref__")

    def __init__(self, fn: type[Function], inputs: tuple[Tensor, ...],
                 needs_input_grad: tuple[bool, ...]):
        self.fn = fn
        self.inputs = inputs
        self.needs_input_grad = needs_input_grad
        self.saved: tuple[np.ndarray, ...] | None = ()
        self.epoch = _clock[0]

    def save_for_backward(self, *arrays: Any) -> None:
        """Keep ndarrays (never Tensors, so that no reference cycle holds a graph alive)."""
        self.saved = arrays

    def __repr__(self) -> str:
        return f"<{self.fn.__name__} node>"


class _ForwardOnly:
    """The context a forward gets when no graph is recorded: it keeps nothing."""

    needs_input_grad = ()

    def save_for_backward(self, *arrays: Any) -> None:
        pass


class Function:
    """Base class of every differentiable op. Subclasses define ``forward`` and ``backward``."""

    @staticmethod
    def forward(ctx: Context, *arrays: np.ndarray, **attrs: Any) -> np.ndarray:
        """The output ndarray from the inputs' ndarrays (never Tensors); keep what backward
        needs with ``ctx.save_for_backward`` and plain attributes on ``ctx``."""
        raise NotImplementedError

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> Any:
        """d(loss)/d(input) for each array input, given ``grad`` = d(loss)/d(output): a tuple
        in input order, or one array for one input; None where no gradient is needed."""
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs: Tensor, **attrs: Any) -> Tensor:
        """Run ``forward`` on the inputs' arrays and record a graph node when one is needed.

        This runs for every op, so it does only what it must: under ``no_grad`` it does not
        even look at ``requires_grad``, and it builds a Context only when some input needs a
        gradient.
        """
        ctx = None
        if _modes.grad_enabled:
            needs = tuple([t._requires_grad for t in inputs])
            if True in needs:
                ctx = Context(cls, inputs, needs)
        out = cls.forward(ctx or _ForwardOnly(), *[t._data for t in inputs], **attrs)
        if type(out) is not np.ndarray:  # NumPy returns scalars from 0-d arithmetic
            out = np.asarray(out)
        if _modes.anomaly:
            _check_finite(cls, (out,), inputs, "forward")
        result = Tensor._from_op(out, ctx)
        if out.base is not None:  # a view (reshape, slice): share the viewed input's counter
            _share_counter(result, inputs)
        if ctx is not None:
            ctx.out, ctx.out_counter = out, result._counter
        return result


def _share_counter(view: Tensor, inputs: tuple[Tensor, ...]) -> None:
    """Give ``view`` the version counter of the input whose memory it views, so that an
    in-place change through either one is seen by every node that saved the other."""
    base = view._data.base
    for t in inputs:
        data = t._data
        if data is base or (data.base is not None and data.base is base):
            counter = own_counter(t)
            counter[1] = True  # shared: in-place ops on it can no longer be recorded
            view._counter = counter
            return


# ------------------------------------------------------------ the interception point
# Everything that watches or changes the engine at work (tensor and module hooks, the
# profiler, trace_backward) goes through these two registries; hooks.py holds the code.
# ``watched`` maps id(tensor or node) to the hooks registered on it, for as long as that object
# lives; ``observers`` lists the objects told about every op's forward and backward. While both
# are empty, backward above is the plain walk (two truth tests per call) and Function.apply the
# plain method (hooks.observe swaps it only while an observer is registered): nothing per op.
watched: dict[int, Any] = {}
observers: list[Any] = []


# exercise: unbroadcast
def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``grad`` down to ``shape``, undoing NumPy broadcasting (the adjoint of broadcast_to).
    A gradient with fewer dims gets back the leading 1s NumPy dropped from its input (as
    ``x[0] = v`` does to a ``v`` of shape (1, n))."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    elif extra < 0:
        grad = grad.reshape((1,) * -extra + grad.shape)
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    if grad.shape != shape:  # a size that differs and is not 1: not a broadcast of the input
        raise ValueError(f"a gradient of shape {grad.shape} cannot belong to an input of "
                         f"shape {shape}")
    return grad


# exercise: engine_order
def _consumer_counts(root: Context) -> dict[Context, int]:
    """For every node reachable from root: how many graph edges point into it (its uses).

    An iterative depth-first walk, so that graphs of any depth work without recursion.
    """
    counts: dict[Context, int] = {}
    stack = [root]
    clock = _clock[0]
    while stack:
        node = stack.pop()
        stale = node.epoch != clock
        for parent in node.inputs:
            parent_node = parent._ctx
            if parent_node is None:
                continue
            if stale and parent._counter[2] > node.epoch:
                parent_node = _node_at(parent, node.epoch)
                if parent_node is None:
                    continue
            if parent_node in counts:
                counts[parent_node] += 1
            else:
                counts[parent_node] = 1
                stack.append(parent_node)
    return counts


# exercise: engine_backward
def run_backward(root: Tensor, grad: np.ndarray, retain_graph: bool = False) -> None:
    """Propagate ``grad`` (d loss / d root) to every leaf of root's graph that requires grad.

    A node runs once every node that used its output has passed its gradient back (Kahn's
    algorithm on the counts of uses), so gradients of tensors used twice are summed first.
    Leaves accumulate into ``.grad``; unless ``retain_graph``, saved arrays are released.
    """
    if watched or observers:  # a hook or an observer is registered: the observed walk
        from ._observed import run_observed_backward

        return run_observed_backward(root, grad, retain_graph)
    if root._ctx is None:  # a leaf: its gradient is the seed itself
        _accumulate_leaf(root, grad, {id(grad)})  # the caller's array is never stored
        return
    remaining_uses = _consumer_counts(root._ctx)
    pending: dict[Context, np.ndarray] = {root._ctx: grad}
    handed_out: set[int] = {id(grad)}  # arrays a leaf must copy before owning
    ready, clock = [root._ctx], _clock[0]
    while ready:
        node = ready.pop()
        grad_out = pending.pop(node, None)
        stale = node.epoch != clock  # some tensor was changed in place since its forward
        input_grads: Any = ()
        if grad_out is not None:  # (the steps of one node are inline: this loop is hot)
            if node.saved is None:
                _raise_released(node)
            if stale and node.saved:
                _check_saved(node)
            input_grads = node.fn.backward(node, grad_out)
            if type(input_grads) is not tuple:
                input_grads = (input_grads,)
            if _modes.anomaly:
                _check_finite(node.fn, input_grads, node.inputs, "backward")
            if not retain_graph:
                node.saved = None
        n_grads = len(input_grads)  # may be fewer than inputs (trailing ones all None)
        for i, (parent, needed) in enumerate(zip(node.inputs, node.needs_input_grad, strict=True)):
            g = input_grads[i] if needed and i < n_grads else None
            if g is not None and (g.shape != parent._data.shape or g.dtype != parent._data.dtype):
                g = _fit(g, parent._data)
            parent_node = parent._ctx
            if stale and parent_node is not None and parent._counter[2] > node.epoch:
                parent_node = _node_at(parent, node.epoch)
            if parent_node is None:
                if g is not None:
                    _accumulate_leaf(parent, g, handed_out)
                continue
            if g is not None:
                previous = pending.get(parent_node)
                pending[parent_node] = g if previous is None else previous + g
            uses = remaining_uses[parent_node] - 1
            remaining_uses[parent_node] = uses
            if uses == 0:
                ready.append(parent_node)


def _raise_released(node: Context) -> None:
    raise RuntimeError(
        f"backward through {node.fn.__name__} a second time: its saved arrays were released "
        "after the first backward; pass retain_graph=True to the first call"
    )


def _fit(g: np.ndarray, data: np.ndarray) -> np.ndarray:
    """A gradient summed back to its input's shape (undoing broadcasting), in its dtype."""
    if g.shape != data.shape:
        g = unbroadcast(g, data.shape)
    return g.astype(data.dtype) if g.dtype != data.dtype else g


def _node_at(t: Tensor, epoch: int) -> Context | None:
    """The node that produced ``t`` as a consumer whose forward ran at ``epoch`` saw it.

    A recorded in-place op on ``t`` made ``t._ctx`` a newer node whose first input holds the
    node before it; a consumer that ran earlier must reach the older one, exactly as if the
    in-place op had been written ``t = op(t)``.
    """
    node = t._ctx
    while node is not None and node.__dict__.get("inplace_epoch", -1) > epoch:
        node = node.inputs[0]._ctx
    return node


def _check_saved(node: Context) -> None:
    """Raise if an array this node saved was changed in place since its forward.

    Runs only for nodes that saved arrays and only when the in-place clock moved since their
    forward. A changed input (or output) is an error only if a saved array shares its memory:
    an op that saved nothing of it (``a + b`` saves nothing) still runs, as in PyTorch.
    """
    for i, t in enumerate(node.inputs):
        if t._counter[2] > node.epoch and _saves_memory_of(node, t._data):
            _raise_modified(node, f"input {i}", t)
    if node.out_counter[2] > node.epoch and _saves_memory_of(node, node.out):
        _raise_modified(node, "the output", node.out, node.out_counter[0])


def _saves_memory_of(node: Context, array: np.ndarray) -> bool:
    return any(isinstance(s, np.ndarray) and np.may_share_memory(s, array)
               for s in node.saved)


def _raise_modified(node: Context, which: str, t: Any, version: int | None = None):
    array = t._data if version is None else t
    version = t._counter[0] if version is None else version
    raise RuntimeError(
        f"one of the variables needed for gradient computation has been modified by an "
        f"in-place operation: {which} of {node.fn.__name__} (a {array.dtype} tensor of shape "
        f"{array.shape}) is at version {version}, changed after {node.fn.__name__} ran. Clone "
        f"it before changing it in place, or change it after backward()"
    )


def _accumulate_leaf(leaf: Tensor, g: np.ndarray, handed_out: set[int]) -> None:
    """Add ``g`` into ``leaf.grad``; the stored array is always one the leaf owns alone."""
    if not leaf._requires_grad:
        return
    if leaf.grad is None:
        if type(g) is not np.ndarray:  # a NumPy scalar from a 0-d computation
            g = np.array(g)
        elif id(g) in handed_out or g.base is not None or not g.flags.writeable:
            g = g.copy()
        handed_out.add(id(g))
        leaf.grad = Tensor._from_op(g, None)
    else:
        leaf.grad._data = np.asarray(leaf.grad._data + g)


# tensor.py defines Tensor before it imports this module, and this module needs the class
# only when ops run: importing it last breaks the cycle whichever module is imported first.
from .tensor import Tensor  # noqa: E402

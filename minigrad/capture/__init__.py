"""``mg.compile``: record a function's kernel calls once, replay them without the engine.

The first call of ``step = mg.compile(fn)`` with given argument shapes runs ``fn`` eagerly
and records what it does at the level where arrays are computed: each op's forward and
backward, the sums of the backward pass, the accumulation into ``.grad``, the optimizer and
scheduler calls. Later calls with the same shapes, dtypes and structure run that record as
one generated Python function over plain arrays (``_replay``), bit for bit what eager code
computes. What a replay could not repeat is detected while recording (``_record``) or
before each replay (the guards of ``_sources``); the call then runs eagerly, with a
``CompileWarning`` that says why. docs/compile.md lists what is and is not replayed.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from ..autograd import _modes, observers
from ..tensor import Tensor
from ._record import record
from ._replay import _BUSY, Replay
from ._sources import Unreplayable

__all__ = ["compile", "Compiled", "CompileWarning"]


class CompileWarning(UserWarning):
    """A compiled function ran eagerly (or recorded again); the message says why."""


def _arg_key(a: Any) -> Any:
    """What of one argument a replay depends on: shape, layout and dtype of arrays, the
    value of plain Python values, the identity of anything else."""
    if isinstance(a, Tensor):  # strides: eager code may copy another layout first
        data = a._data
        return (Tensor, data.shape, data.strides, data.dtype.str, a._requires_grad,
                a._ctx is None)
    if isinstance(a, np.ndarray):
        return (np.ndarray, a.shape, a.strides, a.dtype.str)
    if a is None or type(a) in (bool, int, float, str):
        return (type(a), a)
    if type(a) in (tuple, list):  # tensors inside are read as the very objects recorded
        return (type(a), tuple(map(_inner_key, a)))
    if type(a) is dict:
        return (dict, tuple((k, _inner_key(v)) for k, v in a.items()))
    return (object, id(a))


def _inner_key(a: Any) -> Any:
    """The key of a container's element: its identity too, when it holds data."""
    if isinstance(a, (Tensor, np.ndarray)) or type(a) in (tuple, list, dict):
        return (id(a), _arg_key(a))
    return _arg_key(a)


class Compiled:
    """A function wrapped by ``mg.compile``: call it as the function itself.

    ``recordings``, ``replays`` and ``eager_calls`` count what happened so far;
    ``last_reason`` is why the last eager call was not replayed. ``source(args)`` shows the
    generated replay for arguments like ``args`` (for reading and debugging).
    """

    def __init__(self, fn: Callable[..., Any], max_recordings: int = 8):
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.max_recordings = max_recordings
        # signature -> its replays, or the reason why calls with it always run eagerly
        self._plans: dict[tuple, list[Replay] | str] = {}
        self._warned: set[str] = set()
        self.recordings = self.replays = self.eager_calls = 0
        self.last_reason: str | None = None

    def _key(self, args: tuple, kwargs: dict) -> tuple:
        key = tuple(map(_arg_key, args))
        if len(args) > 1:
            ids = [id(a) for a in args if isinstance(a, (Tensor, np.ndarray))]
            if len(set(ids)) != len(ids):  # one object passed twice: another recording
                key += (tuple(ids.index(i) for i in ids),)
        if kwargs:
            key += tuple(sorted((k, _arg_key(v)) for k, v in kwargs.items()))
        return key + (_modes.grad_enabled,)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if _modes.anomaly or observers:  # they watch every op: eager work
            return self._eager_call("detect_anomaly or an op observer (profiler) is on",
                                    args, kwargs, warn=False)
        if kwargs and any(isinstance(v, (Tensor, np.ndarray)) for v in kwargs.values()):
            return self._eager_call("tensors passed as keyword arguments are not replayed",
                                    args, kwargs)
        key = self._key(args, kwargs)
        entry = self._plans.get(key)  # the replays of this signature, or why it is eager
        if entry is None:
            return self._record(key, args, kwargs)
        if type(entry) is str:
            return self._eager_call(entry, args, kwargs, warn=False)
        for replay in entry:
            reason = replay.broken(args)
            if reason is None:
                result = replay(args)
                if result is _BUSY:
                    return self._eager_call("replayed by another thread right now", args,
                                            kwargs, warn=False)
                self.replays += 1
                return result
        self._warn(f"recording again: {reason}")
        if len(entry) >= self.max_recordings:
            self._plans[key] = f"recorded {len(entry)} times for these arguments"
            return self._eager_call(self._plans[key], args, kwargs)
        return self._record(key, args, kwargs)

    def _record(self, key: tuple, args: tuple, kwargs: dict) -> Any:
        rec, result = record(self.fn, args, kwargs)
        if rec is None:  # another recording was in progress (a nested compiled call)
            self.eager_calls += 1
            return result
        self.recordings += 1
        problem = rec.problem
        if problem is None:
            try:
                replay = Replay(rec, result, tuple(args) + tuple(kwargs.values()))
            except Unreplayable as exc:
                problem = str(exc)
        if problem is not None:
            self._plans[key] = problem
            self.last_reason = problem
            self._warn(f"running eagerly: {problem}")
            return result
        self._plans.setdefault(key, []).append(replay)
        return result

    def _eager_call(self, reason: str, args: tuple, kwargs: dict, warn: bool = True) -> Any:
        self.eager_calls += 1
        self.last_reason = reason
        if warn:
            self._warn(f"running eagerly: {reason}")
        return self.fn(*args, **kwargs)

    def _warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            name = getattr(self.fn, "__qualname__", repr(self.fn))
            warnings.warn(f"mg.compile({name}): {message}", CompileWarning, stacklevel=4)

    def source(self, *args: Any, **kwargs: Any) -> str | None:
        """The generated replay for arguments shaped like these, once recorded (else None)."""
        replays = self._plans.get(self._key(args, kwargs))
        return replays[-1].source if isinstance(replays, list) else None

    def __repr__(self) -> str:
        return (f"<compiled {getattr(self.fn, '__qualname__', self.fn)}: "
                f"{self.recordings} recordings, {self.replays} replays, "
                f"{self.eager_calls} eager calls>")


def compile(fn: Callable[..., Any] | None = None, *,  # noqa: A001 -- PyTorch's name
            max_recordings: int = 8) -> Any:
    """Record ``fn``'s kernel calls on its first call and replay them on later calls.

    ``step = mg.compile(fn)`` or ``@mg.compile``. The first call with given argument shapes
    and dtypes (and grad mode) runs ``fn`` eagerly and records it; later such calls replay
    the record on plain arrays (no Tensor, Context or graph per op), with the same results
    bit for bit: parameters, gradients, running statistics, optimizer state and the random
    draws of dropout. Learning rates, step counts, parameter values and the inputs are read
    afresh at every call.

    A call runs eagerly, with a ``CompileWarning`` naming the reason, when ``fn`` reads
    tensor values in Python (``item()``, ``numpy()``, ``bool(t)``, comparisons ...), draws
    random numbers outside minigrad's ops, changes tensors in place, returns a tensor whose
    backward it did not run, or uses hooks. It records again (and warns) when a module was
    switched between train and eval, a parameter or module was replaced, a tensor it reads
    changed shape or dtype, or a variable it closes over was rebound; after
    ``max_recordings`` recordings for one argument signature it stays eager.

    Python numbers computed inside ``fn`` (not passed as arguments nor read through its
    closure) are constants of the recording, as in ``jax.jit``. Tensors returned by a replay
    are new tensors outside any graph. See docs/compile.md.

    Example:
        >>> @mg.compile
        ... def train_step(x, y):
        ...     opt.zero_grad()
        ...     loss = F.cross_entropy(model(x), y)
        ...     loss.backward()
        ...     opt.step()
        ...     return loss
    """
    if fn is None:
        return functools.partial(compile, max_recordings=max_recordings)
    return Compiled(fn, max_recordings)

"""Grad mode and anomaly mode: whether ops record the graph, and whether they check for NaN/inf.

Both are per Python thread (``_modes``): ``no_grad()`` in one thread does not stop another
thread from recording its graph. ``Function.apply`` and the backward walk read ``_modes``.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import numpy as np


class _Modes(threading.local):
    """Grad mode and anomaly mode, one pair per Python thread: ``no_grad()`` in one thread
    does not stop another thread from recording its graph."""

    grad_enabled = True
    anomaly = False


_modes = _Modes()


def is_grad_enabled() -> bool:
    """True when ops record the graph (the default); False inside ``no_grad()``."""
    return _modes.grad_enabled


class _GradMode:
    """Context manager and decorator that sets grad mode for its block and restores it."""

    enabled: bool

    def __enter__(self) -> None:
        self._previous = _modes.grad_enabled
        _modes.grad_enabled = self.enabled

    def __exit__(self, *exc_info: object) -> None:
        _modes.grad_enabled = self._previous

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self.__class__():
                return fn(*args, **kwargs)

        return wrapper


class no_grad(_GradMode):
    """Disable graph recording: ``with mg.no_grad(): ...`` or ``@mg.no_grad()``."""

    enabled = False


class enable_grad(_GradMode):
    """Re-enable graph recording inside a ``no_grad`` block."""

    enabled = True


class detect_anomaly:
    """Debugging aid: raise at the first op whose forward or backward yields NaN or inf.

    ``with mg.detect_anomaly(): loss = model(x); loss.backward()`` stops with a
    ``FloatingPointError`` naming the op and its input shapes. It checks every array an op
    produces, so use it to find a bug, not while training for speed.
    """

    def __enter__(self) -> None:
        self._previous = _modes.anomaly
        _modes.anomaly = True

    def __exit__(self, *exc_info: object) -> None:
        _modes.anomaly = self._previous


def _check_finite(fn: type, arrays: Any, inputs: tuple, stage: str) -> None:
    """In anomaly mode: raise if any produced float array holds NaN or inf."""
    for a in arrays:
        if a is None:
            continue
        a = np.asarray(a)
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            shapes = ", ".join(str(t.shape) for t in inputs)
            kind = "NaN" if np.any(np.isnan(a)) else "inf"
            raise FloatingPointError(
                f"detect_anomaly: {fn.__name__} {stage} produced {kind} "
                f"(input shapes: {shapes})"
            )

"""``Monitor``: per-layer statistics of a model while it trains, gathered with hooks.

Nothing here changes what the model computes: forward hooks read outputs, tensor hooks on the
parameters read gradients (and return None), and a forward pre-hook on the model marks where
a training step starts. ``remove()`` takes every hook away.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from ..nn import Module
from ..nn.activation import ReLU, Sigmoid, Tanh
from ..nn.normalization import _BatchNorm
from ..tensor import Tensor
from ._monitor_plot import PANELS, render

SATURATING = (Sigmoid, Tanh)
# Sample one step in DEFAULT_EVERY: hooks are attached on sampled steps only, so the steps in
# between cost almost nothing, and the monitor stays cheap enough to leave on (measured in
# examples/monitor_digits.py --overhead).
DEFAULT_EVERY = 20


_ONES: dict[tuple[int, str], np.ndarray] = {}


def _ones(n: int, dtype: np.dtype) -> np.ndarray:
    """A cached vector of n ones: ``ones @ a`` sums a's rows with one BLAS call (gemv), 3-10x
    faster than ``a.sum(axis=0)`` at these sizes, which keeps the monitor cheap to leave on."""
    key = (n, dtype.str)
    ones = _ONES.get(key)
    if ones is None:
        ones = _ONES[key] = np.ones(n, dtype=dtype)
        ones.flags.writeable = False
    return ones


def _mean_std(a: np.ndarray) -> tuple[float, float]:
    """Mean and std with two BLAS dots: var = E[a^2] - mean^2. This loses digits when
    |mean| >> std, harmless for a monitor and several times cheaper than np.std."""
    flat = a.reshape(-1)
    n = flat.size
    if n == 0:
        return math.nan, math.nan
    mean = float(np.dot(flat, _ones(n, flat.dtype))) / n
    var = float(np.dot(flat, flat)) / n - mean * mean
    return mean, math.sqrt(max(var, 0.0))


class Monitor:
    """Watches a model while it trains: per layer and per step, the statistics that tell a
    healthy network from a sick one.

    Each training-mode call of ``model`` is one step (put the monitor on the model you call
    once per step). It samples steps 1, 1 + every, 1 + 2 every, ...: for those, and only
    those, it hooks into every leaf layer and records, under the step's number:

    - ``mean``, ``std``: of the layer's output (its activations);
    - ``saturated``: before a Sigmoid or Tanh, the share of inputs with ``|z| > saturation``
      (there sigmoid'(z) < 0.018 and tanh'(z) < 0.0014: almost no gradient passes);
    - ``dead``: after a ReLU, the share of units that are 0 for every sample of the batch;
    - ``grad_norm``: the L2 norm of the gradient of the layer's weight (gamma for a norm
      layer; all its parameters when it has no ``weight``), from backward;
    - ``update_ratio``: ``||w_after - w_before|| / ||w_before||`` for the same weight, what
      the optimizer step did to it (read at the start of the next step; about 1e-3 is the
      usual rule of thumb, much larger or smaller means a poorly chosen learning rate);
    - ``bn_mean_gap``, ``bn_var_ratio``: for BatchNorm, how far this batch's statistics are
      from the running ones that eval mode will use: the mean over channels of
      ``|batch_mean - running_mean| / sqrt(running_var + eps)`` and of
      ``batch_var / running_var`` (running statistics before this batch updates them).

    Eval-mode calls (measuring accuracy, say) are not steps and are not recorded. The hooks
    of a sampled step stay until the model's next call, so its backward is seen; the update
    ratio of the last sampled step appears once the model is called again.

    Cost: a sampled step costs about twice a plain one (some hundred small NumPy calls, and
    the engine's observed backward walk for the gradient hooks); the steps in between cost
    next to nothing. With the default ``every=20`` the digits MLP step takes about 10% more
    time on average (``every=10``: about 15%); ``every=1`` records every step at about
    twice the time per step.

    Args:
        model: the module called once per training step.
        every: sample one step in ``every`` (1: all of them).
        saturation: the ``|z|`` threshold for ``saturated``.

    Example:
        >>> monitor = Monitor(model)
        >>> for x, y in loader: ... train one step ...
        >>> monitor.plot("monitor.png"); monitor.remove()
    """

    def __init__(self, model: Module, *, every: int = DEFAULT_EVERY, saturation: float = 4.0):
        if not isinstance(model, Module):
            raise TypeError(f"Monitor watches an nn.Module, got {type(model).__name__}")
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ValueError(f"every must be an int >= 1, got {every!r}")
        if not saturation > 0:
            raise ValueError(f"saturation must be a positive threshold, got {saturation!r}")
        self.model, self.every, self.saturation = model, every, float(saturation)
        self.step = 0  # training steps seen so far; the current one while it runs
        self._records: dict[tuple[str, str], dict[int, float]] = {}
        self._before: dict[str, np.ndarray] | None = None  # weights at a sampled step's start
        self._running: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # BatchNorm, ditto
        self._step_handles: list[Any] = []  # the hooks of the sampled step now running
        self._modules: dict[str, Module] = {}  # leaf layers by name
        self._weights: dict[str, Tensor] = {}  # layer -> the parameter its metrics follow
        self.kinds: dict[str, str] = {}  # layer -> its class name, for labels
        self._removed = False
        for name, module in model.named_modules():
            if next(iter(module.children()), None) is None:  # a leaf layer
                self._add_layer(name or type(module).__name__, module)
        self._root = model.register_forward_pre_hook(self._start_step)

    def _add_layer(self, name: str, module: Module) -> None:
        self._modules[name] = module
        self.kinds[name] = type(module).__name__
        named = dict(module.named_parameters())
        # the weight where there is one (the usual reading of both metrics), else the first
        weight = named.get("weight")
        if weight is None:
            weight = next(iter(named.values()), None)
        if weight is not None:
            self._weights[name] = weight

    # ------------------------------------------------------------------ steps
    def _put(self, layer: str, metric: str, value: float, step: int | None = None) -> None:
        self._records.setdefault((layer, metric), {})[self.step if step is None else step] = value

    def _start_step(self, module: Module, args: tuple) -> None:
        """The model's forward pre-hook: close the last sampled step and, in training mode,
        count a new step and hook the layers in if it is one to sample."""
        if self._step_handles:
            self._detach()
        if not module.training:
            return
        self.step += 1
        if (self.step - 1) % self.every == 0:
            self._attach()

    def _attach(self) -> None:
        """Hooks for one sampled step only, so the steps in between run the plain engine."""
        handles = self._step_handles
        for name, module in self._modules.items():
            handles.append(module.register_forward_hook(
                lambda m, args, out, name=name: self._record_output(name, m, args, out)))
            if isinstance(module, _BatchNorm) and module.running_mean is not None:
                self._running[name] = (module.running_mean._data.copy(),
                                       module.running_var._data.copy())
        for name, w in self._weights.items():
            handles.append(w.register_hook(lambda g, name=name: self._record_grad(name, g)))
        self._before = {name: w._data.copy() for name, w in self._weights.items()}

    def _detach(self) -> None:
        """Remove the sampled step's hooks and record what the optimizer step did."""
        for handle in self._step_handles:
            handle.remove()
        self._step_handles = []
        self._running = {}
        before, self._before = self._before, None
        for name, b in (before or {}).items():
            d = self._weights[name]._data - b
            size = float(np.vdot(b, b))  # vdot: a BLAS dot of the flattened arrays
            ratio = math.sqrt(float(np.vdot(d, d)) / size) if size > 0 else math.nan
            self._put(name, "update_ratio", ratio)

    def _record_output(self, name: str, module: Module, args: tuple, out: Any) -> None:
        if not (module.training and isinstance(out, Tensor) and out._data.dtype.kind == "f"):
            return
        a = out._data
        mean, std = _mean_std(a)
        self._put(name, "mean", mean)
        self._put(name, "std", std)
        x = args[0]._data if args and isinstance(args[0], Tensor) else None
        if x is None:
            return
        if isinstance(module, SATURATING):
            far = np.count_nonzero(x > self.saturation) + np.count_nonzero(x < -self.saturation)
            self._put(name, "saturated", far / max(x.size, 1))
        elif isinstance(module, ReLU) and a.ndim >= 1 and a.size > 0:
            # ReLU outputs are >= 0, so a unit's sum over the batch is 0 exactly when it is 0
            # for every sample: one gemv instead of a comparison and an any() along axis 0.
            rows = a.reshape(a.shape[0], -1)
            sums = _ones(rows.shape[0], rows.dtype) @ rows
            self._put(name, "dead", 1.0 - np.count_nonzero(sums) / sums.size)
        elif name in self._running and x.ndim >= 2:
            self._record_batchnorm(name, module, x)

    def _record_batchnorm(self, name: str, module: Module, x: np.ndarray) -> None:
        """Batch statistics of BatchNorm's input against its running statistics as they were
        before this batch updated them (kept when the step started)."""
        rmean, rvar = self._running[name]
        if x.ndim > 2:  # (N, C, ...) -> (N * ..., C)
            x = np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])
        # per channel, from d = x - running_mean (shifted sums keep the variance accurate
        # once the running mean is close): batch mean = running_mean + E[d],
        # batch var = E[d^2] - E[d]^2.
        d = x - rmean
        ones = _ones(d.shape[0], d.dtype)
        shift = (ones @ d) / d.shape[0]
        var = (ones @ (d * d)) / d.shape[0] - shift * shift
        gap = np.abs(shift) / np.sqrt(rvar + module.eps)
        self._put(name, "bn_mean_gap", float(np.mean(gap)))
        ratio = np.maximum(var, 0) / np.maximum(rvar, 1e-12)
        self._put(name, "bn_var_ratio", float(np.mean(ratio)))

    def _record_grad(self, layer: str, grad: Tensor) -> None:
        g = grad._data
        self._put(layer, "grad_norm", math.sqrt(float(np.vdot(g, g))))

    # ------------------------------------------------------------------ reading
    @property
    def layers(self) -> list[str]:
        """The names of the layers with records, in the model's order."""
        seen = dict.fromkeys(layer for layer, _ in self._records)
        return list(seen)

    def metrics(self, layer: str) -> list[str]:
        """The metrics recorded for ``layer``."""
        return [m for (l, m) in self._records if l == layer]

    def series(self, layer: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of one metric of one layer, in step order (steps count from 1).

        Raises KeyError naming the layers or metrics there are when ``layer`` or ``metric``
        has no records."""
        key = (layer, metric)
        if key not in self._records:
            if layer not in self.layers:
                raise KeyError(f"no records for layer {layer!r}; layers: {self.layers}")
            raise KeyError(f"no {metric!r} for layer {layer!r}; it has {self.metrics(layer)}")
        points = sorted(self._records[key].items())
        steps = np.array([s for s, _ in points], dtype=np.int64)
        values = np.array([v for _, v in points], dtype=np.float64)
        return steps, values

    def plot(self, path: str | os.PathLike, *, dpi: int = 90) -> None:
        """Draw every metric over the steps, one panel per metric and one line per layer,
        to a PNG or SVG (by suffix), written atomically. Needs matplotlib (the viz extra)."""
        render(self, path, PANELS, dpi)

    # ------------------------------------------------------------------ removal
    def remove(self) -> None:
        """Take every hook away (a sampled step still running records nothing more); the
        records stay readable."""
        self._root.remove()
        for handle in self._step_handles:
            handle.remove()
        self._step_handles, self._before, self._running = [], None, {}
        self._removed = True

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        state = "removed" if self._removed else "watching"
        return f"Monitor({type(self.model).__name__}, {state}, {self.step} steps)"

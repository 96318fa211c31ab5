"""``Monitor``: per-layer statistics of a model while it trains, gathered with hooks.

Nothing here changes what the model computes: forward hooks read outputs, tensor hooks on the
parameters read gradients (and return None), and a forward pre-hook on the model marks where
a training step starts. ``remove()`` takes every hook away.
"""

from __future__ import annotations

import math
import os
from array import array
from typing import Any

import numpy as np

from ..nn import Module
from ..nn.activation import ReLU, Sigmoid, Tanh
from ..nn.normalization import _BatchNorm
from ..tensor import Tensor
from ._monitor_plot import PANELS, render

SATURATING = (Sigmoid, Tanh)
# Sample one step in DEFAULT_EVERY: hooks are attached on sampled steps only, so the steps in
# between cost almost nothing, and the monitor stays within 10% of the digits MLP step, cheap
# enough to leave on; recording every step costs about 1.65x (examples/see_inside.py
# --overhead; the hooks alone, doing nothing, cost about 1.15x).
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


class _Series:
    """One metric of one layer: steps and values in compact arrays (16 bytes a point, so that
    recording every step of a long run stays small)."""

    __slots__ = ("steps", "values")

    def __init__(self) -> None:
        self.steps, self.values = array("q"), array("d")

    def put(self, step: int, value: float) -> None:
        """Record ``value`` at ``step``; a layer called twice in one step keeps the last."""
        steps = self.steps
        if steps and steps[-1] == step:
            self.values[-1] = value
        else:
            steps.append(step)
            self.values.append(value)

    def __len__(self) -> int:
        return len(self.steps)


def _copy_into(buffer: np.ndarray | None, a: np.ndarray) -> np.ndarray:
    """A copy of ``a``, in ``buffer`` when it has a's shape and dtype (no allocation)."""
    if buffer is None or buffer.shape != a.shape or buffer.dtype != a.dtype:
        return a.copy()
    np.copyto(buffer, a)
    return buffer


def _record_stats(monitor: Monitor, stats: tuple[_Series, _Series], module: Module,
                  out: Any) -> np.ndarray | None:
    """Record the output's mean and std when it is a float Tensor of a layer in training
    mode, and return its array (None when nothing was recorded)."""
    if not (module.training and isinstance(out, Tensor)):
        return None
    a = out._data
    if a.dtype.kind != "f":
        return None
    mean, std = _mean_std(a)
    stats[0].put(monitor.step, mean)
    stats[1].put(monitor.step, std)
    return a


def _input(args: tuple) -> np.ndarray | None:
    x = args[0] if args else None
    return x._data if isinstance(x, Tensor) else None


def _stats_hook(monitor: Monitor, stats: tuple[_Series, _Series]) -> Any:
    """The forward hook of a layer with only ``mean`` and ``std``."""

    def hook(module: Module, args: tuple, out: Any) -> None:
        _record_stats(monitor, stats, module, out)

    return hook


def _saturation_hook(monitor: Monitor, stats: tuple[_Series, _Series], saturated: _Series):
    """Sigmoid and Tanh: also the share of inputs with ``|z| > saturation``."""

    def hook(module: Module, args: tuple, out: Any) -> None:
        x = _input(args)
        if _record_stats(monitor, stats, module, out) is not None and x is not None:
            s = monitor.saturation
            far = np.count_nonzero(x > s) + np.count_nonzero(x < -s)
            saturated.put(monitor.step, far / max(x.size, 1))

    return hook


def _dead_hook(monitor: Monitor, stats: tuple[_Series, _Series], dead: _Series):
    """ReLU: also the share of units that are 0 for every sample of the batch."""

    def hook(module: Module, args: tuple, out: Any) -> None:
        a = _record_stats(monitor, stats, module, out)
        if a is not None and a.ndim >= 1 and a.size > 0 and _input(args) is not None:
            # ReLU outputs are >= 0, so a unit's sum over the batch is 0 exactly when it is 0
            # for every sample: one gemv instead of a comparison and an any() along axis 0.
            rows = a.reshape(a.shape[0], -1)
            sums = _ones(rows.shape[0], rows.dtype) @ rows
            dead.put(monitor.step, 1.0 - np.count_nonzero(sums) / sums.size)

    return hook


def _batchnorm_hook(monitor: Monitor, name: str, stats: tuple[_Series, _Series],
                    bn: tuple[_Series, _Series]):
    """BatchNorm: also its batch statistics against the running ones (``_batch_vs_running``)."""

    def hook(module: Module, args: tuple, out: Any) -> None:
        x = _input(args)
        if _record_stats(monitor, stats, module, out) is None or x is None or x.ndim < 2:
            return
        running = monitor._running.get(name)
        if running is not None:
            gap, ratio = _batch_vs_running(x, *running, module.eps)
            bn[0].put(monitor.step, gap)
            bn[1].put(monitor.step, ratio)

    return hook


def _batch_vs_running(x: np.ndarray, rmean: np.ndarray, rvar: np.ndarray,
                      eps: float) -> tuple[float, float]:
    """Batch statistics of BatchNorm's input against its running statistics as they were
    before this batch updated them (kept when the step started)."""
    if x.ndim > 2:  # (N, C, ...) -> (N * ..., C)
        x = np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])
    # per channel, from d = x - running_mean (shifted sums keep the variance accurate
    # once the running mean is close): batch mean = running_mean + E[d],
    # batch var = E[d^2] - E[d]^2. Sums over rows are gemvs with a vector of ones and the
    # means over channels dots: a dozen NumPy calls in all, no np.mean (several times slower).
    n, channels = x.shape
    d = x - rmean
    ones = _ones(n, d.dtype)
    shift = (ones @ d) / n
    np.multiply(d, d, out=d)
    var = (ones @ d) / n - shift * shift
    gap = float(np.dot(np.abs(shift), 1 / np.sqrt(rvar + eps))) / channels
    ratio = float(np.dot(np.maximum(var, 0), 1 / np.maximum(rvar, 1e-12))) / channels
    return gap, ratio


def _grad_hook(monitor: Monitor, norms: _Series) -> Any:
    """The tensor hook of a weight: the L2 norm of its gradient (it returns None)."""

    def hook(grad: Tensor) -> None:
        g = grad._data
        norms.put(monitor.step, math.sqrt(float(np.vdot(g, g))))

    return hook


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
    go on at a sampled step and stay while the steps that follow are sampled too (with
    ``every=1``, until an eval-mode call or ``remove()``); they come off at the first call
    that is not a sampled training step, so its backward runs the plain engine. The update
    ratio of the last sampled step appears once the model is called again.

    Cost, on the digits MLP step (measured with ``examples/see_inside.py --overhead``): the
    default ``every=20`` adds about 6-8% to the time per step, ``every=10`` about 14%,
    ``every=1`` about 65%. Of a recorded step's extra time, the hooks themselves (doing
    nothing) take about 15% of a plain step: any tensor hook makes backward take the engine's
    observed walk. The rest is some seventy small NumPy calls for the thirty values recorded.
    Records are kept in compact arrays (16 bytes a value), so recording every step of a long
    run stays small.

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
        self._records: dict[tuple[str, str], _Series] = {}  # made in display order, filled later
        self._recorders: list[tuple[Module, Any]] = []  # (layer, its forward hook)
        self._weights: dict[str, Tensor] = {}  # layer -> the parameter its metrics follow
        self._before: dict[str, np.ndarray] = {}  # weights as a sampled step started
        self._open: int | None = None  # the sampled step whose update ratio is still due
        self._norms: dict[str, _BatchNorm] = {}  # the BatchNorm layers with running statistics
        self._running: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # theirs, ditto
        self._handles: list[Any] = []  # the hooks of the sampled steps now running
        self.kinds: dict[str, str] = {}  # layer -> its class name, for labels
        self._removed = False
        for name, module in model.named_modules():
            if next(iter(module.children()), None) is None:  # a leaf layer
                self._add_layer(name or type(module).__name__, module)
        self._root = model.register_forward_pre_hook(self._start_step)

    def _series(self, layer: str, metric: str) -> _Series:
        series = self._records[layer, metric] = _Series()
        return series

    def _add_layer(self, name: str, module: Module) -> None:
        """The layer's series, in the order they are shown, and its forward hook."""
        self.kinds[name] = type(module).__name__
        stats = (self._series(name, "mean"), self._series(name, "std"))
        if isinstance(module, SATURATING):
            hook = _saturation_hook(self, stats, self._series(name, "saturated"))
        elif isinstance(module, ReLU):
            hook = _dead_hook(self, stats, self._series(name, "dead"))
        elif isinstance(module, _BatchNorm) and module.running_mean is not None:
            self._norms[name] = module
            hook = _batchnorm_hook(self, name, stats, (self._series(name, "bn_mean_gap"),
                                                       self._series(name, "bn_var_ratio")))
        else:
            hook = _stats_hook(self, stats)
        self._recorders.append((module, hook))
        named = dict(module.named_parameters())
        # the weight where there is one (the usual reading of both metrics), else the first
        weight = named.get("weight")
        if weight is None:
            weight = next(iter(named.values()), None)
        if weight is not None:
            self._weights[name] = weight
            self._series(name, "grad_norm")
            self._series(name, "update_ratio")

    # ------------------------------------------------------------------ steps
    def _start_step(self, module: Module, args: tuple) -> None:
        """The model's forward pre-hook: close the last sampled step (its update ratio) and,
        in training mode, count a new step; the hooks stay on while steps are sampled."""
        if self._open is not None:
            self._close()
        sampled = module.training and self.step % self.every == 0  # step + 1 is sampled
        if self._handles and not sampled:
            self._detach()
        if not module.training:
            return
        self.step += 1
        if sampled:
            if not self._handles:
                self._attach()
            self._snapshot()

    def _attach(self) -> None:
        """Forward hooks on the layers and gradient hooks on their weights: only while steps
        are sampled, so that the steps in between run the plain engine."""
        handles = self._handles
        for module, hook in self._recorders:
            handles.append(module.register_forward_hook(hook))
        for name, w in self._weights.items():
            handles.append(w.register_hook(_grad_hook(self, self._records[name, "grad_norm"])))

    def _detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _snapshot(self) -> None:
        """Keep the weights and running statistics as they are when a sampled step starts,
        in buffers reused from step to step."""
        self._open = self.step
        for name, w in self._weights.items():
            self._before[name] = _copy_into(self._before.get(name), w._data)
        for name, module in self._norms.items():
            if module.running_mean is None or module.running_var is None:
                self._running.pop(name, None)  # no running statistics (any more): no gap
                continue
            old = self._running.get(name, (None, None))
            self._running[name] = (_copy_into(old[0], module.running_mean._data),
                                   _copy_into(old[1], module.running_var._data))

    def _close(self) -> None:
        """Record what the optimizer step did to each weight since the sampled step began:
        ``||w_after - w_before|| / ||w_before||``."""
        step, self._open = self._open, None
        for name, w in self._weights.items():
            b, a = self._before[name], w._data
            if b.shape != a.shape:  # the weight was replaced by one of another shape
                continue
            size = float(np.vdot(b, b))  # vdot: a BLAS dot of the flattened arrays
            np.subtract(a, b, out=b)  # b is overwritten at the next snapshot anyway
            ratio = math.sqrt(float(np.vdot(b, b)) / size) if size > 0 else math.nan
            self._records[name, "update_ratio"].put(step, ratio)

    # ------------------------------------------------------------------ reading
    @property
    def layers(self) -> list[str]:
        """The names of the layers with records, in the model's order."""
        seen = dict.fromkeys(layer for (layer, _), series in self._records.items() if series)
        return list(seen)

    def metrics(self, layer: str) -> list[str]:
        """The metrics recorded for ``layer``."""
        return [m for (l, m), series in self._records.items() if l == layer and series]

    def series(self, layer: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of one metric of one layer, in step order (steps count from 1).

        Raises KeyError naming the layers or metrics there are when ``layer`` or ``metric``
        has no records."""
        series = self._records.get((layer, metric))
        if not series:
            if layer not in self.layers:
                raise KeyError(f"no records for layer {layer!r}; layers: {self.layers}")
            raise KeyError(f"no {metric!r} for layer {layer!r}; it has {self.metrics(layer)}")
        return (np.array(series.steps, dtype=np.int64),
                np.array(series.values, dtype=np.float64))

    def plot(self, path: str | os.PathLike, *, dpi: int = 90) -> None:
        """Draw every metric over the steps, one panel per metric and one line per layer,
        to a PNG or SVG (by suffix), written atomically. Needs matplotlib (the viz extra)."""
        render(self, path, PANELS, dpi)

    # ------------------------------------------------------------------ removal
    def remove(self) -> None:
        """Take every hook away (a sampled step still running records nothing more); the
        records stay readable."""
        self._root.remove()
        self._detach()
        self._open = None
        self._removed = True

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        state = "removed" if self._removed else "watching"
        return f"Monitor({type(self.model).__name__}, {state}, {self.step} steps)"

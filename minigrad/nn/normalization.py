"""BatchNorm1d, BatchNorm2d and LayerNorm layers (their semantics in docs/normalization.md)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import functional as F
from ..functional._rules import check_eps, check_momentum, check_size, normalized_shape_of
from ..kernels._checks import FLOAT_DTYPES
from ..tensor import Tensor
from .module import Module, Parameter


def _check_float_dtype(name: str, dtype: Any) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{name}: dtype must be float32 or float64, got {dt}")
    return dt


class _BatchNorm(Module):
    """Shared body of BatchNorm1d/2d; subclasses say which input ranks they accept.

    y = gamma (x - mean) / sqrt(var + eps) + beta per channel (axis 1), with the mean and
    biased variance of the batch in training (N and any spatial axes) and the running ones
    in eval. Training needs more than one value per channel.

    Args:
        num_features: C, the size of axis 1.
        eps: added to the variance before the square root.
        momentum: weight of the old running statistic: running = running * momentum +
            batch * (1 - momentum), with the unbiased batch variance for running_var. The
            default 0.9 equals PyTorch's momentum=0.1 (PyTorch weights the new batch).
        affine: learn gamma (init 1) and beta (init 0).
        track_running_stats: keep running_mean (init 0), running_var (init 1) and
            num_batches_tracked (training forwards, int64) and use the running statistics in
            eval mode; when False, batch statistics are used in eval too.
    """

    accepted_ndims: tuple[int, ...] = ()
    shape_text = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.9,
                 affine: bool = True, track_running_stats: bool = True, dtype=np.float32):
        super().__init__()
        name = type(self).__name__
        num_features = check_size(num_features, f"{name}: num_features")
        eps = check_eps(eps, name)
        momentum = check_momentum(momentum, name)
        dtype = _check_float_dtype(name, dtype)
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(np.ones(num_features, dtype=dtype))
            self.bias = Parameter(np.zeros(num_features, dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(np.zeros(num_features), dtype=dtype))
            self.register_buffer("running_var", Tensor(np.ones(num_features), dtype=dtype))
            # PyTorch's counter of training forwards, kept so that state dicts match key for key
            self.register_buffer("num_batches_tracked", Tensor(np.zeros((), dtype=np.int64)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def forward(self, x: Tensor) -> Tensor:
        """Normalise x; in training mode also update the running statistics in place and
        count the batch in num_batches_tracked (only after the batch was accepted)."""
        shape = x.shape
        if len(shape) not in self.accepted_ndims:
            raise ValueError(
                f"{type(self).__name__} expects input {self.shape_text}, got shape {shape}"
            )
        if shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}: expected {self.num_features} features (axis 1), "
                f"got {shape[1]} (input shape {shape})"
            )
        training, tracking = self.training, self.track_running_stats
        # the registries are read directly: Module.__getattr__'s fallback costs a microsecond
        params, buffers = self._parameters, self._buffers
        y = F.batch_norm(x, buffers["running_mean"], buffers["running_var"], params["weight"],
                         params["bias"], training or not tracking, self.momentum, self.eps)
        if training and tracking:
            self._count_batch()  # after the call succeeded, so a rejected batch is not counted
        return y

    def _count_batch(self) -> None:
        """Add one to num_batches_tracked in place (mg.compile repeats this call as is)."""
        counter = self._buffers["num_batches_tracked"]
        # the scalar index is ten times cheaper than an in-place ufunc on a 0-d array
        counter.data[()] += 1
        counter._version += 1

    def _missing_state(self, state_dict: Any, prefix: str) -> dict[str, Any]:
        # A state dict saved before num_batches_tracked existed has the running statistics
        # but no counter: start it at 0, as PyTorch does for its older checkpoints.
        key = prefix + "num_batches_tracked"
        if (self._buffers["num_batches_tracked"] is not None and key not in state_dict
                and prefix + "running_mean" in state_dict):
            return {key: np.zeros((), dtype=np.int64)}
        return {}

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalization of (N, C) or (N, C, L) input, per feature C."""

    accepted_ndims = (2, 3)
    shape_text = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalization of (N, C, H, W) input, per channel C over N, H and W."""

    accepted_ndims = (4,)
    shape_text = "(N, C, H, W)"


class LayerNorm(Module):
    """y = gamma (x - mean) / sqrt(var + eps) + beta, the mean and biased variance taken per
    sample over its trailing ``normalized_shape`` dims; the same in training and eval, with
    no running statistics.

    Args:
        normalized_shape: int or tuple, the trailing shape to normalise over.
        eps: added to the variance before the square root.
        elementwise_affine: learn gamma (init 1) and beta (init 0) of ``normalized_shape``.
    """

    def __init__(self, normalized_shape: int | tuple[int, ...], eps: float = 1e-5,
                 elementwise_affine: bool = True, dtype=np.float32):
        super().__init__()
        self.normalized_shape = normalized_shape_of(normalized_shape, "LayerNorm")
        self.eps = check_eps(eps, "LayerNorm")
        dtype = _check_float_dtype("LayerNorm", dtype)
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(np.ones(self.normalized_shape, dtype=dtype))
            self.bias = Parameter(np.zeros(self.normalized_shape, dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x: Tensor) -> Tensor:
        params = self._parameters  # skips Module.__getattr__'s slower fallback
        return F.layer_norm(x, self.normalized_shape, params["weight"], params["bias"], self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")

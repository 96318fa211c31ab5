"""GroupNorm, InstanceNorm1d/2d and RMSNorm layers (their semantics in docs/normalization.md)."""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ..functional._rules import (
    check_bool,
    check_eps,
    check_groups,
    check_momentum,
    check_size,
    normalized_shape_of,
    rms_eps,
)
from ..tensor import Tensor
from .module import Module, Parameter
from .normalization import _check_float_dtype


def _channel_affine(module: Module, affine: bool, channels: int, dtype: np.dtype) -> None:
    """Register weight (init 1) and bias (init 0) of shape (channels,), or None for both."""
    if affine:
        module.weight = Parameter(np.ones(channels, dtype=dtype))
        module.bias = Parameter(np.zeros(channels, dtype=dtype))
    else:
        module.register_parameter("weight", None)
        module.register_parameter("bias", None)


def _check_channels(module: Module, x: Tensor, expected: int, axis: int) -> None:
    if x.shape[axis] != expected:
        raise ValueError(f"{type(module).__name__}: expected {expected} channels (axis {axis}), "
                         f"got {x.shape[axis]} (input shape {x.shape})")


class GroupNorm(Module):
    """y = gamma_c (x - mean) / sqrt(var + eps) + beta_c for x (N, C, *), the mean and biased
    variance taken per sample over each group of C / num_groups channels and all spatial
    positions; the same in training and eval, with no running statistics.

    Args:
        num_groups: how many groups the channels are split into; must divide num_channels.
        num_channels: C, the size of axis 1.
        eps: added to the variance before the square root.
        affine: learn a per-channel gamma (init 1) and beta (init 0).
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5,
                 affine: bool = True, dtype=np.float32):
        super().__init__()
        self.num_channels = check_size(num_channels, "GroupNorm: num_channels")
        self.num_groups = check_groups(num_groups, self.num_channels, "GroupNorm")
        self.eps = check_eps(eps, "GroupNorm")
        self.affine = affine
        _channel_affine(self, affine, self.num_channels, _check_float_dtype("GroupNorm", dtype))

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim < 2:
            raise ValueError(f"GroupNorm expects input (N, C, *), got shape {x.shape}")
        _check_channels(self, x, self.num_channels, 1)
        params = self._parameters
        return F.group_norm(x, self.num_groups, params["weight"], params["bias"], self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


class _InstanceNorm(Module):
    """Shared body of InstanceNorm1d/2d: y = gamma_c (x - mean) / sqrt(var + eps) + beta_c, the
    mean and biased variance per sample and channel over the spatial positions. Unbatched
    input (C, *spatial) is normalized as a batch of one.

    Args:
        num_features: C.
        eps: added to the variance before the square root.
        momentum: weight of the old running statistic (minigrad's convention, as BatchNorm:
            0.9 equals PyTorch's 0.1); used only with track_running_stats.
        affine: learn a per-channel gamma (init 1) and beta (init 0); off by default.
        track_running_stats: off by default: each input's own statistics in training and
            eval. On: keep running_mean (init 0) and running_var (init 1), updated in training
            with the batch average of the per-instance mean and unbiased variance, and
            normalize with them in eval (num_batches_tracked is kept for PyTorch's state dict
            layout and, as there, not counted).
    """

    spatial_ndim = 0
    shape_text = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.9,
                 affine: bool = False, track_running_stats: bool = False, dtype=np.float32):
        super().__init__()
        name = type(self).__name__
        self.num_features = check_size(num_features, f"{name}: num_features")
        self.eps = check_eps(eps, name)
        self.momentum = check_momentum(momentum, name)
        self.affine = check_bool(affine, f"{name}: affine")
        self.track_running_stats = check_bool(track_running_stats, f"{name}: track_running_stats")
        dtype = _check_float_dtype(name, dtype)
        _channel_affine(self, affine, self.num_features, dtype)
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(np.zeros(num_features), dtype=dtype))
            self.register_buffer("running_var", Tensor(np.ones(num_features), dtype=dtype))
            self.register_buffer("num_batches_tracked", Tensor(np.zeros((), dtype=np.int64)))
        else:
            for key in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(key, None)

    def forward(self, x: Tensor) -> Tensor:
        batched = self.spatial_ndim + 2
        if x.ndim not in (batched - 1, batched):
            raise ValueError(f"{type(self).__name__} expects input {self.shape_text}, "
                             f"got shape {x.shape}")
        _check_channels(self, x, self.num_features, x.ndim - self.spatial_ndim - 1)
        params, buffers = self._parameters, self._buffers
        y = F.instance_norm(x if x.ndim == batched else x.unsqueeze(0),
                            buffers["running_mean"], buffers["running_var"], params["weight"],
                            params["bias"], self.training or not self.track_running_stats,
                            self.momentum, self.eps)
        return y if x.ndim == batched else y.squeeze(0)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class InstanceNorm1d(_InstanceNorm):
    """Instance normalization of (N, C, L) or unbatched (C, L) input, per sample and channel."""

    spatial_ndim = 1
    shape_text = "(N, C, L) or (C, L)"


class InstanceNorm2d(_InstanceNorm):
    """Instance normalization of (N, C, H, W) or unbatched (C, H, W) input, per sample and
    channel over H and W."""

    spatial_ndim = 2
    shape_text = "(N, C, H, W) or (C, H, W)"


class RMSNorm(Module):
    """y = x / sqrt(mean(x^2) + eps) * weight, the mean taken per sample over its trailing
    ``normalized_shape`` dims; no centring, no bias, no running statistics.

    Args:
        normalized_shape: int or tuple, the trailing shape to normalise over.
        eps: added to mean(x^2); None means the machine epsilon of the input's dtype.
        elementwise_affine: learn weight (init 1) of ``normalized_shape``.
    """

    def __init__(self, normalized_shape: int | tuple[int, ...], eps: float | None = None,
                 elementwise_affine: bool = True, dtype=np.float32):
        super().__init__()
        self.normalized_shape = normalized_shape_of(normalized_shape, "RMSNorm")
        dtype = _check_float_dtype("RMSNorm", dtype)
        self.eps = None if eps is None else rms_eps(eps, dtype, "RMSNorm")
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(np.ones(self.normalized_shape, dtype=dtype))
        else:
            self.register_parameter("weight", None)

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, self.normalized_shape, self._parameters["weight"], self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")

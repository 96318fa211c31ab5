"""Convolution layers: Conv1d and Conv2d (PyTorch's arguments, layout and initialisation)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..functional import conv as F
from ..functional._rules import check_size
from ..functional._rules_spatial import conv_padding, conv_tuple
from ..tensor import Tensor
from . import init
from .module import Module, Parameter


class _ConvNd(Module):
    """What Conv1d and Conv2d share: the configuration, the parameters and their init."""

    _dims = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", dtype=np.float32):
        super().__init__()
        name, n = type(self).__name__, self._dims
        self.in_channels = check_size(in_channels, f"{name}: in_channels")
        self.out_channels = check_size(out_channels, f"{name}: out_channels")
        self.groups = check_size(groups, f"{name}: groups")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels {in_channels} and out_channels "
                             f"{out_channels} must both be divisible by groups={groups}")
        if padding_mode != "zeros":
            raise ValueError(f"{name}: padding_mode must be 'zeros' (the only mode supported), "
                             f"got {padding_mode!r}")
        self.padding_mode = padding_mode
        self.kernel_size = conv_tuple(kernel_size, n, "kernel_size", 1, name)
        self.stride = conv_tuple(stride, n, "stride", 1, name)
        self.dilation = conv_tuple(dilation, n, "dilation", 1, name)
        conv_padding(padding, self.kernel_size, self.stride, self.dilation, name)  # check now
        self.padding = padding if isinstance(padding, str) else conv_tuple(padding, n,
                                                                           "padding", 0, name)
        shape = (out_channels, in_channels // groups) + self.kernel_size
        self.weight = Parameter(np.empty(shape, dtype=dtype))
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # = U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        if bias:
            bound = 1 / math.sqrt(math.prod(shape[1:]))
            self.bias = Parameter(np.empty(out_channels, dtype=dtype))
            init.uniform_(self.bias, -bound, bound)
        else:
            self.register_parameter("bias", None)

    def forward(self, x: Tensor) -> Tensor:
        """The convolution of x; a float input of the other precision raises ``TypeError``."""
        conv = F.conv1d if self._dims == 1 else F.conv2d
        return conv(x, self._parameters["weight"], self._parameters["bias"], self.stride,
                    self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        n = self._dims
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}")
        if self.padding != (0,) * n:
            text += f", padding={self.padding}"
        if self.dilation != (1,) * n:
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        return text


class Conv2d(_ConvNd):
    """2-D convolution over (N, C_in, H, W) input: y = conv2d(x, W) + b (``F.conv2d``).

    Args:
        in_channels, out_channels: C_in and C_out; both divisible by groups.
        kernel_size, stride, padding, dilation: ints or (h, w) pairs; padding may also be
            "valid" or "same" (stride 1 only).
        groups: split the channels into this many independent convolutions (groups =
            in_channels is depthwise).
        bias: learn an additive bias (default True).
        dtype: parameter dtype (float32 by default).

    Weight (C_out, C_in / groups, kh, kw) and bias start as PyTorch's: U(-k, k) with
    k = 1 / sqrt(C_in / groups * kh * kw). Output (N, C_out, Ho, Wo).
    """

    _dims = 2


class Conv1d(_ConvNd):
    """1-D convolution over (N, C_in, L) input (``F.conv1d``); arguments as Conv2d with ints
    or 1-tuples. Weight (C_out, C_in / groups, k). Output (N, C_out, L_out)."""

    _dims = 1

"""MaxPool2d, AvgPool2d and AdaptiveAvgPool2d layers: their configuration only; the math is in
``minigrad.functional.pool``."""

from __future__ import annotations

from typing import Any

from .. import functional as F
from ..functional._rules import check_flag
from ..functional._rules_spatial import (
    adaptive_output_size,
    check_pool_padding,
    pool_pair,
)
from ..functional.pool import IntPair
from ..tensor import Tensor
from .module import Module


def _check_window(name: str, kernel_size: Any, stride: Any, padding: Any, dilation: Any = 1
                  ) -> None:
    """The rules that do not depend on the input, checked when the layer is made."""
    kernel = pool_pair(kernel_size, "kernel_size", name, 1)
    if stride is not None:
        pool_pair(stride, "stride", name, 1)
    pool_pair(dilation, "dilation", name, 1)
    check_pool_padding(pool_pair(padding, "padding", name, 0), kernel, name)


class MaxPool2d(Module):
    """The maximum over each window of every (H, W) plane; see ``F.max_pool2d``.

    Args:
        kernel_size, stride (default: kernel_size), padding, dilation: an int or an (h, w) pair.
        ceil_mode: round the output size up.

    Shape:
        (N, C, H, W) -> (N, C, oh, ow), or (C, H, W) -> (C, oh, ow), with
        oh = floor((H + 2 padding - dilation (kernel_size - 1) - 1) / stride) + 1.
    """

    def __init__(self, kernel_size: IntPair, stride: IntPair | None = None,
                 padding: IntPair = 0, dilation: IntPair = 1,
                 ceil_mode: bool = False):
        super().__init__()
        _check_window("MaxPool2d", kernel_size, stride, padding, dilation)
        check_flag(ceil_mode, "ceil_mode", "MaxPool2d")
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding, self.dilation, self.ceil_mode = padding, dilation, ceil_mode

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                            self.ceil_mode)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    """The mean over each window of every (H, W) plane; see ``F.avg_pool2d`` for the divisor.

    Args:
        kernel_size, stride (default: kernel_size), padding: an int or an (h, w) pair.
        ceil_mode: round the output size up.
        count_include_pad: count the padding zeros in the divisor.
    """

    def __init__(self, kernel_size: IntPair, stride: IntPair | None = None,
                 padding: IntPair = 0, ceil_mode: bool = False,
                 count_include_pad: bool = True):
        super().__init__()
        _check_window("AvgPool2d", kernel_size, stride, padding)
        check_flag(ceil_mode, "ceil_mode", "AvgPool2d")
        check_flag(count_include_pad, "count_include_pad", "AvgPool2d")
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding, self.ceil_mode = padding, ceil_mode
        self.count_include_pad = count_include_pad

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """The mean over windows sized to give ``output_size`` whatever the input size; see
    ``F.adaptive_avg_pool2d``. ``AdaptiveAvgPool2d(1)`` is global average pooling.

    Args:
        output_size: an int, or an (oh, ow) pair whose None entries keep the input's size.
    """

    def __init__(self, output_size: int | tuple[int | None, int | None]):
        super().__init__()
        probe = output_size if not isinstance(output_size, tuple | list) else tuple(
            1 if v is None else v for v in output_size)
        adaptive_output_size(probe, (1, 1), "AdaptiveAvgPool2d")
        self.output_size = output_size

    def forward(self, x: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"

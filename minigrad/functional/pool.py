"""max_pool2d, avg_pool2d and adaptive_avg_pool2d: PyTorch's arguments and output sizes, every
rule checked once (``_rules``), then one fused Function of ``minigrad.ops.pool``."""

from __future__ import annotations

from typing import Any

from ..ops import pool as ops
from ._convert import as_tensor
from ._rules import check_flag, check_float_input
from ._rules_spatial import (
    adaptive_output_size,
    check_pool_input,
    check_pool_padding,
    pool_output_size,
    pool_pair,
)

IntPair = int | tuple[int, int]


def _window(op: str, x: Any, kernel_size: Any, stride: Any, padding: Any, dilation: Any,
            ceil_mode: Any) -> tuple:
    """The input as a Tensor and the window geometry as pairs, with the output size."""
    x = check_float_input(as_tensor(x), op)
    in_size = check_pool_input(x.shape, op)
    kernel_size = pool_pair(kernel_size, "kernel_size", op, 1)
    stride = kernel_size if stride is None else pool_pair(stride, "stride", op, 1)
    padding = pool_pair(padding, "padding", op, 0)
    dilation = pool_pair(dilation, "dilation", op, 1)
    ceil_mode = check_flag(ceil_mode, "ceil_mode", op)
    check_pool_padding(padding, kernel_size, op)
    out_size = pool_output_size(in_size, kernel_size, stride, padding, dilation, ceil_mode, op)
    return x, kernel_size, stride, padding, dilation, out_size


def max_pool2d(input: Any, kernel_size: IntPair, stride: IntPair | None = None,
               padding: IntPair = 0, dilation: IntPair = 1, ceil_mode: bool = False):
    """The maximum over each kernel_size window of every (H, W) plane.

    Windows start every ``stride`` (default: kernel_size) on the input padded with
    ``padding`` rows and columns of -inf, their taps ``dilation`` apart. The gradient of an
    output goes to ONE input element: the first maximal tap in row-major window order when
    several tie; a NaN in a window wins (the output is NaN, and the first NaN gets the gradient).

    Args:
        input: (N, C, H, W) or (C, H, W), float.
        kernel_size, stride, padding, dilation: an int or an (h, w) pair; padding at most
            half the kernel size.
        ceil_mode: round the output size up (a last, partial window), as long as that window
            starts inside the input or its left padding.

    Shape:
        out = floor((L + 2 padding - dilation (kernel_size - 1) - 1) / stride) + 1 per axis
        (ceil instead of floor in ceil_mode).
    """
    x, k, s, p, d, out = _window("max_pool2d", input, kernel_size, stride, padding, dilation,
                                 ceil_mode)
    return ops.MaxPool2d.apply(x, kernel_size=k, stride=s, padding=p, dilation=d, out_size=out)


def avg_pool2d(input: Any, kernel_size: IntPair, stride: IntPair | None = None,
               padding: IntPair = 0, ceil_mode: bool = False, count_include_pad: bool = True):
    """The mean over each kernel_size window of every (H, W) plane, with zero padding.

    The divisor is PyTorch's: with count_include_pad, the window's size once clipped to the
    padded input (so a ceil_mode window hanging past the padding counts only what is left);
    without it, the number of input elements in the window.

    Args:
        input: (N, C, H, W) or (C, H, W), float.
        kernel_size, stride, padding: an int or an (h, w) pair; stride defaults to
            kernel_size; padding at most half the kernel size.
        ceil_mode: round the output size up (see ``max_pool2d``).
        count_include_pad: count the padding zeros in the divisor.
    """
    x, k, s, p, _, out = _window("avg_pool2d", input, kernel_size, stride, padding, 1, ceil_mode)
    count_include_pad = check_flag(count_include_pad, "count_include_pad", "avg_pool2d")
    return ops.AvgPool2d.apply(x, kernel_size=k, stride=s, padding=p, out_size=out,
                               count_include_pad=count_include_pad)


def adaptive_avg_pool2d(input: Any, output_size: int | tuple[int | None, int | None]):
    """The mean over windows chosen to give an ``output_size`` output whatever the input size.

    Output row i averages input rows floor(i H / oh) to ceil((i + 1) H / oh) - 1 (columns
    alike), so windows overlap when the sizes do not divide.

    Args:
        input: (N, C, H, W) or (C, H, W), float.
        output_size: an int for both, or an (oh, ow) pair; a None entry keeps that input size.
    """
    op = "adaptive_avg_pool2d"
    x = check_float_input(as_tensor(input), op)
    in_size = check_pool_input(x.shape, op)
    out = adaptive_output_size(output_size, in_size, op)
    return ops.AdaptiveAvgPool2d.apply(x, out_size=out)

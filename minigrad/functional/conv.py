"""conv1d, conv2d and pad: every argument rule checked once, then one graph node each
(``minigrad.ops.conv``)."""

from __future__ import annotations

from typing import Any

from ..ops import conv as ops
from ._convert import as_tensor, data_of
from ._rules import check_float_input, check_param_dtype
from ._rules_spatial import (
    check_conv_shapes,
    check_pad_value,
    conv_padding,
    conv_tuple,
    pad_widths,
)


def _conv(input, weight, bias, stride, padding, dilation, groups, dims: int, op: str):
    """The shared body of conv1d and conv2d: checks, then one ``ops.conv.Conv2d`` node."""
    x = check_float_input(as_tensor(input), op)
    if x.ndim == dims + 1:  # one unbatched sample (C, *spatial), as PyTorch accepts
        return _conv(x.unsqueeze(0), weight, bias, stride, padding, dilation, groups, dims,
                     op).squeeze(0)
    weight = as_tensor(weight)
    bias = None if bias is None else as_tensor(bias)
    check_param_dtype(x, weight, bias)
    if weight.ndim != dims + 2:
        raise ValueError(f"{op}: weight must be (out_channels, in_channels/groups, "
                         f"{'k' if dims == 1 else 'kh, kw'}), got shape {weight.shape}")
    stride = conv_tuple(stride, dims, "stride", 1, op)
    dilation = conv_tuple(dilation, dims, "dilation", 1, op)
    padding = conv_padding(padding, weight.shape[2:], stride, dilation, op)
    groups = check_conv_shapes(x.shape, weight.shape, bias, groups, padding, dilation, op)
    if dims == 1:  # the kernels see a unit height: no padding, stride or dilation there
        stride, padding, dilation = (1,) + stride, (0, 0) + padding, (1,) + dilation
    inputs = (x, weight) if bias is None else (x, weight, bias)
    return ops.Conv2d.apply(*inputs, stride=stride, padding=padding, dilation=dilation,
                            groups=groups)


def conv2d(input: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1):
    """2-D cross-correlation of input (N, C, H, W) with weight (O, C/groups, kh, kw), plus bias.

    y[n, o, p, q] = b[o] + sum_{c, i, j} w[o, c, i, j] x_pad[n, c, p sh + i dh, q sw + j dw],
    c running over the input channels of o's group. stride, padding and dilation are ints or
    (h, w) pairs; padding may also be "valid" (none) or "same" (output size = input size;
    stride 1 only). Output (N, O, Ho, Wo), Ho = (H + 2 ph - dh (kh - 1) - 1) // sh + 1. An
    unbatched input (C, H, W) gives (O, Ho, Wo).
    """
    return _conv(input, weight, bias, stride, padding, dilation, groups, 2, "conv2d")


def conv1d(input: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1):
    """1-D cross-correlation of input (N, C, L) with weight (O, C/groups, k), plus bias: conv2d
    at unit height. Output (N, O, Lo), Lo = (L + 2 p - d (k - 1) - 1) // s + 1; an unbatched
    input (C, L) gives (O, Lo)."""
    return _conv(input, weight, bias, stride, padding, dilation, groups, 1, "conv1d")


def pad(input: Any, pad: Any, mode: str = "constant", value: float | None = None):
    """Pad input, PyTorch's order: ``pad = (left, right)`` pads the last dim,
    ``(left, right, top, bottom)`` the last two, and so on; negative widths crop.

    mode "constant" fills with ``value`` (default 0); "reflect" mirrors the input about its
    edge element ([1 2 3] padded by 2 on the left: 3 2 | 1 2 3), "replicate" repeats the edge
    (1 1 | 1 2 3), "circular" wraps around (2 3 | 1 2 3); these three pad the last 1-3 dims
    and take no value. Differentiable: the gradient of each output element goes to the input
    element it holds."""
    x = as_tensor(input)
    widths = pad_widths(pad, x.shape, mode)
    if mode != "constant":
        if value is not None:
            raise ValueError(f"pad: mode {mode!r} takes no value (it copies the input), got "
                             f"value={value!r}")
        return ops.BorderPad.apply(x, widths=widths, mode=mode)
    value = check_pad_value(data_of(0.0 if value is None else value), x.data.dtype)
    return ops.Pad.apply(x, widths=widths, value=value)

"""The argument rules of pooling, convolution and padding (window sizes, strides, paddings,
dilations, groups and output sizes), PyTorch's, each written once; the general rules are in
``_rules``."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._rules import (
    _real,
)

# ----------------------------------------------------------------------------- pooling


def pool_pair(value: Any, name: str, op: str, minimum: int) -> tuple[int, int]:
    """PyTorch's int-or-pair convention: an int for both (height, width), or a tuple/list of
    two ints, each at least ``minimum`` (a float such as 2.0 is refused, not truncated)."""
    if type(value) is int and value >= minimum:  # the common call
        return value, value
    pair = (value, value) if not isinstance(value, tuple | list) else tuple(value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int | np.integer)
                             for v in pair):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if pair[0] < minimum or pair[1] < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return int(pair[0]), int(pair[1])


def check_pool_input(shape: tuple[int, ...], op: str) -> tuple[int, int]:
    """Pooling takes (N, C, H, W) or unbatched (C, H, W) with C, H, W > 0; returns (H, W)."""
    if len(shape) not in (3, 4):
        raise ValueError(f"{op}: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, "
                         f"got {len(shape)}-D input of shape {shape}")
    if 0 in shape[-3:]:
        raise ValueError(f"{op}: expected C, H and W > 0, got input of shape {shape}")
    return shape[-2], shape[-1]


def check_pool_padding(padding: tuple[int, int], kernel_size: tuple[int, int], op: str) -> None:
    """Padding at most half the kernel (PyTorch's rule): a wider pad would make windows of
    padding alone."""
    if padding[0] > kernel_size[0] // 2 or padding[1] > kernel_size[1] // 2:
        raise ValueError(f"{op}: padding must be at most half the kernel size, got padding "
                         f"{padding} for kernel_size {kernel_size}")


def pool_output_size(in_size: tuple[int, int], kernel_size: tuple[int, int],
                     stride: tuple[int, int], padding: tuple[int, int],
                     dilation: tuple[int, int], ceil_mode: bool, op: str) -> tuple[int, int]:
    """PyTorch's output size: floor (or ceil) of (L + 2p - d(k - 1) - 1) / s, plus 1; in
    ceil_mode the last window must start inside the input or its left padding."""
    out = []
    for i in (0, 1):  # indices, not a zip of six pairs: this runs on every call
        L, k, s, p, d = in_size[i], kernel_size[i], stride[i], padding[i], dilation[i]
        span = d * (k - 1) + 1
        room = L + 2 * p - span  # negative when the kernel is larger than the padded input
        n = (room + (s - 1 if ceil_mode else 0)) // s + 1
        if ceil_mode and (n - 1) * s >= L + p:
            n -= 1
        if n < 1:  # ceil_mode may still fit one (partial) window: PyTorch's output size is 1
            raise ValueError(f"{op}: the kernel ({span} with dilation) is larger than the padded "
                             f"input ({L} + 2 * {p} = {L + 2 * p}) along {'HW'[i]}; expected an "
                             f"input of at least {span - 2 * p}, got {L}")
        out.append(n)
    return out[0], out[1]


def adaptive_output_size(output_size: Any, in_size: tuple[int, int], op: str) -> tuple[int, int]:
    """An int, or a pair whose None entries keep the input's size; each a positive int."""
    if type(output_size) is int and output_size >= 1:  # the common call
        return output_size, output_size
    if output_size is None:
        raise TypeError(f"{op}: output_size must be an int or a pair, got None")
    pair = (output_size, output_size) if not isinstance(output_size, tuple | list) \
        else tuple(output_size)
    if len(pair) != 2:
        raise TypeError(f"{op}: output_size must be an int or a pair, got {output_size!r}")
    pair = tuple(L if v is None else v for v, L in zip(pair, in_size, strict=True))
    return pool_pair(pair, "output_size", op, 1)


# ----------------------------------------------------------------------------- convolution


def conv_tuple(value: Any, n: int, name: str, low: int, op: str) -> tuple[int, ...]:
    """An int or a sequence of n ints (kernel_size, stride, padding, dilation), each >= low,
    as a tuple of Python ints: a float such as 1.0 is refused, not truncated."""
    # the common cases first: an int, or a tuple of ints as a layer stores it
    if type(value) is int and value >= low:
        return (value,) * n
    if type(value) is tuple and len(value) == n:
        for v in value:  # a loop, not all() over a generator: this runs on every call
            if type(v) is not int or v < low:
                break
        else:
            return value
    values = tuple(value) if isinstance(value, tuple | list) else (value,) * n
    if len(values) != n or any(isinstance(v, bool) or not isinstance(v, int | np.integer)
                               for v in values):
        raise TypeError(f"{op}: {name} must be an int or a tuple of {n} ints, got {value!r}")
    if any(v < low for v in values):
        raise ValueError(f"{op}: {name} must be >= {low}, got {value!r}")
    return tuple(int(v) for v in values)


def conv_padding(padding: Any, kernel: tuple[int, ...], stride: tuple[int, ...],
                 dilation: tuple[int, ...], op: str) -> tuple[int, ...]:
    """Padding as (before, after) per spatial dim, flattened: an int, a tuple, "valid" (none)
    or "same" (stride 1 only; the odd one of an even total goes after, as in PyTorch)."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0,) * (2 * len(kernel))
        if padding != "same":
            raise ValueError(f"{op}: padding must be an int, a tuple, 'same' or 'valid', "
                             f"got {padding!r}")
        if any(s != 1 for s in stride):
            raise ValueError(f"{op}: padding='same' needs stride 1, got stride {stride}")
        totals = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
        return tuple(p for t in totals for p in (t // 2, t - t // 2))
    pairs = conv_tuple(padding, len(kernel), "padding", 0, op)
    if len(pairs) == 2:  # the common 2-D case, without a generator (this runs every call)
        return pairs[0], pairs[0], pairs[1], pairs[1]
    return tuple(p for p in pairs for _ in (0, 1))


def check_conv_shapes(x_shape: tuple[int, ...], w_shape: tuple[int, ...], bias: Any,
                      groups: Any, padding: tuple[int, ...], dilation: tuple[int, ...],
                      op: str) -> int:
    """Input (N, C, *spatial), weight (O, C/groups, *kernel), bias (O,) or None, a groups that
    divides C and O, and a dilated kernel no larger than the padded input; returns groups."""
    dims = len(w_shape) - 2
    if type(groups) is not int:  # an exact int is the common call: no isinstance chain
        if isinstance(groups, bool) or not isinstance(groups, int | np.integer):
            raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
        groups = int(groups)
    if groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    spatial = "(N, C, L) or (C, L)" if dims == 1 else "(N, C, H, W) or (C, H, W)"
    if len(x_shape) != dims + 2:
        raise ValueError(f"{op}: expected input {spatial}, got shape {x_shape}")
    if dims < 1 or 0 in w_shape:
        raise ValueError(f"{op}: weight must be (out_channels, in_channels/groups, *kernel) "
                         f"with no zero size, got shape {w_shape}")
    if w_shape[0] % groups:
        raise ValueError(f"{op}: out_channels {w_shape[0]} is not divisible by groups={groups}")
    if x_shape[1] != w_shape[1] * groups:
        raise ValueError(f"{op}: expected input with {w_shape[1] * groups} channels (weight "
                         f"{w_shape}, groups={groups}), got {x_shape[1]} channels in input "
                         f"of shape {x_shape}")
    if bias is not None and bias.shape != w_shape[:1]:
        raise ValueError(f"{op}: bias must have shape {w_shape[:1]}, got {bias.shape}")
    for k in range(dims):
        padded = x_shape[2 + k] + padding[2 * k] + padding[2 * k + 1]
        if dilation[k] * (w_shape[2 + k] - 1) + 1 > padded:
            _kernel_too_large(x_shape, w_shape, padding, dilation, op)
    return groups


def _kernel_too_large(x_shape: tuple[int, ...], w_shape: tuple[int, ...],
                      padding: tuple[int, ...], dilation: tuple[int, ...], op: str) -> None:
    padded = tuple(n + padding[2 * k] + padding[2 * k + 1] for k, n in enumerate(x_shape[2:]))
    span = tuple(d * (k - 1) + 1 for k, d in zip(w_shape[2:], dilation, strict=True))
    raise ValueError(f"{op}: the kernel (dilated size {span}) is larger than the padded "
                     f"input {padded} (input shape {x_shape})")


PAD_MODES = ("constant", "reflect", "replicate", "circular")


def pad_widths(pad: Any, shape: tuple[int, ...], mode: Any) -> tuple[tuple[int, int], ...]:
    """PyTorch's pad tuple (last dim first: (left, right, top, bottom, ...)) as one
    (before, after) pair per dim of ``shape``; negative widths crop, at most the dim's size
    together (PyTorch refuses more, even when the other side pads)."""
    if mode not in PAD_MODES:
        raise ValueError(f"pad: mode must be one of {PAD_MODES}, got {mode!r}")
    if not isinstance(pad, tuple | list) or len(pad) % 2 or len(pad) // 2 > len(shape):
        raise ValueError(f"pad: pad must be a tuple of an even number of ints, at most "
                         f"2 * ndim = {2 * len(shape)}, got {pad!r}")
    if any(isinstance(p, bool) or not isinstance(p, int | np.integer) for p in pad):
        raise TypeError(f"pad: pad must hold ints, got {pad!r}")
    pairs = [(int(pad[2 * k]), int(pad[2 * k + 1])) for k in range(len(pad) // 2)]
    widths = [(0, 0)] * (len(shape) - len(pairs)) + pairs[::-1]
    for axis, (n, (b, a)) in enumerate(zip(shape, widths, strict=True)):
        if max(-b, 0) + max(-a, 0) > n:  # negative widths crop values the dim must have
            raise ValueError(f"pad: widths {(b, a)} crop {max(-b, 0) + max(-a, 0)} values from "
                             f"dim {axis} of size {n} (input shape {shape})")
    if mode != "constant":
        _check_copy_padding(tuple(pad), shape, widths, mode)
    return tuple(widths)


def _check_copy_padding(pad: tuple, shape: tuple[int, ...], widths: list, mode: str) -> None:
    """PyTorch's limits on the modes that copy input values into the border: they pad the last
    1, 2 or 3 dims of an input with one or two more dims (batch and channel, or channel
    alone); reflect needs widths below the size (a border is one mirror image, without the
    edge), circular at most the size left after cropping (it wraps around once), replicate a
    non-empty dim."""
    padded = len(pad) // 2
    if padded > 3 or not padded + 1 <= len(shape) <= padded + 2:
        raise ValueError(f"pad: mode {mode!r} pads the last 1, 2 or 3 dims of an input with 1 or "
                         f"2 more dims; got pad {pad} ({padded} dims) for an input of shape "
                         f"{shape}")
    for axis in range(len(shape) - padded, len(shape)):
        n, (before, after) = shape[axis], widths[axis]
        if mode == "circular":  # it wraps what is left once negative widths have cropped
            n -= max(-before, 0) + max(-after, 0)
        too_wide = {"reflect": max(before, after) >= n, "circular": max(before, after) > n,
                    "replicate": n == 0 and max(before, after) > 0}[mode]
        if too_wide:
            limit = {"reflect": "less than", "circular": "at most",
                     "replicate": "(a non-empty dim) for"}[mode]
            raise ValueError(f"pad: mode {mode!r} needs padding {limit} the size of the dim it "
                             f"pads; got ({before}, {after}) for dim {axis} of size {n} "
                             f"(input shape {shape})")


def check_pad_value(value: Any, dtype: np.dtype) -> Any:
    """pad's fill value: a real number, and a whole one for an integer input (2.5 would be
    truncated silently)."""
    number = _real(value, "pad: value")
    if dtype.kind != "f" and not float(number).is_integer():
        raise ValueError(f"pad: value {value!r} cannot be stored in an input of dtype {dtype}")
    return value

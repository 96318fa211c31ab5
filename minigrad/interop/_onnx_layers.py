"""One ONNX emitter per minigrad layer: each adds the nodes that compute the layer in eval mode
(ONNX opset 17) and returns the name of its output.

An emitter gets the layer, the graph being built, the name of its input, the input and output
shapes seen when the example ran through minigrad, and the layer's path in the model (used to
name initializers). Where ONNX has the op with the same meaning (Conv, BatchNormalization in
eval, LayerNormalization, pooling) it is used; the rest is composed from elementwise ops and
reductions, with the formula in a comment.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..functional._rules_spatial import conv_padding, pool_pair

Shape = tuple[int, ...]


class Unsupported(Exception):
    """A layer setting with no ONNX export; the message says which."""


def _array(t: Any) -> np.ndarray:
    return t.data


def _channel(g: Any, name: str, values: np.ndarray, rank: int) -> str:
    """A per-channel vector (C,) as a constant of shape (C, 1, ..., 1) that broadcasts over an
    input of ``rank`` dims laid out (N, C, *spatial)."""
    return g.const(name, values.reshape((-1,) + (1,) * (rank - 2)))


def _normalize(g: Any, x: str, axes: list[int], eps: float, dtype: np.dtype, path: str) -> str:
    """(x - mean) / sqrt(var + eps), mean and biased var over ``axes`` (kept as size 1)."""
    mean = g.op("ReduceMean", [x], f"{path}.mean", axes=axes, keepdims=1)
    centred = g.op("Sub", [x, mean], f"{path}.centred")
    var = g.op("ReduceMean", [g.op("Mul", [centred, centred], f"{path}.sq")], f"{path}.var",
               axes=axes, keepdims=1)
    eps_name = g.const(f"{path}.eps", np.array(eps, dtype))
    std = g.op("Sqrt", [g.op("Add", [var, eps_name], f"{path}.var_eps")], f"{path}.std")
    return g.op("Div", [centred, std], f"{path}.normalized")


def _channel_affine(g: Any, layer: Any, y: str, rank: int, path: str) -> str:
    if layer._parameters.get("weight") is None:
        return y
    weight = _channel(g, f"{path}.weight", _array(layer.weight), rank)
    y = g.op("Mul", [y, weight], f"{path}.scaled")
    return g.op("Add", [y, _channel(g, f"{path}.bias", _array(layer.bias), rank)], f"{path}.out")


def linear(layer, g, x, shape_in, shape_out, path):
    # y = x W^T + b; W^T is stored so that MatMul broadcasts over any leading dims
    y = g.op("MatMul", [x, g.const(f"{path}.weight_t", _array(layer.weight).T.copy())],
             f"{path}.matmul")
    if layer.bias is None:
        return y
    return g.op("Add", [y, g.const(f"{path}.bias", _array(layer.bias))], f"{path}.out")


def conv(layer, g, x, shape_in, shape_out, path):
    if len(shape_in) != layer._dims + 2:
        raise Unsupported(f"unbatched input of shape {shape_in}")
    pads = conv_padding(layer.padding, layer.kernel_size, layer.stride, layer.dilation,
                        type(layer).__name__)
    inputs = [x, g.const(f"{path}.weight", _array(layer.weight))]
    if layer.bias is not None:
        inputs.append(g.const(f"{path}.bias", _array(layer.bias)))
    return g.op("Conv", inputs, f"{path}.out", kernel_shape=list(layer.kernel_size),
                strides=list(layer.stride), dilations=list(layer.dilation), group=layer.groups,
                pads=list(pads[0::2]) + list(pads[1::2]))  # ONNX: all begins, then all ends


def _window(layer, shape_in, shape_out, dilation):
    """kernel, stride, padding of a pooling layer, after checking that ONNX's output size
    rule (no PyTorch adjustment in ceil mode) gives the size minigrad gave."""
    if len(shape_in) != 4:
        raise Unsupported(f"unbatched input of shape {shape_in}")
    name = type(layer).__name__
    kernel = pool_pair(layer.kernel_size, "kernel_size", name, 1)
    stride = pool_pair(layer.stride, "stride", name, 1)
    padding = pool_pair(layer.padding, "padding", name, 0)
    rounding = math.ceil if layer.ceil_mode else math.floor
    onnx_size = tuple(rounding((n + 2 * p - d * (k - 1) - 1) / s) + 1 for n, k, s, p, d in
                      zip(shape_in[2:], kernel, stride, padding, dilation, strict=True))
    if onnx_size != tuple(shape_out[2:]):
        raise Unsupported(f"ceil_mode=True on input {shape_in[2:]}: ONNX would give "
                          f"{onnx_size}, minigrad gives {tuple(shape_out[2:])}")
    return list(kernel), list(stride), list(padding) * 2


def max_pool(layer, g, x, shape_in, shape_out, path):
    dilation = pool_pair(layer.dilation, "dilation", "MaxPool2d", 1)
    kernel, stride, pads = _window(layer, shape_in, shape_out, dilation)
    return g.op("MaxPool", [x], f"{path}.out", kernel_shape=kernel, strides=stride, pads=pads,
                dilations=list(dilation), ceil_mode=int(layer.ceil_mode))


def avg_pool(layer, g, x, shape_in, shape_out, path):
    kernel, stride, pads = _window(layer, shape_in, shape_out, (1, 1))
    return g.op("AveragePool", [x], f"{path}.out", kernel_shape=kernel, strides=stride,
                pads=pads, ceil_mode=int(layer.ceil_mode),
                count_include_pad=int(layer.count_include_pad))


def adaptive_avg_pool(layer, g, x, shape_in, shape_out, path):
    if len(shape_in) != 4:
        raise Unsupported(f"unbatched input of shape {shape_in}")
    if tuple(shape_out[2:]) == (1, 1):
        return g.op("GlobalAveragePool", [x], f"{path}.out")
    (h, w), (oh, ow) = shape_in[2:], shape_out[2:]
    if h % oh or w % ow:  # windows of unequal sizes: no single ONNX pooling op
        raise Unsupported(f"output {oh}x{ow} from input {h}x{w} (the sizes must divide)")
    return g.op("AveragePool", [x], f"{path}.out", kernel_shape=[h // oh, w // ow],
                strides=[h // oh, w // ow])


def batch_norm(layer, g, x, shape_in, shape_out, path):
    rank, dtype = len(shape_in), np.dtype(_dtype_of(layer))
    if layer.track_running_stats:  # eval mode: the running statistics
        if rank < 3 and type(layer).__name__.startswith("InstanceNorm"):
            raise Unsupported(f"unbatched input of shape {shape_in}")
        channels = layer.num_features
        weight = _array(layer.weight) if layer.affine else np.ones(channels, dtype)
        bias = _array(layer.bias) if layer.affine else np.zeros(channels, dtype)
        inputs = [x, g.const(f"{path}.weight", weight), g.const(f"{path}.bias", bias),
                  g.const(f"{path}.running_mean", _array(layer.running_mean)),
                  g.const(f"{path}.running_var", _array(layer.running_var))]
        return g.op("BatchNormalization", inputs, f"{path}.out", epsilon=layer.eps)
    # statistics of the input itself: over the batch and positions (BatchNorm), or over the
    # positions of each sample (InstanceNorm, whose unbatched (C, *) input has no batch axis)
    if type(layer).__name__.startswith("InstanceNorm"):
        batched = rank == layer.spatial_ndim + 2
        y = _normalize(g, x, list(range(2 if batched else 1, rank)), layer.eps, dtype, path)
        return _channel_affine(g, layer, y, rank, path) if batched else \
            _unbatched_affine(g, layer, y, rank, path)
    y = _normalize(g, x, [0, *range(2, rank)], layer.eps, dtype, path)
    return _channel_affine(g, layer, y, rank, path)


def _unbatched_affine(g, layer, y, rank, path):
    if layer._parameters.get("weight") is None:
        return y
    shape = (-1,) + (1,) * (rank - 1)
    y = g.op("Mul", [y, g.const(f"{path}.weight", _array(layer.weight).reshape(shape))],
             f"{path}.scaled")
    return g.op("Add", [y, g.const(f"{path}.bias", _array(layer.bias).reshape(shape))],
                f"{path}.out")


def group_norm(layer, g, x, shape_in, shape_out, path):
    # per sample, over each group of C / G channels and all positions: view as (N, G, rest)
    grouped = g.op("Reshape", [x, g.const(f"{path}.grouped_shape",
                                          np.array([0, layer.num_groups, -1], np.int64))],
                   f"{path}.grouped")
    y = _normalize(g, grouped, [2], layer.eps, np.dtype(_dtype_of(layer)), path)
    y = g.op("Reshape", [y, g.op("Shape", [x], f"{path}.shape")], f"{path}.ungrouped")
    return _channel_affine(g, layer, y, len(shape_in), path)


def layer_norm(layer, g, x, shape_in, shape_out, path):
    dtype = np.dtype(_dtype_of(layer))
    ones = np.ones(layer.normalized_shape, dtype)
    weight = _array(layer.weight) if layer.elementwise_affine else ones
    inputs = [x, g.const(f"{path}.weight", weight)]
    if layer.elementwise_affine:
        inputs.append(g.const(f"{path}.bias", _array(layer.bias)))
    return g.op("LayerNormalization", inputs, f"{path}.out",
                axis=-len(layer.normalized_shape), epsilon=layer.eps)


def rms_norm(layer, g, x, shape_in, shape_out, path):
    # y = x / sqrt(mean(x^2) + eps) * weight over the trailing normalized_shape dims
    dtype = np.dtype(_dtype_of(layer))
    eps = np.finfo(dtype).eps if layer.eps is None else layer.eps
    axes = list(range(len(shape_in) - len(layer.normalized_shape), len(shape_in)))
    mean_sq = g.op("ReduceMean", [g.op("Mul", [x, x], f"{path}.sq")], f"{path}.mean_sq",
                   axes=axes, keepdims=1)
    rms = g.op("Sqrt", [g.op("Add", [mean_sq, g.const(f"{path}.eps", np.array(eps, dtype))],
                             f"{path}.mean_sq_eps")], f"{path}.rms")
    y = g.op("Div", [x, rms], f"{path}.normalized")
    if layer.weight is None:
        return y
    return g.op("Mul", [y, g.const(f"{path}.weight", _array(layer.weight))], f"{path}.out")


def _dtype_of(layer) -> np.dtype:
    for t in (*layer._parameters.values(), *layer._buffers.values()):
        if t is not None and t.data.dtype.kind == "f":
            return t.data.dtype
    return np.dtype(np.float32)


def gelu(layer, g, x, shape_in, shape_out, path):
    # exact GELU: 0.5 x (1 + erf(x / sqrt(2))), in the input's dtype
    dtype = g.dtype  # the dtype of this layer's input
    scaled = g.op("Div", [x, g.const(f"{path}.sqrt2", np.array(math.sqrt(2), dtype))],
                  f"{path}.scaled")
    one_plus = g.op("Add", [g.op("Erf", [scaled], f"{path}.erf"),
                            g.const(f"{path}.one", np.array(1, dtype))], f"{path}.one_plus")
    half_x = g.op("Mul", [x, g.const(f"{path}.half", np.array(0.5, dtype))], f"{path}.half_x")
    return g.op("Mul", [half_x, one_plus], f"{path}.out")


def silu(layer, g, x, shape_in, shape_out, path):
    return g.op("Mul", [x, g.op("Sigmoid", [x], f"{path}.sigmoid")], f"{path}.out")


def flatten(layer, g, x, shape_in, shape_out, path):
    # Reshape: 0 copies the input's dim (the batch may vary), -1 takes the merged span
    rank = len(shape_in)
    start, end = layer.start_dim % max(rank, 1), layer.end_dim % max(rank, 1)
    target = [0] * start + [-1] + list(shape_in[end + 1:])
    return g.op("Reshape", [x, g.const(f"{path}.shape", np.array(target, np.int64))],
                f"{path}.out")


def refusal(layer: Any) -> str | None:
    """What makes ``layer`` unexportable whatever its input, checked before the example runs
    (an Embedding with max_norm would rewrite its table during that run)."""
    if type(layer).__name__ == "Embedding" and layer.max_norm is not None:
        return "max_norm (it renormalises the table at every lookup)"
    return None


def embedding(layer, g, x, shape_in, shape_out, path):
    return g.op("Gather", [g.const(f"{path}.weight", _array(layer.weight)), x], f"{path}.out",
                axis=0)


def _simple(op: str, **attrs: Callable[[Any], Any]) -> Callable[..., str]:
    """An emitter for a one-node layer whose attributes come from the layer's settings."""
    def emit(layer, g, x, shape_in, shape_out, path):
        return g.op(op, [x], f"{path}.out", **{k: f(layer) for k, f in attrs.items()})
    return emit


def _passthrough(layer, g, x, shape_in, shape_out, path):
    return x  # Dropout and Identity in eval mode


EMITTERS: dict[str, Callable[..., str]] = {
    "Linear": linear, "Conv1d": conv, "Conv2d": conv,
    "MaxPool2d": max_pool, "AvgPool2d": avg_pool, "AdaptiveAvgPool2d": adaptive_avg_pool,
    "BatchNorm1d": batch_norm, "BatchNorm2d": batch_norm,
    "InstanceNorm1d": batch_norm, "InstanceNorm2d": batch_norm,
    "GroupNorm": group_norm, "LayerNorm": layer_norm, "RMSNorm": rms_norm,
    "ReLU": _simple("Relu"), "Sigmoid": _simple("Sigmoid"), "Tanh": _simple("Tanh"),
    "LeakyReLU": _simple("LeakyRelu", alpha=lambda m: float(m.negative_slope)),
    "Softmax": _simple("Softmax", axis=lambda m: int(m.dim)),
    "LogSoftmax": _simple("LogSoftmax", axis=lambda m: int(m.dim)),
    "GELU": gelu, "SiLU": silu, "Flatten": flatten, "Embedding": embedding,
    "Dropout": _passthrough, "Identity": _passthrough,
}

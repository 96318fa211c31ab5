"""The layers minigrad.nn and torch.nn share: for each, the constructor arguments both take
(read back from a built layer's attributes of the same name) and what needs translating.

The two frameworks use PyTorch's argument names, so most layers are a list of names. Three
things differ: BatchNorm/InstanceNorm momentum (minigrad weights the old running statistic,
PyTorch the new batch: 0.9 here is 0.1 there), the dtype argument (a NumPy dtype here, a torch
dtype there), and a few PyTorch options minigrad does not implement, which must have the one
value minigrad computes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CONTAINERS = ("Sequential", "ModuleList", "ModuleDict")


@dataclass(frozen=True)
class LayerSpec:
    """How one layer class is rebuilt in the other framework.

    Attributes:
        fields: constructor arguments, read from the attributes of the same name.
        bias: also pass ``bias=(layer.bias is not None)``.
        momentum: pass ``momentum`` in the target's convention (1 - the source's).
        dtype: pass the dtype of the layer's float parameters and buffers.
        torch_only: PyTorch attributes with no minigrad argument, each with the only value
            minigrad computes.
        torch_check: names a PyTorch setting minigrad cannot follow (None when all is well).
    """

    fields: tuple[str, ...] = ()
    bias: bool = False
    momentum: bool = False
    dtype: bool = False
    torch_only: tuple[tuple[str, Any], ...] = ()
    torch_check: Callable[[Any], str | None] | None = field(default=None, compare=False)


def _norm_bias_check(layer: Any) -> str | None:
    if getattr(layer, "weight", None) is not None and getattr(layer, "bias", None) is None:
        return "bias=False (minigrad's normalization layers learn a bias with their weight)"
    return None


def _softmax_check(layer: Any) -> str | None:
    if layer.dim is None:
        return "dim=None (PyTorch picks the axis from the input's rank); give dim explicitly"
    return None


_CONV = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
         "groups", "padding_mode")
_STATS = LayerSpec(("num_features", "eps", "affine", "track_running_stats"), momentum=True,
                   dtype=True, torch_check=_norm_bias_check)
_CONV_SPEC = LayerSpec(_CONV, bias=True, dtype=True, torch_only=(("padding_mode", "zeros"),))
_PLAIN = LayerSpec()

LAYERS: dict[str, LayerSpec] = {
    "Linear": LayerSpec(("in_features", "out_features"), bias=True, dtype=True),
    "Conv1d": _CONV_SPEC,
    "Conv2d": _CONV_SPEC,
    "MaxPool2d": LayerSpec(("kernel_size", "stride", "padding", "dilation", "ceil_mode"),
                           torch_only=(("return_indices", False),)),
    "AvgPool2d": LayerSpec(("kernel_size", "stride", "padding", "ceil_mode",
                            "count_include_pad"), torch_only=(("divisor_override", None),)),
    "AdaptiveAvgPool2d": LayerSpec(("output_size",)),
    "BatchNorm1d": _STATS,
    "BatchNorm2d": _STATS,
    "InstanceNorm1d": _STATS,
    "InstanceNorm2d": _STATS,
    "LayerNorm": LayerSpec(("normalized_shape", "eps", "elementwise_affine"), dtype=True,
                           torch_check=_norm_bias_check),
    "GroupNorm": LayerSpec(("num_groups", "num_channels", "eps", "affine"), dtype=True,
                           torch_check=_norm_bias_check),
    "RMSNorm": LayerSpec(("normalized_shape", "eps", "elementwise_affine"), dtype=True),
    "ReLU": _PLAIN,
    "Sigmoid": _PLAIN,
    "Tanh": _PLAIN,
    "SiLU": _PLAIN,
    "Identity": _PLAIN,
    "LeakyReLU": LayerSpec(("negative_slope",)),
    "GELU": LayerSpec(torch_only=(("approximate", "none"),)),
    "Softmax": LayerSpec(("dim",), torch_check=_softmax_check),
    "LogSoftmax": LayerSpec(("dim",), torch_check=_softmax_check),
    "Flatten": LayerSpec(("start_dim", "end_dim")),
    "Dropout": LayerSpec(("p",)),
    "Embedding": LayerSpec(("num_embeddings", "embedding_dim", "padding_idx", "max_norm",
                            "norm_type", "scale_grad_by_freq"), dtype=True,
                           torch_only=(("sparse", False),)),
}


def flip_momentum(momentum: float) -> float:
    """The momentum of the other convention, 1 - momentum.

    Rounded to 15 significant digits: 1 - 0.9 is 0.09999999999999998 in binary floating point,
    and 0.1 is what the user of either framework would have written (the change is below
    1e-15 relative, far under float32's resolution of the running statistics).
    """
    return float(f"{1.0 - momentum:.15g}")


def torch_problems(spec: LayerSpec, layer: Any) -> list[str]:
    """The PyTorch settings of ``layer`` that minigrad's layer of that name cannot follow."""
    problems = [f"{name}={getattr(layer, name)!r} (minigrad supports only {value!r})"
                for name, value in spec.torch_only if getattr(layer, name) != value]
    if spec.momentum and getattr(layer, "momentum", 0.0) is None:
        problems.append("momentum=None (a cumulative average; minigrad keeps an exponential "
                        "one)")
    if spec.torch_check is not None and (problem := spec.torch_check(layer)) is not None:
        problems.append(problem)
    return problems


def constructor_args(spec: LayerSpec, layer: Any, array_dtype: Callable[[Any], Any],
                     dtype_of: Callable[[Any], Any]) -> dict[str, Any]:
    """The keyword arguments that rebuild ``layer`` in the other framework.

    ``array_dtype(a)`` is the NumPy dtype of one of ``layer``'s parameters or buffers and
    ``dtype_of(np_dtype)`` the target framework's dtype object.
    """
    kwargs = {name: getattr(layer, name) for name in spec.fields}
    if spec.bias:
        kwargs["bias"] = layer.bias is not None
    if spec.momentum:
        kwargs["momentum"] = flip_momentum(layer.momentum)
    if spec.dtype:
        dtype = np.dtype(np.float32)
        for array in (*layer._parameters.values(), *layer._buffers.values()):
            if array is not None and array_dtype(array).kind == "f":
                dtype = array_dtype(array)
                break
        if dtype not in (np.float32, np.float64):  # e.g. a half-precision PyTorch model
            raise TypeError(f"dtype {dtype}: minigrad's layers compute in float32 or float64; "
                            f"convert the model first (.float())")
        kwargs["dtype"] = dtype_of(dtype)
    return kwargs

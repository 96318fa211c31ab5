"""``export_onnx``: a minigrad model as an ONNX file for ONNX Runtime and other inference
engines. The optional ``onnx`` package builds and checks the protobuf; it is imported on
first use only."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .. import nn
from .._optional import require
from ..grad_mode import no_grad
from ..serialization import write_atomically
from ..tensor import Tensor
from ._onnx_layers import EMITTERS, Unsupported, refusal
from .pytorch import UnsupportedLayerError

OPSET = 17  # LayerNormalization's first opset; ONNX Runtime has run it since 1.14


def _import_onnx() -> Any:
    return require("onnx", "onnx", "export_onnx")


class _Graph:
    """The nodes and constants of the graph being built, with unique value names."""

    def __init__(self, onnx: Any):
        self.onnx = onnx
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.names: set[str] = set()
        self.dtype = np.dtype(np.float32)  # the float dtype flowing into the current layer

    def _unique(self, hint: str) -> str:
        name, n = hint, 1
        while name in self.names:
            n += 1
            name = f"{hint}_{n}"
        self.names.add(name)
        return name

    def const(self, hint: str, array: np.ndarray) -> str:
        """A constant (an initializer): weights, running statistics, shapes, scalars."""
        name = self._unique(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str, **attrs: Any) -> str:
        """One node with one output, whose name is returned."""
        out = self._unique(hint)
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out


def export_onnx(module: nn.Module, example_input: Any, path: str | os.PathLike, *,
                dynamic_batch: bool = True) -> Any:
    """Write ``module`` in eval mode as an ONNX model (opset 17) to ``path``, atomically.

    ``module`` is a chain of minigrad layers: an ``nn.Sequential`` (nested ones too) of
    Linear, Conv1d/2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, BatchNorm1d/2d,
    InstanceNorm1d/2d, GroupNorm, LayerNorm, RMSNorm, Embedding, the activations, Dropout,
    Flatten and Identity, or one such layer. ``example_input`` runs through the model once
    (in eval mode; each sub-module's mode is restored afterwards) to fix the shapes: the
    graph takes inputs of that shape and dtype, with any batch size when ``dynamic_batch``.
    An ndarray follows ``mg.tensor``'s dtype rule (floats become float32); pass a float64
    Tensor to export a float64 model.
    The model is checked with ``onnx.checker`` (full check) before the file is written.

    Returns:
        The ``onnx.ModelProto`` written.

    Raises:
        UnsupportedLayerError: a layer or setting with no export, named by its path and
            class (a Module with its own ``forward``, ModuleList, a pooling ``ceil_mode``
            whose output size ONNX computes differently, Embedding ``max_norm``, ...).
        ImportError: the onnx package is missing.

    Example:
        >>> export_onnx(model, x[:1], "model.onnx")
        >>> onnxruntime.InferenceSession("model.onnx").run(None, {"input": x_np})
    """
    onnx = _import_onnx()
    layers = _chain(module)
    x = example_input if isinstance(example_input, Tensor) else Tensor(example_input)
    trace = _trace(module, layers, x)
    g = _Graph(onnx)
    name = "input"
    g.names.add(name)
    problems = []
    for (where, layer), (shape_in, dtype_in, shape_out, _) in zip(layers, trace, strict=True):
        g.dtype = dtype_in if dtype_in.kind == "f" else g.dtype
        try:
            name = EMITTERS[type(layer).__name__](layer, g, name, shape_in, shape_out,
                                                   where or "layer")
        except Unsupported as exc:
            problems.append(f"{_where(where)} ({type(layer).__name__}): {exc}")
    if problems:
        raise UnsupportedLayerError("cannot export to ONNX: " + "; ".join(problems))
    g.nodes.append(onnx.helper.make_node("Identity", [name], ["output"], name="output"))
    out_shape, out_dtype = (trace[-1][2], trace[-1][3]) if trace else (x.shape, x.dtype)
    model = _model(onnx, g, x, out_shape, out_dtype, dynamic_batch)
    onnx.checker.check_model(model, full_check=True)
    encoded = model.SerializeToString()
    write_atomically(path, lambda f: f.write(encoded))
    return model


def _where(path: str) -> str:
    return repr(path) if path else "the model itself"


def _chain(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers ``module`` applies in order, with their paths (nested Sequentials are
    flattened); UnsupportedLayerError lists every layer that cannot be exported."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"export_onnx expects a minigrad Module, got {type(module).__name__}")
    layers, problems = [], []
    stack = [("", module)]
    while stack:
        path, layer = stack.pop()
        name = type(layer).__name__
        if type(layer) is nn.Sequential:
            children = [(f"{path}.{k}" if path else k, m) for k, m in layer._modules.items()
                        if m is not None]
            stack.extend(reversed(children))
        elif name in EMITTERS and type(layer) is getattr(nn, name, None):
            if (problem := refusal(layer)) is not None:
                problems.append(f"{_where(path)} ({name}): {problem}")
            layers.append((path, layer))
        else:
            why = ("a Module with its own forward() cannot be traced; export its layers as an "
                   "nn.Sequential" if name not in EMITTERS else "a subclass of a minigrad layer")
            problems.append(f"{_where(path)} ({name}): no ONNX export ({why})")
    if problems:
        raise UnsupportedLayerError("cannot export to ONNX: " + "; ".join(problems))
    return layers


def _trace(module: nn.Module, layers: list[tuple[str, nn.Module]], x: Tensor) -> list[tuple]:
    """(input shape, input dtype, output shape, output dtype) of each layer for ``x``, run in
    eval mode."""
    modes = [(m, m.training) for m in module.modules()]
    shapes = []
    try:
        module.eval()
        with no_grad():
            for _, layer in layers:
                y = layer(x)
                shapes.append((x.shape, x.dtype, y.shape, y.dtype))
                x = y
    finally:
        for m, mode in modes:
            object.__setattr__(m, "training", mode)
    return shapes


def _model(onnx: Any, g: _Graph, x: Tensor, out_shape: tuple[int, ...], out_dtype: np.dtype,
           dynamic_batch: bool) -> Any:
    helper = onnx.helper
    in_dims: list[Any] = list(x.shape)
    if dynamic_batch and in_dims:
        in_dims[0] = "batch"
    elem = helper.np_dtype_to_tensor_dtype(x.dtype)
    out_elem = helper.np_dtype_to_tensor_dtype(out_dtype)
    graph = helper.make_graph(
        g.nodes, "minigrad_model",
        [helper.make_tensor_value_info("input", elem, in_dims)],
        # the output's rank is known; its sizes are left to shape inference
        [helper.make_tensor_value_info("output", out_elem, [None] * len(out_shape))],
        initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="minigrad")
    model.ir_version = 8  # the IR version of opset 17: older runtimes refuse newer ones
    return model

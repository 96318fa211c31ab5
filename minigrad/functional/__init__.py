"""minigrad.functional: the stateless, PyTorch-named API (also ``minigrad.nn.functional``).

It holds the public functions that ``nn`` layers and Tensor methods call: activations
(``relu``, ``gelu``, ``dropout`` ...), ``linear``/``matmul``, ``conv1d``/``conv2d``/``pad``, the
normalizations (``batch_norm``, ``layer_norm``, ``group_norm``, ``instance_norm``, ``rms_norm``),
pooling (``max_pool2d``, ``avg_pool2d``, ``adaptive_avg_pool2d``), lookups by index
(``embedding``, ``one_hot``), the losses, reductions with
``softmax``/``log_softmax``, and shape functions. Each function checks its arguments once (the
rules are in ``_rules``),
applies defaults, and calls one ``Function`` of ``minigrad.ops`` (or, with ``fused=False``,
composes primitive ops). None holds state.
"""

from __future__ import annotations

# tensor.py imports the modules of this package while it is defined: importing it first makes
# that the one import order, whichever of the two a program imports first.
from .. import tensor as _tensor  # noqa: F401
from .activation import dropout, gelu, leaky_relu, relu, sigmoid, silu, tanh
from .conv import conv1d, conv2d, pad
from .linalg import linear
from .lookup import embedding, one_hot
from .loss import (
    binary_cross_entropy_with_logits,
    cross_entropy,
    l1_loss,
    mse_loss,
    nll_loss,
)
from .norm import batch_norm, layer_norm
from .norm_family import group_norm, instance_norm, rms_norm
from .pool import adaptive_avg_pool2d, avg_pool2d, max_pool2d
from .reduce import log_softmax, softmax

__all__ = [
    "adaptive_avg_pool2d",
    "avg_pool2d",
    "max_pool2d",
    "conv1d",
    "conv2d",
    "pad",
    "batch_norm",
    "layer_norm",
    "group_norm",
    "instance_norm",
    "rms_norm",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "l1_loss",
    "mse_loss",
    "nll_loss",
    "dropout",
    "gelu",
    "leaky_relu",
    "linear",
    "log_softmax",
    "relu",
    "sigmoid",
    "silu",
    "softmax",
    "tanh",
    "embedding",
    "one_hot",
]

"""The stateless, PyTorch-named API: what ``nn`` layers call, usable directly as ``F``.

Each function validates its arguments and calls one op; none holds state.
"""

from __future__ import annotations

from .ops.elementwise import dropout, gelu, leaky_relu, relu, sigmoid, silu, tanh
from .ops.linalg import linear
from .ops.loss import (
    binary_cross_entropy_with_logits,
    cross_entropy,
    l1_loss,
    mse_loss,
    nll_loss,
)
from .ops.norm import batch_norm, layer_norm
from .ops.reduce import log_softmax, softmax

__all__ = [
    "batch_norm",
    "layer_norm",
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
]

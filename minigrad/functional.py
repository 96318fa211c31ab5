"""The stateless, PyTorch-named API: what ``nn`` layers call, usable directly as ``F``.

Each function validates its arguments and calls one op; none holds state.
"""

from __future__ import annotations

from .ops.elementwise import dropout, gelu, leaky_relu, relu, sigmoid, silu, tanh
from .ops.linalg import linear
from .ops.reduce import log_softmax, softmax

__all__ = [
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

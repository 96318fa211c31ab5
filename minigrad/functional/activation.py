"""Activations and dropout on Tensors: argument rules, then one Function each."""

from __future__ import annotations

from typing import Any

from ..ops import elementwise as ops
from ..random import generator
from ._convert import as_tensor
from ._rules import check_dropout, check_negative_slope
from .elementwise import mul


def tanh(x: Any):
    """Elementwise tanh."""
    return ops.Tanh.apply(as_tensor(x))


def sigmoid(x: Any):
    """Elementwise logistic sigmoid 1 / (1 + e**-x), without overflow for any x."""
    return ops.Sigmoid.apply(as_tensor(x))


def relu(x: Any):
    """Elementwise max(x, 0) (gradient 0 at 0)."""
    return ops.ReLU.apply(as_tensor(x))


def leaky_relu(x: Any, negative_slope: float = 0.01):
    """x where x > 0, else negative_slope * x."""
    negative_slope = check_negative_slope(negative_slope)
    return ops.LeakyReLU.apply(as_tensor(x), negative_slope=negative_slope)


def gelu(x: Any):
    """x * Phi(x), Phi the standard normal CDF (the exact form, not the tanh approximation)."""
    return ops.GELU.apply(as_tensor(x))


def silu(x: Any):
    """x * sigmoid(x) (also called swish)."""
    return ops.SiLU.apply(as_tensor(x))


def dropout(x: Any, p: float = 0.5, training: bool = True):
    """Zero each element with probability p and scale the rest by 1 / (1 - p); identity when
    not training or p == 0. The mask comes from minigrad's seeded generator."""
    p = check_dropout(p, training)
    x = as_tensor(x)
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return mul(x, 0.0)
    return ops.Dropout.apply(x, p=p, rng=generator())

"""NumPy twins of the compiled activation kernels (``_activation.pyx``): GELU with the exact
normal CDF, and ReLU. Same names, signatures, checks and return values as the kernels."""

from __future__ import annotations

import math

import numpy as np

from ._checks import float_array, same_as, same_shape

_math_erfc = np.frompyfunc(math.erfc, 1, 1)

# Numerical Recipes' Chebyshev fit of erfc (fractional error below 1.2e-7 everywhere)
_ERFC_FIT = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806,
             0.27886807, -1.13520398, 1.48851587, -0.82215223, 0.17087277)


def _erfc(z: np.ndarray) -> np.ndarray:
    """Complementary error function in z's dtype.

    float64 calls the C library's erfc once per element through Python (full precision, which
    gradcheck and float64 users need, but slow: the compiled kernel is the fast path); float32
    uses the Chebyshev fit above, vectorised, about float32's resolution.
    """
    if z.dtype == np.float64:
        return np.asarray(_math_erfc(z), dtype=np.float64)  # a 0-d call returns a float
    t = 1.0 / (1.0 + 0.5 * np.abs(z))
    poly = np.zeros_like(t)
    for c in reversed(_ERFC_FIT):  # Horner over the 10 coefficients, not over elements
        poly = poly * t + c
    erfc_abs = t * np.exp(-z * z + poly)
    return np.where(z >= 0, erfc_abs, 2.0 - erfc_abs)


def gelu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """y = x * Phi(x) with Phi(x) = erfc(-x / sqrt 2) / 2, the standard normal CDF.

    Returns ``(y, cdf)``, both of x's shape and dtype; the backward needs ``cdf``.
    """
    x = float_array("gelu_forward", "x", x)
    cdf = (0.5 * _erfc(-x * (1 / math.sqrt(2)))).astype(x.dtype, copy=False)
    return x * cdf, cdf


def gelu_backward(grad_out: np.ndarray, x: np.ndarray, cdf: np.ndarray) -> np.ndarray:
    """dx = g * (Phi(x) + x * phi(x)) with phi(x) = exp(-x^2 / 2) / sqrt(2 pi)."""
    fn = "gelu_backward"
    x = float_array(fn, "x", x)
    same_as(fn, "grad_out", grad_out, x, x.shape, "the shape of x")
    same_as(fn, "cdf", cdf, x, x.shape, "the shape of x")
    pdf = np.exp(-0.5 * x * x) * x.dtype.type(1 / math.sqrt(2 * math.pi))
    return grad_out * (cdf + x * pdf)


def relu_forward(x: np.ndarray) -> np.ndarray:
    """y = max(x, 0): NaN passes through, -0.0 gives +0.0 (np.maximum's own rules)."""
    return np.maximum(x, 0)


# exercise: relu_backward
def relu_select(grad_out: np.ndarray, y: np.ndarray) -> np.ndarray:
    """ReLU's backward rule: grad_out where y > 0 (or y is NaN), 0 where y <= 0.

    A select, not the product grad_out * (y > 0): the derivative of max(x, 0) is exactly 0
    for x < 0, so an inf or NaN gradient arriving there gives 0, not inf * 0 = NaN (PyTorch's
    rule too). Every ReLU backward (this twin, the compiled loop, the fused norm kernels)
    follows it.
    """
    return np.where(y <= 0, np.zeros((), grad_out.dtype), grad_out)


def relu_backward(grad_out: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dx = grad_out where y > 0, 0 where y <= 0, with y the forward's output (relu_select)."""
    same_shape("relu_backward", "grad_out", grad_out, "y", y)
    return relu_select(grad_out, y)

"""Elementwise Functions: arithmetic, unary math, activations and dropout, on ndarrays.

Broadcasting needs no code here: the engine sums each gradient back to its input's shape.
The user-facing wrappers (dtype promotion, argument rules) live in ``minigrad.functional``.
"""

from __future__ import annotations

import numpy as np

from .. import kernels
from ..autograd import Function

# ----------------------------------------------------------------------------- binary


class Add(Function):
    """y = a + b."""

    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, grad):
        return grad, grad


class Sub(Function):
    """y = a - b."""

    @staticmethod
    def forward(ctx, a, b):
        return a - b

    @staticmethod
    def backward(ctx, grad):
        return grad, (-grad if ctx.needs_input_grad[1] else None)


class Mul(Function):
    """y = a * b;  da = g * b, db = g * a."""

    @staticmethod
    def forward(ctx, a, b):
        # Keep only what the backward reads (b for da, a for db), so that changing an operand
        # no gradient needs in place after the forward is harmless, as in PyTorch.
        needs = ctx.needs_input_grad
        if needs:
            ctx.save_for_backward(a if needs[1] else None, b if needs[0] else None)
        return a * b

    # exercise: mul_backward
    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved
        da = grad * b if ctx.needs_input_grad[0] else None
        db = grad * a if ctx.needs_input_grad[1] else None
        return da, db


class Div(Function):
    """y = a / b;  da = g / b, db = -g * a / b**2."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a / b

    # exercise: div_backward
    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved
        da = grad / b if ctx.needs_input_grad[0] else None
        db = -grad * a / (b * b) if ctx.needs_input_grad[1] else None
        return da, db


class Pow(Function):
    """y = a ** b;  da = g * b * a**(b-1), db = g * y * log(a) (taken as 0 where a == 0)."""

    @staticmethod
    def forward(ctx, a, b):
        y = a**b
        ctx.save_for_backward(a, b, y)
        return y

    # exercise: pow_backward
    @staticmethod
    def backward(ctx, grad):
        a, b, y = ctx.saved
        da = db = None
        if ctx.needs_input_grad[0]:
            da = grad * b * a ** (b - 1)
        if ctx.needs_input_grad[1]:
            with np.errstate(divide="ignore", invalid="ignore"):
                log_a = np.where(a == 0, 0, np.log(np.where(a == 0, 1, a)))
            db = grad * y * log_a
        return da, db


# ----------------------------------------------------------------------------- unary


class Neg(Function):
    """y = -x."""

    @staticmethod
    def forward(ctx, x):
        return -x

    @staticmethod
    def backward(ctx, grad):
        return -grad


class Exp(Function):
    """y = e**x;  dx = g * y."""

    @staticmethod
    def forward(ctx, x):
        y = np.exp(x)
        ctx.save_for_backward(y)
        return y

    # exercise: exp_backward
    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved
        return grad * y


class Log(Function):
    """y = ln(x);  dx = g / x."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.log(x)

    # exercise: log_backward
    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved
        return grad / x


class Sqrt(Function):
    """y = sqrt(x);  dx = g / (2 y)."""

    @staticmethod
    def forward(ctx, x):
        y = np.sqrt(x)
        ctx.save_for_backward(y)
        return y

    # exercise: sqrt_backward
    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved
        return grad / (2 * y)


class Abs(Function):
    """y = |x|;  dx = g * sign(x) (0 at x == 0)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.abs(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved
        return grad * np.sign(x)


class Tanh(Function):
    """y = tanh(x);  dx = g * (1 - y**2)."""

    @staticmethod
    def forward(ctx, x):
        y = np.tanh(x)
        ctx.save_for_backward(y)
        return y

    # exercise: tanh_backward
    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved
        return grad * (1 - y * y)


def _stable_sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e**-x) without overflow: e**-|x| is at most 1 on both branches."""
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + z), z / (1 + z)).astype(x.dtype, copy=False)


class Sigmoid(Function):
    """y = 1 / (1 + e**-x);  dx = g * y * (1 - y)."""

    @staticmethod
    def forward(ctx, x):
        y = _stable_sigmoid(x)
        ctx.save_for_backward(y)
        return y

    # exercise: sigmoid_backward
    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved
        return grad * y * (1 - y)


class ReLU(Function):
    """y = max(x, 0);  dx = g where x > 0, else 0."""

    @staticmethod
    def forward(ctx, x):
        y = kernels.impl.relu_forward(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved
        return kernels.impl.relu_backward(grad, y)


class LeakyReLU(Function):
    """y = x if x > 0 else slope * x;  dx = g or slope * g."""

    @staticmethod
    def forward(ctx, x, *, negative_slope):
        ctx.save_for_backward(x)
        ctx.negative_slope = negative_slope
        return np.where(x > 0, x, x * x.dtype.type(negative_slope))

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved
        return np.where(x > 0, grad, grad * grad.dtype.type(ctx.negative_slope))


class GELU(Function):
    """y = x * Phi(x) with the exact normal CDF Phi;  dx = g * (Phi(x) + x * phi(x))."""

    @staticmethod
    def forward(ctx, x):
        y, cdf = kernels.impl.gelu_forward(x)
        ctx.save_for_backward(x, cdf)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, cdf = ctx.saved
        return kernels.impl.gelu_backward(grad, x, cdf)


class SiLU(Function):
    """y = x * sigmoid(x);  dx = g * s * (1 + x * (1 - s))."""

    @staticmethod
    def forward(ctx, x):
        s = _stable_sigmoid(x)
        ctx.save_for_backward(x, s)
        return x * s

    @staticmethod
    def backward(ctx, grad):
        x, s = ctx.saved
        return grad * s * (1 + x * (1 - s))


class Clip(Function):
    """y = min(max(x, lo), hi);  dx = g where lo <= x <= hi, else 0."""

    @staticmethod
    def forward(ctx, x, *, lo, hi):
        ctx.save_for_backward(x)
        ctx.lo, ctx.hi = lo, hi
        return np.clip(x, lo, hi)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved
        inside = np.ones(x.shape, dtype=bool)
        if ctx.lo is not None:
            inside &= x >= ctx.lo
        if ctx.hi is not None:
            inside &= x <= ctx.hi
        # a select, not grad * inside: an inf or NaN gradient stops where the clip is flat
        return np.where(inside, grad, np.zeros((), grad.dtype))


class Dropout(Function):
    """y = x * mask / (1 - p) with mask ~ Bernoulli(1 - p) (inverted dropout);  dx = g * same."""

    @staticmethod
    def forward(ctx, x, *, p, rng):
        keep = rng.random(x.shape) >= p
        scale = (keep / (1.0 - p)).astype(x.dtype)
        ctx.save_for_backward(scale)
        return x * scale

    @staticmethod
    def backward(ctx, grad):
        (scale,) = ctx.saved
        return grad * scale

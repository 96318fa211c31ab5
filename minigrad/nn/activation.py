"""Activation layers: thin Modules over the functional forms."""

from __future__ import annotations

from .. import functional as F
from ..functional import shape
from ..functional._rules import check_negative_slope
from ..tensor import Tensor
from .module import Module


class ReLU(Module):
    """y = max(x, 0) elementwise, any shape; the gradient at x == 0 is 0."""

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x)


class LeakyReLU(Module):
    """y = x if x > 0 else negative_slope * x, elementwise; ``negative_slope`` defaults to
    0.01 (as PyTorch) and must be a finite number."""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = check_negative_slope(negative_slope)

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Sigmoid(Module):
    """y = 1 / (1 + e**-x) elementwise; dy/dx = y (1 - y)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.sigmoid(x)


class Tanh(Module):
    """y = tanh(x) elementwise; dy/dx = 1 - y**2."""

    def forward(self, x: Tensor) -> Tensor:
        return F.tanh(x)


class GELU(Module):
    """y = x * Phi(x), Phi the standard normal CDF, computed exactly with erf (PyTorch's
    default ``approximate="none"``; there is no tanh approximation)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x)


class SiLU(Module):
    """y = x * sigmoid(x) elementwise (also called swish)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.silu(x)


class Softmax(Module):
    """y_i = e**x_i / sum_j e**x_j along ``dim`` (alias ``axis``), computed after subtracting
    the max so large logits do not overflow. ``dim`` defaults to -1, the last axis; PyTorch's
    Softmax has no default (it guesses one with a warning)."""

    def __init__(self, dim: int = -1, *, axis: int | None = None):
        super().__init__()
        self.dim = dim if axis is None else axis

    def forward(self, x: Tensor) -> Tensor:
        return F.softmax(x, axis=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """y = x - logsumexp(x) along ``dim`` (default -1): the log of Softmax, without the
    underflow of taking log(softmax(x)) for very negative logits."""

    def forward(self, x: Tensor) -> Tensor:
        return F.log_softmax(x, axis=self.dim)


class Flatten(Module):
    """Merge dims start_dim..end_dim (inclusive; negative counts from the end) into one: by
    default (N, d1, d2, ...) -> (N, d1 * d2 * ...), keeping the batch dim."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: Tensor) -> Tensor:
        return shape.flatten(x, self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"

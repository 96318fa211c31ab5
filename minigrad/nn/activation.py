"""Activation layers: thin Modules over the functional forms."""

from __future__ import annotations

from .. import functional as F
from ..functional import shape
from ..functional._rules import check_negative_slope
from ..tensor import Tensor
from .module import Module


class ReLU(Module):
    """y = max(x, 0)."""

    def forward(self, x: Tensor) -> Tensor:
        """Apply ReLU."""
        return F.relu(x)


class LeakyReLU(Module):
    """y = x if x > 0 else negative_slope * x."""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = check_negative_slope(negative_slope)

    def forward(self, x: Tensor) -> Tensor:
        """Apply leaky ReLU."""
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Sigmoid(Module):
    """y = 1 / (1 + e**-x)."""

    def forward(self, x: Tensor) -> Tensor:
        """Apply the logistic sigmoid."""
        return F.sigmoid(x)


class Tanh(Module):
    """y = tanh(x)."""

    def forward(self, x: Tensor) -> Tensor:
        """Apply tanh."""
        return F.tanh(x)


class GELU(Module):
    """y = x * Phi(x) (exact, erf-based)."""

    def forward(self, x: Tensor) -> Tensor:
        """Apply GELU."""
        return F.gelu(x)


class SiLU(Module):
    """y = x * sigmoid(x)."""

    def forward(self, x: Tensor) -> Tensor:
        """Apply SiLU."""
        return F.silu(x)


class Softmax(Module):
    """Softmax along ``dim`` (alias ``axis``)."""

    def __init__(self, dim: int = -1, *, axis: int | None = None):
        super().__init__()
        self.dim = dim if axis is None else axis

    def forward(self, x: Tensor) -> Tensor:
        """Apply softmax."""
        return F.softmax(x, axis=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """Log-softmax along ``dim`` (alias ``axis``)."""

    def forward(self, x: Tensor) -> Tensor:
        """Apply log-softmax."""
        return F.log_softmax(x, axis=self.dim)


class Flatten(Module):
    """Merge dims start_dim..end_dim (default: all but the batch dim)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: Tensor) -> Tensor:
        """Flatten x."""
        return shape.flatten(x, self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"

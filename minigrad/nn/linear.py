"""Linear and Identity layers."""

from __future__ import annotations

import math

import numpy as np

from ..functional._convert import as_tensor
from ..functional._rules import check_param_dtype
from ..ops import linalg
from ..tensor import Tensor
from . import init
from .module import Module, Parameter


class Linear(Module):
    """y = x W^T + b.

    Args:
        in_features: size of each input sample.
        out_features: size of each output sample.
        bias: learn an additive bias (default True).
        dtype: parameter dtype (float32 by default).

    Shape: input (..., in_features) -> output (..., out_features).
    Weights start as PyTorch's: U(-1/sqrt(in), 1/sqrt(in)) for both W and b.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype=np.float32):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(np.empty((out_features, in_features), dtype=dtype))
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # = U(-1/sqrt(in), 1/sqrt(in))
        if bias:
            bound = 1 / math.sqrt(in_features) if in_features > 0 else 0
            self.bias = Parameter(np.empty(out_features, dtype=dtype))
            init.uniform_(self.bias, -bound, bound)
        else:
            self.register_parameter("bias", None)

    def forward(self, x: Tensor) -> Tensor:
        """x W^T + b; a float input of the other precision raises ``TypeError`` (no silent
        mixing: convert the input with ``x.float()`` or the layer with ``.double()``)."""
        x = as_tensor(x)
        shape = x._data.shape  # the slot: the property costs a call on every step
        if shape[-1:] != (self.in_features,):
            raise ValueError(
                f"Linear({self.in_features}, {self.out_features}) expected input of shape "
                f"(..., {self.in_features}), got {shape}"
            )
        # The layer owns weight and bias and knows their shapes, so it calls the fused node
        # directly instead of F.linear, which would check them again on every call; reading
        # the registry skips Module.__getattr__'s slow fallback (a microsecond per lookup).
        weight, bias = self._parameters["weight"], self._parameters["bias"]
        if x._data.dtype is not weight._data.dtype:
            check_param_dtype(x, weight)
        if bias is None:
            return linalg.Linear.apply(x, weight)
        return linalg.Linear.apply(x, weight, bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Identity(Module):
    """Returns its input object itself, not a copy (a placeholder, e.g. for an optional norm
    layer); constructor arguments are accepted and ignored, as in PyTorch."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x: Tensor) -> Tensor:
        return x

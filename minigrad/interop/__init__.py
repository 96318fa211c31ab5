"""Bridges to other frameworks: PyTorch models and optimizer states (``to_torch``,
``from_torch``, ...) and ONNX export (``export_onnx``).

torch and onnx are optional: they are imported when a function here first needs them, so
``import minigrad`` (and ``import minigrad.interop``) never imports either.
"""

from .onnx_export import export_onnx
from .pytorch import (
    UnsupportedLayerError,
    from_torch,
    from_torch_optimizer_state,
    to_torch,
    to_torch_optimizer_state,
    to_torch_state_dict,
)

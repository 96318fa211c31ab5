"""minigrad: a small reverse-mode autodiff framework over NumPy with fused Cython kernels.

>>> import minigrad as mg
>>> x = mg.tensor([[1.0, 2.0]], requires_grad=True)
>>> y = (x * x).sum()
>>> y.backward()
>>> x.grad
tensor([[2., 4.]])
"""

# The engine first: autograd imports tensor at its end, and tensor (with the ops it calls)
# needs autograd's classes, so this is the one order in which both modules load.
from . import autograd  # isort: skip
from . import data, functional, nn, optim
from .autograd import Function
from .capture import CompileWarning, compile
from .creation import (
    arange,
    eye,
    from_numpy,
    full,
    ones,
    ones_like,
    rand,
    randn,
    tensor,
    zeros,
    zeros_like,
)
from .dlpack import from_dlpack
from .functional.elementwise import where
from .functional.reduce import log_softmax, logsumexp, softmax
from .functional.shape import concat, stack
from .grad_mode import detect_anomaly, enable_grad, is_grad_enabled, no_grad
from .kernels import empty_cache, get_backend, get_num_threads, set_backend, set_num_threads
from .random import manual_seed
from .serialization import load, save
from .tensor import Tensor
from .testing import gradcheck

# after the engine and Tensor: the hook machinery and the profiler observe them
from . import hooks, profiler  # isort: skip

float32 = "float32"
float64 = "float64"

__version__ = "0.1.0"

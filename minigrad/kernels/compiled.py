"""The "cython" backend: the compiled kernels under the names of their twins in ``reference``.

Importing this module fails when the extensions were not built; ``minigrad.kernels`` then
warns once and uses the NumPy twins.
"""

from . import (
    _activation,
    _alloc,  # noqa: F401  (the array cache: minigrad.kernels installs it)
    _conv,
    _norm,
    _optim,
    _pool,
    _reduce,
    _softmax,
)
from ._activation import gelu_backward, gelu_forward, relu_backward, relu_forward
from ._conv import conv2d_backward, conv2d_forward
from ._embed import embedding_backward
from ._norm import (
    batchnorm_backward,
    batchnorm_forward,
    layernorm_backward,
    layernorm_forward,
    rmsnorm_backward,
    rmsnorm_forward,
)
from ._optim import adam_step, rmsprop_step, sgd_step
from ._pool import (
    adaptive_avg_pool2d_backward,
    adaptive_avg_pool2d_forward,
    avg_pool2d_backward,
    avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
)
from ._reduce import logsumexp, max, mean, min, sum, var
from ._softmax import (
    class_target_count,
    cross_entropy_backward,
    cross_entropy_forward,
    cross_entropy_fused,
    log_softmax,
    log_softmax_backward,
    softmax,
    softmax_backward,
)

_THREADED_MODULES = (_activation, _conv, _norm, _optim, _pool, _reduce, _softmax)

__all__ = [
    "adaptive_avg_pool2d_backward", "adaptive_avg_pool2d_forward", "avg_pool2d_backward",
    "avg_pool2d_forward", "max_pool2d_backward", "max_pool2d_forward",
    "adam_step", "batchnorm_backward", "batchnorm_forward", "class_target_count",
    "conv2d_backward", "conv2d_forward", "cross_entropy_backward",
    "cross_entropy_fused",
    "cross_entropy_forward", "gelu_backward", "gelu_forward", "layernorm_backward",
    "layernorm_forward", "log_softmax",
    "log_softmax_backward", "logsumexp", "max", "mean", "min", "relu_backward", "relu_forward",
    "rmsnorm_backward", "rmsnorm_forward", "rmsprop_step", "sgd_step",
    "softmax", "softmax_backward", "sum", "var",
    "embedding_backward",
]


def set_num_threads(n: int) -> None:
    """Cap the OpenMP threads of every compiled kernel module."""
    for module in _THREADED_MODULES:
        module.set_num_threads(n)


def get_num_threads() -> int:
    """The thread cap shared by the compiled kernel modules."""
    return _reduce.get_num_threads()

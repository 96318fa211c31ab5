"""The "numpy" backend: every NumPy twin under the name of its compiled kernel.

Each twin lives beside its kernel (``_reduce_twin.py`` beside ``_reduce.pyx`` and so on); this
module only gathers them, so that ``kernels.impl`` can be this module or ``compiled`` with the
same names and signatures. The twins are the test oracle and the benchmark baseline.
"""

from ._activation_twin import gelu_backward, gelu_forward, relu_backward, relu_forward
from ._checks import reduced_axes
from ._conv_twin import conv2d_backward, conv2d_forward
from ._embed_twin import embedding_backward
from ._norm_twin import (
    batchnorm_backward,
    batchnorm_forward,
    layernorm_backward,
    layernorm_forward,
    rmsnorm_backward,
    rmsnorm_forward,
)
from ._optim_twin import adam_step, rmsprop_step, sgd_step
from ._pool_twin import (
    adaptive_avg_pool2d_backward,
    adaptive_avg_pool2d_forward,
    avg_pool2d_backward,
    avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
)
from ._reduce_twin import logsumexp, max, mean, min, sum, var
from ._softmax_twin import (
    class_target_count,
    cross_entropy_backward,
    cross_entropy_forward,
    cross_entropy_fused,
    log_softmax,
    log_softmax_backward,
    softmax,
    softmax_backward,
)

__all__ = [
    "adaptive_avg_pool2d_backward", "adaptive_avg_pool2d_forward", "avg_pool2d_backward",
    "avg_pool2d_forward", "max_pool2d_backward", "max_pool2d_forward",
    "adam_step", "batchnorm_backward", "batchnorm_forward", "class_target_count",
    "conv2d_backward", "conv2d_forward", "cross_entropy_backward",
    "cross_entropy_fused",
    "cross_entropy_forward", "gelu_backward", "gelu_forward", "relu_backward", "relu_forward",
    "layernorm_backward", "layernorm_forward", "log_softmax", "log_softmax_backward",
    "logsumexp", "max", "mean", "min", "reduced_axes", "rmsnorm_backward", "rmsnorm_forward",
    "rmsprop_step", "sgd_step", "softmax",
    "softmax_backward", "sum", "var",
    "embedding_backward",
]

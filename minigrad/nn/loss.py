"""Loss layers: Modules that hold a reduction (and options) and call the functional form."""

from __future__ import annotations

from .. import functional as F
from ..functional._rules import check_ignore_index, check_label_smoothing, check_reduction
from ..tensor import Tensor
from .module import Module


class _Loss(Module):
    """Shared constructor: ``reduction`` is "mean" (default), "sum" or "none"."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        check_reduction(reduction)
        self.reduction = reduction

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class MSELoss(_Loss):
    """loss = reduce((input - target)**2) over every element.

    ``input`` and ``target`` must have the same shape: unlike PyTorch, which broadcasts them
    with a warning, a mismatch such as (N, 1) against (N,) raises ``ValueError``.
    """

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(input, target, self.reduction)


class L1Loss(_Loss):
    """loss = reduce(|input - target|) over every element; the gradient at input == target is
    0. Shapes must match exactly, as for MSELoss."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.l1_loss(input, target, self.reduction)


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of logits against integer class indices.

    loss_i = -(1 - ls) log softmax(x_i)[t_i] - ls mean_j log softmax(x_i)_j, with ls the
    label smoothing. Logits (N, C) or (N, C, d1, ...) with targets (N,) or (N, d1, ...);
    "mean" divides by the number of targets not equal to ``ignore_index``. Unlike PyTorch's,
    there is no ``weight`` per class and targets cannot be class probabilities.

    Args:
        reduction: "mean", "sum" or "none".
        label_smoothing: weight of the uniform distribution mixed into the target.
        ignore_index: target value that contributes no loss and no gradient.
        fused: use the fused kernel node (default) or the composite from primitive ops.
    """

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0,
                 ignore_index: int = -100, fused: bool = True):
        super().__init__(reduction)
        # the functional rules, run here too so that a bad option fails where the loss is made
        check_label_smoothing(label_smoothing)
        check_ignore_index(ignore_index)
        self.label_smoothing, self.ignore_index, self.fused = label_smoothing, ignore_index, fused

    def forward(self, input: Tensor, target) -> Tensor:
        return F.cross_entropy(input, target, self.reduction, self.label_smoothing,
                               self.ignore_index, self.fused)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, label_smoothing={self.label_smoothing}"


class NLLLoss(_Loss):
    """loss_i = -input[i, target_i] for log-probabilities (N, C) (e.g. from LogSoftmax) and
    class indices (N,); ``ignore_index`` targets count neither in the loss nor in the mean.
    LogSoftmax followed by NLLLoss equals CrossEntropyLoss. No per-class ``weight``."""

    def __init__(self, reduction: str = "mean", ignore_index: int = -100):
        super().__init__(reduction)
        check_ignore_index(ignore_index)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target) -> Tensor:
        return F.nll_loss(input, target, self.reduction, self.ignore_index)


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy of logits x against probabilities y (same shape), with the
    sigmoid folded in: loss = max(x, 0) - x y + log(1 + e**-|x|), which neither overflows nor
    takes log(0) for large |x|. Unlike PyTorch's, there is no ``weight`` or ``pos_weight``."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(input, target, self.reduction)

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
    """Mean squared error between input and target (same shapes)."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(input, target, self.reduction)


class L1Loss(_Loss):
    """Mean absolute error between input and target (same shapes)."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.l1_loss(input, target, self.reduction)


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of logits (N, C) against class indices (N,).

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
    """Negative log-likelihood of log-probabilities (N, C) against class indices (N,)."""

    def __init__(self, reduction: str = "mean", ignore_index: int = -100):
        super().__init__(reduction)
        check_ignore_index(ignore_index)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target) -> Tensor:
        return F.nll_loss(input, target, self.reduction, self.ignore_index)


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy on logits (sigmoid folded in, stable for large |logits|)."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(input, target, self.reduction)

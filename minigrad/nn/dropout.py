"""Dropout layer."""

from __future__ import annotations

from .. import functional as F
from ..functional._rules import check_dropout
from ..tensor import Tensor
from .module import Module


class Dropout(Module):
    """During training, zero each element with probability ``p`` and scale the survivors by
    1 / (1 - p) so the expected value is unchanged; the identity in eval mode."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        check_dropout(p, True)
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"

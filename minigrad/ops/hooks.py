"""The identity node a module's full backward hook puts on the module's inputs and outputs."""

from __future__ import annotations

from ..autograd import Function


class BackwardHook(Function):
    """y = x, a view sharing x's memory and version counter;  dx = g.

    Its gradient is the gradient with respect to the module's input (or output) it stands for;
    ``nn/_hooks.py`` gathers those of one module call and shows them to the hooks.
    """

    @staticmethod
    def forward(ctx, x):
        return x.view()

    @staticmethod
    def backward(ctx, grad):
        return grad

"""Embedding lookup: rows of a table picked by integer indices, and the scatter-add back."""

from __future__ import annotations

import numpy as np

from .. import kernels
from ..autograd import Function


class Embedding(Function):
    """y[..., :] = weight[indices[...], :];  dweight[k] = sum of g over the positions whose
    index is k (a scatter-add), none for row ``padding_idx``; with ``scale_grad_by_freq`` each
    position's g is first divided by how often its index occurs in ``indices``.

    ``indices`` is an int64 array the graph owns (``functional.embedding`` copies the
    caller's), every value already checked to lie in [0, num_embeddings); ``padding_idx`` is
    -1 for none.
    """

    @staticmethod
    def forward(ctx, weight, *, indices, padding_idx, scale_grad_by_freq):
        ctx.indices, ctx.num_embeddings = indices, weight.shape[0]
        ctx.padding_idx, ctx.scale_grad_by_freq = padding_idx, scale_grad_by_freq
        return np.take(weight, indices, axis=0)

    @staticmethod
    def backward(ctx, grad):
        flat = ctx.indices.reshape(-1)
        grad = grad.reshape(flat.shape[0], grad.shape[-1])
        if ctx.scale_grad_by_freq:
            counts = np.bincount(flat, minlength=ctx.num_embeddings)
            grad = grad / counts[flat, None].astype(grad.dtype)
        return kernels.impl.embedding_backward(grad, flat, ctx.num_embeddings, ctx.padding_idx)

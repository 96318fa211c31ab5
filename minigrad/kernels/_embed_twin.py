"""NumPy twin of the embedding kernel in ``_embed.pyx``: the backward of a table lookup.

Same name, signature and return value as the kernel. The forward of an embedding is a plain
``np.take`` of rows and needs no kernel; its backward adds each gradient row into the table
row its index names, the scatter-add ``np.add.at`` does (in index order, as the kernel does).
"""

from __future__ import annotations

import numpy as np

from ._checks import embedding_backward_args, embedding_index_error


def embedding_backward(grad_out, indices, num_embeddings, padding_idx):
    """dweight[k] = sum of grad_out[i] over the i with indices[i] == k; row padding_idx
    (when >= 0) gets no gradient.

    Args:
        grad_out: (N, D) float32/float64, the gradient of the looked-up rows.
        indices: (N,) int64, each in [0, num_embeddings).
        num_embeddings: rows of the table.
        padding_idx: the row that never learns, or -1 for none.

    Returns:
        dweight of shape (num_embeddings, D), grad_out's dtype.
    """
    fn = "embedding_backward"
    embedding_backward_args(grad_out, indices, num_embeddings, padding_idx)
    if indices.size and (indices.min() < 0 or indices.max() >= num_embeddings):
        bad = indices[(indices < 0) | (indices >= num_embeddings)]
        raise embedding_index_error(fn, int(bad[0]), num_embeddings)
    dweight = np.zeros((num_embeddings, grad_out.shape[1]), grad_out.dtype)
    np.add.at(dweight, indices, grad_out)
    if padding_idx >= 0:
        dweight[padding_idx] = 0
    return dweight

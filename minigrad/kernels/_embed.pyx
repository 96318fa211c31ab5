"""The backward of an embedding lookup, for float32 and float64 tables: a scatter-add of
gradient rows into the table rows their indices name.

The ``def`` wrapper runs the memory-safety checks of ``_checks`` (shared with the NumPy twin
in ``_embed_twin.py``), makes the gradient contiguous and allocates the zeroed table gradient;
the ``cdef ... nogil`` core walks the indices in order and adds each gradient row into its
table row with a unit-stride inner loop the compiler vectorises. Rows are added in index
order, as ``np.add.at`` does, so both backends sum in the same order. It stays on one thread:
two indices may name the same row, and splitting by row would need a sort first.
"""

import numpy as np

from cython cimport floating
from libc.stdint cimport int64_t

from minigrad.kernels._checks import embedding_backward_args, embedding_index_error


cdef Py_ssize_t _scatter_rows(const floating[:, ::1] grad, const int64_t[::1] indices,
                              floating[:, ::1] dweight, int64_t padding_idx) noexcept nogil:
    """dweight[indices[i]] += grad[i] for every i whose index is not padding_idx; returns the
    position of the first index outside the table (nothing is written for it) or -1."""
    cdef Py_ssize_t i, j, D = grad.shape[1], rows = dweight.shape[0]
    cdef int64_t k
    cdef floating *out
    cdef const floating *g
    for i in range(grad.shape[0]):
        k = indices[i]
        if k < 0 or k >= rows:
            return i
        if k == padding_idx:
            continue
        out = &dweight[k, 0] if D else NULL
        g = &grad[i, 0] if D else NULL
        for j in range(D):
            out[j] += g[j]
    return -1


def embedding_backward(grad_out, indices, num_embeddings, padding_idx):
    """dweight[k] = sum of grad_out[i] over the i with indices[i] == k; row padding_idx
    (when >= 0) gets no gradient.

    Returns:
        dweight of shape (num_embeddings, D), grad_out's dtype.
    """
    fn = "embedding_backward"
    embedding_backward_args(grad_out, indices, num_embeddings, padding_idx)
    dweight = np.zeros((num_embeddings, grad_out.shape[1]), grad_out.dtype)
    if indices.shape[0] == 0:
        return dweight
    grad_out = np.ascontiguousarray(grad_out)
    indices = np.ascontiguousarray(indices)
    cdef Py_ssize_t bad
    if grad_out.dtype.itemsize == 4:
        bad = _scatter_rows[float](grad_out, indices, dweight, padding_idx)
    else:
        bad = _scatter_rows[double](grad_out, indices, dweight, padding_idx)
    if bad >= 0:
        raise embedding_index_error(fn, int(indices[bad]), num_embeddings)
    return dweight

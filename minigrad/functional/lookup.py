"""Lookups by integer index: ``embedding`` (rows of a learned table) and ``one_hot`` (rows of
the identity, as int64 and outside the graph)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..ops import embedding as ops
from ..versions import mark_all_changed
from ._convert import as_tensor, constant
from ._rules import (
    check_float_input,
    check_index_range,
    check_max_norm,
    check_num_classes,
    check_padding_idx,
    integer_indices,
)


def embedding(input: Any, weight: Any, padding_idx: int | None = None,
              max_norm: float | None = None, norm_type: float = 2.0,
              scale_grad_by_freq: bool = False, sparse: bool = False):
    """Rows of ``weight`` picked by the integer indices ``input``: ``weight[input]``.

    Args:
        input: integer indices of any shape, each in [0, num_embeddings) (a negative index
            is an error, not a count from the end); floats and bools raise ``TypeError``.
        weight: the (num_embeddings, embedding_dim) float table.
        padding_idx: a row (negative counts from the end) whose gradient is always zero.
        max_norm: if given, every row that ``input`` names and whose ``norm_type``-norm
            exceeds it is first rescaled *in place* to norm ``max_norm`` (PyTorch's rule:
            row * max_norm / (norm + 1e-7)). This changes ``weight``: a graph that saved it
            earlier then refuses to run backward.
        norm_type: the p of the p-norm for ``max_norm``.
        scale_grad_by_freq: divide each position's gradient by the number of times its
            index occurs in ``input``.
        sparse: sparse gradients are not supported; True raises ``NotImplementedError``.

    Shape: input (*) and weight (V, D) -> output (*, D).

    The gradient of ``weight`` is a scatter-add of the output's gradient into the named rows
    (a compiled kernel, ``embedding_backward``).
    """
    op = "embedding"
    weight = check_float_input(as_tensor(weight), op)
    if weight.ndim != 2:
        raise ValueError(f"{op}: weight must be 2-D (num_embeddings, embedding_dim), got "
                         f"shape {weight.shape}")
    num_embeddings = weight.shape[0]
    indices = integer_indices(input, op)
    check_index_range(indices, num_embeddings, op, "an embedding table")
    padding = check_padding_idx(padding_idx, num_embeddings, op)
    max_norm, norm_type = check_max_norm(max_norm, norm_type, op)
    if sparse is not False:
        raise NotImplementedError(f"{op}: sparse gradients are not supported; use sparse=False "
                                  "(the dense gradient of the table is computed instead)")
    if max_norm is not None:
        _renorm_rows(weight, indices, max_norm, norm_type)
    return ops.Embedding.apply(weight, indices=indices, padding_idx=padding,
                               scale_grad_by_freq=bool(scale_grad_by_freq))


def _renorm_rows(weight: Any, indices: np.ndarray, max_norm: float, norm_type: float) -> None:
    """Scale, in place, each row named in ``indices`` whose norm exceeds ``max_norm`` by
    max_norm / (norm + 1e-7) (PyTorch's embedding_renorm_; the 1e-7 keeps the new norm
    just under max_norm). A change made outside the graph, like an optimizer step."""
    rows = np.unique(indices)
    table = weight.data
    norms = np.linalg.norm(table[rows].astype(np.float64), ord=norm_type, axis=1)
    over = norms > max_norm
    if over.any():
        scale = max_norm / (norms[over] + 1e-7)
        table[rows[over]] = (table[rows[over]] * scale[:, None]).astype(table.dtype)
        mark_all_changed([weight])


def one_hot(input: Any, num_classes: int = -1):
    """out[..., k] = 1 where input[...] == k, else 0, as int64 (PyTorch's ``one_hot``).

    Args:
        input: integer class values of any shape, each in [0, num_classes); floats raise
            ``TypeError``, negative or too large values ``ValueError``.
        num_classes: the length of the new last axis; -1 infers max(input) + 1.

    Shape: input (*) -> output (*, num_classes). The result is outside the graph (integers
    carry no gradient); use ``.float()`` to mix it with float tensors.
    """
    indices = integer_indices(input, "one_hot")
    num_classes = check_num_classes(num_classes, indices)
    out = np.zeros(indices.shape + (num_classes,), dtype=np.int64)
    np.put_along_axis(out, indices[..., None], 1, axis=-1)
    return constant(out)

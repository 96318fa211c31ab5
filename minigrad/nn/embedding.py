"""The Embedding layer: a learned table of vectors looked up by integer index."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..functional import lookup
from ..functional._rules import check_max_norm, check_padding_idx, check_size
from ..tensor import Tensor
from . import init
from .module import Module, Parameter


class Embedding(Module):
    """A table of ``num_embeddings`` vectors of size ``embedding_dim``; ``layer(indices)``
    returns the rows the integer ``indices`` name (PyTorch's ``nn.Embedding``).

    Args:
        num_embeddings: rows of the table (the vocabulary size).
        embedding_dim: size of each vector.
        padding_idx: a row (negative counts from the end) that starts at zero and whose
            gradient is always zero, e.g. for a padding token.
        max_norm: if given, rows looked up whose ``norm_type``-norm exceeds it are rescaled
            to norm ``max_norm`` in place, at each forward (see ``F.embedding``).
        norm_type: the p of the p-norm for ``max_norm`` (default 2).
        scale_grad_by_freq: divide each position's gradient by the count of its index in
            the batch.
        sparse: sparse gradients are not supported; True raises ``NotImplementedError``.
        dtype: the table's dtype (float32 by default).

    Shape: input (*) integers in [0, num_embeddings) -> output (*, embedding_dim).
    The table starts as PyTorch's: N(0, 1) draws, with row ``padding_idx`` set to zero.

    Example:
        >>> emb = Embedding(1000, 16, padding_idx=0)
        >>> vectors = emb(mg.tensor([[5, 7, 0]]))   # shape (1, 3, 16)
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 max_norm: float | None = None, norm_type: float = 2.0,
                 scale_grad_by_freq: bool = False, sparse: bool = False, dtype=np.float32):
        super().__init__()
        self.num_embeddings = check_size(num_embeddings, "Embedding: num_embeddings")
        self.embedding_dim = check_size(embedding_dim, "Embedding: embedding_dim")
        padding = check_padding_idx(padding_idx, self.num_embeddings, "Embedding")
        self.padding_idx = None if padding < 0 else padding  # stored as a row, as PyTorch does
        self.max_norm, self.norm_type = check_max_norm(max_norm, norm_type, "Embedding")
        self.scale_grad_by_freq = bool(scale_grad_by_freq)
        if sparse is not False:
            raise NotImplementedError("Embedding: sparse gradients are not supported; use "
                                      "sparse=False (the dense gradient of the table)")
        self.sparse = False
        self.weight = Parameter(np.empty((self.num_embeddings, self.embedding_dim), dtype=dtype))
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0

    def forward(self, input: Any) -> Tensor:
        """The rows of the table named by ``input`` (integers of any shape)."""
        return lookup.embedding(input, self.weight, self.padding_idx, self.max_norm, self.norm_type,
                           self.scale_grad_by_freq)

    @classmethod
    def from_pretrained(cls, embeddings: Any, freeze: bool = True,
                        padding_idx: int | None = None, max_norm: float | None = None,
                        norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                        sparse: bool = False) -> Embedding:
        """An Embedding whose table is a copy of the 2-D ``embeddings`` (no row is zeroed,
        not even ``padding_idx``'s, which still gets no gradient).

        A Tensor keeps its float dtype; an ndarray or list follows ``mg.tensor``'s dtype rule
        (float32). With ``freeze`` (the default) the table does not require grad, so an
        optimizer given ``parameters()`` leaves it alone.
        """
        table = embeddings if isinstance(embeddings, Tensor) else Tensor(embeddings)
        if table.ndim != 2:
            raise ValueError(f"Embedding.from_pretrained: embeddings must be 2-D "
                             f"(num_embeddings, embedding_dim), got shape {table.shape}")
        if table.dtype.kind != "f":
            raise TypeError(f"Embedding.from_pretrained: embeddings must be floating-point, "
                            f"got dtype {table.dtype}")
        layer = cls(*table.shape, padding_idx=padding_idx, max_norm=max_norm,
                    norm_type=norm_type, scale_grad_by_freq=scale_grad_by_freq, sparse=sparse,
                    dtype=table.dtype)
        layer.weight = Parameter(table.data.copy(), requires_grad=not freeze)
        return layer

    def extra_repr(self) -> str:
        text = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            text += f", padding_idx={self.padding_idx}"
        if self.max_norm is not None:
            text += f", max_norm={self.max_norm}"
        if self.norm_type != 2:
            text += f", norm_type={self.norm_type}"
        if self.scale_grad_by_freq:
            text += ", scale_grad_by_freq=True"
        return text

"""Sparse term-weight vectors as SPLADE students produce them: scoring, conversion to scipy,
and how many terms are active (the figure SPLADE papers report beside effectiveness)."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    import scipy.sparse as sp

FINAL_WINDOW = 50  # batches averaged for the end-of-training active-term counts


def sparse_score_matrix(q: Tensor, d: Tensor) -> Tensor:
    """Dot products of term weights.

    Shapes:
        q (B, V), d (B, 1+n, V) → (B, 1+n).

    Example:
        >>> q = torch.tensor([[1.0, 0.0, 2.0]])
        >>> sparse_score_matrix(q, torch.tensor([[[3.0, 5.0, 1.0], [0.0, 4.0, 0.0]]]))
        tensor([[5., 0.]])
    """
    return torch.einsum("bv,bnv->bn", q, d)


def to_csr(embeddings: Any, dim: int) -> sp.csr_matrix:
    """A torch (sparse or dense) ``[N, V]`` tensor as a float32 scipy CSR matrix.

    Shapes:
        embeddings (N, V) → csr_matrix[N, V]; an empty batch gives ``[0, dim]``.
    """
    import scipy.sparse as sp

    if not isinstance(embeddings, Tensor) or embeddings.ndim != 2:
        return sp.csr_matrix((0, dim), dtype=np.float32)
    t = embeddings.detach().cpu()
    if t.layout == torch.sparse_coo:
        t = t.coalesce()
        rows, cols = t.indices().numpy()
        values = t.values().float().numpy()
        out = sp.csr_matrix((values, (rows, cols)), shape=tuple(t.shape), dtype=np.float32)
    else:
        out = sp.csr_matrix(t.float().numpy(), dtype=np.float32)
    out.eliminate_zeros()
    return out


class ActiveTerms:
    """Mean non-zero terms per query and per document over the training batches seen.

    Example:
        >>> a = ActiveTerms()
        >>> a.update(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[2.0, 0.0]]))
        >>> a.summary()["query"], a.summary()["document"]
        (1.5, 1.0)
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.batches = 0
        self._sum = [0.0, 0.0]
        self._last: deque[tuple[float, float]] = deque(maxlen=FINAL_WINDOW)

    def update(self, queries: Tensor, docs: Tensor) -> None:
        """Shapes: queries (B, V), docs (M, V)."""
        q = float((queries.detach() != 0).sum(dim=-1).float().mean())
        d = float((docs.detach() != 0).sum(dim=-1).float().mean())
        self.batches += 1
        self._sum[0] += q
        self._sum[1] += d
        self._last.append((q, d))

    def summary(self) -> dict[str, float]:
        """``query``/``document``: means over all batches; ``*_final``: over the last 50."""
        if not self.batches:
            return {}
        n = len(self._last)
        return {
            "batches": self.batches,
            "query": self._sum[0] / self.batches,
            "document": self._sum[1] / self.batches,
            "query_final": sum(q for q, _ in self._last) / n,
            "document_final": sum(d for _, d in self._last) / n,
        }

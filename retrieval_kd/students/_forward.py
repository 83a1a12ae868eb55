"""The forward pass every sentence-transformers student shares: texts → pooled embeddings,
and training groups → a (B, 1+n) score matrix by the family's own score function."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor


def embed(model: Any, texts: Sequence[str]) -> Tensor:
    """Shapes: texts[N] → (N, dim) pooled embeddings, with gradients."""
    features = model.preprocess(list(texts))
    features = {k: v.to(model.device) if isinstance(v, Tensor) else v for k, v in features.items()}
    out: Tensor = model(features)["sentence_embedding"]
    return out


def group_scores(
    model: Any,
    query_batch: Sequence[str],
    doc_groups: Sequence[Sequence[str]],
    score: Callable[[Tensor, Tensor], Tensor],
) -> Tensor:
    """Shapes: query_batch[B], doc_groups[B][1+n] → (B, 1+n) by ``score(q (B, dim),
    d (B, 1+n, dim))``."""
    width = len(doc_groups[0])
    if any(len(g) != width for g in doc_groups):
        raise ValueError("every doc group needs the same number of candidates")
    q = embed(model, query_batch)  # (B, dim)
    d = embed(model, [t for g in doc_groups for t in g]).view(len(doc_groups), width, -1)  # (B, 1+n, dim)
    return score(q, d)

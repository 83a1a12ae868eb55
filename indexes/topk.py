"""Exact inner-product top-k with torch: the GPU fallback where no faiss-gpu build exists.

The lent GPU machines run CUDA 13, for which no faiss-gpu wheel exists, so a flat index is
searched there as a plain matrix product followed by :func:`torch.topk`. The function is pure
and device-agnostic, so it is tested on CPU tensors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def torch_topk(
    doc_matrix: torch.Tensor,
    query_matrix: torch.Tensor,
    k: int,
    chunk: int = 1024,
    doc_chunk: int = 1 << 20,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` documents per query by inner product, best first.

    Queries are processed ``chunk`` at a time and documents ``doc_chunk`` at a time, so the
    score matrix held at once is at most ``chunk × doc_chunk`` (4 GiB of float32 at the
    defaults); per-document-chunk winners are merged with a second top-k.

    Args:
        doc_matrix: document vectors, on the device to compute on.
        query_matrix: query vectors, same device and dtype.
        k: results per query; must be between 1 and the number of documents.
        chunk: queries per matrix product.
        doc_chunk: documents per matrix product.

    Shapes:
        doc_matrix[N, D], query_matrix[Q, D] → (scores float[Q, k], indices int64[Q, k]).

    Example:
        >>> import torch
        >>> docs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
        >>> scores, idx = torch_topk(docs, torch.tensor([[2.0, 1.0]]), k=2)
        >>> scores.tolist(), idx.tolist()
        ([[3.0, 2.0]], [[2, 0]])
    """
    import torch

    n_docs = doc_matrix.shape[0]
    if doc_matrix.ndim != 2 or query_matrix.ndim != 2 or doc_matrix.shape[1] != query_matrix.shape[1]:
        raise ValueError(
            f"shape mismatch: docs {tuple(doc_matrix.shape)} vs queries {tuple(query_matrix.shape)}"
        )
    if not 1 <= k <= n_docs:
        raise ValueError(f"k must be between 1 and the number of documents ({n_docs}), got {k}")
    if chunk < 1 or doc_chunk < 1:
        raise ValueError(f"chunk sizes must be positive, got chunk={chunk}, doc_chunk={doc_chunk}")

    all_scores: list[torch.Tensor] = []
    all_indices: list[torch.Tensor] = []
    for q0 in range(0, query_matrix.shape[0], chunk):
        queries = query_matrix[q0 : q0 + chunk]
        cand_scores: list[torch.Tensor] = []
        cand_indices: list[torch.Tensor] = []
        for d0 in range(0, n_docs, doc_chunk):
            block = queries @ doc_matrix[d0 : d0 + doc_chunk].T  # (q, d)
            s, i = torch.topk(block, min(k, block.shape[1]), dim=1)
            cand_scores.append(s)
            cand_indices.append(i + d0)
        if len(cand_scores) == 1:
            s, i = cand_scores[0], cand_indices[0]
        else:
            merged = torch.cat(cand_scores, dim=1)  # (q, k × n_doc_chunks)
            s, pos = torch.topk(merged, k, dim=1)
            i = torch.gather(torch.cat(cand_indices, dim=1), 1, pos)
        all_scores.append(s)
        all_indices.append(i)
    if not all_scores:
        empty = query_matrix.new_zeros((0, k))
        return empty, empty.long()
    return torch.cat(all_scores), torch.cat(all_indices)

"""Late interaction (ColBERT): the one MaxSim score function, and the packed token-vector layout
that ColBERT students hand to their indexes.

:func:`maxsim` is what training (:mod:`retrieval_kd.students.colbert`), exact search
(:mod:`retrieval_kd.indexes.maxsim_index`) and the compressed index's final re-ranking
(:mod:`retrieval_kd.indexes.plaid_index`) all score with. It agrees with sentence-transformers'
``util.similarity.maxsim`` (tested), but reads the layout rkd stores: padded documents with a
mask, no Python list per document.

References:
    Khattab and Zaharia, "ColBERT: Efficient and Effective Passage Search via Contextualized Late
    Interaction over BERT", arXiv:2004.12832.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from retrieval_kd.errors import RkdError


def maxsim(
    queries: Tensor, docs: Tensor, query_mask: Tensor | None = None, doc_mask: Tensor | None = None
) -> Tensor:
    """MaxSim of every query against every document: for each query token, its best inner
    product with any (unmasked) document token, summed over the (unmasked) query tokens.

    Args:
        queries: query token vectors, padded.
        docs: document token vectors, padded.
        query_mask: True for the query tokens that count (None: all).
        doc_mask: True for the document tokens that count (None: all); every document needs one.

    Shapes:
        queries (Q, Lq, dim), docs (N, Ld, dim), query_mask (Q, Lq), doc_mask (N, Ld) → (Q, N).

    Example:
        One query of two tokens, two documents (the second's last token is padding):

        >>> q = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
        >>> d = torch.tensor([[[2.0, 0.0], [0.0, 3.0]], [[1.0, 1.0], [9.0, 9.0]]])
        >>> maxsim(q, d, doc_mask=torch.tensor([[True, True], [True, False]]))
        tensor([[5., 2.]])

        Document 0: max(2, 0) + max(0, 3) = 5; document 1 sees only (1, 1): 1 + 1 = 2.
    """
    if queries.ndim != 3 or docs.ndim != 3 or queries.shape[-1] != docs.shape[-1]:
        raise ValueError(f"shape mismatch: queries {tuple(queries.shape)} vs docs {tuple(docs.shape)}")
    n_q, q_len, dim = queries.shape
    n_d, d_len, _ = docs.shape
    # one matrix product over all token pairs; reshapes only, no copy of either side
    sim = (queries.reshape(-1, dim) @ docs.reshape(-1, dim).T).view(n_q, q_len, n_d, d_len)
    if doc_mask is not None:
        sim = sim.masked_fill(~doc_mask.bool().view(1, 1, n_d, d_len), float("-inf"))
    best = sim.amax(dim=-1)  # (Q, Lq, N)
    if query_mask is not None:
        best = best * query_mask.to(best.dtype).unsqueeze(-1)
    return best.sum(dim=1)  # (Q, N)


@dataclass(frozen=True)
class TokenVectors:
    """Token vectors of several texts, one after another: what a ColBERT student's
    ``encode_documents`` and ``encode_queries`` return and what a multi-vector index adds.

    Attributes:
        vectors: every text's token vectors, text by text.
        lengths: tokens per text; they sum to ``len(vectors)``.

    Shapes:
        vectors (T, dim), lengths int64 (N,).

    Example:
        >>> tv = TokenVectors.from_list([np.ones((2, 3)), np.zeros((1, 3))])
        >>> len(tv), tv.dim, tv.offsets.tolist(), [v.shape for v in tv.split()]
        (2, 3, [0, 2, 3], [(2, 3), (1, 3)])
    """

    vectors: np.ndarray
    lengths: np.ndarray

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or self.lengths.ndim != 1:
            raise RkdError(
                f"token vectors need vectors [T, dim] and lengths [N]; got {self.vectors.shape} and "
                f"{self.lengths.shape}"
            )
        if int(self.lengths.sum()) != len(self.vectors):
            raise RkdError(
                f"lengths sum to {int(self.lengths.sum())} but there are {len(self.vectors)} vectors"
            )
        if len(self.lengths) and int(self.lengths.min()) < 1:
            raise RkdError("every text needs at least one token vector (a length of 0 was given)")

    @classmethod
    def from_list(cls, arrays: Sequence[Any], dtype: Any = np.float32) -> TokenVectors:
        """From one ``(tokens_i, dim)`` array (or tensor) per text."""
        mats = [
            np.asarray(a.detach().cpu().float() if isinstance(a, Tensor) else a, dtype=dtype) for a in arrays
        ]
        if not mats:
            return cls(np.zeros((0, 0), dtype=dtype), np.zeros(0, dtype=np.int64))
        dims = {m.shape[1] if m.ndim == 2 else -1 for m in mats}
        if len(dims) != 1 or -1 in dims:
            raise RkdError(
                f"every text's token vectors must be [tokens, dim] of one dim; got dims {sorted(dims)}"
            )
        lengths = np.array([len(m) for m in mats], dtype=np.int64)
        return cls(np.concatenate(mats), lengths)

    @classmethod
    def coerce(cls, reps: Any, noun: str) -> TokenVectors:
        """``reps`` as TokenVectors: itself, or a list of per-text ``(tokens, dim)`` arrays."""
        if isinstance(reps, TokenVectors):
            return reps
        if isinstance(reps, Sequence | np.ndarray) and not isinstance(reps, str):
            return cls.from_list(list(reps))
        raise RkdError(
            f"{noun} representations must be TokenVectors or a list of [tokens, dim] arrays "
            f"(a ColBERT student's encodings), got {type(reps).__name__}"
        )

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def offsets(self) -> np.ndarray:
        """Where each text starts, plus the end. Shapes: → int64 (N + 1,)."""
        return np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)

    def split(self) -> list[np.ndarray]:
        """One ``(tokens_i, dim)`` array per text (views)."""
        return np.split(self.vectors, self.offsets[1:-1])


def pad(vectors: Tensor, lengths: Sequence[int] | np.ndarray) -> tuple[Tensor, Tensor]:
    """Packed token vectors as a padded batch and its mask (what :func:`maxsim` takes).

    Shapes:
        vectors (T, dim), lengths (N,) → padded (N, max(lengths), dim), mask bool (N, max(lengths)).

    Example:
        >>> padded, mask = pad(torch.arange(6.0).view(3, 2), [1, 2])
        >>> padded.tolist(), mask.tolist()
        ([[[0.0, 1.0], [0.0, 0.0]], [[2.0, 3.0], [4.0, 5.0]]], [[True, False], [True, True]])
    """
    lens = torch.as_tensor(np.asarray(lengths, dtype=np.int64), device=vectors.device)
    width = int(lens.max()) if len(lens) else 0
    mask = torch.arange(width, device=vectors.device).unsqueeze(0) < lens.unsqueeze(1)  # (N, width)
    padded = vectors.new_zeros((len(lens), width, vectors.shape[-1]))
    padded[mask] = vectors  # row-major mask order is the packed order
    return padded, mask

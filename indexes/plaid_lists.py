"""The centroid side of a :class:`~retrieval_kd.indexes.plaid_index.PlaidIndex`: which centroid
each token vector was assigned to, laid out as IVF lists, and PLAID's three centroid-only search
stages over them (candidate generation, pruned and full centroid interaction). Everything here is
derived from the token codes and document lengths, so an index rebuilds it after every build or
load instead of saving it.

References:
    Santhanam et al., "PLAID: An Efficient Engine for Late Interaction Retrieval",
    arXiv:2205.09707.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np


class CentroidLists:
    """IVF lists and token layout of a PLAID index, with its centroid-only search stages.

    Args:
        codes: each token vector's centroid, document by document (T,).
        lengths: token vectors per document (N,).
        nlist: the number of centroids.

    Example:
        >>> lists = CentroidLists(np.array([0, 1, 1, 2, 0]), np.array([3, 2]), nlist=3)
        >>> offsets, docs = lists.ivf
        >>> offsets.tolist(), docs.tolist()  # centroid 0: docs 0, 1; 1: doc 0; 2: doc 1
        ([0, 2, 3, 4], [0, 1, 0, 1])
        >>> lists.token_rows(np.array([1, 0])).tolist()
        [3, 4, 0, 1, 2]
    """

    def __init__(self, codes: np.ndarray, lengths: np.ndarray, nlist: int) -> None:
        self.codes = codes
        self.lengths = lengths
        self.nlist = nlist

    @cached_property
    def ivf(self) -> tuple[np.ndarray, np.ndarray]:
        """Per centroid, the positions of the documents with a token there.

        Shapes: → offsets int64 (nlist + 1,), doc positions int32 (E,), list by list.
        """
        n = len(self.lengths)
        docs = np.repeat(np.arange(n, dtype=np.int64), self.lengths)
        pairs = np.unique(self.codes.astype(np.int64) * n + docs)  # sorted by centroid
        counts = np.bincount(pairs // n, minlength=self.nlist)
        return np.concatenate([[0], np.cumsum(counts)]), (pairs % n).astype(np.int32)

    @cached_property
    def entries(self) -> tuple[Any, Any]:
        """Every IVF entry's centroid and document, list by list, as torch int64 (E,) each."""
        import torch

        offsets, docs = self.ivf
        centroid = np.repeat(np.arange(self.nlist, dtype=np.int64), np.diff(offsets))
        return torch.from_numpy(centroid), torch.from_numpy(docs.astype(np.int64))

    @cached_property
    def token_offsets(self) -> np.ndarray:
        """Where each document's tokens start, and the total. Shapes: → int64 (N + 1,)."""
        return np.concatenate([[0], np.cumsum(self.lengths, dtype=np.int64)])

    def token_rows(self, docs: np.ndarray) -> np.ndarray:
        """Rows of the tokens of documents ``docs``, document by document."""
        lens = self.lengths[docs].astype(np.int64)
        starts = np.repeat(self.token_offsets[docs] - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
        rows: np.ndarray = starts + np.arange(int(lens.sum()))
        return rows

    def probe(self, scores: np.ndarray, nprobe: int) -> np.ndarray:
        """Stage 1: the documents in the IVF lists of each query token's ``nprobe`` best centroids.

        Shapes: scores (Lq, nlist) → sorted doc positions (n,).
        """
        offsets, docs = self.ivf
        nprobe = min(nprobe, self.nlist)
        probed = np.unique(np.argpartition(-scores, nprobe - 1, axis=1)[:, :nprobe])
        out: np.ndarray = np.unique(np.concatenate([docs[offsets[c] : offsets[c + 1]] for c in probed]))
        return out

    def pruned_interaction(self, scores: np.ndarray, threshold: float) -> np.ndarray:
        """Stage 2: every document's approximate MaxSim from centroid scores, counting only the
        centroids some query token scores at least ``threshold`` (a pruned one counts 0). Rows of
        (nlist, Lq) scores are gathered per IVF entry and max-reduced per document: one contiguous
        row per entry, 2.4× faster here than gathering (Lq, E) columns.

        Shapes: scores (Lq, nlist) → (N,).
        """
        import torch

        by_centroid = torch.from_numpy(np.ascontiguousarray(scores.T))  # (nlist, Lq)
        kept = by_centroid.max(dim=1).values >= threshold
        entry_centroid, entry_doc = self.entries
        chosen = kept[entry_centroid]
        rows = by_centroid.index_select(0, entry_centroid[chosen])  # (E, Lq)
        approx = torch.zeros(len(self.lengths), scores.shape[0])  # (N, Lq)
        approx.scatter_reduce_(0, entry_doc[chosen][:, None].expand(-1, scores.shape[0]), rows, "amax")
        out: np.ndarray = approx.sum(dim=1).numpy()
        return out

    @cached_property
    def doc_centroids(self) -> tuple[np.ndarray, np.ndarray]:
        """Per document, its distinct centroids (a token's repeats counted once: MaxSim takes a
        maximum, so they add nothing to stage 3).

        Shapes: → offsets int64 (N + 1,), centroid ids int64 (D,), document by document.
        """
        n = len(self.lengths)
        docs = np.repeat(np.arange(n, dtype=np.int64), self.lengths)
        pairs = np.unique(docs * self.nlist + self.codes.astype(np.int64))  # sorted by document
        counts = np.bincount(pairs // self.nlist, minlength=n)
        return np.concatenate([[0], np.cumsum(counts)]), pairs % self.nlist

    def interaction(self, scores: np.ndarray, docs: np.ndarray) -> np.ndarray:
        """Stage 3: approximate MaxSim of documents ``docs`` from centroid scores: per query token
        the best centroid among each document's tokens, summed. Contiguous (Lq,) rows of centroid
        scores are gathered per distinct (document, centroid), as in stage 2.

        Shapes: scores (Lq, nlist), docs (n,) → (n,).
        """
        offsets, centroids = self.doc_centroids
        starts, ends = offsets[docs], offsets[docs + 1]
        lens = ends - starts
        first = np.concatenate([[0], np.cumsum(lens)[:-1]])  # each document's first row below
        rows = np.repeat(starts - first, lens) + np.arange(int(lens.sum()))
        by_centroid = np.ascontiguousarray(scores.T)  # (nlist, Lq)
        per_entry = by_centroid[centroids[rows]]  # (D_docs, Lq)
        best = np.maximum.reduceat(per_entry, first, axis=0)
        out: np.ndarray = best.sum(axis=1)
        return out

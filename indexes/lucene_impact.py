"""Learned sparse vectors (SPLADE) in a Lucene impact index, searched through pyserini (Anserini).

Lucene stores integer term frequencies, so term weights are quantised: ``round(w * scale)`` with
``scale = 100`` by default (pyserini's SPLADE examples), weights that round to 0 dropped, on the
documents and on the queries alike. A term is the decimal string of its vocabulary column
("2003"), indexed pretokenized (``-impact -pretokenized`` over a ``JsonVectorCollection``) and
searched with Anserini's ``SimpleImpactSearcher``: a query's score for a document is the sum of
query weight × document impact over shared terms, the dot product of the quantised vectors, which
the exact in-process ``sparse`` index computes too (``quantize`` gives it the same weights).

Reported scores are that integer dot product divided by ``scale²``: the quantised score in the
units of the original weights. Anserini rounds scores to 4 decimals and nudges ties apart by a
few 1e-6; rounding to the nearest integer first undoes both (the integer score is exact in
float32 below 2**24).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval_kd.indexes.lucene_base import LuceneIndex, default_threads, positive_int

if TYPE_CHECKING:
    import scipy.sparse as sp

SCALE = 100


def quantize(reps: Any, scale: int = SCALE, noun: str = "document") -> sp.csr_matrix:
    """Term weights as the integer impacts Lucene stores: ``round(w * scale)`` (half to even),
    zeros and negatives dropped.

    Shapes:
        reps csr_matrix (or array) float[N, vocab] → float32 csr_matrix[N, vocab] of integers.

    Example:
        >>> quantize(np.array([[0.014, 0.5, 1.236, -0.2]]), 100).toarray().tolist()
        [[1.0, 50.0, 124.0, 0.0]]
    """
    from retrieval_kd.indexes.sparse_index import as_csr  # scipy only when vectors arrive

    matrix = as_csr(reps, noun).copy()
    matrix.data = np.rint(matrix.data * scale)
    matrix.data[matrix.data < 0] = 0
    matrix.eliminate_zeros()
    return matrix


def impact_vectors(matrix: sp.csr_matrix) -> list[dict[str, int]]:
    """Each row of a quantised matrix as ``{term: impact}`` with terms named by their column.

    Example:
        >>> import scipy.sparse as sp
        >>> impact_vectors(sp.csr_matrix(np.array([[0.0, 3.0, 1.0]])))
        [{'1': 3, '2': 1}]
    """
    out = []
    for row in range(matrix.shape[0]):
        lo, hi = matrix.indptr[row], matrix.indptr[row + 1]
        out.append({str(c): int(v) for c, v in zip(matrix.indices[lo:hi], matrix.data[lo:hi], strict=True)})
    return out


class LuceneImpactIndex(LuceneIndex):
    """Quantised sparse vectors in a Lucene impact index.

    Args:
        student_fingerprint: the sparse encoder that made the vectors.
        scale: quantisation scale; impacts are ``round(w * scale)``.
        threads: search threads.
    """

    kind = "lucene-impact"
    OPTIONS = ("scale", "threads")
    COLLECTION = "JsonVectorCollection"

    def __init__(self, student_fingerprint: str = "", scale: int = SCALE, threads: int | None = None) -> None:
        self.scale = positive_int("lucene-impact", "scale", scale)
        settings = {
            "model": "impact (dot product of quantised term weights)",
            "quantisation": f"round(w * {scale}), zeros dropped, documents and queries",
            "scale": scale,
        }
        super().__init__(student_fingerprint, settings, threads or default_threads())
        self.dim = 0
        self.manifest["dim"] = None

    @classmethod
    def create(cls, student_fingerprint: str, options: Mapping[str, Any]) -> LuceneImpactIndex:
        """An empty index for the sparse encoder ``student_fingerprint``.

        Args:
            options: ``[index.options]``: ``scale`` (100), ``threads`` (all cores).
        """
        return cls(student_fingerprint, **cls.check_options(options))

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> LuceneImpactIndex:
        scale = (manifest.get("settings") or {}).get("scale", SCALE)
        self = cls(str(manifest.get("student_fingerprint", "")), scale=scale)
        self.dim = int(manifest.get("dim") or 0)
        return self

    def _quantized(self, reps: Any, n: int, noun: str) -> sp.csr_matrix:
        from retrieval_kd.indexes.sparse_index import shaped

        return shaped(self, quantize(reps, self.scale, noun), n, noun)

    def records(self, doc_ids: Sequence[str], reps: Any) -> list[dict[str, Any]]:
        """Shapes: doc_ids[N], reps csr_matrix float[N, vocab] → N ``{"id", "vector"}`` records."""
        vectors = impact_vectors(self._quantized(reps, len(doc_ids), "document"))
        return [{"id": d, "contents": "", "vector": v} for d, v in zip(doc_ids, vectors, strict=True)]

    def indexer_flags(self) -> list[str]:
        return ["-impact", "-pretokenized"]

    def open_searcher(self, folder: Path) -> Any:
        from retrieval_kd.lucene import start_jvm

        start_jvm()
        from jnius import autoclass

        # Anserini's searcher, not pyserini's LuceneImpactSearcher wrapper: the wrapper encodes
        # query *text* and drops query terms whose idf is not above min_idf (a term in every
        # document included), which would make the scores differ from the dot product.
        return autoclass("io.anserini.search.SimpleImpactSearcher")(str(folder))

    def run_search(self, searcher: Any, query_ids: list[str], query_reps: Any, k: int) -> dict[str, Any]:
        """Shapes: query_ids[Q], query_reps csr_matrix float[Q, vocab] → query id → hits."""
        from pyserini.pyclass import JArrayList

        # Pretokenized queries: each term repeated `impact` times, as pyserini's pre-encoded
        # queries are; Anserini counts the tokens back into the same integer weights (its
        # Map<String, Integer> search joins them into this very string anyway). One Java call
        # per query instead of one per term: pyjnius calls cost ~0.1 ms each.
        queries, qids = JArrayList(), JArrayList()
        vectors = impact_vectors(self._quantized(query_reps, len(query_ids), "query"))
        for qid, vector in zip(query_ids, vectors, strict=True):
            queries.add(" ".join(" ".join([term] * weight) for term, weight in vector.items()))
            qids.add(qid)
        results = searcher.batch_search_queries(queries, qids, int(k), int(self.threads))
        return {entry.getKey(): entry.getValue() for entry in results.entrySet().toArray()}

    def hit_score(self, score: float) -> float:
        return round(score) / self.scale**2

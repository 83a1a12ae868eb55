"""Sparse term-weight vectors (SPLADE) in memory, searched exactly by a sparse matrix product.

Documents are rows of one scipy CSR matrix ``[N, vocab]``; a batch of queries ``[Q, vocab]``
scores against its transpose in one ``csr @ csr`` product, which touches only the terms a query
and a document share: the work of an inverted index, done by scipy. Only documents sharing a term
with the query are returned (an inverted index never sees the others); ties are broken by doc id.

On disk an index is a folder: ``docs.npz`` (``scipy.sparse.save_npz``), ``doc_ids.json`` and
``manifest.json``, written last, so a folder with a manifest is complete.
"""

from __future__ import annotations

import datetime as dt
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval_kd.errors import DataError, RkdError
from retrieval_kd.indexes._folder import FORMAT, check_encoder, read_index_folder, write_index_folder
from retrieval_kd.types import Run

if TYPE_CHECKING:
    import scipy.sparse as sp


def as_csr(reps: Any, noun: str) -> sp.csr_matrix:
    """``reps`` (any scipy sparse matrix or a 2-D array) as a float32 CSR matrix."""
    import scipy.sparse as sp

    if sp.issparse(reps):
        out = sp.csr_matrix(reps, dtype=np.float32)
    else:
        arr = np.asarray(reps, dtype=np.float32)
        if arr.ndim != 2:
            raise RkdError(f"{noun} representations have shape {arr.shape}; expected a 2-D [N, vocab] matrix")
        out = sp.csr_matrix(arr)
    out.sum_duplicates()
    out.eliminate_zeros()
    return out


def check_shape(matrix: sp.csr_matrix, dim: int, n: int, noun: str) -> None:
    """Refuses ``n`` ids with another number of vectors, or vectors of another width than ``dim``.

    Raises:
        RkdError: naming both shapes (a dimension mismatch means another encoder).
    """
    if matrix.shape[1] != dim:
        raise RkdError(
            f"{noun} vectors have shape {tuple(matrix.shape)}; this index needs [N, {dim}] "
            "(dimension mismatch: were they encoded by the same student?)"
        )
    if matrix.shape[0] != n:
        raise RkdError(f"{n} {noun} ids but {matrix.shape[0]} {noun} vectors")


def shaped(index: Any, matrix: sp.csr_matrix, n: int, noun: str) -> sp.csr_matrix:
    """``matrix`` once it fits ``index``: the first documents set ``index.dim`` (and the
    manifest's ``dim``); every later batch, and every query batch, must match it
    (:func:`check_shape`). Shared by the sparse, Seismic and Lucene impact indexes."""
    if noun == "document" and not index.dim and matrix.shape[1] > 0:
        index.dim = index.manifest["dim"] = int(matrix.shape[1])
    check_shape(matrix, index.dim, n, noun)
    return matrix


def top_k(cols: np.ndarray, scores: np.ndarray, k: int, rank: np.ndarray) -> np.ndarray:
    """Positions of the ``k`` best entries by score, ties by ``rank`` (the doc id's sorted place).

    Shapes:
        cols int[M] (doc positions), scores float32[M], rank int[N] → int[min(k, M)], indices
        into ``cols``, best first.

    Example:
        >>> top_k(np.array([0, 1, 2]), np.array([1.0, 3.0, 1.0]), 2, np.array([1, 2, 0])).tolist()
        [1, 2]
    """
    positions = np.arange(len(cols))
    if len(cols) > k:
        # everything scoring at least the k-th best: the ties at the cut stay in, then the sort
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        positions = positions[scores >= kth]
    order = np.lexsort((rank[cols[positions]], -scores[positions]))[:k]
    best: np.ndarray = positions[order]
    return best


class SparseIndex:
    """An exact dot-product index over sparse document vectors.

    Args:
        student_fingerprint: fingerprint of the student that encoded the documents; queries
            from another student are refused by :meth:`check_encoder`.
        query_batch: queries scored per sparse product (bounds the ``[batch, N]`` score matrix).

    Example:
        >>> index = SparseIndex()
        >>> index.add(["a", "b", "c"], np.array([[1, 0, 0], [0, 2, 0], [1, 1, 0]], dtype=np.float32))
        >>> index.search(["q"], np.array([[2, 1, 0]], dtype=np.float32), k=5)
        {'q': {'c': 3.0, 'a': 2.0, 'b': 2.0}}
    """

    kind = "sparse"
    OPTIONS = ("query_batch",)

    def __init__(self, student_fingerprint: str = "", query_batch: int = 256) -> None:
        if not isinstance(query_batch, int) or isinstance(query_batch, bool) or query_batch < 1:
            raise RkdError(f"sparse index option query_batch must be an integer >= 1, got {query_batch!r}")
        self.query_batch = query_batch
        self.dim = 0
        self.path: Path | None = None
        self.doc_ids: list[str] = []
        self._id_set: set[str] = set()
        self._chunks: list[sp.csr_matrix] = []  # stacked on first search or save
        self._matrix: sp.csr_matrix | None = None  # [N, vocab]
        self._transposed: sp.csr_matrix | None = None  # [vocab, N], for csr @ csr
        self._rank: np.ndarray | None = None  # doc position → rank of its id in sorted order
        self.manifest: dict[str, Any] = {
            "format": FORMAT,
            "kind": self.kind,
            "dim": None,
            "count": 0,
            "nnz": 0,
            "student_fingerprint": student_fingerprint,
            "metric": "dot",
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }

    @classmethod
    def create(cls, student_fingerprint: str, options: Mapping[str, Any]) -> SparseIndex:
        """An empty index for the encoder ``student_fingerprint``; its vocabulary size is taken
        from the first documents added.

        Args:
            options: ``[index.options]``: ``query_batch`` (queries per sparse product, default 256).
        """
        unknown = sorted(set(options) - set(cls.OPTIONS))
        if unknown:
            raise RkdError(f"unknown sparse index option(s) {unknown}; choose from {list(cls.OPTIONS)}")
        return cls(student_fingerprint, **dict(options))

    def __len__(self) -> int:
        return len(self.doc_ids)

    # -- building ------------------------------------------------------------------------------

    def _check(self, reps: Any, n: int, noun: str) -> sp.csr_matrix:
        return shaped(self, as_csr(reps, noun), n, noun)

    def add(self, doc_ids: Sequence[str], reps: Any) -> None:
        """Adds documents.

        Shapes:
            doc_ids[N], reps csr_matrix (or array) float32[N, vocab].
        """
        doc_ids = [str(d) for d in doc_ids]
        matrix = self._check(reps, len(doc_ids), "document")
        if not doc_ids:
            return
        seen: set[str] = set()
        for doc_id in doc_ids:
            if doc_id in self._id_set or doc_id in seen:
                raise RkdError(f"duplicate document id {doc_id!r}: each document may be indexed once")
            seen.add(doc_id)
        self._id_set.update(doc_ids)
        self.doc_ids.extend(doc_ids)
        self._chunks.append(matrix)
        self._transposed = self._rank = None
        self.manifest["count"] = len(self.doc_ids)
        self.manifest["nnz"] = int(self.manifest["nnz"]) + int(matrix.nnz)

    def matrix(self) -> sp.csr_matrix:
        """All documents as one CSR matrix. Shapes: → float32[N, vocab]."""
        import scipy.sparse as sp

        if self._chunks:
            parts = ([self._matrix] if self._matrix is not None else []) + self._chunks
            self._matrix = sp.csr_matrix(sp.vstack(parts, format="csr"), dtype=np.float32)
            self._chunks = []
        if self._matrix is None:
            return sp.csr_matrix((0, self.dim), dtype=np.float32)
        return self._matrix

    # -- searching -----------------------------------------------------------------------------

    def search(self, query_ids: Sequence[str], query_reps: Any, k: int) -> Run:
        """The ``k`` best documents per query by dot product, exactly; ties by doc id.

        Shapes:
            query_ids[Q], query_reps csr_matrix (or array) float32[Q, vocab] → Run with at most
            k docs per query, only documents sharing a term with the query.
        """
        query_ids = [str(q) for q in query_ids]
        if not self.doc_ids:
            return {qid: {} for qid in query_ids}
        queries = self._check(query_reps, len(query_ids), "query")
        if k < 1:
            raise RkdError(f"k must be at least 1, got {k}")
        if self._transposed is None:
            self._transposed = self.matrix().transpose().tocsr()  # [vocab, N]
            self._rank = np.argsort(np.argsort(np.array(self.doc_ids, dtype=object), kind="stable"))
        assert self._rank is not None
        run: Run = {}
        for start in range(0, len(query_ids), self.query_batch):
            scores = (queries[start : start + self.query_batch] @ self._transposed).tocsr()  # [batch, N]
            for row, qid in enumerate(query_ids[start : start + self.query_batch]):
                lo, hi = scores.indptr[row], scores.indptr[row + 1]
                cols, values = scores.indices[lo:hi], scores.data[lo:hi]
                best = top_k(cols, values, k, self._rank)
                run[qid] = {self.doc_ids[c]: float(v) for c, v in zip(cols[best], values[best], strict=True)}
        return run

    # -- encoder check and persistence ----------------------------------------------------------

    def check_encoder(self, student_fingerprint: str) -> None:
        """Refuses queries encoded by a different student than the documents were."""
        check_encoder(self.manifest, self.path, student_fingerprint)

    def save(self, path: Path) -> None:
        """Writes the folder; the manifest goes last, so its presence means the folder is whole."""
        import scipy.sparse as sp

        if not self.doc_ids:
            raise RkdError("cannot save an empty sparse index: add documents first")
        path = Path(path)
        matrix = self.matrix()
        write_index_folder(
            path, "docs.npz", lambda f: sp.save_npz(f, matrix, compressed=False), self.doc_ids, self.manifest
        )
        self.path = path

    @classmethod
    def load(cls, path: Path, query_batch: int = 256) -> SparseIndex:
        """Reads a folder written by :meth:`save`."""
        import scipy.sparse as sp

        path = Path(path)
        manifest, doc_ids = read_index_folder(path, cls.kind, "docs.npz")
        docs_file = path / "docs.npz"
        try:
            matrix = sp.csr_matrix(sp.load_npz(docs_file), dtype=np.float32)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:  # npz is a zip (CRC-checked)
            raise DataError(f"{docs_file}: unreadable sparse matrix ({e})") from None
        if matrix.shape[0] != len(doc_ids) or manifest.get("count") != len(doc_ids):
            raise DataError(
                f"{path}: docs.npz holds {matrix.shape[0]} rows, doc_ids.json {len(doc_ids)} ids, "
                f"manifest.json says {manifest.get('count')}: the folder is inconsistent; rebuild it"
            )
        if matrix.shape[1] != manifest.get("dim"):
            raise DataError(
                f"{path}: docs.npz has dimension {matrix.shape[1]}, manifest.json {manifest.get('dim')}"
            )
        self = cls(str(manifest.get("student_fingerprint", "")), query_batch=query_batch)
        self.dim = int(matrix.shape[1])
        self._matrix = matrix
        self.doc_ids = [str(d) for d in doc_ids]
        self._id_set = set(self.doc_ids)
        self.manifest = dict(manifest)
        self.path = path
        return self

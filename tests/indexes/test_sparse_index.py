"""The exact sparse index: numpy brute force, ties by doc id, persistence, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from retrieval_kd.artifacts import file_checksums
from retrieval_kd.errors import DataError, RkdError
from retrieval_kd.indexes import INDEXES, load_index
from retrieval_kd.indexes.sparse_index import SparseIndex
from retrieval_kd.protocols import Index
from retrieval_kd.types import Run


def random_sparse(n: int, vocab: int, density: float, seed: int) -> sp.csr_matrix:
    """Small positive integer weights: exact float sums, and many tied scores."""
    rng = np.random.default_rng(seed)
    dense = rng.integers(1, 4, size=(n, vocab)) * (rng.random((n, vocab)) < density)
    return sp.csr_matrix(dense.astype(np.float32))


def brute_force(
    doc_ids: list[str], docs: np.ndarray, query_ids: list[str], queries: np.ndarray, k: int
) -> Run:
    """Every document sharing a term, best score first, ties by doc id: plain numpy."""
    scores = queries.astype(np.float64) @ docs.astype(np.float64).T  # (Q, N)
    shared = (queries > 0).astype(np.int64) @ (docs > 0).astype(np.int64).T > 0
    run: Run = {}
    for qi, qid in enumerate(query_ids):
        ranked = sorted((-scores[qi, j], doc_ids[j]) for j in range(len(doc_ids)) if shared[qi, j])[:k]
        run[qid] = {d: -s for s, d in ranked}
    return run


def test_hand_made_order_scores_and_ties() -> None:
    index = SparseIndex.create("", {})
    docs = np.array([[1, 0, 0, 0], [0, 2, 0, 0], [1, 1, 0, 0], [0, 0, 0, 5]], dtype=np.float32)
    index.add(["b", "a", "c", "d"], sp.csr_matrix(docs))
    run = index.search(["q"], sp.csr_matrix(np.array([[2, 1, 0, 0]], dtype=np.float32)), k=10)
    # q·b = 2, q·a = 2, q·c = 3; d shares no term and is not returned; a before b on the tie
    assert list(run["q"].items()) == [("c", 3.0), ("a", 2.0), ("b", 2.0)]
    assert index.search(["q"], np.array([[2, 1, 0, 0]], dtype=np.float32), k=2) == {"q": {"c": 3.0, "a": 2.0}}
    assert isinstance(index, Index) and index.manifest["count"] == 4 and index.manifest["nnz"] == 5


@pytest.mark.parametrize("k", [1, 5, 1000])
def test_search_equals_numpy_brute_force(k: int) -> None:
    docs = random_sparse(300, 60, 0.08, seed=1)
    queries = random_sparse(23, 60, 0.1, seed=2)
    rng = np.random.default_rng(3)
    doc_ids = [f"d{i:03d}" for i in rng.permutation(300)]  # id order differs from position order
    query_ids = [f"q{i}" for i in range(23)]
    index = SparseIndex.create("fp", {"query_batch": 7})
    for start in range(0, 300, 128):  # chunked adds, as build_index streams them
        index.add(doc_ids[start : start + 128], docs[start : start + 128])
    run = index.search(query_ids, queries, k)
    expected = brute_force(doc_ids, docs.toarray(), query_ids, queries.toarray(), k)
    assert run == expected
    assert all(list(run[q]) == list(expected[q]) for q in query_ids)  # the order too
    full = brute_force(doc_ids, docs.toarray(), query_ids, queries.toarray(), 300)
    at_cut = [list(full[q].values())[k - 1 : k + 1] for q in query_ids if len(full[q]) > k]
    if k < 1000:
        assert any(a == b for a, b in at_cut)  # the data really exercises the tie-break at the cut


def test_save_load_round_trip(tmp_path: Path) -> None:
    docs = random_sparse(50, 40, 0.15, seed=4)
    queries = random_sparse(5, 40, 0.2, seed=5)
    index = SparseIndex.create("abc123", {})
    index.add([f"d{i}" for i in range(50)], docs)
    before = index.search([f"q{i}" for i in range(5)], queries, k=10)
    index.save(tmp_path / "idx")
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert {k: manifest[k] for k in ("format", "kind", "count", "dim", "student_fingerprint")} == {
        "format": "rkd-index/1",
        "kind": "sparse",
        "count": 50,
        "dim": 40,
        "student_fingerprint": "abc123",
    }
    assert manifest["created"] and manifest["nnz"] == docs.nnz
    again = load_index(tmp_path / "idx")
    assert isinstance(again, SparseIndex) and len(again) == 50
    assert again.search([f"q{i}" for i in range(5)], queries, k=10) == before
    assert (again.matrix() != docs).nnz == 0
    again.check_encoder("abc123")
    with pytest.raises(RkdError, match=r"built with student abc123; these queries come from other"):
        again.check_encoder("other")
    # a changed file is refused by its checksum; an inconsistent folder whose manifest records
    # the changed file (a buggy writer) by the consistency check: neither is searched
    (tmp_path / "idx" / "doc_ids.json").write_text(json.dumps([f"d{i}" for i in range(49)]))
    with pytest.raises(DataError, match=r"doc_ids.json: damaged \(\d+ bytes, \d+ recorded in manifest"):
        SparseIndex.load(tmp_path / "idx")
    manifest["files"] = file_checksums(tmp_path / "idx", ["docs.npz", "doc_ids.json"])
    (tmp_path / "idx" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"docs.npz holds 50 rows, doc_ids.json 49 ids"):
        SparseIndex.load(tmp_path / "idx")


def test_clear_errors(tmp_path: Path) -> None:
    assert "sparse" in INDEXES.names()
    with pytest.raises(
        RkdError, match=r"unknown sparse index option\(s\) \['nprobe'\]; choose from \['query_batch'\]"
    ):
        SparseIndex.create("", {"nprobe": 4})
    with pytest.raises(RkdError, match=r"query_batch must be an integer >= 1, got 0"):
        SparseIndex.create("", {"query_batch": 0})
    index = SparseIndex()
    with pytest.raises(RkdError, match=r"cannot save an empty sparse index"):
        index.save(tmp_path / "empty")
    assert index.search(["q"], sp.csr_matrix((1, 7), dtype=np.float32), k=3) == {"q": {}}
    index.add(["a", "b"], sp.identity(3, format="csr", dtype=np.float32)[:2])
    with pytest.raises(RkdError, match=r"duplicate document id 'a'"):
        index.add(["c", "a"], sp.identity(3, format="csr", dtype=np.float32)[:2])
    with pytest.raises(RkdError, match=r"shape \(1, 4\); this index needs \[N, 3\] \(dimension mismatch"):
        index.search(["q"], sp.csr_matrix((1, 4), dtype=np.float32), k=1)
    with pytest.raises(RkdError, match=r"2 query ids but 1 query vectors"):
        index.search(["q", "r"], sp.csr_matrix((1, 3), dtype=np.float32), k=1)
    with pytest.raises(RkdError, match=r"k must be at least 1, got 0"):
        index.search(["q"], sp.csr_matrix((1, 3), dtype=np.float32), k=0)
    assert len(index) == 2  # the refused batch added nothing

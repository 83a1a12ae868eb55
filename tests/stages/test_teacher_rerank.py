"""Re-rank rows of a recipe (``[[eval.systems]] rerank = ...``): each ensemble member, the
ensemble and an inline teacher re-ranking an earlier row's top ``depth``, checked against scores
and nDCG@10 computed here by hand from the models themselves."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from retrieval_kd.config import RecipeConfig, load_config
from retrieval_kd.errors import ConfigError
from retrieval_kd.pipeline import run_recipe

# appended to the recipe's [eval] table; an inline teacher is the [teacher] schema, members included
ROWS = """systems = [
  {{ name = "bi-encoder", rerank = "teacher.members[0]" }},
  {{ name = "retriever", rerank = "teacher.members[1]", first_stage = "first_stage" }},
  {{ name = "ensemble", rerank = "teacher", depth = 8 }},
  {{ name = "mixed", depth = 8, teacher = {{ kind = "ensemble", weights = [0.5, 0.5], members = [
    {{ kind = "bi-encoder", model = "{model}" }}, {{ kind = "cross-encoder", model = "{ce}" }}] }} }},
  {{ name = "ce", first_stage = "mixed", depth = 5, teacher = {{ kind = "cross-encoder", model = "{ce}" }} }},
]
"""


TEACHER = """[teacher]
kind = "ensemble"
tune = true
tune_step = 0.25
members = [{{ kind = "bi-encoder", model = "{model}" }}, {{ retriever = "dense", model = "{other}" }}]
"""


def write_recipe(tiny_recipe: Path, model: Path, other: Path, ce: Path) -> Path:
    """The tiny recipe with an ensemble teacher (tuned weights), its first stage the tiny model
    (the "first_stage" row), nDCG@5 so that depths 8 and 5 may be re-ranked, and the rows."""
    text = tiny_recipe.read_text()
    bi_encoder = f'[teacher]\nkind = "bi-encoder"\nmodel = "{model}"\n'
    metrics = 'metrics = ["ndcg@10", "recall@10", "mrr@10"]'
    assert bi_encoder in text and metrics in text
    text = text.replace(bi_encoder, TEACHER.format(model=model, other=other))
    text = text.replace("[mine]\n", f'[mine]\nmodel = "{model}"\n')
    text = text.replace(metrics, 'metrics = ["ndcg@5", "recall@5"]')
    tiny_recipe.write_text(text + ROWS.format(model=model, ce=ce))
    return tiny_recipe


def cosines(
    model: Path, pairs: list[tuple[str, str]], queries: dict[str, str], docs: dict[str, str]
) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model), device="cpu")
    q = st.encode_query([queries[a] for a, _ in pairs], normalize_embeddings=True)
    d = st.encode_document([docs[b] for _, b in pairs], normalize_embeddings=True)
    return np.asarray((q * d).sum(1), dtype=np.float64)


def zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / x.std() if x.std() > 0 else np.zeros_like(x)


def ndcg5(ranked: list[str], relevant: dict[str, int]) -> float:
    """Binary-relevance nDCG@5, as written in every IR textbook."""
    dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(ranked[:5]) if relevant.get(d, 0) > 0)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(5, sum(v > 0 for v in relevant.values()))))
    return dcg / ideal


def top(path: Path, depth: int) -> dict[str, list[str]]:
    from retrieval_kd.eval.trec import read_trec

    run = read_trec(path)
    return {
        q: [d for d, _ in sorted(r.items(), key=lambda kv: (-kv[1], kv[0]))[:depth]] for q, r in run.items()
    }


def tuned_weights(out: Path, ensemble: str) -> list[float]:
    """The weights the score stage tuned, in member order (from the ensemble store's record)."""
    from retrieval_kd.scores.store import ScoreStore

    spec = ScoreStore.load(out / "scores", ensemble).manifest["teacher"]
    return [float(m["weight"]) for m in spec["members"]]


def by_hand(
    first: dict[str, list[str]], score: Any, qrels: dict[str, dict[str, int]]
) -> tuple[dict[str, list[str]], float]:
    """Each query's documents reordered by ``score(query, docs) -> array``, and the mean nDCG@5."""
    order = {}
    for q, docs in first.items():
        values = score(q, docs)
        order[q] = [docs[i] for i in np.argsort(-values, kind="stable")]
    return order, float(np.mean([ndcg5(order[q], qrels[q]) for q in order]))


def test_rerank_rows_match_scores_computed_by_hand(
    tiny_beir: Path, tiny_model: Path, tiny_recipe: Path, tmp_path: Path
) -> None:
    import torch
    from sentence_transformers import CrossEncoder

    from retrieval_kd.data import load_dataset
    from retrieval_kd.testing import tiny_bert_folder, tiny_cross_encoder_folder

    texts = [json.loads(line)["text"] for line in (tiny_beir / "corpus.jsonl").read_text().splitlines()]
    texts += [json.loads(line)["text"] for line in (tiny_beir / "queries.jsonl").read_text().splitlines()]
    other = tiny_bert_folder(tmp_path / "other", texts, seed=1)
    ce = tiny_cross_encoder_folder(tmp_path / "ce", tiny_model)
    config = load_config(write_recipe(tiny_recipe, tiny_model, other, ce))
    out = tmp_path / "run"
    lines: list[str] = []
    report = run_recipe(config, out, say=lines.append)
    ds = load_dataset(f"{tiny_beir}:test")
    queries, docs, qrels = ds.queries, ds.doc_texts(), ds.qrels
    first = top(out / "eval" / "teacher" / "run.trec", 10)
    assert len(first) == 8 and all(len(d) == 10 for d in first.values())

    def member(model: Path, depth: int = 10) -> Any:
        return lambda q, ids: cosines(model, [(q, d) for d in ids[:depth]], queries, docs)

    weights = tuned_weights(out, report["teacher_fingerprint"])
    expected = {
        "bi-encoder": by_hand(first, member(tiny_model), qrels),
        "retriever": by_hand(first, member(other), qrels),
        "ensemble": by_hand(
            {q: d[:8] for q, d in first.items()},
            lambda q, ids: (
                weights[0] * zscore(member(tiny_model)(q, ids)) + weights[1] * zscore(member(other)(q, ids))
            ),
            qrels,
        ),
    }
    plain = CrossEncoder(str(ce), device="cpu")

    def logits(q: str, ids: list[str]) -> np.ndarray:
        pairs = [(queries[q], docs[d]) for d in ids]
        return np.asarray(plain.predict(pairs, activation_fn=torch.nn.Identity()), dtype=np.float64)

    # cosines and raw logits are on different scales: only z-scores put them on one footing
    expected["mixed"] = by_hand(
        {q: d[:8] for q, d in first.items()},
        lambda q, ids: 0.5 * zscore(member(tiny_model)(q, ids)) + 0.5 * zscore(logits(q, ids)),
        qrels,
    )
    expected["ce"] = by_hand({q: d[:5] for q, d in expected["mixed"][0].items()}, logits, qrels)
    for name, (order, ndcg) in expected.items():
        got = top(out / "eval" / name / "run.trec", 10)
        assert got == order, name
        assert report["metrics"][name]["ndcg@5"] == pytest.approx(ndcg, abs=1e-9), name
    # the rows are in the significance tests and the written table, letters and all
    assert set(report["significance"]["better_than"]) >= set(expected)
    assert list(report["metrics"]) == ["first_stage", "student_before", "student_after", *expected]
    table = Path(report["comparison"]["markdown"]).read_text()
    assert all(f"| {'abcdefgh'[i]} | {name} |" in table for i, name in enumerate(report["metrics"]))
    # the tuned ensemble re-ranks with the weights the student learned from: the same teacher
    recorded = json.loads((out / "eval" / "ensemble" / "metrics.json").read_text())
    assert recorded["teacher_fingerprint"] == report["teacher_fingerprint"]
    assert recorded["metrics"] == report["metrics"]["ensemble"]
    assert recorded["cost"] == {"rerank_pairs": 64, "rerank_depth": 8}
    # the cross-encoder's pairs were all scored for the mixed row already: the store serves them
    ce_line = next(line for line in lines if line.startswith("rerank ce:"))
    assert "scored 0 pairs, 40 already stored" in ce_line
    # `rkd eval compare` reads a re-rank row's folder like any evaluation
    from typer.testing import CliRunner

    from retrieval_kd.cli import app

    folders = [str(out / "eval" / "teacher"), str(out / "eval" / "mixed")]  # first_stage, mixed
    args = ["eval", "compare", *folders, "--dataset", f"{tiny_beir}:test", "--out", str(tmp_path / "cmp")]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    compared = json.loads((tmp_path / "cmp" / "compare.json").read_text())["metrics"]
    assert compared["mixed"] == pytest.approx(report["metrics"]["mixed"])
    # a second run computes nothing: every re-rank row is up to date, and so is its scoring
    again: list[str] = []
    assert not any(run_recipe(config, out, say=again.append)["stages"].values())
    reranks = [line for line in again if line.startswith("rerank ")]
    assert len(reranks) == 5 and all(": up to date (" in line for line in reranks)


def test_a_row_without_rerank_dumps_as_before() -> None:
    """New optional fields leave the fingerprints of recipes that do not use them unchanged."""
    from retrieval_kd.fingerprint import hash_json

    config = RecipeConfig.from_dict({"eval": {"systems": [{"name": "b", "model": "bm25"}]}}, "r.toml")
    row = {"name": "b", "model": "bm25", "index": None, "kind": None, "index_kind": None, "index_options": {}}
    assert config.to_json()["eval"]["systems"] == [row]
    assert config.section_hash("eval") == hash_json(
        {
            "eval": {
                "metrics": ["ndcg@10", "recall@100", "mrr@10"],
                "k": 100,
                "max_queries": None,
                "systems": [row],
                "stat_test": "student",
                "correction": "holm",
            }
        }
    )


ENSEMBLE = {
    "kind": "ensemble",
    "members": [{"kind": "bi-encoder", "model": "m"}, {"retriever": "bm25"}],
}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"rerank": "teacher", "model": "bm25"}, "[eval].systems[0].rerank: a re-rank row re-ranks"),
        ({"teacher": {"kind": "bi-encoder"}, "index": "x"}, "[eval].systems[0].teacher: a re-rank row"),
        ({}, "[eval].systems[0]: give exactly one of 'model' (to index) or 'index' (a folder), or a teacher"),
        (
            {"rerank": "teacher.members[2]"},
            "rerank = 'teacher.members[2]' names no teacher; choose from "
            "['teacher', 'teacher.members[0]', 'teacher.members[1]']",
        ),
        (
            {"rerank": "teacher", "first_stage": "later"},
            "first_stage = 'later' is not a row listed before it; "
            "choose from ['first_stage', 'student_before', 'student_after']",
        ),
        ({"rerank": "teacher", "depth": 200}, "[eval].systems[0].depth: expected at most [eval].k = 100"),
        (
            {"rerank": "teacher", "depth": 50},
            "[eval].systems[0].depth: metric 'recall@100' needs the top 100",
        ),
        ({"model": "bm25", "depth": 50}, "[eval].systems[0].depth: applies to re-rank rows"),
        ({"teacher": {"kind": "bi-encodr"}}, "[eval].systems[0].teacher.kind = 'bi-encodr' is unknown"),
        ({"teacher": {**ENSEMBLE, "tune": True}}, "[eval].systems[0].teacher.tune: weights are tuned on"),
        (
            {"teacher": {"kind": "ensemble", "members": []}},
            "[eval].systems[0].teacher.members: an ensemble needs",
        ),
    ],
)
def test_rerank_rows_are_checked(row: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        RecipeConfig.from_dict(
            {"teacher": ENSEMBLE, "mine": {"model": "m"}, "eval": {"systems": [{"name": "x", **row}]}},
            "r.toml",
        )
    assert message in str(e.value) and str(e.value).startswith("r.toml: [eval].systems[0]")
    assert "\n" not in str(e.value)


def test_first_stage_may_be_an_earlier_row_only() -> None:
    systems = [{"name": "bm25", "model": "bm25"}, {"name": "r", "rerank": "teacher", "first_stage": "bm25"}]
    config = RecipeConfig.from_dict(
        {"teacher": ENSEMBLE, "mine": {"model": "m"}, "eval": {"systems": systems}}, "r.toml"
    )
    assert config.eval.systems[1].first_stage == "bm25"
    with pytest.raises(ConfigError, match=r"first_stage = 'bm25' is not a row listed before it"):
        RecipeConfig.from_dict(
            {"teacher": ENSEMBLE, "mine": {"model": "m"}, "eval": {"systems": systems[::-1]}}, "r.toml"
        )


def test_shipped_ensemble_recipe_reranks_with_each_member_and_the_ensemble() -> None:
    config = load_config(Path(__file__).resolve().parents[2] / "configs" / "scifact-ensemble-distill.toml")
    rows = {s.name: (s.rerank, s.first_stage, s.depth) for s in config.eval.systems if s.rerank}
    assert rows == {
        "minilm-rerank": ("teacher.members[0]", "first_stage", 100),
        "bm25-rerank": ("teacher.members[1]", "first_stage", 100),
        "ensemble-rerank": ("teacher", "first_stage", 100),
    }
    minilm, bm25 = config.teacher.members
    assert (minilm.model, bm25.retriever) == ("sentence-transformers/all-MiniLM-L6-v2", "bm25")
    assert [s.name for s in config.eval.systems][:2] == ["bm25", "minilm-student"]  # kept

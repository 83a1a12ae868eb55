"""``[teacher] kind = "ensemble"`` in a recipe: the members' stores, then the ensemble over them
(scores.ensemble), which the student trains from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retrieval_kd.config import RecipeConfig, load_config
from retrieval_kd.errors import ConfigError
from retrieval_kd.pipeline import run_recipe
from retrieval_kd.scores import ensemble
from retrieval_kd.scores.store import ScoreStore
from retrieval_kd.stages import MineStage, ScoreStage, mine_stage, score_stage

MEMBERS = """
[[teacher.members]]
kind = "bi-encoder"
model = "{model}"
[[teacher.members]]
kind = "cross-encoder"
model = "{ce}"
"""


def recipe(path: Path, tiny_beir: Path, model: Path, ce: Path, teacher: str) -> Path:
    path.write_text(
        f"""
name = "tiny-ensemble"
[data]
train = "{tiny_beir}:train"
eval = "{tiny_beir}:test"
[teacher]
kind = "ensemble"
{teacher}
{MEMBERS.format(model=model, ce=ce)}
[mine]
model = "{model}"
negatives = 4
[student]
model = "{model}"
num_layers = 1
[train]
negatives = 3
epochs = 1
batch_size = 4
warmup = 0.0
[eval]
metrics = ["ndcg@10"]
k = 10
"""
    )
    return path


def test_recipe_trains_from_the_ensemble_of_its_members(
    tiny_beir: Path, tiny_model: Path, tmp_path: Path
) -> None:
    from retrieval_kd.testing import tiny_cross_encoder_folder

    ce = tiny_cross_encoder_folder(tmp_path / "ce", tiny_model)
    config = load_config(recipe(tmp_path / "r.toml", tiny_beir, tiny_model, ce, "tune = true"))
    out = tmp_path / "run"
    report = run_recipe(config, out)
    fp = report["teacher_fingerprint"]
    # the members in the recipe's order (the store lists fingerprints, whose order varies by run)
    stores = [ScoreStore.load(out / "scores", f) for f in ScoreStore.teachers(out / "scores") if f != fp]
    order = ["bi-encoder", "cross-encoder"]
    members = sorted(stores, key=lambda m: order.index(m.manifest["teacher"]["kind"]))
    assert [m.manifest["teacher"]["kind"] for m in members] == order
    assert len(members) == 2 and fp.startswith("ensemble-")
    # the weights are the ones tune() picks on the training split's qrels, from the same stores
    tuned = ensemble.tune(members, f"{tiny_beir}:train", "zscore")
    stored = ScoreStore.load(out / "scores", fp)
    assert stored.manifest["teacher"]["tuning"]["best"]["weights"] == list(tuned.weights)
    assert fp == ensemble.fingerprint([m.fingerprint for m in members], tuned.weights, "zscore")
    # the student trained on exactly what combine() gives for those stores and weights
    expected = ensemble.combine(members, tuned.weights, "zscore").to_table()
    assert stored.to_table().equals(expected)
    assert len(expected) == len(members[0]) == len(members[1]) > 0
    assert report["stages"]["train"] and "first_stage" in report["metrics"]
    # a second run computes nothing; fixed weights make a new ensemble from the same member stores
    assert not any(run_recipe(config, out)["stages"].values())
    fixed = config.model_copy(update={"teacher": config.teacher.replace(tune=False, weights=(0.25, 0.75))})
    lines: list[str] = []
    again = run_recipe(fixed, out, say=lines.append)
    assert again["stages"]["score"] and again["stages"]["train"] and not again["stages"]["mine"]
    score_line = next(line for line in lines if line.startswith("score: ensemble-"))
    assert score_line.count("up to date") == 2  # both members: nothing scored again
    new = ScoreStore.load(out / "scores", again["teacher_fingerprint"])
    assert new.to_table().equals(ensemble.combine(members, [0.25, 0.75], "zscore").to_table())


def test_retriever_and_store_members(tiny_beir: Path, tiny_model: Path, tmp_path: Path) -> None:
    """A retriever member scores each pair with its search score over the whole corpus (here a
    dense retriever: the cosine of the normalised embeddings); a ``scores`` member is a store."""
    from sentence_transformers import SentenceTransformer

    from retrieval_kd.data import load_dataset

    train = f"{tiny_beir}:train"
    cands = mine_stage(MineStage(train, str(tiny_model), tmp_path / "cands", negatives=4)).path
    store = tmp_path / "store"
    base = ScoreStage(cands, train, "bi-encoder", str(tiny_model), store)
    existing = score_stage(base).extra["teacher"]
    section = RecipeConfig.from_dict(
        {
            "teacher": {
                "kind": "ensemble",
                "normalisation": "none",
                "weights": [1, 0],
                "members": [
                    {"retriever": "dense", "model": str(tiny_model)},
                    {"scores": str(store / existing)},
                ],
            },
            "mine": {"model": str(tiny_model)},
        },
        "r.toml",
    ).teacher
    result = score_stage(ScoreStage(cands, train, "ensemble", "-", store, ensemble=section))
    retriever_fp, store_fp = result.extra["members"]
    assert store_fp == existing and retriever_fp.startswith("retriever-")
    ds = load_dataset(train)
    model = SentenceTransformer(str(tiny_model), device="cpu")
    got = ScoreStore.load(store, retriever_fp).to_table().to_pylist()
    q = model.encode_query([ds.queries[r["query_id"]] for r in got], normalize_embeddings=True)
    d = model.encode_document([ds.docs[r["doc_id"]].full_text() for r in got], normalize_embeddings=True)
    np.testing.assert_allclose([r["score"] for r in got], (q * d).sum(1), atol=1e-5)
    # weights (1, 0) with no normalisation: the ensemble is the retriever's scores
    fused = ScoreStore.load(store, result.extra["teacher"]).to_table()
    np.testing.assert_array_equal(fused.column("score").to_numpy(), [r["score"] for r in got])


@pytest.mark.parametrize(
    ("teacher", "message"),
    [
        (
            {"kind": "ensemble", "members": [{"kind": "bi-encoder", "model": "m"}]},
            "at least 2 [[teacher.members]], got 1",
        ),
        ({"kind": "bi-encoder", "tune": True}, "['tune'] apply to kind = 'ensemble' only"),
        (
            {
                "kind": "ensemble",
                "tune": True,
                "weights": [1, 1],
                "members": [{"scores": "a"}, {"scores": "b"}],
            },
            "give weights or tune = true, not both",
        ),
        (
            {"kind": "ensemble", "weights": [1], "members": [{"scores": "a"}, {"scores": "b"}]},
            "[teacher].weights: expected 2 weights",
        ),
        (
            {"kind": "ensemble", "members": [{"scores": "a", "model": "m"}, {"scores": "b"}]},
            "[teacher].members[0]: a 'scores' member is a store as it is; unset ['model']",
        ),
        (
            {"kind": "ensemble", "members": [{"kind": "bi-encodr", "model": "m"}, {"scores": "b"}]},
            "[teacher].members[0].kind = 'bi-encodr' is unknown",
        ),
        (
            {"kind": "ensemble", "members": [{"scores": "a"}, {"retriever": "bm25", "kind": "student"}]},
            "[teacher].members[1]: give exactly one of 'kind' (a teacher), 'retriever' or 'scores'",
        ),
    ],
)
def test_ensemble_sections_are_checked(teacher: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        RecipeConfig.from_dict({"teacher": teacher, "mine": {"model": "m"}}, "r.toml")
    assert message in str(e.value) and str(e.value).startswith("r.toml: [teacher]")

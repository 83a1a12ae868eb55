"""The cross-encoder (reranker) student: trained by the same adapter and losses from a teacher's
store, reranking a first-stage run, saved as a plain CrossEncoder folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from retrieval_kd.config import StudentConfig, TrainConfig
from retrieval_kd.data import load_dataset
from retrieval_kd.stages import MineStage, ScoreStage, TrainStage, mine_stage, score_stage, train_stage
from retrieval_kd.students import build_student, load_student


@pytest.fixture
def scored(tiny_beir: Path, tiny_model: Path, tmp_path: Path) -> tuple[Path, Path, str]:
    """Mined candidates and a bi-encoder teacher's store on the tiny fixture's train split."""
    data = f"{tiny_beir}:train"
    mined = mine_stage(MineStage(dataset=data, model=str(tiny_model), out=tmp_path / "mine", negatives=4))
    score = ScoreStage(mined.path, data, "bi-encoder", str(tiny_model), tmp_path / "scores")
    teacher = score_stage(score).extra["teacher"]
    return mined.path, tmp_path / "scores", teacher


def _configs(tiny_model: Path, loss: str) -> tuple[TrainConfig, StudentConfig]:
    """8 epochs over the tiny fixture, and a 1-layer cross-encoder on the tiny raw BERT."""
    train = {"loss": loss, "negatives": 3, "epochs": 8, "batch_size": 4, "lr": 3e-3, "warmup": 0.0, "seed": 0}
    student = {"kind": "cross-encoder", "model": str(tiny_model.parent / "hf"), "num_layers": 1}
    return TrainConfig.model_validate(train), StudentConfig.model_validate(student)


def test_scores_are_pair_logits(tiny_model: Path) -> None:
    student = build_student("cross-encoder", str(tiny_model.parent / "hf"), num_layers=1)
    assert student.role == "reranker" and student.model.num_labels == 1
    groups = [["a cat sat", "dogs bark", "the sky"], ["red apples", "green pears", "a cat sat"]]
    matrix = student.scores(["cats", "fruit"], groups)
    assert matrix.shape == (2, 3)
    flat = student.score_pairs(["cats"] * 3 + ["fruit"] * 3, [d for g in groups for d in g])
    np.testing.assert_allclose(matrix.detach().numpy().ravel(), flat, rtol=0, atol=1e-5)
    columns = [["cats", "fruit"], *[[g[j] for g in groups] for j in range(3)]]
    trained = student.training_scores(student.model, columns, 3)
    assert trained.regularizers == {}
    np.testing.assert_allclose(trained.scores.detach().numpy(), matrix.detach().numpy(), atol=1e-5)


def test_distilled_reranker_learns_the_teachers_order(
    scored: tuple[Path, Path, str], tiny_beir: Path, tiny_model: Path, tmp_path: Path
) -> None:
    from sentence_transformers import CrossEncoder

    from retrieval_kd.scores.store import ScoreStore
    from retrieval_kd.train.trainer import build_groups

    candidates, store, teacher = scored
    config, student_config = _configs(tiny_model, "kl")
    hf = student_config.model
    result = train_stage(
        TrainStage(
            candidates, store, teacher, f"{tiny_beir}:train", student_config, config, tmp_path / "student"
        )
    )
    losses = [row["loss"] for row in result.extra["log"]]
    assert np.mean(losses[-4:]) < 0.7 * np.mean(losses[:4])  # it learns

    groups = build_groups(
        __import__("retrieval_kd.data.candidates", fromlist=["Candidates"]).Candidates.load(candidates),
        ScoreStore.load(store, teacher),
        config,
        0,
    )
    ds = load_dataset(f"{tiny_beir}:train")
    docs = ds.doc_texts()

    def agreement(student: object) -> float:
        """Share of groups whose top document is the teacher's top document."""
        hits = 0
        for g in groups:
            s = student.score_pairs([ds.queries[g.query_id]] * len(g.doc_ids), [docs[d] for d in g.doc_ids])  # type: ignore[attr-defined]
            hits += int(np.argmax(s) == int(np.argmax(g.teacher)))
        return hits / len(groups)

    before = build_student("cross-encoder", hf, num_layers=1)
    after = load_student(tmp_path / "student")
    assert after.kind == "cross-encoder" and after.role == "reranker"
    assert agreement(after) >= 0.75 and agreement(after) > agreement(before)

    # a plain CrossEncoder folder: same logits with an identity activation
    plain = CrossEncoder(str(tmp_path / "student"), device="cpu", activation_fn=torch.nn.Identity())
    pairs = [(ds.queries[g.query_id], docs[g.doc_ids[0]]) for g in groups]
    want = plain.predict(pairs, activation_fn=torch.nn.Identity(), convert_to_numpy=True)
    got = after.score_pairs([q for q, _ in pairs], [d for _, d in pairs])  # type: ignore[attr-defined]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_bce_from_qrels_alone_ranks_positives_first(
    scored: tuple[Path, Path, str], tiny_beir: Path, tiny_model: Path, tmp_path: Path
) -> None:
    """loss = "bce" ignores the teacher: the positives (qrels) should rise to the top."""
    from retrieval_kd.evaluation import evaluate_system

    candidates, store, teacher = scored
    config, student_config = _configs(tiny_model, "bce")
    hf = student_config.model
    train_stage(
        TrainStage(candidates, store, teacher, f"{tiny_beir}:train", student_config, config, tmp_path / "s")
    )
    ds = load_dataset(f"{tiny_beir}:train")
    first_stage = {q: {d: 1.0 / (1 + i) for i, d in enumerate(sorted(ds.docs))} for q in ds.qrels}
    before = evaluate_system(
        "before",
        build_student("cross-encoder", hf, num_layers=1),
        ds,
        ("mrr@10",),
        32,
        first_stage=first_stage,
    )
    after = evaluate_system(
        "after", load_student(tmp_path / "s"), ds, ("mrr@10",), 32, first_stage=first_stage
    )
    assert after.metrics["mrr@10"] > before.metrics["mrr@10"] + 0.2
    assert after.cost["latency_ms_p50"] is not None and after.cost["parameters"] > 0

    # the same reranker over a first stage from the CLI: a row "<first>+<reranker>" with its cost
    import json

    from typer.testing import CliRunner

    from retrieval_kd.cli import app

    out = tmp_path / "eval"
    args = [
        "eval",
        "beir",
        "-d",
        f"{tiny_beir}:test",
        "--model",
        str(tiny_model),
        "--rerank",
        str(tmp_path / "s"),
        "--rerank",
        f"distilled-ce={tmp_path / 's'}",  # the same reranker, its row named
    ]
    args += ["--depth", "10", "-k", "10", "--metric", "mrr@10", "--out", str(out)]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "compare.json").read_text())
    assert set(record["metrics"]) == {"model", "model+s", "distilled-ce"}
    assert record["metrics"]["distilled-ce"] == record["metrics"]["model+s"]
    reranked = json.loads((out / "model+s" / "metrics.json").read_text())
    assert reranked["depth"] == 10 and reranked["cost"]["parameters"] > 0
    test = load_dataset(f"{tiny_beir}:test")
    assert set(record["metrics"]["model+s"]) == {"mrr@10"} and len(test.qrels) > 0


def test_recipe_with_a_reranker_student(tiny_recipe: Path, tiny_model: Path, tmp_path: Path) -> None:
    """`rkd run` with a cross-encoder student: before and after rerank the teacher's run (no index)."""
    from retrieval_kd.config import load_config
    from retrieval_kd.pipeline import run_recipe

    text = tiny_recipe.read_text().replace(
        f'[student]\nmodel = "{tiny_model}"',
        f'[student]\nkind = "cross-encoder"\nmodel = "{tiny_model.parent / "hf"}"',
    )
    text = text.replace("epochs = 3", "epochs = 8")
    recipe = tmp_path / "rerank.toml"
    recipe.write_text(text)
    config = load_config(recipe)
    assert config.student.kind == "cross-encoder"
    out = tmp_path / "run"
    report = run_recipe(config, out)
    assert list(report["metrics"]) == ["teacher", "student_before", "student_after"]
    assert not (out / "index" / "student_after").exists()  # a reranker has no index
    assert report["cost"]["student_after"].get("index_bytes") is None
    # reranking the teacher's own top 10 by a student that learnt the teacher's order
    after, before = report["metrics"]["student_after"], report["metrics"]["student_before"]
    assert after["mrr@10"] > before["mrr@10"]
    again = run_recipe(config, out)
    assert not any(again["stages"].values())  # every stage, the reranking included, up to date
    assert again["metrics"] == report["metrics"]

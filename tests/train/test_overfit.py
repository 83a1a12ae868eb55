"""Distillation actually distils: a tiny student overfits a fixed set of groups, the loss falls
by more than half and the student's order agrees with the teacher's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from retrieval_kd.config import StudentConfig, TrainConfig
from retrieval_kd.data import load_dataset
from retrieval_kd.data.candidates import Candidate, Candidates
from retrieval_kd.scores.scoring import score_pairs
from retrieval_kd.scores.store import ScoreStore
from retrieval_kd.stages import TrainStage, train_stage
from retrieval_kd.students.dense import DenseStudent
from retrieval_kd.testing import FakeTeacher
from retrieval_kd.train.trainer import build_groups


def overlap(query: str, doc: str) -> float:
    """Teacher: word overlap (a deterministic, ordered relevance signal)."""
    return float(len(set(query.split()) & set(doc.split())))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = a.argsort().argsort(), b.argsort().argsort()
    return float(np.corrcoef(ra, rb)[0, 1])


@pytest.mark.parametrize(
    "loss,options",
    [
        ("kl", {"student_temperature": 0.05}),
        ("margin_mse", {"teacher_scale": 0.25}),
        ("pairwise", {"temperature": 0.1}),
    ],
)
def test_overfit_follows_teacher(
    loss: str, options: dict[str, float], tiny_beir: Path, tiny_model: Path, tmp_path: Path
) -> None:
    ds = load_dataset(f"{tiny_beir}:train")
    docs = ds.doc_texts()
    ids = sorted(docs)
    items = []
    for i, qid in enumerate(sorted(ds.queries)[:4]):
        pos = next(iter(ds.qrels[qid]))
        negs = tuple(d for d in ids[i * 5 : i * 5 + 8] if d != pos)[:3]
        items.append(Candidate(qid, (pos,), negs))
    cands = Candidates(items)
    cands.save(tmp_path / "cands")
    teacher = FakeTeacher(overlap)
    with ScoreStore.open(tmp_path / "scores", teacher.fingerprint(), teacher.spec()) as store:
        score_pairs(store, teacher, cands.pairs(), ds.queries, docs)
    config = TrainConfig(
        loss=loss, loss_options=options, negatives=3, epochs=30, batch_size=4, lr=3e-3, warmup=0.0, seed=0
    )
    result = train_stage(
        TrainStage(
            candidates=tmp_path / "cands",
            store=tmp_path / "scores",
            teacher=None,
            dataset=f"{tiny_beir}:train",
            student=StudentConfig(model=str(tiny_model)),
            train=config,
            out=tmp_path / "student",
        )
    )
    log = result.extra["log"]
    student = DenseStudent.load(tmp_path / "student", device="cpu")
    store = ScoreStore.load(tmp_path / "scores")
    first, last = log[0]["loss"], np.mean([r["loss"] for r in log[-5:]])
    assert last < first / 2, (first, last)
    groups = build_groups(cands, store, config, epoch=0)
    agreements = []
    for g in groups:
        s = (
            student.encode_queries([ds.queries[g.query_id]])
            @ student.encode_documents([docs[d] for d in g.doc_ids]).T
        )
        t = np.array(g.teacher)
        if np.ptp(t) > 0:
            agreements.append(int(np.argmax(s[0]) == np.argmax(t)))
    assert sum(agreements) >= len(agreements) - 1  # the teacher's top candidate is the student's
    lines = (tmp_path / "student" / "train_log.jsonl").read_text().splitlines()
    assert len(lines) == len(log) == 30 and json.loads(lines[0])["step"] == 1
    meta = json.loads((tmp_path / "student" / "rkd.json").read_text())
    assert meta["provenance"]["teacher_fingerprint"] == teacher.fingerprint()
    assert meta["provenance"]["train"]["loss"] == loss and meta["provenance"]["stage"] == "train"

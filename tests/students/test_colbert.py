"""ColBERT students: MaxSim by hand and against sentence-transformers, the options, save/load as
a plain MultiVectorEncoder, and distillation through the one trainer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from retrieval_kd.errors import RkdError
from retrieval_kd.students import STUDENTS, load_student
from retrieval_kd.students.colbert import ColbertStudent
from retrieval_kd.students.maxsim import TokenVectors, maxsim, pad

TEXTS = ["paint protects steel from rust", "yeast makes bread dough rise", "iron rusts in water"]


def test_maxsim_by_hand_with_masks() -> None:
    q = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])  # third token masked out
    d = torch.tensor([[[2.0, 0.0], [0.0, -3.0]], [[-1.0, 0.5], [7.0, 7.0]]])
    s = maxsim(q, d, torch.tensor([[True, True, False]]), torch.tensor([[True, True], [True, False]]))
    # doc 0: max(2, 0) + max(0, -3) = 2; doc 1 (only (-1, .5)): -1 + .5 = -0.5
    assert s.tolist() == [[2.0, -0.5]]


def test_maxsim_agrees_with_sentence_transformers() -> None:
    from sentence_transformers.util.similarity import maxsim as st_maxsim

    gen = torch.Generator().manual_seed(0)
    queries = [torch.randn(n, 8, generator=gen) for n in (3, 5)]
    docs = [torch.randn(n, 8, generator=gen) for n in (1, 4, 7, 2)]
    q, q_mask = pad(torch.cat(queries), [3, 5])
    d, d_mask = pad(torch.cat(docs), [1, 4, 7, 2])
    torch.testing.assert_close(maxsim(q, d, q_mask, d_mask), st_maxsim(queries, docs), rtol=1e-5, atol=1e-5)


def test_token_vectors_check_their_layout() -> None:
    tv = TokenVectors.from_list([np.ones((2, 4)), np.ones((3, 4))])
    assert len(tv) == 2 and tv.offsets.tolist() == [0, 2, 5] and tv.vectors.dtype == np.float32
    with pytest.raises(RkdError, match="lengths sum to 4 but there are 5 vectors"):
        TokenVectors(np.ones((5, 4)), np.array([2, 2]))
    with pytest.raises(RkdError, match="at least one token vector"):
        TokenVectors(np.ones((2, 4)), np.array([2, 0]))
    with pytest.raises(RkdError, match="one dim; got dims"):
        TokenVectors.from_list([np.ones((2, 4)), np.ones((2, 3))])


def test_defaults_are_colbertv2s(tiny_model: Path) -> None:
    student = ColbertStudent.from_pretrained(str(tiny_model), device="cpu")
    assert STUDENTS.get("colbert") is ColbertStudent and student.index_kind == "maxsim"
    transformer = student.model[0]
    assert transformer.query_expansion["length"] == 32 and transformer.document_length == 180
    assert student.model.get_embedding_dimension() == 32  # the tiny backbone's width < 128
    # markers: the tiny vocabulary has no [unused0], so [Q] and [D] are added as single tokens
    ids = student.model.preprocess(["Why does iron rust"], prompt="[Q] ", task="query")["input_ids"][0]
    tokens = student.model.tokenizer.convert_ids_to_tokens(ids)
    assert tokens[:7] == ["[CLS]", "[Q]", "why", "does", "iron", "rust", "[SEP]"]
    assert tokens[7:] == ["[MASK]"] * 25  # query augmentation: exactly 32 tokens
    q = student.encode_queries(["why does iron rust", "rust"])
    assert q.lengths.tolist() == [32, 32]  # the [MASK] tokens are scored
    d = student.encode_documents(TEXTS)
    assert d.lengths.tolist() == [len(t.split()) + 3 for t in TEXTS]  # [CLS] [D] words [SEP]
    np.testing.assert_allclose(np.linalg.norm(d.vectors, axis=1), 1.0, atol=1e-5)
    again = ColbertStudent.from_pretrained(str(tiny_model), device="cpu")
    assert again.fingerprint() == student.fingerprint()  # the projection is seeded


def test_options(tiny_model: Path) -> None:
    student = ColbertStudent.from_pretrained(
        str(tiny_model),
        num_layers=1,
        device="cpu",
        dim=16,
        query_augmentation=False,
        markers=False,
        document_length=5,
    )
    assert len(student.model[0].auto_model.encoder.layer) == 1
    q = student.encode_queries(["why does iron rust"])
    assert q.dim == 16 and q.lengths.tolist() == [6]  # [CLS] 4 words [SEP], no markers, no [MASK]
    assert student.encode_documents(TEXTS).lengths.tolist() == [5, 5, 5]
    assert student.model.prompts.get("query", "") == ""
    base = ColbertStudent.from_pretrained(str(tiny_model), device="cpu")
    assert student.fingerprint() != base.fingerprint()
    with pytest.raises(RkdError, match=r"unknown colbert student option\(s\) \['size'\]; choose from"):
        ColbertStudent.from_pretrained(str(tiny_model), size=3)
    with pytest.raises(RkdError, match="option dim must be an integer >= 1, got 0"):
        ColbertStudent.from_pretrained(str(tiny_model), dim=0)


def test_scores_are_maxsim_of_the_encodings(tiny_model: Path) -> None:
    student = ColbertStudent.from_pretrained(str(tiny_model), device="cpu")
    with torch.no_grad():
        s = student.scores(["why does iron rust", "bread"], [TEXTS, TEXTS[::-1]])
    q = student.encode_queries(["why does iron rust", "bread"])
    d = student.encode_documents(TEXTS)
    reference = student.model.similarity(q.split(), d.split()).numpy()  # sentence-transformers' MaxSim
    np.testing.assert_allclose(s.numpy(), np.stack([reference[0], reference[1][::-1]]), rtol=1e-5)


def test_saved_student_loads_in_plain_multi_vector_encoder(tiny_model: Path, tmp_path: Path) -> None:
    from sentence_transformers import MultiVectorEncoder

    student = ColbertStudent.from_pretrained(str(tiny_model), num_layers=1, device="cpu")
    before_q = student.encode_queries(["why does iron rust"])
    before_d = student.encode_documents(TEXTS)
    student.save(tmp_path / "s", {"note": "test"})
    meta = json.loads((tmp_path / "s" / "rkd.json").read_text())
    assert meta["kind"] == "colbert" and meta["student_fingerprint"] == student.fingerprint()
    plain = MultiVectorEncoder(str(tmp_path / "s"), device="cpu")
    for got, want in zip(plain.encode_document(TEXTS, convert_to_numpy=True), before_d.split(), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_allclose(
        plain.encode_query(["why does iron rust"], convert_to_numpy=True)[0], before_q.vectors, atol=1e-6
    )
    again = load_student(tmp_path / "s", device="cpu")
    assert isinstance(again, ColbertStudent) and again.fingerprint() == student.fingerprint()
    np.testing.assert_allclose(again.encode_documents(TEXTS).vectors, before_d.vectors, atol=1e-6)
    # a saved ColBERT model opens as it is; its options are fixed
    assert (
        ColbertStudent.from_pretrained(str(tmp_path / "s"), device="cpu").fingerprint()
        == student.fingerprint()
    )
    with pytest.raises(RkdError, match="already a multi-vector model"):
        ColbertStudent.from_pretrained(str(tmp_path / "s"), dim=8)


def test_distillation_follows_the_teacher(tiny_beir: Path, tiny_model: Path, tmp_path: Path) -> None:
    """The one trainer, the store and a score-space loss train a ColBERT student: the loss falls
    by half and the student's best candidate is the teacher's in (almost) every group."""
    from retrieval_kd.config import StudentConfig, TrainConfig
    from retrieval_kd.data import load_dataset
    from retrieval_kd.data.candidates import Candidate, Candidates
    from retrieval_kd.scores.scoring import score_pairs
    from retrieval_kd.scores.store import ScoreStore
    from retrieval_kd.stages import TrainStage, train_stage
    from retrieval_kd.testing import FakeTeacher

    ds = load_dataset(f"{tiny_beir}:train")
    docs = ds.doc_texts()
    ids = sorted(docs)
    groups = []
    for i, qid in enumerate(sorted(ds.queries)[:4]):
        pos = next(iter(ds.qrels[qid]))
        groups.append(Candidate(qid, (pos,), tuple(d for d in ids[i * 6 : i * 6 + 8] if d != pos)[:3]))
    cands = Candidates(groups)
    cands.save(tmp_path / "cands")
    teacher = FakeTeacher(lambda q, d: float(len(set(q.split()) & set(d.split()))))
    with ScoreStore.open(tmp_path / "scores", teacher.fingerprint(), teacher.spec()) as store:
        score_pairs(store, teacher, cands.pairs(), ds.queries, docs)
    config = TrainConfig(
        loss="kl", loss_options={"student_temperature": 0.2}, negatives=3, epochs=25, batch_size=4, lr=3e-3
    )
    result = train_stage(
        TrainStage(
            candidates=tmp_path / "cands",
            store=tmp_path / "scores",
            teacher=None,
            dataset=f"{tiny_beir}:train",
            student=StudentConfig(kind="colbert", model=str(tiny_model), options={"dim": 16}),
            train=config,
            out=tmp_path / "student",
        )
    )
    log = result.extra["log"]
    assert len(log) == 25 and np.mean([r["loss"] for r in log[-5:]]) < log[0]["loss"] / 2
    student = load_student(tmp_path / "student", device="cpu")
    assert isinstance(student, ColbertStudent)
    agree = []
    for c in groups:
        t = [teacher.fn(ds.queries[c.query_id], docs[d]) for d in (*c.positives, *c.negatives)]
        with torch.no_grad():
            s = student.scores([ds.queries[c.query_id]], [[docs[d] for d in (*c.positives, *c.negatives)]])
        if np.ptp(t) > 0:
            agree.append(int(np.argmax(s[0].numpy()) == np.argmax(t)))
    assert sum(agree) >= len(agree) - 1

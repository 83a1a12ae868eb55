"""Inference-free SPLADE (``[student.options] inference_free = true``): queries without a forward
pass, IDF query weights by hand, the saved folder in plain SparseEncoder, the Router's training
arguments, and distillation through the real train stage."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

# the full SPLADE tests' distillation run (tests/students is on sys.path); the tiny masked LM
# (conftest.py) has every word used here in its vocabulary
from test_splade import distil_tiny

from retrieval_kd.errors import RkdError
from retrieval_kd.students import build_student, load_student
from retrieval_kd.students import inference_free as ifree
from retrieval_kd.students.sparse_vectors import to_csr
from retrieval_kd.students.splade import SpladeStudent

QUERIES = ["why does iron rust", "how does yeast make bread rise"]
DOCS = ["paint protects iron from rust", "yeast makes bread dough rise"]


def count_forwards(module: torch.nn.Module) -> list[int]:
    """A counter of ``module``'s forward calls (a forward hook; the module runs as it is)."""
    calls = [0]

    def hook(*_: Any) -> None:
        calls[0] += 1

    module.register_forward_hook(hook)
    return calls


def test_queries_skip_the_transformer(tiny_mlm: Path) -> None:
    student = build_student("splade", str(tiny_mlm), device="cpu", inference_free=True)
    assert isinstance(student, SpladeStudent) and student.inference_free and student.index_kind == "sparse"
    calls = count_forwards(ifree.masked_lm(student.model).auto_model.base_model)
    q = student.encode_queries(QUERIES)
    assert calls[0] == 0  # no transformer forward for queries
    tokenizer = student.model.tokenizer
    for row, text in enumerate(QUERIES):
        ids = sorted(set(tokenizer(text, add_special_tokens=False)["input_ids"]))
        assert q[row].indices.tolist() == ids and q[row].data.tolist() == [1.0] * len(
            ids
        )  # weights start at 1
    d = student.encode_documents(DOCS)
    assert calls[0] >= 1 and d.shape == q.shape == (2, student.dim) and d.nnz > q.nnz
    with torch.no_grad():
        s = student.scores(QUERIES, [DOCS, DOCS])
    np.testing.assert_allclose(s.numpy(), (q @ d.T).toarray(), rtol=1e-5)
    full = build_student("splade", str(tiny_mlm), device="cpu")
    full_calls = count_forwards(ifree.masked_lm(full.model).auto_model.base_model)
    full.encode_queries(QUERIES)
    assert full_calls[0] >= 1 and full.fingerprint() != student.fingerprint()


def test_idf_query_weights_by_hand(tiny_mlm: Path, tiny_beir: Path) -> None:
    student = build_student("splade", str(tiny_mlm), device="cpu", inference_free=True, idf=str(tiny_beir))
    assert isinstance(student, SpladeStudent)
    assert student.provenance["idf"] == {"dataset": str(tiny_beir), "documents": 32}
    tokenizer = student.model.tokenizer
    docs = [json.loads(line) for line in (tiny_beir / "corpus.jsonl").read_text().splitlines()]
    token_sets = [
        set(tokenizer(f"{d['title']} {d['text']}", add_special_tokens=False)["input_ids"]) for d in docs
    ]
    q = student.encode_queries(["why does iron rust"])
    assert q.nnz == 4
    for token, weight in zip(q.indices.tolist(), q.data.tolist(), strict=True):
        df = sum(token in s for s in token_sets)
        assert weight == pytest.approx(math.log(1 + (32 - df + 0.5) / (df + 0.5)), rel=1e-6)
    assert len(set(np.round(q.data, 5))) > 1  # the fixture's words really differ in frequency


def test_saved_student_loads_in_plain_sparse_encoder(tiny_mlm: Path, tmp_path: Path) -> None:
    from sentence_transformers import SparseEncoder

    student = build_student(
        "splade", str(tiny_mlm), num_layers=1, device="cpu", inference_free=True, query_lr=0.01
    )
    assert (
        isinstance(student, SpladeStudent)
        and len(ifree.masked_lm(student.model).auto_model.bert.encoder.layer) == 1
    )
    with torch.no_grad():  # learned query weights, not all 1
        ifree.routes(student.model)["query"][0].weight.mul_(torch.linspace(0.5, 1.5, student.dim))
    student.weights_changed()
    queries, docs = student.encode_queries(QUERIES), student.encode_documents(DOCS)
    student.save(tmp_path / "s")
    meta = json.loads((tmp_path / "s" / "rkd.json").read_text())
    assert meta["options"] == {
        "query_weight": 0.0,
        "document_weight": 3e-5,
        "warmup_steps": None,
        "query_lr": 0.01,
    }
    plain = SparseEncoder(str(tmp_path / "s"), device="cpu")
    np.testing.assert_allclose(
        to_csr(plain.encode_query(QUERIES), student.dim).toarray(), queries.toarray(), rtol=1e-6
    )
    np.testing.assert_allclose(
        to_csr(plain.encode_document(DOCS), student.dim).toarray(), docs.toarray(), atol=1e-6
    )
    again = load_student(tmp_path / "s", device="cpu")
    assert isinstance(again, SpladeStudent) and again.inference_free and again.query_lr == 0.01
    assert again.fingerprint() == student.fingerprint() == meta["student_fingerprint"]
    np.testing.assert_allclose(again.encode_queries(QUERIES).toarray(), queries.toarray(), rtol=1e-6)


def test_router_arguments_and_no_query_flops(tiny_mlm: Path, tmp_path: Path) -> None:
    """The Trainer gets the query column on the query route and ``query_lr`` for its weights; the
    FLOPS term covers documents only."""
    from datasets import Dataset

    from retrieval_kd.losses import build_loss
    from retrieval_kd.train.adapter import ScoreSpaceLoss

    student = SpladeStudent.from_pretrained(str(tiny_mlm), device="cpu", inference_free=True, query_lr=0.05)
    data = Dataset.from_dict(
        {"query": QUERIES, "doc0": DOCS, "doc1": DOCS[::-1], "label": [[2.0, 0.0], [0.0, 2.0]]}
    )
    trainer_cls, args_cls = student.trainer_classes()
    args = args_cls(
        output_dir=str(tmp_path / "out"),
        max_steps=2,
        per_device_train_batch_size=2,
        learning_rate=1e-4,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
    )
    assert args.router_mapping == {"query": "query"}
    loss = ScoreSpaceLoss(student, build_loss("kl"), width=2)
    trainer = trainer_cls(
        model=student.model, args=args, train_dataset=data, loss=loss, callbacks=student.training_callbacks()
    )
    static = ifree.routes(student.model)["query"][0].weight
    before = static.detach().clone()
    calls = count_forwards(ifree.masked_lm(student.model).auto_model.base_model)
    trainer.train()
    lrs = {id(p): g["initial_lr"] for g in trainer.optimizer.param_groups for p in g["params"]}
    assert lrs[id(static)] == 0.05
    assert {lr for key, lr in lrs.items() if key != id(static)} == {1e-4}
    assert calls[0] == 2  # one merged document forward per step, none for the queries
    assert sorted(loss.last_terms) == ["distill", "flops_doc"]
    moved = (static.detach() - before).abs() > 0
    tokens = {t for q in QUERIES for t in student.model.tokenizer(q, add_special_tokens=False)["input_ids"]}
    assert set(torch.nonzero(moved).flatten().tolist()) == tokens  # only the queries' own weights learn


def test_options_are_checked(tiny_mlm: Path) -> None:
    with pytest.raises(RkdError, match=r"option idf sets the query weights of inference_free = true"):
        SpladeStudent.from_pretrained(str(tiny_mlm), idf="beir/scifact/train")
    with pytest.raises(RkdError, match=r"option query_lr needs inference_free = true"):
        SpladeStudent.from_pretrained(str(tiny_mlm), query_lr=0.1)
    with pytest.raises(RkdError, match=r"inference_free must be true or false, got 'yes'"):
        SpladeStudent.from_pretrained(str(tiny_mlm), inference_free="yes")
    with pytest.raises(RkdError, match=r"query_lr must be a number > 0, got 0"):
        SpladeStudent.from_pretrained(str(tiny_mlm), inference_free=True, query_lr=0)


def test_overfit_follows_teacher(tiny_beir: Path, tiny_mlm: Path, tmp_path: Path) -> None:
    """The same store, losses and train stage as the full SPLADE student (``distil_tiny``)."""
    options = {"inference_free": True, "query_lr": 0.05, "warmup_steps": 4}
    log, student, agreements = distil_tiny(tiny_beir, tiny_mlm, tmp_path, options, epochs=12)
    first, last = log[0]["loss"], np.mean([r["loss"] for r in log[-5:]])
    assert len(log) == 12 and last < first / 2, (first, last)
    assert all(sorted(r["terms"]) == ["distill", "flops_doc"] for r in log)  # no query FLOPS term
    assert student.inference_free and student.query_lr == 0.05
    assert len(agreements) >= 3 and sum(agreements) >= len(agreements) - 1
    meta = json.loads((tmp_path / "student" / "rkd.json").read_text())
    assert meta["kind"] == "splade" and meta["options"]["query_lr"] == 0.05
    assert meta["provenance"]["active_terms"]["batches"] == 12

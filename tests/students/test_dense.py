"""Dense students: truncation, save/load as a plain sentence-transformers folder, scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from retrieval_kd.errors import RkdError
from retrieval_kd.students import load_student
from retrieval_kd.students.dense import DenseStudent, score_matrix


def test_truncation_keeps_first_layers(tiny_model: Path) -> None:
    full = DenseStudent.from_pretrained(str(tiny_model), device="cpu")
    cut = DenseStudent.from_pretrained(str(tiny_model), num_layers=1, device="cpu")
    auto = cut.model[0].auto_model
    assert len(auto.encoder.layer) == 1 and auto.config.num_hidden_layers == 1
    w_full = full.model[0].auto_model.encoder.layer[0].attention.self.query.weight
    assert torch.equal(auto.encoder.layer[0].attention.self.query.weight, w_full)
    assert cut.fingerprint() != full.fingerprint()
    with pytest.raises(RkdError, match=r"num_layers=5 but the model has 2 layers; choose 1..2"):
        DenseStudent.from_pretrained(str(tiny_model), num_layers=5, device="cpu")


def test_saved_student_loads_in_plain_sentence_transformers(tiny_model: Path, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    student = DenseStudent.from_pretrained(str(tiny_model), num_layers=1, device="cpu")
    texts = ["why does iron rust", "yeast makes bread dough rise"]
    before = student.encode_queries(texts)
    student.save(tmp_path / "s", {"note": "test"})
    meta = json.loads((tmp_path / "s" / "rkd.json").read_text())
    assert meta["kind"] == "dense" and meta["student_fingerprint"] == student.fingerprint()
    assert meta["provenance"]["note"] == "test" and meta["provenance"]["num_layers"] == 1
    plain = SentenceTransformer(str(tmp_path / "s"), device="cpu")
    np.testing.assert_allclose(plain.encode(texts, convert_to_numpy=True), before, atol=1e-6)
    again = load_student(tmp_path / "s", device="cpu")
    assert again.fingerprint() == student.fingerprint()
    np.testing.assert_allclose(again.encode_queries(texts), before, atol=1e-6)


def test_scores_match_encodings(tiny_model: Path) -> None:
    student = DenseStudent.from_pretrained(str(tiny_model), device="cpu")
    q = ["why does iron rust"]
    docs = [["paint protects steel from rust", "yeast makes bread dough rise"]]
    with torch.no_grad():
        s = student.scores(q, docs)
    expected = student.encode_queries(q) @ student.encode_documents(docs[0]).T
    assert s.shape == (1, 2)
    np.testing.assert_allclose(s.numpy(), expected, atol=1e-5)


def test_score_matrix_by_hand() -> None:
    q = torch.tensor([[1.0, 0.0]])
    d = torch.tensor([[[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]]])
    assert score_matrix(q, d, "dot").tolist() == [[2.0, 0.0, 1.0]]
    assert score_matrix(q, d, "cosine")[0].tolist() == pytest.approx([1.0, 0.0, 2**-0.5])


def test_missing_model_path_is_clear(tmp_path: Path) -> None:
    with pytest.raises(RkdError, match=r"model path '.*nope' does not exist"):
        DenseStudent.from_pretrained(str(tmp_path / "nope"))


def test_budgeted_encoding_equals_sentence_transformers(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from retrieval_kd.students import packing
    from retrieval_kd.students.dense import DenseStudent

    monkeypatch.setattr(packing, "PACK_GAIN", 0.0)  # padded batches only: packing is test_packing.py's

    student = DenseStudent.from_pretrained(str(tiny_model), device="cpu")
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    texts = [" ".join(words[: 1 + (i * 7) % 10] * (1 + i % 5)) for i in range(70)]
    texts[3] = ""  # an empty text: special tokens alone
    reference = student.model.encode_document(texts, batch_size=4, convert_to_numpy=True)
    calls = []
    real = student.model.forward

    def counting(features, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(tuple(features["input_ids"].shape))
        return real(features, *args, **kwargs)

    student.model.forward = counting  # type: ignore[method-assign]
    got = student.encode_documents(texts, batch_size=4)
    assert got.shape == reference.shape and np.abs(got - reference).max() < 1e-5
    budget = 4 * student.model.max_seq_length
    # several batches, each within the token budget (or one text alone), padded to its longest
    assert len(calls) > 1 and all(rows * width <= budget or rows == 1 for rows, width in calls)
    assert sum(rows for rows, _ in calls) == 70
    queries = student.encode_queries(texts[:9], batch_size=2)
    assert np.abs(queries - student.model.encode_query(texts[:9], convert_to_numpy=True)).max() < 1e-5


def test_list_tokenizing_is_checked_and_falls_back_to_preprocess(tiny_model: Path) -> None:
    from retrieval_kd.students import _shared
    from retrieval_kd.students.dense import DenseStudent

    texts = [" ".join(["delta"] * (1 + 3 * i)) for i in range(12)]
    student = DenseStudent.from_pretrained(str(tiny_model), device="cpu")
    reference = student.model.encode_document(texts, batch_size=4, convert_to_numpy=True)
    assert np.abs(student.encode_documents(texts, batch_size=4) - reference).max() < 1e-5
    spec = _shared._LIST_TOKENS[student.model][None, "document"]
    assert spec is not None and spec["types"] and spec["extra"] == {"modality": "text"}

    # a tokenizer step whose ids differ from the plain tokenizer's (as a lowercasing or a
    # template would): the check refuses id lists, and encoding goes through preprocess
    other = DenseStudent.from_pretrained(str(tiny_model), device="cpu")
    model = other.model
    original = type(model).preprocess
    calls: list[int] = []

    def shifted(*args: object, **kwargs: object) -> dict[str, object]:
        features = dict(original(model, *args, **kwargs))
        calls.append(1)
        features["input_ids"] = torch.where(features["attention_mask"] > 0, features["input_ids"] + 1, 0)
        return features

    model.preprocess = shifted  # type: ignore[method-assign]
    got = other.encode_documents(texts, batch_size=4)
    assert _shared._LIST_TOKENS[model][None, "document"] is None
    assert len(calls) == 2  # the check's sample, then the one chunk
    shifted_reference = model.encode_document(texts, batch_size=4, convert_to_numpy=True)
    assert np.abs(got - shifted_reference).max() < 1e-5
    assert np.abs(got - reference).max() > 1e-3  # the shifted ids were what it encoded

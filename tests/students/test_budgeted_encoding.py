"""Every student family encodes through one token-budget path (students._shared.budgeted_outputs):
its outputs equal sentence-transformers' ``encode_query`` / ``encode_document`` across chunk
boundaries, with the next chunk tokenized ahead in a thread (the GPU setting, forced here on the
CPU) or not, and the tokenizing time reported is the waiting alone when it runs ahead."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from retrieval_kd.students import _shared, build_student
from retrieval_kd.students.maxsim import TokenVectors
from retrieval_kd.students.sparse_vectors import to_csr
from retrieval_kd.timing import Phases, timed_preprocess

WORDS = "iron rust bread yeast dough steel paint stocks market water oxygen layer".split()
TEXTS = [" ".join(WORDS[: 1 + (i * 5) % 12] * (1 + i % 4)) for i in range(23)]
QUERIES = ["why does iron rust", "bread", "how do stock markets move when rates rise", "water"]


@pytest.fixture(params=[False, True], ids=["inline", "ahead"])
def chunked(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    monkeypatch.setattr(_shared, "ENCODE_CHUNK", 5)  # 23 texts: five chunks, the last of 3
    monkeypatch.setattr(_shared, "TOKENIZE_AHEAD", request.param)
    return bool(request.param)


def test_colbert_equals_sentence_transformers(tiny_model: Path, chunked: bool) -> None:
    student = build_student("colbert", str(tiny_model), device="cpu")
    docs = student.encode_documents(TEXTS, batch_size=2)
    queries = student.encode_queries(QUERIES, batch_size=3)
    for got, texts, encode in (
        (docs, TEXTS, student.model.encode_document),
        (queries, QUERIES, student.model.encode_query),
    ):
        want = TokenVectors.from_list(encode(texts, batch_size=2, convert_to_numpy=True))
        assert got.lengths.tolist() == want.lengths.tolist()
        np.testing.assert_allclose(got.vectors, want.vectors, atol=1e-5)
    assert set(queries.lengths.tolist()) == {32}  # expansion to 32 tokens, [MASK]s scored
    # query expansion adds a per-token tensor, so queries take preprocess, documents id lists
    assert _shared._LIST_TOKENS[student.model][student.model.prompts["query"], "query"] is None
    assert _shared._LIST_TOKENS[student.model][student.model.prompts["document"], "document"] is not None


def test_splade_equals_sentence_transformers(tiny_mlm: Path, chunked: bool) -> None:
    student = build_student("splade", str(tiny_mlm), device="cpu")
    for texts, mine, plain in (
        (TEXTS, student.encode_documents, student.model.encode_document),
        (QUERIES, student.encode_queries, student.model.encode_query),
    ):
        got = mine(texts, batch_size=2)
        want = to_csr(plain(texts, batch_size=2), student.dim)
        assert got.shape == (len(texts), student.dim) and got.nnz > len(texts)
        np.testing.assert_allclose(got.toarray(), want.toarray(), atol=1e-5)
    student.model.max_active_dims = 3  # sentence-transformers' own cap, applied the same way
    got = student.encode_documents(TEXTS, batch_size=2)
    assert got.getnnz(axis=1).max() == 3
    want = to_csr(student.model.encode_document(TEXTS, batch_size=2), student.dim)
    np.testing.assert_allclose(got.toarray(), want.toarray(), atol=1e-5)


def test_dense_with_a_prompt_and_the_time_it_waits(
    tiny_model: Path, chunked: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    student = build_student("dense", str(tiny_model), device="cpu")
    model = student.model
    model.prompts = {"query": "query: ", "document": ""}
    threads: list[str] = []
    lists = _shared._token_lists

    def recording(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        return lists(*args, **kwargs)

    monkeypatch.setattr(_shared, "_token_lists", recording)
    got = student.encode_queries(TEXTS, batch_size=2)
    # the check's sample and the first chunk here; the other four in the thread when ahead
    assert threads == ["MainThread"] * 2 + (["rkd-tokenize_0"] if chunked else ["MainThread"]) * 4
    want = model.encode_query(TEXTS, batch_size=2, convert_to_numpy=True)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.abs(got - model.encode_document(TEXTS, batch_size=2, convert_to_numpy=True)).max() > 1e-3

    seen: list[float] = []
    phases = Phases()
    with timed_preprocess(model, phases):
        inner = model.rkd_tokenize_timer

        def record(seconds: float) -> None:
            seen.append(seconds)
            inner(seconds)

        model.rkd_tokenize_timer = record
        student.encode_documents(TEXTS, batch_size=2)
    # the list check's sample, then one record per chunk: the tokenizer's time inline, and when
    # tokenizing ahead the first chunk's, then the main loop's waits (the thread's time is not
    # recorded twice)
    assert len(seen) == 6 and phases.seconds["tokenize"] >= sum(seen)  # plus the check's preprocess


def test_a_router_is_left_to_sentence_transformers(tiny_model: Path) -> None:
    class Router:
        pass

    class Model(list[Any]):
        pass

    assert _shared.budgeted_outputs(Model([Router()]), TEXTS, 4) is None

"""The exact MaxSim index: against numpy brute force, across blocks, saved and read back, and
behind the Retriever with a real ColBERT student."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retrieval_kd.errors import DataError, RkdError
from retrieval_kd.indexes import INDEXES, load_index
from retrieval_kd.indexes.maxsim_index import MaxSimIndex
from retrieval_kd.students.maxsim import TokenVectors


def random_tokens(n: int, dim: int, seed: int, low: int = 1, high: int = 12) -> TokenVectors:
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal((int(m), dim)).astype(np.float32) for m in rng.integers(low, high, n)]
    return TokenVectors.from_list(arrays)


def brute_force(queries: TokenVectors, docs: TokenVectors) -> np.ndarray:
    """Shapes: → (Q, N) MaxSim, one document at a time in numpy."""
    return np.array(
        [[float((q @ d.T).max(axis=1).sum()) for d in docs.split()] for q in queries.split()],
        dtype=np.float64,
    )


@pytest.mark.parametrize("block_tokens", [1, 40, 1 << 16])
def test_search_equals_brute_force(block_tokens: int) -> None:
    docs, queries = random_tokens(50, 8, 0), random_tokens(7, 8, 1, 2, 6)
    index = MaxSimIndex(dtype="float32", device="cpu", block_tokens=block_tokens, query_batch=3)
    ids = [f"d{i}" for i in range(50)]
    index.add(ids[:20], docs.split()[:20])  # a list of arrays, then TokenVectors
    index.add(ids[20:], TokenVectors(docs.vectors[int(docs.lengths[:20].sum()) :], docs.lengths[20:]))
    run = index.search([f"q{i}" for i in range(7)], queries, k=6)
    expected = brute_force(queries, docs)
    for i in range(7):
        best = np.argsort(-expected[i], kind="stable")[:6]
        assert list(run[f"q{i}"]) == [ids[j] for j in best]
        np.testing.assert_allclose(list(run[f"q{i}"].values()), expected[i][best], rtol=1e-5)
    assert len(index.search(["q"], queries.split()[:1], k=500)["q"]) == 50  # k clipped to the corpus


def test_float16_storage_scores_the_rounded_vectors() -> None:
    docs, queries = random_tokens(30, 8, 2), random_tokens(3, 8, 3)
    index = MaxSimIndex(device="cpu")  # float16 by default
    index.add([f"d{i}" for i in range(30)], docs)
    rounded = TokenVectors(docs.vectors.astype(np.float16).astype(np.float32), docs.lengths)
    expected = brute_force(queries, rounded)
    run = index.search(["a", "b", "c"], queries, k=30)
    for i, qid in enumerate("abc"):
        got = np.array([run[qid][f"d{j}"] for j in range(30)])
        np.testing.assert_allclose(got, expected[i], rtol=1e-5, atol=1e-5)


def test_save_load_round_trip(tmp_path: Path) -> None:
    docs, queries = random_tokens(25, 4, 4), random_tokens(2, 4, 5)
    index = INDEXES.get("maxsim").create("fp-1", {"device": "cpu", "dtype": "float32"})
    index.add([f"d{i}" for i in range(25)], docs)
    before = index.search(["a", "b"], queries, k=5)
    index.save(tmp_path / "idx")
    again = load_index(tmp_path / "idx")
    assert isinstance(again, MaxSimIndex) and again.manifest["count"] == 25
    assert (
        again.manifest["tokens"] == len(docs.vectors) and again.manifest["bytes"] == docs.vectors.nbytes + 100
    )
    assert again.search(["a", "b"], queries, k=5) == before
    again.check_encoder("fp-1")
    with pytest.raises(RkdError, match=r"built with student fp-1; these queries come from fp-2"):
        again.check_encoder("fp-2")
    data = tmp_path / "idx" / "tokens.npz"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 1
    data.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"tokens.npz: damaged"):
        load_index(tmp_path / "idx")


def test_clear_errors() -> None:
    index = MaxSimIndex(device="cpu")
    index.add(["a"], [np.ones((2, 4))])
    with pytest.raises(RkdError, match=r"document token vectors have dimension 3; this index needs 4"):
        index.add(["b"], [np.ones((2, 3))])
    with pytest.raises(RkdError, match=r"2 document ids but 1 document token-vector runs"):
        index.add(["b", "c"], [np.ones((2, 4))])
    with pytest.raises(RkdError, match=r"duplicate document id 'a'"):
        index.add(["a"], [np.ones((1, 4))])
    with pytest.raises(RkdError, match=r"must be TokenVectors or a list of \[tokens, dim\] arrays"):
        index.add(["b"], 3.0)
    with pytest.raises(RkdError, match=r"k must be at least 1, got 0"):
        index.search(["q"], [np.ones((1, 4))], k=0)
    with pytest.raises(RkdError, match=r"unknown maxsim index option\(s\) \['nbits'\]; choose from"):
        MaxSimIndex.create("", {"nbits": 2})
    with pytest.raises(RkdError, match=r"unknown maxsim index dtype 'int8'; choose from"):
        MaxSimIndex(dtype="int8")
    with pytest.raises(RkdError, match=r"cannot save an empty maxsim index"):
        MaxSimIndex().save(Path("/nonexistent"))


def test_colbert_student_index_and_retriever_match_its_scores(
    tiny_beir: Path, tiny_model: Path, tmp_path: Path
) -> None:
    import torch

    from retrieval_kd import Retriever
    from retrieval_kd.data import load_dataset
    from retrieval_kd.indexing import build_index
    from retrieval_kd.students.colbert import ColbertStudent

    ds = load_dataset(str(tiny_beir))
    student = ColbertStudent.from_pretrained(str(tiny_model), device="cpu")
    index = build_index(student, ds, options={"dtype": "float32", "device": "cpu"}, chunk=10)
    assert isinstance(index, MaxSimIndex) and len(index) == 32
    student.save(tmp_path / "s")
    index.save(tmp_path / "i")
    queries = dict(list(ds.queries.items())[:3])
    run = Retriever(tmp_path / "s", tmp_path / "i").search(queries, k=5)
    doc_ids = list(ds.docs)
    with torch.no_grad():
        s = student.scores(list(queries.values()), [[ds.docs[d].full_text() for d in doc_ids]] * 3).numpy()
    for row, qid in enumerate(queries):
        best = np.argsort(-s[row], kind="stable")[:5]
        assert list(run[qid]) == [doc_ids[j] for j in best]
        np.testing.assert_allclose(list(run[qid].values()), s[row][best], rtol=1e-5)

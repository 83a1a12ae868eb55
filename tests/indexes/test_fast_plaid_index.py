"""The fast-plaid engine behind the Index contract.

fast-plaid's wheels pin one torch release each, so the engine tests run where it installs (the GPU
machines' torch 2.11; see BENCHMARKS.md for the SciFact figures measured there); what every
machine checks is the clear error where it does not, and the options.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from retrieval_kd.errors import RkdError
from retrieval_kd.indexes import INDEXES, load_index
from retrieval_kd.indexes.fast_plaid_index import FastPlaidIndex
from retrieval_kd.indexes.maxsim_index import MaxSimIndex


def clustered_docs(n_docs: int, dim: int = 64, seed: int = 0) -> tuple[list[str], list[np.ndarray]]:
    """Unit token vectors around 48 topic directions, 8 to 40 tokens a document."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((48, dim))
    docs = []
    for _ in range(n_docs):
        picks = rng.integers(0, 48, size=3)
        n = int(rng.integers(8, 41))
        v = topics[rng.choice(picks, size=n)] + 0.35 * rng.standard_normal((n, dim))
        docs.append((v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32))
    return [f"d{i}" for i in range(n_docs)], docs


def test_the_kind_is_registered_and_refuses_bad_options() -> None:
    assert INDEXES.get("fast-plaid") is FastPlaidIndex
    with pytest.raises(RkdError, match=r"unknown fast-plaid index option\(s\) \['nprobe'\]; choose from"):
        FastPlaidIndex.create("fp", {"nprobe": 4})
    with pytest.raises(RkdError, match=r"nbits must be one of \[2, 4\], got 3"):
        FastPlaidIndex.create("fp", {"nbits": 3})
    with pytest.raises(RkdError, match="n_full_scores must be an integer >= 1, got 0"):
        FastPlaidIndex.create("fp", {"n_full_scores": 0})


def test_without_the_engine_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fast_plaid", None)  # import fails as if not installed
    ids, docs = clustered_docs(20)
    index = FastPlaidIndex.create("fp", {"device": "cpu"})
    index.add(ids, docs)
    with pytest.raises(RkdError, match=r"needs the fast-plaid engine .*pip install fast-plaid==1\.7\.0\."):
        index.search(["q"], [docs[0]], k=3)


@pytest.mark.skipif(
    not __import__("importlib").util.find_spec("fast_plaid"), reason="fast-plaid is not installed here"
)
def test_agrees_with_exact_maxsim_and_round_trips(tmp_path: Path) -> None:
    ids, docs = clustered_docs(1200)
    rng = np.random.default_rng(2)
    # each query: 12 tokens of one document, perturbed; that document is its exact best match
    sources = rng.choice(len(docs), size=40, replace=False)
    queries = []
    for s in sources:
        q = docs[s][rng.integers(0, len(docs[s]), size=12)] + 0.05 * rng.standard_normal((12, 64))
        queries.append((q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32))
    qids = [f"q{i}" for i in range(len(queries))]
    exact = MaxSimIndex(dtype="float32", device="cpu")
    exact.add(ids, docs)
    truth = exact.search(qids, queries, k=10)
    assert all(next(iter(truth[q])) == ids[s] for q, s in zip(qids, sources, strict=True))
    index = FastPlaidIndex.create("fp", {})
    index.add(ids[:700], docs[:700])
    index.add(ids[700:], docs[700:])
    found = index.search(qids, queries, k=10)
    top1 = np.mean([next(iter(found[q])) == ids[s] for q, s in zip(qids, sources, strict=True)])
    recall = np.mean([len(set(found[q]) & set(truth[q])) / 10 for q in qids])
    assert top1 >= 0.95 and recall >= 0.5, (top1, recall)
    tokens = sum(len(d) for d in docs)
    assert index.manifest["tokens"] == tokens and index.manifest["count"] == 1200
    # 4-bit residuals: a quarter of float16, plus fast-plaid's codes and lists
    assert 0 < index.manifest["bytes"] < 0.5 * tokens * 64 * 2
    with pytest.raises(RkdError, match="only be added before the first search or save"):
        index.add(["late"], [docs[0]])
    index.save(tmp_path / "ix")
    for _ in range(2):  # loading (which opens fast-plaid's folder in place) leaves it loadable
        loaded = load_index(tmp_path / "ix")
        assert isinstance(loaded, FastPlaidIndex) and loaded.doc_ids == ids
        again = loaded.search(qids, queries, k=10)
        assert {q: list(again[q]) for q in qids} == {q: list(found[q]) for q in qids}

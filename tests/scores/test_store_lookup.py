"""Vectorised ``missing`` and ``lookup`` against a brute-force dict, and the pairwise kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from retrieval_kd.errors import RkdError
from retrieval_kd.scores import merged
from retrieval_kd.scores.parts import KINDS
from retrieval_kd.scores.store import ScoreStore
from retrieval_kd.testing import store_dict
from retrieval_kd.types import Judgement, Pair

FP = "fake-teacher-v1"


def random_batches(seed: int) -> list[tuple[str, list[Pair], np.ndarray]]:
    """(writer, pairs, scores) batches in add order: ~3,000 pairs over 60 queries of ids with
    varied lengths, a third of the pairs repeated across parts and writers (and a few within one part)."""
    rng = np.random.default_rng(seed)
    queries = [str(q) for q in rng.integers(1, 10**7, 60)]
    batches = []
    for i in range(24):
        n = int(rng.integers(50, 250))
        q = [queries[k] for k in rng.integers(0, len(queries), n)]
        d = [str(x) for x in rng.integers(0, 60, n)]  # 60 x 60 keys for ~3,600 rows: many repeats
        batches.append((f"w{i % 2}", [Pair(a, b) for a, b in zip(q, d, strict=True)], rng.normal(size=n)))
    return batches


def brute_force(batches: list[tuple[str, list[Pair], np.ndarray]]) -> dict[tuple[str, str], float]:
    # Readers order parts by (writer, sequence); within a part the later row of a pair wins.
    expected: dict[tuple[str, str], float] = {}
    for writer in sorted({w for w, _, _ in batches}):
        for w, pairs, scores in batches:
            if w == writer:
                expected.update(zip(pairs, np.asarray(scores, np.float32).tolist(), strict=True))
    return expected


@pytest.fixture()
def filled(tmp_path: Path) -> tuple[Path, dict[tuple[str, str], float]]:
    batches = random_batches(0)
    stores = {w: ScoreStore.open(tmp_path, FP, writer=w) for w in ("w0", "w1")}
    for w, pairs, scores in batches:
        stores[w].add(pairs, scores)
    for s in stores.values():
        s.close()
    return tmp_path, brute_force(batches)


def test_to_table_len_and_lookup_equal_a_brute_force_dict(
    filled: tuple[Path, dict[tuple[str, str], float]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, expected = filled
    store = ScoreStore.load(root)
    assert 1500 < len(store) == len(expected) < 3000  # the fixture really repeats pairs
    assert store_dict(store) == expected
    table = store.to_table()
    assert table.column_names == ["query_id", "doc_id", "score"]
    keys = sorted(expected)
    assert (
        list(zip(table.column("query_id").to_pylist(), table.column("doc_id").to_pylist(), strict=True))
        == keys
    )

    rng = np.random.default_rng(1)
    asked = [Pair(*keys[i]) for i in rng.integers(0, len(keys), 5000)]  # with repeats, any order
    want = np.array([expected[k] for k in asked], np.float32)
    got = store.lookup(asked)  # 5,000 keys over 60 queries: the hash-probe path
    assert got.dtype == np.float32 and np.array_equal(got, want)
    small = store.lookup(asked[:5])  # 5 keys: the binary-search path
    assert np.array_equal(small, want[:5])
    as_table = pa.table({"query_id": [k[0] for k in asked], "doc_id": [k[1] for k in asked]})
    assert np.array_equal(store.lookup(as_table), want)
    monkeypatch.setattr(merged, "_CHUNK", 777)  # searched in slices, as a 10M-key lookup is
    assert np.array_equal(store.lookup(as_table), want)
    for q in {k[0] for k in keys[:200]}:
        docs = [d for qq, d in keys if qq == q][::-1]
        assert store.get(q, docs).tolist() == [expected[(q, d)] for d in docs]


@pytest.mark.parametrize("batch", [7, 5000])  # binary-search and hash-probe query paths
def test_missing_equals_a_brute_force_set(
    filled: tuple[Path, dict[tuple[str, str], float]], batch: int
) -> None:
    root, expected = filled
    store = ScoreStore.load(root)
    rng = np.random.default_rng(2)
    have = sorted(expected)
    asked: list[Pair] = []
    for i in range(5000):
        if i % 3:
            asked.append(Pair(*have[int(rng.integers(0, len(have)))]))
        else:  # absent: unknown doc of a known query, unknown query, or a prefix of a known id
            q, d = have[int(rng.integers(0, len(have)))]
            asked.append(Pair(q, f"x{rng.integers(0, 300)}") if i % 2 else Pair(q[:-1] or "z", d))
    want: list[Pair] = []
    for p in asked:
        if p not in expected and p not in want:
            want.append(p)
    got = [p for s in range(0, len(asked), batch) for p in store.missing(asked[s : s + batch])]
    if batch == 5000:
        assert got == want
    else:  # batches dedupe within themselves only
        assert [p for i, p in enumerate(got) if p not in got[:i]] == want
    assert all(type(p) is Pair for p in got)
    as_table = pa.table({"doc_id": [p[1] for p in asked], "query_id": [p[0] for p in asked]})
    assert store.missing(as_table) == want
    assert store.missing([("a", "b"), ("a", "b")]) == [Pair("a", "b")]  # tuples come back as Pairs


def test_lookup_names_the_first_missing_key_and_counts_them(tmp_path: Path) -> None:
    store = ScoreStore.open(tmp_path, FP)
    store.add([Pair("q1", "d1"), Pair("q1", "d2")], np.array([1.0, 2.0]))
    with pytest.raises(
        RkdError,
        match=r"no score for pair \(query 'q1', doc 'd9'\) .*\(3 of 5 keys missing\).*rkd score-teacher",
    ):
        store.lookup(
            [Pair("q1", "d1"), Pair("q1", "d9"), Pair("q2", "d1"), Pair("q1", "d2"), Pair("q1", "d9")]
        )
    with pytest.raises(RkdError, match=r"key \('q1', 3\): ids must be strings, not int"):
        store.lookup([Pair("q1", "d1"), Pair("q1", 3)])  # type: ignore[arg-type]
    with pytest.raises(RkdError, match=r"key \(None, 'd1'\): ids must be strings, not NoneType"):
        store.add([Pair(None, "d1")], np.array([1.0]))  # type: ignore[arg-type]
    with pytest.raises(RkdError, match=r"do not fit a pointwise store: use Pair\(query_id, doc_id\)"):
        store.lookup([Judgement("q1", "d1", "d2")])
    assert store.lookup([]).shape == (0,) and store.missing([]) == []


def test_empty_store_misses_everything_and_looks_up_nothing(tmp_path: Path) -> None:
    store = ScoreStore.open(tmp_path, FP)
    assert len(store) == 0 and store.to_table().num_rows == 0
    assert store.missing([Pair("q", "d"), Pair("q", "d"), Pair("q", "e")]) == [Pair("q", "d"), Pair("q", "e")]
    with pytest.raises(RkdError, match=r"\(1 of 1 keys missing\)"):
        store.get("q", ["d"])


def test_adds_after_a_read_are_seen_and_later_adds_win(tmp_path: Path) -> None:
    store = ScoreStore.open(tmp_path, FP)
    store.add([Pair("q", "a"), Pair("q", "b")], np.array([1.0, 2.0]))
    assert store.missing([Pair("q", "a"), Pair("q", "c")]) == [Pair("q", "c")]  # merged now
    store.add([Pair("q", "c"), Pair("q", "a")], np.array([3.0, 4.0]))
    assert store.get("q", ["a", "b", "c"]).tolist() == [4.0, 2.0, 3.0]
    assert ScoreStore.load(tmp_path).to_table().equals(store.to_table())


def test_adds_merge_in_writer_order_as_a_fresh_load_does(tmp_path: Path) -> None:
    with ScoreStore.open(tmp_path, FP, writer="b") as b:
        b.add([Pair("q", "x"), Pair("q", "y")], np.array([1.0, 1.0]))
    a = ScoreStore.open(tmp_path, FP, writer="a")
    c = ScoreStore.open(tmp_path, FP, writer="c")
    assert len(a) == len(c) == 2  # both merged before adding
    a.add([Pair("q", "x")], np.array([2.0]))  # writer a sorts before b: b's score stays
    c.add([Pair("q", "y")], np.array([3.0]))  # writer c sorts after b: c's score wins
    assert a.get("q", ["x", "y"]).tolist() == [1.0, 1.0]
    assert c.get("q", ["x", "y"]).tolist() == [1.0, 3.0]
    assert ScoreStore.load(tmp_path).get("q", ["x", "y"]).tolist() == [1.0, 3.0]


def test_merge_keeps_the_last_row_of_a_key_in_part_order() -> None:
    kind = KINDS["pointwise"]
    part = lambda q, d, s: pa.table({"query_id": q, "doc_id": d, "score": pa.array(s, pa.float32())})  # noqa: E731
    m = merged.Merged.build(
        [part(["b", "a", "b"], ["1", "1", "1"], [1, 2, 3]), part(["a", "a"], ["1", "0"], [4, 5])],
        [0, 0],
        kind,
    )
    assert m.table.to_pydict() == {"query_id": ["a", "a", "b"], "doc_id": ["0", "1", "1"], "score": [5, 4, 3]}
    keys = pa.table({"query_id": ["b", "a", "c", "a"], "doc_id": ["1", "2", "1", "0"]})
    assert m.locate(keys).tolist() == [2, -1, -1, 0]


# -- pairwise ------------------------------------------------------------------------------

JUDGEMENTS = [
    Judgement(f"q{i}", f"d{j}", f"d{k}") for i in range(5) for j in range(4) for k in range(4) if j != k
]


def value(j: Judgement) -> float:
    return int(j.query_id[1:]) + int(j.doc_a[1:]) / 4 - int(j.doc_b[1:]) / 8  # exact in float32


def test_pairwise_roundtrip_and_resume(tmp_path: Path) -> None:
    whole = ScoreStore.open(tmp_path / "whole", FP, kind="pairwise")
    whole.add(JUDGEMENTS, np.array([value(j) for j in JUDGEMENTS]))
    assert whole.kind == "pairwise" and whole.manifest["kind"] == "pairwise"
    assert whole.to_table().column_names == ["query_id", "doc_a", "doc_b", "value"]
    asked = JUDGEMENTS[::-1]
    assert whole.lookup(asked).tolist() == [value(j) for j in asked]
    with pytest.raises(RkdError, match="pairwise judgements; use lookup"):
        whole.get("q1", ["d1"])
    with pytest.raises(RkdError, match=r"no value for judgement \(query 'q1', docs 'd1' vs 'd1'\)"):
        whole.lookup([Judgement("q1", "d1", "d1")])

    root = tmp_path / "resumed"
    with ScoreStore.open(root, FP, kind="pairwise") as first:  # a run that stopped after 2 parts
        for s in (0, 17):
            batch = JUDGEMENTS[s : s + 17]
            first.add(batch, np.array([value(j) for j in batch]))
    resumed = ScoreStore.open(root, FP, kind="pairwise")
    todo = resumed.missing(JUDGEMENTS + JUDGEMENTS[:5])
    assert todo == JUDGEMENTS[34:] and all(type(j) is Judgement for j in todo)
    for s in range(0, len(todo), 17):
        batch = todo[s : s + 17]
        resumed.add(batch, np.array([value(j) for j in batch]))
    assert resumed.missing(JUDGEMENTS) == []
    assert ScoreStore.load(root).to_table().equals(whole.to_table())


def test_kind_is_recorded_and_a_mismatch_names_both(tmp_path: Path) -> None:
    ScoreStore.open(tmp_path, FP, kind="pairwise").close()
    with pytest.raises(RkdError, match=r"holds pairwise judgements, not pointwise.*'pairwise'.*'pointwise'"):
        ScoreStore.open(tmp_path, FP)
    with pytest.raises(
        RkdError, match=r"unknown judgement kind 'listwise'; choose from \['pairwise', 'pointwise'\]"
    ):
        ScoreStore.open(tmp_path, FP, kind="listwise")
    store = ScoreStore.open(tmp_path, FP, kind="pairwise")
    with pytest.raises(
        RkdError, match=r"do not fit a pairwise store: use Judgement\(query_id, doc_a, doc_b\)"
    ):
        store.add([Pair("q", "d")], np.array([1.0]))  # type: ignore[list-item]
    assert ScoreStore.load(tmp_path).kind == "pairwise"

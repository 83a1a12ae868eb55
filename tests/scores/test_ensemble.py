from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retrieval_kd.errors import RkdError
from retrieval_kd.scores.ensemble import (
    combine,
    fingerprint,
    open_store,
    query_bounds,
    tune,
)
from retrieval_kd.scores.ndcg import ideal_dcg, ndcg_at, relevance
from retrieval_kd.scores.store import ScoreStore
from retrieval_kd.testing import store_dict
from retrieval_kd.types import Pair


def make(root: Path, fp: str, scores: dict[tuple[str, str], float]) -> ScoreStore:
    with ScoreStore.open(root, fp, {"kind": "test", "model": fp}) as s:
        s.add([Pair(*k) for k in scores], np.array(list(scores.values()), np.float32))
    return ScoreStore.load(root, fp)


@pytest.fixture
def members(tmp_path: Path) -> list[ScoreStore]:
    # q1: A = 1, 2, 3 (z = -1.2247, 0, 1.2247); B = 30, 10, 20 (z = 1.2247, -1.2247, 0)
    a = make(
        tmp_path / "a",
        "A",
        {("q1", "d1"): 1, ("q1", "d2"): 2, ("q1", "d3"): 3, ("q2", "d1"): 5, ("q2", "d9"): 7},
    )
    b = make(tmp_path / "b", "B", {("q1", "d1"): 30, ("q1", "d2"): 10, ("q1", "d3"): 20, ("q2", "d1"): 1})
    return [a, b]


def test_zscore_fusion_hand_values_and_shared_pairs_only(members: list[ScoreStore]) -> None:
    view = combine(members, [0.75, 0.25], "zscore")
    z = np.sqrt(1.5)  # population z of the middle-distance point of 1, 2, 3
    got = store_dict(view)
    want = {
        ("q1", "d1"): 0.75 * -z + 0.25 * z,
        ("q1", "d2"): 0.75 * 0 + 0.25 * -z,
        ("q1", "d3"): 0.75 * z + 0.25 * 0,
        ("q2", "d1"): 0.0,  # one shared pair: its query has nothing to spread
    }
    assert got.keys() == want.keys()
    np.testing.assert_allclose([got[k] for k in want], list(want.values()), rtol=1e-6)
    assert view.dropped == [1, 0]  # (q2, d9) only A scored
    np.testing.assert_allclose(view.get("q1", ["d3", "d1"]), [want["q1", "d3"], want["q1", "d1"]], rtol=1e-6)
    with pytest.raises(RkdError, match=r"no score for pair \(query 'q2', doc 'd9'\)"):
        view.lookup([Pair("q2", "d9")])
    assert view.missing([Pair("q2", "d9"), Pair("q1", "d1")]) == [Pair("q2", "d9")]
    with pytest.raises(RkdError, match="read-only view"):
        view.add([Pair("q1", "d1")], np.ones(1))


def test_rank_fusion_orders_by_summed_ranks(members: list[ScoreStore]) -> None:
    got = store_dict(combine(members, [1, 1], "rank"))
    # scaled ranks in q1: A d1 0, d2 0.5, d3 1; B d1 1, d2 0, d3 0.5. q2 has one shared pair: 0.5 each
    assert got == {("q1", "d1"): 1.0, ("q1", "d2"): 0.5, ("q1", "d3"): 1.5, ("q2", "d1"): 1.0}


def test_fingerprint_covers_weights_normalisation_members(members: list[ScoreStore]) -> None:
    base = combine(members, [0.5, 0.5], "zscore").fingerprint
    assert base == combine(members[::-1], [0.5, 0.5], "zscore").fingerprint
    assert base == fingerprint(["A", "B"], [0.5, 0.5], "zscore")
    others = {
        combine(members, [0.6, 0.4], "zscore").fingerprint,
        combine(members, [1, 1], "zscore").fingerprint,
        combine(members, [0.5, 0.5], "minmax").fingerprint,
    }
    assert base not in others and len(others) == 3
    spec = combine(members, [0.6, 0.4], "zscore").manifest["teacher"]
    assert spec["normalisation"] == "zscore"
    assert [(m["fingerprint"], m["weight"], m["teacher"]["model"]) for m in spec["members"]] == [
        ("A", 0.6, "A"),
        ("B", 0.4, "B"),
    ]


def test_bad_ensembles_are_refused(members: list[ScoreStore]) -> None:
    with pytest.raises(RkdError, match="at least 2 member stores"):
        combine(members[:1])
    with pytest.raises(RkdError, match="2 member stores but 3 weights"):
        combine(members, [1, 1, 1])
    with pytest.raises(RkdError, match="weights must be finite, >= 0 and not all 0"):
        combine(members, [0, 0])
    with pytest.raises(RkdError, match=r"listed twice: \['A'\]"):
        combine([members[0], members[0]])
    with pytest.raises(RkdError, match="unknown normalisation 'z'"):
        combine(members, None, "z")


def test_materialised_store_equals_the_view(members: list[ScoreStore], tmp_path: Path) -> None:
    view = combine(members, [0.75, 0.25], "minmax")
    written = view.materialise(tmp_path / "out")
    assert written.fingerprint == view.fingerprint
    assert written.to_table().equals(view.to_table())
    assert written.manifest["teacher"]["members"][0]["weight"] == 0.75
    again = view.materialise(tmp_path / "out")  # already there: nothing rewritten
    assert sorted(p.name for p in again.path.glob("part-*")) == sorted(
        p.name for p in written.path.glob("part-*")
    )
    assert open_store(written.path).fingerprint == view.fingerprint  # a teacher folder opens too


def test_ndcg_matches_ranx() -> None:
    import ranx

    rng = np.random.default_rng(3)
    queries, docs = (
        [f"q{i}" for i in range(30) for _ in range(15)],
        [f"d{j}" for _ in range(30) for j in range(15)],
    )
    scores = rng.normal(size=len(queries))
    qrels = {
        f"q{i}": {f"d{j}": int(rng.integers(0, 3)) for j in rng.choice(20, 4, replace=False)}
        for i in range(30)
    }
    qrels = {q: g for q, g in qrels.items() if any(g.values())}
    import pyarrow as pa

    table = pa.table({"query_id": queries, "doc_id": docs})
    bounds = query_bounds(table)
    ids = [queries[b] for b in bounds[:-1]]
    got = ndcg_at(scores, bounds, relevance(table, qrels), ideal_dcg(ids, qrels))
    run: dict[str, dict[str, float]] = {}
    for q, d, s in zip(queries, docs, scores, strict=True):
        run.setdefault(q, {})[d] = float(s)
    want = ranx.evaluate(ranx.Qrels(qrels), ranx.Run({q: run[q] for q in qrels}), "ndcg@10")
    judged = [i for i, q in enumerate(ids) if q in qrels]
    assert got[judged].mean() == pytest.approx(want, abs=1e-9)


def test_tune_picks_the_weights_that_rank_the_positive_first(tmp_path: Path) -> None:
    # d1 is the positive. A ranks it first in q1 only, B in q2 only; at equal weights the fused
    # z-scores rank it first in both (q1: 1.22 + 0.39 against 0 + 0.98), at no other grid point.
    def lists(scores: dict[str, list[float]]) -> dict[tuple[str, str], float]:
        return {(q, f"d{i + 1}"): s for q, row in scores.items() for i, s in enumerate(row)}

    good_a = make(tmp_path / "a", "A", lists({"q1": [3, 2, 1], "q2": [2.5, 3, 1]}))
    good_b = make(tmp_path / "b", "B", lists({"q1": [2.5, 3, 1], "q2": [3, 2, 1]}))
    qrels = {"q1": {"d1": 1}, "q2": {"d1": 1}}
    view = tune([good_a, good_b], "tiny/train", "zscore", step=0.25, qrels=qrels)
    assert view.tuning is not None and view.tuning.queries == 2
    assert view.weights == [0.5, 0.5]
    assert view.tuning.grid[0] == ((0.5, 0.5), 1.0)
    one = 1 / np.log2(3)  # the positive second: DCG 1/log2(3)
    assert dict(view.tuning.grid)[(1.0, 0.0)] == pytest.approx((1 + one) / 2, abs=1e-6)
    assert view.spec["tuning"]["qrels"] == "tiny/train"
    with pytest.raises(RkdError, match="refusing to tune ensemble weights on 'beir/scifact/test'"):
        tune([good_a, good_b], "beir/scifact/test", qrels=qrels)
    with pytest.raises(RkdError, match="refusing to tune ensemble weights on 'x/dev'"):
        tune([good_a, good_b], "x/dev", qrels=qrels, eval_spec="x/dev")

from __future__ import annotations

import math
from pathlib import Path

import pytest

from retrieval_kd.errors import RkdError
from retrieval_kd.eval.metrics import compare, evaluate, parse_metric
from retrieval_kd.types import Qrels, Run

# Toy: two queries, graded qrels.
QRELS: Qrels = {"q1": {"d1": 2, "d2": 1}, "q2": {"d3": 1}}
RUN: Run = {
    "q1": {"d1": 3.0, "d4": 2.0, "d2": 1.0},  # ranks: d1 (rel 2), d4 (0), d2 (rel 1)
    "q2": {"d5": 2.0, "d3": 1.0},  # ranks: d5 (0), d3 (rel 1)
}

# nDCG@10, linear gain (ranx/trec_eval/BEIR: gain = rel, discount = log2(rank + 1)):
#   q1: DCG  = 2/log2(2) + 0/log2(3) + 1/log2(4) = 2 + 0 + 0.5             = 2.5
#       IDCG = 2/log2(2) + 1/log2(3)             = 2 + 0.6309297536         = 2.6309297536
#       nDCG = 2.5 / 2.6309297536                                           = 0.9502344167
#   q2: DCG  = 0/log2(2) + 1/log2(3) = 0.6309297536; IDCG = 1/log2(2) = 1 → 0.6309297536
#   mean = (0.9502344167 + 0.6309297536) / 2                                = 0.7905820852
NDCG10 = (2.5 / (2 + 1 / math.log2(3)) + 1 / math.log2(3)) / 2
# recall@2: q1 finds d1 of {d1, d2} in its top 2 → 1/2; q2 finds d3 → 1; mean 0.75.
# recall@100: both find every relevant doc → 1.0.
# mrr@10: q1 first relevant at rank 1 → 1; q2 at rank 2 → 1/2; mean 0.75.


def test_golden_values() -> None:
    assert NDCG10 == pytest.approx(0.7905820852, abs=1e-9)
    got = evaluate(QRELS, RUN, ["ndcg@10", "recall@2", "recall@100", "mrr@10"])
    assert list(got) == ["ndcg@10", "recall@2", "recall@100", "mrr@10"]
    assert round(got["ndcg@10"], 6) == round(NDCG10, 6) == 0.790582
    assert round(got["recall@2"], 6) == 0.75
    assert round(got["recall@100"], 6) == 1.0
    assert round(got["mrr@10"], 6) == 0.75


def test_precision_and_map() -> None:
    # precision@2: q1 1/2, q2 1/2 → 0.5.
    # map@100: q1 (1/1 + 2/3) / 2 = 0.833333; q2 (1/2) / 1 = 0.5; mean 0.666667.
    got = evaluate(QRELS, RUN, ["precision@2", "map@100"])
    assert round(got["precision@2"], 6) == 0.5
    assert round(got["map@100"], 6) == 0.666667


def test_single_metric_and_user_spelling() -> None:
    assert evaluate(QRELS, RUN, ["MRR@10"]) == {"mrr@10": 0.75}
    assert parse_metric(" nDCG@10 ") == "ndcg@10"


def test_query_missing_from_run_counts_zero() -> None:
    qrels = {**QRELS, "q3": {"d9": 1}}
    got = evaluate(qrels, RUN, ["ndcg@10", "mrr@10", "recall@100"])
    assert round(got["ndcg@10"], 6) == round(NDCG10 * 2 / 3, 6)
    assert round(got["mrr@10"], 6) == 0.5
    assert round(got["recall@100"], 6) == round(2 / 3, 6)


def test_run_queries_without_qrels_are_dropped() -> None:
    run = {**RUN, "q_unjudged": {"d1": 1.0}}
    assert evaluate(QRELS, run, ["mrr@10"]) == {"mrr@10": 0.75}


def test_ignore_identical_ids() -> None:
    run = {"q1": {"q1": 9.0, "d1": 3.0}, "q2": {"d3": 1.0}}
    assert evaluate(QRELS, run, ["mrr@10"]) == {"mrr@10": 1.0}
    # kept, the query's own id takes rank 1 of q1, pushing d1 to rank 2: (1/2 + 1) / 2
    assert evaluate(QRELS, run, ["mrr@10"], ignore_identical_ids=False) == {"mrr@10": 0.75}


def test_unknown_metric_lists_choices() -> None:
    with pytest.raises(RkdError) as e:
        evaluate(QRELS, RUN, ["ndcg@10", "ndgc@10"])
    message = str(e.value)
    assert message.startswith("unknown metric 'ndgc@10'; choose from [")
    for name in ("'ndcg'", "'recall'", "'mrr'", "'map'", "'precision'"):
        assert name in message
    with pytest.raises(RkdError, match="cutoff must be at least 1"):
        parse_metric("ndcg@0")


def test_compare_marks_significant_wins() -> None:
    # A always ranks the relevant doc first; B ranks it 2nd on even queries, 3rd on odd ones.
    qrels = {f"q{i}": {"rel": 1} for i in range(10)}
    a = {f"q{i}": {"rel": 3.0, "x": 2.0, "y": 1.0} for i in range(10)}
    b = {
        f"q{i}": {"x": 3.0, "rel": 2.0, "y": 1.0} if i % 2 == 0 else {"x": 3.0, "y": 2.0, "rel": 1.0}
        for i in range(10)
    }
    report = compare({"A": a, "B": b}, qrels, ["mrr@10", "recall@100"])
    assert report.run_names == ["A", "B"]
    assert report.metrics["A"] == {"mrr@10": 1.0, "recall@100": 1.0}
    # B: mean of 1/2 and 1/3 over 5 queries each = 5/12
    assert round(report.metrics["B"]["mrr@10"], 6) == round(5 / 12, 6)
    assert report.p_values["A"]["B"]["mrr@10"] < 0.05
    assert report.p_values["A"]["B"]["mrr@10"] == report.p_values["B"]["A"]["mrr@10"]
    assert report.better_than == {
        "A": {"mrr@10": ["B"], "recall@100": []},
        "B": {"mrr@10": [], "recall@100": []},
    }
    assert report.markers() == {"A": {"mrr@10": "b", "recall@100": ""}, "B": {"mrr@10": "", "recall@100": ""}}


def test_compare_needs_two_runs() -> None:
    with pytest.raises(RkdError, match="at least two runs"):
        compare({"A": RUN}, QRELS, ["mrr@10"])


def test_numba_cache_placement(tmp_path: Path) -> None:
    """ranx's kernels cache beside ranx when it is writable, in ~/.cache/rkd/numba when not, and a
    cache that holds the compiled nDCG kernel means no compile (and no announcement)."""
    from retrieval_kd.eval.metrics import numba_cache

    home = tmp_path / "ranx"
    (home / "metrics" / "__pycache__").mkdir(parents=True)
    assert numba_cache(home, {}) == (home, True)
    (home / "metrics" / "__pycache__" / "ndcg._ndcg-11.py311.nbi").write_bytes(b"x")
    assert numba_cache(home, {}) == (home, False)
    given = {"NUMBA_CACHE_DIR": str(tmp_path / "mine")}
    assert numba_cache(home, given) == (tmp_path / "mine", True)
    # a folder this user cannot write (os.access is False for it: a nonexistent one here, since
    # root, which runs CI, may write anywhere): the cache goes to the user's cache folder
    env: dict[str, str] = {}
    cache, _ = numba_cache(tmp_path / "system-ranx", env)
    assert env["NUMBA_CACHE_DIR"] == str(Path.home() / ".cache" / "rkd" / "numba") == str(cache)

"""Pairwise preferences → per-document targets, on hand-made preference sets."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from retrieval_kd.scores.judging import judge_lists
from retrieval_kd.scores.targets import bradley_terry, combine, win_rate
from retrieval_kd.teachers.llm_pairwise import sliding

LOG3, LOG9 = math.log(3), math.log(9)
# x beats y and y beats z at odds 3:1, x beats z at 9:1; every pair asked in both orders with a
# position bias of +1 for whichever passage is shown first
CHAIN = {
    ("x", "y"): LOG3 + 1,
    ("y", "x"): -LOG3 + 1,
    ("y", "z"): LOG3 + 1,
    ("z", "y"): -LOG3 + 1,
    ("x", "z"): LOG9 + 1,
    ("z", "x"): -LOG9 + 1,
}


def test_both_orders_cancel_the_position_bias() -> None:
    assert combine(CHAIN) == pytest.approx({("x", "y"): LOG3, ("x", "z"): LOG9, ("y", "z"): LOG3})
    assert combine({("b", "a"): 2.0}) == {("a", "b"): -2.0}  # one order alone, as it is


def test_bradley_terry_recovers_consistent_strengths() -> None:
    # σ(s_x − s_y) = 3/4, σ(s_y − s_z) = 3/4, σ(s_x − s_z) = 9/10 hold exactly for
    # s = (log 3, 0, −log 3): the maximum likelihood, centred to mean 0
    np.testing.assert_allclose(bradley_terry(["x", "y", "z"], CHAIN), [LOG3, 0.0, -LOG3], atol=1e-5)


def test_bradley_terry_of_a_cycle_is_flat() -> None:
    cycle = {("x", "y"): LOG3, ("y", "z"): LOG3, ("z", "x"): LOG3}
    np.testing.assert_allclose(bradley_terry(["x", "y", "z"], cycle), [0.0, 0.0, 0.0], atol=1e-9)


def test_bradley_terry_stays_finite_when_one_wins_everything() -> None:
    s = bradley_terry(["x", "y"], {("x", "y"): 80.0})  # σ(80) rounds to 1 in float64
    assert np.isfinite(s).all() and s[0] > 5 and s[0] == pytest.approx(-s[1])


def test_win_rate_is_the_mean_probability_of_winning() -> None:
    # x: (3/4 + 9/10) / 2; y: (1/4 + 3/4) / 2; z: (1/4 + 1/10) / 2; w never compared
    np.testing.assert_allclose(win_rate(["x", "y", "z", "w"], CHAIN), [0.825, 0.5, 0.175, 0.0], atol=1e-9)


class StrengthJudge:
    """Preferences from fixed strengths plus a position bias: v(a, b) = s_a − s_b + 0.5."""

    judgement_kind = "pairwise"

    def __init__(self, strengths: dict[str, float], passes: int) -> None:
        self.strengths = strengths
        self.passes = passes
        self.asked: list[tuple[str, str]] = []

    def fingerprint(self) -> str:
        return "strength-judge"

    def schedule(self, doc_ids: Sequence[str]) -> object:
        return sliding(doc_ids, self.passes)

    def calls(self, n_docs: int) -> int:
        return 2 * sum(n_docs - 1 - p for p in range(self.passes))

    def judge(self, queries: Sequence[str], first: Sequence[str], second: Sequence[str]) -> np.ndarray:
        self.asked += list(zip(first, second, strict=True))
        return np.array(
            [self.strengths[a] - self.strengths[b] + 0.5 for a, b in zip(first, second, strict=True)]
        )


def test_sliding_passes_bubble_the_best_up_in_the_stated_calls() -> None:
    strengths = {"d1": 0.0, "d2": 1.0, "d3": 3.0, "d4": 2.0}  # best d3, then d4
    judge = StrengthJudge(strengths, passes=2)
    texts = {d: d for d in strengths}
    asked = judge_lists(None, judge, {"q": ["d1", "d2", "d3", "d4"]}, {"q": "q"}, texts)  # type: ignore[arg-type]
    # pass 1 from the bottom: (d3, d4) kept, (d2, d3) swapped, (d1, d3) swapped → d3 d1 d2 d4;
    # pass 2 down to position 1: (d2, d4) swapped, (d1, d4) swapped → d3 d4 d1 d2
    assert judge.asked == [
        ("d3", "d4"), ("d4", "d3"), ("d2", "d3"), ("d3", "d2"), ("d1", "d3"), ("d3", "d1"),
        ("d2", "d4"), ("d4", "d2"), ("d1", "d4"), ("d4", "d1"),
    ]  # fmt: skip
    assert asked == 10 == judge.calls(4)

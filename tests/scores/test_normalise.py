from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import rankdata
from scipy.stats import zscore as scipy_zscore

from retrieval_kd.errors import RkdError
from retrieval_kd.scores.normalise import NORMALISATIONS, get, minmax, rank, zscore

RNG = np.random.default_rng(7)
SCORES = RNG.normal(size=40).astype(np.float32)
BOUNDS = np.array([0, 10, 11, 25, 40])


def test_zscore_matches_scipy_per_query() -> None:
    got = zscore(SCORES, BOUNDS)
    for a, b in itertools.pairwise(BOUNDS):
        want = scipy_zscore(SCORES[a:b].astype(np.float64)) if b - a > 1 else [0.0]
        np.testing.assert_allclose(got[a:b], want, atol=1e-12)


def test_rank_matches_scipy_average_ranks_with_ties() -> None:
    scores = np.array([3.0, 1.0, 3.0, 2.0, 5.0, 5.0, 5.0])
    bounds = np.array([0, 4, 7])
    assert rank(scores, bounds).tolist() == [
        2.5 / 3,
        0.0,
        2.5 / 3,
        1 / 3,
        0.5,
        0.5,
        0.5,
    ]  # 3.0 ties at ranks 3, 4
    got = rank(SCORES, BOUNDS)
    for a, b in itertools.pairwise(BOUNDS):
        n = b - a
        want = (rankdata(SCORES[a:b]) - 1) / (n - 1) if n > 1 else [0.5]
        np.testing.assert_allclose(got[a:b], want, atol=1e-12)


def test_minmax_hand_values_and_constant_query() -> None:
    assert minmax(np.array([10.0, 20.0, 15.0, 7.0]), np.array([0, 3, 4])).tolist() == [0.0, 1.0, 0.5, 0.5]


@pytest.mark.parametrize("name", sorted(NORMALISATIONS))
def test_a_query_depends_only_on_its_own_scores(name: str) -> None:
    """Permuting rows inside a query permutes its outputs; other queries' scores change nothing."""
    norm = get(name)
    base = norm(SCORES, BOUNDS)
    perm = SCORES.copy()
    perm[11:25] = SCORES[11:25][::-1]
    perm[:10] = SCORES[:10] * 100 - 3  # another query's scores
    np.testing.assert_allclose(norm(perm, BOUNDS)[11:25], base[11:25][::-1], atol=1e-12)


def test_bad_input_is_refused() -> None:
    with pytest.raises(
        RkdError, match=r"unknown normalisation 'softmax'; choose from \['minmax', 'none', 'rank', 'zscore'\]"
    ):
        get("softmax")
    with pytest.raises(RkdError, match="query bounds must run from 0 to 3 rows"):
        zscore(np.ones(3), np.array([0, 2]))

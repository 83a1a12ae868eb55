"""Per-query score normalisations, so that teachers on different scales can be summed.

Each function takes the scores of many queries in one flat array, the rows of query ``i`` being
``bounds[i]:bounds[i + 1]`` (queries contiguous, as a store's sorted table holds them), and
returns float64 values of the same shape. They are pure: the value of a pair depends only on the
scores of its own query, never on the other queries or on row order within the query.

A query whose scores are all equal (or that has one score) has nothing to spread: every
normalisation gives each of its rows the middle of its range (z-score 0, min-max and rank 0.5),
so such a query adds the same constant to every one of its documents and changes no order.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from retrieval_kd.errors import RkdError

Normalisation = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _segments(scores: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float64 scores, each row's query index, and the number of rows per query."""
    values = np.asarray(scores, dtype=np.float64)
    bounds = np.asarray(bounds, dtype=np.int64)
    if bounds.ndim != 1 or bounds.size < 1 or bounds[0] != 0 or bounds[-1] != values.size:
        raise RkdError(f"query bounds must run from 0 to {values.size} rows, got {bounds.tolist()[:5]}...")
    counts = np.diff(bounds)
    if (counts < 0).any():
        raise RkdError("query bounds must not decrease")
    return values, np.repeat(np.arange(counts.size), counts), counts


def _query_sums(values: np.ndarray, query: np.ndarray, n_queries: int) -> np.ndarray:
    return np.bincount(query, weights=values, minlength=n_queries)


def zscore(scores: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """``(s - mean) / std`` within each query (population std); 0 where a query's scores are equal.

    Shapes:
        scores[N], bounds[Q + 1] → float64[N]

    Example:
        >>> zscore(np.array([1.0, 2.0, 3.0, 10.0, 10.0]), np.array([0, 3, 5])).round(4).tolist()
        [-1.2247, 0.0, 1.2247, 0.0, 0.0]
    """
    values, query, counts = _segments(scores, bounds)
    n = np.maximum(counts, 1)
    mean = _query_sums(values, query, counts.size) / n
    centred = values - mean[query]
    std = np.sqrt(_query_sums(centred * centred, query, counts.size) / n)
    spread = std[query]
    safe = np.where(spread > 0, spread, 1.0)
    return np.where(spread > 0, centred / safe, 0.0)


def minmax(scores: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """``(s - min) / (max - min)`` within each query, in [0, 1]; 0.5 where its scores are equal.

    Shapes:
        scores[N], bounds[Q + 1] → float64[N]

    Example:
        >>> minmax(np.array([2.0, 4.0, 3.0, -1.0, -1.0]), np.array([0, 3, 5])).tolist()
        [0.0, 1.0, 0.5, 0.5, 0.5]
    """
    values, query, counts = _segments(scores, bounds)
    if values.size == 0:
        return values
    starts = np.asarray(bounds[:-1], dtype=np.int64)[counts > 0]
    low = np.full(counts.size, np.inf)
    high = np.full(counts.size, -np.inf)
    low[counts > 0] = np.minimum.reduceat(values, starts)
    high[counts > 0] = np.maximum.reduceat(values, starts)
    span = (high - low)[query]
    safe = np.where(span > 0, span, 1.0)
    return np.where(span > 0, (values - low[query]) / safe, 0.5)


def rank(scores: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """The ascending rank within each query scaled to [0, 1]: ``(r - 1) / (n - 1)`` for rank ``r``
    of ``n`` (the lowest score 0, the highest 1); tied scores share their average rank, as
    :func:`scipy.stats.rankdata` gives them.

    Shapes:
        scores[N], bounds[Q + 1] → float64[N]

    Example:
        >>> rank(np.array([0.3, 9.0, 0.3, 5.0, 7.0]), np.array([0, 4, 5])).round(4).tolist()
        [0.1667, 1.0, 0.1667, 0.6667, 0.5]
    """
    values, query, counts = _segments(scores, bounds)
    if values.size == 0:
        return values
    order = np.lexsort((values, query))  # by query, then score ascending
    sorted_values, sorted_query = values[order], query[order]
    # A run of equal (query, score) rows is one tie group; each gets the mean of its positions.
    new_run = np.ones(values.size, dtype=bool)
    new_run[1:] = (sorted_values[1:] != sorted_values[:-1]) | (sorted_query[1:] != sorted_query[:-1])
    run = np.cumsum(new_run) - 1
    position = np.arange(values.size, dtype=np.float64)
    run_mean = np.bincount(run, weights=position) / np.bincount(run)
    start = np.asarray(bounds[:-1], dtype=np.float64)[sorted_query]
    average = run_mean[run] - start  # 0-based average rank within the query
    n = counts[sorted_query].astype(np.float64)
    scaled = np.where(n > 1, average / np.maximum(n - 1, 1), 0.5)
    out = np.empty(values.size)
    out[order] = scaled
    return out


def identity(scores: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """The raw scores (a weighted sum of unnormalised teachers, for comparison).

    Example:
        >>> identity(np.array([1.5, -2.0], dtype=np.float32), np.array([0, 2])).tolist()
        [1.5, -2.0]
    """
    values, _, _ = _segments(scores, bounds)
    return values


NORMALISATIONS: dict[str, Normalisation] = {
    "zscore": zscore,
    "minmax": minmax,
    "rank": rank,
    "none": identity,
}


def get(name: str) -> Normalisation:
    """The normalisation called ``name``.

    Raises:
        RkdError: an unknown name; the message lists the choices.
    """
    if name not in NORMALISATIONS:
        raise RkdError(f"unknown normalisation {name!r}; choose from {sorted(NORMALISATIONS)}")
    return NORMALISATIONS[name]

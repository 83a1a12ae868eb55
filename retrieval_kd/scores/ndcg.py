"""nDCG@k of many queries re-ranked at once, vectorised over one flat array of scores.

Tuning an ensemble's weights scores every point of a weight grid; building a ranx ``Run`` dict
per point would cost more than the fusion itself. These kernels take the flat arrays the
ensemble already holds (queries contiguous, ``bounds`` as in :mod:`.normalise`) and agree with
ranx's ``ndcg@10`` (linear gain, ideal DCG over every judged document, as trec_eval), which
``tests/scores/test_ensemble.py`` checks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from retrieval_kd.types import Qrels


def relevance(table: pa.Table, qrels: Qrels) -> np.ndarray:
    """The qrels grade of every (query, doc) row of ``table`` (0 when unjudged). Shapes: [N]."""
    queries = table.column("query_id").to_pylist()
    docs = table.column("doc_id").to_pylist()
    return np.array(
        [qrels.get(q, {}).get(d, 0) for q, d in zip(queries, docs, strict=True)], dtype=np.float64
    )


def ndcg_at(
    scores: np.ndarray, bounds: np.ndarray, gains: np.ndarray, ideal: np.ndarray, k: int = 10
) -> np.ndarray:
    """nDCG@k of each query re-ranked by ``scores`` (linear gain, as trec_eval and ranx's ``ndcg``).

    Ties keep row order (the table's doc-id order). ``ideal[i]`` is query ``i``'s ideal DCG@k
    over all its judged documents (:func:`ideal_dcg`); a query with ``ideal`` 0 gets 0.

    Shapes:
        scores[N], bounds[Q + 1], gains[N], ideal[Q] → float64[Q]

    Example:
        >>> bounds, gains, ideal = np.array([0, 3]), np.array([1.0, 0.0, 0.0]), np.array([1.0])
        >>> ndcg_at(np.array([0.1, 0.9, 0.5]), bounds, gains, ideal).round(4).tolist()  # relevant 3rd
        [0.5]
    """
    n_queries = bounds.size - 1
    counts = np.diff(bounds)
    query = np.repeat(np.arange(n_queries), counts)
    order = np.lexsort((np.arange(scores.size), -np.asarray(scores, dtype=np.float64), query))
    position = np.arange(scores.size) - bounds[query[order]]
    top = position < k
    dcg = np.bincount(
        query[order][top], weights=gains[order][top] / np.log2(position[top] + 2), minlength=n_queries
    )
    return np.where(ideal > 0, dcg / np.where(ideal > 0, ideal, 1.0), 0.0)


def ideal_dcg(query_ids: Sequence[str], qrels: Qrels, k: int = 10) -> np.ndarray:
    """Ideal DCG@k of each query from all its judged grades (linear gain). Shapes: [Q]."""
    discount = 1.0 / np.log2(np.arange(k) + 2)
    out = np.zeros(len(query_ids))
    for i, q in enumerate(query_ids):
        grades = sorted((g for g in qrels.get(q, {}).values() if g > 0), reverse=True)[:k]
        out[i] = float(np.dot(grades, discount[: len(grades)]))
    return out

"""Pointwise distillation targets derived from stored pairwise preferences.

A pairwise store holds one value per ordered comparison, ``v(a, b)`` = how much ``a`` beats
``b`` with ``a`` shown first (a logit). Both orders combine into ``p(a, b) = (v(a, b) −
v(b, a)) / 2``, position bias cancelled (one order alone is used as it is), read as the
probability ``σ(p)`` that ``a`` beats ``b``. Per document of a query, then:

- ``bradley-terry``: strengths ``s`` maximising ``Σ σ(p_ab) log σ(s_a − s_b) + (1 − σ(p_ab))
  log σ(s_b − s_a)`` over the compared pairs, centred to mean 0 (a logit scale);
- ``win-rate``: the mean of ``σ(p_ab)`` over the documents ``a`` was compared with.

:func:`derive_store` writes them as a pointwise store whose fingerprint covers the pairwise
store's and the method, with both recorded in its manifest.

References:
    Bradley & Terry (1952); Hunter, "MM algorithms for generalized Bradley-Terry models" (2004).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retrieval_kd.errors import ConfigError
from retrieval_kd.fingerprint import hash_json
from retrieval_kd.scores.store import ScoreStore
from retrieval_kd.types import Pair

METHODS = ("bradley-terry", "win-rate")
RIDGE = 1e-6  # keeps a strength finite when one document wins every comparison outright


def combine(prefs: Mapping[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    """Ordered judgements → one position-debiased logit per unordered pair (``a < b``).

    Example:
        >>> combine({("x", "y"): 3.0, ("y", "x"): -1.0})
        {('x', 'y'): 2.0}
    """
    out: dict[tuple[str, str], float] = {}
    for a, b in {tuple(sorted(k)) for k in prefs}:
        sides = [
            v for v in (prefs.get((a, b)), None if (b, a) not in prefs else -prefs[(b, a)]) if v is not None
        ]
        out[(a, b)] = float(np.mean(sides))
    return dict(sorted(out.items()))


def bradley_terry(
    docs: Sequence[str], prefs: Mapping[tuple[str, str], float], iters: int = 100
) -> np.ndarray:
    """Bradley–Terry strengths of ``docs`` from ordered judgements (Newton's method).

    Shapes:
        docs[n] → float64[n], mean 0

    Example:
        >>> [round(float(s), 4) for s in bradley_terry(["x", "y"], {("x", "y"): float(np.log(3))})]
        [0.5493, -0.5493]
    """
    index = {d: i for i, d in enumerate(docs)}
    pairs = combine(prefs)
    a = np.array([index[x] for x, _ in pairs], dtype=np.int64)
    b = np.array([index[y] for _, y in pairs], dtype=np.int64)
    y = 1 / (1 + np.exp(-np.array(list(pairs.values()), dtype=np.float64)))
    s = np.zeros(len(docs))
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(s[a] - s[b])))
        grad = -RIDGE * s
        np.add.at(grad, a, y - p)
        np.add.at(grad, b, p - y)
        w = p * (1 - p)
        hess = np.diag(np.full(len(docs), RIDGE))  # minus the Hessian: a weighted graph Laplacian
        np.add.at(hess, (a, a), w)
        np.add.at(hess, (b, b), w)
        np.add.at(hess, (a, b), -w)
        np.add.at(hess, (b, a), -w)
        step = np.linalg.solve(hess, grad)
        s += step
        if np.abs(step).max() < 1e-10:
            break
    return np.asarray(s - s.mean(), dtype=np.float64)


def win_rate(docs: Sequence[str], prefs: Mapping[tuple[str, str], float]) -> np.ndarray:
    """Mean probability of winning over the documents each was compared with (0 if none).

    Example:
        >>> win_rate(["x", "y", "z"], {("x", "y"): 0.0, ("y", "x"): 0.0}).tolist()
        [0.5, 0.5, 0.0]
    """
    index = {d: i for i, d in enumerate(docs)}
    won = np.zeros(len(docs))
    seen = np.zeros(len(docs))
    for (x, y), p in combine(prefs).items():
        q = 1 / (1 + np.exp(-p))
        won[index[x]] += q
        won[index[y]] += 1 - q
        seen[index[x]] += 1
        seen[index[y]] += 1
    return np.divide(won, seen, out=np.zeros(len(docs)), where=seen > 0)


def derived_fingerprint(pairwise_fingerprint: str, method: str) -> str:
    """The derived store's fingerprint: the preferences' teacher and the method."""
    if method not in METHODS:
        raise ConfigError(f"unknown target method {method!r}; choose from {list(METHODS)}")
    return hash_json({"pairwise": pairwise_fingerprint, "method": method, "version": 1})


def derive_store(
    root: Path,
    pairwise: ScoreStore,
    lists: Mapping[str, Sequence[str]],
    method: str,
    spec: dict[str, Any],
    writer: str = "derive",
) -> ScoreStore:
    """Writes the ``method`` targets of every (query, candidate) of ``lists`` as a pointwise
    store under ``root``, all in one staged commit; pairs it already holds are kept.

    Returns:
        The derived store (open; close it).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    fp = derived_fingerprint(pairwise.fingerprint, method)
    manifest = {"kind": "derived", "from": pairwise.fingerprint, "method": method, "teacher": spec}
    store = ScoreStore.open(root, fp, manifest, writer=writer)
    todo = sorted({p.query_id for p in store.missing([Pair(q, d) for q, ds in lists.items() for d in ds])})
    if not todo:
        return store
    table = pairwise.to_table()
    table = table.filter(pc.is_in(table.column("query_id"), value_set=pa.array(todo)))
    prefs: dict[str, dict[tuple[str, str], float]] = {q: {} for q in todo}
    cols = [table.column(c).to_pylist() for c in ("query_id", "doc_a", "doc_b", "value")]
    for q, a, b, v in zip(*cols, strict=True):
        prefs[q][(a, b)] = v
    fit = bradley_terry if method == "bradley-terry" else win_rate
    keys: list[Pair] = []
    values: list[np.ndarray] = []
    for q in todo:
        docs = list(dict.fromkeys(lists[q]))
        keys += [Pair(q, d) for d in docs]
        values.append(fit(docs, prefs[q]))
    with store.staged():  # all queries' targets become visible together, or none
        store.add(keys, np.concatenate(values).astype(np.float32))
    return store

"""``rkd scores inspect``: what several teachers' stores hold and how far they agree.

Per store: its score distribution (mean, std, quantiles) and coverage (pairs, queries). Per pair
of stores: the pairs and queries both scored, and agreement over them: Kendall's τ-b between the
two teachers' scores within each query (:func:`scipy.stats.kendalltau`), averaged over the queries
with at least two shared documents and not all tied, and the top-10 overlap, ``|top10(A) ∩
top10(B)| / min(10, n)`` per query, averaged. Agreement is measured on at most ``max_queries``
shared queries (a seeded sample), which keeps a large store's inspection to seconds.

:func:`plot` draws the distributions and the agreement matrices into a PNG (matplotlib, Agg).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from retrieval_kd.errors import RkdError
from retrieval_kd.scores.ensemble import query_bounds
from retrieval_kd.scores.store import ScoreStore

QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)


@dataclass(frozen=True)
class Distribution:
    """One store's coverage and score distribution; ``quantiles`` align with :data:`QUANTILES`."""

    name: str
    pairs: int
    queries: int
    mean: float
    std: float
    quantiles: tuple[float, ...]


@dataclass(frozen=True)
class Agreement:
    """Two stores over the pairs both scored.

    Attributes:
        a, b: indices into :attr:`Inspection.names`.
        shared_pairs, shared_queries: coverage overlap.
        kendall_tau: mean per-query Kendall τ-b (NaN when no query has two untied shared docs).
        top10_overlap: mean per-query top-10 overlap (NaN when nothing is shared).
        queries: how many queries the two means ran over (τ may use fewer: tied queries are left out).
    """

    a: int
    b: int
    shared_pairs: int
    shared_queries: int
    kendall_tau: float
    top10_overlap: float
    queries: int


@dataclass
class Inspection:
    names: list[str]
    distributions: list[Distribution]
    agreements: list[Agreement]
    scores: list[np.ndarray] = field(repr=False)

    def matrix(self, what: str) -> np.ndarray:
        """``kendall_tau`` or ``top10_overlap`` as a symmetric matrix (1 on the diagonal)."""
        n = len(self.names)
        out = np.eye(n)
        for g in self.agreements:
            out[g.a, g.b] = out[g.b, g.a] = getattr(g, what)
        return out


def label(store: ScoreStore) -> str:
    """A store's short name: its fingerprint, and the model or kind its manifest records."""
    spec = store.manifest.get("teacher")
    what = ""
    if isinstance(spec, dict):
        what = str(spec.get("model") or spec.get("source") or spec.get("kind") or "")
    return f"{store.fingerprint} ({Path(what).name or what})" if what else store.fingerprint


def distribution(name: str, table: pa.Table) -> Distribution:
    scores = np.asarray(table.column("score").to_numpy(), dtype=np.float64)
    if scores.size == 0:
        raise RkdError(f"score store {name} is empty: nothing to inspect")
    queries = query_bounds(table).size - 1
    quantiles = tuple(float(q) for q in np.quantile(scores, QUANTILES))
    return Distribution(name, int(scores.size), queries, float(scores.mean()), float(scores.std()), quantiles)


def agreement(a: int, b: int, ta: pa.Table, tb: pa.Table, max_queries: int, seed: int) -> Agreement:
    from scipy.stats import kendalltau

    joined = ta.rename_columns(["query_id", "doc_id", "a"]).join(
        tb.rename_columns(["query_id", "doc_id", "b"]), ["query_id", "doc_id"], join_type="inner"
    )
    joined = joined.sort_by([("query_id", "ascending"), ("doc_id", "ascending")])
    bounds = query_bounds(joined)
    n_queries = bounds.size - 1
    picked = np.arange(n_queries)
    if n_queries > max_queries:
        picked = np.sort(np.random.default_rng(seed).choice(n_queries, max_queries, replace=False))
    sa = joined.column("a").to_numpy()
    sb = joined.column("b").to_numpy()
    taus: list[float] = []
    overlaps: list[float] = []
    for i in picked:
        x, y = sa[bounds[i] : bounds[i + 1]], sb[bounds[i] : bounds[i + 1]]
        k = min(10, x.size)
        top_a = set(np.argsort(-x, kind="stable")[:k].tolist())
        overlaps.append(len(top_a.intersection(np.argsort(-y, kind="stable")[:k].tolist())) / k)
        if x.size >= 2 and np.ptp(x) > 0 and np.ptp(y) > 0:
            taus.append(float(kendalltau(x, y).statistic))
    tau = float(np.mean(taus)) if taus else float("nan")
    overlap = float(np.mean(overlaps)) if overlaps else float("nan")
    return Agreement(a, b, joined.num_rows, n_queries, tau, overlap, int(picked.size))


def inspect_stores(
    stores: Sequence[ScoreStore],
    *,
    names: Sequence[str] | None = None,
    max_queries: int = 2000,
    seed: int = 0,
) -> Inspection:
    """Distributions of every store and agreement of every pair of them.

    Raises:
        RkdError: a pairwise or empty store, or ``max_queries`` < 1.
    """
    if max_queries < 1:
        raise RkdError(f"max_queries must be >= 1, got {max_queries}")
    for s in stores:
        if s.kind != "pointwise":
            raise RkdError(f"score store {s.path} holds {s.kind} judgements; inspect reads pointwise scores")
    names = list(names) if names is not None else [label(s) for s in stores]
    tables = [s.to_table() for s in stores]
    dists = [distribution(n, t) for n, t in zip(names, tables, strict=True)]
    pairs = itertools.combinations(range(len(stores)), 2)
    agreements = [agreement(a, b, tables[a], tables[b], max_queries, seed) for a, b in pairs]
    scores = [np.asarray(t.column("score").to_numpy(), dtype=np.float64) for t in tables]
    return Inspection(names, dists, agreements, scores)


def plot(inspection: Inspection, path: Path) -> None:
    """A PNG: one histogram per store (its own x scale, mean and median marked) above the
    Kendall τ and top-10 overlap matrices (one row and column per store, values written in)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(inspection.names)
    short = [f"T{i + 1}" for i in range(n)]
    cols = max(n, 2)
    fig = plt.figure(figsize=(4.2 * cols, 8.4), constrained_layout=True)
    grid = fig.add_gridspec(2, cols)
    for i, (scores, dist) in enumerate(zip(inspection.scores, inspection.distributions, strict=True)):
        ax = fig.add_subplot(grid[0, i])
        ax.hist(scores, bins=60, color=f"C{i}", alpha=0.85)
        ax.axvline(dist.mean, color="black", linestyle="--", linewidth=1, label=f"mean {dist.mean:.3g}")
        ax.axvline(
            dist.quantiles[3],
            color="black",
            linestyle=":",
            linewidth=1,
            label=f"median {dist.quantiles[3]:.3g}",
        )
        ax.set_title(f"{short[i]}: {inspection.names[i]}", fontsize=9, wrap=True)
        ax.set_xlabel(
            f"score as stored, own scale ({dist.pairs:,} pairs, {dist.queries:,} queries)", fontsize=8
        )
        ax.set_ylabel("pairs", fontsize=8)
        ax.legend(fontsize=7)
    halves = [(grid[1, : cols // 2]), (grid[1, cols // 2 :])]
    titles = {
        "kendall_tau": "Kendall τ-b within each query, mean\n(on the docs both stores scored; -1 to 1)",
        "top10_overlap": "top-10 overlap within each query, mean\n(shared docs of both top 10s / 10; 0 to 1)",
    }
    for spot, (what, title) in zip(halves, titles.items(), strict=True):
        ax = fig.add_subplot(spot)
        m = inspection.matrix(what)
        image = ax.imshow(m, vmin=-1 if what == "kendall_tau" else 0, vmax=1, cmap="viridis")
        ax.set_xticks(range(n), short)
        ax.set_yticks(range(n), short)
        for r, c in itertools.product(range(n), repeat=2):
            text = "n/a" if np.isnan(m[r, c]) else f"{m[r, c]:.3f}"
            ax.text(c, r, text, ha="center", va="center", color="white" if m[r, c] < 0.6 else "black")
        ax.set_title(title, fontsize=10)
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.suptitle(
        "teacher score stores: distributions (top) and agreement on shared pairs (bottom)", fontsize=11
    )
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)

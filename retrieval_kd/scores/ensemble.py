"""An ensemble teacher: several stores' scores, normalised per query, then summed with weights.

The ensemble is a read-only *view* (:class:`EnsembleStore`): it reads its members and computes
the fused scores in memory on its first read; nothing is copied to disk unless
:meth:`EnsembleStore.materialise` is asked to write a store. It covers the pairs that every
member scored; a pair that one member lacks has no ensemble score (lookups name it), and each
query is normalised over exactly those shared pairs, so every member is put on the same footing.

Its fingerprint hashes the members' fingerprints with their weights and the normalisation: two
ensembles of the same members, weights and normalisation are the same teacher, whatever order the
members were listed in. The spec recorded in its manifest (and in a materialised store's) names
every member (fingerprint, teacher description, store folder, weight), the normalisation and,
when the weights were tuned, how: the qrels spec, the grid and the nDCG@10 of every grid point.

Weights are fixed, or tuned (:func:`tune`) on a training split's qrels: a grid over the simplex
of weights, each point scored by the nDCG@10 of the fused scores re-ranking the pairs of every
judged query. Tuning on the evaluation split would report a number fitted to the test set, so a
qrels spec that names a test split (``.../test``, ``DIR:test``, a BEIR folder without a split)
or the spec given as ``eval_spec`` is refused.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from retrieval_kd.errors import RkdError
from retrieval_kd.fingerprint import hash_json
from retrieval_kd.scores import normalise
from retrieval_kd.scores.folder import FORMAT, VERSION
from retrieval_kd.scores.merged import Merged
from retrieval_kd.scores.ndcg import ideal_dcg, ndcg_at, relevance
from retrieval_kd.scores.parts import KINDS
from retrieval_kd.scores.store import ScoreStore
from retrieval_kd.types import Pair, Qrels

log = logging.getLogger(__name__)

__all__ = ["EnsembleStore", "Tuning", "combine", "fingerprint", "open_store", "tune"]

_POINTWISE = KINDS["pointwise"]


def open_store(path: Path) -> ScoreStore:
    """A store read-only, given as its teacher folder (``root/<fingerprint>``) or as a root that
    holds exactly one teacher.

    Raises:
        RkdError: no store there, or a root of several teachers (the message lists them).
    """
    path = Path(path)
    if (path / "manifest.json").is_file():
        return ScoreStore.load(path.parent, path.name)
    return ScoreStore.load(path)


def fingerprint(member_fingerprints: Sequence[str], weights: Sequence[float], normalisation: str) -> str:
    """The ensemble's fingerprint: members with their weights (in any order) and the normalisation.

    Example:
        >>> a = fingerprint(["bm25", "minilm"], [0.5, 0.5], "zscore")
        >>> a == fingerprint(["minilm", "bm25"], [0.5, 0.5], "zscore"), a.startswith("ensemble-")
        (True, True)
        >>> a == fingerprint(["bm25", "minilm"], [0.6, 0.4], "zscore")
        False
    """
    members = sorted(zip(member_fingerprints, map(float, weights), strict=True))
    return "ensemble-" + hash_json({"kind": "ensemble", "normalisation": normalisation, "members": members})


@dataclass(frozen=True)
class Tuning:
    """How the weights were chosen: on ``qrels`` (a dataset spec), the best of ``grid``.

    Attributes:
        qrels: the dataset spec whose qrels scored the grid.
        metric: ``"ndcg@10"``.
        queries: judged queries that had candidate pairs (the mean runs over them).
        grid: every weight vector tried, with its metric, best first.
    """

    qrels: str
    metric: str
    queries: int
    grid: list[tuple[tuple[float, ...], float]]

    def to_json(self) -> dict[str, Any]:
        best_weights, best = self.grid[0]
        return {
            "qrels": self.qrels,
            "metric": self.metric,
            "queries": self.queries,
            "best": {"weights": list(best_weights), self.metric: best},
            "grid": [{"weights": list(w), self.metric: m} for w, m in self.grid],
        }


class EnsembleStore(ScoreStore):
    """A read-only pointwise store whose scores are the weighted sum of its members' per-query
    normalised scores. Build it with :func:`combine` or :func:`tune`.

    Attributes:
        members: the member stores, in the order given.
        weights: one weight per member.
        normalisation: a name from :data:`~retrieval_kd.scores.normalise.NORMALISATIONS`.
        dropped: per member, how many of its pairs other members lack (known after the first read).
    """

    def __init__(
        self,
        members: Sequence[ScoreStore],
        weights: Sequence[float],
        normalisation: str,
        tuning: Tuning | None = None,
    ) -> None:
        normalise.get(normalisation)  # refuses an unknown name
        if len(members) < 2:
            raise RkdError(f"an ensemble needs at least 2 member stores, got {len(members)}")
        if len(weights) != len(members):
            raise RkdError(
                f"{len(members)} member stores but {len(weights)} weights; give one weight per store"
            )
        values = [float(w) for w in weights]
        if not all(np.isfinite(w) and w >= 0 for w in values) or not any(values):
            raise RkdError(f"ensemble weights must be finite, >= 0 and not all 0; got {values}")
        fps = [m.fingerprint for m in members]
        repeated = sorted({f for f in fps if fps.count(f) > 1})
        if repeated:
            raise RkdError(f"the same teacher store is listed twice: {repeated}; list each member once")
        for m in members:
            if m.kind != "pointwise":
                raise RkdError(
                    f"ensemble member {m.path} holds {m.kind} judgements; members must be pointwise"
                )
        fp = fingerprint(fps, values, normalisation)
        spec: dict[str, Any] = {
            "kind": "ensemble",
            "normalisation": normalisation,
            "members": [
                {
                    "fingerprint": m.fingerprint,
                    "weight": w,
                    "teacher": m.manifest.get("teacher"),
                    "store": str(m.path),
                }
                for m, w in zip(members, values, strict=True)
            ],
            "tuning": tuning.to_json() if tuning else None,
        }
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "kind": "pointwise",
            "teacher_fingerprint": fp,
            "teacher": spec,
        }
        super().__init__(Path(f"<{fp}>"), manifest, writer=None)
        self.members = list(members)
        self.weights = values
        self.normalisation = normalisation
        self.tuning = tuning
        self.dropped: list[int] | None = None

    @property
    def spec(self) -> dict[str, Any]:
        """Members, weights, normalisation and tuning, as recorded in the manifest."""
        return dict(self.manifest["teacher"])

    def verify(self) -> int:
        """Checks every member's parts (see :meth:`ScoreStore.verify`); returns how many."""
        return sum(m.verify() for m in self.members)

    def add(self, keys: Sequence[Any], values: np.ndarray) -> None:
        raise RkdError(
            f"ensemble {self.fingerprint} is a read-only view of its members; add scores to a member "
            "store, or write the ensemble out with `rkd scores combine --out`"
        )

    def member_table(self) -> pa.Table:
        """The shared pairs sorted by (query, doc), one float32 column ``m0, m1, ...`` per member."""
        tables = [m.to_table() for m in self.members]
        joined = tables[0].rename_columns(["query_id", "doc_id", "m0"])
        for i, t in enumerate(tables[1:], start=1):
            joined = joined.join(
                t.rename_columns(["query_id", "doc_id", f"m{i}"]), ["query_id", "doc_id"], join_type="inner"
            )
        order = pc.sort_indices(joined, sort_keys=[("query_id", "ascending"), ("doc_id", "ascending")])
        joined = joined.take(order).combine_chunks()
        self.dropped = [len(t) - joined.num_rows for t in tables]
        if any(self.dropped):
            log.warning(
                "ensemble %s covers %d pairs, the ones every member scored; pairs only some members have "
                "(per member: %s) have no ensemble score",
                self.fingerprint,
                joined.num_rows,
                self.dropped,
            )
        return joined

    def _view(self) -> Merged:
        if self._merged is None:
            table = self.member_table()
            columns = normalised_columns(table, self.normalisation)
            fused = np.asarray(np.asarray(self.weights) @ columns, dtype=np.float32)
            keys = table.select(["query_id", "doc_id"])
            fused_table = keys.append_column("score", pa.array(fused, pa.float32()))
            self._merged = Merged.build([fused_table], [0], _POINTWISE)
        return self._merged

    def materialise(self, root: Path, *, batch_size: int = 100_000) -> ScoreStore:
        """Writes the ensemble's scores as a store under ``root/<ensemble fingerprint>`` (all of
        them or, on an error, none) and returns it read-only. A store already there with these
        exact scores is returned as it is.
        """
        table = self.to_table()
        fp = self.fingerprint
        if fp in ScoreStore.teachers(Path(root)):
            existing = ScoreStore.load(root, fp)
            if existing.to_table().equals(table):
                return existing
        with ScoreStore.open(root, fp, self.spec, writer="ensemble") as store, store.staged():
            for batch in table.to_batches(batch_size):
                pairs = [
                    Pair(q, d)
                    for q, d in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True)
                ]
                store.add(pairs, batch.column(2).to_numpy())
        return ScoreStore.load(root, fp)


def query_bounds(table: pa.Table) -> np.ndarray:
    """Row bounds of each query of a table sorted by ``query_id``: query ``i`` is ``b[i]:b[i+1]``."""
    n = table.num_rows
    if n == 0:
        return np.zeros(1, dtype=np.int64)
    q = table.column("query_id")
    change = ~np.asarray(pc.equal(q.slice(1), q.slice(0, n - 1)).to_numpy(zero_copy_only=False), dtype=bool)
    return np.concatenate([[0], np.flatnonzero(change) + 1, [n]]).astype(np.int64)


def normalised_columns(table: pa.Table, normalisation: str) -> np.ndarray:
    """Each member column ``m0, m1, ...`` of :meth:`EnsembleStore.member_table`, normalised per query.

    Shapes:
        table[N] with M member columns → float64[M, N]
    """
    norm = normalise.get(normalisation)
    bounds = query_bounds(table)
    members = [c for c in table.column_names if c.startswith("m")]
    return (
        np.stack([norm(table.column(c).to_numpy(), bounds) for c in members]) if members else np.zeros((0, 0))
    )


def combine(
    stores: Sequence[ScoreStore], weights: Sequence[float] | None = None, normalisation: str = "zscore"
) -> EnsembleStore:
    """The ensemble view of ``stores``: per-query ``normalisation``, then the sum weighted by
    ``weights`` (equal weights, summing to 1, when ``None``). Its ``fingerprint`` names it.

    Raises:
        RkdError: fewer than two stores, a store listed twice, a pairwise store, weights that do
            not fit (count, sign, all zero), or an unknown normalisation.
    """
    if weights is None:
        weights = [1.0 / len(stores)] * len(stores) if stores else []
    return EnsembleStore(stores, weights, normalisation)


def check_tuning_split(qrels_spec: str, eval_spec: str | None = None) -> None:
    """Refuses to tune on the evaluation split: ``eval_spec`` itself, or a spec naming a test split.

    Example:
        >>> check_tuning_split("beir/scifact/train#dev:0.2")
        >>> check_tuning_split("beir/scifact/test")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        retrieval_kd.errors.RkdError: refusing to tune ensemble weights on 'beir/scifact/test', ...
    """
    base = qrels_spec.rpartition("#")[0] or qrels_spec
    split = base.rpartition(":")[2] if ":" in base else ""
    is_test = base.rstrip("/").endswith("/test") or split == "test" or (not split and Path(base).is_dir())
    if is_test or (eval_spec is not None and qrels_spec == eval_spec):
        raise RkdError(
            f"refusing to tune ensemble weights on {qrels_spec!r}, an evaluation split: weights fitted "
            "to it would report a test score the ensemble was fitted to; tune on a training split "
            "(beir/scifact/train) or a dev carve of one (beir/scifact/train#dev:0.2)"
        )


def simplex_grid(members: int, step: float) -> list[tuple[float, ...]]:
    """Every weight vector of ``members`` multiples of ``step`` summing to 1.

    Example:
        >>> simplex_grid(2, 0.25)
        [(0.0, 1.0), (0.25, 0.75), (0.5, 0.5), (0.75, 0.25), (1.0, 0.0)]
    """
    steps = round(1 / step)
    if not 1 <= steps <= 1000 or abs(steps * step - 1) > 1e-9:
        raise RkdError(f"weight grid step {step} must divide 1 into at most 1000 steps (0.1, 0.05, 0.25)")
    points = (c for c in itertools.product(range(steps + 1), repeat=members - 1) if sum(c) <= steps)
    return [tuple(round(x / steps, 10) for x in (*c, steps - sum(c))) for c in points]


def tune(
    stores: Sequence[ScoreStore],
    qrels_spec: str,
    normalisation: str = "zscore",
    *,
    step: float = 0.1,
    eval_spec: str | None = None,
    qrels: Qrels | None = None,
) -> EnsembleStore:
    """The ensemble whose weights score the best nDCG@10 on ``qrels_spec``'s qrels, re-ranking the
    shared pairs of each judged query; every grid point and its score is recorded (``tuning``).
    Of equal scores the first grid point wins (the grid runs from the last member's weight 1).

    Args:
        stores: the members.
        qrels_spec: a training (or dev) dataset spec; its qrels are read unless ``qrels`` is given.
        normalisation: as for :func:`combine`.
        step: the grid's spacing on the simplex of weights (summing to 1).
        eval_spec: the evaluation split's spec, refused as ``qrels_spec``.
        qrels: the qrels of ``qrels_spec``, when the caller has them already.

    Raises:
        RkdError: ``qrels_spec`` is an evaluation split, or no judged query has a shared pair.
    """
    check_tuning_split(qrels_spec, eval_spec)
    if qrels is None:
        from retrieval_kd.data import load_dataset

        qrels = load_dataset(qrels_spec).qrels
    probe = combine(stores, None, normalisation)  # checks the members; its table is the grid's input
    table = probe.member_table()
    columns = normalised_columns(table, normalisation)
    bounds = query_bounds(table)
    query_ids = (
        table.column("query_id").take(pa.array(bounds[:-1], pa.int64())).to_pylist() if len(table) else []
    )
    ideal = ideal_dcg(query_ids, qrels)
    judged = ideal > 0
    if not judged.any():
        raise RkdError(
            f"no query of {qrels_spec!r} with a relevant document has pairs in every member store; "
            "tune on the split the candidates were mined from"
        )
    gains = relevance(table, qrels)
    grid = []
    for weights in simplex_grid(len(stores), step):
        per_query = ndcg_at(np.asarray(weights) @ columns, bounds, gains, ideal)
        grid.append((weights, round(float(per_query[judged].mean()), 6)))
    ranked = sorted(grid, key=lambda g: -g[1])  # stable: ties keep grid order
    tuning = Tuning(qrels_spec, "ndcg@10", int(judged.sum()), ranked)
    return EnsembleStore(stores, ranked[0][0], normalisation, tuning)

"""The teacher-rerank stage: a teacher reorders the top of another row's run, so a recipe's table
shows its teachers as re-rankers (``[[eval.systems]] rerank = "teacher"``) beside its retrievers
and students, with the same significance letters.

The first stage's top ``depth`` documents of each evaluated query are written as a candidates
folder (the first document stands as the format's one positive: no qrels are read), and the
teacher scores its pairs through the score stage, into the score store, so pairs a store already
holds are not scored again. A teacher is one model, one member of an ensemble (a retriever member
scores a pair with its search score), or an ensemble: each member's scores are normalised per
query over exactly the re-ranked pairs (:func:`retrieval_kd.scores.ensemble.normalised_columns`)
and summed with the ensemble's weights, the ones the score stage tuned on the training split for
the recipe's own teacher. The output is the eval stage's (``run.trec``, ``metrics.json`` with
cost), so tables and ``rkd eval compare`` read it like any row; its fingerprint covers the
teacher's, the first stage's, the depth and the dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrieval_kd.artifacts import building, mark, stage_fingerprint
from retrieval_kd.distributed import all_agree, barrier, is_main
from retrieval_kd.errors import RkdError
from retrieval_kd.fingerprint import hash_json
from retrieval_kd.progress import Progress
from retrieval_kd.stages._common import StageResult, input_fingerprint

if TYPE_CHECKING:
    import numpy as np

    from retrieval_kd.config import TeacherConfig, TeacherMember
    from retrieval_kd.data.base import Dataset
    from retrieval_kd.scores.store import ScoreStore
    from retrieval_kd.types import Pair, Run

__all__ = ["TeacherRerankStage", "fuse", "resolve_teacher", "teacher_rerank_stage", "top_documents"]


def resolve_teacher(
    rerank: str | None,
    inline: TeacherConfig | None,
    recipe_teacher: TeacherConfig,
    tuned: Sequence[float] | None = None,
) -> TeacherConfig | TeacherMember:
    """The teacher a re-rank row names: ``rerank = "teacher"`` (the recipe's, an ensemble with the
    weights ``tuned`` on the training split when it tunes them), ``"teacher.members[i]"`` (one
    member) or the ``inline`` table.

    Raises:
        RkdError: a reference that names no teacher (the config checks refuse it first).
    """
    if inline is not None:
        return inline
    if rerank == "teacher":
        if recipe_teacher.kind == "ensemble" and recipe_teacher.tune:
            if tuned is None:
                raise RkdError("the recipe's ensemble tunes its weights: pass the tuned weights")
            return recipe_teacher.replace(tune=False, weights=tuple(tuned))
        return recipe_teacher
    members = recipe_teacher.members
    for i, member in enumerate(members):
        if rerank == f"teacher.members[{i}]":
            return member
    choices = ["teacher", *(f"teacher.members[{i}]" for i in range(len(members)))]
    raise RkdError(f"rerank = {rerank!r} names no teacher; choose from {choices}")


@dataclass(frozen=True)
class TeacherRerankStage:
    """A re-rank row of a recipe's ``[[eval.systems]]``.

    Attributes:
        name: the row's name.
        teacher: a ``[teacher]`` table (one model, or an ensemble with fixed weights) or one of
            its ``[[teacher.members]]``.
        first_stage: the evaluation folder whose ``run.trec`` is re-ranked.
        dataset: queries, documents and qrels.
        out: the evaluation folder to write.
        store: the score store root the teacher's scores go to.
        candidates: where the first stage's top ``depth`` is written as candidates.
        depth: documents per query re-ranked.
    """

    name: str
    teacher: TeacherConfig | TeacherMember
    first_stage: Path
    dataset: str
    out: Path
    store: Path
    candidates: Path
    metrics: tuple[str, ...] = ("ndcg@10", "recall@100", "mrr@10")
    depth: int = 100
    max_queries: int | None = None

    def members(self) -> tuple[tuple[TeacherMember, ...], tuple[float, ...], str]:
        """The teacher as members, their weights and the normalisation (one model: itself,
        weight 1, no normalisation)."""
        from retrieval_kd.config import TeacherConfig, TeacherMember

        t = self.teacher
        if isinstance(t, TeacherMember):
            return (t,), (1.0,), "none"
        if t.kind != "ensemble":
            fields = ("kind", "model", "batch_size", "max_length", "dtype", "device", "options")
            return (TeacherMember(**{f: getattr(t, f) for f in fields}),), (1.0,), "none"
        assert isinstance(t, TeacherConfig)
        if t.tune:
            raise RkdError(f"{self.name}: an ensemble re-ranks with fixed weights; give the tuned ones")
        n = len(t.members)
        return t.members, tuple(t.weights or (1.0 / n,) * n), t.normalisation


def top_documents(run: Run, query_ids: Sequence[str], depth: int) -> dict[str, list[str]]:
    """Each query's top ``depth`` documents, best first (ties by doc id, as the rerank stage).

    Example:
        >>> top_documents({"q": {"a": 1.0, "b": 3.0, "c": 1.0}, "r": {}}, ["q", "r", "s"], 2)
        {'q': ['b', 'a'], 'r': [], 's': []}
    """
    return {
        q: [d for d, _ in sorted(run.get(q, {}).items(), key=lambda kv: (-kv[1], kv[0]))[:depth]]
        for q in query_ids
    }


def fuse(
    columns: Sequence[np.ndarray], query_ids: Sequence[str], weights: Sequence[float], normalisation: str
) -> np.ndarray:
    """The weighted sum of members' scores, each normalised per query over the given rows.

    Shapes:
        columns: M arrays of N scores (rows of one query contiguous), query_ids[N] → float64[N]

    Example:
        >>> import numpy as np
        >>> cols = [np.array([1.0, 3.0, 5.0, 5.0]), np.array([0.0, 2.0, 0.0, 1.0])]
        >>> fuse(cols, ["q", "q", "r", "r"], [0.5, 0.5], "zscore").round(4).tolist()
        [-1.0, 1.0, -0.5, 0.5]
    """
    import numpy as np
    import pyarrow as pa

    from retrieval_kd.scores.ensemble import normalised_columns

    table = pa.table({"query_id": list(query_ids), **{f"m{i}": c for i, c in enumerate(columns)}})
    return np.asarray(np.asarray(weights, dtype=np.float64) @ normalised_columns(table, normalisation))


def teacher_rerank_stage(config: TeacherRerankStage, progress: Progress | None = None) -> StageResult:
    """Scores the first stage's top pairs with the teacher (what the store lacks), then re-ranks
    and evaluates unless ``config.out`` holds this re-ranking already.

    Returns:
        ``extra``: the eval stage's (``metrics``, ``cost``, and ``run`` when it ran) and
        ``teacher``, the teacher's fingerprint (an ensemble's: its members', weights and
        normalisation).

    Raises:
        RkdError: a first stage without documents, or a member's store lacking re-ranked pairs (a
            ``scores`` member scored elsewhere).
    """
    from retrieval_kd.data import load_dataset
    from retrieval_kd.eval.trec import read_trec
    from retrieval_kd.evaluation import eval_queries
    from retrieval_kd.scores.ensemble import fingerprint as ensemble_fingerprint

    data = load_dataset(config.dataset)
    queries = eval_queries(data, config.max_queries)
    top = top_documents(read_trec(config.first_stage / "run.trec"), list(queries), config.depth)
    pairs = write_candidates(config, top)
    members, weights, normalisation = config.members()
    stores, notes = score_members(config, members, data, pairs, progress)
    fps = [s.fingerprint for s in stores]
    teacher_fp = fps[0] if len(fps) == 1 else ensemble_fingerprint(fps, weights, normalisation)
    fp = hash_json(
        {
            "teacher": teacher_fp,
            "first_stage": input_fingerprint(config.first_stage, "first-stage evaluation"),
            "depth": config.depth,
            "dataset": config.dataset,
            "metrics": list(config.metrics),
            "max_queries": config.max_queries,
        }
    )
    done = all_agree(lambda: stage_fingerprint(config.out) == fp)
    if not done and not is_main():
        barrier()  # rank 0 re-ranks; the others read its metrics
    if done or not is_main():
        return _read_back(config, fp, teacher_fp)
    columns = [lookup(store, pairs) for store in stores]
    # rows sorted by query so that each query's rows are contiguous for the normalisation
    order = sorted(range(len(pairs)), key=lambda i: (pairs[i].query_id, pairs[i].doc_id))
    fused = fuse([c[order] for c in columns], [pairs[i].query_id for i in order], weights, normalisation)
    run: Run = {q: {} for q in queries}
    for i, score in zip(order, fused, strict=True):
        run[pairs[i].query_id][pairs[i].doc_id] = float(score)
    result = _write(config, data, queries, run, fp, teacher_fp, len(pairs))
    summary = ", ".join(f"{m} {v:.4f}" for m, v in result["metrics"].items())
    return StageResult(
        "rerank", config.out, fp, True, "\n  ".join([f"{config.name}: {summary}", *notes]), result
    )


def write_candidates(config: TeacherRerankStage, top: dict[str, list[str]]) -> list[Pair]:
    """The first stage's top pairs, written (once per first stage and depth) as a candidates
    folder for the score stage; returns them in first-stage order."""
    from retrieval_kd.data.candidates import Candidate, Candidates
    from retrieval_kd.types import Pair

    items = [Candidate(q, (ids[0],), tuple(ids[1:])) for q, ids in top.items() if ids]
    if not items:
        raise RkdError(f"{config.first_stage / 'run.trec'}: no documents for any evaluated query")
    fp = hash_json(
        {
            "first_stage": input_fingerprint(config.first_stage, "first-stage evaluation"),
            "queries": sorted(top),
            "depth": config.depth,
        }
    )
    if is_main() and stage_fingerprint(config.candidates) != fp:
        with building(config.candidates) as tmp:
            manifest = {
                "first_stage": str(config.first_stage),
                "depth": config.depth,
                "note": "re-rank pairs",
            }
            Candidates(items, manifest).save(tmp)
            mark(tmp, "rerank-candidates", fp)
    barrier()
    return [Pair(q, d) for q, ids in top.items() for d in ids]


def score_members(
    config: TeacherRerankStage,
    members: Sequence[TeacherMember],
    data: Dataset,
    pairs: Sequence[Pair],
    progress: Progress | None,
) -> tuple[list[ScoreStore], list[str]]:
    """Each member's store holding the pairs (scored by the score stage where it lacks them) and
    a line per member for people."""
    from dataclasses import replace

    from retrieval_kd.scores.ensemble import open_store
    from retrieval_kd.scores.store import ScoreStore
    from retrieval_kd.stages.ensemble import retriever_stage
    from retrieval_kd.stages.score import ScoreStage, score_stage

    stores, notes = [], []
    for i, member in enumerate(members):
        if member.scores is not None:
            stores.append(open_store(Path(member.scores)))
            continue
        base = ScoreStage(
            config.candidates, config.dataset, member.kind or "-", member.model or "-", config.store
        )
        if member.retriever is not None:
            result = retriever_stage(base, member, data, pairs, progress)
        else:
            settings = {k: getattr(member, k) for k in ("batch_size", "max_length", "dtype", "device")}
            result = score_stage(replace(base, options=member.options, **settings), progress)
        notes.append(result.message(f"teacher {i}" if len(members) > 1 else "teacher"))
        barrier()  # every rank's shard is stored before the scores are read
        stores.append(ScoreStore.load(config.store, result.extra["teacher"]))
    return stores, notes


def lookup(store: ScoreStore, pairs: Sequence[Pair]) -> np.ndarray:
    """The store's scores of ``pairs`` (float64).

    Raises:
        RkdError: the store lacks some pair, or holds judgements rather than pointwise scores.
    """
    import numpy as np

    if store.kind != "pointwise":
        raise RkdError(f"{store.path}: holds {store.kind} judgements; a re-rank needs pointwise scores")
    lacking = store.missing(list(pairs))
    if lacking:
        q, d = lacking[0]
        raise RkdError(
            f"{store.path}: lacks {len(lacking)} of the {len(pairs)} re-ranked pairs (first: query {q!r}, "
            f"doc {d!r}); a 'scores' member must hold the first stage's top pairs"
        )
    return np.asarray(store.lookup(list(pairs)), dtype=np.float64)


def _write(
    config: TeacherRerankStage,
    data: Dataset,
    queries: dict[str, str],
    run: Run,
    fp: str,
    teacher_fp: str,
    pairs: int,
) -> dict[str, Any]:
    """Metrics of ``run`` and the evaluation folder; what the stage's ``extra`` holds."""
    from retrieval_kd.eval.metrics import evaluate
    from retrieval_kd.eval.trec import write_trec
    from retrieval_kd.evaluation import judged_qrels
    from retrieval_kd.io import atomic_write_json

    qrels, coverage = judged_qrels(data, queries)
    metrics = evaluate(qrels, run, config.metrics)
    # what re-ranking cost here is the teacher's scoring, recorded by the score stage in the store
    cost: dict[str, Any] = {"rerank_pairs": pairs, "rerank_depth": config.depth}
    with building(config.out) as tmp:
        write_trec(run, tmp / "run.trec", tag=config.name)
        atomic_write_json(
            tmp / "metrics.json",
            {
                "name": config.name,
                "dataset": data.id,
                "queries": len(run),
                "teacher_fingerprint": teacher_fp,
                "teacher": config.teacher.to_json(),
                "first_stage": str(config.first_stage),
                "depth": config.depth,
                "metrics": metrics,
                "cost": cost,
                "qrels_unmatched": coverage.counts(),
            },
        )
        mark(tmp, "rerank", fp)
    barrier()
    return {"metrics": metrics, "cost": cost, "run": run, "teacher": teacher_fp}


def _read_back(config: TeacherRerankStage, fp: str, teacher_fp: str) -> StageResult:
    from retrieval_kd.stages.evaluate import read_evaluation

    extra = {**read_evaluation(config.out), "teacher": teacher_fp}
    return StageResult("rerank", config.out, fp, False, "", extra)

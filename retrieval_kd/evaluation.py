"""Retrieval + metrics for one system on one dataset, written where a person can find them.

An encoder retrieves through an index of its own kind; a reranker reorders the top of a
first-stage run. Both end as a ranx-ready Run and the same metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retrieval_kd.data.base import Dataset
from retrieval_kd.errors import RkdError
from retrieval_kd.io import atomic_write_json
from retrieval_kd.progress import Progress
from retrieval_kd.protocols import Encoder, Index, Reranker, Student
from retrieval_kd.types import Run


@dataclass(frozen=True)
class EvalResult:
    name: str
    metrics: dict[str, float]
    run: Run
    index: Index | None = None


def eval_queries(dataset: Dataset, max_queries: int | None = None) -> dict[str, str]:
    if max_queries is not None and max_queries < 1:
        raise RkdError(f"max_queries must be at least 1, got {max_queries}")
    return dict(list(dataset.queries.items())[:max_queries]) if max_queries else dict(dataset.queries)


def rerank(
    student: Reranker,
    queries: Mapping[str, str],
    docs: Mapping[str, str],
    first_stage: Run,
    k: int,
    batch_size: int,
) -> Run:
    """Reorders the top ``k`` of ``first_stage`` per query by the reranker's pair scores."""
    run: Run = {}
    for qid, text in queries.items():
        ranked = sorted(first_stage.get(qid, {}).items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        ids = [d for d, _ in ranked]
        scores = np.zeros(0, dtype=np.float32)
        if ids:
            scores = np.asarray(student.score_pairs([text] * len(ids), [docs[d] for d in ids], batch_size))
        run[qid] = {d: float(s) for d, s in zip(ids, scores, strict=True)}
    return run


def evaluate_system(
    name: str,
    student: Student,
    dataset: Dataset,
    metrics: tuple[str, ...],
    k: int,
    out: Path | None,
    index: Index | None = None,
    first_stage: Run | None = None,
    max_queries: int | None = None,
    batch_size: int = 32,
    progress: Progress | None = None,
    index_kind: str | None = None,
    index_options: Mapping[str, Any] | None = None,
) -> EvalResult:
    """Evaluates ``student`` on ``dataset`` and writes ``run.trec`` and ``metrics.json`` to ``out``.

    An encoder searches ``index`` (which must have been built by it) or, without one, a fresh
    index of the corpus (``index_kind``/``index_options``); a reranker reorders ``first_stage``.
    """
    from retrieval_kd.api import Retriever
    from retrieval_kd.eval.metrics import evaluate
    from retrieval_kd.eval.trec import write_trec
    from retrieval_kd.indexing import build_index

    queries = eval_queries(dataset, max_queries)
    if isinstance(student, Encoder) and student.role == "encoder":
        if index is None:
            index = build_index(student, dataset, index_kind, index_options, batch_size, progress=progress)
        run = Retriever(student, index).search(queries, k=k, batch_size=batch_size)
    elif isinstance(student, Reranker):
        if first_stage is None:
            raise RkdError(f"{name}: a reranker needs a first-stage run to rerank (an index or run file)")
        run = rerank(student, queries, dataset.doc_texts(), first_stage, k, batch_size)
    else:
        raise RkdError(f"{name}: student role {student.role!r} is neither 'encoder' nor 'reranker'")
    qrels = {q: dataset.qrels[q] for q in run} if max_queries else dataset.qrels
    scores = evaluate(qrels, run, metrics)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_trec(run, out / "run.trec", tag=name)
        atomic_write_json(
            out / "metrics.json",
            {
                "name": name,
                "dataset": dataset.id,
                "queries": len(run),
                "student_fingerprint": student.fingerprint(),
                "metrics": scores,
            },
        )
    return EvalResult(name, scores, run, index)

"""Retrieval + metrics for one system on one dataset, written where a person can find them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrieval_kd.data.base import Dataset
from retrieval_kd.io import atomic_write_json
from retrieval_kd.progress import Progress
from retrieval_kd.types import Run


@dataclass(frozen=True)
class EvalResult:
    name: str
    metrics: dict[str, float]
    run: Run
    index: Any = None


def retrieve(
    student: Any, index: Any, dataset: Dataset, k: int, max_queries: int | None = None, batch_size: int = 32
) -> Run:
    """Runs every query of ``dataset`` through ``student`` and ``index``."""
    from retrieval_kd.api import Retriever

    queries = dict(list(dataset.queries.items())[:max_queries]) if max_queries else dataset.queries
    return Retriever(student, index).search(queries, k=k, batch_size=batch_size)


def evaluate_system(
    name: str,
    student: Any,
    dataset: Dataset,
    metrics: tuple[str, ...],
    k: int,
    out: Path | None,
    index: Any | None = None,
    factory: str = "Flat",
    max_queries: int | None = None,
    batch_size: int = 32,
    progress: Progress | None = None,
) -> EvalResult:
    """Evaluates ``student`` on ``dataset``: through ``index`` when given (it must have been built
    by this student), else through a fresh index of the corpus. Writes ``run.trec`` and
    ``metrics.json`` under ``out``."""
    from retrieval_kd.eval.metrics import evaluate
    from retrieval_kd.eval.trec import write_trec
    from retrieval_kd.mine import build_dense_index

    if index is None:
        index = build_dense_index(student, dataset, factory, batch_size, progress)
    run = retrieve(student, index, dataset, k, max_queries, batch_size)
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

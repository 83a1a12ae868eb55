"""The eval stage: an index (and the student that built it) + a dataset → run and metrics."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrieval_kd.artifacts import building, mark, stage_fingerprint
from retrieval_kd.distributed import all_agree, barrier, is_main
from retrieval_kd.errors import DataError, RkdError
from retrieval_kd.fingerprint import hash_json
from retrieval_kd.io import read_json_object, show
from retrieval_kd.progress import Progress
from retrieval_kd.stages._common import StageResult, input_fingerprint


@dataclass(frozen=True)
class EvalStage:
    """Settings of one system in ``rkd eval beir`` and of a recipe's ``[eval]``.

    Attributes:
        name: the system's name in tables and run files.
        index: an index folder (``rkd index``); its manifest names the student that built it.
        dataset: the queries and qrels to evaluate on.
        out: the folder to write (``run.trec``, ``metrics.json``).
        model: the query encoder; None: the student recorded in the index (opened with the kind
            and token limit the index recorded).
    """

    name: str
    index: Path
    dataset: str
    out: Path
    metrics: tuple[str, ...] = ("ndcg@10", "recall@100", "mrr@10")
    k: int = 100
    max_queries: int | None = None
    batch_size: int = 32
    model: str | None = None

    def check(self) -> None:
        """Refuses settings that cannot give a right answer, before anything is loaded.

        Raises:
            RkdError: an unknown metric, a cutoff deeper than ``k``, ``k``, ``max_queries`` or
                ``batch_size`` below 1.
        """
        from retrieval_kd.eval.metrics import parse_metric
        from retrieval_kd.evaluation import check_depth

        if not self.metrics:
            raise RkdError(f"{self.name}: no metrics to evaluate")
        check_depth([parse_metric(m) for m in self.metrics], self.k)
        if self.max_queries is not None and self.max_queries < 1:
            raise RkdError(
                f"max_queries must be at least 1 (or unset for every query), got {self.max_queries}"
            )
        if self.batch_size < 1:
            raise RkdError(f"batch_size must be at least 1, got {self.batch_size}")

    def fingerprint(self) -> str:
        return hash_json(
            {
                "index": input_fingerprint(self.index, "index"),
                "dataset": self.dataset,
                "metrics": list(self.metrics),
                "k": self.k,
                "max_queries": self.max_queries,
                "model": self.model,
            }
        )


def evaluate_stage(config: EvalStage, progress: Progress | None = None) -> StageResult:
    """Evaluates unless ``config.out`` holds this evaluation already.

    Returns:
        ``extra["metrics"]`` (metric → value), ``extra["cost"]`` (size, throughput, latency and
        parameters measured when it ran: :mod:`retrieval_kd.eval.cost`; empty for an evaluation
        written before rkd measured them) and, when it ran, ``extra["run"]``.
    """
    from retrieval_kd.data import load_dataset
    from retrieval_kd.evaluation import check_index_corpus, evaluate_system
    from retrieval_kd.indexes import load_index
    from retrieval_kd.stages.index import recorded_encoder
    from retrieval_kd.students import open_student

    config.check()
    fp = config.fingerprint()
    done = all_agree(lambda: stage_fingerprint(config.out) == fp)
    if not done and not is_main():
        barrier()  # rank 0 evaluates; the others read its metrics
    if done or not is_main():
        return StageResult("eval", config.out, fp, False, "", read_evaluation(config.out))
    index = load_index(config.index)
    model = config.model or index.manifest.get("student_path")
    if not model:
        raise RkdError(
            f"{config.index}: the index does not record its student; name the student to encode queries"
        )
    dataset = load_dataset(config.dataset)
    check_index_corpus(index, dataset, config.index)
    # the query encoder is opened as the index recorded it (its kind, token limit and dtype)
    kind, limit, dtype = recorded_encoder(index.manifest)
    student = open_student(model, kind, limit, dtype=dtype)
    result = evaluate_system(
        config.name,
        student,
        dataset,
        config.metrics,
        config.k,
        index=index,
        max_queries=config.max_queries,
        batch_size=config.batch_size,
        progress=progress,
    )
    from retrieval_kd.eval.cost import folder_bytes

    cost = {"index_bytes": folder_bytes(config.index), **result.cost}
    if is_main():
        from retrieval_kd.eval.trec import write_trec
        from retrieval_kd.io import atomic_write_json

        with building(config.out) as tmp:
            write_trec(result.run, tmp / "run.trec", tag=config.name)
            atomic_write_json(
                tmp / "metrics.json",
                {
                    "name": config.name,
                    "dataset": dataset.id,
                    "queries": len(result.run),
                    "student_fingerprint": student.fingerprint(),
                    "index": str(config.index),
                    # what changes the index's scores (BM25's k1, b, analyzer), when its kind says
                    "index_settings": {"kind": index.kind, **dict(index.manifest.get("settings") or {})},
                    "metrics": result.metrics,
                    "cost": cost,
                    "qrels_unmatched": result.coverage.counts(),
                },
            )
            mark(tmp, "eval", fp)
    barrier()
    summary = ", ".join(f"{m} {v:.4f}" for m, v in result.metrics.items())
    return StageResult(
        "eval",
        config.out,
        fp,
        True,
        f"{config.name}: {summary}",
        {"metrics": result.metrics, "cost": cost, "run": result.run},
    )


def read_evaluation(folder: Path) -> dict[str, Any]:
    """What an evaluation stage (eval or either rerank) hands on when its folder is up to date:
    ``metrics`` (:func:`read_metrics`) and ``cost`` (empty when the record has none)."""
    cost = read_json_object(folder / "metrics.json").get("cost")
    return {"metrics": read_metrics(folder / "metrics.json"), "cost": cost if isinstance(cost, dict) else {}}


def read_metrics(path: Path) -> dict[str, float]:
    """The ``metrics`` of an evaluation's ``metrics.json``: metric name → finite number.

    Raises:
        DataError: the file is missing, not JSON, or its ``metrics`` are not such a mapping.
    """
    record = read_json_object(path)
    metrics = record.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise DataError(f"{path}: expected 'metrics' to map metric names to numbers, got {show(metrics)}")
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise DataError(f"{path}: metric {show(name)} is {show(value)}, not a finite number")
    return {name: float(value) for name, value in metrics.items()}

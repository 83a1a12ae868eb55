"""The eval stage: an index (and the student that built it) + a dataset → run and metrics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from retrieval_kd.artifacts import building, mark, stage_fingerprint
from retrieval_kd.distributed import all_agree, barrier, is_main
from retrieval_kd.errors import RkdError
from retrieval_kd.fingerprint import hash_json
from retrieval_kd.io import read_json
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
        ``extra["metrics"]`` (metric → value) and, when it ran, ``extra["run"]``.
    """
    from retrieval_kd.data import load_dataset
    from retrieval_kd.evaluation import evaluate_system
    from retrieval_kd.indexes import load_index
    from retrieval_kd.students import open_student

    fp = config.fingerprint()
    done = all_agree(lambda: stage_fingerprint(config.out) == fp)
    if not done and not is_main():
        barrier()  # rank 0 evaluates; the others read its metrics
    if done or not is_main():
        metrics = read_json(config.out / "metrics.json")["metrics"]
        return StageResult("eval", config.out, fp, False, "", {"metrics": metrics})
    index = load_index(config.index)
    model = config.model or index.manifest.get("student_path")
    if not model:
        raise RkdError(
            f"{config.index}: the index does not record its student; name the student to encode queries"
        )
    dataset = load_dataset(config.dataset)
    # the query encoder is opened as the index recorded it (its kind and token limit)
    kind = index.manifest.get("student_kind")
    limit = index.manifest.get("student_max_seq_length")
    student = open_student(
        model, kind if isinstance(kind, str) else None, limit if isinstance(limit, int) else None
    )
    result = evaluate_system(
        config.name,
        student,
        dataset,
        config.metrics,
        config.k,
        None,
        index=index,
        max_queries=config.max_queries,
        batch_size=config.batch_size,
        progress=progress,
    )
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
                    "metrics": result.metrics,
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
        {"metrics": result.metrics, "run": result.run},
    )

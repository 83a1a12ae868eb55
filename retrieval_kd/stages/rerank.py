"""The rerank stage: a reranker student reorders the top of a first-stage evaluation's run.

The eval stage's counterpart for the ``reranker`` role: its input is an evaluation folder (the
first stage's ``run.trec``, whose fingerprint it records) instead of an index, and it writes the
same ``run.trec`` and ``metrics.json`` (with cost), so tables, ``rkd eval compare`` and
``rkd run``'s report read both alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from retrieval_kd.artifacts import building, mark, stage_fingerprint
from retrieval_kd.distributed import barrier, is_main
from retrieval_kd.errors import RkdError
from retrieval_kd.fingerprint import hash_json
from retrieval_kd.stages._common import StageResult, input_fingerprint, model_hash


@dataclass(frozen=True)
class RerankStage:
    """Settings of ``rkd eval beir --rerank`` and of a recipe whose student is a reranker.

    Attributes:
        name: the row's name.
        model: the reranker (a saved cross-encoder student or a CrossEncoder folder).
        first_stage: the evaluation folder whose ``run.trec`` is reranked.
        dataset: queries, documents and qrels.
        out: the folder to write.
        depth: documents per query reranked (the top of the first stage).
    """

    name: str
    model: str
    first_stage: Path
    dataset: str
    out: Path
    metrics: tuple[str, ...] = ("ndcg@10", "recall@100", "mrr@10")
    depth: int = 100
    max_queries: int | None = None
    batch_size: int = 32

    def fingerprint(self) -> str:
        return hash_json(
            {
                "model": model_hash(self.model),
                "first_stage": input_fingerprint(self.first_stage, "first-stage evaluation"),
                "dataset": self.dataset,
                "metrics": list(self.metrics),
                "depth": self.depth,
                "max_queries": self.max_queries,
            }
        )


def rerank_stage(config: RerankStage) -> StageResult:
    """Reranks unless ``config.out`` holds this reranking already; ``extra`` as the eval stage's."""
    from retrieval_kd.data import load_dataset
    from retrieval_kd.eval.trec import read_trec, write_trec
    from retrieval_kd.evaluation import evaluate_system
    from retrieval_kd.io import atomic_write_json
    from retrieval_kd.stages.evaluate import read_evaluation
    from retrieval_kd.students import open_student

    fp = config.fingerprint()
    if stage_fingerprint(config.out) == fp:
        return StageResult("rerank", config.out, fp, False, "", read_evaluation(config.out))
    student = open_student(
        config.model, kind=None if (Path(config.model) / "rkd.json").is_file() else "cross-encoder"
    )
    if student.role != "reranker":
        raise RkdError(f"{config.model}: a {student.kind} student is an {student.role}, not a reranker")
    data = load_dataset(config.dataset)
    first = read_trec(config.first_stage / "run.trec")
    result = evaluate_system(
        config.name, student, data, config.metrics, config.depth, first_stage=first,
        max_queries=config.max_queries, batch_size=config.batch_size,
    )  # fmt: skip
    if is_main():
        with building(config.out) as tmp:
            write_trec(result.run, tmp / "run.trec", tag="rerank")
            atomic_write_json(
                tmp / "metrics.json",
                {
                    "name": config.name,
                    "dataset": data.id,
                    "queries": len(result.run),
                    "student_fingerprint": student.fingerprint(),
                    "reranker": str(config.model),
                    "first_stage": str(config.first_stage),
                    "depth": config.depth,
                    "metrics": result.metrics,
                    "cost": result.cost,
                },
            )
            mark(tmp, "rerank", fp)
    barrier()
    summary = ", ".join(f"{m} {v:.4f}" for m, v in result.metrics.items())
    extra = {"metrics": result.metrics, "cost": dict(result.cost), "run": result.run}
    return StageResult("rerank", config.out, fp, True, f"{config.name}: {summary}", extra)

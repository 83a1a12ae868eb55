"""``rkd run``: a recipe's stages chained by the fingerprints they return.

Each stage is a library function (:mod:`retrieval_kd.stages`); this module only builds their
configs from the recipe's sections and passes each stage's output (path and fingerprint) to the
next. A stage whose output already matches its fingerprint says "up to date" and computes
nothing, so changing one setting reruns exactly the stages downstream of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from retrieval_kd.config import RecipeConfig
from retrieval_kd.data.carve import carve_spec
from retrieval_kd.determinism import host, set_threads
from retrieval_kd.distributed import barrier, is_main
from retrieval_kd.errors import ConfigError
from retrieval_kd.io import atomic_write_json
from retrieval_kd.progress import Progress
from retrieval_kd.stages import (
    EvalStage,
    IndexStage,
    InitStage,
    MineStage,
    ScoreStage,
    StageResult,
    TrainStage,
    evaluate_stage,
    index_stage,
    init_stage,
    mine_stage,
    score_stage,
    train_stage,
)
from retrieval_kd.stages.rerank import RerankStage, rerank_stage
from retrieval_kd.systems import Comparison, System, compare_systems, evaluate_systems

log = logging.getLogger(__name__)

SYSTEMS = ("teacher", "student_before", "student_after")


def retriever_model(config: RecipeConfig) -> str:
    """The first-stage retriever that mines candidates (and is the "teacher" row)."""
    from retrieval_kd.students import needs_model

    if config.mine.model:
        return config.mine.model
    if not needs_model(config.mine.kind):
        return config.mine.kind  # a retriever without weights: [mine] kind = "bm25"
    if config.teacher.kind == "bi-encoder":
        return config.teacher.model
    raise ConfigError(f"{config.source}: [mine].model is required when the teacher is not a bi-encoder")


def first_stage_row(config: RecipeConfig) -> str:
    """The name of the recipe's first-stage row: ``teacher`` when the retriever that mined is the
    bi-encoder teacher itself, else ``first_stage`` (a cross-encoder or an ensemble teacher
    re-ranks, it does not retrieve)."""
    try:
        retriever = retriever_model(config)
    except ConfigError:
        return "first_stage"
    return (
        "teacher"
        if config.teacher.kind == "bi-encoder" and retriever == config.teacher.model
        else "first_stage"
    )


def run_recipe(
    config: RecipeConfig,
    out: Path,
    progress: Progress | None = None,
    say: Callable[[str], None] = log.info,
    eval_on: str = "test",
) -> dict[str, Any]:
    """All stages in order, then ``report.json``: the three systems' metrics and the
    student/teacher ratio of each metric.

    Args:
        eval_on: ``"test"``: evaluate on ``[data].eval``; ``"dev"``: on the dev split carved from
            ``[data].train`` by ``[data].dev`` (the split to tune on), into ``eval-dev/`` and
            ``report-dev.json``. Training never sees the dev queries either way.

    Returns:
        The report, with ``"stages"``: each stage's name → whether it ran.
    """
    from retrieval_kd.students import STUDENTS, needs_model

    c = config
    if not needs_model(c.student.kind):  # refused before mining and scoring spend anything
        trainable = [k for k in STUDENTS if needs_model(k)]
        raise ConfigError(
            f"{c.source}: [student].kind = {c.student.kind!r} has no weights to train; "
            f"choose from {trainable}"
        )
    set_threads()
    train_data = carve_spec(c.data.train, "train", c.data.dev)
    if eval_on == "test":
        eval_data, eval_dir, report_name = c.data.eval, out / "eval", "report.json"
    elif eval_on == "dev":
        if not c.data.dev:
            raise ConfigError(
                f"{c.source}: evaluating on dev needs [data].dev, "
                "the fraction of train queries to hold out (e.g. 0.2)"
            )
        eval_data, eval_dir, report_name = (
            carve_spec(c.data.train, "dev", c.data.dev),
            out / "eval-dev",
            "report-dev.json",
        )
    else:
        raise ConfigError(f"evaluate on {eval_on!r}? choose from ['dev', 'test']")
    out.mkdir(parents=True, exist_ok=True)
    ran: dict[str, bool] = {}

    def step(key: str, result: StageResult) -> StageResult:
        ran[key] = result.ran
        if is_main() or key == "score":  # every rank scores its own shard; rank 0 does the rest
            say(result.message(key))
        return result

    retriever = retriever_model(c)
    mined = step(
        "mine",
        mine_stage(
            MineStage(
                dataset=train_data,
                model=retriever,
                out=out / "mine",
                kind=c.mine.kind,
                negatives=c.mine.negatives,
                batch_size=c.mine.batch_size,
                max_seq_length=c.mine.max_seq_length,
                index=c.mine.index,
                reuse=tuple(Path(p) for p in c.mine.reuse),
                absolute_margin=c.mine.absolute_margin,
                relative_margin=c.mine.relative_margin,
            ),
            progress,
        ),
    )
    store = Path(c.teacher.store) if c.teacher.store else out / "scores"
    scored = step(
        "score",
        score_stage(
            ScoreStage(
                candidates=mined.path,
                dataset=train_data,
                teacher=c.teacher.kind,
                model=c.teacher.model,
                store=store,
                batch_size=c.teacher.batch_size,
                max_length=c.teacher.max_length,
                dtype=c.teacher.dtype,
                device=c.teacher.device,
                options=c.teacher.options,
                ensemble=c.teacher if c.teacher.kind == "ensemble" else None,
            ),
            progress,
        ),
    )
    barrier()  # every rank's shard is stored before anyone trains on the store
    init = step("init", init_stage(InitStage(c.student, out / "student-init")))
    trained = step(
        "train",
        train_stage(
            TrainStage(
                candidates=mined.path,
                store=store,
                teacher=scored.extra["teacher"],
                dataset=train_data,
                student=c.student,
                train=c.train,
                out=out / "student",
                init=init.path,
                provenance={"recipe": c.source},
            ),
            progress,
        ),
    )
    models = {"teacher": retriever, "student_before": str(init.path), "student_after": str(trained.path)}
    comparison = Comparison()
    # a reranker student (a cross-encoder) reorders the first stage's run instead of indexing
    reranks = getattr(STUDENTS.get(c.student.kind), "role", "encoder") == "reranker"
    for system in SYSTEMS:
        first_stage = system == "teacher"
        if reranks and not first_stage:
            reranked = step(
                f"eval {system}",
                rerank_stage(
                    RerankStage(
                        name=system,
                        model=models[system],
                        first_stage=eval_dir / "teacher",
                        dataset=eval_data,
                        out=eval_dir / system,
                        metrics=c.eval.metrics,
                        depth=c.eval.k,
                        max_queries=c.eval.max_queries,
                        batch_size=c.index.batch_size,
                    )
                ),
            )
            comparison.add(system, reranked.extra, eval_dir / system)
            continue
        indexed = step(
            f"index {system}",
            index_stage(
                IndexStage(
                    model=models[system],
                    dataset=eval_data,
                    out=out / "index" / system,
                    # the first-stage retriever's index is configured by [mine], the students' by [index]
                    kind=None if first_stage else c.index.kind,
                    options=c.mine.index if first_stage else c.index.options,
                    batch_size=c.index.batch_size,
                    student_kind=c.mine.kind if first_stage else None,
                    max_seq_length=c.mine.max_seq_length if first_stage else None,
                    reuse=(out / "mine" / "index",) if first_stage else (),
                    dtype="float32" if first_stage else c.index.dtype,
                ),
                progress,
            ),
        )
        evaluated = step(
            f"eval {system}",
            evaluate_stage(
                EvalStage(
                    name=system,
                    index=indexed.path,
                    dataset=eval_data,
                    out=eval_dir / system,
                    metrics=c.eval.metrics,
                    k=c.eval.k,
                    max_queries=c.eval.max_queries,
                    batch_size=c.index.batch_size,
                ),
                progress,
            ),
        )
        comparison.add(system, evaluated.extra, eval_dir / system)
    teacher = comparison.rows["teacher"]
    is_teacher = first_stage_row(c) == "teacher"
    if not is_teacher:
        comparison.rename("teacher", "first_stage")
    evaluate_rows(
        c,
        comparison,
        eval_data,
        out,
        eval_dir,
        store=store,
        tuned=scored.extra.get("weights"),
        progress=progress,
        say=say if is_main() else (lambda _line: None),
    )
    significance, files = compare_systems(
        comparison,
        eval_data,
        c.eval.metrics,
        out,
        stat_test=c.eval.stat_test,
        correction=c.eval.correction,
        stem=report_name.removesuffix(".json").replace("report", "compare"),
    )
    rows = comparison.rows
    report = {
        "recipe": c.name,
        "config": c.source,
        "eval_dataset": eval_data,
        "train_dataset": train_data,
        "metrics": rows,
        "student_over_teacher": {
            m: (rows["student_after"][m] / teacher[m] if teacher[m] else None) for m in teacher
        }
        if is_teacher
        else {},
        "cost": comparison.costs,
        "significance": {
            "test": c.eval.stat_test,
            "correction": c.eval.correction,
            "better_than": significance.better_than if significance is not None else {},
        },
        "comparison": {key: str(path) for key, path in files.items()},
        "teacher_fingerprint": scored.extra["teacher"],
        "fingerprints": {
            "mine": mined.fingerprint,
            "score": scored.fingerprint,
            "train": trained.fingerprint,
        },
        "host": host(),
        "stages": ran,
    }
    if is_main():
        atomic_write_json(out / report_name, {k: v for k, v in report.items() if k != "stages"})
    return report


def evaluate_rows(
    c: RecipeConfig,
    comparison: Comparison,
    eval_data: str,
    out: Path,
    eval_dir: Path,
    *,
    store: Path,
    tuned: list[float] | None,
    progress: Progress | None,
    say: Callable[[str], None],
) -> None:
    """The ``[[eval.systems]]`` rows, in order, into ``comparison``: a model or index row through
    :func:`~retrieval_kd.systems.evaluate_systems`, a re-rank row through the teacher-rerank stage
    (its teacher's scores in ``store``; ``tuned``: the weights the score stage tuned)."""
    from retrieval_kd.stages.teacher_rerank import TeacherRerankStage, resolve_teacher, teacher_rerank_stage

    for s in c.eval.systems:
        if s.rerank is None and s.teacher is None:
            system = System(
                s.name, s.model, Path(s.index) if s.index else None, s.kind, s.index_kind, s.index_options
            )
            evaluate_systems(
                [system],
                eval_data,
                out,
                metrics=c.eval.metrics,
                k=c.eval.k,
                max_queries=c.eval.max_queries,
                batch_size=c.index.batch_size,
                progress=progress,
                say=say,
                into=comparison,
                eval_root=eval_dir,
            )
            continue
        teacher = resolve_teacher(s.rerank, s.teacher, c.teacher, tuned)
        first = s.first_stage or next(iter(comparison.rows))
        folder = "teacher" if first == "first_stage" else first  # the first-stage row's folder keeps its name
        depth = s.depth or c.eval.k
        inline_store = s.teacher.store if s.teacher is not None else None
        result = teacher_rerank_stage(
            TeacherRerankStage(
                name=s.name,
                teacher=teacher,
                first_stage=eval_dir / folder,
                dataset=eval_data,
                out=eval_dir / s.name,
                store=Path(inline_store) if inline_store else store,
                # one candidates folder per first stage and depth, shared by the rows re-ranking it
                candidates=out / "rerank" / eval_dir.name / f"{first}-top{depth}",
                metrics=c.eval.metrics,
                depth=depth,
                max_queries=c.eval.max_queries,
            ),
            progress,
        )
        say(result.message(f"rerank {s.name}"))
        comparison.add(s.name, result.extra, eval_dir / s.name)

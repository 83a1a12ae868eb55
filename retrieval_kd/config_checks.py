"""The checks a recipe gets once every section has parsed: registry names, metric names, and
the agreement between sections (``[mine].negatives >= [train].negatives``, ``[[eval.systems]]``
names, an ensemble teacher's members). Imports the registries only (never torch)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrieval_kd.errors import ConfigError, RkdError

if TYPE_CHECKING:
    from retrieval_kd.config import RecipeConfig


def validate(config: RecipeConfig, path: Path | str) -> None:
    """Checks what one section cannot check alone: registry names, metric names and the
    agreement between sections. Imports the registries only (never torch).

    Raises:
        ConfigError: ``{path}: [section].field ...`` with the valid choices.
    """
    from retrieval_kd.eval.metrics import parse_metric
    from retrieval_kd.indexes import INDEXES
    from retrieval_kd.losses import LOSSES
    from retrieval_kd.students import STUDENTS
    from retrieval_kd.teachers import TEACHERS

    checks: list[tuple[Any, str | None, str]] = [
        (TEACHERS, config.teacher.kind, "[teacher].kind"),
        (STUDENTS, config.mine.kind, "[mine].kind"),
        (STUDENTS, config.student.kind, "[student].kind"),
        (LOSSES, config.train.loss, "[train].loss"),
        (INDEXES, config.index.kind, "[index].kind"),
    ]
    for registry, value, fieldname in checks:
        if value is not None and value not in registry:
            raise ConfigError(f"{path}: {fieldname} = {value!r} is unknown; choose from {registry.names()}")
    _check_systems(config, path)
    from retrieval_kd.stages.ensemble import check_ensemble

    check_ensemble(config.teacher, f"{path}: [teacher]")
    for metric in config.eval.metrics:
        try:
            parse_metric(metric)
        except Exception as e:
            raise ConfigError(f"{path}: [eval].metrics: {e}") from None
    from retrieval_kd.evaluation import check_depth

    try:  # refused before an hour of mining and training, not at the eval stage
        check_depth(config.eval.metrics, config.eval.k)
    except RkdError as e:
        raise ConfigError(f"{path}: [eval]: {e}") from None
    train = config.train
    if train.negative_pool is not None and train.negative_pool < train.negatives:
        raise ConfigError(
            f"{path}: [train].negative_pool: expected an integer >= [train].negatives "
            f"({train.negatives}), got {train.negative_pool}"
        )
    mine = config.mine
    if (mine.absolute_margin is not None or mine.relative_margin is not None) and mine.kind != "dense":
        raise ConfigError(
            f"{path}: [mine].absolute_margin/relative_margin: false-negative filtering scores with the "
            f"mining model and needs kind = 'dense', got {mine.kind!r}"
        )
    if config.mine.negatives < train.negatives:
        raise ConfigError(
            f"{path}: [mine].negatives: expected an integer >= [train].negatives "
            f"({train.negatives}), got {config.mine.negatives}"
        )


def _check_systems(config: RecipeConfig, path: Path | str) -> None:
    """``[[eval.systems]]``: unique names apart from the recipe's own rows, one source each,
    known kinds; a re-rank row's teacher, first stage (a row before it) and depth."""
    from retrieval_kd.indexes import INDEXES
    from retrieval_kd.pipeline import SYSTEMS, first_stage_row
    from retrieval_kd.students import STUDENTS

    seen = set(SYSTEMS) | {"first_stage"}
    rows = [first_stage_row(config), *SYSTEMS[1:]]  # the recipe's rows, as its table names them
    for i, system in enumerate(config.eval.systems):
        where = f"{path}: [eval].systems[{i}]"
        if system.name in seen:
            raise ConfigError(f"{where}.name: {system.name!r} is taken; the names in use are {sorted(seen)}")
        seen.add(system.name)
        given = [f for f in ("model", "index", "rerank", "teacher") if getattr(system, f) is not None]
        reranks = [f for f in given if f in ("rerank", "teacher")]
        if reranks and len(given) > 1:
            other = [f for f in given if f != reranks[0]]
            raise ConfigError(
                f"{where}.{reranks[0]}: a re-rank row re-ranks an earlier row's run with one teacher; "
                f"unset {other}"
            )
        if len(given) != 1:
            raise ConfigError(
                f"{where}: give exactly one of 'model' (to index) or 'index' (a folder), or a "
                "teacher re-ranking an earlier row's run ('rerank' or 'teacher')"
            )
        if reranks:
            _check_rerank_row(config, i, rows, where)
        else:
            stray = [f for f in ("first_stage", "depth") if getattr(system, f) is not None]
            if stray:
                raise ConfigError(f"{where}.{stray[0]}: applies to re-rank rows ('rerank' or 'teacher') only")
        rows.append(system.name)
        for registry, value, field in (
            (STUDENTS, system.kind, "kind"),
            (INDEXES, system.index_kind, "index_kind"),
        ):
            if value is not None and value not in registry:
                raise ConfigError(f"{where}.{field} = {value!r} is unknown; choose from {registry.names()}")


def _check_rerank_row(config: RecipeConfig, i: int, rows: list[str], where: str) -> None:
    """A re-rank row: a teacher that exists, a first stage listed before it, a depth the metrics
    and the first stage's retrieval depth allow."""
    from retrieval_kd.evaluation import check_depth
    from retrieval_kd.stages.ensemble import check_ensemble
    from retrieval_kd.teachers import TEACHERS

    system = config.eval.systems[i]
    if system.rerank is not None:
        choices = ["teacher", *(f"teacher.members[{m}]" for m in range(len(config.teacher.members)))]
        if system.rerank not in choices:
            raise ConfigError(f"{where}.rerank = {system.rerank!r} names no teacher; choose from {choices}")
    if system.teacher is not None:
        if system.teacher.kind not in TEACHERS:
            raise ConfigError(
                f"{where}.teacher.kind = {system.teacher.kind!r} is unknown; choose from {TEACHERS.names()}"
            )
        check_ensemble(system.teacher, f"{where}.teacher")
        if system.teacher.tune:
            raise ConfigError(
                f"{where}.teacher.tune: weights are tuned on the training split, which only the recipe's "
                "[teacher] scores; give fixed 'weights', or rerank = 'teacher'"
            )
    first = system.first_stage or rows[0]
    if first not in rows:
        raise ConfigError(
            f"{where}.first_stage = {first!r} is not a row listed before it; choose from {rows}"
        )
    depth = system.depth or config.eval.k
    if depth > config.eval.k:
        raise ConfigError(
            f"{where}.depth: expected at most [eval].k = {config.eval.k} (the documents each row "
            f"retrieves), got {depth}"
        )
    try:
        check_depth(config.eval.metrics, depth)
    except RkdError as e:
        raise ConfigError(f"{where}.depth: {e}") from None

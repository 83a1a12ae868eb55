"""The score stage of an ensemble teacher (``[teacher] kind = "ensemble"``).

Each member's scores go into the store first, by the stage that fits it: a teacher member through
the ordinary score stage (resumable, sharded, "up to date" when its store holds every pair), a
retriever member by searching its index over the whole corpus, a ``scores`` member as it is.
Then :func:`retrieval_kd.scores.ensemble.combine` (fixed weights) or
:func:`~retrieval_kd.scores.ensemble.tune` (weights tuned on the training split's qrels) fuses
them, and the fused scores are written as a store of the ensemble's fingerprint (members'
fingerprints, normalisation and weights), which the train stage reads like any teacher's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrieval_kd.distributed import barrier, is_main
from retrieval_kd.errors import ConfigError, RkdError
from retrieval_kd.fingerprint import hash_json
from retrieval_kd.progress import Progress
from retrieval_kd.stages._common import StageResult, input_fingerprint

if TYPE_CHECKING:
    from retrieval_kd.config import TeacherConfig, TeacherMember
    from retrieval_kd.data.base import Dataset
    from retrieval_kd.stages.score import ScoreStage
    from retrieval_kd.types import Pair

ENSEMBLE_ONLY = ("members", "normalisation", "weights", "tune", "tune_step")


class EnsembleTeacher:
    """The ``ensemble`` name in TEACHERS: an ensemble scores no pair itself, so building one
    directly (``rkd score-teacher --teacher ensemble``) says where ensembles are made."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RkdError(
            "an ensemble teacher is built from its members' stores: `rkd scores combine STORE...`, "
            'or a recipe\'s [teacher] kind = "ensemble" with [[teacher.members]]'
        )


def check_ensemble(teacher: TeacherConfig, where: str) -> None:
    """Checks a ``[teacher]`` section's ensemble settings (``where`` starts each message).

    Raises:
        ConfigError: ensemble fields on another kind; fewer than two members; weights that do not
            fit; a member that is not exactly one of kind / retriever / scores, or names an
            unknown kind.
    """
    from retrieval_kd.students import STUDENTS, needs_model
    from retrieval_kd.teachers import TEACHERS

    if teacher.kind != "ensemble":
        stray = sorted(set(ENSEMBLE_ONLY) & teacher.model_fields_set)
        if stray:
            raise ConfigError(f"{where}: {stray} apply to kind = 'ensemble' only, not {teacher.kind!r}")
        return
    n = len(teacher.members)
    if n < 2:
        raise ConfigError(f"{where}.members: an ensemble needs at least 2 [[teacher.members]], got {n}")
    if teacher.weights is not None:
        if teacher.tune:
            raise ConfigError(f"{where}: give weights or tune = true, not both")
        if len(teacher.weights) != n or not any(teacher.weights):
            raise ConfigError(
                f"{where}.weights: expected {n} weights >= 0 (one per member, not all 0), "
                f"got {list(teacher.weights)}"
            )
    for i, member in enumerate(teacher.members):
        at = f"{where}.members[{i}]"
        given = [f for f in ("kind", "retriever", "scores") if getattr(member, f) is not None]
        if len(given) != 1:
            raise ConfigError(
                f"{at}: give exactly one of 'kind' (a teacher), 'retriever' or 'scores', got {given}"
            )
        extra = sorted(member.model_fields_set - {"scores"})
        if member.scores is not None and extra:
            raise ConfigError(f"{at}: a 'scores' member is a store as it is; unset {extra}")
        if member.kind is not None:
            if member.kind not in TEACHERS or member.kind == "ensemble":
                choices = [k for k in TEACHERS.names() if k != "ensemble"]
                raise ConfigError(f"{at}.kind = {member.kind!r} is unknown; choose from {choices}")
            if member.model is None:
                raise ConfigError(f"{at}: a {member.kind} member needs a 'model'")
        if member.retriever is not None:
            if member.retriever not in STUDENTS:
                raise ConfigError(
                    f"{at}.retriever = {member.retriever!r} is unknown; choose from {STUDENTS.names()}"
                )
            if member.model is None and needs_model(member.retriever):
                raise ConfigError(f"{at}: a {member.retriever} retriever needs a 'model'")


def ensemble_score_stage(config: ScoreStage, progress: Progress | None = None) -> StageResult:
    """Every member's store, then the ensemble over them written as a store.

    Returns:
        ``extra["teacher"]``: the ensemble's fingerprint (its store folder's name);
        ``extra["members"]``: each member's; ``extra["weights"]``: the weights used.

    Raises:
        RkdError: a member's store lacks candidate pairs (a ``scores`` member mined elsewhere), or
            tuning found no judged query.
    """
    from retrieval_kd.data import load_dataset
    from retrieval_kd.data.candidates import Candidates
    from retrieval_kd.scores.ensemble import combine, open_store, tune
    from retrieval_kd.scores.store import ScoreStore
    from retrieval_kd.stages.score import score_stage

    section = config.ensemble
    if section is None:  # pragma: no cover - score_stage only sends ensembles here
        raise RkdError("ensemble_score_stage needs config.ensemble")
    dataset = load_dataset(config.dataset)  # read once for the retriever members and the check below
    pairs = Candidates.load(config.candidates, corpus=dataset.docs).pairs()
    ran, fps, notes = False, [], []
    for i, member in enumerate(section.members):
        if member.scores is not None:
            fps.append(member.scores)
            continue
        if member.retriever is not None:
            result = retriever_stage(config, member, dataset, pairs, progress)
        else:
            assert member.kind is not None and member.model is not None
            settings = {k: getattr(member, k) for k in ("batch_size", "max_length", "dtype", "device")}
            sub = replace(config, teacher=member.kind, model=member.model, options=member.options, **settings)
            result = score_stage(replace(sub, ensemble=None), progress)
        ran |= result.ran
        fps.append(result.extra["teacher"])
        notes.append(result.message(f"member {i}"))
    barrier()  # every rank's shard of every member is stored before the ensemble reads them
    stores = [
        open_store(Path(m.scores)) if m.scores is not None else ScoreStore.load(config.store, fp)
        for m, fp in zip(section.members, fps, strict=True)
    ]
    if section.tune:
        view = tune(stores, config.dataset, section.normalisation, step=section.tune_step)
    else:
        view = combine(stores, section.weights, section.normalisation)
    lacking = view.missing(pairs)
    if lacking:
        q, d = lacking[0]
        raise RkdError(
            f"ensemble {view.fingerprint}: {len(lacking)} candidate pairs lack a score in some member "
            f"(first: query {q!r}, doc {d!r}; pairs each member lacks: {view.dropped}); "
            "every member must score the candidates' pairs"
        )
    fp = view.fingerprint
    if is_main():
        ran |= fp not in ScoreStore.teachers(config.store)
        view.materialise(config.store)
    barrier()
    weights = ", ".join(f"{w:g}" for w in view.weights)
    how = f"tuned on {config.dataset}" if section.tune else "fixed"
    summary = f"{fp}: {section.normalisation}, weights {weights} ({how}) → {config.store / fp}"
    out_fp = hash_json({"candidates": input_fingerprint(config.candidates, "candidates"), "teacher": fp})
    extra = {"teacher": fp, "members": [s.fingerprint for s in stores], "weights": view.weights}
    return StageResult("score", config.store, out_fp, ran, "\n  ".join([summary, *notes]), extra)


def retriever_stage(
    config: ScoreStage,
    member: TeacherMember,
    dataset: Dataset,
    pairs: Sequence[Pair],
    progress: Progress | None = None,
) -> StageResult:
    """A retriever's scores for the candidate pairs: its index over the whole corpus searched to
    the corpus's depth, so every document it scores has its score; a document it does not return
    scores 0 (for BM25, a document that shares no term with the query: its BM25 score is 0).

    Its fingerprint covers the retriever (weights and encoding settings), its index options and
    the corpus (BM25's statistics come from it). Rank 0 scores, the other ranks wait.
    """
    import numpy as np

    from retrieval_kd.indexing import build_index, corpus_fingerprint
    from retrieval_kd.protocols import Encoder
    from retrieval_kd.scores.store import ScoreStore
    from retrieval_kd.students import open_student

    assert member.retriever is not None
    student = open_student(member.model or member.retriever, member.retriever, member.max_length)
    if not isinstance(student, Encoder) or student.role != "encoder":
        raise RkdError(
            f"retriever {member.retriever!r} is a reranker; an ensemble's retriever member must be an encoder"
        )
    spec = {
        "kind": "retriever",
        "retriever": member.retriever,
        "model": member.model,
        "index": member.options,
    }
    fp = "retriever-" + hash_json(
        {**spec, "student": student.fingerprint(), "corpus": corpus_fingerprint(dataset)}
    )
    done = fp in ScoreStore.teachers(config.store) and not ScoreStore.load(config.store, fp).missing(pairs)
    if not done and is_main():
        index = build_index(student, dataset, None, member.options, member.batch_size, progress=progress)
        qids = sorted({p.query_id for p in pairs})
        reps = student.encode_queries([dataset.queries[q] for q in qids], batch_size=member.batch_size)
        run = index.search(qids, reps, len(dataset.docs))
        with ScoreStore.open(config.store, fp, spec, writer="retriever") as store:
            todo = store.missing(pairs)
            store.add(todo, np.array([run.get(q, {}).get(d, 0.0) for q, d in todo], dtype=np.float32))
    barrier()
    summary = f"retriever {member.retriever}: {len(pairs)} pairs → {config.store / fp}"
    return StageResult("score", config.store, fp, not done, summary, {"teacher": fp})

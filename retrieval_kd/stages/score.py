"""The score stage: candidates + a teacher → its scores in the score store, resumably, sharded."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrieval_kd.distributed import parse_shard, writer_name
from retrieval_kd.errors import RkdError
from retrieval_kd.fingerprint import hash_json
from retrieval_kd.io import atomic_write_json, read_json
from retrieval_kd.progress import Progress, ensure
from retrieval_kd.stages._common import StageResult, input_fingerprint, model_hash
from retrieval_kd.timing import Phases, timed_preprocess
from retrieval_kd.types import Pair

if TYPE_CHECKING:
    from retrieval_kd.config import TeacherConfig

log = logging.getLogger(__name__)

CPU_PART_SIZE = 512  # pairs per stored part by default: seconds of a CPU's work
GPU_PART_SIZE = 4096  # under half a second of an H100's


@dataclass(frozen=True)
class ScoreStage:
    """Settings of ``rkd score-teacher`` and of a recipe's ``[teacher]``.

    Attributes:
        candidates: candidates folder (``rkd mine``) or ``.jsonl`` file.
        dataset: where the query and document texts come from.
        teacher: teacher kind (``TEACHERS`` name).
        model: the teacher's hub id or folder.
        store: score store root; the scores land in ``store/<teacher fingerprint>/``.
        shard: ``"I/N"`` to score one shard; None: torchrun's RANK/WORLD_SIZE (else everything).
        part_size: pairs per stored part: at most this many are lost on a crash (None: 512 on
            a CPU, 4,096 on a GPU, where 512-pair parts ran at 0.73x the speed of 4,096-pair parts
            on an H100; BENCHMARKS.md, "Teacher scoring on a GPU").
    """

    candidates: Path
    dataset: str
    teacher: str
    model: str
    store: Path
    batch_size: int = 64
    max_length: int | None = None
    dtype: str = "float32"
    device: str = "auto"
    options: Mapping[str, Any] = field(default_factory=dict)
    part_size: int | None = None
    shard: str | None = None
    ensemble: TeacherConfig | None = None  # teacher "ensemble": its [teacher] section (stages/ensemble.py)

    def fingerprint(self) -> str:
        """Everything that decides which pairs get which scores (not batch sizes or devices)."""
        return hash_json(
            {
                "candidates": input_fingerprint(self.candidates, "candidates"),
                "dataset": self.dataset,
                "teacher": self.teacher,
                "model": model_hash(self.model),
                "max_length": self.max_length,
                "dtype": self.dtype,
                "options": dict(self.options),
            }
        )


def score_stage(config: ScoreStage, progress: Progress | None = None) -> StageResult:
    """Scores this shard's candidate pairs that the teacher's store lacks.

    Up to date when an earlier run of this config recorded its teacher fingerprint and the store
    still holds every pair of this shard (a part set aside as damaged makes it run again).

    Returns:
        ``extra["teacher"]``: the teacher fingerprint (the store folder's name), which the train
        stage takes; the result's fingerprint covers the candidates and the teacher.
    """
    from retrieval_kd.data import load_dataset
    from retrieval_kd.data.candidates import Candidates
    from retrieval_kd.scores.judging import ListTeacher, PairwiseTeacher
    from retrieval_kd.scores.scoring import score_pairs, shard_pairs
    from retrieval_kd.scores.store import ScoreStore
    from retrieval_kd.stages.judge import judge_candidates
    from retrieval_kd.teachers import TEACHERS, build_teacher

    TEACHERS.check(config.teacher)
    if config.teacher == "ensemble":
        from retrieval_kd.stages.ensemble import ensemble_score_stage

        return ensemble_score_stage(config, progress)
    shard = parse_shard(config.shard)
    fp = config.fingerprint()
    stamp = config.store / ".stages" / f"{fp}.json"
    dataset = load_dataset(config.dataset)
    cands = Candidates.load(config.candidates, corpus=dataset.docs)
    mine = shard_pairs(cands.pairs(), shard)
    if stamp.is_file():
        teacher_fp = _read_stamp(stamp)
        if teacher_fp in ScoreStore.teachers(config.store) and _complete(config.store, teacher_fp, mine):
            out_fp = hash_json(
                {"candidates": input_fingerprint(config.candidates, "candidates"), "teacher": teacher_fp}
            )
            return StageResult("score", config.store, out_fp, False, "", {"teacher": teacher_fp})
    teacher = build_teacher(
        config.teacher,
        config.model,
        max_length=config.max_length,
        dtype=config.dtype,
        batch_size=config.batch_size,
        device=config.device,
        **dict(config.options),
    )
    teacher_fp = teacher.fingerprint()
    spec = getattr(teacher, "spec", lambda: {"kind": config.teacher, "model": config.model})()
    timing: dict[str, Any] = {}  # where the scoring time went (pointwise teachers)
    on_gpu = str(getattr(teacher, "device", "cpu")).startswith("cuda")
    part_size = config.part_size or (GPU_PART_SIZE if on_gpu else CPU_PART_SIZE)
    if isinstance(teacher, PairwiseTeacher | ListTeacher):  # judges whole candidate lists (judge.py)
        docs = dataset.doc_texts()
        args = (config.store, teacher, spec, mine, dataset.queries, docs, shard, part_size, progress)
        teacher_fp, summary = judge_candidates(*args)
    else:
        phases = Phases()
        with ScoreStore.open(config.store, teacher_fp, spec, writer=writer_name(shard)) as store:
            todo = store.missing(mine)
            task = ensure(progress).task("teacher scoring", len(todo), unit="pairs")
            tokenized = dict(getattr(teacher, "timings", {}))
            with timed_preprocess(getattr(teacher, "model", None), phases):
                scored = score_pairs(
                    store,
                    teacher,
                    mine,
                    dataset.queries,
                    dataset.doc_texts(),
                    batch_size=part_size,
                    progress=task.advance,
                    phases=phases,
                )
            held = len(store)
        _tokenizing_apart(phases, getattr(teacher, "timings", {}), tokenized)
        summary = (
            f"teacher {teacher_fp}: scored {scored} pairs, {len(mine) - scored} already stored; "
            f"store holds {held} → {config.store / teacher_fp}"
        )
        if scored:
            summary += f"\n  {phases.summary(scored, 'pairs')}"
            timing = phases.record(scored)
    atomic_write_json(stamp, {"teacher": teacher_fp})
    out_fp = hash_json(
        {"candidates": input_fingerprint(config.candidates, "candidates"), "teacher": teacher_fp}
    )
    where = f" (shard {shard[0]}/{shard[1]})" if shard[1] > 1 else ""
    return StageResult(
        "score",
        config.store,
        out_fp,
        True,
        f"{summary}{where}",
        {"teacher": teacher_fp, "timing": timing},
    )


def _tokenizing_apart(phases: Phases, timings: Mapping[str, float], before: Mapping[str, float]) -> None:
    """Moves tokenizing out of ``compute``: what ``model.preprocess`` took (sentence-transformers'
    own path, timed by :func:`timed_preprocess`) plus what a teacher that tokenizes by itself
    records in its ``timings`` (the cross-encoder's tokenize-once assembler)."""
    own = timings.get("tokenize", 0.0) - before.get("tokenize", 0.0)
    if own > 0:
        phases.add("tokenize", own)
    if "compute" in phases.seconds:
        phases.seconds["compute"] = max(0.0, phases.seconds["compute"] - phases.seconds.get("tokenize", 0.0))


def _read_stamp(path: Path) -> str:
    return str(read_json(path).get("teacher", ""))


def _complete(root: Path, teacher_fp: str, pairs: list[Pair]) -> bool:
    """Whether the store holds every pair; a damaged part (which a read-only store refuses)
    counts as incomplete: the writer opened next sets it aside and scores its pairs again."""
    from retrieval_kd.scores.store import ScoreStore

    try:
        return not ScoreStore.load(root, teacher_fp).missing(pairs)
    except RkdError as e:
        log.warning("%s", e)
        return False

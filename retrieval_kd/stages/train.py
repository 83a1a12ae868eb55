"""The init and train stages: a student from its config, then trained from the score store."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrieval_kd.artifacts import building, mark, stage_fingerprint
from retrieval_kd.config import StudentConfig, TrainConfig
from retrieval_kd.distributed import all_agree, barrier, is_main
from retrieval_kd.fingerprint import hash_json
from retrieval_kd.progress import Progress
from retrieval_kd.stages._common import StageResult, input_fingerprint, model_hash


@dataclass(frozen=True)
class InitStage:
    """The untrained student of a recipe's ``[student]``, saved (``rkd run``'s "before" row)."""

    student: StudentConfig
    out: Path

    def fingerprint(self) -> str:
        return hash_json({"student": self.student.to_json(), "model": model_hash(self.student.model)})


def _build(student: StudentConfig) -> Any:
    from retrieval_kd.students import build_student

    return build_student(
        student.kind,
        student.model,
        num_layers=student.num_layers,
        max_seq_length=student.max_seq_length,
        **dict(student.options),
    )


def init_stage(config: InitStage) -> StageResult:
    fp = config.fingerprint()
    if all_agree(lambda: stage_fingerprint(config.out) == fp):
        return StageResult("init", config.out, fp, False, "")
    if is_main():
        student = _build(config.student)
        with building(config.out) as tmp:
            student.save(tmp, {"stage": "init", "student": config.student.to_json()})
            mark(tmp, "init", fp)
    barrier()
    return StageResult("init", config.out, fp, True, f"student {config.student.kind} → {config.out}")


@dataclass(frozen=True)
class TrainStage:
    """Settings of ``rkd train`` and of a recipe's ``[student]`` + ``[train]``.

    Attributes:
        candidates: candidates folder.
        store: score store root.
        teacher: the teacher fingerprint to train from (None: the only one in ``store``).
        dataset: where the query and document texts come from.
        student: the student to build (ignored for the weights when ``init`` is given).
        train: the training settings.
        out: the student folder to write; checkpoints go to ``<out>.checkpoints/``.
        init: a saved student folder to start from instead of building ``student``.
        provenance: extra fields for ``rkd.json``.
    """

    candidates: Path
    store: Path
    teacher: str | None
    dataset: str
    student: StudentConfig
    train: TrainConfig
    out: Path
    init: Path | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def fingerprint(self, teacher: str) -> str:
        return hash_json(
            {
                "candidates": input_fingerprint(self.candidates, "candidates"),
                "teacher": teacher,
                "dataset": self.dataset,
                "student": self.student.to_json(),
                "init": model_hash(self.init) if self.init is not None else model_hash(self.student.model),
                "train": self.train.to_json(),
            }
        )


def train_stage(config: TrainStage, progress: Progress | None = None) -> StageResult:
    """Trains unless ``config.out`` holds the student of this exact config and inputs.

    A run killed mid-training resumes from its last checkpoint when started again. Under
    torchrun every rank trains (the Trainer's data parallelism) and rank 0 alone saves.

    Returns:
        ``extra["log"]``: the loss per step (when it ran).
    """
    from retrieval_kd.data import load_dataset
    from retrieval_kd.data.candidates import Candidates
    from retrieval_kd.scores.store import ScoreStore
    from retrieval_kd.students import load_student
    from retrieval_kd.train.labels import store_for_loss
    from retrieval_kd.train.trainer import checkpoint_dir, train_student, write_log

    # a pairwise loss given targets derived from preferences trains on the preferences
    store = store_for_loss(ScoreStore.load(config.store, config.teacher), config.train.loss)
    fp = config.fingerprint(store.fingerprint)
    if all_agree(lambda: stage_fingerprint(config.out) == fp):
        return StageResult("train", config.out, fp, False, "")
    dataset = load_dataset(config.dataset)
    cands = Candidates.load(config.candidates, corpus=dataset.docs)
    student = load_student(config.init) if config.init is not None else _build(config.student)
    log = train_student(
        student,
        cands,
        store,
        dataset.queries,
        dataset.doc_texts(),
        config.train,
        config.out,
        fingerprint=fp,
        progress=progress,
    )
    if is_main():
        with building(config.out) as tmp:
            write_log(tmp, log)
            student.save(
                tmp,
                {
                    **dict(config.provenance),
                    "stage": "train",
                    "data": dataset.fingerprint(),
                    "student": config.student.to_json(),
                    "train": config.train.to_json(),
                    "teacher_fingerprint": store.fingerprint,
                    "steps": len(log),
                },
            )
            mark(tmp, "train", fp)
        shutil.rmtree(checkpoint_dir(config.out), ignore_errors=True)
    barrier()
    return StageResult(
        "train",
        config.out,
        fp,
        True,
        f"{len(log)} steps, loss {log[0]['loss']:.4f} → {log[-1]['loss']:.4f}; student → {config.out}",
        {"log": log},
    )

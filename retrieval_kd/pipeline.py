"""``rkd run``: a recipe's stages in order, each skipped when its outputs already exist with the
same fingerprint (the fingerprint chains every upstream setting, so changing the teacher reruns
scoring, training and evaluation, but changing only ``[eval]`` reruns evaluation alone)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from retrieval_kd.config import RecipeConfig
from retrieval_kd.errors import ConfigError
from retrieval_kd.fingerprint import hash_json
from retrieval_kd.io import atomic_write_json, read_json
from retrieval_kd.progress import Progress, ensure

log = logging.getLogger(__name__)

MARKER = ".rkd-stage.json"
SYSTEMS = ("teacher", "student_before", "student_after")


def stage_done(folder: Path, fingerprint: str) -> bool:
    marker = folder / MARKER
    return marker.is_file() and read_json(marker).get("fingerprint") == fingerprint


def mark_done(folder: Path, stage: str, fingerprint: str) -> None:
    atomic_write_json(folder / MARKER, {"stage": stage, "fingerprint": fingerprint})


def retriever_model(config: RecipeConfig) -> str:
    if config.mine.model:
        return config.mine.model
    if config.teacher.kind == "bi-encoder":
        return config.teacher.model
    raise ConfigError(f"{config.source}: [mine].model is required when the teacher is not a bi-encoder")


class Pipeline:
    """The recipe's stages over one output folder; each stage is a method, callable alone."""

    def __init__(
        self,
        config: RecipeConfig,
        out: Path,
        progress: Progress | None = None,
        say: Callable[[str], None] = log.info,
    ) -> None:
        self.config = config
        self.out = out
        self.progress = progress
        self.say = say
        c = config
        self.fp: dict[str, str] = {}
        self.fp["mine"] = hash_json(
            {"data": c.data.train, "mine": asdict(c.mine), "model": retriever_model(c)}
        )
        self.fp["score"] = hash_json({"mine": self.fp["mine"], "teacher": asdict(c.teacher)})
        self.fp["init"] = hash_json({"student": asdict(c.student)})
        self.fp["train"] = hash_json(
            {"score": self.fp["score"], "init": self.fp["init"], "train": asdict(c.train)}
        )
        for system, upstream in (("teacher", "mine"), ("student_before", "init"), ("student_after", "train")):
            self.fp[f"eval-{system}"] = hash_json(
                {
                    "up": self.fp[upstream],
                    "data": c.data.eval,
                    "eval": asdict(c.eval),
                    "index": asdict(c.index),
                }
            )

    # -- stages -----------------------------------------------------------------------------
    def mine(self) -> Path:
        from retrieval_kd.data import load_dataset
        from retrieval_kd.mine import MineConfig, mine
        from retrieval_kd.models import resolve_model

        folder = self.out / "mine"
        if stage_done(folder, self.fp["mine"]):
            self.say(f"mine: up to date ({folder})")
            return folder
        c = self.config.mine
        dataset = load_dataset(self.config.data.train)
        retriever = self._retriever()
        cands, index = mine(
            dataset, retriever, MineConfig(c.negatives, c.factory, c.batch_size), progress=self.progress
        )
        cands.save(folder)
        index.manifest["student_path"] = resolve_model(retriever_model(self.config))
        index.manifest["dataset"] = dataset.id
        index.save(folder / "index")
        mark_done(folder, "mine", self.fp["mine"])
        self.say(f"mine: {len(cands.items)} queries, {len(cands.pairs())} pairs → {folder}")
        return folder

    def score(self) -> Path:
        from retrieval_kd.data import load_dataset
        from retrieval_kd.data.candidates import Candidates
        from retrieval_kd.scores.scoring import score_pairs
        from retrieval_kd.scores.store import ScoreStore
        from retrieval_kd.teachers import build_teacher

        folder = self.out / "scores"
        if stage_done(folder, self.fp["score"]):
            self.say(f"score-teacher: up to date ({folder})")
            return folder
        t = self.config.teacher
        dataset = load_dataset(self.config.data.train)
        cands = Candidates.load(self.out / "mine", corpus=dataset.docs)
        teacher = build_teacher(
            t.kind, t.model, max_length=t.max_length, dtype=t.dtype, batch_size=t.batch_size, device=t.device
        )
        pairs = cands.pairs()
        with ScoreStore.open(folder, teacher.fingerprint(), teacher.spec()) as store:  # type: ignore[attr-defined]
            missing = store.missing(pairs)
            task = ensure(self.progress).task("teacher scoring", len(missing), unit="pairs")
            n = score_pairs(
                store,
                teacher,
                pairs,
                dataset.queries,
                dataset.doc_texts(),
                batch_size=8 * t.batch_size,
                progress=task.advance,
            )
        mark_done(folder, "score", self.fp["score"])
        self.say(f"score-teacher: {n} pairs scored, {len(pairs) - n} already in the store → {folder}")
        return folder

    def init_student(self) -> Path:
        from retrieval_kd.students import build_student

        folder = self.out / "student-init"
        if stage_done(folder, self.fp["init"]):
            return folder
        s = self.config.student
        student = build_student(s.kind, s.model, num_layers=s.num_layers, max_seq_length=s.max_seq_length)
        student.save(folder, {"stage": "init"})
        mark_done(folder, "init", self.fp["init"])
        return folder

    def train(self) -> Path:
        from retrieval_kd.data import load_dataset
        from retrieval_kd.data.candidates import Candidates
        from retrieval_kd.scores.store import ScoreStore
        from retrieval_kd.students import load_student
        from retrieval_kd.train.trainer import train_student

        folder = self.out / "student"
        if stage_done(folder, self.fp["train"]):
            self.say(f"train: up to date ({folder})")
            return folder
        dataset = load_dataset(self.config.data.train)
        cands = Candidates.load(self.out / "mine", corpus=dataset.docs)
        store = ScoreStore.load(self.out / "scores", self._teacher_fingerprint())
        student = load_student(self.init_student())
        train_log = train_student(
            student,
            cands,
            store,
            dataset.queries,
            dataset.doc_texts(),
            self.config.train,
            folder,
            provenance={
                "recipe": self.config.source,
                "data": dataset.fingerprint(),
                "config": asdict(self.config),
            },
            progress=self.progress,
        )
        mark_done(folder, "train", self.fp["train"])
        self.say(
            f"train: {len(train_log)} steps, loss {train_log[0]['loss']:.4f} → {train_log[-1]['loss']:.4f}"
        )
        return folder

    def _retriever(self) -> Any:
        from retrieval_kd.students.dense import DenseStudent

        return DenseStudent.from_pretrained(
            retriever_model(self.config), max_seq_length=self.config.mine.max_seq_length
        )

    def _teacher_fingerprint(self) -> str | None:
        from retrieval_kd.scores.store import ScoreStore

        found = ScoreStore.teachers(self.out / "scores")
        return found[0] if len(found) == 1 else None

    def evaluate(self, system: str) -> dict[str, float]:
        from retrieval_kd.data import load_dataset
        from retrieval_kd.evaluation import evaluate_system
        from retrieval_kd.indexes import load_index
        from retrieval_kd.mine import corpus_fingerprint
        from retrieval_kd.models import resolve_model
        from retrieval_kd.students import load_student

        folder = self.out / "eval" / system
        key = f"eval-{system}"
        if stage_done(folder, self.fp[key]):
            metrics: dict[str, float] = read_json(folder / "metrics.json")["metrics"]
            return metrics
        dataset = load_dataset(self.config.data.eval)
        index = None
        if system == "teacher":
            # A bi-encoder teacher is evaluated as the dense retriever it is; with a cross-encoder
            # teacher this row is the first-stage retriever that mined its candidates.
            student: Any = self._retriever()
            mined = self.out / "mine" / "index"
            if (mined / "manifest.json").is_file():
                candidate = load_index(mined)
                same = (
                    candidate.manifest.get("corpus") == corpus_fingerprint(dataset)
                    and candidate.manifest.get("student_fingerprint") == student.fingerprint()
                    and candidate.manifest.get("factory") == self.config.index.factory
                )
                index = candidate if same else None
            student_path = Path(resolve_model(retriever_model(self.config)))
        else:
            student_path = self.out / ("student-init" if system == "student_before" else "student")
            student = load_student(student_path)
        e = self.config.eval
        result = evaluate_system(
            system,
            student,
            dataset,
            e.metrics,
            e.k,
            folder,
            index=index,
            factory=self.config.index.factory,
            max_queries=e.max_queries,
            batch_size=self.config.index.batch_size,
            progress=self.progress,
        )
        if index is None:  # keep the index this evaluation built, for Retriever and `rkd eval beir --index`
            result.index.manifest["student_path"] = str(student_path.resolve())
            result.index.manifest["dataset"] = dataset.id
            result.index.save(self.out / "index" / system)
        mark_done(folder, key, self.fp[key])
        self.say(f"eval {system}: " + ", ".join(f"{m} {v:.4f}" for m, v in result.metrics.items()))
        return result.metrics

    def run(self) -> dict[str, Any]:
        """All stages, then ``report.json``: the three systems' metrics and the student/teacher
        ratio of each metric."""
        self.out.mkdir(parents=True, exist_ok=True)
        self.mine()
        self.score()
        self.init_student()
        self.train()
        rows = {system: self.evaluate(system) for system in SYSTEMS}
        teacher = rows["teacher"]
        # The "teacher" row is the dense retriever that mined; it is the teacher itself only when
        # the teacher is that bi-encoder (a cross-encoder teacher reranks, it does not retrieve).
        is_teacher = self.config.teacher.kind == "bi-encoder" and self.config.mine.model in (
            None,
            self.config.teacher.model,
        )
        if not is_teacher:
            rows = {("first_stage" if k == "teacher" else k): v for k, v in rows.items()}
        report = {
            "recipe": self.config.name,
            "config": self.config.source,
            "eval_dataset": self.config.data.eval,
            "train_dataset": self.config.data.train,
            "metrics": rows,
            "student_over_teacher": {
                m: (rows["student_after"][m] / teacher[m] if teacher[m] else None) for m in teacher
            }
            if is_teacher
            else {},
            "fingerprints": self.fp,
            "host": {"cpus": os.cpu_count()},
        }
        atomic_write_json(self.out / "report.json", report)
        return report

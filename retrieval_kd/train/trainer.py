"""Distillation: candidates + teacher scores → training groups → a trained student."""

from __future__ import annotations

import dataclasses
import json
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrieval_kd.config import TrainConfig
from retrieval_kd.data.candidates import Candidates
from retrieval_kd.errors import RkdError
from retrieval_kd.io import atomic_write_text
from retrieval_kd.progress import Progress, ensure


@dataclass(frozen=True)
class Group:
    query_id: str
    doc_ids: tuple[str, ...]  # positive first
    teacher: tuple[float, ...]


def build_groups(candidates: Candidates, store: Any, config: TrainConfig, epoch: int) -> list[Group]:
    """One group per (query, positive): the positive then ``negatives`` mined negatives, each
    with its teacher score. With ``negative_pool`` the negatives are drawn per epoch (seeded) from
    the top of the mined list; without it they are the top ``negatives``."""
    rng = random.Random(config.seed * 1000 + epoch)
    groups = []
    items = candidates.items[: config.max_queries] if config.max_queries else candidates.items
    for c in items:
        pool = list(c.negatives[: config.negative_pool or config.negatives])
        if len(pool) < config.negatives:
            raise RkdError(
                f"query {c.query_id!r} has {len(pool)} mined negatives; training needs {config.negatives} "
                "(mine deeper with `rkd mine --negatives` or lower [train].negatives)"
            )
        for pos in c.positives:
            negs = rng.sample(pool, config.negatives) if config.negative_pool else pool[: config.negatives]
            doc_ids = (pos, *negs)
            scores = store.get(c.query_id, doc_ids)
            groups.append(Group(c.query_id, doc_ids, tuple(float(s) for s in scores)))
    return groups


def make_dataset(groups: list[Group], queries: dict[str, str], docs: dict[str, str]) -> Any:
    """Columns ``query, doc0..docN, label``: the layout the Trainer's collator expects (labels in
    a column named ``label``, text columns in order)."""
    from datasets import Dataset

    width = len(groups[0].doc_ids)
    data: dict[str, list[Any]] = {"query": [queries[g.query_id] for g in groups]}
    for i in range(width):
        data[f"doc{i}"] = [docs[g.doc_ids[i]] for g in groups]
    data["label"] = [list(g.teacher) for g in groups]
    return Dataset.from_dict(data)


def train_student(
    student: Any,
    candidates: Candidates,
    store: Any,
    queries: dict[str, str],
    docs: dict[str, str],
    config: TrainConfig,
    out: Path,
    provenance: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> list[dict[str, float]]:
    """Trains ``student`` in place with the sentence-transformers Trainer and saves it to ``out``
    (a standard folder + ``rkd.json``) with ``train_log.jsonl`` (loss per step). Returns the log."""
    import torch
    from datasets import concatenate_datasets
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from transformers import PrinterCallback, TrainerCallback

    from retrieval_kd.losses import build_loss
    from retrieval_kd.train.adapter import ScoreSpaceLoss

    epochs = max(1, int(-(-config.epochs // 1)))
    datasets = [
        make_dataset(build_groups(candidates, store, config, e), queries, docs) for e in range(epochs)
    ]
    dataset = concatenate_datasets(datasets) if len(datasets) > 1 else datasets[0]
    if config.epochs != epochs:  # fractional epochs: keep the leading share
        dataset = dataset.select(range(int(len(dataset) * config.epochs / epochs)))
    steps = -(-len(dataset) // config.batch_size)
    total = config.max_steps if config.max_steps > 0 else steps
    loss = build_loss(config.loss, **config.loss_options)
    log: list[dict[str, float]] = []
    task = ensure(progress).task("training", total, unit="steps")

    class _Log(TrainerCallback):  # type: ignore[misc]
        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any
        ) -> None:
            if logs and "loss" in logs:
                log.append(
                    {
                        "step": state.global_step,
                        "epoch": float(state.epoch or 0),
                        "loss": float(logs["loss"]),
                        "lr": float(logs.get("learning_rate", 0.0)),
                    }
                )

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            task.advance(1)

    with tempfile.TemporaryDirectory(prefix="rkd-train-") as tmp:
        args = SentenceTransformerTrainingArguments(
            output_dir=tmp,
            # the epochs were unrolled into the dataset (fresh negatives per epoch), so one pass
            num_train_epochs=1,
            max_steps=config.max_steps,
            per_device_train_batch_size=config.batch_size,
            learning_rate=config.lr,
            warmup_steps=int(config.warmup * total) if config.warmup < 1 else int(config.warmup),
            weight_decay=config.weight_decay,
            seed=config.seed,
            data_seed=config.seed,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            bf16=config.bf16,
            use_cpu=not torch.cuda.is_available(),
        )
        trainer = SentenceTransformerTrainer(
            model=student.model,
            args=args,
            train_dataset=dataset,
            loss=ScoreSpaceLoss(student.model, loss, similarity=student.similarity),
            callbacks=[_Log()],
        )
        trainer.remove_callback(PrinterCallback)  # the log goes to train_log.jsonl and the bar
        trainer.train()
    student.weights_changed()
    if not log:
        raise RkdError("training ran no step: no groups to train on")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "train_log.jsonl", "".join(json.dumps(r) + "\n" for r in log))
    student.save(
        out,
        {
            **(provenance or {}),
            "train": dataclasses.asdict(config),
            "teacher_fingerprint": store.manifest.get("teacher_fingerprint"),
            "groups": len(dataset),
            "steps": len(log),
        },
    )
    return log

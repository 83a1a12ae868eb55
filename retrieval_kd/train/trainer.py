"""Distillation: candidates + teacher scores → training groups → a trained student.

One trainer for every student family: the student names its sentence-transformers Trainer
class and produces the ``(B, 1+n)`` score matrix; the loss never sees a model. Checkpoints go to
``<out>.checkpoints/`` and a rerun of the same training resumes from the last one (the Trainer's
own ``resume_from_checkpoint``: weights, optimiser, scheduler, RNG and data position).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrieval_kd.config import TrainConfig
from retrieval_kd.data.candidates import Candidates
from retrieval_kd.distributed import barrier, is_main, world
from retrieval_kd.errors import RkdError
from retrieval_kd.io import atomic_write_json, atomic_write_text, read_json
from retrieval_kd.progress import Progress, ensure
from retrieval_kd.protocols import ScoreStore, Student
from retrieval_kd.train.labels import LABELS, Layout, check_judgements

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Group:
    """One training row: a query, its documents (positive first) and the teacher's label row,
    built from the store's judgement kind (:data:`LABELS`): pointwise, one score per document
    ``(1+n)``; pairwise, the row-major ``(1+n) × (1+n)`` matrix of preference logits."""

    query_id: str
    doc_ids: tuple[str, ...]  # positive first
    teacher: tuple[float, ...]


def build_groups(candidates: Candidates, store: ScoreStore, config: TrainConfig, epoch: int) -> list[Group]:
    """One group per (query, positive): the positive then ``negatives`` mined negatives, with
    the teacher's label row for the store's judgement kind (:data:`LABELS`; one vectorised
    store lookup for the whole epoch). With ``negative_pool`` the negatives are drawn per epoch
    (seeded) from the top of the mined list; without it they are the top ``negatives``.

    A group whose label row holds no value (a pairwise store that compares none of its
    documents) is dropped, with a warning that counts them.

    Raises:
        ConfigError: ``[train].loss`` takes another judgement kind than the store holds.
        RkdError: a query has too few negatives, or every group was dropped.
    """
    check_judgements(config.loss, store)
    rng = random.Random(config.seed * 1000 + epoch)
    layout: Layout = []
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
            layout.append((c.query_id, (pos, *negs)))
    labels = LABELS[store.kind](store, layout)
    groups = [Group(q, docs, row) for (q, docs), row in zip(layout, labels, strict=True) if _informative(row)]
    dropped = len(layout) - len(groups)
    if dropped and not groups:
        raise RkdError(
            f"none of the {dropped} training groups of epoch {epoch} has a pair of documents that the "
            f"{store.kind} score store {getattr(store, 'path', store.fingerprint)} compares; judge "
            "these candidates with its teacher first (`rkd score-teacher`)"
        )
    if dropped:  # the same queries every epoch unless negatives are drawn: say it once
        log.log(
            logging.WARNING if epoch == 0 else logging.INFO,
            "epoch %d: dropped %d of %d training groups: the %s score store compares none of their documents",
            epoch,
            dropped,
            len(layout),
            store.kind,
        )
    return groups


def _informative(row: tuple[float, ...]) -> bool:
    """A label row with at least one value (a pairwise matrix with one compared pair)."""
    return any(math.isfinite(v) for v in row)


def make_dataset(
    groups: list[Group], queries: Mapping[str, str], docs: Mapping[str, str], padded: bool = False
) -> Any:
    """Columns ``query, doc0..docN, label``: the layout every sentence-transformers Trainer's
    collator expects (labels in a column named ``label``, input columns in order).

    ``padded`` (data-parallel runs, :mod:`retrieval_kd.train.sampler`): each label ends with a
    weight, 1 for every group, and one more row (a copy of the first group, weight 0) follows for
    a rank that the last step leaves without a group.
    """
    from datasets import Dataset

    width = len(groups[0].doc_ids)
    rows = [*groups, groups[0]] if padded else groups
    data: dict[str, list[Any]] = {"query": [queries[g.query_id] for g in rows]}
    for i in range(width):
        data[f"doc{i}"] = [docs[g.doc_ids[i]] for g in rows]
    data["label"] = [list(g.teacher) for g in rows]
    if padded:
        for i, label in enumerate(data["label"]):
            label.append(0.0 if i == len(groups) else 1.0)
    return Dataset.from_dict(data)


def checkpoint_dir(out: Path) -> Path:
    """Where the Trainer checkpoints a student bound for ``out``."""
    return out.parent / f"{out.name}.checkpoints"


def _resume_point(folder: Path, fingerprint: str) -> str | None:
    """The last complete checkpoint of this exact training, if a killed run left one.

    Checkpoints of any other training (another config or inputs) are removed. The Trainer
    writes ``trainer_state.json`` last, in place; a checkpoint whose state is missing, torn or
    names another step was cut short by the kill and is removed too.
    """
    stamp = folder / "rkd-train.json"
    if folder.is_dir() and (not stamp.is_file() or read_json(stamp).get("fingerprint") != fingerprint):
        shutil.rmtree(folder)
    if not folder.is_dir():
        return None
    steps = sorted(
        (int(p.name.split("-")[1]), p) for p in folder.glob("checkpoint-*") if p.name.split("-")[1].isdigit()
    )
    for step, path in reversed(steps):
        try:
            state = json.loads((path / "trainer_state.json").read_text())
        except (OSError, ValueError):
            state = {}
        if isinstance(state, dict) and state.get("global_step") == step:
            return str(path)
        shutil.rmtree(path)
    return None


def train_student(
    student: Student,
    candidates: Candidates,
    store: ScoreStore,
    queries: Mapping[str, str],
    docs: Mapping[str, str],
    config: TrainConfig,
    out: Path,
    fingerprint: str = "",
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Trains ``student`` in place with its sentence-transformers Trainer.

    Checkpoints every ``config.save_steps`` steps into :func:`checkpoint_dir` (rank 0 only);
    when that folder holds checkpoints of the same ``fingerprint`` the run resumes from the last.
    The student is not saved here (the train stage saves it, on rank 0, atomically).

    Returns:
        The loss log, one row per optimiser step since the start of training (resumed runs
        include the steps before the interruption).
    """
    from functools import partial

    import torch
    from transformers import PrinterCallback, TrainerCallback

    from retrieval_kd.determinism import deterministic_kernels, set_threads
    from retrieval_kd.losses import build_loss
    from retrieval_kd.train.adapter import ScoreSpaceLoss
    from retrieval_kd.train.args import check_trainer_args
    from retrieval_kd.train.sampler import RankSlicedBatchSampler

    check_trainer_args(config.args, "")
    set_threads()
    if config.deterministic:
        deterministic_kernels()
    if int(config.args.get("dataloader_num_workers", 0) or 0) > 0:
        # DataLoader workers fork after the tokenizer ran: the one place rkd forks
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    epochs = max(1, int(-(-config.epochs // 1)))
    groups = [g for e in range(epochs) for g in build_groups(candidates, store, config, e)]
    if config.epochs != epochs:  # fractional epochs: keep the leading share
        groups = groups[: int(len(groups) * config.epochs / epochs)]
    if not groups:
        raise RkdError("training has no groups: the candidates hold no query with a positive")
    # under torchrun each rank takes batch_size groups per step; the sampler makes every global
    # step the one-process run's batch of batch_size × world groups (unless [train.args] names
    # its own batch_sampler)
    size = world()[1]
    sliced = size > 1 and "batch_sampler" not in config.args
    dataset = make_dataset(groups, queries, docs, padded=sliced)
    steps = -(-len(groups) // (config.batch_size * size))
    total = config.max_steps if config.max_steps > 0 else steps
    loss = ScoreSpaceLoss(
        student, build_loss(config.loss, **config.loss_options), config.negatives + 1, weighted=sliced
    )
    task = ensure(progress).task("training", total, unit="steps")
    terms: dict[int, dict[str, float]] = {}  # step → distillation loss and each regulariser

    class _Progress(TrainerCallback):  # type: ignore[misc]
        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step:  # resumed
                task.advance(state.global_step)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            task.advance(1)
            if loss.last_terms and len(loss.last_terms) > 1:  # the loss and regulariser terms
                terms[state.global_step] = dict(loss.last_terms)

    folder = checkpoint_dir(out)
    # rank 0 prunes and stamps the shared checkpoint folder; the other ranks wait for it (one
    # rank pruning while another stamps removed the stamp's temporary under torchrun)
    if is_main():
        _resume_point(folder, fingerprint)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(folder / "rkd-train.json", {"fingerprint": fingerprint})
    barrier()
    resume = _resume_point(folder, fingerprint)
    trainer_cls, args_cls = student.trainer_classes()
    drop_tail = bool(config.args.get("dataloader_drop_last", False))
    sampler = partial(RankSlicedBatchSampler, world=size, groups=len(groups), drop_tail=drop_tail)
    args = args_cls(
        output_dir=str(folder),
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
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        report_to="none",
        disable_tqdm=True,
        bf16=config.bf16,
        use_cpu=not torch.cuda.is_available(),
        **({"batch_sampler": sampler} if sliced else {}),
        **dict(config.args),
    )
    trainer = trainer_cls(
        model=student.model,
        args=args,
        train_dataset=dataset,
        loss=loss,
        callbacks=[_Progress(), *student.training_callbacks()],
    )
    trainer.remove_callback(PrinterCallback)  # the log goes to train_log.jsonl and the bar
    trainer.train(resume_from_checkpoint=resume)
    student.weights_changed()
    log = [
        {
            "step": int(row["step"]),
            "epoch": float(row.get("epoch") or 0),
            "loss": float(row["loss"]),
            "lr": float(row.get("learning_rate", 0.0)),
            **({"terms": terms[int(row["step"])]} if int(row["step"]) in terms else {}),
        }
        for row in trainer.state.log_history
        if "loss" in row
    ]
    if not log:
        raise RkdError("training ran no step: no groups to train on")
    return log


def write_log(folder: Path, log: list[dict[str, Any]]) -> None:
    atomic_write_text(folder / "train_log.jsonl", "".join(json.dumps(r) + "\n" for r in log))

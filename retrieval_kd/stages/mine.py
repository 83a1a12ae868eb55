"""The mine stage: a dataset and a first-stage retriever → a candidates folder (+ its index)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrieval_kd.artifacts import building, mark, stage_fingerprint
from retrieval_kd.distributed import all_agree, barrier, is_main
from retrieval_kd.errors import RkdError
from retrieval_kd.fingerprint import hash_json
from retrieval_kd.progress import Progress
from retrieval_kd.protocols import Encoder
from retrieval_kd.stages._common import StageResult, adopt, model_hash, student_source


@dataclass(frozen=True)
class MineStage:
    """Settings of ``rkd mine`` and of a recipe's ``[mine]``.

    Attributes:
        dataset: ir_datasets id or BEIR folder[:split] whose queries get candidates.
        model: the first-stage retriever (hub id, model folder or saved student).
        out: the candidates folder to write (``candidates.jsonl``, ``manifest.json``,
            ``index/``: the retriever's index of the corpus, reused when it is evaluated).
        kind: the retriever's student kind.
        negatives: mined negatives per query.
        batch_size: encoder batch size.
        max_seq_length: the retriever's token limit (None: the model's own).
        index: options of the retriever's index kind.
        reuse: candidates folders to adopt (hard-linked) when they already are this exact mining
            (another recipe's ``mine/`` over the same queries with the same retriever).
        absolute_margin, relative_margin: false-negative filtering with the mining model (a dense
            retriever; :func:`retrieval_kd.mine.mine_filtered`); None: off.
    """

    dataset: str
    model: str
    out: Path
    kind: str = "dense"
    negatives: int = 30
    batch_size: int = 32
    max_seq_length: int | None = None
    index: Mapping[str, Any] = field(default_factory=dict)
    reuse: tuple[Path, ...] = ()
    absolute_margin: float | None = None
    relative_margin: float | None = None

    def fingerprint(self) -> str:
        settings = {
            "dataset": self.dataset,
            "model": model_hash(self.model),
            "kind": self.kind,
            "negatives": self.negatives,
            "batch_size": self.batch_size,
            "max_seq_length": self.max_seq_length,
            "index": dict(self.index),
        }
        # the filter's settings only when it is on: mining without it keeps its fingerprint
        margins = {"absolute_margin": self.absolute_margin, "relative_margin": self.relative_margin}
        return hash_json({**settings, **{k: v for k, v in margins.items() if v is not None}})


def mine_stage(config: MineStage, progress: Progress | None = None) -> StageResult:
    """Mines candidates unless ``config.out`` already holds them for this exact config.

    Under torchrun, rank 0 mines and the other ranks wait for it.
    """
    from retrieval_kd.data import load_dataset
    from retrieval_kd.indexing import corpus_fingerprint
    from retrieval_kd.mine import MineConfig, mine
    from retrieval_kd.stages.index import index_fingerprint
    from retrieval_kd.students import open_student

    fp = config.fingerprint()
    if all_agree(lambda: stage_fingerprint(config.out) == fp):
        return StageResult("mine", config.out, fp, False, "")
    if not is_main():
        barrier()
        return StageResult("mine", config.out, fp, False, "mined by rank 0")
    adopted = adopt(config.reuse, fp, config.out)
    if adopted is not None:
        barrier()
        return StageResult("mine", config.out, fp, True, f"reused {adopted} → {config.out}")
    dataset = load_dataset(config.dataset)
    retriever = open_student(config.model, config.kind, config.max_seq_length)
    if not isinstance(retriever, Encoder) or retriever.role != "encoder":
        raise RkdError(
            f"{config.model}: a {retriever.kind} student is a {retriever.role}; mining needs an encoder"
        )
    margins = (config.absolute_margin, config.relative_margin)
    settings = MineConfig(config.negatives, config.batch_size, config.index, *margins)
    cands, index = mine(dataset, retriever, settings, progress=progress)
    with building(config.out) as tmp:
        cands.save(tmp)
        if index is not None:  # filtered mining searches without an index of its own
            index.manifest["student_path"] = student_source(config.model)
            index.manifest["student_kind"] = retriever.kind
            index.manifest["student_max_seq_length"] = config.max_seq_length
            index.save(tmp / "index")
            # The index records the fingerprint an index stage would give it, so evaluating the
            # retriever on another split of the same corpus adopts it instead of encoding again.
            corpus = corpus_fingerprint(dataset)
            mark(
                tmp / "index",
                "index",
                index_fingerprint(
                    model_hash(config.model), config.kind, corpus, config.max_seq_length, None, config.index
                ),
            )
        mark(tmp, "mine", fp)
    barrier()
    n_pairs = len(cands.pairs())
    dropped = cands.manifest.get("false_negatives", {}).get("dropped")
    filtered = "" if dropped is None else f", {dropped} likely false negatives dropped"
    return StageResult(
        "mine", config.out, fp, True, f"{len(cands.items)} queries, {n_pairs} pairs{filtered} → {config.out}"
    )

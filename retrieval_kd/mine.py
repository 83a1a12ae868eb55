"""Hard-negative mining: qrels positives plus the first-stage retriever's top-k non-positives.

The retriever is any encoder student; its corpus goes into its own index kind, so mining with a
SPLADE or ColBERT retriever is the same call as with a dense one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from retrieval_kd.data.base import Dataset
from retrieval_kd.data.candidates import Candidate, Candidates
from retrieval_kd.indexing import build_index
from retrieval_kd.progress import Progress
from retrieval_kd.protocols import Encoder, Index


@dataclass(frozen=True)
class MineConfig:
    negatives: int = 30
    batch_size: int = 32
    index: Mapping[str, Any] = field(default_factory=dict)  # options of the retriever's index kind


def mine(
    dataset: Dataset,
    retriever: Encoder,
    config: MineConfig,
    index: Index | None = None,
    progress: Progress | None = None,
) -> tuple[Candidates, Index]:
    """Candidates for every query with qrels: positives (relevance > 0) and the retriever's top
    ``negatives`` other documents, best first. Returns the candidates and the corpus index
    (reusable for evaluating the retriever on another split of the same corpus)."""
    if index is None:
        index = build_index(retriever, dataset, None, config.index, config.batch_size, progress=progress)
    qids = list(dataset.queries)
    qreps = retriever.encode_queries([dataset.queries[q] for q in qids], batch_size=config.batch_size)
    depth = config.negatives + max(len(r) for r in dataset.qrels.values()) + 1
    run = index.search(qids, qreps, depth)
    items = []
    for qid in qids:
        positives = tuple(d for d, rel in dataset.qrels[qid].items() if rel > 0)
        if not positives:
            continue
        ranked = sorted(run.get(qid, {}).items(), key=lambda kv: (-kv[1], kv[0]))
        # The query's own id is skipped too: BEIR ignores a doc retrieved for itself.
        negatives = tuple(d for d, _ in ranked if d not in positives and d != qid)[: config.negatives]
        items.append(Candidate(qid, positives, negatives))
    manifest = {
        "format": "rkd-candidates/1",
        "dataset": dataset.fingerprint(),
        "retriever": {"fingerprint": retriever.fingerprint(), **retriever.provenance},
        "negatives": config.negatives,
        "index": {"kind": index.kind, **dict(config.index)},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return Candidates(items, manifest), index

"""Hard-negative mining: qrels positives plus the first-stage retriever's top-k non-positives."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from retrieval_kd.data.base import Dataset
from retrieval_kd.data.candidates import Candidate, Candidates
from retrieval_kd.encode import encode_corpus
from retrieval_kd.progress import Progress


@dataclass(frozen=True)
class MineConfig:
    negatives: int = 30
    factory: str = "Flat"
    batch_size: int = 32


def build_dense_index(
    student: Any,
    dataset: Dataset,
    factory: str = "Flat",
    batch_size: int = 32,
    progress: Progress | None = None,
) -> Any:
    """Encodes ``dataset``'s corpus with ``student`` into a FAISS index stamped with its fingerprint."""
    from retrieval_kd.indexes.faiss_index import FaissIndex

    doc_ids = list(dataset.docs)
    texts = [dataset.docs[d].full_text() for d in doc_ids]
    reps = encode_corpus(student, texts, batch_size=batch_size, progress=progress)
    index = FaissIndex(reps.shape[1], factory=factory, student_fingerprint=student.fingerprint())
    index.add(doc_ids, reps)
    index.manifest["corpus"] = corpus_fingerprint(dataset)
    return index


def corpus_fingerprint(dataset: Dataset) -> str:
    """Identifies a corpus by its doc ids and texts, so an index can be reused across splits."""
    import hashlib

    h = hashlib.sha256()
    for doc_id, doc in dataset.docs.items():
        h.update(f"{doc_id}\t{doc.title}\t{doc.text}\n".encode())
    return h.hexdigest()[:16]


def mine(
    dataset: Dataset,
    retriever: Any,
    config: MineConfig,
    index: Any | None = None,
    progress: Progress | None = None,
) -> tuple[Candidates, Any]:
    """Candidates for every query with qrels: positives (relevance > 0) and the retriever's top
    ``negatives`` other documents, best first. Returns the candidates and the corpus index
    (reusable for evaluating the retriever on another split of the same corpus)."""
    if index is None:
        index = build_dense_index(retriever, dataset, config.factory, config.batch_size, progress)
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
        "retriever": {"fingerprint": retriever.fingerprint(), **getattr(retriever, "provenance", {})},
        "negatives": config.negatives,
        "factory": config.factory,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return Candidates(items, manifest), index

"""Encoding a corpus into the index kind its encoder names, one chunk at a time.

Every encoder family goes through this one function: the student says which index kind holds
its representations (``student.index_kind``), the index registry builds it, and the chunks
stream from ``encode_documents`` into ``Index.add`` (no corpus-sized array in between).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import Any

from retrieval_kd.data.base import Dataset
from retrieval_kd.progress import Progress, ensure
from retrieval_kd.protocols import Encoder, Index


def corpus_fingerprint(dataset: Dataset) -> str:
    """Identifies a corpus by its doc ids and texts, so an index is reused across splits."""
    h = hashlib.sha256()
    for doc_id, doc in dataset.docs.items():
        h.update(f"{doc_id}\t{doc.title}\t{doc.text}\n".encode())
    return h.hexdigest()[:16]


def build_index(
    student: Encoder,
    dataset: Dataset,
    kind: str | None = None,
    options: Mapping[str, Any] | None = None,
    batch_size: int = 32,
    chunk: int = 512,
    progress: Progress | None = None,
) -> Index:
    """Encodes ``dataset``'s corpus with ``student`` into a new index.

    Args:
        student: any encoder.
        dataset: its ``docs`` are indexed, in their order.
        kind: an ``INDEXES`` name; default the student's own ``index_kind``.
        options: the index kind's settings (``[index.options]``).
        batch_size: texts per encoder forward pass.
        chunk: documents encoded and added per step (bounds memory, paces the progress bar).

    Returns:
        The index, stamped with the student's fingerprint and the corpus fingerprint, and its
        manifest's ``encode`` record: documents, seconds, documents per second (the encode
        throughput that evaluation tables show beside quality).
    """
    from retrieval_kd.indexes import INDEXES

    index = INDEXES.get(kind or student.index_kind).create(student.fingerprint(), dict(options or {}))
    doc_ids = list(dataset.docs)
    task = ensure(progress).task("encoding documents", len(doc_ids), unit="docs")
    started = time.perf_counter()
    for start in range(0, len(doc_ids), chunk):
        ids = doc_ids[start : start + chunk]
        texts = [dataset.docs[d].full_text() for d in ids]
        index.add(ids, student.encode_documents(texts, batch_size=batch_size))
        task.advance(len(ids))
    seconds = time.perf_counter() - started
    index.manifest["encode"] = {
        "docs": len(doc_ids),
        "seconds": round(seconds, 3),
        "docs_per_s": round(len(doc_ids) / seconds, 1) if seconds > 0 else None,
    }
    index.manifest["corpus"] = corpus_fingerprint(dataset)
    index.manifest["dataset"] = dataset.id
    return index

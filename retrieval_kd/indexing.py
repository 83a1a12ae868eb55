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
from retrieval_kd.timing import Phases, timed_preprocess


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
    phases: Phases | None = None,
) -> Index:
    """Encodes ``dataset``'s corpus with ``student`` into a new index.

    Args:
        student: any encoder.
        dataset: its ``docs`` are indexed, in their order.
        kind: an ``INDEXES`` name; default the student's own ``index_kind``.
        options: the index kind's settings (``[index.options]``).
        batch_size: texts per encoder forward pass.
        chunk: documents encoded and added per step (bounds memory, paces the progress bar).
        phases: where the wall time goes (``tokenize``, ``compute``, ``add``), added to.

    Returns:
        The index, stamped with the student's fingerprint and the corpus fingerprint, and its
        manifest's ``encode`` record: documents, seconds spent encoding (tokenizing and computing,
        not adding), documents per second (the encode throughput evaluation tables show).
    """
    from retrieval_kd.indexes import INDEXES

    index = INDEXES.get(kind or student.index_kind).create(student.fingerprint(), dict(options or {}))
    doc_ids = list(dataset.docs)
    task = ensure(progress).task("encoding documents", len(doc_ids), unit="docs")
    phases = phases if phases is not None else Phases()
    encoding = 0.0
    with timed_preprocess(getattr(student, "model", None), phases):
        for start in range(0, len(doc_ids), chunk):
            ids = doc_ids[start : start + chunk]
            texts = [dataset.docs[d].full_text() for d in ids]
            began = time.perf_counter()
            vectors = student.encode_documents(texts, batch_size=batch_size)
            encoding += time.perf_counter() - began
            with phases.span("add"):
                index.add(ids, vectors)
            task.advance(len(ids))
    phases.add("compute", encoding - phases.seconds.get("tokenize", 0.0))
    index.manifest["encode"] = {
        "docs": len(doc_ids),
        "seconds": round(encoding, 3),
        "docs_per_s": round(len(doc_ids) / encoding, 1) if encoding > 0 else None,
    }
    index.manifest["corpus"] = corpus_fingerprint(dataset)
    index.manifest["dataset"] = dataset.id
    return index

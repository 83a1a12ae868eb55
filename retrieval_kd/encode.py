"""Corpus encoding in chunks, so long encodes show progress and stay in bounded memory."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from retrieval_kd.progress import Progress, ensure


def encode_corpus(
    student: Any,
    texts: Sequence[str],
    batch_size: int = 32,
    chunk: int = 512,
    progress: Progress | None = None,
    description: str = "encoding documents",
) -> np.ndarray:
    """Shapes: texts[N] → float32[N, dim], in the order given."""
    task = ensure(progress).task(description, len(texts), unit="docs")
    parts = []
    for start in range(0, len(texts), chunk):
        batch = texts[start : start + chunk]
        parts.append(student.encode_documents(batch, batch_size=batch_size))
        task.advance(len(batch))
    if not parts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(parts).astype(np.float32, copy=False)

"""What every sentence-transformers student family shares: the forward pass (texts → pooled
embeddings, training groups → a (B, 1+n) score matrix by the family's own score function), the
weights fingerprint, and the saved folder's ``rkd.json``."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor


def embed(model: Any, texts: Sequence[str]) -> Tensor:
    """Shapes: texts[N] → (N, dim) pooled embeddings, with gradients."""
    features = model.preprocess(list(texts))
    features = {k: v.to(model.device) if isinstance(v, Tensor) else v for k, v in features.items()}
    out: Tensor = model(features)["sentence_embedding"]
    return out


def group_scores(
    model: Any,
    query_batch: Sequence[str],
    doc_groups: Sequence[Sequence[str]],
    score: Callable[[Tensor, Tensor], Tensor],
) -> Tensor:
    """Shapes: query_batch[B], doc_groups[B][1+n] → (B, 1+n) by ``score(q (B, dim),
    d (B, 1+n, dim))``."""
    width = len(doc_groups[0])
    if any(len(g) != width for g in doc_groups):
        raise ValueError("every doc group needs the same number of candidates")
    q = embed(model, query_batch)  # (B, dim)
    d = embed(model, [t for g in doc_groups for t in g]).view(len(doc_groups), width, -1)  # (B, 1+n, dim)
    return score(q, d)


def weights_hash(model: Any, settings: bytes) -> str:
    """Hash of a model's weights and the ``settings`` (the family's own encoding of everything
    else that changes an output): equal hashes give equal representations (a fingerprint)."""
    import torch

    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    h.update(settings)
    return h.hexdigest()[:16]


def read_meta(folder: Path) -> dict[str, Any]:
    """A saved student's ``rkd.json`` (empty for a plain sentence-transformers folder)."""
    from retrieval_kd.io import read_json_object

    meta = folder / "rkd.json"
    return dict(read_json_object(meta)) if meta.is_file() else {}


def save_student(student: Any, path: Path, provenance: Mapping[str, Any] | None, **extra: Any) -> None:
    """Writes the student's sentence-transformers folder, then ``rkd.json`` last (its presence
    marks a complete save), and keeps the merged provenance on the student."""
    from retrieval_kd import __version__
    from retrieval_kd.io import atomic_write_json

    merged = {**student.provenance, **(provenance or {})}
    student.model.save(str(path))
    atomic_write_json(
        Path(path) / "rkd.json",
        {
            "kind": student.kind,
            "rkd_version": __version__,
            "student_fingerprint": student.fingerprint(),
            **extra,
            "provenance": merged,
        },
    )
    student.provenance = merged

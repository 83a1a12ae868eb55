"""What every sentence-transformers student family shares: the forward pass (texts → pooled
embeddings, training groups → a (B, 1+n) score matrix by the family's own score function), the
weights fingerprint, and the saved folder's ``rkd.json``.

``rkd.json`` records the size and xxh3-64 hash of every file of the saved folder, checked before a
load reads them: safetensors validates only its header, so a flipped byte among the weights
loads silently (measured: 41 of 41 single-byte flips of a saved student's ``model.safetensors``
loaded without an error, 18 of them changing its vectors).
"""

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
    """A saved student's ``rkd.json`` (empty for a plain sentence-transformers folder), after
    checking the folder's files against the checksums it records (students saved before rkd
    recorded them are read unchecked).

    Raises:
        DataError: a recorded file is missing or damaged (one line naming it).
    """
    from retrieval_kd.artifacts import verify_checksums
    from retrieval_kd.io import read_json_object

    meta = folder / "rkd.json"
    if not meta.is_file():
        return {}
    data = dict(read_json_object(meta))
    if "files" in data:
        hint = "the student is damaged: save or train it again"
        verify_checksums(folder, data["files"], meta, hint)
    return data


def save_student(student: Any, path: Path, provenance: Mapping[str, Any] | None, **extra: Any) -> None:
    """Writes the student's sentence-transformers folder, then ``rkd.json`` last (its presence
    marks a complete save) with the checksums of every other file, and keeps the merged
    provenance on the student.

    A student saved over an older one (or to a new path) is written beside it and swapped in
    whole (:func:`~retrieval_kd.artifacts.replacing`): a killed save leaves the old student,
    never new weights beside the old ``rkd.json``.
    """
    from retrieval_kd import __version__
    from retrieval_kd.artifacts import file_checksums, replacing
    from retrieval_kd.io import atomic_write_json

    merged = {**student.provenance, **(provenance or {})}
    with replacing(Path(path), _holds_student) as folder:
        student.model.save(str(folder))
        # Every file but rkd.json and hidden ones (a stage marker is written after the save).
        names = sorted(
            p.name for p in folder.iterdir() if p.name != "rkd.json" and not p.name.startswith(".")
        )
        atomic_write_json(
            folder / "rkd.json",
            {
                "kind": student.kind,
                "rkd_version": __version__,
                "student_fingerprint": student.fingerprint(),
                **extra,
                "provenance": merged,
                "files": file_checksums(folder, names),
            },
        )
    student.provenance = merged


def _holds_student(path: Path) -> bool:
    return any((path / name).exists() for name in ("rkd.json", "modules.json", "model.safetensors"))

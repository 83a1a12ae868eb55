"""Students: the small models distillation trains. ``load_student`` opens a saved one.

A family is one module here plus one line in :data:`STUDENTS`; the trainer, indexer, miner,
evaluator and API only ever see the :class:`~retrieval_kd.protocols.Student` roles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from retrieval_kd.errors import RkdError
from retrieval_kd.protocols import Student, StudentClass
from retrieval_kd.registry import Registry

STUDENTS: Registry[StudentClass] = Registry(
    "student",
    {
        "dense": "retrieval_kd.students.dense:DenseStudent",
        "splade": "retrieval_kd.students.splade:SpladeStudent",
        "colbert": "retrieval_kd.students.colbert:ColbertStudent",
        "bm25": "retrieval_kd.students.bm25:BM25Student",
        "cross-encoder": "retrieval_kd.students.reranker:RerankerStudent",
    },
)


def needs_model(kind: str) -> bool:
    """False for a student kind without weights (``bm25``), whose model is its own name: the
    miner, ``rkd index`` and ``rkd eval`` then need no model folder for it."""
    return bool(getattr(STUDENTS.get(kind), "needs_model", True))


def model_free(kind: str) -> str:
    """``kind`` when it names a retriever that needs no model (``--retriever bm25``).

    Raises:
        RkdError: an unknown kind, or one that needs a model (naming the kinds that do not).
    """
    if needs_model(STUDENTS.check(kind)):
        free = [k for k in STUDENTS if not needs_model(k)]
        raise RkdError(f"{kind!r} needs a model (give one with --model); retrievers without one: {free}")
    return kind


def build_student(kind: str, model: str, **options: Any) -> Student:
    """A fresh student of ``kind`` initialised from a hub id or folder."""
    return STUDENTS.get(kind).from_pretrained(model, **options)


def load_student(path: str | Path, device: str = "auto") -> Student:
    """Opens a saved student folder; its ``rkd.json`` names the kind (a plain
    sentence-transformers folder without one opens as a dense student)."""
    folder = Path(path)
    if not folder.is_dir():
        from retrieval_kd.models import resolve_model

        folder = Path(resolve_model(str(path)))
    meta_path = folder / "rkd.json"
    kind = "dense"
    if meta_path.is_file():
        from retrieval_kd.io import read_json_object  # a damaged rkd.json: one line, not a traceback

        kind = read_json_object(meta_path).get("kind", "dense")
    if kind not in STUDENTS:
        raise RkdError(f"{meta_path}: unknown student kind {kind!r}; choose from {STUDENTS.names()}")
    return STUDENTS.get(kind).load(folder, device=device)


def open_student(
    model: str | Path,
    kind: str | None = None,
    max_seq_length: int | None = None,
    device: str = "auto",
    dtype: str = "float32",
) -> Student:
    """A saved rkd student as saved (its ``rkd.json`` names the kind), or any other model folder
    / hub id as a fresh student of ``kind`` (default dense): how a first-stage retriever, or the
    query encoder an index records, is opened. ``max_seq_length`` overrides the token limit;
    ``dtype`` (``bfloat16``, ``float16``) casts the weights for encoding, which changes the
    fingerprint with them (it hashes the weights as they are)."""
    from retrieval_kd.models import torch_dtype

    cast = torch_dtype(dtype)  # checks the name before a slow load
    folder = Path(model)
    if not (folder / "rkd.json").is_file():
        if kind is None and not folder.exists() and str(model) in STUDENTS and not needs_model(str(model)):
            kind = str(model)  # a retriever without weights is named by its kind: "bm25"
        student = build_student(kind or "dense", str(model), max_seq_length=max_seq_length, device=device)
    else:
        student = load_student(folder, device=device)
        if max_seq_length is not None and student.model.max_seq_length != max_seq_length:
            student.model.max_seq_length = max_seq_length
            student.weights_changed()  # the fingerprint covers the token limit
    if dtype != "float32" and getattr(student, "model", None) is not None:
        student.model.to(cast)  # every family returns float32 vectors whatever its weights
        student.weights_changed()
    return student


__all__ = ["STUDENTS", "build_student", "load_student", "model_free", "needs_model", "open_student"]

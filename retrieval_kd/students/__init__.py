"""Students: the small models distillation trains. ``load_student`` opens a saved one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from retrieval_kd.errors import RkdError
from retrieval_kd.registry import Registry

STUDENTS: Registry[Any] = Registry(
    "student",
    {"dense": "retrieval_kd.students.dense:DenseStudent"},
)


def build_student(kind: str, model: str, **options: Any) -> Any:
    """A fresh student of ``kind`` initialised from a hub id or folder."""
    return STUDENTS.get(kind).from_pretrained(model, **options)


def load_student(path: str | Path, device: str = "auto") -> Any:
    """Opens a saved student folder; its ``rkd.json`` names the kind (a plain
    sentence-transformers folder without one opens as a dense student)."""
    folder = Path(path)
    if not folder.is_dir():
        from retrieval_kd.models import resolve_model

        folder = Path(resolve_model(str(path)))
    meta_path = folder / "rkd.json"
    kind = "dense"
    if meta_path.is_file():
        kind = json.loads(meta_path.read_text()).get("kind", "dense")
    if kind not in STUDENTS:
        raise RkdError(f"{meta_path}: unknown student kind {kind!r}; choose from {STUDENTS.names()}")
    return STUDENTS.get(kind).load(folder, device=device)


__all__ = ["STUDENTS", "build_student", "load_student"]

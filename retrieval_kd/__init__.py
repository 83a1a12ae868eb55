"""rkd: knowledge distillation for retrieval models.

The public API is small and lazy: ``import retrieval_kd`` does not import torch.

Example:
    >>> from retrieval_kd import load_student, Retriever  # doctest: +SKIP
    >>> student = load_student("runs/scifact/train/student")  # doctest: +SKIP
    >>> Retriever(student, "runs/scifact/index-student").search(["what is x?"], k=10)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Retriever", "__version__", "load_dataset", "load_index", "load_student"]

_LAZY = {
    "load_student": "retrieval_kd.students:load_student",
    "Retriever": "retrieval_kd.api:Retriever",
    "load_index": "retrieval_kd.indexes:load_index",
    "load_dataset": "retrieval_kd.data:load_dataset",
}


def __getattr__(name: str) -> Any:
    import importlib

    if name not in _LAZY:
        raise AttributeError(f"module 'retrieval_kd' has no attribute {name!r}")
    module, _, attr = _LAZY[name].partition(":")
    return getattr(importlib.import_module(module), attr)

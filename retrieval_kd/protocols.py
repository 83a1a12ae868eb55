"""The five contracts every component meets (DESIGN.md, "Contracts").

Each is a small Protocol; implementations are found through the registries in
``retrieval_kd.teachers``, ``retrieval_kd.students``, ``retrieval_kd.losses`` and
``retrieval_kd.indexes``, and each has a fake in :mod:`retrieval_kd.testing`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from retrieval_kd.types import Pair, Run

if TYPE_CHECKING:
    import numpy as np
    import torch


@runtime_checkable
class Teacher(Protocol):
    """Scores query–passage pairs with raw relevance scores (logits, never squashed)."""

    def fingerprint(self) -> str:
        """Covers everything that changes a score: model hash, template, max length, dtype."""
        ...

    def score(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        """Shapes: queries[N], passages[N] → float32[N], one score per aligned pair."""
        ...


@runtime_checkable
class ScoreStore(Protocol):
    manifest: dict[str, Any]

    def missing(self, pairs: Sequence[Pair]) -> list[Pair]: ...

    def add(self, pairs: Sequence[Pair], scores: np.ndarray) -> None: ...

    def get(self, query_id: str, doc_ids: Sequence[str]) -> np.ndarray: ...


@runtime_checkable
class Student(Protocol):
    kind: str

    def fingerprint(self) -> str: ...

    def encode_queries(self, texts: Sequence[str], batch_size: int = 32) -> Any: ...

    def encode_documents(self, texts: Sequence[str], batch_size: int = 32) -> Any: ...

    def scores(self, query_batch: Sequence[str], doc_groups: Sequence[Sequence[str]]) -> torch.Tensor:
        """Shapes: query_batch[B], doc_groups[B][1+n] → Tensor[B, 1+n]; column 0 the positive."""
        ...

    def save(self, path: Path, provenance: dict[str, Any] | None = None) -> None: ...


@runtime_checkable
class Loss(Protocol):
    def __call__(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """Shapes: student[B, 1+n], teacher[B, 1+n] → scalar; column 0 the positive."""
        ...


@runtime_checkable
class Index(Protocol):
    manifest: dict[str, Any]

    def add(self, doc_ids: Sequence[str], reps: Any) -> None: ...

    def search(self, query_ids: Sequence[str], query_reps: Any, k: int) -> Run: ...

    def check_encoder(self, student_fingerprint: str) -> None:
        """Raises unless queries encoded by this student belong in this index."""
        ...

    def save(self, path: Path) -> None: ...

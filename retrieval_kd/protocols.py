"""The contracts every component meets (DESIGN.md, "Contracts").

Each is a small Protocol; implementations are found through the registries in
``retrieval_kd.teachers``, ``retrieval_kd.students``, ``retrieval_kd.losses`` and
``retrieval_kd.indexes``, and each has a fake in :mod:`retrieval_kd.testing`.

Students come in two roles. An :class:`Encoder` turns queries and documents into
representations that an index of its ``index_kind`` holds (dense, SPLADE, ColBERT); a
:class:`Reranker` scores (query, document) pairs directly (cross-encoders). Both reduce a
training group to a ``(B, 1+n)`` score matrix through :meth:`Student.training_scores`, which is
all the trainer and the score-space losses ever see.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from retrieval_kd.types import Pair, Run

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn


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
    """Teacher judgements of one teacher fingerprint: pointwise scores keyed by ``Pair``, or
    pairwise judgements keyed by ``Judgement`` (``kind``)."""

    manifest: dict[str, Any]

    @property
    def kind(self) -> str: ...

    @property
    def fingerprint(self) -> str: ...

    def missing(self, keys: Sequence[Pair]) -> list[Pair]: ...

    def add(self, keys: Sequence[Pair], values: np.ndarray) -> None: ...

    def lookup(self, keys: Sequence[Pair]) -> np.ndarray:
        """Shapes: keys[N] → float32[N]; raises naming the first key without a value."""
        ...


class TrainingScores(NamedTuple):
    """What a student hands the loss adapter for one batch of training groups.

    Attributes:
        scores: ``(B, 1+n)`` student scores; column 0 is the positive.
        regularizers: named scalar terms added to the loss (already weighted), such as the sparse
            family's FLOPS term; empty for most students.
    """

    scores: torch.Tensor
    regularizers: dict[str, torch.Tensor]


@runtime_checkable
class Student(Protocol):
    """What the trainer, evaluator and API need of every student, whatever its role.

    Attributes:
        kind: its registry name in ``retrieval_kd.students.STUDENTS`` (``"dense"``).
        role: ``"encoder"`` or ``"reranker"``.
        model: the sentence-transformers model the Trainer optimises.
        provenance: where it came from; merged into ``rkd.json`` on save.
    """

    kind: str
    role: str
    model: Any
    provenance: dict[str, Any]

    def fingerprint(self) -> str:
        """Hash of the weights and every setting that changes an output."""
        ...

    def scores(self, query_batch: Sequence[str], doc_groups: Sequence[Sequence[str]]) -> torch.Tensor:
        """Shapes: query_batch[B], doc_groups[B][1+n] → Tensor[B, 1+n]; column 0 the positive."""
        ...

    def training_scores(self, model: nn.Module, inputs: Sequence[Any], width: int) -> TrainingScores:
        """The score matrix (and regularisers) of one collated Trainer batch.

        Args:
            model: the module to run: ``self.model`` or the Trainer's wrapped copy (DDP).
            inputs: the collated columns ``query, doc0..doc{width-1}`` in the form this
                student's Trainer produces (token features for encoders, texts for rerankers).
            width: ``1+n`` documents per group.
        """
        ...

    def trainer_classes(self) -> tuple[Any, Any]:
        """The sentence-transformers ``(Trainer, TrainingArguments)`` classes for this model."""
        ...

    def training_callbacks(self) -> list[Any]:
        """Trainer callbacks the family needs (a regulariser weight schedule, say); often none."""
        ...

    def weights_changed(self) -> None:
        """Called after training: cached fingerprints are recomputed on next use."""
        ...

    def save(self, path: Path, provenance: dict[str, Any] | None = None) -> None: ...


@runtime_checkable
class Encoder(Student, Protocol):
    """A student that encodes queries and documents separately (dense, SPLADE, ColBERT).

    Attributes:
        index_kind: the ``retrieval_kd.indexes.INDEXES`` name that holds its document
            representations (``"faiss"`` for dense vectors).
    """

    index_kind: str

    def encode_queries(self, texts: Sequence[str], batch_size: int = 32) -> Any: ...

    def encode_documents(self, texts: Sequence[str], batch_size: int = 32) -> Any: ...


@runtime_checkable
class Reranker(Student, Protocol):
    """A student that scores (query, document) pairs jointly; it reranks a first-stage run."""

    def score_pairs(self, queries: Sequence[str], docs: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Shapes: queries[N], docs[N] → float32[N]."""
        ...


class StudentClass(Protocol):
    """A registered student family: how to start one and how to open a saved one."""

    def from_pretrained(
        self,
        model: str,
        num_layers: int | None = None,
        max_seq_length: int | None = None,
        device: str = "auto",
        **options: Any,
    ) -> Student: ...

    def load(self, path: Path, device: str = "auto") -> Student: ...


@runtime_checkable
class Loss(Protocol):
    def __call__(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """Shapes: student[B, 1+n], teacher[B, 1+n] → scalar; column 0 the positive."""
        ...


@runtime_checkable
class Index(Protocol):
    """Document representations of one encoder, searchable by that encoder's queries."""

    kind: str
    manifest: dict[str, Any]

    def add(self, doc_ids: Sequence[str], reps: Any) -> None: ...

    def search(self, query_ids: Sequence[str], query_reps: Any, k: int) -> Run: ...

    def check_encoder(self, student_fingerprint: str) -> None:
        """Raises unless queries encoded by this student belong in this index."""
        ...

    def save(self, path: Path) -> None: ...


class IndexClass(Protocol):
    """A registered index kind: a fresh index for an encoder, or one read back from disk."""

    def create(self, student_fingerprint: str, options: Mapping[str, Any]) -> Index:
        """An empty index; ``options`` are the kind's own settings (``[index.options]``)."""
        ...

    def load(self, path: Path) -> Index: ...

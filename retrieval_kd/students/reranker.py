"""The cross-encoder (reranker) student: a sentence-transformers ``CrossEncoder`` with one logit.

It scores a (query, document) pair jointly, so it reranks a first-stage run rather than
indexing a corpus (the ``reranker`` role), and it trains through the same adapter and
score-space losses as the encoders: its ``(B, 1+n)`` score matrix is the logits of each query
against its positive and negatives. Saved, it is a plain ``CrossEncoder`` folder plus
``rkd.json``; ``CrossEncoder(path)`` loads it and gives the same logits (with an identity
activation: rkd keeps raw logits, as teachers do).

Start one from any BERT-style backbone or CrossEncoder (``num_layers`` keeps the first layers); a
backbone gets a fresh one-logit head, which the first training run teaches, from a teacher's
store or from the qrels alone (``loss = "bce"``: positives 1, mined negatives 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from retrieval_kd.errors import RkdError
from retrieval_kd.models import pick_device, resolve_model
from retrieval_kd.protocols import TrainingScores
from retrieval_kd.students._shared import read_meta, save_student, weights_hash


def _identity() -> Any:
    import torch

    return torch.nn.Identity()


class RerankerStudent:
    """A CrossEncoder student (role ``reranker``)."""

    kind = "cross-encoder"
    role = "reranker"

    def __init__(self, model: Any, provenance: dict[str, Any] | None = None) -> None:
        self.model = model
        self.provenance: dict[str, Any] = dict(provenance or {})
        self._fingerprint: str | None = None

    @classmethod
    def from_pretrained(
        cls,
        model: str,
        num_layers: int | None = None,
        max_seq_length: int | None = None,
        device: str = "auto",
        **options: Any,
    ) -> RerankerStudent:
        from sentence_transformers import CrossEncoder

        from retrieval_kd.students.dense import truncate_layers

        if options:
            raise RkdError(f"unknown cross-encoder student option(s) {sorted(options)}; it takes none")
        path = resolve_model(model)
        ce = CrossEncoder(
            path,
            num_labels=1,
            device=pick_device(device),
            max_length=max_seq_length,
            activation_fn=_identity(),
        )
        if ce.num_labels != 1:
            raise RkdError(
                f"{model}: a cross-encoder student scores with one logit; this model has {ce.num_labels}"
            )
        if num_layers is not None:
            truncate_layers(ce, num_layers)
        return cls(ce, {"base_model": model, "num_layers": num_layers})

    @classmethod
    def load(cls, path: Path, device: str = "auto") -> RerankerStudent:
        from sentence_transformers import CrossEncoder

        if not (path / "config.json").is_file():
            raise RkdError(f"{path}: not a CrossEncoder folder (no config.json)")
        meta = read_meta(path)
        ce = CrossEncoder(str(path), device=pick_device(device), activation_fn=_identity())
        return cls(ce, meta.get("provenance"))

    def fingerprint(self) -> str:
        """Hash of the weights and the token limit: equal fingerprints give equal logits."""
        if self._fingerprint is None:
            self._fingerprint = weights_hash(self.model, f"max_length={self.model.max_length}".encode())
        return self._fingerprint

    def weights_changed(self) -> None:
        self._fingerprint = None

    def _logits(self, model: Any, queries: Sequence[str], docs: Sequence[str]) -> Tensor:
        features = self.model.preprocess(list(zip(queries, docs, strict=True)))
        features = {k: v.to(self.model.device) for k, v in features.items() if isinstance(v, Tensor)}
        logits: Tensor = model(features)["scores"]
        return logits.view(-1)

    def scores(self, query_batch: Sequence[str], doc_groups: Sequence[Sequence[str]]) -> Tensor:
        """Shapes: query_batch[B], doc_groups[B][1+n] → Tensor[B, 1+n] of logits (with gradients)."""
        width = len(doc_groups[0])
        if any(len(g) != width for g in doc_groups):
            raise ValueError("every doc group needs the same number of candidates")
        queries = [q for q, group in zip(query_batch, doc_groups, strict=True) for _ in group]
        docs = [d for group in doc_groups for d in group]
        return self._logits(self.model, queries, docs).view(len(doc_groups), width)

    def training_scores(self, model: Any, inputs: Sequence[Any], width: int) -> TrainingScores:
        """Shapes: inputs = the texts of [query, doc0..doc{width-1}] (the CrossEncoder collator
        leaves them untokenized), each of batch B → logits (B, width); no regulariser."""
        queries, columns = list(inputs[0]), [list(c) for c in inputs[1 : 1 + width]]
        pairs_q = [q for q in queries for _ in range(width)]
        pairs_d = [columns[j][i] for i in range(len(queries)) for j in range(width)]
        return TrainingScores(self._logits(model, pairs_q, pairs_d).view(len(queries), width), {})

    def score_pairs(self, queries: Sequence[str], docs: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Shapes: queries[N], docs[N] → float32[N] raw logits."""
        if not queries:
            return np.zeros(0, dtype=np.float32)
        out = self.model.predict(
            list(zip(queries, docs, strict=True)),
            batch_size=batch_size,
            activation_fn=_identity(),
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        return np.asarray(out, dtype=np.float32).reshape(len(queries))

    def training_callbacks(self) -> list[Any]:
        return []

    def trainer_classes(self) -> tuple[Any, Any]:
        from sentence_transformers import CrossEncoderTrainer, CrossEncoderTrainingArguments

        return CrossEncoderTrainer, CrossEncoderTrainingArguments

    def save(self, path: Path, provenance: dict[str, Any] | None = None) -> None:
        """A plain CrossEncoder folder, then ``rkd.json``."""
        save_student(self, path, provenance)

"""Dense bi-encoder students: a SentenceTransformer, optionally cut to its first L layers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from retrieval_kd.errors import RkdError
from retrieval_kd.models import pick_device, resolve_model
from retrieval_kd.protocols import TrainingScores
from retrieval_kd.students._shared import encode_budgeted, group_scores, read_meta, save_student, weights_hash


def truncate_layers(model: Any, num_layers: int) -> None:
    """Keeps the first ``num_layers`` transformer layers of a SentenceTransformer (in place).

    Cutting from the top keeps the embeddings and lower layers the pretrained model relies on;
    the pooled output then needs distillation to recover (DistilBERT-style initialisation).
    """
    top = model[0].auto_model
    layers = None
    # a model with a head (a CrossEncoder's *ForSequenceClassification) keeps its layers on its
    # base model
    for auto in dict.fromkeys([top, getattr(top, "base_model", top)]):
        for attr in ("encoder.layer", "layers", "encoder.layers", "transformer.layer"):
            obj = auto
            try:
                for part in attr.split("."):
                    obj = getattr(obj, part)
            except AttributeError:
                continue
            layers, layer_attr = obj, attr
            break
        if layers is not None:
            break
    if layers is None:
        raise RkdError(f"cannot truncate {type(top).__name__}: no encoder layer list found")
    total = len(layers)
    if not 1 <= num_layers <= total:
        raise RkdError(f"num_layers={num_layers} but the model has {total} layers; choose 1..{total}")
    parent = auto
    *path, last = layer_attr.split(".")
    for part in path:
        parent = getattr(parent, part)
    setattr(parent, last, torch.nn.ModuleList(list(layers)[:num_layers]))
    for cfg_attr in ("num_hidden_layers", "n_layers", "num_layers"):
        if hasattr(top.config, cfg_attr):
            setattr(top.config, cfg_attr, num_layers)


class DenseStudent:
    """A SentenceTransformer student. Saved, it is a plain sentence-transformers folder plus
    ``rkd.json``; ``SentenceTransformer(path)`` loads it and gives the same vectors."""

    kind = "dense"
    role = "encoder"
    index_kind = "faiss"

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
    ) -> DenseStudent:
        from sentence_transformers import SentenceTransformer

        if options:
            raise RkdError(f"unknown dense student option(s) {sorted(options)}; the dense student takes none")

        path = resolve_model(model)
        st = SentenceTransformer(path, device=pick_device(device))
        if num_layers is not None:
            truncate_layers(st, num_layers)
        if max_seq_length is not None:
            st.max_seq_length = max_seq_length
        return cls(st, {"base_model": model, "num_layers": num_layers})

    @classmethod
    def load(cls, path: Path, device: str = "auto") -> DenseStudent:

        from sentence_transformers import SentenceTransformer

        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise RkdError(f"{path}: not a sentence-transformers model folder (no modules.json)")
        meta = read_meta(path)
        return cls(SentenceTransformer(str(path), device=pick_device(device)), meta.get("provenance"))

    def fingerprint(self) -> str:
        """Hash of the weights and encoding settings: equal fingerprints give equal vectors."""
        if self._fingerprint is None:
            settings = f"max_seq_length={self.model.max_seq_length}" + str(
                [type(m).__name__ for m in self.model]
            )
            self._fingerprint = weights_hash(self.model, settings.encode())
        return self._fingerprint

    def weights_changed(self) -> None:
        """Call after training: the fingerprint is recomputed on next use."""
        self._fingerprint = None

    @property
    def similarity(self) -> str:
        return str(self.model.similarity_fn_name or "cosine")

    def encode_queries(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Shapes: texts[N] → float32[N, dim] (token-budget batches, :func:`encode_budgeted`)."""
        out = encode_budgeted(self.model, texts, batch_size, "query") if len(texts) else None
        if out is None:
            out = self.model.encode_query(list(texts), batch_size=batch_size, convert_to_numpy=True)
        return np.asarray(out, dtype=np.float32)

    def encode_documents(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Shapes: texts[N] → float32[N, dim] (token-budget batches, :func:`encode_budgeted`)."""
        out = encode_budgeted(self.model, texts, batch_size, "document") if len(texts) else None
        if out is None:
            out = self.model.encode_document(list(texts), batch_size=batch_size, convert_to_numpy=True)
        return np.asarray(out, dtype=np.float32)

    def scores(self, query_batch: Sequence[str], doc_groups: Sequence[Sequence[str]]) -> Tensor:
        """Shapes: query_batch[B], doc_groups[B][1+n] → Tensor[B, 1+n] (with gradients)."""
        return group_scores(
            self.model, query_batch, doc_groups, lambda q, d: score_matrix(q, d, self.similarity)
        )

    def training_scores(self, model: Any, inputs: Sequence[Any], width: int) -> TrainingScores:
        """Shapes: inputs = token features of [query, doc0..doc{width-1}], each of batch B →
        scores (B, width); a dense student declares no regulariser."""
        from sentence_transformers.base.losses.merged_forward import embed_columns

        embeddings = embed_columns(model, list(inputs))
        q = embeddings[0]  # (B, dim)
        d = torch.stack(embeddings[1 : 1 + width], dim=1)  # (B, 1+n, dim)
        return TrainingScores(score_matrix(q, d, self.similarity), {})

    def training_callbacks(self) -> list[Any]:
        return []

    def trainer_classes(self) -> tuple[Any, Any]:
        from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

        return SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    def save(self, path: Path, provenance: dict[str, Any] | None = None) -> None:
        """A plain sentence-transformers folder, then ``rkd.json`` (its presence marks a complete save)."""
        save_student(self, path, provenance)


def score_matrix(q: Tensor, d: Tensor, similarity: str) -> Tensor:
    """Shapes: q (B, dim), d (B, 1+n, dim) → (B, 1+n) by ``cosine`` or ``dot``."""
    if similarity == "cosine":
        q = torch.nn.functional.normalize(q, dim=-1)
        d = torch.nn.functional.normalize(d, dim=-1)
    elif similarity != "dot":
        raise RkdError(f"unsupported similarity {similarity!r}; choose from ['cosine', 'dot']")
    return torch.einsum("bd,bnd->bn", q, d)

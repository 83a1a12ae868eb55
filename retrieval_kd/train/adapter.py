"""The thin adapter that lets sentence-transformers' Trainer call rkd's score-space losses."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from retrieval_kd.students.dense import score_matrix


class ScoreSpaceLoss(nn.Module):
    """Embeds the (query, doc_0..doc_n) columns, builds the (B, 1+n) score matrix with the
    student's own similarity and hands it, with the teacher's (B, 1+n) label matrix, to a
    score-space loss.

    The Trainer needs a module with ``model`` and ``forward(features, labels)``; everything else
    (batching, schedule, devices, multi-GPU) stays the Trainer's.
    """

    def __init__(self, model: Any, loss: nn.Module, similarity: str = "cosine") -> None:
        super().__init__()
        self.model = model
        self.loss = loss
        self.similarity = similarity

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        from sentence_transformers.base.losses.merged_forward import embed_columns

        embeddings = embed_columns(self.model, list(sentence_features))
        q = embeddings[0]  # (B, dim)
        d = torch.stack(embeddings[1:], dim=1)  # (B, 1+n, dim)
        scores = score_matrix(q, d, self.similarity)
        out: Tensor = self.loss(scores, labels.to(scores.dtype))
        return out

    @property
    def citation(self) -> str:
        return ""

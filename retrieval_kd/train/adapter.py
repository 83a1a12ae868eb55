"""The one adapter that lets every sentence-transformers Trainer call rkd's score-space losses."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from retrieval_kd.protocols import Student


class ScoreSpaceLoss(nn.Module):
    """Asks the student for the ``(B, 1+n)`` score matrix of a collated batch (and any regulariser
    terms it declares) and hands the matrix, with the teacher's ``(B, 1+n)`` label matrix, to a
    score-space loss. Nothing here knows the student's family.

    The Trainer needs a module with ``model`` and ``forward(features, labels)``; it may replace
    ``model`` by its wrapped copy (DDP), which is why the student is asked to score with
    ``self.model``. Everything else (batching, schedule, devices, multi-GPU) stays the Trainer's.

    ``weighted`` (data-parallel runs, :mod:`retrieval_kd.train.sampler`): each label row ends
    with a weight, 0 on the padding row of a rank the last step left without a group; the loss
    of a rank with ``n`` of the step's ``m`` groups is scaled by ``n × world / m``, so the
    gradient DDP averages is the mean over the step's groups, as in one process.

    Attributes:
        last_terms: the loss and each regulariser of the last batch, detached (for logging).
    """

    def __init__(self, student: Student, loss: nn.Module, width: int, weighted: bool = False) -> None:
        super().__init__()
        self.model = student.model
        self.loss = loss
        self.width = width
        self.weighted = weighted
        self._student = student  # not a submodule: its model is already registered above
        self.last_terms: dict[str, float] = {}

    def forward(self, inputs: Iterable[Any], labels: Tensor | Sequence[Any], **_: Any) -> Tensor:
        """``**_``: what a Trainer passes besides (``prompt``, ``task``); the student's own
        preprocessing already applies them. Labels arrive as a tensor, or as lists of the
        teacher's scores from a collator that leaves columns untokenized (CrossEncoder's)."""
        scores, regularizers = self._student.training_scores(self.model, list(inputs), self.width)
        if isinstance(labels, Tensor):
            teacher = labels
        elif labels and isinstance(labels[0], Tensor):
            teacher = torch.stack(list(labels))
        else:
            teacher = torch.as_tensor(labels)
        teacher = teacher.to(device=scores.device, dtype=scores.dtype)
        scale = None
        if self.weighted:
            teacher, scale = teacher[:, :-1], _rank_share(teacher[:, -1])
        out: Tensor = self.loss(scores, teacher)
        self.last_terms = {"distill": float(out.detach())}
        for name, term in regularizers.items():
            out = out + term
            self.last_terms[name] = float(term.detach())
        return out if scale is None else out * scale

    @property
    def citation(self) -> str:
        return ""


def _rank_share(weights: Tensor) -> float:
    """``n × world / m``: this rank's ``n`` real groups (weight 1; a padding row has 0) against
    the ``m`` of the whole step (one scalar all-reduce)."""
    import torch.distributed as dist

    n = weights.float().sum()
    m = n.detach().clone()
    dist.all_reduce(m)
    return float(n) * dist.get_world_size() / float(m)

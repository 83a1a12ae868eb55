"""Pairwise RankNet on teacher-ordered pairs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from retrieval_kd.losses._check import check_shapes


class Pairwise(nn.Module):
    """RankNet: for every candidate pair the teacher orders (t_i > t_j + margin), the student pays
    log(1 + exp(-(s_i - s_j) / temperature)). Mean over the ordered pairs of the batch; pairs the
    teacher ties (within ``margin``) are skipped.

    Shapes:
        student: (batch, 1 + n); teacher: (batch, 1 + n) → scalar.

    References:
        Burges et al., 2005, "Learning to Rank using Gradient Descent" (RankNet), ICML.

    Example:
        One ordered pair, student margin 1: ln(1 + e⁻¹) = 0.3133.

        >>> import torch
        >>> Pairwise()(torch.tensor([[1.0, 0.0]]), torch.tensor([[5.0, 2.0]]))
        tensor(0.3133)
    """

    def __init__(self, temperature: float = 1.0, margin: float = 0.0) -> None:
        super().__init__()
        self.temperature = temperature
        self.margin = margin

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        check_shapes(student, teacher)
        s_diff = student.unsqueeze(2) - student.unsqueeze(1)  # (batch, n, n): s_i - s_j
        ordered = (teacher.unsqueeze(2) - teacher.unsqueeze(1)) > self.margin  # teacher says i > j
        if not bool(ordered.any()):
            return student.sum() * 0.0  # keeps the graph; nothing to learn from ties
        return F.softplus(-s_diff[ordered] / self.temperature).mean().to(torch.float32)

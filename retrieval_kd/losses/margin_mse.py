"""Margin-MSE."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from retrieval_kd.losses._check import check_shapes


class MarginMSE(nn.Module):
    """Margin-MSE: the student's positive–negative margins regress onto the teacher's.

    Data: a query, its positive (column 0) and n negatives, with teacher scores for each.
    Margins are compared in raw score units, so teacher and student scores must live on
    comparable scales (or set ``teacher_scale``).

    Shapes:
        student: (batch, 1 + n_neg); teacher: (batch, 1 + n_neg) → scalar.

    References:
        Hofstätter et al., 2020, "Improving Efficient Neural Ranking Models with Cross-Architecture
        Knowledge Distillation", arXiv:2010.02666.

    Example:
        >>> import torch
        >>> MarginMSE()(torch.tensor([[3.0, 1.0, 0.0]]), torch.tensor([[2.0, 1.0, 1.0]]))
        tensor(2.5000)
    """

    def __init__(self, teacher_scale: float = 1.0) -> None:
        super().__init__()
        self.teacher_scale = teacher_scale

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        check_shapes(student, teacher)
        teacher = teacher * self.teacher_scale
        # (batch, n_neg) margins on both sides
        return F.mse_loss(student[:, :1] - student[:, 1:], teacher[:, :1] - teacher[:, 1:])

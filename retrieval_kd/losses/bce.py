"""Binary cross-entropy on the positive and the mined negatives: training without a teacher."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from retrieval_kd.losses._check import check_shapes


class BinaryCrossEntropy(nn.Module):
    """Each student score is a logit: column 0 (the qrels positive) should be 1, every mined
    negative 0. The teacher's scores are not used, so any store of the candidates serves (the
    usual way to train a cross-encoder of one's own domain from qrels alone, as
    sentence-transformers' ``BinaryCrossEntropyLoss`` over hard negatives does); mined negatives
    can be false negatives, so a teacher's scores are better when there is one.

    Args:
        pos_weight: weight of the positive's term, to balance 1 positive against n negatives
            (default 1: each pair counts once).

    Shapes:
        student: (batch, 1 + n); teacher: (batch, 1 + n), ignored → scalar.

    Example:
        Logit 0 for the positive and for the negative: ln 2 each, mean 0.6931.

        >>> BinaryCrossEntropy()(torch.zeros(1, 2), torch.tensor([[9.0, 1.0]]))
        tensor(0.6931)
    """

    def __init__(self, pos_weight: float = 1.0) -> None:
        super().__init__()
        self.pos_weight = pos_weight

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        check_shapes(student, teacher)
        target = torch.zeros_like(student)
        target[:, 0] = 1.0
        weight = torch.ones_like(student)
        weight[:, 0] = self.pos_weight
        return F.binary_cross_entropy_with_logits(student.float(), target.float(), weight=weight.float())

"""Listwise KL divergence."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from retrieval_kd.losses._check import check_shapes, check_temperatures


class KLDiv(nn.Module):
    """KL(teacher ‖ student) between softmaxes over each query's 1 + n candidates.

    Temperatures are separate because teacher and student scores live on different scales: a
    cosine student spans [-1, 1], a cross-encoder teacher spans tens of logits. Divide each side
    by its temperature so both softmaxes are neither flat nor one-hot.

    Shapes:
        student: (batch, 1 + n); teacher: (batch, 1 + n) → scalar (mean over the batch).

    References:
        Hinton et al., 2015, "Distilling the Knowledge in a Neural Network", arXiv:1503.02531;
        Lin et al., 2020, "Distilling Dense Representations for Ranking using Tightly-Coupled
        Teachers", arXiv:2010.11386.

    Example:
        Teacher probabilities (1/4, 3/4), student (1/2, 1/2):
        KL = 1/4·ln(1/2) + 3/4·ln(3/2) = 0.1308.

        >>> import math, torch
        >>> KLDiv()(torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, math.log(3)]]))
        tensor(0.1308)
    """

    def __init__(self, student_temperature: float = 1.0, teacher_temperature: float = 1.0) -> None:
        super().__init__()
        self.student_temperature, self.teacher_temperature = check_temperatures(
            student_temperature, teacher_temperature
        )

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        check_shapes(student, teacher)
        log_q = F.log_softmax(student / self.student_temperature, dim=1)
        log_p = F.log_softmax(teacher.float() / self.teacher_temperature, dim=1)
        return F.kl_div(log_q, log_p, reduction="batchmean", log_target=True)

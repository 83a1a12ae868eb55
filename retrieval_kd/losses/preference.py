"""Pairwise preference distillation: the student's score margins learn the teacher's stored
preferences directly (PairDistill)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from retrieval_kd.losses._check import check_temperatures


class Preference(nn.Module):
    """Binary cross-entropy between the student's and the teacher's probability that ``a``
    beats ``b``, for every pair of a group's documents the teacher compared:

    ``mean over compared pairs a < b of BCE(σ((s_a − s_b) / T_s), σ(p_ab / T_t))``

    per group, then the mean over the groups that compared any pair.

    Data: a pairwise score store (``llm-pairwise``). Each label row is the row-major ``w × w``
    matrix of the teacher's position-debiased preference logits between the group's ``w``
    documents, ``p_ab`` at ``[a·w + b]`` (:func:`retrieval_kd.scores.targets.combine`: both
    orders of a comparison averaged), NaN where the store holds no comparison of the pair; only
    the upper triangle (``a < b``) is read, ``p_ba = −p_ab`` by construction.

    PairDistill averages over every compared pair of the batch; here each group weighs the
    same whatever number of its pairs the teacher compared (equal when it compared them all),
    so the loss is a mean over groups like every other rkd loss, which is what keeps a
    data-parallel step (ranks weighted by their groups) equal to the one-process step.

    PairDistill's code writes the same term as KL([σ(p), 1 − σ(p)] ‖ softmax([s_a, s_b])), which
    is this cross-entropy minus the teacher's binary entropy: the gradients are equal, and the
    value here does not fall to 0 at the optimum but to that entropy (0.5623 nats for p = ln 3).
    PairDistill adds it to a pointwise KL term; here it is the whole loss.

    Args:
        student_temperature: ``T_s``, divides the student's margins (a cosine student spans
            [-2, 2]: a small ``T_s`` lets its probabilities reach the teacher's).
        teacher_temperature: ``T_t``, divides the teacher's logits (above 1 softens them).

    Shapes:
        student: (batch, w); teacher: (batch, w·w) → scalar.

    References:
        Huang & Chen, 2024, "PairDistill: Pairwise Relevance Distillation for Dense Retrieval",
        EMNLP, arXiv:2410.01383 (``pair_distill_loss`` in github.com/MiuLab/PairDistill);
        Qin et al., 2024, "Large Language Models are Effective Text Rankers with Pairwise Ranking
        Prompting" (PRP, both orders of a pair), arXiv:2306.17563.

    Example:
        Teacher logit ln 3 for doc 0 over doc 1 (σ = 3/4), student margin 0 (σ = 1/2):
        −(3/4·ln ½ + 1/4·ln ½) = ln 2. At student margin ln 3 the cross-entropy is the
        teacher's entropy, −(3/4·ln ¾ + 1/4·ln ¼) = 0.5623.

        >>> import math
        >>> nan, p = float("nan"), math.log(3)
        >>> Preference()(torch.tensor([[0.0, 0.0]]), torch.tensor([[nan, p, -p, nan]]))
        tensor(0.6931)
        >>> Preference()(torch.tensor([[p, 0.0]]), torch.tensor([[nan, p, -p, nan]]))
        tensor(0.5623)
    """

    judgements = "pairwise"  # the store kind its labels come from (the trainer checks it)

    def __init__(self, student_temperature: float = 1.0, teacher_temperature: float = 1.0) -> None:
        super().__init__()
        self.student_temperature, self.teacher_temperature = check_temperatures(
            student_temperature, teacher_temperature
        )

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        if student.dim() != 2 or student.shape[1] < 2:
            raise ValueError(f"student scores must be (batch, w) with w >= 2, got {tuple(student.shape)}")
        batch, width = student.shape
        if tuple(teacher.shape) != (batch, width * width):
            raise ValueError(
                f"shape mismatch: student {tuple(student.shape)} needs a preference matrix of shape "
                f"{(batch, width * width)} (row-major w × w), got teacher {tuple(teacher.shape)}"
            )
        a, b = torch.triu_indices(width, width, offset=1, device=student.device)
        prefs = teacher.float().view(batch, width, width)[:, a, b]  # (batch, pairs): p_ab, a < b
        margins = student.float()[:, a] - student.float()[:, b]  # (batch, pairs): s_a − s_b
        compared = torch.isfinite(prefs)
        counts = compared.sum(dim=1)  # (batch,): compared pairs per group
        if not bool((counts > 0).any()):
            return student.sum() * 0.0  # keeps the graph; nothing compared, nothing to learn
        terms = F.binary_cross_entropy_with_logits(
            margins / self.student_temperature,
            torch.sigmoid(prefs.nan_to_num(0.0) / self.teacher_temperature),
            reduction="none",
        )  # (batch, pairs)
        per_group = (terms * compared).sum(dim=1)[counts > 0] / counts[counts > 0]
        return per_group.mean()

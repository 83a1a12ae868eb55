"""The preference loss against values derived by hand and against PairDistill's own formulation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from retrieval_kd.losses import build_loss
from retrieval_kd.losses.preference import Preference

NAN = float("nan")
LN3 = math.log(3)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def bce(margin: float, target: float) -> float:
    """BCE of a logit against a soft target: softplus(x) − x·y."""
    return softplus(margin) - margin * target


def test_by_hand_mean_per_group_then_over_groups() -> None:
    # row 0, w = 3: s = (2, 0, 1); p01 = ln 3 (σ = 3/4), p02 = 0 (σ = 1/2), p12 not compared
    # row 1: s = (0, 0, 0); only p12 = −ln 3 (σ = 1/4); row 2: nothing compared, left out
    student = torch.tensor([[2.0, 0.0, 1.0], [0.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
    teacher = torch.tensor(
        [
            [NAN, LN3, 0.0, -LN3, NAN, NAN, 0.0, NAN, NAN],
            [NAN, NAN, NAN, NAN, NAN, -LN3, NAN, LN3, NAN],
            [NAN] * 9,
        ]
    )
    row0 = [bce(2.0, 0.75), bce(1.0, 0.5)]  # 0.626928, 0.813262
    assert row0 == pytest.approx([0.626928, 0.813262], abs=1e-6)
    expected = (sum(row0) / 2 + bce(0.0, 0.25)) / 2  # (0.720095 + ln 2) / 2
    got = Preference()(student, teacher).item()
    assert got == pytest.approx(expected, abs=1e-6)
    assert got == pytest.approx(0.706621, abs=1e-6)


def test_temperatures_scale_each_side() -> None:
    # T_s = 2 halves the student's margin, T_t = 2 halves the teacher's logit
    teacher = torch.tensor([[NAN, 2 * LN3, -2 * LN3, NAN]])
    got = Preference(student_temperature=2.0, teacher_temperature=2.0)(torch.tensor([[2.0, 0.0]]), teacher)
    assert got.item() == pytest.approx(bce(1.0, 0.75), abs=1e-6)
    assert bce(1.0, 0.75) == pytest.approx(0.563262, abs=1e-6)


def test_only_the_upper_triangle_is_read() -> None:
    student = torch.tensor([[0.5, -0.5, 1.0]])
    upper = torch.tensor([[NAN, 1.0, -2.0, NAN, NAN, 0.5, NAN, NAN, NAN]])
    filled = torch.tensor([[7.0, 1.0, -2.0, 9.0, 7.0, 0.5, 9.0, 9.0, 7.0]])
    assert Preference()(student, filled).item() == pytest.approx(
        Preference()(student, upper).item(), abs=1e-7
    )


def test_gradient_by_hand() -> None:
    # d/ds_a BCE(s_a − s_b, y) = σ(s_a − s_b) − y: (1/2 − 3/4) = −1/4 on s_a, +1/4 on s_b
    student = torch.zeros(1, 2, requires_grad=True)
    Preference()(student, torch.tensor([[NAN, LN3, -LN3, NAN]])).backward()
    assert student.grad is not None
    assert student.grad[0].tolist() == pytest.approx([-0.25, 0.25], abs=1e-6)


def pair_distill_reference(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """PairDistill's ``pair_distill_loss`` (github.com/MiuLab/PairDistill, ColBERT/colbert/
    training/training.py): per compared pair, KL([q, 1 − q] ‖ softmax([s_i, s_j])) with q the
    teacher's probability that i beats j; the mean over the pairs."""
    width = student.shape[1]
    terms = []
    for row in range(student.shape[0]):
        for i in range(width):
            for j in range(i + 1, width):
                p = teacher[row, i * width + j]
                if torch.isfinite(p):
                    q = torch.sigmoid(p)
                    target = torch.stack([q, 1 - q]).unsqueeze(0)
                    log_probs = F.log_softmax(student[row, [i, j]], dim=-1).unsqueeze(0)
                    terms.append(torch.nn.KLDivLoss(reduction="batchmean")(log_probs, target))
    return torch.stack(terms).mean()


def entropy(teacher: torch.Tensor, width: int) -> torch.Tensor:
    """The mean binary entropy of σ(p) over the compared pairs a < b."""
    a, b = torch.triu_indices(width, width, offset=1)
    q = torch.sigmoid(teacher.view(-1, width, width)[:, a, b])
    q = q[torch.isfinite(q)]
    return -(q * q.log() + (1 - q) * (1 - q).log()).mean()


def test_equals_pair_distill_kl_plus_teacher_entropy_with_equal_gradients() -> None:
    gen = torch.Generator().manual_seed(0)
    student = torch.randn(3, 4, generator=gen)
    teacher = torch.randn(3, 16, generator=gen) * 2
    # every pair compared: PairDistill's mean over the batch's pairs is the mean per group too
    ours_in = student.clone().requires_grad_(True)
    ref_in = student.clone().requires_grad_(True)
    ours = Preference()(ours_in, teacher)
    reference = pair_distill_reference(ref_in, teacher)
    assert ours.item() == pytest.approx((reference + entropy(teacher, 4)).item(), abs=1e-6)
    ours.backward()
    reference.backward()
    assert ours_in.grad is not None and ref_in.grad is not None
    torch.testing.assert_close(ours_in.grad, ref_in.grad, atol=1e-7, rtol=1e-6)
    # some pairs not compared: each group is PairDistill's value over its own pairs
    teacher[0, 1] = NAN
    teacher[1, [2, 7]] = NAN
    rows = [pair_distill_reference(student[r : r + 1], teacher[r : r + 1]) for r in range(3)]
    rows = [ref + entropy(teacher[r : r + 1], 4) for r, ref in enumerate(rows)]
    assert Preference()(student, teacher).item() == pytest.approx(float(torch.stack(rows).mean()), abs=1e-6)


def test_nothing_compared_is_zero_and_keeps_the_graph() -> None:
    student = torch.ones(2, 3, requires_grad=True)
    loss = Preference()(student, torch.full((2, 9), NAN))
    loss.backward()
    assert loss.item() == 0.0 and student.grad is not None and float(student.grad.abs().sum()) == 0.0


def test_shapes_options_and_registry() -> None:
    loss = build_loss("preference", student_temperature=0.05, teacher_temperature=2.0)
    assert isinstance(loss, Preference) and loss.judgements == "pairwise"
    assert (loss.student_temperature, loss.teacher_temperature) == (0.05, 2.0)
    with pytest.raises(ValueError, match=r"shape mismatch: student \(2, 3\) needs .* \(2, 9\)"):
        loss(torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"\(batch, w\) with w >= 2"):
        loss(torch.zeros(2, 1), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="temperatures must be positive"):
        Preference(student_temperature=0.0)

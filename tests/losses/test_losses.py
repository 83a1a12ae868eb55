"""Losses against values derived by hand (the arithmetic is in each test)."""

from __future__ import annotations

import doctest
import importlib
import math

import pytest
import torch

from retrieval_kd.errors import ConfigError, RkdError
from retrieval_kd.losses import LOSSES, build_loss
from retrieval_kd.losses.kl import KLDiv
from retrieval_kd.losses.margin_mse import MarginMSE
from retrieval_kd.losses.pairwise import Pairwise


def test_margin_mse_by_hand() -> None:
    # margins student (3-1, 3-0) = (2, 3); teacher (2-1, 2-1) = (1, 1); MSE = (1 + 4) / 2 = 2.5
    s = torch.tensor([[3.0, 1.0, 0.0]])
    t = torch.tensor([[2.0, 1.0, 1.0]])
    assert MarginMSE()(s, t).item() == pytest.approx(2.5)
    # teacher_scale 2: teacher margins (2, 2); MSE = (0 + 1) / 2 = 0.5
    assert MarginMSE(teacher_scale=2.0)(s, t).item() == pytest.approx(0.5)


def test_margin_mse_is_shift_invariant_per_row() -> None:
    s = torch.tensor([[3.0, 1.0, 0.0], [0.5, 0.2, 0.1]])
    t = torch.tensor([[2.0, 1.0, 1.0], [9.0, 8.0, 7.0]])
    assert MarginMSE()(s + 10, t - 3).item() == pytest.approx(MarginMSE()(s, t).item())


def test_kl_by_hand() -> None:
    # teacher softmax of (0, ln 3) = (1/4, 3/4); student (0, 0) → (1/2, 1/2)
    # KL = 1/4 ln(1/2) + 3/4 ln(3/2)
    expected = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    got = KLDiv()(torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, math.log(3)]]))
    assert got.item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.130812, abs=1e-6)


def test_kl_temperatures_scale_each_side() -> None:
    # teacher (0, 0.05·ln 3) at T=0.05 is the same distribution as (0, ln 3) at T=1
    t = torch.tensor([[0.0, 0.05 * math.log(3)]])
    s = torch.tensor([[0.0, 0.0]])
    got = KLDiv(student_temperature=0.05, teacher_temperature=0.05)(s, t).item()
    assert got == pytest.approx(0.130812, abs=1e-5)


def test_kl_zero_when_equal_and_batch_mean() -> None:
    s = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    assert KLDiv()(s, s).item() == pytest.approx(0.0, abs=1e-7)
    one = KLDiv()(torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, math.log(3)]])).item()
    two = KLDiv()(
        torch.tensor([[0.0, 0.0], [0.0, 0.0]]), torch.tensor([[0.0, math.log(3)], [0.0, 0.0]])
    ).item()
    assert two == pytest.approx(one / 2, abs=1e-6)  # second row contributes 0, mean over 2 rows


def test_pairwise_by_hand() -> None:
    # teacher orders 0 > 1 > 2: pairs (0,1), (0,2), (1,2); student diffs 1, 2, 1
    # mean of ln(1+e^-1), ln(1+e^-2), ln(1+e^-1)
    s = torch.tensor([[2.0, 1.0, 0.0]])
    t = torch.tensor([[3.0, 2.0, 1.0]])
    expected = (2 * math.log1p(math.exp(-1)) + math.log1p(math.exp(-2))) / 3
    assert Pairwise()(s, t).item() == pytest.approx(expected, abs=1e-6)


def test_pairwise_skips_ties_and_keeps_graph() -> None:
    s = torch.tensor([[2.0, 1.0]], requires_grad=True)
    loss = Pairwise()(s, torch.tensor([[1.0, 1.0]]))
    assert loss.item() == 0.0
    loss.backward()
    assert s.grad is not None


def test_losses_reject_mismatched_shapes() -> None:
    for name in LOSSES:
        with pytest.raises(ValueError, match="shape mismatch"):
            build_loss(name)(torch.zeros(2, 3), torch.zeros(2, 4))


def test_registry_errors_list_choices() -> None:
    with pytest.raises(
        RkdError,
        match=r"unknown loss 'mse2'; choose from \['bce', 'kl', 'margin_mse', 'pairwise', 'preference'\]",
    ):
        build_loss("mse2")
    with pytest.raises(ConfigError, match=r"loss 'kl' has no option\(s\) \['temp'\]"):
        build_loss("kl", temp=1.0)


@pytest.mark.parametrize(
    "module",
    [
        "retrieval_kd.losses.kl",
        "retrieval_kd.losses.margin_mse",
        "retrieval_kd.losses.pairwise",
        "retrieval_kd.registry",
        "retrieval_kd.fingerprint",
    ],
)
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0

from __future__ import annotations

from torch import Tensor


def check_shapes(student: Tensor, teacher: Tensor) -> None:
    if student.shape != teacher.shape:
        raise ValueError(f"shape mismatch: student {tuple(student.shape)} vs teacher {tuple(teacher.shape)}")
    if student.dim() != 2 or student.shape[1] < 2:
        raise ValueError(f"scores must be (batch, 1 + n_neg) with n_neg >= 1, got {tuple(student.shape)}")


def check_temperatures(student: float, teacher: float) -> tuple[float, float]:
    """Both temperatures, refused unless positive."""
    if student <= 0 or teacher <= 0:
        raise ValueError("temperatures must be positive")
    return student, teacher

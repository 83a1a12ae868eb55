"""Teachers: models that score query–passage pairs into the score store.

``TEACHERS.names()`` lists them without importing torch; ``build_teacher`` constructs one.
"""

from __future__ import annotations

from typing import Any

from retrieval_kd.protocols import Teacher
from retrieval_kd.registry import Registry

TEACHERS: Registry[Any] = Registry(
    "teacher",
    {
        "bi-encoder": "retrieval_kd.teachers.bi_encoder:BiEncoderTeacher",
        "cross-encoder": "retrieval_kd.teachers.cross_encoder:CrossEncoderTeacher",
        "student": "retrieval_kd.teachers.student_teacher:StudentTeacher",
        "llm-pointwise": "retrieval_kd.teachers.llm_pointwise:LlmPointwiseTeacher",
        "llm-pairwise": "retrieval_kd.teachers.llm_pairwise:LlmPairwiseTeacher",
        "llm-listwise": "retrieval_kd.teachers.llm_listwise:LlmListwiseTeacher",
        "ensemble": "retrieval_kd.stages.ensemble:EnsembleTeacher",  # a recipe's fused members
    },
)


def build_teacher(kind: str, model: str, **options: Any) -> Teacher:
    """Builds the teacher ``kind`` from a hub id or folder, with its keyword options."""
    teacher: Teacher = TEACHERS.get(kind)(model, **options)
    return teacher


__all__ = ["TEACHERS", "build_teacher"]

"""Any saved rkd student as a teacher: it scores pairs with its own ``scores()`` (TCT-ColBERT's
late-interaction teacher for a dense student, or a distilled student teaching the next one)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retrieval_kd.errors import RkdError
from retrieval_kd.fingerprint import hash_json
from retrieval_kd.teachers.cross_encoder import autocast


class StudentTeacher:
    """Scores pairs with a saved rkd student (a folder with ``rkd.json``), whatever its family.

    Args:
        model: the student's folder.
        max_length: the student's token limit (None: as saved); part of the fingerprint.
        dtype: ``float32``, ``bfloat16`` or ``float16`` autocast; part of the fingerprint.
        batch_size: pairs per forward pass.
        device: ``auto``, ``cpu``, ``cuda``...

    References:
        Lin, Yang, Lin, "In-Batch Negatives for Knowledge Distillation with Tightly-Coupled
        Teachers for Dense Retrieval" (TCT-ColBERT), arXiv:2010.11386.
    """

    kind = "student"

    def __init__(
        self,
        model: str,
        max_length: int | None = None,
        dtype: str = "float32",
        batch_size: int = 32,
        device: str = "auto",
    ) -> None:
        from retrieval_kd.models import pick_device, torch_dtype
        from retrieval_kd.students import open_student

        torch_dtype(dtype)
        if not (Path(model) / "rkd.json").is_file():
            raise RkdError(
                f"{model}: not a saved rkd student (no rkd.json); --teacher student takes a folder "
                "written by `rkd train` (use --teacher bi-encoder or cross-encoder for other models)"
            )
        self.name = str(model)
        self.device = pick_device(device)
        self.dtype = dtype
        self.batch_size = batch_size
        self.student = open_student(model, max_seq_length=max_length, device=self.device)
        self._fingerprint = hash_json(
            {
                "kind": self.kind,
                "student_kind": self.student.kind,
                "student": self.student.fingerprint(),  # weights and every encoding setting
                "dtype": dtype,
            }
        )

    def fingerprint(self) -> str:
        return self._fingerprint

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.name, "student_kind": self.student.kind, "dtype": self.dtype}

    def score(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        """Shapes: queries[N], passages[N] → float32[N], the student's score of each pair."""
        import torch

        if len(queries) != len(passages):
            raise ValueError(f"{len(queries)} queries but {len(passages)} passages")
        out = []
        with torch.inference_mode(), autocast(self.device, self.dtype):
            for start in range(0, len(queries), self.batch_size):
                q = list(queries[start : start + self.batch_size])
                docs = [[p] for p in passages[start : start + self.batch_size]]
                out.append(self.student.scores(q, docs)[:, 0].float().cpu().numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, dtype=np.float32)

"""A teacher that returns NaN for its second batch (registered by test_cli_errors)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


class NanTeacher:
    kind = "nan-test"

    def __init__(self, model: str, **options: Any) -> None:
        self.calls = 0

    def fingerprint(self) -> str:
        return "nan-teacher"

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind}

    def score(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        self.calls += 1
        out = np.ones(len(queries), dtype=np.float32)
        if self.calls == 2:
            out[-1] = np.nan
        return out

"""Any sentence-transformers CrossEncoder as a teacher, returning raw logits."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retrieval_kd.errors import RkdError
from retrieval_kd.fingerprint import hash_json, hash_model_dir
from retrieval_kd.models import pick_device, resolve_model, torch_dtype


@contextlib.contextmanager
def autocast(device: str, dtype: str) -> Iterator[None]:
    """bf16/fp16 autocast when asked for (1.7× faster on CPUs with avx512_bf16), else nothing."""
    if dtype == "float32":
        yield
        return
    import torch

    with torch.autocast(device_type=device.split(":")[0], dtype=torch_dtype(dtype)):
        yield


def require_classifier_head(path: Path) -> None:
    """A backbone without a trained classification head would get a fresh random head on every
    load: its scores would be noise and differ between runs under one fingerprint. Refuse it."""
    import json

    config = path / "config.json"
    archs = json.loads(config.read_text()).get("architectures") or [] if config.is_file() else []
    if not any(a.endswith("ForSequenceClassification") for a in archs):
        raise RkdError(
            f"{path} is not a cross-encoder: its config.json names {archs or 'no architecture'}, not a "
            "*ForSequenceClassification head, so its scores would be random. Train a cross-encoder "
            "from it first (sentence-transformers CrossEncoderTrainer) or pass a CrossEncoder folder"
        )


class CrossEncoderTeacher:
    """Scores pairs with a CrossEncoder's logits.

    CrossEncoder squashes a one-label output with a sigmoid by default; margins and KL targets
    need the raw logit, so the activation is replaced by the identity.

    Args:
        model: hub id or folder of a CrossEncoder (or a backbone to start one from).
        max_length: tokens per pair; part of the fingerprint.
        dtype: ``float32``, ``bfloat16`` or ``float16`` autocast; part of the fingerprint.
        batch_size: pairs per forward pass.
        device: ``auto``, ``cpu``, ``cuda``...
    """

    kind = "cross-encoder"

    def __init__(
        self,
        model: str,
        max_length: int | None = None,
        dtype: str = "float32",
        batch_size: int = 32,
        device: str = "auto",
    ) -> None:
        import torch
        from sentence_transformers import CrossEncoder

        torch_dtype(dtype)  # validates the name before the slow load
        self.name = str(model)
        self.path = resolve_model(str(model))
        require_classifier_head(Path(self.path))
        self.device = pick_device(device)
        self.dtype = dtype
        self.batch_size = batch_size
        self.model = CrossEncoder(
            self.path, device=self.device, max_length=max_length, activation_fn=torch.nn.Identity()
        )
        self.max_length = self.model.max_length
        self._fingerprint = hash_json(
            {
                "kind": self.kind,
                "weights": hash_model_dir(Path(self.path)),
                "max_length": self.max_length,
                "dtype": self.dtype,
            }
        )

    def fingerprint(self) -> str:
        return self._fingerprint

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.name, "max_length": self.max_length, "dtype": self.dtype}

    def score(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        import torch

        with autocast(self.device, self.dtype):
            scores = self.model.predict(
                list(zip(queries, passages, strict=True)),
                batch_size=self.batch_size,
                activation_fn=torch.nn.Identity(),
                show_progress_bar=False,
                convert_to_numpy=True,
            )
        out = np.asarray(scores, dtype=np.float32)
        return out.reshape(len(queries), -1)[:, 0] if out.ndim > 1 else out

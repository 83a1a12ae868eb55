"""A SentenceTransformer bi-encoder as a teacher: score = the model's own similarity."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retrieval_kd.fingerprint import hash_json, hash_model_dir
from retrieval_kd.models import pick_device, resolve_model, torch_dtype
from retrieval_kd.teachers.cross_encoder import autocast


class BiEncoderTeacher:
    """Scores pairs by the similarity of separately encoded query and passage.

    Passages recur across the candidate lists of many queries, so their embeddings are cached by
    text hash for the teacher's lifetime: each distinct passage is encoded once.
    """

    kind = "bi-encoder"

    def __init__(
        self,
        model: str,
        max_length: int | None = None,
        dtype: str = "float32",
        batch_size: int = 64,
        device: str = "auto",
    ) -> None:
        from sentence_transformers import SentenceTransformer

        torch_dtype(dtype)
        self.name = str(model)
        self.path = resolve_model(str(model))
        self.device = pick_device(device)
        self.dtype = dtype
        self.batch_size = batch_size
        self.model = SentenceTransformer(self.path, device=self.device)
        if max_length is not None:
            self.model.max_seq_length = max_length
        self.max_length = self.model.max_seq_length
        self._cache: dict[str, np.ndarray] = {}
        self._fingerprint = hash_json(
            {
                "kind": self.kind,
                "weights": hash_model_dir(Path(self.path)),
                "max_length": self.max_length,
                "dtype": self.dtype,
                "similarity": str(self.model.similarity_fn_name),
            }
        )

    def fingerprint(self) -> str:
        return self._fingerprint

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.name, "max_length": self.max_length, "dtype": self.dtype}

    def _encode(self, texts: Sequence[str], query: bool) -> np.ndarray:
        keys = [("q" if query else "d") + hashlib.sha1(t.encode()).hexdigest() for t in texts]
        todo = {k: t for k, t in zip(keys, texts, strict=True) if k not in self._cache}
        if todo:
            encode = self.model.encode_query if query else self.model.encode_document
            with autocast(self.device, self.dtype):
                embs = encode(list(todo.values()), batch_size=self.batch_size, convert_to_numpy=True)
            self._cache.update(zip(todo, np.asarray(embs, dtype=np.float32), strict=True))
        return np.stack([self._cache[k] for k in keys])

    def score(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        import torch

        q = torch.from_numpy(self._encode(queries, query=True))
        d = torch.from_numpy(self._encode(passages, query=False))
        return self.model.similarity_pairwise(q, d).float().numpy().astype(np.float32)

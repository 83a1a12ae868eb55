"""Any sentence-transformers CrossEncoder as a teacher, returning raw logits."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retrieval_kd.errors import RkdError
from retrieval_kd.fingerprint import hash_json, hash_model_dir
from retrieval_kd.models import pick_device, resolve_model, torch_dtype

log = logging.getLogger(__name__)


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
        # On a GPU, bf16/fp16 means half-precision weights: autocast keeps fp32 weights and casts
        # every matmul's inputs, which at small batches cost more than it saved (issue 13: 974
        # vs 1,109 pairs/s on an H100). On a CPU autocast stays (oneDNN's bf16 kernels).
        self._half_weights = self.device.startswith("cuda") and dtype != "float32"
        if self._half_weights:
            self.model.to(torch_dtype(dtype))
        self._assembler: Any = None
        # batch widths padded up to a multiple of this (benchmarks/bench_gpu.py measures 8 on a
        # GPU, where tensor-core kernels prefer such widths); masked columns change no score
        self.pad_to_multiple_of = 1
        # score_pairs prepares the next part in a thread when this is set (see _Prefetch): on an
        # H100, 11.0x plain predict against 8.5x without (pinned host copies gained nothing:
        # 10.6x). On a CPU the forward passes use every core, and the thread would compete.
        self.prepare_ahead = self.device.startswith("cuda")
        # seconds spent so far, for the end-of-run report (score-teacher: where time went)
        self.timings = {"tokenize": 0.0, "compute": 0.0}
        self._plain = self.max_length is None  # no token limit: nothing to assemble against
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
        """Raw logits of aligned pairs.

        Each unique text is tokenized once and pair inputs are assembled from the pieces
        (:mod:`retrieval_kd.teachers.pair_tokens`), in batches of length-sorted pairs bounded by
        ``batch_size × max_length`` tokens rather than a pair count. The first call checks the
        assembled inputs against the tokenizer's on its pairs and falls back to
        ``CrossEncoder.predict`` if any differ.
        """
        started = time.perf_counter()
        prepared = self.prepare(queries, passages)
        self.timings["tokenize"] += time.perf_counter() - started
        return self.score_prepared(prepared)

    def prepare(self, queries: Sequence[str], passages: Sequence[str]) -> Any:
        """Everything before the forward passes, on the CPU: token ids assembled, cut into
        token-budget batches and padded into tensors. ``score_pairs`` runs it
        for the next stored part in a thread while this one computes, so the accelerator does
        not wait for the tokenizer."""
        if not queries:
            return None
        if self._assembler is None and not self._plain:
            self._assembler = self._make_assembler(queries, passages)
        if self._assembler is None:
            return (list(queries), list(passages))
        return self._batches(queries, passages)

    def score_prepared(self, prepared: Any) -> np.ndarray:
        """Raw logits of what :meth:`prepare` returned, in its pairs' order."""
        return self.launch_prepared(prepared)()

    def launch_prepared(self, prepared: Any) -> Callable[[], np.ndarray]:
        """Starts the forward passes of what :meth:`prepare` returned and gives back what waits
        for their scores. On a GPU the kernels are queued and nothing waits here, so
        ``score_pairs`` writes the previous part while these run; on a CPU the work is done
        before this returns."""
        if prepared is None:
            return lambda: np.zeros(0, dtype=np.float32)
        if isinstance(prepared, tuple):
            scores = self._predict(*prepared)
            return lambda: scores
        return self._forward(prepared)

    def _make_assembler(self, queries: Sequence[str], passages: Sequence[str]) -> Any:
        from retrieval_kd.teachers.pair_tokens import PairAssembler

        try:
            assembler = PairAssembler(self.model.tokenizer, self.max_length)
        except ValueError as e:
            log.info("%s: pairs tokenized whole (%s)", self.name, e)
            self._plain = True
            return None
        # the longest pairs and the first ones: where truncation and templates show
        by_length = sorted(range(len(queries)), key=lambda i: -(len(queries[i]) + len(passages[i])))
        sample = sorted(set(by_length[:32]) | set(range(min(32, len(queries)))))
        if not assembler.check([queries[i] for i in sample], [passages[i] for i in sample]):
            log.warning(
                "%s: assembled pair inputs differ from the tokenizer's; pairs tokenized whole", self.name
            )
            self._plain = True
            return None
        return assembler

    def _batches(
        self, queries: Sequence[str], passages: Sequence[str]
    ) -> list[tuple[np.ndarray, dict[str, Any]]]:
        """(pair positions, padded features) per token-budget batch of length-sorted pairs."""
        import torch

        pad = self.model.tokenizer.pad_token_id or 0
        with_types = "token_type_ids" in getattr(self.model.tokenizer, "model_input_names", ())
        out = []
        tokens = self.batch_size * self.max_length
        for rows, ids, types, mask in self._assembler.batches(
            queries, passages, tokens, 16 * self.batch_size, pad, self.pad_to_multiple_of
        ):
            arrays = {"input_ids": ids, "attention_mask": mask}
            if with_types:
                arrays["token_type_ids"] = types
            out.append((rows, {k: torch.from_numpy(v) for k, v in arrays.items()}))
        return out

    def _forward(self, batches: list[tuple[np.ndarray, dict[str, Any]]]) -> Callable[[], np.ndarray]:
        """Forward passes queued batch after batch; scores stay on the device until the
        returned call copies them back, so the host never waits for one batch to finish."""
        import torch

        started = time.perf_counter()
        kept = []
        self.model.eval()
        with torch.inference_mode(), autocast(self.device, "float32" if self._half_weights else self.dtype):
            for rows, features in batches:
                on_device = {k: v.to(self.device, non_blocking=True) for k, v in features.items()}
                scores = self.model(on_device)["scores"]
                kept.append((rows, scores[:, 0] if scores.ndim > 1 else scores))
        self.timings["compute"] += time.perf_counter() - started

        def collect() -> np.ndarray:
            began = time.perf_counter()
            out = np.zeros(sum(len(rows) for rows, _ in kept), dtype=np.float32)
            if kept:
                with torch.inference_mode():
                    values = torch.cat([s.float() for _, s in kept]).cpu().numpy()
                out[np.concatenate([rows for rows, _ in kept])] = values
            self.timings["compute"] += time.perf_counter() - began
            return out

        return collect

    def _predict(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
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

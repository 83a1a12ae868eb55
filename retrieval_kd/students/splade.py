"""SPLADE students: a sentence-transformers ``SparseEncoder`` over a masked-LM checkpoint.

A text becomes one weight per vocabulary term, ``max_t log(1 + relu(MLM logits))``
(MLM transformer + ``SpladePooling``, as ``SparseEncoder`` builds it for any ``*ForMaskedLM``
checkpoint); a query and a document score by the dot product of their term weights. Training adds
the FLOPS regulariser of each side (Paria et al., 2020), its weights warmed up quadratically from
zero (SPLADE v2), both taken from sentence-transformers rather than written again.

With ``[student.options] inference_free = true`` the queries skip the transformer: each query
token gets a learned weight (from 1, or from a corpus's IDF with ``idf = "<dataset>"``) and only
documents go through the MLM (:mod:`retrieval_kd.students.inference_free`); the same store,
losses and trainer train it, with no query FLOPS term unless ``query_weight`` asks for one.

References:
    Formal et al., "SPLADE v2", arXiv:2109.10086; Formal et al., "From Distillation to Hard
    Negative Sampling: Making Sparse Neural IR Models More Effective", arXiv:2205.04733;
    Paria et al., "Minimizing FLOPs to Learn Efficient Sparse Representations", arXiv:2004.05665.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from retrieval_kd.errors import RkdError
from retrieval_kd.models import pick_device, resolve_model
from retrieval_kd.protocols import TrainingScores
from retrieval_kd.students import inference_free as ifree
from retrieval_kd.students._shared import (
    budgeted_outputs,
    embed,
    group_scores,
    read_meta,
    save_student,
    weights_hash,
)
from retrieval_kd.students.sparse_vectors import FINAL_WINDOW, ActiveTerms, sparse_score_matrix, to_csr

if TYPE_CHECKING:
    import scipy.sparse as sp

# Defaults of sentence-transformers' SparseEncoderTrainer (`get_default_loss`: SpladeLoss with
# query 5e-5, document 3e-5, also its SpladeLoss docstring's distillation example). They suit
# losses of order 1 (rkd's `kl`, `pairwise`); naver/splade's SPLADE++ recipe used 0.5 / 0.4 for
# Margin-MSE on raw cross-encoder margins. Scale them with the loss.
QUERY_WEIGHT = 5e-5
DOCUMENT_WEIGHT = 3e-5
# Warm-up over the first third of training unless told otherwise: sentence-transformers'
# SpladeRegularizerWeightSchedulerCallback default (warmup_ratio 1/3), and naver/splade's
# T = 50,000 of 150,000 iterations.
WARMUP_RATIO = 1 / 3

logger = logging.getLogger(__name__)


class _ScoreMatrix(nn.Module):
    """SpladeLoss's required "main loss": here the score matrix rkd's score-space losses take.

    SpladeLoss is held for its FLOPS regularisers and the weights its scheduler callback drives;
    the distillation loss itself stays in ``retrieval_kd.losses``.
    """

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None) -> Tensor:
        """Shapes: embeddings [query (B, V), doc0..docN (B, V)] → (B, 1+n)."""
        return sparse_score_matrix(embeddings[0], torch.stack(embeddings[1:], dim=1))


class SpladeStudent:
    """A SparseEncoder (MLM + SpladePooling) student. Saved, it is a plain SparseEncoder folder
    plus ``rkd.json``; ``SparseEncoder(path)`` loads it and gives the same vectors.

    Args:
        model: the SparseEncoder: MLM + SpladePooling, or the inference-free Router layout.
        provenance: where it came from; merged into ``rkd.json`` on save.
        query_weight: FLOPS weight of the query side (λq) once warmed up; None: 5e-5, or 0 (no
            query term) for an inference-free model.
        document_weight: FLOPS weight of the document side (λd) once warmed up.
        warmup_steps: optimiser steps over which both weights rise quadratically from 0; None
            is the first third of training.
        query_lr: learning rate of an inference-free model's query weights (default 1e-3).
    """

    kind = "splade"
    role = "encoder"
    index_kind = "sparse"
    OPTIONS = ("query_weight", "document_weight", "warmup_steps", "inference_free", "idf", "query_lr")

    def __init__(
        self,
        model: Any,
        provenance: dict[str, Any] | None = None,
        query_weight: float | None = None,
        document_weight: float = DOCUMENT_WEIGHT,
        warmup_steps: int | None = None,
        query_lr: float | None = None,
    ) -> None:
        self.inference_free = ifree.is_inference_free(model)
        if query_weight is None:
            query_weight = 0.0 if self.inference_free else QUERY_WEIGHT
        for name, value in (("query_weight", query_weight), ("document_weight", document_weight)):
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise RkdError(f"splade student option {name} must be a number >= 0, got {value!r}")
        self.query_lr = ifree.query_lr(query_lr, self.inference_free)
        if warmup_steps is not None and (not isinstance(warmup_steps, int) or warmup_steps < 0):
            raise RkdError(
                f"splade student option warmup_steps must be an integer >= 0, got {warmup_steps!r}"
            )
        self.model = model
        self.provenance: dict[str, Any] = dict(provenance or {})
        self.query_weight = float(query_weight)
        self.document_weight = float(document_weight)
        self.warmup_steps = warmup_steps
        self.active_terms = ActiveTerms()
        self._regularizer: Any = None
        self._fingerprint: str | None = None

    @classmethod
    def from_pretrained(
        cls,
        model: str,
        num_layers: int | None = None,
        max_seq_length: int | None = None,
        device: str = "auto",
        **options: Any,
    ) -> SpladeStudent:
        """A student from a masked-LM checkpoint (hub id, offline id or folder), or from a saved
        SparseEncoder folder with SpladePooling (either layout).

        Args:
            options: ``[student.options]``: ``query_weight`` (default 5e-5; 0 when inference-free),
                ``document_weight`` (3e-5), ``warmup_steps`` (default: a third of training);
                ``inference_free`` (default false) to encode queries without the transformer,
                ``idf`` (a dataset id or BEIR folder: its corpus's IDF starts the query weights;
                default all 1) and ``query_lr`` (their learning rate, default 1e-3).
        """
        from sentence_transformers import SparseEncoder

        unknown = sorted(set(options) - set(cls.OPTIONS))
        if unknown:
            raise RkdError(f"unknown splade student option(s) {unknown}; choose from {list(cls.OPTIONS)}")
        layout = {k: options.pop(k) for k in ("inference_free", "idf") if k in options}
        path = resolve_model(model)
        encoder = SparseEncoder(path, device=pick_device(device))
        _require_splade(encoder, model)
        if num_layers is not None:
            from retrieval_kd.students.dense import truncate_layers

            # The layer list of a *ForMaskedLM sits on its base model (`bert.encoder.layer`),
            # which shares the config object, so truncate_layers updates both.
            auto: Any = ifree.masked_lm(encoder).auto_model
            truncate_layers([SimpleNamespace(auto_model=auto.base_model)], num_layers)
        encoder, extra = ifree.with_layout(encoder, model, pick_device(device), **layout)
        if max_seq_length is not None:
            encoder.max_seq_length = max_seq_length
        return cls(encoder, {"base_model": model, "num_layers": num_layers, **extra}, **options)

    @classmethod
    def load(cls, path: Path, device: str = "auto") -> SpladeStudent:
        from sentence_transformers import SparseEncoder

        path = Path(path)
        if not (path / "modules.json").is_file():
            raise RkdError(f"{path}: not a sentence-transformers SparseEncoder folder (no modules.json)")
        meta = read_meta(path)
        encoder = SparseEncoder(str(path), device=pick_device(device))
        _require_splade(encoder, str(path))
        return cls(encoder, meta.get("provenance"), **dict(meta.get("options") or {}))

    # -- identity ------------------------------------------------------------------------------

    def options(self) -> dict[str, Any]:
        return {
            "query_weight": self.query_weight,
            "document_weight": self.document_weight,
            "warmup_steps": self.warmup_steps,
            **({"query_lr": self.query_lr} if self.inference_free else {}),
        }

    def fingerprint(self) -> str:
        """Hash of the weights and encoding settings: equal fingerprints give equal vectors (the
        FLOPS weights change training, not encoding, so they are left out)."""
        if self._fingerprint is None:
            modules = []
            for route, members in ifree.routes(self.model).items():
                for module in members:
                    config = dict(module.get_config_dict()) if hasattr(module, "get_config_dict") else {}
                    config.pop("embedding_dimension", None)  # SpladePooling fills it in on first forward
                    modules.append([*([route] if route else []), type(module).__name__, config])
            settings = {
                "modules": modules,
                # the transformer's limit (a Router reports the largest of its routes')
                "max_seq_length": ifree.masked_lm(self.model).max_seq_length,
                "max_active_dims": self.model.max_active_dims,
            }
            self._fingerprint = weights_hash(
                self.model, json.dumps(settings, sort_keys=True, default=str).encode()
            )
        return self._fingerprint

    def weights_changed(self) -> None:
        """Call after training: the fingerprint is recomputed on next use."""
        self._fingerprint = None

    @property
    def dim(self) -> int:
        """The vocabulary size. ``SparseEncoder.get_embedding_dimension()`` is not it before the
        first forward (SpladePooling learns its width then and the hidden size shows through)."""
        from sentence_transformers.sparse_encoder.modules import SpladePooling

        pooling = ifree.find_module(self.model, SpladePooling)
        return int(pooling.embedding_dimension or ifree.masked_lm(self.model).auto_model.config.vocab_size)

    # -- encoding ------------------------------------------------------------------------------

    def encode_queries(self, texts: Sequence[str], batch_size: int = 32) -> sp.csr_matrix:
        """Shapes: texts[N] → float32 csr_matrix[N, vocab]. An inference-free model looks the
        query tokens' weights up (its ``query`` route) and runs no transformer."""
        return self._encode(texts, batch_size, "query")

    def encode_documents(self, texts: Sequence[str], batch_size: int = 32) -> sp.csr_matrix:
        """Shapes: texts[N] → float32 csr_matrix[N, vocab] (token-budget batches,
        :func:`~retrieval_kd.students._shared.budgeted_outputs`)."""
        return self._encode(texts, batch_size, "document")

    def _encode(self, texts: Sequence[str], batch_size: int, task: str) -> sp.csr_matrix:
        """What ``encode_query`` / ``encode_document`` give, from token-budget batches made sparse
        on the device and copied back once per chunk (an inference-free model's Router takes
        sentence-transformers' own path)."""
        import scipy.sparse as sp
        from sentence_transformers.util.tensor import select_max_active_dims

        chunks = budgeted_outputs(self.model, texts, batch_size, task) if len(texts) else None
        if chunks is None:
            encode = self.model.encode_query if task == "query" else self.model.encode_document
            return to_csr(encode(list(texts), batch_size=batch_size, convert_to_sparse_tensor=True), self.dim)
        limit = self.model.max_active_dims  # what SparseEncoder.encode applies after the forward
        rows, cols, values = [], [], []
        for start, kept in chunks:
            for order, out in kept:
                coo = select_max_active_dims(out["sentence_embedding"], limit).to_sparse()  # as encode
                r, c = coo.indices().cpu()
                rows.append(torch.from_numpy(order + start)[r])
                cols.append(c)
                values.append(coo.values().float().cpu())
        out = sp.csr_matrix(
            (torch.cat(values).numpy(), (torch.cat(rows).numpy(), torch.cat(cols).numpy())),
            shape=(len(texts), self.dim),
            dtype=np.float32,
        )
        out.eliminate_zeros()
        return out

    def scores(self, query_batch: Sequence[str], doc_groups: Sequence[Sequence[str]]) -> Tensor:
        """Shapes: query_batch[B], doc_groups[B][1+n] → Tensor[B, 1+n] (with gradients)."""
        if not self.inference_free:
            return group_scores(self.model, query_batch, doc_groups, sparse_score_matrix)
        # queries take the Router's query route, documents its default (document) route
        q = embed(ifree.QueryRoute(self.model), query_batch)  # (B, V)
        d = embed(self.model, [t for g in doc_groups for t in g])  # (B * (1+n), V)
        return sparse_score_matrix(q, d.view(len(doc_groups), -1, d.shape[-1]))  # d (B, 1+n, V)

    # -- training ------------------------------------------------------------------------------

    def regularizer(self) -> Any:
        """sentence-transformers' SpladeLoss, held for its two FlopsLoss regularisers and the
        λq/λd that SpladeRegularizerWeightSchedulerCallback schedules (built on first use)."""
        if self._regularizer is None:
            from sentence_transformers.sparse_encoder.losses import SpladeLoss

            self._regularizer = SpladeLoss(
                self.model,
                _ScoreMatrix(),
                document_regularizer_weight=self.document_weight,
                query_regularizer_weight=self._query_flops_weight(),
            )
        return self._regularizer

    def _query_flops_weight(self) -> float | None:
        """λq, or None for no query FLOPS term: an inference-free model's default (its query cost
        is its own token count; SpladeLoss documents None for that setup)."""
        return None if self.inference_free and self.query_weight == 0 else self.query_weight

    def training_scores(self, model: Any, inputs: Sequence[Any], width: int) -> TrainingScores:
        """The score matrix and the weighted FLOPS terms of one collated batch.

        Shapes:
            inputs = token features of [query, doc0..doc{width-1}], each of batch B →
            scores (B, width); regularizers ``flops_query`` (unless it has no weight) and
            ``flops_doc``, scalars.
        """
        from sentence_transformers.base.losses.merged_forward import embed_columns

        reg = self.regularizer()
        # the query column alone, the document columns in one merged forward (as SpladeLoss does)
        embeddings = embed_columns(model, list(inputs))[: 1 + width]
        scores = reg.loss.compute_loss_from_embeddings(embeddings, None)  # (B, 1+n)
        docs = torch.cat(embeddings[1:])  # (B * (1+n), V)
        terms = {"flops_doc": reg.document_regularizer.compute_loss_from_embeddings(docs)}
        terms["flops_doc"] = terms["flops_doc"] * reg.document_regularizer_weight
        if reg.query_regularizer_weight is not None:
            flops_query = reg.query_regularizer.compute_loss_from_embeddings(embeddings[0])
            terms["flops_query"] = flops_query * reg.query_regularizer_weight
        self.active_terms.update(embeddings[0], docs)
        return TrainingScores(scores, terms)

    def scheduler_callback(self) -> Any:
        """sentence-transformers' quadratic FLOPS-weight warm-up, driving :meth:`regularizer`,
        with ``warmup_steps`` when set; it also resets the active-term counts at the start of training
        and logs them at the end."""
        from sentence_transformers.sparse_encoder.callbacks import SpladeRegularizerWeightSchedulerCallback

        student = self
        reg = self.regularizer()
        # the callback takes its targets from the loss: reset them, a past run may have left
        # them part-way up the warm-up
        reg.query_regularizer_weight = self._query_flops_weight()
        reg.document_regularizer_weight = self.document_weight

        class _FlopsWarmup(SpladeRegularizerWeightSchedulerCallback):  # type: ignore[misc]
            def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                super().on_train_begin(args, state, control, **kw)
                if student.warmup_steps is not None and self.total_steps is not None:
                    self.warmup_steps = student.warmup_steps
                student.active_terms.reset()

            def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                summary = student.active_terms.summary()
                if summary:
                    logger.info(
                        "splade: %.1f active terms per query, %.1f per document (last %d batches)",
                        summary["query_final"],
                        summary["document_final"],
                        min(FINAL_WINDOW, int(summary["batches"])),
                    )

        return _FlopsWarmup(reg, scheduler_type="quadratic", warmup_ratio=WARMUP_RATIO)

    def trainer_classes(self) -> tuple[Any, Any]:
        """SparseEncoderTrainer and its arguments; for an inference-free model, arguments that
        route the ``query`` column to the query weights and give them ``query_lr``."""
        from sentence_transformers import SparseEncoderTrainer, SparseEncoderTrainingArguments

        if self.inference_free:
            assert self.query_lr is not None
            return SparseEncoderTrainer, ifree.training_arguments(self.query_lr)
        return SparseEncoderTrainer, SparseEncoderTrainingArguments

    def training_callbacks(self) -> list[Any]:
        """The FLOPS warm-up: it needs the optimiser step, which only a Trainer callback sees."""
        return [self.scheduler_callback()]

    # -- persistence ---------------------------------------------------------------------------

    def save(self, path: Path, provenance: dict[str, Any] | None = None) -> None:
        """A plain SparseEncoder folder, then ``rkd.json`` last; the active-term counts of the last
        training go into its provenance."""
        extra = dict(provenance or {})
        if self.active_terms.batches:
            extra["active_terms"] = self.active_terms.summary()
        save_student(self, path, extra, options=self.options())


def _require_splade(encoder: Any, source: str) -> None:
    from sentence_transformers.sparse_encoder.modules import SpladePooling

    if ifree.find_module(encoder, SpladePooling) is None:
        raise RkdError(
            f"{source}: not a SPLADE model (no SpladePooling module); the splade student needs a "
            "*ForMaskedLM checkpoint or a SparseEncoder folder saved from one"
        )

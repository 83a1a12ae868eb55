"""ColBERT students: a sentence-transformers ``MultiVectorEncoder`` over any BERT-style backbone.

A text becomes one L2-normalised vector per token (backbone → linear projection → punctuation
skiplist on documents → normalisation); a query and a document score by MaxSim
(:func:`~retrieval_kd.students.maxsim.maxsim`). As in ColBERTv2, queries and documents carry
marker tokens (``[unused0]`` / ``[unused1]`` where the vocabulary has them, else new ``[Q]`` /
``[D]`` tokens), queries are augmented to exactly 32 tokens with ``[MASK]`` padding that MaxSim
scores, documents are cut at 180 tokens, and vectors have 128 dimensions (or the backbone's width
when smaller). Every knob lives in sentence-transformers' own modules (``Transformer``'s
``query_expansion`` / ``document_length``, ``Dense``, ``MultiVectorMask``, ``Normalize``), so a
saved student loads with plain ``MultiVectorEncoder(path)`` and gives the same token vectors.

References:
    Khattab and Zaharia, "ColBERT", arXiv:2004.12832; Santhanam et al., "ColBERTv2: Effective and
    Efficient Retrieval via Lightweight Late Interaction", arXiv:2112.01488.
"""

from __future__ import annotations

import functools
import json
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from retrieval_kd.errors import RkdError
from retrieval_kd.models import pick_device, resolve_model
from retrieval_kd.protocols import TrainingScores
from retrieval_kd.students._shared import budgeted_outputs, read_meta, save_student, weights_hash
from retrieval_kd.students.maxsim import TokenVectors, maxsim

QUERY_LENGTH = 32  # ColBERTv2's query_maxlen
DOCUMENT_LENGTH = 180  # ColBERTv2's doc_maxlen
DIM = 128  # ColBERTv2's projection width
MARKERS = ("[unused0]", "[unused1]")  # ColBERT's markers on BERT vocabularies
NEW_MARKERS = ("[Q]", "[D]")  # PyLate's, added to vocabularies without unused slots
PROJECTION_SEED = 0  # the fresh projection (and new marker rows) start the same on every build
MAX_COLUMNS = 512  # document columns the Trainer's prompts cover (1 + negatives)


def _positive_int(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise RkdError(f"colbert student option {name} must be an integer >= 1, got {value!r}")
    return value


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise RkdError(f"colbert student option {name} must be true or false, got {value!r}")
    return value


def _is_multi_vector(path: str) -> bool:
    config = Path(path) / "config_sentence_transformers.json"
    if not config.is_file():
        return False
    return json.loads(config.read_text()).get("model_type") in ("MultiVectorEncoder", "ColBERT")


def add_markers(transformer: Any) -> tuple[str, str]:
    """Registers the query and document marker tokens on the backbone's tokenizer (as single
    special tokens, so ``"[unused0] text"`` tokenizes as ``[CLS] [unused0] text [SEP]``) and grows
    the embedding matrix when they are new; returns the two markers."""
    from transformers import AddedToken

    tokenizer = transformer.tokenizer
    vocab = tokenizer.get_vocab()
    markers = MARKERS if all(m in vocab for m in MARKERS) else NEW_MARKERS
    tokenizer.add_tokens(
        [AddedToken(m, normalized=False, special=True) for m in markers], special_tokens=True
    )
    embeddings = transformer.auto_model.get_input_embeddings()
    if len(tokenizer) > embeddings.num_embeddings:
        transformer.auto_model.resize_token_embeddings(len(tokenizer))
    return markers


class ColbertStudent:
    """A MultiVectorEncoder (ColBERT) student. Saved, it is a plain MultiVectorEncoder folder plus
    ``rkd.json``; ``MultiVectorEncoder(path)`` loads it and gives the same token vectors.

    Example:
        ``[student] kind = "colbert"`` with ``[student.options]`` ``dim = 96``,
        ``query_augmentation = false``, ``markers = false`` (each default as in ColBERTv2).
    """

    kind = "colbert"
    role = "encoder"
    index_kind = "maxsim"
    OPTIONS = ("query_length", "document_length", "dim", "markers", "query_augmentation", "skiplist")

    def __init__(self, model: Any, provenance: dict[str, Any] | None = None) -> None:
        self.model = model
        self.provenance: dict[str, Any] = dict(provenance or {})
        self._fingerprint: str | None = None

    @classmethod
    def from_pretrained(
        cls,
        model: str,
        num_layers: int | None = None,
        max_seq_length: int | None = None,
        device: str = "auto",
        **options: Any,
    ) -> ColbertStudent:
        """A student from any BERT-style backbone or sentence-transformers folder (a fresh
        projection is added), or from a MultiVectorEncoder / ColBERT checkpoint (kept as it is).

        Args:
            num_layers: keep the backbone's first layers only.
            max_seq_length: the document token limit (default 180).
            options: ``[student.options]``: ``query_length`` (32), ``document_length`` (180),
                ``dim`` (128, or the backbone's width when smaller), ``markers`` (true),
                ``query_augmentation`` (true: queries padded with scored ``[MASK]`` tokens to
                exactly ``query_length``), ``skiplist`` (true: punctuation is not scored in
                documents).
        """
        from sentence_transformers import MultiVectorEncoder

        from retrieval_kd.students.dense import truncate_layers

        unknown = sorted(set(options) - set(cls.OPTIONS))
        if unknown:
            raise RkdError(f"unknown colbert student option(s) {unknown}; choose from {list(cls.OPTIONS)}")
        path = resolve_model(model)
        if _is_multi_vector(path):
            if options:
                raise RkdError(
                    f"{model} is already a multi-vector model: its options {sorted(options)} are fixed; "
                    "start from a plain backbone to set them"
                )
            encoder = MultiVectorEncoder(path, device=pick_device(device))
        else:
            if max_seq_length is not None:
                options.setdefault("document_length", max_seq_length)
            encoder = _build(path, pick_device(device), **options)
        if num_layers is not None:
            truncate_layers(encoder, num_layers)
        return cls(encoder, {"base_model": model, "num_layers": num_layers, "options": options})

    @classmethod
    def load(cls, path: Path, device: str = "auto") -> ColbertStudent:
        from sentence_transformers import MultiVectorEncoder

        path = Path(path)
        if not (path / "modules.json").is_file():
            raise RkdError(f"{path}: not a sentence-transformers MultiVectorEncoder folder (no modules.json)")
        meta = read_meta(path)
        return cls(MultiVectorEncoder(str(path), device=pick_device(device)), meta.get("provenance"))

    # -- identity ------------------------------------------------------------------------------

    def fingerprint(self) -> str:
        """Hash of the weights and every encoding setting (module configs, prompts, query and
        document lengths, query augmentation): equal fingerprints give equal token vectors."""
        if self._fingerprint is None:
            transformer = self.model[0]
            settings = {
                "modules": [
                    [type(m).__name__, m.get_config_dict() if hasattr(m, "get_config_dict") else {}]
                    for m in self.model
                ],
                "prompts": self.model.prompts,
                "query_length": transformer.query_length,
                "document_length": transformer.document_length,
                "query_expansion": transformer.query_expansion,
                "max_seq_length": transformer.max_seq_length,
                "similarity": self.model.similarity_fn_name,
                "vocab": len(transformer.tokenizer),
            }
            blob = json.dumps(settings, sort_keys=True, default=str).encode()
            self._fingerprint = weights_hash(self.model, blob)
        return self._fingerprint

    def weights_changed(self) -> None:
        """Call after training: the fingerprint is recomputed on next use."""
        self._fingerprint = None

    # -- encoding ------------------------------------------------------------------------------

    def encode_queries(self, texts: Sequence[str], batch_size: int = 32) -> TokenVectors:
        """Shapes: texts[N] → TokenVectors (T, dim), one run of token vectors per query
        (token-budget batches, :func:`~retrieval_kd.students._shared.budgeted_outputs`)."""
        return self._encode(texts, batch_size, "query")

    def encode_documents(self, texts: Sequence[str], batch_size: int = 32) -> TokenVectors:
        """Shapes: texts[N] → TokenVectors (T, dim), one run of token vectors per document."""
        return self._encode(texts, batch_size, "document")

    def _encode(self, texts: Sequence[str], batch_size: int, task: str) -> TokenVectors:
        """What ``encode_query`` / ``encode_document`` give (each text's token vectors under its
        scoring mask), from token-budget batches whose vectors are gathered on the device and
        copied back once per chunk."""
        chunks = budgeted_outputs(self.model, texts, batch_size, task) if len(texts) else None
        if chunks is None:
            encode = self.model.encode_query if task == "query" else self.model.encode_document
            return TokenVectors.from_list(encode(list(texts), batch_size=batch_size, convert_to_numpy=True))
        vectors, lengths = [], np.zeros(len(texts), dtype=np.int64)
        for start, kept in chunks:
            order = np.concatenate([rows for rows, _ in kept])
            masks = [out["attention_mask"].bool() for _, out in kept]
            flat = torch.cat([out["token_embeddings"][m] for (_, out), m in zip(kept, masks, strict=True)])
            counts = torch.cat([m.sum(1) for m in masks]).cpu().numpy()
            runs = np.split(flat.float().cpu().numpy(), np.cumsum(counts)[:-1])
            by_row = [runs[i] for i in np.argsort(order)]  # chunk order
            vectors += by_row
            lengths[start : start + len(by_row)] = [len(r) for r in by_row]
        return TokenVectors(np.concatenate(vectors), lengths)

    def _forward(self, model: Any, texts: Sequence[str], task: str) -> tuple[Tensor, Tensor]:
        """Shapes: texts[N] → token vectors (N, L, dim) and their scoring mask (N, L), with
        gradients; tokenised exactly as ``encode_query`` / ``encode_document`` do."""
        features = model.preprocess(list(texts), prompt=model.prompts.get(task) or None, task=task)
        features = {k: v.to(model.device) if isinstance(v, Tensor) else v for k, v in features.items()}
        out = model(features, task=task)
        return out["token_embeddings"], out["attention_mask"].bool()

    def scores(self, query_batch: Sequence[str], doc_groups: Sequence[Sequence[str]]) -> Tensor:
        """Shapes: query_batch[B], doc_groups[B][1+n] → Tensor[B, 1+n] (with gradients)."""
        width = len(doc_groups[0])
        if any(len(g) != width for g in doc_groups):
            raise ValueError("every doc group needs the same number of candidates")
        q, q_mask = self._forward(self.model, query_batch, "query")
        d, d_mask = self._forward(self.model, [t for g in doc_groups for t in g], "document")
        return group_maxsim(q, q_mask, d, d_mask, width)

    # -- training ------------------------------------------------------------------------------

    def training_scores(self, model: Any, inputs: Sequence[Any], width: int) -> TrainingScores:
        """Shapes: inputs = token features of [query, doc0..doc{width-1}], each of batch B →
        scores (B, width); a ColBERT student declares no regulariser."""
        from sentence_transformers.base.losses.merged_forward import embed_columns_padded
        from sentence_transformers.util.tensor import stack_padded_token_embeddings

        columns = [dict(f) for f in inputs]
        out = model(columns[0], task=columns[0].get("task", "query"))
        q, q_mask = out["token_embeddings"], out["attention_mask"].bool()  # (B, Lq, dim), (B, Lq)
        # the document columns in one merged forward, as sentence-transformers' own losses do
        docs, masks = stack_padded_token_embeddings(
            *embed_columns_padded(model, columns[1 : 1 + width], None, task_default="document")
        )  # (B, width, Ld, dim), (B, width, Ld)
        d = docs.reshape(-1, *docs.shape[2:])  # (B * width, Ld, dim)
        return TrainingScores(group_maxsim(q, q_mask, d, masks.reshape(len(d), -1), width), {})

    def trainer_classes(self) -> tuple[Any, Any]:
        """MultiVectorEncoderTrainer, and its arguments with the markers as column prompts (the
        Trainer tokenises without the model's prompts otherwise)."""
        from sentence_transformers import MultiVectorEncoderTrainer, MultiVectorEncoderTrainingArguments

        prompts = self.model.prompts
        columns = {"query": prompts.get("query") or ""}
        columns.update({f"doc{i}": prompts.get("document") or "" for i in range(MAX_COLUMNS)})
        if not any(columns.values()):
            return MultiVectorEncoderTrainer, MultiVectorEncoderTrainingArguments
        return MultiVectorEncoderTrainer, functools.partial(
            MultiVectorEncoderTrainingArguments, prompts=columns
        )

    def training_callbacks(self) -> list[Any]:
        return []

    def save(self, path: Path, provenance: dict[str, Any] | None = None) -> None:
        """A plain MultiVectorEncoder folder, then ``rkd.json`` last (its presence marks a complete save)."""
        save_student(self, path, provenance)


def group_maxsim(q: Tensor, q_mask: Tensor, d: Tensor, d_mask: Tensor, width: int) -> Tensor:
    """Each query against its own group of ``width`` documents, by :func:`maxsim`.

    Shapes:
        q (B, Lq, dim), q_mask (B, Lq), d (B * width, Ld, dim) group by group, d_mask
        (B * width, Ld) → (B, width).
    """
    if len(d) != len(q) * width:
        raise ValueError(f"{len(q)} queries need {len(q) * width} documents, got {len(d)}")
    rows = [
        maxsim(
            q[i : i + 1],
            d[i * width : (i + 1) * width],
            q_mask[i : i + 1],
            d_mask[i * width : (i + 1) * width],
        )
        for i in range(len(q))
    ]
    return torch.cat(rows)  # (B, width)


def _build(
    path: str,
    device: str,
    query_length: int = QUERY_LENGTH,
    document_length: int = DOCUMENT_LENGTH,
    dim: int | None = None,
    markers: bool = True,
    query_augmentation: bool = True,
    skiplist: bool = True,
) -> Any:
    """A fresh MultiVectorEncoder from a backbone: sentence-transformers converts the folder
    (a SentenceTransformer's pooling dropped, a bare model's ``Transformer`` kept), and the head
    after the transformer is built here so its width, skiplist and seed are rkd's."""
    from sentence_transformers import MultiVectorEncoder
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.base.modules.dense import Dense
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask

    query_length = _positive_int("query_length", query_length)
    document_length = _positive_int("document_length", document_length)
    converted = MultiVectorEncoder(path, device="cpu")
    transformer = next((m for m in converted if isinstance(m, Transformer)), None)
    if transformer is None:
        raise RkdError(f"{path}: no transformer module to build a ColBERT student on")
    hidden = int(transformer.get_embedding_dimension())
    dim = _positive_int("dim", dim if dim is not None else min(DIM, hidden))
    transformer.document_length = document_length
    if _flag("query_augmentation", query_augmentation):
        transformer.query_length = None
        transformer.query_expansion = {"strategy": "fixed", "length": query_length}
    else:
        transformer.query_expansion = None
        transformer.query_length = query_length
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(PROJECTION_SEED)
        prompts = {}
        if _flag("markers", markers):
            q_marker, d_marker = add_markers(transformer)
            prompts = {"query": f"{q_marker} ", "document": f"{d_marker} "}
        projection = Dense(
            hidden,
            dim,
            bias=False,
            activation_function=torch.nn.Identity(),
            module_input_name="token_embeddings",
        )
    mask = MultiVectorMask(skiplist_words=list(string.punctuation) if _flag("skiplist", skiplist) else None)
    return MultiVectorEncoder(
        modules=[transformer, projection, mask, Normalize(module_input_name="token_embeddings")],
        device=device,
        prompts=prompts,
        similarity_fn_name="maxsim",
    )

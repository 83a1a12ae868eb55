"""Fakes at the seams, and tiny real models, for tests (yours and rkd's).

- :class:`FakeTeacher`: a teacher from a function of (query, passage).
- :class:`FakeIndex`: an index from a dict of precomputed runs.
- :class:`FakeEncoder`: an encoder student from hashed word counts (no model).
- :func:`store_dict`: a small score store as a dict, for assertions.
- :func:`tiny_bert_folder`: a seeded 2-layer BERT with a vocabulary built from given texts,
  saved as a sentence-transformers folder: a real model that loads in a second, offline.
- :func:`tiny_causal_lm_folder`: a seeded 2-layer Llama with a word-level vocabulary and a chat
  template, for the LLM teachers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retrieval_kd.errors import RkdError
from retrieval_kd.fingerprint import hash_json
from retrieval_kd.types import Run


class FakeTeacher:
    """A teacher whose score is ``fn(query, passage)``; ``name`` is its fingerprint."""

    kind = "fake"

    def __init__(self, fn: Callable[[str, str], float], name: str = "fake") -> None:
        self.fn = fn
        self.name = name
        self.calls = 0

    def fingerprint(self) -> str:
        return hash_json({"fake": self.name})

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name}

    def score(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        self.calls += 1
        return np.array([self.fn(q, p) for q, p in zip(queries, passages, strict=True)], dtype=np.float32)


class FakeIndex:
    """An index that answers from a dict: ``runs[query_id]`` → {doc_id: score}."""

    kind = "fake"

    def __init__(self, runs: Run, student_fingerprint: str = "") -> None:
        self.runs = runs
        self.manifest: dict[str, Any] = {"kind": "fake", "student_fingerprint": student_fingerprint}

    def add(self, doc_ids: Sequence[str], reps: Any) -> None:
        raise RkdError("FakeIndex is read-only")

    def search(self, query_ids: Sequence[str], query_reps: Any, k: int) -> Run:
        out: Run = {}
        for qid in query_ids:
            ranked = sorted(self.runs.get(qid, {}).items(), key=lambda kv: (-kv[1], kv[0]))[:k]
            out[qid] = dict(ranked)
        return out

    def check_encoder(self, student_fingerprint: str) -> None:
        fp = self.manifest["student_fingerprint"]
        if fp and fp != student_fingerprint:
            raise RkdError(f"fake index built with student {fp}; queries come from {student_fingerprint}")

    def save(self, path: Path) -> None:
        raise RkdError("FakeIndex cannot be saved")


class FakeEncoder:
    """An encoder student without a model: a text's vector counts its words in ``dim`` hashed
    buckets (normalised), so word overlap is similarity. It encodes, indexes (``faiss``) and
    retrieves like any encoder, for tests of the stages around a student; it does not train.

    Example:
        >>> enc = FakeEncoder(dim=8)
        >>> round(float((enc.encode_queries(["red apple"]) @ enc.encode_documents(["apple red"]).T)[0, 0]), 6)
        1.0
    """

    kind = "fake"
    role = "encoder"
    index_kind = "faiss"
    model: Any = None

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim
        self.provenance: dict[str, Any] = {"fake": True}

    def fingerprint(self) -> str:
        return hash_json({"fake-encoder": self.dim})

    def _vectors(self, texts: Sequence[str]) -> np.ndarray:
        import zlib

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, zlib.crc32(word.encode()) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1.0, norms)

    def encode_queries(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        return self._vectors(texts)

    def encode_documents(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        return self._vectors(texts)

    def scores(self, query_batch: Sequence[str], doc_groups: Sequence[Sequence[str]]) -> Any:
        import torch

        q = self._vectors(query_batch)
        return torch.from_numpy(np.stack([self._vectors(g) @ q[i] for i, g in enumerate(doc_groups)]))

    def training_scores(self, model: Any, inputs: Sequence[Any], width: int) -> Any:
        raise RkdError("FakeEncoder has no weights to train")

    def trainer_classes(self) -> tuple[Any, Any]:
        raise RkdError("FakeEncoder has no weights to train")

    def training_callbacks(self) -> list[Any]:
        return []

    def weights_changed(self) -> None:
        pass

    def save(self, path: Path, provenance: dict[str, Any] | None = None) -> None:
        raise RkdError("FakeEncoder cannot be saved")


def _random_bert(path: Path, texts: Sequence[str], seed: int, layers: int, hidden: int, mlm: bool) -> None:
    """A seeded random BERT (``BertForMaskedLM`` when ``mlm``, else ``BertModel``) and its
    tokenizer in ``path``; the vocabulary holds every word of ``texts``."""
    import torch
    from transformers import (  # type: ignore[attr-defined]
        BertConfig,
        BertForMaskedLM,
        BertModel,
        BertTokenizerFast,
    )

    words = sorted({w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower())})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    (BertForMaskedLM if mlm else BertModel)(config).save_pretrained(path)
    BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True).save_pretrained(path)


def tiny_mlm_folder(path: Path, texts: Sequence[str], seed: int = 0, hidden: int = 32) -> Path:
    """A seeded 2-layer ``BertForMaskedLM`` folder (what a SPLADE student starts from) whose
    vocabulary holds every word of ``texts``; returns ``path``."""
    _random_bert(path, texts, seed, 2, hidden, mlm=True)
    return path


def tiny_bert_folder(
    path: Path, texts: Sequence[str], seed: int = 0, layers: int = 2, hidden: int = 32
) -> Path:
    """Writes a seeded random BERT (mean pooling, normalised) whose vocabulary holds every word
    of ``texts``, as a sentence-transformers folder; returns ``path``."""
    from sentence_transformers import SentenceTransformer, models  # type: ignore[attr-defined]

    hf = path / "hf"
    _random_bert(hf, texts, seed, layers, hidden, mlm=False)
    transformer = models.Transformer(str(hf), max_seq_length=64)
    pooling = models.Pooling(hidden, pooling_mode="mean")
    st = SentenceTransformer(modules=[transformer, pooling, models.Normalize()], device="cpu")
    out = path / "model"
    st.save(str(out))
    return out


def tiny_cross_encoder_folder(path: Path, bert_folder: Path, seed: int = 0) -> Path:
    """A seeded CrossEncoder (one logit) on the raw BERT that :func:`tiny_bert_folder` wrote
    beside its model (``<path>/hf``), saved so every load gives the same scores."""
    import torch
    from sentence_transformers import CrossEncoder

    torch.manual_seed(seed)
    ce = CrossEncoder(str(bert_folder.parent / "hf"), num_labels=1, device="cpu", max_length=64)
    ce.save(str(path))
    return path


def tiny_causal_lm_folder(path: Path, texts: Sequence[str], seed: int = 0, hidden: int = 32) -> Path:
    """A seeded 2-layer ``LlamaForCausalLM`` folder whose word-level (lowercasing) vocabulary
    holds every word of ``texts`` plus ``yes``, ``no``, the letters and the digits, with a chat
    template (``<|user|> ...`` then ``<|assistant|>``); returns ``path``."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>"]
    extra = ["yes", "no", *"abcdefghijklmnopqrstuvwxyz0123456789"]
    words = sorted({w for t in [*texts, *extra] for w in re.findall(r"\w+|[^\w\s]+", t.lower())})
    vocab = {w: i for i, w in enumerate([*special, *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", bos_token="<s>", eos_token="</s>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": special[4:]})
    tokenizer.chat_template = (
        "{% for m in messages %}<|{{ m.role }}|> {{ m.content }} {% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
        initializer_range=0.2,  # wider than the default 0.02, so answers differ visibly
    )
    path.mkdir(parents=True, exist_ok=True)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def store_dict(store: Any) -> dict[tuple[str, ...], float]:
    """Every value of a small score store as a dict ``{(query_id, doc_id[, doc_b]): value}``, for
    assertions in tests (the store itself never builds a dict of every pair)."""
    table = store.to_table()
    keys = [name for name in table.column_names if name not in ("score", "value")]
    value = "score" if "score" in table.column_names else "value"
    rows = zip(*(table.column(k).to_pylist() for k in keys), strict=True)
    return dict(zip(rows, table.column(value).to_pylist(), strict=True))

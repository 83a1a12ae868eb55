"""Inference-free SPLADE: documents through the masked LM, queries through a weight per token.

The layout is sentence-transformers' own asymmetric SparseEncoder: a ``Router`` whose ``query``
route is one ``SparseStaticEmbedding`` (a query's vector holds, for each of its tokens, that
token's weight: no transformer runs) and whose ``document`` route is the usual MLM transformer +
``SpladePooling``. Saved, it is a plain SparseEncoder folder (``SparseEncoder(path)`` loads it).
The query weights start at 1 or at the IDF of a corpus and are learned with the document
encoder; the query side takes no FLOPS term by default (its cost is the query's own token count).

This module holds what the SPLADE student needs for that layout; the student itself stays in
:mod:`retrieval_kd.students.splade` (``[student.options] inference_free = true``).

References:
    Geng et al., "Towards Competitive Search Relevance for Inference-Free Learned Sparse
    Retrievers", arXiv:2411.04403; sentence-transformers, "Training Overview: Inference-free Splade".
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from retrieval_kd.errors import RkdError

# sentence-transformers' training guide: a much higher learning rate for the static query
# weights than for the transformer (its example: 1e-3 beside 2e-5).
QUERY_LR = 1e-3
# the static weights' parameter names under the Trainer's loss module ("model.0.sub_modules.query.0.weight")
QUERY_PARAMETERS = r"sub_modules\.query\."


def routes(model: Any) -> dict[str, list[Any]]:
    """A SparseEncoder's modules by route: ``{"query": [...], "document": [...]}`` for a Router
    model, ``{"": [every module]}`` for a plain one."""
    from sentence_transformers.base.modules import Router

    if not hasattr(model, "__getitem__"):  # not a SparseEncoder (a test's stand-in function)
        return {}
    first = model[0]
    if isinstance(first, Router):
        return {name: [*modules.children()] for name, modules in first.sub_modules.items()}
    return {"": list(model)}


def is_inference_free(model: Any) -> bool:
    """Whether ``model``'s query route is a single ``SparseStaticEmbedding``."""
    from sentence_transformers.sparse_encoder.modules import SparseStaticEmbedding

    query = routes(model).get("query", [])
    return len(query) == 1 and isinstance(query[0], SparseStaticEmbedding)


def find_module(model: Any, cls: type) -> Any:
    """The first module of class ``cls`` on any route of ``model``, or None."""
    return next((m for ms in routes(model).values() for m in ms if isinstance(m, cls)), None)


def masked_lm(model: Any) -> Any:
    """The transformer module of the document route (the one with an ``auto_model``)."""
    return next(m for ms in routes(model).values() for m in ms if hasattr(m, "auto_model"))


def make_inference_free(encoder: Any, weight: Any | None, device: str) -> Any:
    """A SparseEncoder routing documents through ``encoder``'s modules (MLM + SpladePooling) and
    queries through a ``SparseStaticEmbedding`` on the same tokenizer.

    Args:
        encoder: a plain SPLADE SparseEncoder.
        weight: initial query weights, float32 ``(vocab,)``; None: all ones.
    """
    from sentence_transformers import SparseEncoder
    from sentence_transformers.base.modules import Router
    from sentence_transformers.sparse_encoder.modules import SparseStaticEmbedding

    mlm = masked_lm(encoder)
    static = SparseStaticEmbedding(tokenizer=mlm.tokenizer, weight=weight, frozen=False)
    router = Router.for_query_document(query_modules=[static], document_modules=list(encoder))
    return SparseEncoder(modules=[router], similarity_fn_name="dot", device=device)


def with_layout(
    encoder: Any, source: str, device: str, inference_free: Any = False, idf: Any = None
) -> tuple[Any, dict[str, Any]]:
    """``encoder`` in the layout ``[student.options]`` asks for, and what its provenance gains.

    Args:
        encoder: a SPLADE SparseEncoder, plain or already inference-free (kept as it is).
        source: where it came from, for messages.
        inference_free: whether queries skip the transformer.
        idf: a dataset id or BEIR folder whose corpus's IDF starts the query weights (else 1).
    """
    if not isinstance(inference_free, bool):
        raise RkdError(f"splade student option inference_free must be true or false, got {inference_free!r}")
    if idf is not None and not inference_free:
        raise RkdError("splade student option idf sets the query weights of inference_free = true")
    if not inference_free or is_inference_free(encoder):
        if idf is not None:
            raise RkdError(f"{source}: already inference-free, with its own query weights; drop idf")
        return encoder, {}
    weight, extra = None, {}
    if idf is not None:
        weight, n_docs = idf_from_dataset(masked_lm(encoder).tokenizer, str(idf))
        extra["idf"] = {"dataset": str(idf), "documents": n_docs}
    return make_inference_free(encoder, weight, device), extra


def query_lr(value: Any, inference_free: bool) -> float | None:
    """The checked ``query_lr`` option: default :data:`QUERY_LR`; None for a full SPLADE model."""
    if value is not None and not inference_free:
        raise RkdError("splade student option query_lr needs inference_free = true")
    if value is None:
        return QUERY_LR if inference_free else None
    if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
        raise RkdError(f"splade student option query_lr must be a number > 0, got {value!r}")
    return float(value)


class QueryRoute:
    """A Router SparseEncoder that preprocesses every text for its ``query`` route (the features
    then carry the task, so its forward takes that route too): what ``_shared.embed`` needs."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.device = model.device

    def preprocess(self, texts: list[str]) -> dict[str, Any]:
        return dict(self.model.preprocess(texts, task="query"))

    def __call__(self, features: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = self.model(features)
        return out


def bm25_idf(token_ids: Iterable[Sequence[int]], vocab_size: int) -> np.ndarray:
    """BM25's IDF of every vocabulary token over documents given as token ids,
    ``log(1 + (N - df + 0.5) / (df + 0.5))``: positive for every token, largest for the unseen.

    Shapes:
        token_ids[N][*] → float32[vocab_size].

    Example:
        >>> [round(float(w), 4) for w in bm25_idf([[0, 1, 1], [0]], vocab_size=3)]  # df 2, 1, 0; N 2
        [0.1823, 0.6931, 1.7918]
    """
    df = np.zeros(vocab_size, dtype=np.int64)
    n = 0
    for ids in token_ids:
        df[np.unique(np.asarray(ids, dtype=np.int64))] += 1
        n += 1
    idf: np.ndarray = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)
    return idf


def idf_from_dataset(tokenizer: Any, dataset: str, batch: int = 1024) -> tuple[Any, int]:
    """``(IDF weights as a float32 Tensor (vocab,), number of documents)`` over the corpus of
    ``dataset`` (an ir_datasets id or a BEIR folder): each document's title and text as the index
    sees it, tokenized as queries are (no special tokens)."""
    import torch

    from retrieval_kd.data import load_dataset

    texts = [doc.full_text() for doc in load_dataset(dataset).docs.values()]

    def token_ids() -> Iterator[list[int]]:
        for start in range(0, len(texts), batch):
            chunk = texts[start : start + batch]
            yield from tokenizer(chunk, add_special_tokens=False, truncation=True)["input_ids"]

    return torch.from_numpy(bm25_idf(token_ids(), len(tokenizer.get_vocab()))), len(texts)


def training_arguments(query_lr: float) -> Any:
    """``SparseEncoderTrainingArguments`` with the Router settings this layout needs: the
    ``query`` column through the query route (the document columns take the Router's default
    route, ``document``), and ``query_lr`` for the static query weights (sentence-transformers
    refuses to train a Router model without a ``router_mapping``)."""
    from sentence_transformers import SparseEncoderTrainingArguments

    return functools.partial(
        SparseEncoderTrainingArguments,
        router_mapping={"query": "query"},
        learning_rate_mapping={QUERY_PARAMETERS: query_lr},
    )

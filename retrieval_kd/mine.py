"""Hard-negative mining: qrels positives plus the first-stage retriever's top-k non-positives.

The retriever is any encoder student; its corpus goes into its own index kind, so mining with a
SPLADE or ColBERT retriever is the same call as with a dense one.

With a margin (``absolute_margin``, ``relative_margin``), mining also drops likely false
negatives (RocketQA's denoising): see :func:`mine_filtered`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from retrieval_kd.data.base import Dataset
from retrieval_kd.data.candidates import Candidate, Candidates
from retrieval_kd.errors import RkdError
from retrieval_kd.indexing import build_index
from retrieval_kd.progress import Progress
from retrieval_kd.protocols import Encoder, Index


@dataclass(frozen=True)
class MineConfig:
    """Attributes:
    absolute_margin: drop a negative scoring above ``positive - absolute_margin``.
    relative_margin: drop a negative scoring above ``positive - |positive| * relative_margin``.
    """

    negatives: int = 30
    batch_size: int = 32
    index: Mapping[str, Any] = field(default_factory=dict)  # options of the retriever's index kind
    absolute_margin: float | None = None
    relative_margin: float | None = None

    @property
    def filters(self) -> bool:
        return self.absolute_margin is not None or self.relative_margin is not None


def mine(
    dataset: Dataset,
    retriever: Encoder,
    config: MineConfig,
    index: Index | None = None,
    progress: Progress | None = None,
) -> tuple[Candidates, Index | None]:
    """Candidates for every query with qrels: positives (relevance > 0) and the retriever's top
    ``negatives`` other documents, best first. Returns the candidates and the corpus index
    (reusable for evaluating the retriever on another split of the same corpus), or None for
    filtered mining, which searches without one (:func:`mine_filtered`)."""
    if config.filters:
        return mine_filtered(dataset, retriever, config), None
    if index is None:
        index = build_index(retriever, dataset, None, config.index, config.batch_size, progress=progress)
    qids = list(dataset.queries)
    qreps = retriever.encode_queries([dataset.queries[q] for q in qids], batch_size=config.batch_size)
    depth = config.negatives + max(len(r) for r in dataset.qrels.values()) + 1
    run = index.search(qids, qreps, depth)
    items = []
    for qid in qids:
        positives = _positives(dataset, qid)
        if not positives:
            continue
        ranked = sorted(run.get(qid, {}).items(), key=lambda kv: (-kv[1], kv[0]))
        # The query's own id is skipped too: BEIR ignores a doc retrieved for itself.
        negatives = tuple(d for d, _ in ranked if d not in positives and d != qid)[: config.negatives]
        items.append(Candidate(qid, positives, negatives))
    manifest = _manifest(dataset, retriever, config, {"kind": index.kind, **dict(config.index)})
    return Candidates(items, manifest), index


def _positives(dataset: Dataset, qid: str) -> tuple[str, ...]:
    return tuple(d for d, rel in dataset.qrels[qid].items() if rel > 0)


def _manifest(
    dataset: Dataset, retriever: Encoder, config: MineConfig, index: dict[str, Any]
) -> dict[str, Any]:
    return {
        "format": "rkd-candidates/1",
        "dataset": dataset.fingerprint(),
        "retriever": {"fingerprint": retriever.fingerprint(), **retriever.provenance},
        "negatives": config.negatives,
        "index": index,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def mine_filtered(dataset: Dataset, retriever: Encoder, config: MineConfig) -> Candidates:
    """Mining with false-negative filtering (RocketQA's denoising) through sentence-transformers'
    ``mine_hard_negatives``: a candidate negative that scores within the margin of the query's
    positive, or above it, is dropped and the next one below takes its place.

    The filter scores with the mining model itself, a bi-encoder (cosine of normalised
    embeddings: what ``mine_hard_negatives`` does), not with the teacher; with several
    positives the margin is taken from the lowest-scored one. Search is exact (all documents).
    ``mine_hard_negatives`` works on texts: documents with the same text count once (under the
    first id), and queries with the same text share their negatives.

    The manifest's ``false_negatives`` records the margins and ``dropped``: how many of the
    negatives mining without the filter would have kept (each query's top ``negatives``
    non-positives) the filter removed; ``short``: queries left with fewer than ``negatives``.

    Raises:
        RkdError: the retriever is not a dense (SentenceTransformer) student.
    """
    import tempfile

    from sentence_transformers import SentenceTransformer

    model = getattr(retriever, "model", None)
    if retriever.kind != "dense" or not isinstance(model, SentenceTransformer):
        raise RkdError(
            f"false-negative filtering ([mine] absolute_margin / relative_margin) scores with the mining "
            f"model through sentence-transformers' mine_hard_negatives: it needs a dense retriever, "
            f"not {retriever.kind!r}"
        )
    docs = dataset.doc_texts()
    doc_id: dict[str, str] = {}
    for d, text in docs.items():
        doc_id.setdefault(text, d)
    positives = {q: p for q in dataset.queries if (p := _positives(dataset, q))}
    with tempfile.TemporaryDirectory(prefix="rkd-mine-") as cache:  # the second call reuses embeddings
        kept = _negatives(dataset, model, docs, positives, config, cache, filtered=True)
        plain = _negatives(dataset, model, docs, positives, config, cache, filtered=False)
    items, dropped, short = [], 0, 0
    for qid, pos in positives.items():
        skip = {*pos, qid}  # the query's own id too, as mine() does
        text = dataset.queries[qid]
        negatives = [d for t in kept.get(text, []) if (d := doc_id[t]) not in skip][: config.negatives]
        before = [d for t in plain.get(text, []) if (d := doc_id[t]) not in skip][: config.negatives]
        dropped += len(set(before) - set(negatives))
        short += len(negatives) < config.negatives
        items.append(Candidate(qid, pos, tuple(negatives)))
    manifest = _manifest(dataset, retriever, config, {"kind": "exact (sentence-transformers)"})
    manifest["false_negatives"] = {
        "scorer": "the mining model (bi-encoder cosine), sentence-transformers mine_hard_negatives",
        "absolute_margin": config.absolute_margin,
        "relative_margin": config.relative_margin,
        "dropped": dropped,
        "short": short,
    }
    return Candidates(items, manifest)


def _negatives(
    dataset: Dataset,
    model: Any,
    docs: Mapping[str, str],
    positives: Mapping[str, tuple[str, ...]],
    config: MineConfig,
    cache: str,
    filtered: bool,
) -> dict[str, list[str]]:
    """Query text → negative texts, best first, from ``mine_hard_negatives``: one more than
    asked, since the query's own id is skipped afterwards (as :func:`mine` does)."""
    from datasets import Dataset as HFDataset
    from sentence_transformers.util import mine_hard_negatives

    rows = [(dataset.queries[q], docs[p]) for q, pos in positives.items() for p in pos if p in docs]
    out = mine_hard_negatives(
        HFDataset.from_dict({"query": [q for q, _ in rows], "positive": [p for _, p in rows]}),
        model,
        corpus=list(docs.values()),
        absolute_margin=config.absolute_margin if filtered else None,
        relative_margin=config.relative_margin if filtered else None,
        num_negatives=config.negatives + 1,
        output_format="labeled-list",
        batch_size=config.batch_size,
        verbose=False,
        cache_folder=cache,
    )
    # labeled-list rows: (query, [positive, negative, ...], labels); one row per positive
    return {row["query"]: row["positive"][1:] for row in out}

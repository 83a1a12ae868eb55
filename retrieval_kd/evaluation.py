"""Retrieval + metrics for one system on one dataset, written where a person can find them.

An encoder retrieves through an index of its own kind; a reranker reorders the top of a
first-stage run. Both end as a ranx-ready Run and the same metrics.
"""

from __future__ import annotations

import logging
import re
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from retrieval_kd.data.base import Dataset, QrelsCoverage
from retrieval_kd.errors import RkdError
from retrieval_kd.eval.cost import LATENCY_QUERIES
from retrieval_kd.progress import Progress
from retrieval_kd.protocols import Encoder, Index, Reranker, Student
from retrieval_kd.types import Qrels, Run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalResult:
    """One system's metrics and run.

    Attributes:
        coverage: the dataset's judgements that name a query without text (left out of the
            metrics) or a document absent from the corpus (kept: relevant, never retrieved).
        cost: throughput, latency and size measured in this run (:mod:`retrieval_kd.eval.cost`).
    """

    name: str
    metrics: dict[str, float]
    run: Run
    index: Index | None = None
    coverage: QrelsCoverage = field(default_factory=QrelsCoverage)
    cost: dict[str, float | int | None] = field(default_factory=dict)


def eval_queries(dataset: Dataset, max_queries: int | None = None) -> dict[str, str]:
    if max_queries is not None and max_queries < 1:
        raise RkdError(f"max_queries must be at least 1, got {max_queries}")
    return dict(list(dataset.queries.items())[:max_queries]) if max_queries else dict(dataset.queries)


_CUTOFF = re.compile(r"@(\d+)$")


def check_depth(metrics: Sequence[str], k: int) -> None:
    """Refuses a metric whose cutoff is deeper than the run: ``recall@100`` over a top 10 would
    report a number as if 100 documents had been retrieved.

    Raises:
        RkdError: ``k`` below 1, or the deepest cutoff above ``k`` (naming that metric and the
            ``k`` it needs).

    Example:
        >>> check_depth(["ndcg@10", "map"], 10)
        >>> check_depth(["ndcg@10", "recall@100"], 10)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        retrieval_kd.errors.RkdError: metric 'recall@100' needs the top 100 documents but k is 10: ...
    """
    if k < 1:
        raise RkdError(f"k (the retrieval depth) must be at least 1, got {k}")
    cutoffs = [(int(m[1]), name) for name in metrics if (m := _CUTOFF.search(name.strip()))]
    if cutoffs:
        deepest, name = max(cutoffs, key=lambda c: c[0])
        if deepest > k:
            raise RkdError(
                f"metric {name!r} needs the top {deepest} documents but k is {k}: "
                f"retrieve deeper (k = {deepest}) or lower the cutoff"
            )


# corpus fingerprints already computed (hashing a corpus reads every text): one per dataset object
_CORPUS_FPS: weakref.WeakKeyDictionary[Dataset, str] = weakref.WeakKeyDictionary()


def check_index_corpus(index: Index, dataset: Dataset, where: object = "the index") -> None:
    """Refuses an index built on another corpus than ``dataset``'s (its ids and texts differ,
    so every retrieved id would be judged against the wrong documents).

    Args:
        index: an index whose manifest records ``corpus`` (``build_index`` stamps it).
        dataset: the dataset to evaluate on.
        where: how messages name the index (its folder).

    Raises:
        RkdError: the fingerprints differ; the message names both datasets.
    """
    from retrieval_kd.indexing import corpus_fingerprint

    recorded = index.manifest.get("corpus")
    if recorded is None:
        log.warning("%s records no corpus fingerprint; it cannot be checked against %s", where, dataset.id)
        return
    if dataset not in _CORPUS_FPS:
        _CORPUS_FPS[dataset] = corpus_fingerprint(dataset)
    if recorded != _CORPUS_FPS[dataset]:
        built_on = index.manifest.get("dataset") or "an unrecorded dataset"
        raise RkdError(
            f"{where} was built on the corpus of {built_on} (fingerprint {recorded}), not on the corpus "
            f"of {dataset.id} (fingerprint {_CORPUS_FPS[dataset]}); index {dataset.id} with `rkd index` "
            "to evaluate on it"
        )


def judged_qrels(dataset: Dataset, queries: Mapping[str, str]) -> tuple[Qrels, QrelsCoverage]:
    """The qrels of the evaluated ``queries`` and what the dataset's qrels cannot match.

    A judged query without text cannot be run: it is left out (not scored 0) and counted. A
    judgement naming a document absent from the corpus is kept, as trec_eval keeps it (the
    document counts as relevant and is never retrieved), and counted. Both are logged.
    """
    coverage = dataset.qrels_coverage()
    if coverage:
        log.warning(
            "qrels of %s: %d judged query id(s) with no text in the topics (left out of the metrics, "
            "e.g. %s); %d judgement(s) of documents absent from the corpus (kept: relevant, never "
            "retrievable, e.g. %s)",
            dataset.id,
            coverage.queries_not_in_topics,
            list(coverage.query_examples),
            coverage.judgements_not_in_corpus,
            list(coverage.doc_examples),
        )
    return {qid: dataset.qrels[qid] for qid in queries}, coverage


def rerank(
    student: Reranker,
    queries: Mapping[str, str],
    docs: Mapping[str, str],
    first_stage: Run,
    k: int,
    batch_size: int,
) -> Run:
    """Reorders the top ``k`` of ``first_stage`` per query by the reranker's pair scores."""
    run: Run = {}
    for qid, text in queries.items():
        ranked = sorted(first_stage.get(qid, {}).items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        ids = [d for d, _ in ranked]
        scores = np.zeros(0, dtype=np.float32)
        if ids:
            scores = np.asarray(student.score_pairs([text] * len(ids), [docs[d] for d in ids], batch_size))
        run[qid] = {d: float(s) for d, s in zip(ids, scores, strict=True)}
    return run


def evaluate_system(
    name: str,
    student: Student,
    dataset: Dataset,
    metrics: tuple[str, ...],
    k: int,
    index: Index | None = None,
    first_stage: Run | None = None,
    max_queries: int | None = None,
    batch_size: int = 32,
    progress: Progress | None = None,
    index_kind: str | None = None,
    index_options: Mapping[str, Any] | None = None,
    latency_queries: int = LATENCY_QUERIES,
) -> EvalResult:
    """Evaluates ``student`` on ``dataset`` (the eval stage writes what it returns to disk).

    An encoder searches ``index`` (which must have been built by it) or, without one, a fresh
    index of the corpus (``index_kind``/``index_options``); a reranker reorders ``first_stage``.
    The batched pass is timed (QPS), then up to ``latency_queries`` queries are run again one at
    a time (latency percentiles): :attr:`EvalResult.cost`.
    """
    from retrieval_kd.api import Retriever
    from retrieval_kd.eval.cost import build_rate, latencies, parameter_count, summarise
    from retrieval_kd.eval.metrics import evaluate
    from retrieval_kd.indexing import build_index

    check_depth(metrics, k)
    queries = eval_queries(dataset, max_queries)
    probe = list(queries.items())[:latency_queries]
    started = time.perf_counter()
    if isinstance(student, Encoder) and student.role == "encoder":
        if index is None:
            index = build_index(student, dataset, index_kind, index_options, batch_size, progress=progress)
            started = time.perf_counter()
        else:
            check_index_corpus(index, dataset)
        retriever = Retriever(student, index)
        run = retriever.search(queries, k=k, batch_size=batch_size)
        seconds = time.perf_counter() - started
        times = latencies(lambda qid, text: retriever.search({qid: text}, k=k, batch_size=1), probe)
    elif isinstance(student, Reranker):
        if first_stage is None:
            raise RkdError(f"{name}: a reranker needs a first-stage run to rerank (an index or run file)")
        docs = dataset.doc_texts()
        run = rerank(student, queries, docs, first_stage, k, batch_size)
        seconds = time.perf_counter() - started
        times = latencies(
            lambda qid, text: rerank(student, {qid: text}, docs, first_stage, k, batch_size), probe
        )
    else:
        raise RkdError(f"{name}: student role {student.role!r} is neither 'encoder' nor 'reranker'")
    cost = summarise(
        queries=len(queries),
        seconds=seconds,
        latency_ms=times,
        parameters=parameter_count(student),
        encode=build_rate(index.manifest) if index is not None else None,
    )
    qrels, coverage = judged_qrels(dataset, queries)
    scores = evaluate(qrels, run, metrics)
    return EvalResult(name, scores, run, index, coverage, cost)

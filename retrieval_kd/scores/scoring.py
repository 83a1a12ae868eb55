"""Resumable, shardable teacher scoring into a :class:`ScoreStore`."""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from retrieval_kd.errors import DataError, RkdError
from retrieval_kd.protocols import Teacher
from retrieval_kd.scores.store import ScoreStore
from retrieval_kd.timing import Phases
from retrieval_kd.types import Pair


def shard_pairs(pairs: Sequence[Pair], shard: tuple[int, int]) -> list[Pair]:
    """This shard's pairs, input order kept: those whose ``crc32(query_id) % n == i``
    (stable across processes and Python runs; all of a query's pairs land in one shard).

    Example:
        >>> [p.query_id for p in shard_pairs([Pair("q1", "d"), Pair("q4", "d")], (1, 2))]
        ['q4']
    """
    i, n = shard
    if not (n >= 1 and 0 <= i < n):
        raise RkdError(f"bad shard {shard}: need (i, n) with 0 <= i < n")
    return [Pair(q, d) for q, d in pairs if zlib.crc32(q.encode()) % n == i]


def score_pairs(
    store: ScoreStore,
    teacher: Teacher,
    pairs: Sequence[Pair],
    query_text: Mapping[str, str],
    doc_text: Mapping[str, str],
    *,
    batch_size: int = 64,
    shard: tuple[int, int] = (0, 1),
    progress: Callable[[int], None] | None = None,
    phases: Phases | None = None,
) -> int:
    """Scores this shard's pairs that ``store`` lacks, one stored part per batch; resumable.

    Shard ``(i, n)`` keeps the pairs whose ``crc32(query_id) % n == i`` (stable across processes,
    and all of a query's pairs land in one shard). The missing pairs are sorted by text length,
    then (query_id, doc_id), and cut into batches in that order, so a run killed after any batch and
    rerun scores exactly the batches an uninterrupted run would have: the stores end equal pair
    for pair (bit for bit with a deterministic teacher).

    Args:
        store: an open (writable) store of ``teacher``'s fingerprint.
        teacher: the scorer.
        pairs: candidate pairs; duplicates are scored once.
        query_text: query id → text.
        doc_text: doc id → text.
        batch_size: pairs per ``teacher.score`` call and per stored part.
        shard: ``(i, n)``, this process's shard of ``n``.
        progress: called with the batch size after each stored batch.
        phases: where the time goes: ``teacher.score`` calls add to ``compute``, stored parts to
            ``write``.

    Returns:
        The number of pairs scored by this call.

    Raises:
        RkdError: the teacher's fingerprint is not the store's, a bad shard or batch size, or
            the teacher returned a wrong-length or non-finite batch (nothing of it is stored).
        DataError: a pair's query or doc id has no text.
    """
    if batch_size < 1:
        raise RkdError(f"batch_size must be at least 1, got {batch_size}")
    fingerprint = teacher.fingerprint()
    if fingerprint != store.fingerprint:
        raise RkdError(
            f"teacher fingerprint {fingerprint!r} does not match the store's "
            f"{store.fingerprint!r} ({store.path}); open the store with the teacher's fingerprint"
        )

    mine = set(shard_pairs(pairs, shard))
    for q, d in mine:
        if q not in query_text:
            raise DataError(f"query {q!r} of pair ({q!r}, {d!r}) has no text")
        if d not in doc_text:
            raise DataError(f"doc {d!r} of pair ({q!r}, {d!r}) has no text")
    # Batches are cut from pairs ordered by text length, ties by ids: similar lengths pad less (as
    # CrossEncoder.predict sorts within one call), and the order is total and reproducible, so a
    # resumed run cuts exactly the batches that were still missing.
    todo = sorted(store.missing(sorted(mine)), key=lambda p: (len(query_text[p[0]]) + len(doc_text[p[1]]), p))

    phases = phases if phases is not None else Phases()
    batches = [todo[start : start + batch_size] for start in range(0, len(todo), batch_size)]

    def finish(batch: list[Pair], scores: Callable[[], Any]) -> None:
        with phases.span("compute"):
            raw = scores()  # waits for the part's forward passes where they still run
        _store_batch(store, fingerprint, batch, raw, phases)
        if progress is not None:
            progress(len(batch))

    # Where the teacher leaves its forward passes queued (launch_prepared on a GPU), part i is
    # started before part i - 1 is stored: its kernels run while the host copies, checks and
    # writes the previous part, so the device does not idle at part edges. Scores computed
    # before their call returns are stored at once, so a killed run loses no finished part.
    waiting: tuple[list[Pair], Callable[[], Any]] | None = None
    with _Prefetch(teacher, query_text, doc_text, batches, phases) as ahead:
        for i, batch in enumerate(batches):
            try:
                with phases.span("compute"):
                    started = ahead.launch(i)
            finally:  # the previous part's kernels ran: it is stored even when this launch fails
                if waiting is not None:
                    finish(*waiting)
                    waiting = None
            if ahead.defers:
                waiting = (batch, started)
            else:
                finish(batch, started)
        if waiting is not None:
            finish(*waiting)
    return len(todo)


class _Prefetch:
    """Scores batch ``i`` while the next one is prepared in a thread, for a teacher that splits
    its work into ``prepare`` (tokenizing, padding: CPU) and ``score_prepared`` (forward passes):
    the tokenizer runs in Rust without the GIL and CUDA kernels run asynchronously, so the two
    overlap, which neither sentence-transformers nor a DataLoader does for a stream of stored
    parts. A teacher that also has ``launch_prepared`` leaves its forward passes queued, and
    ``score_pairs`` stores the previous part while they run. Other teachers are called with
    ``score``. Time spent waiting for a batch to be ready
    is recorded as ``tokenize`` (inside the ``compute`` span, from which the scoring stage
    takes it apart)."""

    def __init__(
        self,
        teacher: Teacher,
        query_text: Mapping[str, str],
        doc_text: Mapping[str, str],
        batches: list[list[Pair]],
        phases: Phases,
    ) -> None:
        self.teacher, self.batches, self.phases = teacher, batches, phases
        self.query_text, self.doc_text = query_text, doc_text
        prepare, run = getattr(teacher, "prepare", None), getattr(teacher, "score_prepared", None)
        self.split = callable(prepare) and callable(run) and bool(getattr(teacher, "prepare_ahead", True))
        self.pool: ThreadPoolExecutor | None = None
        self.pending: Future[Any] | None = None
        # launched parts are stored one part later (their forward passes still run)
        self.defers = self.split and callable(getattr(teacher, "launch_prepared", None))

    def texts(self, batch: list[Pair]) -> tuple[list[str], list[str]]:
        return [self.query_text[q] for q, _ in batch], [self.doc_text[d] for _, d in batch]

    def __enter__(self) -> _Prefetch:
        if self.split and self.batches:
            self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rkd-prepare")
            self.pending = self.pool.submit(self.teacher.prepare, *self.texts(self.batches[0]))  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def launch(self, i: int) -> Callable[[], Any]:
        """Starts batch ``i``; returns what gives its scores. A teacher with
        ``launch_prepared`` leaves its forward passes running (queued on a GPU); any other is
        done scoring before this returns."""
        if self.pool is None or self.pending is None:
            raw = self.teacher.score(*self.texts(self.batches[i]))
            return lambda: raw
        started = time.perf_counter()
        prepared = self.pending.result()
        self.phases.add("tokenize", time.perf_counter() - started)
        nxt = i + 1
        self.pending = (
            self.pool.submit(self.teacher.prepare, *self.texts(self.batches[nxt]))  # type: ignore[attr-defined]
            if nxt < len(self.batches)
            else None
        )
        if self.defers:
            return self.teacher.launch_prepared(prepared)  # type: ignore[attr-defined,no-any-return]
        raw = self.teacher.score_prepared(prepared)  # type: ignore[attr-defined]
        return lambda: raw


def _store_batch(store: ScoreStore, fingerprint: str, batch: list[Pair], raw: Any, phases: Phases) -> None:
    """Checks one batch's scores and stores them as a part (nothing of a bad batch is stored)."""
    scores = np.asarray(raw, dtype=np.float32)
    if scores.shape != (len(batch),):
        raise RkdError(
            f"teacher {fingerprint!r} returned scores of shape {scores.shape} for a batch "
            f"of {len(batch)} pairs starting at (query {batch[0][0]!r}, doc {batch[0][1]!r})"
        )
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        q, d = batch[int(bad[0])]
        raise RkdError(
            f"teacher {fingerprint!r} returned a non-finite score {scores[bad[0]]} for pair "
            f"(query {q!r}, doc {d!r}); none of this batch of {len(batch)} was stored"
        )
    with phases.span("write"):
        store.add(batch, scores)

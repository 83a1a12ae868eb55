"""Resumable, shardable teacher scoring into a :class:`ScoreStore`."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence

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
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        with phases.span("compute"):
            raw = teacher.score([query_text[q] for q, _ in batch], [doc_text[d] for _, d in batch])
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
        if progress is not None:
            progress(len(batch))
    return len(todo)

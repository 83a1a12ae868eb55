"""Resumable scoring by teachers that judge a query's candidate list, not aligned pairs.

A :class:`PairwiseTeacher` plans each query's comparisons as a :data:`Schedule` (a generator that
may adapt to earlier answers, as PRP's sliding passes do) and judges batches of them. The
driver here runs many queries' schedules in lock step, batches all their pending comparisons
across queries, and stores each batch as one part of a pairwise store before feeding the values
back. A comparison already stored is read back, never asked again, so a run killed at any point
and rerun replays every schedule from the store and asks exactly what was left: the stores end
equal judgement for judgement.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from retrieval_kd.errors import DataError, RkdError
from retrieval_kd.scores.store import ScoreStore
from retrieval_kd.types import Judgement

Schedule = Generator[list[tuple[str, str]], np.ndarray, None]


@runtime_checkable
class PairwiseTeacher(Protocol):
    """A teacher that judges a query's candidates two at a time (``llm-pairwise``)."""

    judgement_kind: str  # "pairwise": the store kind its judgements go to

    def fingerprint(self) -> str: ...

    def schedule(self, doc_ids: Sequence[str]) -> Schedule:
        """The (doc_a, doc_b) comparisons of one query, requested step by step."""
        ...

    def calls(self, n_docs: int) -> int:
        """Judgements a list of ``n_docs`` needs at most: the cost, stated before running."""
        ...

    def judge(self, queries: Sequence[str], first: Sequence[str], second: Sequence[str]) -> np.ndarray:
        """Shapes: queries[N], first[N], second[N] → float32[N], how much ``first`` beats ``second``."""
        ...


def judge_lists(
    store: ScoreStore | None,
    teacher: PairwiseTeacher,
    lists: Mapping[str, Sequence[str]],
    query_text: Mapping[str, str],
    doc_text: Mapping[str, str],
    *,
    batch_size: int = 64,
    shard: tuple[int, int] = (0, 1),
    queries_per_round: int = 256,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Runs this shard's queries' schedules, storing every new judgement; resumable.

    Queries are taken in sorted id order, ``queries_per_round`` at a time; the comparisons all
    of them request next are cut, in (query, request) order, into batches of ``batch_size``,
    each judged in one ``teacher.judge`` call and stored as one part. ``store=None`` keeps the
    judgements in memory (cost estimates).

    Args:
        store: an open pairwise store of ``teacher``'s fingerprint, or None.
        lists: query id → its candidate doc ids, in candidate order (the sliding start order).
        shard: ``(i, n)``: the queries whose ``crc32(query_id) % n == i``.
        progress: called with the number of new judgements after each batch.

    Returns:
        The number of judgements asked of the teacher by this call.

    Raises:
        RkdError: fingerprint or kind mismatch, or a wrong-length or non-finite batch.
        DataError: a query or doc id has no text.
    """
    fingerprint = teacher.fingerprint()
    if store is not None and (store.fingerprint != fingerprint or store.kind != "pairwise"):
        raise RkdError(
            f"teacher {fingerprint!r} writes pairwise judgements; store {store.path} is the "
            f"{store.kind} store of {store.fingerprint!r}"
        )
    i, n = shard
    mine = sorted(q for q in lists if zlib.crc32(q.encode()) % n == i)
    for q in mine:
        if q not in query_text:
            raise DataError(f"query {q!r} has no text")
        for d in lists[q]:
            if d not in doc_text:
                raise DataError(f"doc {d!r} of query {q!r} has no text")
    memory: dict[Judgement, float] = {}
    asked = 0
    for start in range(0, len(mine), queries_per_round):
        schedules = {q: teacher.schedule(list(lists[q])) for q in mine[start : start + queries_per_round]}
        pending = {q: r for q, s in schedules.items() if (r := _advance(s, None)) is not None}
        while pending:
            keys = [Judgement(q, a, b) for q in sorted(pending) for a, b in pending[q]]
            asked += _fill(store, memory, teacher, keys, query_text, doc_text, batch_size, progress)
            values = _values(store, memory, keys)
            at = 0
            for q in sorted(pending):
                width = len(pending[q])
                nxt = _advance(schedules[q], values[at : at + width])
                at += width
                if nxt is None:
                    del pending[q]
                else:
                    pending[q] = nxt
    return asked


def _advance(schedule: Schedule, values: np.ndarray | None) -> list[tuple[str, str]] | None:
    try:
        return next(schedule) if values is None else schedule.send(values)
    except StopIteration:
        return None


def _fill(
    store: ScoreStore | None,
    memory: dict[Judgement, float],
    teacher: PairwiseTeacher,
    keys: list[Judgement],
    query_text: Mapping[str, str],
    doc_text: Mapping[str, str],
    batch_size: int,
    progress: Callable[[int], None] | None,
) -> int:
    """Judges the ``keys`` not stored yet, in order, in batches of ``batch_size``, each stored as
    one part. Batches are cut from the missing keys alone: a run killed after some batches stored
    a prefix of them, so its rerun cuts the remaining batches exactly as the whole run did."""
    unique = list(dict.fromkeys(keys))
    if store is not None:
        todo = store.missing(unique)
    else:
        todo = [k for k in unique if k not in memory]
    asked = 0
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        raw = teacher.judge(
            [query_text[k.query_id] for k in batch],
            [doc_text[k.doc_a] for k in batch],
            [doc_text[k.doc_b] for k in batch],
        )
        values = np.asarray(raw, dtype=np.float32)
        if values.shape != (len(batch),) or not np.isfinite(values).all():
            raise RkdError(
                f"teacher {teacher.fingerprint()!r} returned {values.shape} values (finite: "
                f"{bool(np.isfinite(values).all())}) for {len(batch)} judgements starting at {batch[0]}"
            )
        if store is not None:
            store.add(batch, values)
        memory.update(zip(batch, values.tolist(), strict=True))
        asked += len(batch)
        if progress is not None:
            progress(len(batch))
    return asked


def _values(store: ScoreStore | None, memory: dict[Judgement, float], keys: list[Judgement]) -> np.ndarray:
    if all(k in memory for k in keys):
        return np.array([memory[k] for k in keys], dtype=np.float32)
    assert store is not None
    values = store.lookup(keys)
    memory.update(zip(keys, values.tolist(), strict=True))
    return values


@runtime_checkable
class ListTeacher(Protocol):
    """A teacher that ranks a query's whole candidate list at once (``llm-listwise``): its
    scores are pointwise, but only a whole list yields them."""

    def fingerprint(self) -> str: ...

    def calls(self, n_docs: int) -> int:
        """LLM calls a list of ``n_docs`` takes: the cost, stated before running."""
        ...

    def rank_lists(self, queries: Sequence[str], lists: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Shapes: queries[Q], lists[Q][n_q] (passage texts) → Q arrays of float32[n_q]."""
        ...


def rank_lists(
    store: ScoreStore,
    teacher: ListTeacher,
    lists: Mapping[str, Sequence[str]],
    query_text: Mapping[str, str],
    doc_text: Mapping[str, str],
    *,
    queries_per_part: int = 16,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Ranks the lists of the queries the pointwise ``store`` lacks a pair of, in sorted query
    order, ``queries_per_part`` queries per ``teacher.rank_lists`` call and per stored part; a
    rerun after a kill ranks only the queries whose part was not stored.

    Returns:
        The number of queries ranked by this call.
    """
    from retrieval_kd.types import Pair

    wanted = {q: list(dict.fromkeys(ds)) for q, ds in lists.items()}
    missing = {p.query_id for p in store.missing([Pair(q, d) for q, ds in wanted.items() for d in ds])}
    todo = sorted(missing)
    for start in range(0, len(todo), queries_per_part):
        chunk = todo[start : start + queries_per_part]
        texts = [[doc_text[d] for d in wanted[q]] for q in chunk]
        scores = teacher.rank_lists([query_text[q] for q in chunk], texts)
        keys = [Pair(q, d) for q in chunk for d in wanted[q]]
        store.add(keys, np.concatenate([np.asarray(s, dtype=np.float32) for s in scores]))
        if progress is not None:
            progress(sum(teacher.calls(len(wanted[q])) for q in chunk))
    return len(todo)

"""The score stage for teachers that judge candidate lists (``llm-pairwise``): raw preferences
into a pairwise store, then per-pair targets derived from them into a pointwise store, which is
what the train stage reads."""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from retrieval_kd.distributed import writer_name
from retrieval_kd.progress import Progress, ensure
from retrieval_kd.scores.judging import ListTeacher, PairwiseTeacher
from retrieval_kd.types import Pair


def candidate_lists(pairs: Sequence[Pair]) -> dict[str, list[str]]:
    """Each query's candidates in a reproducible order that does not depend on which are
    positives (``Candidates.pairs`` lists positives first, and a sliding schedule would start
    from that hint): by ``crc32(query_id, doc_id)``, ties by id.

    Example:
        >>> sorted(candidate_lists([Pair("q", "d2"), Pair("q", "d1"), Pair("q", "d2")])["q"])
        ['d1', 'd2']
    """
    lists: dict[str, list[str]] = {}
    for q, d in pairs:
        lists.setdefault(q, []).append(d)
    return {
        q: sorted(dict.fromkeys(ds), key=lambda d: (zlib.crc32(f"{q}\0{d}".encode()), d))
        for q, ds in lists.items()
    }


def judge_candidates(
    root: Path,
    teacher: PairwiseTeacher | ListTeacher,
    spec: dict[str, Any],
    pairs: Sequence[Pair],
    queries: Mapping[str, str],
    docs: Mapping[str, str],
    shard: tuple[int, int],
    part_size: int,
    progress: Progress | None = None,
) -> tuple[str, str]:
    """Judges this shard's candidate lists into the teacher's pairwise store, then derives the
    targets (``teacher.targets``) into a pointwise store; or, for a :class:`ListTeacher`, ranks
    them straight into its pointwise store.

    Returns:
        ``(derived store fingerprint, summary line)``.
    """
    from retrieval_kd.scores.judging import judge_lists
    from retrieval_kd.scores.store import ScoreStore
    from retrieval_kd.scores.targets import derive_store

    lists = candidate_lists(pairs)
    planned = sum(teacher.calls(len(ds)) for ds in lists.values())
    if not isinstance(teacher, PairwiseTeacher):
        return _rank(root, teacher, spec, lists, queries, docs, shard, part_size, planned, progress)
    method = str(getattr(teacher, "targets", "bradley-terry"))
    with ScoreStore.open(
        root, teacher.fingerprint(), spec, writer=writer_name(shard), kind="pairwise"
    ) as store:
        task = ensure(progress).task(
            f"pairwise judging (at most {planned:,} LLM calls)", planned, unit="calls"
        )
        asked = judge_lists(
            store, teacher, lists, queries, docs, batch_size=part_size, shard=(0, 1), progress=task.advance
        )
        with derive_store(root, store, lists, method, spec, writer=f"derive-{writer_name(shard)}") as derived:
            held = len(derived)
            fp = derived.fingerprint
    summary = (
        f"pairwise teacher {teacher.fingerprint()}: {asked} new judgements (at most {planned} planned) "
        f"→ {root / teacher.fingerprint()}; {method} targets for {held} pairs → {root / fp}"
    )
    return fp, summary


def _rank(
    root: Path,
    teacher: ListTeacher,
    spec: dict[str, Any],
    lists: dict[str, list[str]],
    queries: Mapping[str, str],
    docs: Mapping[str, str],
    shard: tuple[int, int],
    part_size: int,
    planned: int,
    progress: Progress | None,
) -> tuple[str, str]:
    from retrieval_kd.scores.judging import rank_lists
    from retrieval_kd.scores.store import ScoreStore

    fp = teacher.fingerprint()
    longest = max((len(ds) for ds in lists.values()), default=1)
    with ScoreStore.open(root, fp, spec, writer=writer_name(shard)) as store:
        task = ensure(progress).task(f"listwise ranking ({planned:,} LLM calls)", planned, unit="calls")
        ranked = rank_lists(
            store,
            teacher,
            lists,
            queries,
            docs,
            queries_per_part=max(1, part_size // longest),
            progress=task.advance,
        )
        held = len(store)
    faults = dict(getattr(teacher, "malformed", {}))
    return (
        fp,
        f"listwise teacher {fp}: ranked {ranked} queries, malformed outputs {faults}; "
        f"store holds {held} → {root / fp}",
    )

"""``rkd score-teacher --dry-run``: the cost of a scoring job, measured on a sample, before
paying it. The chosen teacher scores a seeded sample on the chosen device; nothing is written."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from retrieval_kd.distributed import parse_shard
from retrieval_kd.stages.score import ScoreStage


@dataclass(frozen=True)
class Estimate:
    """What a scoring job will cost, extrapolated from a timed sample.

    Attributes:
        teacher: the teacher's fingerprint.
        pairs: candidate pairs of this shard.
        calls: teacher calls of the whole job: one per pair, or the LLM prompts a pairwise
            teacher plans (an upper bound for sliding schedules).
        tokens: prompt tokens of the whole job (None when the teacher does not say).
        sample_calls: calls made on the sample; ``sample_seconds`` their wall time.
        load_seconds: building the teacher (model load, weight hash).
        seconds: estimated wall time of the whole job's scoring (``calls`` at the sample's rate).
    """

    teacher: str
    pairs: int
    calls: int
    tokens: int | None
    sample_calls: int
    sample_seconds: float
    load_seconds: float
    seconds: float

    def lines(self) -> list[str]:
        rate = self.sample_calls / self.sample_seconds if self.sample_seconds > 0 else float("inf")
        tokens = "unknown" if self.tokens is None else f"{self.tokens:,}"
        return [
            f"teacher {self.teacher}: {self.pairs:,} pairs, {self.calls:,} teacher calls, "
            f"{tokens} prompt tokens",
            f"sample: {self.sample_calls} calls in {self.sample_seconds:.2f} s ({rate:,.1f} calls/s); "
            f"model load {self.load_seconds:.1f} s",
            f"estimated wall time: {_duration(self.seconds + self.load_seconds)} "
            "(nothing was written to the store)",
        ]


def _duration(seconds: float) -> str:
    h, rest = divmod(round(seconds), 3600)
    return f"{h}h{rest // 60:02d}m{rest % 60:02d}s" if h else f"{rest // 60}m{rest % 60:02d}s"


def estimate_stage(config: ScoreStage, sample: int = 64, seed: int = 0) -> Estimate:
    """Times ``sample`` teacher calls on a seeded sample of this shard's candidates and
    extrapolates to the whole job. Nothing is written to the store.

    For a pairwise teacher whole queries are sampled (until their planned calls reach
    ``sample``) and their schedules run in memory.
    """
    from retrieval_kd.data import load_dataset
    from retrieval_kd.data.candidates import Candidates
    from retrieval_kd.scores.judging import ListTeacher, PairwiseTeacher
    from retrieval_kd.scores.scoring import shard_pairs
    from retrieval_kd.teachers import TEACHERS, build_teacher

    TEACHERS.check(config.teacher)
    dataset = load_dataset(config.dataset)
    mine = shard_pairs(
        Candidates.load(config.candidates, corpus=dataset.docs).pairs(), parse_shard(config.shard)
    )
    start = time.perf_counter()
    teacher = build_teacher(
        config.teacher,
        config.model,
        max_length=config.max_length,
        dtype=config.dtype,
        batch_size=config.batch_size,
        device=config.device,
        **dict(config.options),
    )
    load = time.perf_counter() - start
    docs = dataset.doc_texts()
    rng = random.Random(seed)
    if isinstance(teacher, PairwiseTeacher | ListTeacher):
        return _lists(teacher, mine, dataset.queries, docs, sample, rng, load)
    picked = rng.sample(mine, min(sample, len(mine)))
    queries, passages = [dataset.queries[q] for q, _ in picked], [docs[d] for _, d in picked]
    teacher.score(queries[:1], passages[:1])  # warm-up: first-call costs are not per pair
    # Three timed thirds, the median rate extrapolated: a burst of load from another process
    # on a shared machine skews one third, not the estimate.
    rates, took = [], 0.0
    for part in np.array_split(np.arange(len(picked)), 3 if len(picked) >= 3 else 1):
        start = time.perf_counter()
        teacher.score([queries[i] for i in part], [passages[i] for i in part])
        elapsed = time.perf_counter() - start
        took += elapsed
        rates.append(elapsed / max(len(part), 1))
    count = getattr(teacher, "prompt_tokens", None)
    tokens = (
        None if count is None or not picked else round(count(queries, passages) / len(picked) * len(mine))
    )
    seconds = float(np.median(rates)) * len(mine)
    return Estimate(teacher.fingerprint(), len(mine), len(mine), tokens, len(picked), took, load, seconds)


class _Counting:
    """A pairwise teacher that counts the prompt tokens of what it judges."""

    def __init__(self, teacher: Any) -> None:
        self.teacher = teacher
        self.judgement_kind = teacher.judgement_kind
        self.tokens: int | None = 0 if hasattr(teacher, "prompt_tokens") else None

    def fingerprint(self) -> str:
        return str(self.teacher.fingerprint())

    def schedule(self, doc_ids: Sequence[str]) -> Any:
        return self.teacher.schedule(doc_ids)

    def calls(self, n_docs: int) -> int:
        return int(self.teacher.calls(n_docs))

    def judge(self, queries: Sequence[str], first: Sequence[str], second: Sequence[str]) -> np.ndarray:
        if self.tokens is not None:
            self.tokens += int(self.teacher.prompt_tokens(queries, first, second))
        return np.asarray(self.teacher.judge(queries, first, second))


def _lists(
    teacher: Any, pairs: list[Any], queries: Any, docs: Any, sample: int, rng: random.Random, load: float
) -> Estimate:
    """Whole queries sampled until their planned calls reach ``sample``; a pairwise teacher's
    schedules run in memory, a listwise teacher ranks them."""
    from retrieval_kd.scores.judging import judge_lists
    from retrieval_kd.stages.judge import candidate_lists

    lists = candidate_lists(pairs)
    total = sum(teacher.calls(len(ds)) for ds in lists.values())
    order = sorted(lists)
    rng.shuffle(order)
    picked: dict[str, list[str]] = {}
    for q in order:
        if sum(teacher.calls(len(ds)) for ds in picked.values()) >= sample:
            break
        picked[q] = lists[q]
    if not hasattr(teacher, "judge"):  # a ListTeacher: prompt tokens are not counted
        start = time.perf_counter()
        teacher.rank_lists([queries[q] for q in picked], [[docs[d] for d in ds] for ds in picked.values()])
        took = time.perf_counter() - start
        asked = sum(teacher.calls(len(ds)) for ds in picked.values())
        return Estimate(
            teacher.fingerprint(), len(pairs), total, None, asked, took, load, took / max(asked, 1) * total
        )
    first = next(iter(picked.values()), [])
    if len(first) >= 2:  # warm-up
        teacher.judge([queries[order[0]]], [docs[first[0]]], [docs[first[1]]])
    counting = _Counting(teacher)
    start = time.perf_counter()
    asked = judge_lists(None, counting, picked, queries, docs, batch_size=max(sample, 1))
    took = time.perf_counter() - start
    tokens = None if counting.tokens is None or not asked else round(counting.tokens / asked * total)
    seconds = took / max(asked, 1) * total
    return Estimate(teacher.fingerprint(), len(pairs), total, tokens, asked, took, load, seconds)

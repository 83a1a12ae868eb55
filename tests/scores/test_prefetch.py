"""score_pairs prepares the next stored part in a thread while the current one is scored."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from retrieval_kd.errors import RkdError
from retrieval_kd.scores.scoring import score_pairs
from retrieval_kd.scores.store import ScoreStore
from retrieval_kd.timing import Phases
from retrieval_kd.types import Pair

QUERIES = {f"q{i}": "query " * (i + 1) for i in range(5)}
DOCS = {f"d{i}": "doc " * (3 * i + 1) for i in range(7)}
PAIRS = [Pair(q, d) for q in QUERIES for d in DOCS]


class LengthTeacher:
    """Scores a pair by its texts' lengths: 10·len(query) + len(doc)."""

    def fingerprint(self) -> str:
        return "length-teacher"

    def score(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        return np.array([10.0 * len(q) + len(p) for q, p in zip(queries, passages, strict=True)], np.float32)


class SplitTeacher(LengthTeacher):
    """The same scores through prepare / score_prepared, recording where prepare ran."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.threads: list[str] = []
        self.prepared = 0
        self.fail_at = fail_at

    def prepare(self, queries: Sequence[str], passages: Sequence[str]) -> Any:
        self.threads.append(threading.current_thread().name)
        self.prepared += 1
        if self.fail_at is not None and self.prepared == self.fail_at:
            raise RkdError(f"prepare failed on batch {self.prepared}")
        return list(queries), list(passages)

    def score_prepared(self, prepared: Any) -> np.ndarray:
        return self.score(*prepared)


def stored(root: Path) -> dict[Pair, float]:
    store = ScoreStore.load(root, "length-teacher")
    return {p: float(store.lookup([p])[0]) for p in PAIRS if not store.missing([p])}


def test_prepared_parts_store_what_plain_scoring_stores(tmp_path: Path) -> None:
    with ScoreStore.open(tmp_path / "plain", "length-teacher", {"kind": "test"}) as store:
        assert score_pairs(store, LengthTeacher(), PAIRS, QUERIES, DOCS, batch_size=4) == 35
    teacher = SplitTeacher()
    phases = Phases()
    with ScoreStore.open(tmp_path / "split", "length-teacher", {"kind": "test"}) as store:
        assert score_pairs(store, teacher, PAIRS, QUERIES, DOCS, batch_size=4, phases=phases) == 35
    assert stored(tmp_path / "split") == stored(tmp_path / "plain")
    assert len(stored(tmp_path / "plain")) == 35
    # q2 ("query " × 3, 18 chars) with d1 ("doc " × 4, 16 chars)
    assert stored(tmp_path / "split")[Pair("q2", "d1")] == 10 * 18 + 16
    assert teacher.prepared == 9  # ceil(35 / 4) parts, each prepared once
    assert set(teacher.threads) == {"rkd-prepare_0"}  # off the scoring thread
    assert "tokenize" in phases.seconds and "write" in phases.seconds


def test_a_failed_prepare_stops_with_the_earlier_parts_stored(tmp_path: Path) -> None:
    with (
        ScoreStore.open(tmp_path / "s", "length-teacher", {"kind": "test"}) as store,
        pytest.raises(RkdError, match="prepare failed on batch 3"),
    ):
        score_pairs(store, SplitTeacher(fail_at=3), PAIRS, QUERIES, DOCS, batch_size=4)
    assert len(stored(tmp_path / "s")) == 8  # parts 1 and 2
    with ScoreStore.open(tmp_path / "s", "length-teacher", {"kind": "test"}) as store:
        assert score_pairs(store, SplitTeacher(), PAIRS, QUERIES, DOCS, batch_size=4) == 27  # resumed
    assert len(stored(tmp_path / "s")) == 35


class LaunchTeacher(SplitTeacher):
    """The same scores through launch_prepared, which returns before its "forward passes" are
    collected (as a GPU teacher's queued kernels), recording the order of events."""

    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events
        self.launched = 0

    def launch_prepared(self, prepared: Any) -> Any:
        n = self.launched
        self.launched += 1
        self.events.append(f"launch {n}")

        def collect() -> np.ndarray:
            self.events.append(f"collect {n}")
            return self.score(*prepared)

        return collect


def test_each_part_starts_before_the_previous_one_is_stored(tmp_path: Path) -> None:
    events: list[str] = []
    teacher = LaunchTeacher(events)
    with ScoreStore.open(tmp_path / "s", "length-teacher", {"kind": "test"}) as store:
        done = score_pairs(
            store,
            teacher,
            PAIRS,
            QUERIES,
            DOCS,
            batch_size=4,
            progress=lambda n: events.append(f"stored {n}"),
        )
    assert done == 35
    with ScoreStore.open(tmp_path / "plain", "length-teacher", {"kind": "test"}) as store:
        score_pairs(store, LengthTeacher(), PAIRS, QUERIES, DOCS, batch_size=4)
    assert stored(tmp_path / "s") == stored(tmp_path / "plain")
    # part i + 1 is launched before part i is collected and stored; the last part alone after
    want = ["launch 0"]
    for i in range(8):
        want += [f"launch {i + 1}", f"collect {i}", "stored 4"]
    want += ["collect 8", "stored 3"]
    assert events == want


def test_a_failed_prepare_keeps_the_part_still_in_flight(tmp_path: Path) -> None:
    events: list[str] = []
    teacher = LaunchTeacher(events)
    teacher.fail_at = 3  # the third part's prepare fails while the second part is in flight
    with (
        ScoreStore.open(tmp_path / "s", "length-teacher", {"kind": "test"}) as store,
        pytest.raises(RkdError, match="prepare failed on batch 3"),
    ):
        score_pairs(store, teacher, PAIRS, QUERIES, DOCS, batch_size=4)
    assert events == ["launch 0", "launch 1", "collect 0", "collect 1"]
    assert len(stored(tmp_path / "s")) == 8  # both launched parts were stored before the error

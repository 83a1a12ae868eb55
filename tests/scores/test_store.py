from __future__ import annotations

import inspect
import json
import os
import signal
import subprocess
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from retrieval_kd.errors import RkdError
from retrieval_kd.scores.scoring import score_pairs
from retrieval_kd.scores.store import ScoreStore
from retrieval_kd.testing import store_dict
from retrieval_kd.types import Pair

FP = "fake-teacher-v1"


class FakeTeacher:
    """Deterministic, hash-free scores, exact in float32: len(query) + len(passage) / 4."""

    def __init__(self) -> None:
        self.calls = 0

    def fingerprint(self) -> str:
        return "fake-teacher-v1"

    def score(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        self.calls += 1
        return np.array([len(q) + len(p) / 4 for q, p in zip(queries, passages, strict=True)], np.float32)


class KillingTeacher(FakeTeacher):
    """Scores like FakeTeacher, but SIGKILLs its own process on the 3rd call, mid-run."""

    def score(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        if self.calls == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().score(queries, passages)


# 7 queries x 5 docs = 35 pairs; in batches of 4 that is 9 teacher calls.
QUERIES = {f"q{i}": "query " + "x" * i for i in range(7)}
DOCS = {f"d{j}": "doc " + "y" * (3 * j) for j in range(5)}
PAIRS = [Pair(q, d) for q in reversed(QUERIES) for d in DOCS]  # deliberately not in canonical order


def expected(q: str, d: str) -> float:
    return len(QUERIES[q]) + len(DOCS[d]) / 4


def parts(path: Path) -> list[str]:
    return sorted(p.name for p in path.glob("part-*.parquet"))


def test_add_then_get_returns_exact_scores(tmp_path: Path) -> None:
    store = ScoreStore.open(tmp_path, FP, {"name": "fake"})
    store.add([Pair("q1", "d1"), Pair("q1", "d2"), Pair("q2", "d1")], np.array([1.5, -2.25, 3.0]))

    assert store.get("q1", ["d2", "d1"]).tolist() == [-2.25, 1.5]
    assert store.get("q1", ["d2"]).dtype == np.float32
    assert store_dict(store) == {("q1", "d1"): 1.5, ("q1", "d2"): -2.25, ("q2", "d1"): 3.0}
    assert len(store) == 3
    assert store.manifest["teacher"] == {"name": "fake"}
    assert store.manifest["teacher_fingerprint"] == FP
    assert (store.manifest["format"], store.manifest["version"], store.manifest["kind"]) == (
        "rkd-score-store/2",
        2,
        "pointwise",
    )
    assert store.kind == "pointwise"
    assert store.path == tmp_path / FP
    assert parts(store.path) == ["part-0-000001.parquet"]


def test_get_missing_pair_names_it(tmp_path: Path) -> None:
    store = ScoreStore.open(tmp_path, FP)
    store.add([Pair("q1", "d1")], np.array([1.0]))
    with pytest.raises(RkdError, match=r"\(query 'q1', doc 'd9'\).*rkd score-teacher"):
        store.get("q1", ["d1", "d9"])


def test_missing_after_partial_adds(tmp_path: Path) -> None:
    store = ScoreStore.open(tmp_path, FP)
    store.add([Pair("a", "1"), Pair("b", "2")], np.array([0.0, 1.0]))
    store.add([Pair("c", "3")], np.array([2.0]))
    asked = [Pair("z", "9"), Pair("a", "1"), Pair("c", "4"), Pair("z", "9"), Pair("b", "2"), Pair("c", "3")]
    assert store.missing(asked) == [Pair("z", "9"), Pair("c", "4")]


def test_later_part_wins_for_a_duplicate(tmp_path: Path) -> None:
    store = ScoreStore.open(tmp_path, FP)
    store.add([Pair("q", "d")], np.array([1.0]))
    store.add([Pair("q", "d")], np.array([2.0]))
    store.close()
    assert ScoreStore.load(tmp_path).get("q", ["d"]).tolist() == [2.0]


def test_reopen_sees_all_earlier_parts(tmp_path: Path) -> None:
    with ScoreStore.open(tmp_path, FP) as store:
        store.add([Pair("q1", "d1")], np.array([0.5]))
        store.add([Pair("q2", "d2")], np.array([0.75]))
    reopened = ScoreStore.open(tmp_path, FP)
    assert store_dict(reopened) == {("q1", "d1"): 0.5, ("q2", "d2"): 0.75}
    reopened.add([Pair("q3", "d3")], np.array([1.0]))  # numbering continues after the earlier parts
    assert parts(reopened.path) == ["part-0-000001.parquet", "part-0-000002.parquet", "part-0-000003.parquet"]
    assert store_dict(ScoreStore.load(tmp_path, FP)) == {
        ("q1", "d1"): 0.5,
        ("q2", "d2"): 0.75,
        ("q3", "d3"): 1.0,
    }


def test_one_writer_name_is_held_by_one_open_store(tmp_path: Path) -> None:
    store = ScoreStore.open(tmp_path, FP, writer="rank0")
    with pytest.raises(RkdError, match="writer 'rank0' is in use"):
        ScoreStore.open(tmp_path, FP, writer="rank0")
    ScoreStore.open(tmp_path, FP, writer="rank1").close()
    store.close()
    ScoreStore.open(tmp_path, FP, writer="rank0").close()


def test_load_is_read_only(tmp_path: Path) -> None:
    ScoreStore.open(tmp_path, FP).close()
    with pytest.raises(RkdError, match="read-only"):
        ScoreStore.load(tmp_path).add([Pair("q", "d")], np.array([1.0]))


def test_recovery_adopts_a_renamed_but_unjournaled_part_and_removes_temp_files(tmp_path: Path) -> None:
    with ScoreStore.open(tmp_path, FP) as store:
        store.add([Pair("q1", "d1")], np.array([1.0]))
        store.add([Pair("q2", "d2")], np.array([2.0]))
    folder = tmp_path / FP
    # Kill between rename and journal append: the journal lacks part 2. Kill mid-write: a temp file.
    journal = folder / "parts-0.jsonl"
    journal.write_text("".join(journal.read_text().splitlines(keepends=True)[:2]))  # header + part 1
    (folder / ".part-0-000003.parquet.abc123.tmp").write_bytes(b"half a part")
    (folder / ".part-other-000001.parquet.abc123.tmp").write_bytes(b"another writer, in flight")

    store = ScoreStore.open(tmp_path, FP)
    assert store_dict(store) == {("q1", "d1"): 1.0, ("q2", "d2"): 2.0}
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert lines[0] == {"format": "rkd-score-journal/2", "writer": "0"}
    assert [e["file"] for e in lines[1:]] == parts(folder)
    assert not (folder / ".part-0-000003.parquet.abc123.tmp").exists()
    assert (folder / ".part-other-000001.parquet.abc123.tmp").exists()  # not ours to remove
    assert store.verify() == 2
    store.add([Pair("q3", "d3")], np.array([3.0]))  # numbering continues after the adopted part
    assert parts(folder)[-1] == "part-0-000003.parquet"


def test_verify_detects_a_corrupted_part(tmp_path: Path) -> None:
    store = ScoreStore.open(tmp_path, FP)
    store.add([Pair("q1", "d1")], np.array([1.0]))
    store.add([Pair("q2", "d2")], np.array([2.0]))
    store.verify()
    part = store.path / "part-0-000002.parquet"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(RkdError, match=r"part-0-000002\.parquet \(checksum mismatch: ") as err:
        store.verify()
    assert "part-0-000001" not in str(err.value)


def test_add_rejects_nan_and_writes_nothing(tmp_path: Path) -> None:
    store = ScoreStore.open(tmp_path, FP)
    store.add([Pair("q0", "d0")], np.array([1.0]))
    with pytest.raises(RkdError, match=r"value nan for pair \(query 'q1', doc 'd2'\) is not finite"):
        store.add([Pair("q1", "d1"), Pair("q1", "d2"), Pair("q1", "d3")], np.array([1.0, np.nan, np.inf]))
    with pytest.raises(RkdError, match="2 keys but values of shape"):
        store.add([Pair("q1", "d1"), Pair("q1", "d2")], np.array([1.0]))
    assert parts(store.path) == ["part-0-000001.parquet"]
    assert len(ScoreStore.load(tmp_path)) == 1 and len(store) == 1


def test_other_fingerprint_in_the_folder_is_refused(tmp_path: Path) -> None:
    ScoreStore.open(tmp_path, "teacher-a").close()
    # A folder renamed or copied under another teacher's name:
    (tmp_path / "teacher-a").rename(tmp_path / "teacher-b")
    with pytest.raises(RkdError, match="holds scores of teacher 'teacher-a', not 'teacher-b'"):
        ScoreStore.open(tmp_path, "teacher-b")
    # A teacher's folder passed as the root would nest a second store inside it:
    with pytest.raises(RkdError, match="itself the store of teacher 'teacher-a'"):
        ScoreStore.open(tmp_path / "teacher-b", "teacher-c")


def test_load_picks_the_only_teacher_and_refuses_to_guess_among_several(tmp_path: Path) -> None:
    with pytest.raises(RkdError, match="no teacher score store under"):
        ScoreStore.load(tmp_path)
    with ScoreStore.open(tmp_path, "teacher-a") as a:
        a.add([Pair("q", "d")], np.array([1.0]))
    assert ScoreStore.load(tmp_path).fingerprint == "teacher-a"
    ScoreStore.open(tmp_path, "teacher-b").close()
    assert ScoreStore.teachers(tmp_path) == ["teacher-a", "teacher-b"]
    with pytest.raises(RkdError, match=r"2 teacher score stores under .*\['teacher-a', 'teacher-b'\]"):
        ScoreStore.load(tmp_path)
    assert ScoreStore.load(tmp_path, "teacher-a").get("q", ["d"]).tolist() == [1.0]
    with pytest.raises(
        RkdError, match=r"no score store for teacher 'teacher-c'.*\['teacher-a', 'teacher-b'\]"
    ):
        ScoreStore.load(tmp_path, "teacher-c")


def test_score_pairs_scores_every_pair_once(tmp_path: Path) -> None:
    store = ScoreStore.open(tmp_path, FP)
    teacher = FakeTeacher()
    seen: list[int] = []
    assert (
        score_pairs(store, teacher, PAIRS + PAIRS[:3], QUERIES, DOCS, batch_size=4, progress=seen.append)
        == 35
    )
    assert seen == [4] * 8 + [3] and teacher.calls == 9
    assert store_dict(store) == {(q, d): expected(q, d) for q, d in PAIRS}
    assert score_pairs(store, teacher, PAIRS, QUERIES, DOCS, batch_size=4) == 0  # nothing left to do
    assert teacher.calls == 9


def test_score_pairs_refuses_another_teachers_store(tmp_path: Path) -> None:
    store = ScoreStore.open(tmp_path, "other-teacher")
    with pytest.raises(RkdError, match="'fake-teacher-v1' does not match the store's 'other-teacher'"):
        score_pairs(store, FakeTeacher(), PAIRS, QUERIES, DOCS)


def test_resumed_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    uninterrupted = ScoreStore.open(tmp_path / "a", FP)
    assert score_pairs(uninterrupted, FakeTeacher(), PAIRS, QUERIES, DOCS, batch_size=4) == 35

    resumed_root = tmp_path / "b"
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps({"pairs": PAIRS, "queries": QUERIES, "docs": DOCS}))
    script = tmp_path / "killed_run.py"
    script.write_text(
        "import json, os, signal, sys\n"
        "from collections.abc import Sequence\n"
        "import numpy as np\n"
        "from retrieval_kd.scores.scoring import score_pairs\n"
        "from retrieval_kd.scores.store import ScoreStore\n"
        "from retrieval_kd.types import Pair\n\n"
        + inspect.getsource(FakeTeacher)
        + "\n\n"
        + inspect.getsource(KillingTeacher)
        + "\n\n"
        "data = json.loads(open(sys.argv[2]).read())\n"
        "store = ScoreStore.open(sys.argv[1], 'fake-teacher-v1')\n"
        "pairs = [Pair(*p) for p in data['pairs']]\n"
        "score_pairs(store, KillingTeacher(), pairs, data['queries'], data['docs'], batch_size=4)\n"
    )
    proc = subprocess.run([sys.executable, str(script), str(resumed_root), str(inputs)], capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert len(ScoreStore.load(resumed_root)) == 8  # the two batches before the kill survived

    resumed = ScoreStore.open(resumed_root, FP)
    teacher = FakeTeacher()
    assert score_pairs(resumed, teacher, PAIRS, QUERIES, DOCS, batch_size=4) == 35 - 8
    assert teacher.calls == 7  # 27 pairs in batches of 4
    assert resumed.to_table().equals(uninterrupted.to_table())
    resumed.verify()


def test_two_shard_writers_together_equal_the_unsharded_run(tmp_path: Path) -> None:
    whole = ScoreStore.open(tmp_path / "whole", FP)
    score_pairs(whole, FakeTeacher(), PAIRS, QUERIES, DOCS, batch_size=4)

    root = tmp_path / "sharded"
    shard0 = ScoreStore.open(root, FP, writer="shard0of2")
    shard1 = ScoreStore.open(root, FP, writer="shard1of2")
    n0 = score_pairs(shard0, FakeTeacher(), PAIRS, QUERIES, DOCS, batch_size=4, shard=(0, 2))
    n1 = score_pairs(shard1, FakeTeacher(), PAIRS, QUERIES, DOCS, batch_size=4, shard=(1, 2))
    in_shard0 = sum(zlib.crc32(q.encode()) % 2 == 0 for q in QUERIES)
    assert (n0, n1) == (5 * in_shard0, 5 * (7 - in_shard0)) and 0 < n0 < 35
    assert {p.split("-")[1] for p in parts(root / FP)} == {"shard0of2", "shard1of2"}
    assert ScoreStore.load(root).to_table().equals(whole.to_table())


class NaNTeacher(FakeTeacher):
    def score(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        scores = super().score(queries, passages)
        if self.calls == 2:
            scores[1] = np.nan
        return scores


class ShortTeacher(FakeTeacher):
    def score(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        return super().score(queries, passages)[:-1]


def test_teacher_nan_raises_and_stores_nothing_of_that_batch(tmp_path: Path) -> None:
    store = ScoreStore.open(tmp_path, FP)
    # Batches follow text length (len q_i = 6 + i, len d_j = 4 + 3j, so q_i d_j sums to 10 + i + 3j),
    # ties by ids: batch 1 = (q0 d0, q1 d0, q2 d0, q0 d1), batch 2 = (q3 d0, q1 d1, q4 d0, q2 d1).
    with pytest.raises(RkdError, match=r"teacher 'fake-teacher-v1' .* non-finite score nan .*'q1', doc 'd1'"):
        score_pairs(store, NaNTeacher(), PAIRS, QUERIES, DOCS, batch_size=4)
    assert parts(store.path) == ["part-0-000001.parquet"]
    assert sorted(store_dict(ScoreStore.load(tmp_path))) == [
        ("q0", "d0"),
        ("q0", "d1"),
        ("q1", "d0"),
        ("q2", "d0"),
    ]


def test_teacher_wrong_length_raises_and_stores_nothing(tmp_path: Path) -> None:
    store = ScoreStore.open(tmp_path, FP)
    with pytest.raises(
        RkdError, match=r"teacher 'fake-teacher-v1' returned scores of shape \(3,\) for a batch of 4"
    ):
        score_pairs(store, ShortTeacher(), PAIRS, QUERIES, DOCS, batch_size=4)
    assert parts(store.path) == [] and len(store) == 0

"""`rkd import-scores` commits all of a file or none: a bad row, a kill while reading and a kill
mid-commit each leave the store as it was (or, past the commit point, finished on next open)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from retrieval_kd.cli import app
from retrieval_kd.errors import DataError
from retrieval_kd.scores.importers import import_scores
from retrieval_kd.scores.store import ScoreStore
from retrieval_kd.testing import store_dict
from retrieval_kd.types import Pair

FP = "imported-teacher"
OLD = {("q0", "d0"): 0.5, ("q0", "d1"): -1.0}
ROWS = [(f"q{i // 4 + 1}", f"d{i % 4}", i / 8) for i in range(12)]  # 12 rows, 3 queries
NEW = {(q, d): s for q, d, s in ROWS}


def existing_store(root: Path) -> None:
    with ScoreStore.open(root, FP) as store:
        store.add([Pair(*k) for k in OLD], np.array(list(OLD.values()), np.float32))


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def tsv(rows: list[tuple[str, str, float]]) -> str:
    return "".join(f"{q}\t{d}\t{s}\n" for q, d, s in rows)


def test_a_bad_row_leaves_the_store_unchanged(tmp_path: Path) -> None:
    existing_store(tmp_path / "store")
    before = snapshot(tmp_path / "store")
    bad = tmp_path / "bad.tsv"
    bad.write_text(tsv(ROWS[:10]) + "q9\td9\tnot-a-score\n")  # line 11, after 5 staged parts of 2
    with ScoreStore.open(tmp_path / "store", FP) as store:
        with pytest.raises(DataError, match=r"bad\.tsv:11: score 'not-a-score' is not a number"):
            import_scores(store, bad, batch_size=2)
        assert store_dict(store) == OLD
    assert snapshot(tmp_path / "store") == before

    result = CliRunner().invoke(
        app, ["import-scores", str(bad), "--store", str(tmp_path / "store"), "--teacher", FP]
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"error: {bad}:11: score 'not-a-score' is not a number"]
    assert snapshot(tmp_path / "store") == before
    # Into a new teacher: no empty store is left behind (a later load would count it).
    result = CliRunner().invoke(
        app, ["import-scores", str(bad), "--store", str(tmp_path / "store"), "--teacher", "new"]
    )
    assert result.exit_code == 2 and not (tmp_path / "store" / "new").exists()

    good = tmp_path / "good.tsv"
    good.write_text(tsv(ROWS))
    result = CliRunner().invoke(
        app, ["import-scores", str(good), "--store", str(tmp_path / "store"), "--teacher", FP]
    )
    assert result.exit_code == 0 and "imported 12 scores" in result.output
    assert store_dict(ScoreStore.load(tmp_path / "store")) == {**OLD, **NEW}


CHILD = """
import sys
from pathlib import Path
from retrieval_kd.scores.importers import import_scores
from retrieval_kd.scores.store import ScoreStore
with ScoreStore.open(Path(sys.argv[1]), sys.argv[2]) as store:
    import_scores(store, Path(sys.argv[3]), "tsv", batch_size=2)
"""


def test_a_killed_import_leaves_the_store_unchanged_and_a_rerun_imports_all(tmp_path: Path) -> None:
    root = tmp_path / "store"
    existing_store(root)
    journal = (root / FP / "parts-0.jsonl").read_bytes()
    fifo = tmp_path / "scores.tsv"
    os.mkfifo(fifo)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(root), FP, str(fifo)])
    staging = root / FP / ".staging-0"
    try:
        with fifo.open("w") as feed:  # the child reads what arrives, so the import is still going
            feed.write(tsv(ROWS[:8]))
            feed.flush()
            deadline = time.monotonic() + 60
            while len(list(staging.glob("part-*.parquet"))) < 4 and time.monotonic() < deadline:
                time.sleep(0.05)
            child.send_signal(signal.SIGKILL)  # 4 parts staged, the file not yet at its end
            child.wait()
    finally:
        child.kill()
    assert len(list(staging.glob("part-*.parquet"))) == 4
    assert (root / FP / "parts-0.jsonl").read_bytes() == journal
    assert store_dict(ScoreStore.load(root)) == OLD  # readers never see staged parts

    whole = tmp_path / "whole.tsv"
    whole.write_text(tsv(ROWS))
    with ScoreStore.open(root, FP) as store:  # discards the unfinished staging area
        assert not staging.exists()
        assert import_scores(store, whole, batch_size=5) == 12
    assert store_dict(ScoreStore.load(root)) == {**OLD, **NEW}
    assert sorted(p.name for p in (root / FP).glob("part-*")) == [
        f"part-0-{i:06d}.parquet" for i in range(1, 5)
    ]


KILL_MID_COMMIT = """
import os, signal, sys
from pathlib import Path
real = os.replace
def replace(src, dst):
    real(src, dst)
    if "/.staging-" in str(src) and str(src).endswith(".parquet"):  # the first part committed
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
from retrieval_kd.scores.importers import import_scores
from retrieval_kd.scores.store import ScoreStore
with ScoreStore.open(Path(sys.argv[1]), sys.argv[2]) as store:
    import_scores(store, Path(sys.argv[3]), "tsv", batch_size=5)
"""


def test_a_kill_mid_commit_is_finished_by_the_next_open(tmp_path: Path) -> None:
    root = tmp_path / "store"
    existing_store(root)
    scores = tmp_path / "scores.tsv"
    scores.write_text(tsv(ROWS))
    child = subprocess.run([sys.executable, "-c", KILL_MID_COMMIT, str(root), FP, str(scores)])
    assert child.returncode == -signal.SIGKILL
    folder = root / FP
    assert (folder / ".staging-0" / "commit.json").is_file()
    assert len(list(folder.glob("part-*"))) == 2 and len(list((folder / ".staging-0").glob("part-*"))) == 2
    assert store_dict(ScoreStore.load(root)) == OLD  # the journal still lists the old part only

    ScoreStore.open(root, FP).close()  # finishes the commit: all three parts, journaled
    assert not (folder / ".staging-0").exists()
    assert store_dict(ScoreStore.load(root)) == {**OLD, **NEW}
    assert ScoreStore.load(root).verify() == 4

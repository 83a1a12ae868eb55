"""Damaged parts, torn and hostile journals, and format-1 stores."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from retrieval_kd.errors import DataError, RkdError
from retrieval_kd.scores.store import ScoreStore
from retrieval_kd.testing import store_dict
from retrieval_kd.types import Pair

FP = "fake-teacher-v1"
# Three parts of four pairs: part k holds query qk.
BATCHES = [[Pair(f"q{k}", f"d{j}") for j in range(4)] for k in range(3)]


def scores(batch: list[Pair]) -> np.ndarray:
    return np.array([int(p.query_id[1:]) + int(p.doc_id[1:]) / 4 for p in batch], np.float32)


def fill(root: Path) -> ScoreStore:
    with ScoreStore.open(root, FP) as store:
        for batch in BATCHES:
            store.add(batch, scores(batch))
    return ScoreStore.load(root)


def flip_a_byte(file: Path) -> None:
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0x01
    file.write_bytes(bytes(data))


def truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[:-100])


DAMAGE = {"flipped byte": flip_a_byte, "truncated": truncate, "deleted": Path.unlink}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_part_is_refused_on_load_then_set_aside_and_rescored(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    original = fill(tmp_path).to_table()
    folder = tmp_path / FP
    DAMAGE[damage](folder / "part-0-000002.parquet")

    with pytest.raises(RkdError, match=r"part-0-000002\.parquet \(.*rerun `rkd score-teacher`"):
        len(ScoreStore.load(tmp_path))
    with pytest.raises(RkdError, match=r"damaged: part-0-000002\.parquet"):
        ScoreStore.load(tmp_path).verify()

    store = ScoreStore.open(tmp_path, FP)
    everything = [p for batch in BATCHES for p in batch]
    with caplog.at_level(logging.WARNING, logger="retrieval_kd.scores.store"):
        assert store.missing(everything) == BATCHES[1]  # exactly the damaged part's pairs
    assert "part-0-000002.parquet" in caplog.text and "quarantine" in caplog.text
    journal = [json.loads(line) for line in (folder / "parts-0.jsonl").read_text().splitlines()]
    assert [e["file"] for e in journal[1:]] == ["part-0-000001.parquet", "part-0-000003.parquet"]
    assert (folder / "quarantine" / "part-0-000002.parquet").exists() == (damage != "deleted")
    assert len(ScoreStore.load(tmp_path)) == 8  # a read-only load now reads the rest cleanly

    store.add(BATCHES[1], scores(BATCHES[1]))
    assert store.missing(everything) == []
    assert parts(folder)[-1] == "part-0-000004.parquet"  # no number reused
    assert ScoreStore.load(tmp_path).to_table().equals(original)
    assert ScoreStore.load(tmp_path).verify() == 3


def parts(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("part-*.parquet"))


def test_a_damaged_part_of_a_live_writer_is_left_in_place(tmp_path: Path) -> None:
    with ScoreStore.open(tmp_path, FP, writer="a") as a:
        a.add(BATCHES[0], scores(BATCHES[0]))
    live = ScoreStore.open(tmp_path, FP, writer="b")
    live.add(BATCHES[1], scores(BATCHES[1]))
    flip_a_byte(tmp_path / FP / "part-b-000001.parquet")
    store = ScoreStore.open(tmp_path, FP, writer="a")
    assert store.missing(BATCHES[0] + BATCHES[1]) == BATCHES[1]
    assert (tmp_path / FP / "part-b-000001.parquet").exists()  # b holds its lock: not ours to move
    live.close()
    store.close()
    ScoreStore.open(tmp_path, FP, writer="a").missing([])  # b is gone now: set aside
    assert (tmp_path / FP / "quarantine" / "part-b-000001.parquet").exists()


def test_a_torn_journal_line_is_ignored_then_cut_and_its_part_adopted(tmp_path: Path) -> None:
    fill(tmp_path)
    journal = tmp_path / FP / "parts-0.jsonl"
    text = journal.read_text()
    journal.write_text(text[: len(text) - 30])  # killed mid-append of part 3's line
    loaded = ScoreStore.load(tmp_path)
    assert len(loaded) == 8  # readers ignore the torn line, so part 3 does not count yet

    store = ScoreStore.open(tmp_path, FP)  # cuts the torn line, adopts part 3
    assert len(store) == 12
    lines = journal.read_text().splitlines()
    assert journal.read_text().endswith("\n") and len(lines) == 4
    assert [json.loads(line)["file"] for line in lines[1:]] == parts(tmp_path / FP)
    assert store.verify() == 3

    clean = journal.read_bytes()
    journal.write_bytes(clean + b"\0" * 40 + b"\n")  # a crash grew the file, its bytes never came
    assert len(ScoreStore.load(tmp_path)) == 12
    journal.write_bytes(clean + b"{not json\n")  # a complete line a kill cannot leave: damage
    with pytest.raises(DataError, match=r"parts-0\.jsonl:5: malformed journal line.*rkd scores verify"):
        len(ScoreStore.load(tmp_path))


@pytest.mark.parametrize(
    "name",
    [
        "../other/part-0-000001.parquet",
        "/etc/passwd",
        "quarantine/part-0-000001.parquet",
        "part-1-000001.parquet",
    ],
)
def test_a_journal_entry_naming_a_file_elsewhere_is_refused(tmp_path: Path, name: str) -> None:
    fill(tmp_path)
    journal = tmp_path / FP / "parts-0.jsonl"
    entry = {"file": name, "rows": 4, "sha256": "0" * 64}
    journal.write_text(
        journal.read_text() + json.dumps(entry) + "\n" + journal.read_text().splitlines()[1] + "\n"
    )
    with pytest.raises(
        DataError, match=r"parts-0\.jsonl:5: part file .* is not a part of writer '0' in this folder"
    ):
        len(ScoreStore.load(tmp_path))
    with pytest.raises(DataError, match="may not name files elsewhere"):
        ScoreStore.open(tmp_path, FP)
    with pytest.raises(DataError, match="may not name files elsewhere"):  # not "writer in use"
        ScoreStore.open(tmp_path, FP)


def test_the_journal_is_append_only(tmp_path: Path) -> None:
    store = ScoreStore.open(tmp_path, FP)
    journal = tmp_path / FP / "parts-0.jsonl"
    seen = []
    for batch in BATCHES:
        store.add(batch, scores(batch))
        seen.append(journal.read_bytes())
    assert seen[1].startswith(seen[0]) and seen[2].startswith(seen[1])
    assert len(seen[2].splitlines()) == 4  # header + one line per part


def write_format_1_store(root: Path) -> None:
    """The layout rkd-score-store/1 wrote: same parts, one JSON journal rewritten per batch."""
    folder = root / FP
    folder.mkdir(parents=True)
    manifest = {
        "format": "rkd-score-store/1",
        "teacher_fingerprint": FP,
        "teacher": {"name": "old"},
        "created": "x",
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    entries = []
    for k, batch in enumerate(BATCHES[:2], start=1):
        table = pa.table(
            {"query_id": [p[0] for p in batch], "doc_id": [p[1] for p in batch], "score": scores(batch)}
        )
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        data = sink.getvalue().to_pybytes()
        name = f"part-0-{k:06d}.parquet"
        (folder / name).write_bytes(data)
        entries.append({"file": name, "rows": 4, "sha256": hashlib.sha256(data).hexdigest()})
    journal = {"format": "rkd-score-parts/1", "writer": "0", "parts": entries}
    (folder / "parts-0.json").write_text(json.dumps(journal))


def test_a_format_1_store_reads_and_upgrades_on_open(tmp_path: Path) -> None:
    write_format_1_store(tmp_path)
    folder = tmp_path / FP
    old = ScoreStore.load(tmp_path)
    assert (old.kind, old.manifest["version"], len(old)) == ("pointwise", 1, 8)
    assert old.get("q1", ["d3", "d0"]).tolist() == [1.75, 1.0]
    assert json.loads((folder / "manifest.json").read_text())["format"] == "rkd-score-store/1"  # untouched

    with ScoreStore.open(tmp_path, FP) as store:
        assert store.missing([p for b in BATCHES for p in b]) == BATCHES[2]
        store.add(BATCHES[2], scores(BATCHES[2]))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {k: manifest[k] for k in ("format", "version", "kind", "upgraded_from", "teacher")} == {
        "format": "rkd-score-store/2",
        "version": 2,
        "kind": "pointwise",
        "upgraded_from": "rkd-score-store/1",
        "teacher": {"name": "old"},
    }
    assert not (folder / "parts-0.json").exists()
    lines = (folder / "parts-0.jsonl").read_text().splitlines()
    assert [json.loads(line)["file"] for line in lines[1:]] == parts(folder)
    # Killed between the .jsonl's rename and the .json's removal: the .jsonl supersedes it.
    (folder / "parts-0.json").write_text(
        json.dumps({"format": "rkd-score-parts/1", "writer": "0", "parts": []})
    )
    assert len(ScoreStore.load(tmp_path)) == 12
    ScoreStore.open(tmp_path, FP).close()
    assert not (folder / "parts-0.json").exists()
    assert store_dict(ScoreStore.load(tmp_path)) == {
        p: float(s) for b in BATCHES for p, s in zip(b, scores(b), strict=True)
    }

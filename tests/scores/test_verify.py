"""`rkd scores verify`: every kind of damage found, repaired by a rescan, reported; a dry run
changes nothing; a live writer is left alone; a flipped byte anywhere in a journal or manifest
is caught."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from retrieval_kd.cli import app
from retrieval_kd.errors import RkdError
from retrieval_kd.scores.store import ScoreStore
from retrieval_kd.scores.verify import verify_store
from retrieval_kd.types import Pair

FP = "fake-teacher-v1"
# Five parts of four pairs: part k holds query qk, scores k + j / 4.
BATCHES = [[Pair(f"q{k}", f"d{j}") for j in range(4)] for k in range(1, 6)]
EVERYTHING = [p for batch in BATCHES for p in batch]


def fill(root: Path, batches: list[list[Pair]] = BATCHES) -> Path:
    with ScoreStore.open(root, FP) as store:
        for batch in batches:
            store.add(
                batch, np.array([int(p.query_id[1:]) + int(p.doc_id[1:]) / 4 for p in batch], np.float32)
            )
    return root / FP


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def flip(file: Path, at: int | None = None) -> None:
    data = bytearray(file.read_bytes())
    data[len(data) // 2 if at is None else at] ^= 0x01
    file.write_bytes(bytes(data))


def damage_everything(folder: Path) -> None:
    """A part altered, one deleted, a journal line naming a file outside the store, a garbled
    line (its part then unjournaled), a temp file of a killed write, an import never committed."""
    flip(folder / "part-0-000002.parquet")
    (folder / "part-0-000003.parquet").unlink()
    journal = folder / "parts-0.jsonl"
    lines = journal.read_text().splitlines()
    lines[4] = lines[4].replace('"file"', '"fi#e"')  # part 4's line
    lines.insert(2, json.dumps({"file": "/etc/passwd", "rows": 1, "sha256": "0" * 64}))
    journal.write_text("\n".join(lines) + "\n")
    (folder / ".part-0-000006.parquet.x1y2.tmp").write_bytes(b"half a part")
    (folder / ".staging-0").mkdir()
    (folder / ".staging-0" / "part-0-000007.parquet").write_bytes(b"staged, never committed")


def test_every_repairable_damage_is_found_repaired_and_reported(tmp_path: Path) -> None:
    folder = fill(tmp_path)
    original = ScoreStore.load(tmp_path).to_table()
    damage_everything(folder)
    before = snapshot(folder)

    dry = verify_store(tmp_path, repair=False)
    assert snapshot(folder) == before  # a dry run changes nothing
    problems = sorted((f.file, f.problem.split(" (")[0].split(":")[0]) for f in dry.findings)
    assert problems == [
        (".part-0-000006.parquet.x1y2.tmp", "temp file of a killed write"),
        (".staging-0/", "an import stopped before its commit"),
        ("part-0-000002.parquet", "checksum mismatch"),
        ("part-0-000003.parquet", "missing"),
        ("part-0-000004.parquet", "on disk but not in the journal"),
        ("parts-0.jsonl:3", "part file '/etc/passwd' is not a part of writer '0' in this folder"),
        ("parts-0.jsonl:6", "part file None is not a part of writer '0' in this folder"),
    ]
    assert not dry.whole and all(f.action.startswith("would be ") for f in dry.findings)

    report = verify_store(tmp_path)
    assert report.whole and [f.fixed for f in report.findings] == [True] * 7
    assert (report.teachers, report.writers, report.parts, report.rows) == ([FP], 1, 3, 12)
    journal = [json.loads(line)["file"] for line in (folder / "parts-0.jsonl").read_text().splitlines()[1:]]
    assert journal == ["part-0-000001.parquet", "part-0-000004.parquet", "part-0-000005.parquet"]
    assert sorted(p.name for p in (folder / "quarantine").iterdir()) == ["part-0-000002.parquet"]
    assert not (folder / ".staging-0").exists() and not list(folder.glob(".*.tmp"))

    store = ScoreStore.load(tmp_path)
    with ScoreStore.open(tmp_path, FP) as writer:
        assert writer.missing(EVERYTHING) == BATCHES[1] + BATCHES[2]  # parts 2 and 3: scored again
    kept = original.filter(
        np.isin(original.column("query_id").to_numpy(zero_copy_only=False), ["q1", "q4", "q5"])
    )
    assert store.to_table().equals(kept)
    again = verify_store(tmp_path)
    assert again.whole and again.findings == [] and again.parts == 3


def test_cli_reports_and_exits_2_until_repaired(tmp_path: Path) -> None:
    damage_everything(fill(tmp_path))
    runner = CliRunner()
    dry = runner.invoke(app, ["scores", "verify", str(tmp_path), "--dry-run"])
    assert dry.exit_code == 2, dry.output
    assert "would be" in dry.output and "7 problem(s) left (run without --dry-run" in dry.output
    fixed = runner.invoke(app, ["scores", "verify", str(tmp_path)])
    assert fixed.exit_code == 0, fixed.output
    assert (
        "is whole: 1 teacher folder(s), 1 writer(s), 3 whole part(s) of 12 rows; 7 problem(s)" in fixed.output
    )
    clean = runner.invoke(app, ["scores", "verify", str(tmp_path / FP)])  # a teacher folder works too
    assert clean.exit_code == 0 and "whole" in clean.output and "┃" not in clean.output
    missing = runner.invoke(app, ["scores", "verify", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "not a folder" in missing.output


def test_a_live_writer_is_neither_checked_nor_repaired(tmp_path: Path) -> None:
    folder = fill(tmp_path)
    flip(folder / "part-0-000002.parquet")
    live = ScoreStore.open(tmp_path, FP, writer="0")  # holds writer 0's lock, as a running scorer would
    try:
        report = verify_store(tmp_path)
        assert [(f.file, f.fixed) for f in report.findings] == [("parts-0.jsonl", False)]
        assert "in use by a live process" in report.findings[0].problem and not report.whole
        assert (folder / "part-0-000002.parquet").exists()
    finally:
        live.close()
    assert [f.file for f in verify_store(tmp_path).findings] == ["part-0-000002.parquet"]


def test_a_damaged_manifest_is_reported_not_repaired(tmp_path: Path) -> None:
    folder = fill(tmp_path)
    manifest = (folder / "manifest.json").read_text()
    (folder / "manifest.json").write_text(manifest.replace('"teacher": null', '"teacher": 0'))  # valid JSON
    report = verify_store(tmp_path)
    assert not report.whole and [f.file for f in report.findings] == ["manifest.json"]
    assert "sha256 recorded in it" in report.findings[0].problem
    (folder / "manifest.json").unlink()
    report = verify_store(tmp_path)  # a folder of parts without a manifest is still found
    assert [(f.file, f.problem) for f in report.findings] == [("manifest.json", "no such file")]


def test_every_flipped_byte_of_the_manifest_is_refused(tmp_path: Path) -> None:
    folder = fill(tmp_path)
    manifest = folder / "manifest.json"
    good = manifest.read_bytes()
    for at in range(len(good)):
        flip(manifest, at)
        with pytest.raises(RkdError, match=r"manifest\.json"):
            ScoreStore.load(tmp_path)
        manifest.write_bytes(good)
    assert len(ScoreStore.load(tmp_path)) == 20


def test_flipped_bytes_across_the_journal_are_found_and_repaired(tmp_path: Path) -> None:
    clean = fill(tmp_path / "clean", BATCHES[:2])  # a header and two lines, 285 bytes
    original = ScoreStore.load(tmp_path / "clean").to_table()
    journal = (clean / "parts-0.jsonl").read_bytes()
    # A flip that turns a digit of a part's sha256 (or row count) into another valid one leaves a
    # well-formed line that its part no longer matches: the part is quarantined (never deleted),
    # since nothing tells which of the two was damaged. Every other flip loses nothing.
    values = [(m.span(1), "0123456789abcdef") for m in re.finditer(rb'"sha256": "([0-9a-f]{64})"', journal)]
    values += [(m.span(1), "0123456789") for m in re.finditer(rb'"rows": ([0-9]+)', journal)]
    quarantined = lost = 0
    for at in range(0, len(journal), 2):  # every other byte: 143 flips, a few seconds
        root = tmp_path / f"f{at}"
        shutil.copytree(clean.parent, root)
        flip(root / FP / "parts-0.jsonl", at)
        assert verify_store(root, repair=False).findings, f"flip at byte {at} went unnoticed"
        assert verify_store(root).whole and verify_store(root).findings == []
        table = ScoreStore.load(root).to_table()
        mismatch = any(a <= at < b and chr(journal[at] ^ 1) in valid for (a, b), valid in values)
        quarantined += mismatch
        lost += table.num_rows != 8
        assert table.num_rows == (4 if mismatch else 8) and (mismatch or table.equals(original)), at
        shutil.rmtree(root)
    assert lost == quarantined and 0 < quarantined < len(range(0, len(journal), 2)) // 2


def test_two_different_lines_for_one_part_are_refused_then_both_parts_adopted(tmp_path: Path) -> None:
    folder = fill(tmp_path, BATCHES[:2])
    original = ScoreStore.load(tmp_path).to_table()
    journal = folder / "parts-0.jsonl"
    # A flipped bit (1 -> 2) renames part 1's line to part 2, a real part with another checksum.
    journal.write_text(journal.read_text().replace("part-0-000001.parquet", "part-0-000002.parquet"))
    with pytest.raises(
        RkdError, match=r"parts-0\.jsonl: two different lines name part part-0-000002\.parquet"
    ):
        len(ScoreStore.load(tmp_path))
    report = verify_store(tmp_path)
    assert [(f.file, f.action) for f in report.findings] == [
        ("parts-0.jsonl", "dropped"),
        ("part-0-000001.parquet", "journaled: it reads back whole"),
        ("part-0-000002.parquet", "journaled: it reads back whole"),
    ]
    assert ScoreStore.load(tmp_path).to_table().equals(original)

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from retrieval_kd.errors import DataError
from retrieval_kd.eval.table import metrics_table
from retrieval_kd.eval.trec import read_trec, write_trec


def test_write_ranks_by_score_then_doc_id(tmp_path: Path) -> None:
    run = {"q2": {"b": 1.0, "a": 1.0, "c": 2.5}, "q1": {"x": 0.1}}
    path = tmp_path / "out" / "run.trec"
    write_trec(run, path, tag="test")
    assert path.read_text().splitlines() == [
        "q2 Q0 c 1 2.5 test",
        "q2 Q0 a 2 1.0 test",
        "q2 Q0 b 3 1.0 test",
        "q1 Q0 x 1 0.1 test",
    ]
    assert [p.name for p in path.parent.iterdir()] == ["run.trec"]  # no temp file left


def test_round_trip(tmp_path: Path) -> None:
    run = {"q1": {"d1": 0.123456789012345, "d2": -3.5e-7}, "q2": {"d3": 42.0}}
    write_trec(run, tmp_path / "r.trec", tag="rkd")
    assert read_trec(tmp_path / "r.trec") == run


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.trec"
    path.write_text("q1 Q0 d1 1 0.5 t\n\nq1 Q0 d2 2 t\n")
    with pytest.raises(DataError, match=rf"^{path}:3: expected 6 fields"):
        read_trec(path)
    path.write_text("q1 Q0 d1 1 high t\n")
    with pytest.raises(DataError, match=rf"^{path}:1: rank must be an integer and score a number"):
        read_trec(path)
    with pytest.raises(DataError, match="no such file"):
        read_trec(tmp_path / "missing.trec")


def test_ids_with_spaces_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="whitespace"):
        write_trec({"q 1": {"d": 1.0}}, tmp_path / "r.trec", tag="t")


def test_metrics_table_four_decimals() -> None:
    table = metrics_table(
        {"bm25": {"ndcg@10": 0.678912, "mrr@10": 0.5}, "student": {"ndcg@10": 0.7}}, ["ndcg@10", "mrr@10"]
    )
    console = Console(width=80, record=True)
    console.print(table)
    text = console.export_text()
    assert "0.6789" in text and "0.5000" in text and "0.7000" in text and "–" in text
    assert table.row_count == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", ": no ranked documents (the file is empty)"),
        (
            b"q1 Q0 d1 1 0.5 t\nq1 Q0 d\xff 2 0.4 t\n",
            ":2: not UTF-8 text (byte 0xff at column 8); rkd reads UTF-8 files",
        ),
        (b"q1 Q0 d1 1 1e999 t\n", ":1: score '1e999' is not a finite number"),
        (b"q1 Q0 d1 1 nan t\n", ":1: rank must be an integer and score a number, got rank '1', score 'nan'"),
        (
            b"q1 Q0 d1 1_0 0.5 t\n",
            ":1: rank must be an integer and score a number, got rank '1_0', score '0.5'",
        ),
        (b"q1 Q0 d1 1 0.5 t\nq1 Q0 d1 2 0.4 t\n", ":2: document 'd1' appears twice for query 'q1'"),
    ],
)
def test_read_trec_refuses(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "run.trec"
    path.write_bytes(data)
    with pytest.raises(DataError) as info:
        read_trec(path)
    assert str(info.value) == f"{path}{message}"

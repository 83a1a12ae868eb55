from __future__ import annotations

from pathlib import Path

import pytest

from retrieval_kd.errors import DataError, RkdError
from retrieval_kd.scores.importers import FORMATS, import_scores
from retrieval_kd.scores.store import ScoreStore
from retrieval_kd.testing import store_dict

FP = "fake-teacher-v1"
EXPECTED = {("q1", "d1"): 12.5, ("q1", "d2"): -0.25, ("q2", "d1"): 3.0}


def imported(tmp_path: Path, name: str, text: str, fmt: str | None = None) -> dict[tuple[str, str], float]:
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / name
    path.write_text(text)
    store = ScoreStore.open(tmp_path / "store", FP)
    assert import_scores(store, path, fmt) == len(store) == 3
    store.close()
    return store_dict(ScoreStore.load(tmp_path / "store"))  # read back from disk, not the cache


def test_tsv_with_and_without_header(tmp_path: Path) -> None:
    rows = "q1\td1\t12.5\nq1\td2\t-0.25\n\nq2\td1\t3\n"
    assert imported(tmp_path, "scores.tsv", rows) == EXPECTED
    assert imported(tmp_path / "h", "scores.tsv", "query_id\tdoc_id\tscore\n" + rows) == EXPECTED


def test_trec_run(tmp_path: Path) -> None:
    run = "q1 Q0 d1 1 12.5 ce\nq1 Q0 d2 2 -0.25 ce\nq2\tQ0\td1\t1\t3.0\tce\n"
    assert imported(tmp_path, "teacher.run", run) == EXPECTED
    assert imported(tmp_path / "t", "teacher.trec", run) == EXPECTED


def test_jsonl_with_numeric_ids(tmp_path: Path) -> None:
    lines = (
        '{"query_id": "q1", "doc_id": "d1", "score": 12.5}\n'
        '{"query_id": "q1", "doc_id": "d2", "score": -0.25}\n'
        '{"query_id": 7, "doc_id": 8, "score": 3}\n'
    )
    assert imported(tmp_path, "scores.jsonl", lines) == {
        ("q1", "d1"): 12.5,
        ("q1", "d2"): -0.25,
        ("7", "8"): 3.0,
    }


def test_format_given_overrides_extension_and_batches_go_through_add(tmp_path: Path) -> None:
    path = tmp_path / "scores.txt"
    path.write_text("".join(f"q{i}\td{i}\t{i}.5\n" for i in range(5)))
    store = ScoreStore.open(tmp_path / "store", FP)
    assert import_scores(store, path, "tsv", batch_size=2) == 5
    assert store.get("q3", ["d3"]).tolist() == [3.5]
    assert sorted(p.name for p in store.path.glob("part-*.parquet")) == [
        "part-0-000001.parquet",
        "part-0-000002.parquet",
        "part-0-000003.parquet",
    ]


def test_unknown_format_lists_the_choices(tmp_path: Path) -> None:
    store = ScoreStore.open(tmp_path / "store", FP)
    (tmp_path / "s.tsv").write_text("q\td\t1\n")
    choices = r"\['hofstatter', 'jsonl', 'parquet', 'pylate', 'st-pickle', 'trec', 'tsv'\]"
    with pytest.raises(RkdError, match=r"unknown score format 'csv'; choose from " + choices):
        import_scores(store, tmp_path / "s.tsv", "csv")
    with pytest.raises(RkdError, match=r"extension '\.csv'.*" + choices):
        import_scores(store, tmp_path / "s.csv")
    assert FORMATS == ["hofstatter", "jsonl", "parquet", "pylate", "st-pickle", "trec", "tsv"]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("s.tsv", "q1\td1\t1.0\nq1\td2\n", r"s\.tsv:2: expected 3 tab-separated columns"),
        ("s.tsv", "q1\td1\t1.0\n\nq1\td2\tabc\n", r"s\.tsv:3: score 'abc' is not a number"),
        ("s.tsv", "q1\td1\tnan\n", r"s\.tsv:1: score 'nan' is not finite"),
        (
            "s.run",
            "q1 Q0 d1 1 2.0 t\nq1 Q0 d2 2.0 t\n",
            r"s\.run:2: expected 6 .*'qid Q0 docid rank score tag'",
        ),
        ("s.run", "q1 Q0 d1 first 2.0 t\n", r"s\.run:1: rank 'first' \(column 4\) is not an integer"),
        (
            "s.jsonl",
            '{"query_id": "q", "doc_id": "d", "score": 1}\n{"query_id": "q"\n',
            r"s\.jsonl:2: malformed JSON",
        ),
        ("s.jsonl", '{"query_id": "q", "score": 1}\n', r"s\.jsonl:1: missing field\(s\) \['doc_id'\]"),
        (
            "s.jsonl",
            '{"query_id": "q", "doc_id": "d", "score": true}\n',
            r"s\.jsonl:1: score True is not a number",
        ),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    (tmp_path / name).write_text(text)
    store = ScoreStore.open(tmp_path / "store", FP)
    with pytest.raises(DataError, match=message):
        import_scores(store, tmp_path / name)
    assert len(store) == 0  # the bad line came before any batch was full, so nothing was added


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("s.tsv", b"", "s.tsv: no scores (the file is empty or holds only a header)"),
        (
            "s.tsv",
            b"query_id\tdoc_id\tscore\n\n",
            "s.tsv: no scores (the file is empty or holds only a header)",
        ),
        ("s.jsonl", b"\n", "s.jsonl: no scores (the file is empty or holds only a header)"),
        (
            "s.tsv",
            b"q1\td1\t1.0\nq\xe92\td1\t1\n",
            "s.tsv:2: not UTF-8 text (byte 0xe9 at column 2); rkd reads UTF-8 files",
        ),
        (
            "s.tsv",
            b"q1\td 1\t1.0\n",
            "s.tsv:1: doc_id 'd 1' contains whitespace; ids are non-empty strings without whitespace",
        ),
        (
            "s.tsv",
            b"q1\t\t1.0\n",
            "s.tsv:1: doc_id '' is empty; ids are non-empty strings without whitespace",
        ),
        (
            "s.tsv",
            b"q1\td1\t1e39\n",
            "s.tsv:1: score '1e39' is outside float32's range (the store keeps float32)",
        ),
        ("s.tsv", b"q1\td1\t1_0\n", "s.tsv:1: score '1_0' is not a number"),
        ("s.tsv", b"q1\td1\t-inf\n", "s.tsv:1: score '-inf' is not finite"),
        (
            "s.tsv",
            b"q1\td1\t" + b"9" * 5000 + b"\n",
            "s.tsv:1: score '" + "9" * 56 + "... is outside float32's range (the store keeps float32)",
        ),
        (
            "s.run",
            b"q1 Q0 d1 \xd9\xa3 2.0 t\n",
            "s.run:1: rank '٣' (column 4) is not an integer; expected 'qid Q0 docid rank score tag'",
        ),
        (
            "s.jsonl",
            b'{"query_id": null, "doc_id": "d", "score": 1}\n',
            "s.jsonl:1: query_id None is not a string; ids are non-empty strings without whitespace",
        ),
        (
            "s.jsonl",
            b'{"query_id": "q\\ud800", "doc_id": "d", "score": 1}\n',
            "s.jsonl:1: query_id 'q\\ud800' holds an unpaired surrogate escape (such as \\ud800); "
            "ids are non-empty strings without whitespace",
        ),
        (
            "s.jsonl",
            b'{"query_id": "q", "doc_id": "d", "score": ' + b"9" * 400 + b"}\n",
            "s.jsonl:1: a number with 400 digits (at most 100)",
        ),
        (
            "s.jsonl",
            b'{"query_id": "q", "doc_id": "d", "score": ' + b"9" * 80 + b"}\n",
            "s.jsonl:1: score " + "9" * 57 + "... is outside float32's range (the store keeps float32)",
        ),
        (
            "s.jsonl",
            b'{"query_id": "q", "doc_id": "d", "score": NaN}\n',
            "s.jsonl:1: score nan is not finite",
        ),
        ("s.jsonl", b"[" * 100_000 + b"\n", "s.jsonl:1: JSON nested too deeply"),
    ],
)
def test_every_input_checked(tmp_path: Path, name: str, data: bytes, message: str) -> None:
    (tmp_path / name).write_bytes(data)
    store = ScoreStore.open(tmp_path / "store", FP)
    with pytest.raises(DataError) as info:
        import_scores(store, tmp_path / name)
    assert str(info.value) == f"{tmp_path}/{message}"
    assert len(store) == 0

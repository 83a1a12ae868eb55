"""The score formats both ways: hand-written files of each format import to known scores, and
every format's export imports back bit for bit."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from retrieval_kd.errors import DataError, RkdError
from retrieval_kd.scores.exporters import FORMATS as EXPORTS
from retrieval_kd.scores.exporters import export_scores, score_texts
from retrieval_kd.scores.importers import FORMATS, detect_format, import_file, import_scores
from retrieval_kd.scores.store import ScoreStore
from retrieval_kd.testing import store_dict
from retrieval_kd.types import Pair

FP = "fake-teacher-v1"
EXPECTED = {("q1", "d1"): 12.5, ("q1", "d2"): -0.25, ("q2", "d1"): 3.0}


def imported(tmp_path: Path, name: str, data: str | bytes, fmt: str | None = None, **kw: object) -> dict:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    root = tmp_path / f"store-{name}"
    with ScoreStore.open(root, FP) as store:
        import_scores(store, path, fmt, **kw)  # type: ignore[arg-type]
    return store_dict(ScoreStore.load(root))


def test_formats_are_listed_both_ways() -> None:
    assert FORMATS == EXPORTS == ["hofstatter", "jsonl", "parquet", "pylate", "st-pickle", "trec", "tsv"]


def test_hofstatter_two_pairs_a_line_and_duplicates_that_agree(tmp_path: Path) -> None:
    text = "12.5\t-0.25\tq1\td1\td2\n12.5\t-7\tq1\td1\td3\n3\t1\tq2\td1\td5\n"
    (tmp_path / "h.tsv").write_text(text)
    assert detect_format(tmp_path / "h.tsv") == "hofstatter"
    assert imported(tmp_path, "h.tsv", text) == {**EXPECTED, ("q1", "d3"): -7.0, ("q2", "d5"): 1.0}


def test_hofstatter_duplicates_that_disagree_name_both_lines(tmp_path: Path) -> None:
    text = "12.5\t-0.25\tq1\td1\td2\n3\t1\tq2\td1\td5\n12.5\t-0.5\tq1\td1\td2\n"
    with pytest.raises(
        DataError, match=r"h\.tsv:3: pair \(query 'q1', doc 'd2'\) scored -0\.5 here but -0\.25 on line 1"
    ):
        imported(tmp_path, "h.tsv", text, "hofstatter", batch_size=2)  # across parts, too
    assert ScoreStore.load(tmp_path / "store-h.tsv").to_table().num_rows == 0  # nothing committed


def test_pylate_jsonl(tmp_path: Path) -> None:
    text = (
        '{"query_id": "q1", "document_ids": ["d1", "d2"], "scores": [12.5, -0.25]}\n\n'
        '{"query_id": "q2", "document_ids": ["d1"], "scores": [3]}\n'
    )
    assert imported(tmp_path, "p.jsonl", text) == EXPECTED
    with pytest.raises(DataError, match=r"p2\.jsonl:1: document_ids and scores must be lists of one length"):
        imported(tmp_path, "p2.jsonl", '{"query_id": 1, "document_ids": ["d1"], "scores": []}\n', "pylate")


def test_parquet_with_integer_ids_and_float64_scores(tmp_path: Path) -> None:
    table = pa.table({"query_id": [1, 1, 2], "doc_id": ["d1", "d2", "d1"], "score": [12.5, -0.25, 3.0]})
    pq.write_table(table, tmp_path / "s.parquet")
    got = imported(tmp_path, "t.parquet", (tmp_path / "s.parquet").read_bytes())
    assert got == {("1", "d1"): 12.5, ("1", "d2"): -0.25, ("2", "d1"): 3.0}
    bad = pa.table({"query_id": ["q1", "q 2"], "doc_id": ["d1", "d2"], "score": [1.0, 2.0]})
    pq.write_table(bad, tmp_path / "bad.parquet")
    with pytest.raises(DataError, match=r"bad\.parquet: row 2: query_id 'q 2' contains whitespace"):
        imported(tmp_path, "bad.parquet", (tmp_path / "bad.parquet").read_bytes())
    inf = pa.table({"query_id": ["q1"], "doc_id": ["d1"], "score": [1e39]})
    pq.write_table(inf, tmp_path / "inf.parquet")
    with pytest.raises(DataError, match=r"row 1: score 1e\+39 is outside float32's range"):
        imported(tmp_path, "i.parquet", (tmp_path / "inf.parquet").read_bytes())


def test_st_pickle_needs_allow_pickle_and_loads_only_plain_data(tmp_path: Path) -> None:
    scores = {1: {8: np.float32(12.5), "d2": -0.25}, "q2": {"d1": 3}}
    data = gzip.compress(pickle.dumps(scores))
    assert imported(tmp_path, "s.pkl.gz", data, allow_pickle=True) == {
        ("1", "8"): 12.5,
        ("1", "d2"): -0.25,
        ("q2", "d1"): 3.0,
    }
    (tmp_path / "r.pkl").write_bytes(data)
    with pytest.raises(
        RkdError, match=r"refusing to read a pickle: unpickling can run arbitrary code; pass --allow-pickle"
    ):
        import_file(tmp_path / "store", FP, tmp_path / "r.pkl")
    assert not (tmp_path / "store").exists()  # refused before a store folder was made

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pwned",))

    with pytest.raises(DataError, match=r"refusing this pickle: it names builtins\.print"):
        imported(tmp_path, "e.pkl", pickle.dumps({"q": {"d": Evil()}}), allow_pickle=True)


def test_score_texts_are_shortest_and_exact() -> None:
    values = np.array([0.1, 1 / 3, 1e-45, 3.4028235e38, -0.0, 16777217, 2.5e-8], dtype=np.float32)
    texts = score_texts(values)
    assert texts[:3] == ["0.1", "0.33333334", "1e-45"]
    back = np.array([float(t) for t in texts]).astype(np.float32)
    assert back.tobytes() == values.tobytes()


AWKWARD = np.array([0.1, 1 / 3, 1e-45, -3.4028235e38, -0.0, 7.0, 2.5e-8, 123456.79], dtype=np.float32)


@pytest.mark.parametrize("fmt", EXPORTS)
def test_every_format_round_trips_bit_exactly(fmt: str, tmp_path: Path) -> None:
    keys = [Pair(f"q{i % 3}", f"d{i}") for i in range(len(AWKWARD))] + [
        Pair("q0", "p0"),
        Pair("q1", "p1"),
        Pair("q2", "p2"),
    ]
    values = np.concatenate([AWKWARD, np.array([9.5, 8.25, -1.0], np.float32)])
    with ScoreStore.open(tmp_path / "src", FP) as src:
        src.add(keys, values)
    positives = {"q0": {"p0"}, "q1": {"p1"}, "q2": {"p2"}}
    name = {"st-pickle": "s.pkl.gz", "hofstatter": "s.tsv", "pylate": "s.jsonl", "trec": "s.run"}.get(
        fmt, f"s.{fmt}"
    )
    # batch_size 2: slices of whole queries, so every writer runs over several slices
    result = export_scores(
        ScoreStore.load(tmp_path / "src"), tmp_path / name, fmt, positives=positives, batch_size=2
    )
    assert result == (len(keys), 0)
    with ScoreStore.open(tmp_path / "back", FP) as back:
        import_scores(back, tmp_path / name, allow_pickle=True)  # format found from the name (and first line)
    got = ScoreStore.load(tmp_path / "back").to_table()
    want = ScoreStore.load(tmp_path / "src").to_table()
    assert got.column("score").to_numpy().tobytes() == want.column("score").to_numpy().tobytes()
    assert got.equals(want)


def test_hofstatter_export_needs_positives_and_counts_what_it_leaves_out(tmp_path: Path) -> None:
    with ScoreStore.open(tmp_path / "src", FP) as src:
        src.add(
            [Pair("q1", "p"), Pair("q1", "n1"), Pair("q1", "n2"), Pair("q2", "x")],
            np.array([3, 1, 2, 5], np.float32),
        )
    store = ScoreStore.load(tmp_path / "src")
    with pytest.raises(RkdError, match="give the positives"):
        export_scores(store, tmp_path / "h.tsv", "hofstatter")
    assert export_scores(store, tmp_path / "h.tsv", "hofstatter", positives={"q1": {"p"}}) == (3, 1)
    assert (tmp_path / "h.tsv").read_text() == "3\t1\tq1\tp\tn1\n3\t2\tq1\tp\tn2\n"
    export_scores(store, tmp_path / "t.run", "trec", tag="ce")
    assert (tmp_path / "t.run").read_text().splitlines()[:2] == ["q1 Q0 p 1 3 ce", "q1 Q0 n2 2 2 ce"]

"""Dataset readers: exact counts plus first, middle and last records (as ir_datasets tests do)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from retrieval_kd.data import load_dataset
from retrieval_kd.data.candidates import Candidate, Candidates
from retrieval_kd.errors import DataError
from retrieval_kd.types import Pair


def test_beir_folder_counts_and_records(tiny_beir: Path) -> None:
    ds = load_dataset(f"{tiny_beir}:train")
    assert len(ds.docs) == 32
    assert len(ds.queries) == 8  # only queries with qrels in this split
    assert ds.docs["solar-0"].full_text() == "solar solar panels convert sunlight into electricity"
    assert ds.docs["chess-3"].text == "chess engines search millions of positions"
    assert ds.queries["q0"] == "how do solar panels make electricity"
    assert ds.qrels["q14"] == {"chess-0": 1}
    assert load_dataset(str(tiny_beir)).qrels["q15"] == {"chess-1": 1}  # default split: test


def test_cranfield_shared_folder() -> None:
    from conftest import SHARED

    folder = SHARED / "beir" / "cranfield"
    ds = load_dataset(str(folder))
    assert (len(ds.docs), len(ds.queries), sum(len(v) for v in ds.qrels.values())) == (1400, 225, 1612)


def test_malformed_jsonl_names_file_and_line(tiny_beir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    shutil.copytree(tiny_beir, folder)
    lines = (folder / "corpus.jsonl").read_text().splitlines()
    lines[4] = lines[4][:-3]  # cut the closing quote and brace off line 5
    (folder / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    ds = load_dataset(str(folder))
    with pytest.raises(DataError, match=rf"{folder / 'corpus.jsonl'}:5: malformed JSON line"):
        _ = ds.docs


def test_missing_split_lists_splits(tiny_beir: Path) -> None:
    with pytest.raises(DataError, match=r"no qrels for split 'dev'; splits here: \['test', 'train'\]"):
        load_dataset(f"{tiny_beir}:dev")


def test_unknown_dataset_id_says_how_to_list(irds_home: Path) -> None:
    with pytest.raises(DataError, match=r"unknown dataset 'beir/scifactx/train'.*rkd datasets"):
        load_dataset("beir/scifactx/train")


def test_scifact_through_ir_datasets(irds_home: Path) -> None:
    train = load_dataset("beir/scifact/train")
    test = load_dataset("beir/scifact/test")
    assert len(train.queries) == 809 and sum(len(v) for v in train.qrels.values()) == 919
    assert len(test.queries) == 300 and sum(len(v) for v in test.qrels.values()) == 339
    assert len(test.docs) == 5183
    assert train.queries["0"] == "0-dimensional biomaterials lack inductive properties."
    assert train.qrels["0"] == {"31715818": 1}


def test_candidates_roundtrip_and_unknown_doc(tmp_path: Path) -> None:
    cands = Candidates([Candidate("q1", ("a",), ("b", "c")), Candidate("q2", ("b",), ("a",))], {"k": 2})
    cands.save(tmp_path / "c")
    back = Candidates.load(tmp_path / "c", corpus={"a", "b", "c"})
    assert back.items == cands.items
    assert back.manifest == {"k": 2, "queries": 2}
    assert back.pairs() == [
        Pair("q1", "a"),
        Pair("q1", "b"),
        Pair("q1", "c"),
        Pair("q2", "b"),
        Pair("q2", "a"),
    ]
    with pytest.raises(
        DataError, match=r"candidates.jsonl:1: doc id 'c' \(query 'q1'\) is not in the corpus"
    ):
        Candidates.load(tmp_path / "c", corpus={"a", "b"})
    (tmp_path / "c" / "candidates.jsonl").write_text(json.dumps({"query_id": "q"}) + "\n")
    with pytest.raises(
        DataError, match=r"candidates.jsonl:1: missing field\(s\) \['positives', 'negatives'\]"
    ):
        Candidates.load(tmp_path / "c")


def test_candidates_errors_count_blank_lines(tmp_path: Path) -> None:
    """Line numbers are the file's, not the record's: a blank line shifts the bad record to 4."""
    good = {"query_id": "q1", "positives": ["a"], "negatives": ["b"]}
    bad = {"query_id": "q2", "positives": ["a"], "negatives": ["zz"]}
    path = tmp_path / "candidates.jsonl"
    path.write_text(json.dumps(good) + "\n\n  \n" + json.dumps(bad) + "\n")
    with pytest.raises(DataError) as info:
        Candidates.load(path, corpus={"a", "b"})
    assert str(info.value) == f"{path}:4: doc id 'zz' (query 'q2') is not in the corpus"
    path.write_text(json.dumps(good) + "\n\n" + json.dumps({**bad, "negatives": "zz"}) + "\n")
    with pytest.raises(DataError) as info:
        Candidates.load(path)
    assert str(info.value) == f"{path}:3: 'negatives' must be a list of doc ids, got 'zz'"
    path.write_text("\n" + json.dumps(good) + "\n\n" + json.dumps(good)[:-1] + "\n")
    with pytest.raises(DataError) as info:
        Candidates.load(path)
    assert str(info.value).startswith(f"{path}:4: malformed JSON line")


def test_iter_jsonl_numbered(tmp_path: Path) -> None:
    from retrieval_kd.io import iter_jsonl, iter_jsonl_numbered

    path = tmp_path / "x.jsonl"
    path.write_text('\n{"a": 1}\n\n{"a": 2}\n')
    assert list(iter_jsonl_numbered(path, ("a",))) == [(2, {"a": 1}), (4, {"a": 2})]
    assert list(iter_jsonl(path)) == [{"a": 1}, {"a": 2}]


def test_list_datasets_marks_offline_ids(irds_home: Path) -> None:
    from retrieval_kd.data.irds import list_datasets

    assert list_datasets("beir/scifact") == [
        ("beir/scifact", True),
        ("beir/scifact/test", True),
        ("beir/scifact/train", True),
        ("nano-beir/scifact", False),  # a different download (Hugging Face parquet files)
    ]
    assert list_datasets("msmarco-passage/train/judged") == [("msmarco-passage/train/judged", False)]
    assert list_datasets("no-such-dataset") == []
    available = [name for name, ok in list_datasets() if ok]
    assert available == ["beir/scifact", "beir/scifact/test", "beir/scifact/train"]


def test_list_datasets_follows_the_source_zip(tmp_path: Path, irds_home: Path) -> None:
    """Without beir/scifact/source.zip the ids are unavailable; with it back, available."""
    from retrieval_kd.data.irds import list_datasets

    zip_path = irds_home / "beir" / "scifact" / "source.zip"
    moved = tmp_path / "source.zip"
    shutil.move(zip_path, moved)
    try:
        assert list_datasets("beir/scifact/t") == [
            ("beir/scifact/test", False),
            ("beir/scifact/train", False),
        ]
    finally:
        shutil.move(moved, zip_path)
    assert list_datasets("beir/scifact/t") == [("beir/scifact/test", True), ("beir/scifact/train", True)]

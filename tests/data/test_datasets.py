"""Dataset readers: exact counts plus first, middle and last records (as ir_datasets tests do)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from retrieval_kd.data import load_dataset
from retrieval_kd.data.candidates import Candidate, Candidates
from retrieval_kd.errors import DataError
from retrieval_kd.types import Doc, Pair


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
    import os

    # the root conftest's SHARED, computed here: `import conftest` finds whichever conftest
    # module pytest loaded last (tests/students has one too)
    shared = Path(os.environ.get("RKD_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
    folder = shared / "beir" / "cranfield"
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


# -- every input checked ------------------------------------------------------------------------


def beir_copy(tiny_beir: Path, tmp_path: Path, name: str, text: str | bytes) -> Path:
    """A copy of the tiny BEIR folder with one file replaced."""
    folder = tmp_path / "beir"
    shutil.copytree(tiny_beir, folder)
    data = text.encode() if isinstance(text, str) else text
    (folder / name).write_bytes(data)
    return folder


DOC = '{"_id": "d1", "text": "a text"}\n'
QUERY = '{"_id": "q1", "text": "a query"}\n'


@pytest.mark.parametrize(
    ("name", "text", "read", "message"),
    [
        (
            "corpus.jsonl",
            DOC + '{"_id": "d2", "text": "café"}\n',
            "docs",
            None,  # valid: é written as UTF-8 by write_bytes below
        ),
        (
            "corpus.jsonl",
            b'{"_id": "d1", "text": "ok"}\n{"_id": "d2", "text": "caf\xe9"}\n',
            "docs",
            "corpus.jsonl:2: not UTF-8 text (byte 0xe9 at column 27); rkd reads UTF-8 files",
        ),
        (
            "corpus.jsonl",
            DOC + "\n" + DOC,
            "docs",
            "corpus.jsonl:3: doc id 'd1' appears again (first at line 1); ids must be unique",
        ),
        (
            "corpus.jsonl",
            '{"_id": null, "text": "x"}\n',
            "docs",
            "corpus.jsonl:1: doc id None is not a string; ids are non-empty strings without whitespace",
        ),
        (
            "corpus.jsonl",
            '{"_id": "a b", "text": "x"}\n',
            "docs",
            "corpus.jsonl:1: doc id 'a b' contains whitespace; ids are non-empty strings without whitespace",
        ),
        (
            "corpus.jsonl",
            '{"_id": "", "text": "x"}\n',
            "docs",
            "corpus.jsonl:1: doc id '' is empty; ids are non-empty strings without whitespace",
        ),
        (
            "corpus.jsonl",
            '{"_id": "d1", "text": null}\n',
            "docs",
            "corpus.jsonl:1: 'text' must be a string, got None",
        ),
        (
            "corpus.jsonl",
            '{"_id": "d1", "text": "x", "title": 5}\n',
            "docs",
            "corpus.jsonl:1: 'title' must be a string or null, got 5",
        ),
        (
            "corpus.jsonl",
            '{"_id": "d1", "text": "x\\ud800"}\n',
            "docs",
            "corpus.jsonl:1: 'text' holds an unpaired surrogate escape (such as \\ud800), not text",
        ),
        (
            "corpus.jsonl",
            '{"_id": ' + "9" * 5000 + ', "text": "x"}\n',
            "docs",
            "corpus.jsonl:1: a number with 5000 digits (at most 100)",
        ),
        ("corpus.jsonl", "[" * 100_000 + "\n", "docs", "corpus.jsonl:1: JSON nested too deeply"),
        ("corpus.jsonl", "", "docs", "corpus.jsonl: no documents (the file is empty)"),
        ("corpus.jsonl", "\n \n", "docs", "corpus.jsonl: no documents (the file is empty)"),
        (
            "queries.jsonl",
            QUERY + QUERY,
            "queries",
            "queries.jsonl:2: query id 'q1' appears again (first at line 1); ids must be unique",
        ),
        (
            "queries.jsonl",
            '{"_id": true, "text": "x"}\n',
            "queries",
            "queries.jsonl:1: query id True is not a string; ids are non-empty strings without whitespace",
        ),
        ("queries.jsonl", "", "queries", "queries.jsonl: no queries (the file is empty)"),
        (
            "qrels/test.tsv",
            "query-id\tcorpus-id\tscore\n",
            "qrels",
            "qrels/test.tsv: no judgements (the file has only a header); "
            "expected lines query-id, corpus-id, score",
        ),
        (
            "qrels/test.tsv",
            "",
            "qrels",
            "qrels/test.tsv: no judgements (the file has no lines); "
            "expected lines query-id, corpus-id, score",
        ),
        (
            "qrels/test.tsv",
            "q1\tsolar-0\t-1\n",
            "qrels",
            "qrels/test.tsv:1: score '-1' is not a relevance grade (an integer from 0 to 2147483647)",
        ),
        (
            "qrels/test.tsv",
            "q1\tsolar-0\t1.0\n",
            "qrels",
            "qrels/test.tsv:1: score '1.0' is not a relevance grade (an integer from 0 to 2147483647)",
        ),
        (
            "qrels/test.tsv",
            "q1\tsolar-0\t" + "9" * 5000 + "\n",
            "qrels",
            "qrels/test.tsv:1: score '"
            + "9" * 56
            + "... is not a relevance grade (an integer from 0 to 2147483647)",
        ),
        (
            "qrels/test.tsv",
            "q1\tsolar-0\t1\nq1\tsolar-0\t2\n",
            "qrels",
            "qrels/test.tsv:2: the judgement of query 'q1' and doc 'solar-0' appears again "
            "(first at line 1); a query-document pair is judged once",
        ),
        (
            "qrels/test.tsv",
            b"query-id\tcorpus-id\tscore\nq1\tsolar-0\t1\n\nq\xff\tsolar-1\t1\n",
            "qrels",
            "qrels/test.tsv:4: not UTF-8 text (byte 0xff at column 2); rkd reads UTF-8 files",
        ),
    ],
)
def test_bad_input_is_one_data_error_naming_file_and_line(
    tiny_beir: Path, tmp_path: Path, name: str, text: str | bytes, read: str, message: str | None
) -> None:
    folder = beir_copy(tiny_beir, tmp_path, name, text)
    ds = load_dataset(str(folder))
    if message is None:
        assert getattr(ds, read)["d2"].text == "café"
        return
    with pytest.raises(DataError) as info:
        getattr(ds, read)
    assert str(info.value) == f"{folder}/{message}"


def test_null_id_never_becomes_the_doc_none(tiny_beir: Path, tmp_path: Path) -> None:
    """Before: ``"_id": null`` was read as the doc ``"None"``."""
    folder = beir_copy(tiny_beir, tmp_path, "corpus.jsonl", DOC + '{"_id": null, "text": "x"}\n')
    with pytest.raises(DataError, match=r"corpus\.jsonl:2: doc id None is not a string"):
        _ = load_dataset(str(folder)).docs


def test_integer_ids_bom_crlf_and_null_title_are_read(tiny_beir: Path, tmp_path: Path) -> None:
    text = '\ufeff{"_id": 7, "text": "seven", "title": null}\r\n\r\n{"_id": "d8", "text": "eight"}\r\n'
    folder = beir_copy(tiny_beir, tmp_path, "corpus.jsonl", text)
    ds = load_dataset(str(folder))
    assert ds.docs == {"7": Doc("7", "seven", ""), "d8": Doc("d8", "eight", "")}
    (folder / "qrels" / "test.tsv").write_bytes(b"\xef\xbb\xbfquery-id\tcorpus-id\tscore\r\nq1\t7\t2\r\n")
    assert load_dataset(str(folder)).qrels == {"q1": {"7": 2}}


def test_qrels_coverage_counts_strangers(tiny_beir: Path, tmp_path: Path) -> None:
    qrels = (tiny_beir / "qrels" / "test.tsv").read_text() + "q-none\tsolar-0\t1\nq1\tno-such-doc\t1\n"
    folder = beir_copy(tiny_beir, tmp_path, "qrels/test.tsv", qrels)
    ds = load_dataset(str(folder))
    coverage = ds.qrels_coverage()
    assert coverage.counts() == {"queries_not_in_topics": 1, "judgements_not_in_corpus": 1}
    assert (coverage.query_examples, coverage.doc_examples) == (("q-none",), ("no-such-doc",))
    assert "q-none" not in ds.queries and "q-none" in ds.qrels and len(ds.topics) == 16
    assert not load_dataset(str(tiny_beir)).qrels_coverage()


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            [{"query_id": "q1", "positives": ["a"], "negatives": ["b"]}] * 2,
            "candidates.jsonl:2: query id 'q1' appears again (first at line 1); "
            "a query's candidates are one line",
        ),
        (
            [{"query_id": None, "positives": ["a"], "negatives": ["b"]}],
            "candidates.jsonl:1: query id None is not a string; ids are non-empty strings without whitespace",
        ),
        (
            [{"query_id": "q1", "positives": ["a", None], "negatives": ["b"]}],
            "candidates.jsonl:1: doc id in 'positives' None is not a string; "
            "ids are non-empty strings without whitespace",
        ),
        (
            [{"query_id": "q1", "positives": [], "negatives": ["b"]}],
            "candidates.jsonl:1: query 'q1' has no positives; a candidate needs at least one",
        ),
        (
            [{"query_id": "q1", "positives": ["a"], "negatives": ["b", "a"]}],
            "candidates.jsonl:1: doc id 'a' is listed twice for query 'q1'; "
            "positives and negatives are distinct documents",
        ),
    ],
)
def test_candidates_refuse_bad_records(tmp_path: Path, lines: list[dict[str, object]], message: str) -> None:
    path = tmp_path / "candidates.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(DataError) as info:
        Candidates.load(path)
    assert str(info.value) == f"{tmp_path}/{message}"


def test_candidates_manifest_must_be_an_object(tmp_path: Path) -> None:
    Candidates([Candidate("q1", ("a",), ("b",))]).save(tmp_path)
    (tmp_path / "manifest.json").write_text("[1, 2]\n")
    with pytest.raises(DataError) as info:
        Candidates.load(tmp_path)
    assert str(info.value) == f"{tmp_path / 'manifest.json'}: expected a JSON object {{...}}, got list"
    (tmp_path / "manifest.json").write_bytes(b'{"a":\n "\xc3("}\n')
    with pytest.raises(DataError) as info:
        Candidates.load(tmp_path)
    assert str(info.value) == (
        f"{tmp_path / 'manifest.json'}:2: not UTF-8 text (byte 0xc3 at column 3); rkd reads UTF-8 files"
    )


def test_read_json_errors(tmp_path: Path) -> None:
    from retrieval_kd.io import read_json

    path = tmp_path / "m.json"
    path.write_text('{"a": 1,\n "b": }\n')
    with pytest.raises(DataError) as info:
        read_json(path)
    assert str(info.value) == f"{path}:2: invalid JSON (Expecting value at column 7)"
    path.write_text('{"n": ' + "1" * 200 + "}")
    with pytest.raises(DataError) as info:
        read_json(path)
    assert str(info.value) == f"{path}: invalid JSON (a number with 200 digits (at most 100))"
    with pytest.raises(DataError) as info:
        read_json(tmp_path)
    assert str(info.value) == f"{tmp_path}: cannot read (Is a directory)"

"""Fuzzed readers: every input rkd reads either parses or fails with rkd's own error.

Each reader gets mutations of a small valid file, two ways: raw bytes (flipped, inserted,
deleted, truncated bytes and lines, so bad UTF-8 too) and UTF-8-valid text (inserted text, one
field or JSON value swapped for a hostile one: null, a 5,000-digit number, NaN, an unpaired
``\\ud800`` escape, an id with a space ...). A reader passes when each mutation gives a parsed
result that keeps the reader's promises (string ids, finite scores, integer relevance) or raises
:class:`~retrieval_kd.errors.RkdError`; any other exception fails the test.

The number of examples per reader and mode comes from ``RKD_FUZZ_EXAMPLES`` (default 200, a
few seconds each); the examples are derandomized, so CI is reproducible, and hypothesis keeps no
database and writes its caches under pytest's temporary folder (nothing lands in the repo). A
deeper run is one command away::

    RKD_FUZZ_EXAMPLES=20000 python -m pytest tests/test_fuzz_readers.py -q -x

A deeper run draws a longer sequence of the same derandomized examples; to explore other
examples, also set ``RKD_FUZZ_SEED`` to any integer.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from retrieval_kd.data import load_dataset
from retrieval_kd.data.beir_folder import BeirFolder
from retrieval_kd.data.candidates import Candidates
from retrieval_kd.errors import RkdError
from retrieval_kd.eval.trec import read_trec
from retrieval_kd.io import read_json
from retrieval_kd.scores.importers import import_scores
from retrieval_kd.scores.store import ScoreStore
from retrieval_kd.testing import store_dict

EXAMPLES = int(os.environ.get("RKD_FUZZ_EXAMPLES", "200"))
SEED = os.environ.get("RKD_FUZZ_SEED")

FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=SEED is None,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(autouse=True, scope="module")
def _hypothesis_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Even without a database hypothesis caches constants and Unicode tables in ./.hypothesis:
    keep them out of the repository."""
    set_hypothesis_home_dir(tmp_path_factory.mktemp("hypothesis"))
    yield
    set_hypothesis_home_dir(None)


def _seeded(fn: Callable[..., None]) -> Callable[..., None]:
    return seed(int(SEED))(fn) if SEED is not None else fn


# -- the valid files mutations start from -----------------------------------------------------

CORPUS = (
    '{"_id": "d1", "title": "solar", "text": "panels make power"}\n'
    '{"_id": "d2", "title": "", "text": "coffee keeps you awake"}\n'
    '{"_id": "d3", "text": "chess engines search"}\n'
)
QUERIES = (
    '{"_id": "q1", "text": "how do panels work"}\n'
    '{"_id": "q2", "text": "why coffee"}\n'
    '{"_id": "q3", "text": "chess engines"}\n'
)
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\nq3\td3\t0\n"
BEIR = {"corpus.jsonl": CORPUS, "queries.jsonl": QUERIES, "qrels/test.tsv": QRELS}
CANDIDATES = {
    "c/candidates.jsonl": (
        '{"query_id": "q1", "positives": ["d1"], "negatives": ["d2", "d3"]}\n'
        '{"query_id": "q2", "positives": ["d2"], "negatives": ["d1"]}\n'
    ),
    "c/manifest.json": '{"format": "rkd-candidates/1", "negatives": 2, "queries": 2}\n',
}
SCORES_TSV = "query_id\tdoc_id\tscore\nq1\td1\t12.5\nq1\td2\t-0.25\nq2\td1\t3\n"
SCORES_TREC = "q1 Q0 d1 1 12.5 ce\nq1 Q0 d2 2 -0.25 ce\nq2 Q0 d1 1 3.0 ce\n"
SCORES_JSONL = (
    '{"query_id": "q1", "doc_id": "d1", "score": 12.5}\n'
    '{"query_id": "q1", "doc_id": "d2", "score": -0.25}\n'
    '{"query_id": 7, "doc_id": "d1", "score": 3}\n'
)
RUN = "q1 Q0 d1 1 2.5 rkd\nq1 Q0 d2 2 1.0 rkd\nq2 Q0 d3 1 0.5 rkd\n"
MANIFEST = (
    '{"kind": "faiss", "corpus": "0123abcd", "count": 3,\n'
    ' "student": {"fingerprint": "abc", "max_seq_length": 256}, "ids": ["d1", "d2"]}\n'
)
METRICS = (
    '{"name": "student", "dataset": "tiny:test", "queries": 3,\n'
    ' "metrics": {"ndcg@10": 0.5, "recall@100": 1.0, "mrr@10": 0.25}}\n'
)


# -- what a parsed result must look like --------------------------------------------------------


def _good_id(value: object) -> bool:
    return isinstance(value, str) and value != "" and not re.search(r"\s", value) and _utf8(value)


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_dataset(ds: Any) -> None:
    for doc_id, doc in ds.docs.items():
        assert _good_id(doc_id) and doc.doc_id == doc_id, doc_id
        assert isinstance(doc.text, str) and isinstance(doc.title, str) and _utf8(doc.full_text())
    for qid, text in ds.queries.items():
        assert _good_id(qid) and isinstance(text, str) and _utf8(text), qid
    for qid, judged in ds.qrels.items():
        assert _good_id(qid), qid
        for doc_id, rel in judged.items():
            assert _good_id(doc_id) and type(rel) is int and 0 <= rel < 2**31, (doc_id, rel)
    assert ds.docs and ds.qrels


def _beir(root: Path, what: str) -> None:
    ds = BeirFolder(root, "test")
    if what == "all":
        ds = load_dataset(f"{root}:test")
        ds.fingerprint()
        ds.doc_texts()
        _check_dataset(ds)
        return
    getattr(ds, what)
    if what == "docs":
        assert ds.docs and all(_good_id(d) and _utf8(doc.full_text()) for d, doc in ds.docs.items())
    elif what == "qrels":
        assert ds.qrels
        assert all(type(r) is int and r >= 0 for judged in ds.qrels.values() for r in judged.values())


def _candidates(root: Path) -> None:
    cands = Candidates.load(root / "c", corpus={"d1", "d2", "d3"})
    assert isinstance(cands.manifest, dict)
    for c in cands.items:
        assert _good_id(c.query_id) and c.positives
        assert all(_good_id(d) for d in (*c.positives, *c.negatives))
    cands.pairs()


def _scores(name: str) -> Callable[[Path], None]:
    def run(root: Path) -> None:
        with ScoreStore.open(root / "store", "fuzz-teacher") as store:
            n = import_scores(store, root / name)
        assert n > 0
        scores = store_dict(ScoreStore.load(root / "store"))
        assert all(_good_id(q) and _good_id(d) for q, d in scores)
        assert all(math.isfinite(v) for v in scores.values())

    return run


def _run(root: Path) -> None:
    run = read_trec(root / "run.trec")
    assert run
    for qid, docs in run.items():
        assert _good_id(qid) and all(_good_id(d) and math.isfinite(s) for d, s in docs.items())


def _json(root: Path) -> None:
    read_json(root / "manifest.json")


def _eval_metrics(root: Path) -> None:
    from retrieval_kd.stages.evaluate import read_metrics

    metrics = read_metrics(root / "metrics.json")
    assert metrics and all(type(v) is float and math.isfinite(v) for v in metrics.values())


@dataclass(frozen=True)
class Reader:
    """Seed files (path → text), the paths a mutation may hit, and the read."""

    files: dict[str, str]
    targets: tuple[str, ...]
    read: Callable[[Path], None]


READERS = {
    "corpus.jsonl": Reader(BEIR, ("corpus.jsonl",), lambda r: _beir(r, "docs")),
    "queries.jsonl": Reader(BEIR, ("queries.jsonl",), lambda r: _beir(r, "queries")),
    "qrels.tsv": Reader(BEIR, ("qrels/test.tsv",), lambda r: _beir(r, "qrels")),
    "beir-folder": Reader(BEIR, tuple(BEIR), lambda r: _beir(r, "all")),
    "candidates.jsonl": Reader(CANDIDATES, ("c/candidates.jsonl",), _candidates),
    "candidates-manifest": Reader(CANDIDATES, ("c/manifest.json",), _candidates),
    "scores.tsv": Reader({"s.tsv": SCORES_TSV}, ("s.tsv",), _scores("s.tsv")),
    "scores.trec": Reader({"s.trec": SCORES_TREC}, ("s.trec",), _scores("s.trec")),
    "scores.jsonl": Reader({"s.jsonl": SCORES_JSONL}, ("s.jsonl",), _scores("s.jsonl")),
    "run.trec": Reader({"run.trec": RUN}, ("run.trec",), _run),
    "manifest.json": Reader({"manifest.json": MANIFEST}, ("manifest.json",), _json),
    "eval-metrics.json": Reader({"metrics.json": METRICS}, ("metrics.json",), _eval_metrics),
}


def read_mutated(reader: Reader, target: str, data: bytes) -> None:
    """Writes the seed files with ``target`` replaced by ``data``, then reads them.

    Raises:
        RkdError: the reader refused the input (an accepted outcome).
        AssertionError: the reader returned something that breaks its promises.
        Exception: anything else is a reader bug.
    """
    with tempfile.TemporaryDirectory(prefix="rkd-fuzz-") as tmp:
        root = Path(tmp)
        for rel, text in reader.files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data if rel == target else text.encode())
        reader.read(root)


# -- mutations ----------------------------------------------------------------------------------

HOSTILE_TEXT = [
    "",
    " ",
    "a b",
    "\t",
    "\r",
    "\n",
    "\x00",
    "\u2028",
    "\ufeff",
    "null",
    "true",
    "[]",
    "{}",
    '""',
    '" "',
    '"a b"',
    "NaN",
    "-Infinity",
    "nan",
    "inf",
    "-1",
    "-0",
    "1.5",
    "1e999",
    "1e300",
    "-1e39",
    "1_0",
    "+1",
    "0x10",
    "１",
    "٣",
    "<9x5000>",
    "<9x5000>.0",
    '"\\ud800"',
    '"a\\udfffb"',
    '"\\ud83d\\ude00"',
    '"\\u0000"',
    "<[x5000>",
    '"_id"',
    "query-id",
    "score",
    "Q0",
]
# Long tokens are spelled short, so hypothesis's reports stay readable, and expanded on use.
_LONG = {"<9x5000>": "9" * 5000, "<[x5000>": "[" * 5000}


def _expand(token: str) -> str:
    for short, long in _LONG.items():
        token = token.replace(short, long)
    return token


HOSTILE_BYTES = [t.encode() for t in HOSTILE_TEXT] + [
    b"\xff",
    b"\xc3",
    b"\xe2\x82",
    b"\xed\xa0\x80",  # an encoded surrogate: not UTF-8
    b"\xef\xbb\xbf",
    b"\r\n",
    b"\x80abc",
]


def _pos(n: int, length: int) -> int:
    return n % (length + 1)


def _apply_bytes(data: bytes, ops: list[tuple[Any, ...]]) -> bytes:
    for op in ops:
        kind = op[0]
        if kind == "flip" and data:
            i = op[1] % len(data)
            data = data[:i] + bytes([op[2]]) + data[i + 1 :]
        elif kind == "insert":
            i = _pos(op[1], len(data))
            data = data[:i] + _expand(op[2].decode("latin-1")).encode("latin-1") + data[i:]
        elif kind == "delete":
            i = _pos(op[1], len(data))
            data = data[:i] + data[i + op[2] :]
        elif kind == "truncate":
            data = data[: _pos(op[1], len(data))]
        elif kind in ("dup", "drop", "swap"):
            lines = data.split(b"\n")
            i, j = op[1] % len(lines), op[2] % len(lines)
            if kind == "dup":
                lines.insert(j, lines[i])
            elif kind == "drop":
                del lines[i]
            else:
                lines[i], lines[j] = lines[j], lines[i]
            data = b"\n".join(lines)
    return data


def _set_field(line: str, field: int, value: str) -> str:
    """Swaps one field of a line: a JSON object's value (or a new key), else one TSV/TREC column."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        record = None
    if isinstance(record, dict):
        keys = [*record, "extra"]
        key = keys[field % len(keys)]
        rest = {k: v for k, v in record.items() if k != key}
        head = json.dumps(rest)[:-1]
        return f"{head}{', ' if rest else ''}{json.dumps(key)}: {value}}}"
    sep = "\t" if "\t" in line else " "
    cols = line.split(sep)
    cols[field % len(cols)] = value.strip('"') if field % 2 else value
    return sep.join(cols)


def _apply_text(text: str, ops: list[tuple[Any, ...]]) -> str:
    for op in ops:
        kind = op[0]
        if kind == "insert":
            i = _pos(op[1], len(text))
            text = text[:i] + _expand(op[2]) + text[i:]
        elif kind == "delete":
            i = _pos(op[1], len(text))
            text = text[:i] + text[i + op[2] :]
        elif kind == "truncate":
            text = text[: _pos(op[1], len(text))]
        elif kind == "field":
            lines = text.split("\n")
            i = op[1] % len(lines)
            lines[i] = _set_field(lines[i], op[2], _expand(op[3]))
            text = "\n".join(lines)
        else:  # whole-line edits keep UTF-8 whole
            text = _apply_bytes(text.encode(), [op]).decode()
    return text


_pos_ints = st.integers(0, 1 << 16)
_small = st.integers(1, 16)
_line_ops = st.tuples(st.sampled_from(["dup", "drop", "swap"]), _pos_ints, _pos_ints)
_truncate = st.tuples(st.just("truncate"), _pos_ints)
_json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
).map(json.dumps)

RAW_OPS = st.one_of(
    st.tuples(st.just("flip"), _pos_ints, st.integers(0, 255)),
    st.tuples(
        st.just("insert"), _pos_ints, st.binary(min_size=1, max_size=6) | st.sampled_from(HOSTILE_BYTES)
    ),
    st.tuples(st.just("delete"), _pos_ints, _small),
    _truncate,
    _line_ops,
)
TEXT_OPS = st.one_of(
    st.tuples(st.just("insert"), _pos_ints, st.text(min_size=1, max_size=6) | st.sampled_from(HOSTILE_TEXT)),
    st.tuples(st.just("delete"), _pos_ints, _small),
    st.tuples(st.just("field"), _pos_ints, _pos_ints, st.sampled_from(HOSTILE_TEXT) | _json_value),
    _truncate,
    _line_ops,
)


def raw_mutations(reader: Reader) -> st.SearchStrategy[tuple[str, bytes]]:
    """A target file and its bytes after 1-4 byte or line edits."""
    return st.tuples(st.sampled_from(reader.targets), st.lists(RAW_OPS, min_size=1, max_size=4)).map(
        lambda t: (t[0], _apply_bytes(reader.files[t[0]].encode(), t[1]))
    )


def text_mutations(reader: Reader) -> st.SearchStrategy[tuple[str, bytes]]:
    """A target file and its UTF-8 text after 1-4 edits that keep it valid UTF-8."""
    return st.tuples(st.sampled_from(reader.targets), st.lists(TEXT_OPS, min_size=1, max_size=4)).map(
        lambda t: (t[0], _apply_text(reader.files[t[0]], t[1]).encode())
    )


MODES = {"raw": raw_mutations, "utf8": text_mutations}


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("name", list(READERS))
def test_reader_parses_or_raises_rkd_error(name: str, mode: str) -> None:
    reader = READERS[name]

    @FUZZ
    @given(MODES[mode](reader))
    def check(mutated: tuple[str, bytes]) -> None:
        try:
            read_mutated(reader, *mutated)
        except RkdError as e:
            message = str(e)
            assert message and "\n" not in message and len(message) < 1000, message

    _seeded(check)()


@pytest.mark.parametrize("name", list(READERS))
def test_seed_files_parse(name: str) -> None:
    """The unmutated files are valid: every mutation starts from a file the reader accepts."""
    reader = READERS[name]
    read_mutated(reader, reader.targets[0], reader.files[reader.targets[0]].encode())

"""Fuzzed readers of the score formats added beside tsv/trec/jsonl: each mutation of a valid file
imports (keeping the promises: string ids, finite scores) or fails with rkd's own one-line error.

The text formats (Hofstätter TSV, PyLate JSONL) go through the shared harness of
``tests/test_fuzz_readers.py`` in both modes; the binary ones (Parquet, the score-dict pickle)
get byte and line edits of their bytes. ``RKD_FUZZ_EXAMPLES`` and ``RKD_FUZZ_SEED`` work as there.
"""

from __future__ import annotations

import gzip
import io
import math
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz_readers import FUZZ, MODES, RAW_OPS, Reader, _apply_bytes, _good_id, _seeded, read_mutated

from retrieval_kd.errors import RkdError
from retrieval_kd.scores.importers import import_scores
from retrieval_kd.scores.store import ScoreStore
from retrieval_kd.testing import store_dict

HOFSTATTER = "12.5\t-0.25\tq1\td1\td2\n12.5\t-7\tq1\td1\td3\n3\t1\t7\td1\td5\n"
PYLATE = (
    '{"query_id": "q1", "document_ids": ["d1", "d2"], "scores": [12.5, -0.25]}\n'
    '{"query_id": 7, "document_ids": ["d1"], "scores": [3]}\n'
)


def _read(name: str, fmt: str | None = None) -> Callable[[Path], None]:
    def run(root: Path) -> None:
        with ScoreStore.open(root / "store", "fuzz-teacher") as store:
            n = import_scores(store, root / name, fmt, allow_pickle=True, batch_size=2)
        assert n > 0
        scores = store_dict(ScoreStore.load(root / "store"))
        assert scores and all(_good_id(q) and _good_id(d) for q, d in scores)
        assert all(math.isfinite(v) for v in scores.values())

    return run


TEXT_READERS = {
    "hofstatter": Reader({"s.tsv": HOFSTATTER}, ("s.tsv",), _read("s.tsv", "hofstatter")),
    "pylate": Reader({"s.jsonl": PYLATE}, ("s.jsonl",), _read("s.jsonl", "pylate")),
}


def _parquet_seed() -> bytes:
    buf = io.BytesIO()
    table = pa.table(
        {"query_id": ["q1", "q1", "7"], "doc_id": ["d1", "d2", "d1"], "score": [12.5, -0.25, 3.0]}
    )
    pq.write_table(table, buf)
    return buf.getvalue()


BINARY_SEEDS = {
    "s.parquet": _parquet_seed(),
    "s.pkl": pickle.dumps({"q1": {"d1": 12.5, "d2": -0.25}, 7: {"d1": 3}}),
    "s.pkl.gz": gzip.compress(pickle.dumps({"q1": {"d1": 12.5}}), mtime=0),
}


def _parses_or_refuses(read: Callable[[], None]) -> None:
    try:
        read()
    except RkdError as e:
        assert str(e) and "\n" not in str(e) and len(str(e)) < 1000, str(e)


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("name", list(TEXT_READERS))
def test_text_reader_parses_or_raises_rkd_error(name: str, mode: str) -> None:
    reader = TEXT_READERS[name]
    check = FUZZ(
        given(MODES[mode](reader))(lambda mutated: _parses_or_refuses(lambda: read_mutated(reader, *mutated)))
    )
    _seeded(check)()


@pytest.mark.parametrize("name", list(BINARY_SEEDS))
def test_binary_reader_parses_or_raises_rkd_error(name: str) -> None:
    def read(data: bytes) -> None:
        with tempfile.TemporaryDirectory(prefix="rkd-fuzz-") as tmp:
            (Path(tmp) / name).write_bytes(data)
            _read(name)(Path(tmp))

    @FUZZ
    @given(st.lists(RAW_OPS, min_size=1, max_size=4))
    def check(ops: list[tuple[object, ...]]) -> None:
        _parses_or_refuses(lambda: read(_apply_bytes(BINARY_SEEDS[name], ops)))

    _seeded(check)()


@pytest.mark.parametrize("name", [*TEXT_READERS, *BINARY_SEEDS])
def test_seed_files_parse(name: str, tmp_path: Path) -> None:
    if name in TEXT_READERS:
        reader = TEXT_READERS[name]
        read_mutated(reader, reader.targets[0], reader.files[reader.targets[0]].encode())
    else:
        (tmp_path / name).write_bytes(BINARY_SEEDS[name])
        _read(name)(tmp_path)

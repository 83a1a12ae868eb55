"""The binary score formats: Parquet tables and sentence-transformers' score-dict pickles.

Parquet is read one record batch at a time and checked column by column (ids: strings or
integers, never null, empty or with whitespace; scores: finite numbers within float32's range).

A pickle can run any code when it is read, so :func:`read_st_pickle` is reached only through an
explicit ``allow_pickle`` and then unpickles with an allow-list: dicts, strings, numbers and
numpy scalars load, any other class is refused by name. A pickle is one object, so it is read
whole. :func:`write_st_pickle` writes the dict's opcodes query by query instead of building it,
so an export never holds the store twice; ``pickle.load`` reads the result as a plain dict.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from retrieval_kd.errors import DataError, RkdError
from retrieval_kd.io import check_id, show

# queries, docs, float32 scores, the line (or row) each came from
Chunk = tuple[list[str], list[str], np.ndarray, np.ndarray]
COLUMNS = ("query_id", "doc_id", "score")
GZIP_MAGIC = b"\x1f\x8b"


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return show(text[0] if text else type(e).__name__, 200)


# -- Parquet --------------------------------------------------------------------------------------


def read_parquet(
    path: Path, batch_size: int, check_scores: Callable[[np.ndarray, Callable[[int], str]], None]
) -> Iterator[Chunk]:
    """Yields the rows of a Parquet file of ``query_id``, ``doc_id``, ``score``, a batch at a time.

    Raises:
        DataError: not a Parquet file, a missing column, a column of another type, a null, an
            empty or whitespace id, a bad score; the message names the file and the row.
    """
    try:
        file = pq.ParquetFile(path)
        schema = file.schema_arrow
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (pa.ArrowException, OSError, ValueError, EOFError) as e:
        raise DataError(f"{path}: not a readable Parquet file ({_first_line(e)})") from None
    missing = [c for c in COLUMNS if c not in schema.names]
    if missing:
        raise DataError(
            f"{path}: Parquet columns {schema.names} lack {missing}; a score file has {list(COLUMNS)}"
        )
    for name in COLUMNS:
        t = schema.field(name).type
        ok = pa.types.is_floating(t) or pa.types.is_integer(t) if name == "score" else _id_type(t)
        if not ok:
            want = "numbers" if name == "score" else "strings or integers"
            raise DataError(f"{path}: Parquet column {name!r} has type {t}; it must hold {want}")
    first = 0
    batches = file.iter_batches(batch_size=batch_size, columns=list(COLUMNS))
    while True:
        try:
            batch = next(batches, None)
            if batch is None:
                return
            batch.validate(full=True)  # bad UTF-8 in a string column, among others
        except (pa.ArrowException, OSError, ValueError, EOFError) as e:
            raise DataError(f"{path}: damaged Parquet data after row {first} ({_first_line(e)})") from None

        def where(i: int, start: int = first) -> str:
            return f"{path}: row {start + i + 1}"

        queries = _ids(batch.column(0), "query_id", where)
        docs = _ids(batch.column(1), "doc_id", where)
        score = batch.column(2)
        if score.null_count:
            raise DataError(f"{where(_first_null(score))}: score is null")
        values = np.asarray(score.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
        check_scores(values, where)
        rows = np.arange(first + 1, first + batch.num_rows + 1, dtype=np.int64)
        first += batch.num_rows
        yield queries, docs, values.astype(np.float32), rows


def _id_type(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t))


def _first_null(column: pa.Array) -> int:
    return int(np.flatnonzero(np.asarray(column.is_null().to_numpy(zero_copy_only=False)))[0])


def _ids(column: pa.Array, name: str, where: Callable[[int], str]) -> list[str]:
    if column.null_count:
        raise DataError(f"{where(_first_null(column))}: {name} is null; ids are non-empty strings")
    text = column.cast(pa.string())
    bad = pc.or_(pc.equal(pc.utf8_length(text), 0), pc.match_substring_regex(text, r"\s"))
    if pc.any(bad).as_py():
        i = int(np.flatnonzero(np.asarray(bad.to_numpy(zero_copy_only=False)))[0])
        check_id(text[i].as_py(), name, where(i))  # raises, saying what is wrong
    values: list[str] = text.to_pylist()
    return values


# -- sentence-transformers score dicts (pickles) ----------------------------------------------------


def refuse_pickle(path: Path) -> None:
    """The one-line refusal of a pickle read without ``allow_pickle``."""
    raise RkdError(
        f"{path}: refusing to read a pickle: unpickling can run arbitrary code; pass --allow-pickle "
        "(allow_pickle=True) if you trust where the file came from, or have it exported as JSONL or Parquet"
    )


# What a score dict may hold besides dicts, strings and numbers: numpy scalars (np.float32 scores).
_ALLOWED = {
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("collections", "OrderedDict"),
}


class _ScoresOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise _Refused(f"it names {module}.{name}, which a score dict never holds")


class _Refused(Exception):
    pass


def read_st_pickle(path: Path, batch_size: int, score: Callable[[object], float]) -> Iterator[Chunk]:
    """Yields the pairs of a ``{qid: {pid: score}}`` pickle (gzipped or not), a batch at a time.

    Raises:
        DataError: not a pickle, a class outside dicts, strings and numbers, or not that shape.
    """
    try:
        with open(path, "rb") as raw:
            data = raw.read()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        if data[:2] == GZIP_MAGIC:
            data = gzip.decompress(data)
        obj = _ScoresOnly(io.BytesIO(data)).load()
    except _Refused as e:
        raise DataError(f"{path}: refusing this pickle: {e}") from None
    except Exception as e:  # a damaged pickle can raise nearly anything (EOFError, KeyError, ...)
        raise DataError(
            f"{path}: not a readable score pickle ({type(e).__name__}: {_first_line(e)})"
        ) from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict {{qid: {{pid: score}}}}, got {type(obj).__name__}")
    queries: list[str] = []
    docs: list[str] = []
    scores: list[float] = []
    for qid, judged in obj.items():
        query_id = check_id(_plain(qid), "qid", f"{path}: query {show(qid)}")
        if not isinstance(judged, dict):
            raise DataError(
                f"{path}: query {query_id!r} maps to {type(judged).__name__}, not a dict {{pid: score}}"
            )
        for pid, value in judged.items():
            where = f"{path}: query {query_id!r}, doc {show(pid)}"
            docs.append(check_id(_plain(pid), "pid", where))
            try:
                scores.append(score(_plain(value)))
            except ValueError as e:
                raise DataError(f"{where}: {e}") from None
            queries.append(query_id)
            if len(queries) == batch_size:
                yield queries, docs, np.asarray(scores, np.float32), np.zeros(len(queries), np.int64)
                queries, docs, scores = [], [], []
    if queries:
        yield queries, docs, np.asarray(scores, np.float32), np.zeros(len(queries), np.int64)


def _plain(value: object) -> object:
    """A numpy scalar as the Python number it holds (np.float32 scores, np.int64 ids)."""
    if isinstance(value, np.floating | np.integer) and not isinstance(value, np.bool_):
        return value.item()
    return value


class Writable(Protocol):
    def write(self, data: bytes, /) -> object: ...


def write_st_pickle(f: Writable, groups: Iterable[tuple[str, list[str], list[float]]]) -> None:
    """Writes ``{qid: {pid: score}}`` (pickle protocol 4), one query's opcodes at a time.

    Args:
        f: the binary file.
        groups: ``(query_id, doc_ids, scores)`` per query, each query once.

    Example:
        >>> buf = io.BytesIO()
        >>> write_st_pickle(buf, [("q1", ["d1", "d2"], [1.5, -2.0]), ("q2", ["d1"], [0.25])])
        >>> pickle.loads(buf.getvalue())
        {'q1': {'d1': 1.5, 'd2': -2.0}, 'q2': {'d1': 0.25}}
    """

    def text(value: str) -> bytes:
        data = value.encode("utf-8")
        return pickle.BINUNICODE + struct.pack("<I", len(data)) + data

    f.write(pickle.PROTO + b"\x04" + pickle.EMPTY_DICT)
    for query_id, docs, scores in groups:
        parts = [text(query_id), pickle.EMPTY_DICT]
        for start in range(0, len(docs), 1000):  # SETITEMS batches, as pickle's own writer does
            parts.append(pickle.MARK)
            for doc_id, value in zip(docs[start : start + 1000], scores[start : start + 1000], strict=True):
                parts.append(text(doc_id) + pickle.BINFLOAT + struct.pack(">d", value))
            parts.append(pickle.SETITEMS)
        parts.append(pickle.SETITEM)
        f.write(b"".join(parts))
    f.write(pickle.STOP)

"""Exports a score store to the files other tools read: every format :mod:`.importers` reads.

Every score survives a round trip (export, then import) bit for bit: text formats write each
float32 score as the shortest decimal that reads back to the same float32 (checked, with the
exact float64 value as the fallback), and Parquet and pickles keep the binary value. The store's
rows are written a slice of whole queries at a time (``batch_size`` rows), so an export holds the
store's table and one slice of text, never a second copy of everything; the file appears whole
(atomic rename) or not at all.

- ``tsv``: a ``query_id doc_id score`` header, then one pair per line, sorted by (query, doc).
- ``trec``: ``qid Q0 docid rank score tag``, each query's docs by descending score (ties by doc id).
- ``jsonl``: one ``{"query_id", "doc_id", "score"}`` object per pair.
- ``pylate``: one ``{"query_id", "document_ids", "scores"}`` object per query.
- ``parquet``: columns ``query_id``, ``doc_id`` (string), ``score`` (float32).
- ``st-pickle``: ``{qid: {pid: score}}``, gzipped when the file name ends in ``.gz``.
- ``hofstatter``: ``pos_score neg_score qid pos_pid neg_pid`` for every (positive, negative)
  pair of a query, so it needs the positives (qrels or a candidates folder): a query's stored
  documents that are not positives are its negatives. Pairs of a query without a stored positive,
  or without a negative, cannot be written; their count is returned.
"""

from __future__ import annotations

import gzip
import itertools
import json
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import IO, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from retrieval_kd.errors import RkdError
from retrieval_kd.io import atomic_write
from retrieval_kd.scores.binary import write_st_pickle
from retrieval_kd.scores.ensemble import query_bounds
from retrieval_kd.scores.store import ScoreStore

Group = tuple[str, list[str], list[str]]  # query id, doc ids, score texts


class Exported(NamedTuple):
    """What an export wrote: ``pairs`` scores; ``skipped`` pairs the format cannot hold."""

    pairs: int
    skipped: int


def score_texts(scores: np.ndarray) -> list[str]:
    """Each float32 score as the shortest decimal that reads back (through float64) to it.

    Example:
        >>> score_texts(np.array([0.1, 12.5, -3e20, 1 / 3, -0.0], dtype=np.float32))
        ['0.1', '12.5', '-3e+20', '0.33333334', '-0.0']
    """
    values = np.asarray(scores, dtype=np.float32)
    texts = pc.cast(pa.array(values), pa.string())
    back = np.asarray(pc.cast(texts, pa.float64()).to_numpy(), dtype=np.float64).astype(np.float32)
    out: list[str] = texts.to_pylist()
    for i in np.flatnonzero((values == 0) & np.signbit(values)):
        out[int(i)] = "-0.0"  # JSON reads "-0" as the integer 0, which has no sign
    for i in np.flatnonzero(back.view(np.uint32) != values.view(np.uint32)):
        out[int(i)] = repr(float(values[i]))  # the exact value: always reads back
    return out


def _slices(table: pa.Table, batch_size: int) -> Iterator[pa.Table]:
    """Whole queries, about ``batch_size`` rows at a time."""
    bounds = query_bounds(table)
    start = 0
    while start < table.num_rows:
        end = int(bounds[int(np.searchsorted(bounds, start + batch_size, side="right")) - 1])
        if end <= start:  # one query longer than a batch: all of it
            end = int(bounds[int(np.searchsorted(bounds, start, side="right"))])
        yield table.slice(start, end - start)
        start = end


def _groups(part: pa.Table) -> Iterator[Group]:
    bounds = query_bounds(part)
    queries = part.column("query_id").to_pylist()
    docs = part.column("doc_id").to_pylist()
    texts = score_texts(part.column("score").to_numpy())
    for a, b in itertools.pairwise(bounds):
        yield queries[a], docs[a:b], texts[a:b]


def _by_score(part: pa.Table) -> pa.Table:
    order = pc.sort_indices(
        part, sort_keys=[("query_id", "ascending"), ("score", "descending"), ("doc_id", "ascending")]
    )
    return part.take(order)


def export_scores(
    store: ScoreStore,
    path: Path,
    fmt: str,
    *,
    positives: Mapping[str, Collection[str]] | None = None,
    tag: str = "rkd",
    batch_size: int = 100_000,
) -> Exported:
    """Writes every score of a pointwise ``store`` to ``path`` in format ``fmt``.

    Args:
        store: a pointwise store (or ensemble view); needs ``to_table()``.
        path: the file to write (replaced atomically).
        fmt: one of :data:`FORMATS`.
        positives: query id → its positive doc ids (``hofstatter`` only, where it is required).
        tag: the run tag of a ``trec`` file.
        batch_size: rows per slice written.

    Raises:
        RkdError: unknown format, a pairwise store, ``hofstatter`` without positives, or a tag
            with whitespace.
    """
    if fmt not in _WRITERS:
        raise RkdError(f"unknown export format {fmt!r}; choose from {FORMATS}")
    if store.kind != "pointwise":
        raise RkdError(
            f"cannot export {store.kind} judgements as {fmt}: these formats hold (query, doc) scores"
        )
    if fmt == "hofstatter" and positives is None:
        raise RkdError(
            "the hofstatter format pairs each positive with each negative: "
            "give the positives (qrels or candidates)"
        )
    if not tag or any(c.isspace() for c in tag):
        raise RkdError(f"trec run tag {tag!r} must be a non-empty word without whitespace")
    table = store.to_table()
    counts = {"skipped": 0}

    def write(f: IO[bytes]) -> None:
        _WRITERS[fmt](f, table, _Options(positives or {}, tag, batch_size, counts, Path(path)))

    atomic_write(Path(path), write)
    return Exported(table.num_rows - counts["skipped"], counts["skipped"])


class _Options(NamedTuple):
    positives: Mapping[str, Collection[str]]
    tag: str
    batch_size: int
    counts: dict[str, int]
    path: Path


def _write_text(
    f: IO[bytes], table: pa.Table, o: _Options, lines: Callable[[pa.Table], Iterator[str]]
) -> None:
    for part in _slices(table, o.batch_size):
        f.write("".join(lines(part)).encode("utf-8"))


def _tsv(f: IO[bytes], table: pa.Table, o: _Options) -> None:
    f.write(b"query_id\tdoc_id\tscore\n")
    _write_text(
        f,
        table,
        o,
        lambda part: (
            f"{q}\t{d}\t{s}\n" for q, docs, ss in _groups(part) for d, s in zip(docs, ss, strict=True)
        ),
    )


def _trec(f: IO[bytes], table: pa.Table, o: _Options) -> None:
    def lines(part: pa.Table) -> Iterator[str]:
        for q, docs, ss in _groups(_by_score(part)):
            for rank, (d, s) in enumerate(zip(docs, ss, strict=True), start=1):
                yield f"{q} Q0 {d} {rank} {s} {o.tag}\n"

    _write_text(f, table, o, lines)


def _jsonl(f: IO[bytes], table: pa.Table, o: _Options) -> None:
    def lines(part: pa.Table) -> Iterator[str]:
        for q, docs, ss in _groups(part):
            qj = json.dumps(q)
            for d, s in zip(docs, ss, strict=True):
                yield f'{{"query_id": {qj}, "doc_id": {json.dumps(d)}, "score": {s}}}\n'

    _write_text(f, table, o, lines)


def _pylate(f: IO[bytes], table: pa.Table, o: _Options) -> None:
    def lines(part: pa.Table) -> Iterator[str]:
        for q, docs, ss in _groups(_by_score(part)):
            head = f'{{"query_id": {json.dumps(q)}, "document_ids": {json.dumps(docs)}'
            yield f'{head}, "scores": [{", ".join(ss)}]}}\n'

    _write_text(f, table, o, lines)


def _hofstatter(f: IO[bytes], table: pa.Table, o: _Options) -> None:
    def lines(part: pa.Table) -> Iterator[str]:
        for q, docs, ss in _groups(part):
            wanted = o.positives.get(q, ())
            pos = [(d, s) for d, s in zip(docs, ss, strict=True) if d in wanted]
            neg = [(d, s) for d, s in zip(docs, ss, strict=True) if d not in wanted]
            if not pos or not neg:
                o.counts["skipped"] += len(docs)
                continue
            for p, ps in pos:
                yield "".join(f"{ps}\t{ns}\t{q}\t{p}\t{n}\n" for n, ns in neg)

    _write_text(f, table, o, lines)


def _parquet(f: IO[bytes], table: pa.Table, o: _Options) -> None:
    with pq.ParquetWriter(f, table.schema) as writer:
        for part in table.to_batches(o.batch_size):
            writer.write_batch(part)


def _st_pickle(f: IO[bytes], table: pa.Table, o: _Options) -> None:
    def groups() -> Iterator[tuple[str, list[str], list[float]]]:
        for part in _slices(table, o.batch_size):
            bounds = query_bounds(part)
            queries = part.column("query_id").to_pylist()
            docs = part.column("doc_id").to_pylist()
            scores = part.column("score").to_pylist()  # float32 → the float64 holding it exactly
            for a, b in itertools.pairwise(bounds):
                yield queries[a], docs[a:b], scores[a:b]

    if o.path.suffix.lower() == ".gz":
        with gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as z:
            write_st_pickle(z, groups())
    else:
        write_st_pickle(f, groups())


_WRITERS: dict[str, Callable[[IO[bytes], pa.Table, _Options], None]] = {
    "hofstatter": _hofstatter,
    "jsonl": _jsonl,
    "parquet": _parquet,
    "pylate": _pylate,
    "st-pickle": _st_pickle,
    "trec": _trec,
    "tsv": _tsv,
}
FORMATS = sorted(_WRITERS)

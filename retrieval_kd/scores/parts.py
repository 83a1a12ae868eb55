"""Score-store parts: the judgement kinds, their Parquet schemas, and checked part I/O.

A part is one Parquet file per :meth:`ScoreStore.add` batch. Its sha256 goes into the writer's
journal when it is written, and is checked every time the part is read: the bytes are read once,
hashed, and parsed from that same buffer, so what was checked is what is used.

Parts also carry Parquet's own page checksums (CRC32 per page), verified as they are parsed. They
cost nothing measurable (``benchmarks/bench_store_verify.py``) and are what still guards a part
whose journal line was lost (a kill between its rename and its journal line, a damaged journal):
such a part is adopted only if it parses with its page checksums intact.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from retrieval_kd.types import Judgement, Pair


class Kind(NamedTuple):
    """One judgement kind: the key columns of a part, its value column and the key record."""

    name: str
    keys: tuple[str, ...]
    value: str
    record: type[Pair] | type[Judgement]
    schema: pa.Schema

    def describe(self, key: tuple[str, ...]) -> str:
        """``(query 'q1', doc 'd9')`` or ``(query 'q1', docs 'a' vs 'b')``, for messages."""
        if self.name == "pairwise":
            return f"judgement (query {key[0]!r}, docs {key[1]!r} vs {key[2]!r})"
        return f"pair (query {key[0]!r}, doc {key[1]!r})"


def _kind(name: str, keys: tuple[str, ...], value: str, record: type[Pair] | type[Judgement]) -> Kind:
    fields = [(k, pa.string()) for k in keys] + [(value, pa.float32())]
    return Kind(name, keys, value, record, pa.schema(fields))


KINDS: dict[str, Kind] = {
    "pointwise": _kind("pointwise", ("query_id", "doc_id"), "score", Pair),
    "pairwise": _kind("pairwise", ("query_id", "doc_a", "doc_b"), "value", Judgement),
}


class DamagedPart(Exception):
    """A part that is missing, truncated, altered or not a part of this kind (internal)."""

    def __init__(self, file: Path, reason: str) -> None:
        super().__init__(f"{file.name} ({reason})")
        self.file = file
        self.reason = reason


def sha256(data: bytes) -> str:
    """The hex sha256 recorded in a journal entry."""
    return hashlib.sha256(data).hexdigest()


def encode(table: pa.Table) -> bytes:
    """The Parquet bytes of one part."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, write_page_checksum=True)
    return bytes(sink.getvalue().to_pybytes())


def read_part(
    file: Path, kind: Kind, expect_sha256: str | None = None, expect_rows: int | None = None
) -> tuple[pa.Table, str]:
    """Reads one part, checking its bytes against the journal before parsing them.

    Args:
        file: the part.
        kind: the store's kind; the part's columns must be its schema.
        expect_sha256: the journaled checksum; ``None`` for an unjournaled part being adopted.
        expect_rows: the journaled row count, checked likewise.

    Returns:
        The part's rows and the sha256 of its bytes.

    Raises:
        DamagedPart: the file is absent, its checksum or row count differs, it does not parse,
            or its columns are not ``kind.schema``.
    """
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise DamagedPart(file, "missing") from None
    digest = sha256(data)
    if expect_sha256 is not None and digest != expect_sha256:
        raise DamagedPart(
            file,
            f"checksum mismatch: {len(data)} bytes hash to {digest[:12]}…, "
            f"journal says {expect_sha256[:12]}…",
        )
    try:
        # ParquetFile(...).read() parses a small buffer ~2.7x faster than pq.read_table.
        table = pq.ParquetFile(pa.BufferReader(data), page_checksum_verification=True).read(use_threads=False)
    except (OSError, pa.ArrowException) as e:
        raise DamagedPart(file, f"unreadable Parquet: {e}") from None
    if not table.schema.equals(kind.schema):
        raise DamagedPart(
            file, f"columns {table.schema.names} are not the {kind.name} columns {kind.schema.names}"
        )
    if expect_rows is not None and table.num_rows != expect_rows:
        raise DamagedPart(file, f"{table.num_rows} rows, journal says {expect_rows}")
    return table, digest

"""The merged view of a store's parts: one Arrow table, sorted, one row per key, searched in bulk.

Parts are concatenated in (writer, sequence) order and stably sorted by the key columns and the
writer, so the rows of one key stay in part order and keeping the last row of each run makes
later parts win.
Lookups never build a per-pair hash map: a key's query is found among the sorted distinct query
ids (binary search for small batches, one Arrow hash probe for large ones), then a vectorised
binary search runs over the remaining key columns inside that query's rows, all keys at once.
Memory is the table plus one row per distinct query.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from retrieval_kd.errors import RkdError
from retrieval_kd.scores.parts import Kind
from retrieval_kd.types import Judgement, Pair

_CHUNK = 1 << 20


class Merged:
    """Every stored key and value, deduplicated and sorted by the key columns.

    Attributes:
        table: columns ``kind.schema``, sorted by ``kind.keys``, each key once.
        writers: int32[rows], the rank of the writer each row came from, so rows added later
            merge in (writer, sequence) order too.
    """

    def __init__(self, table: pa.Table, kind: Kind, writers: np.ndarray) -> None:
        # Private: go through build(), which sorts and deduplicates.
        self.table = table
        self.kind = kind
        self.writers = writers
        self.values: np.ndarray = table.column(kind.value).to_numpy()
        n = table.num_rows
        starts = np.flatnonzero(~_same_as_previous(table, kind.keys[:1])) if n else np.zeros(0, np.int64)
        # Row range of the i-th distinct query: bounds[i] to bounds[i + 1].
        self._bounds = np.append(starts, n).astype(np.int64)
        self._queries = table.column("query_id").take(pa.array(starts, pa.int64()))
        # Python strs, one per query (not per pair), for numpy's binary search on small batches.
        self._queries_py = self._queries.to_numpy(zero_copy_only=False)

    @classmethod
    def build(cls, tables: list[pa.Table], writers: list[int | np.ndarray], kind: Kind) -> Merged:
        """Merges tables given in sequence order; for a key, the last row of its highest writer wins.

        Args:
            tables: parts (or an earlier merge first), each in arrival order within its writer.
            writers: per table, its writer's rank (sorted writer names), or one rank per row.
            kind: the store's kind.

        Empties ``tables``: the parts are released as soon as they are copied into one table, so
        the peak holds about two copies of the rows, not three.
        """
        if not tables:
            return cls(kind.schema.empty_table(), kind, np.zeros(0, np.int32))
        ranks = np.concatenate(
            [
                np.broadcast_to(np.asarray(w, np.int32), (t.num_rows,))
                for w, t in zip(writers, tables, strict=True)
            ]
        )
        # Sorting one contiguous table is ~2x faster than sorting thousands of small chunks.
        table = pa.concat_tables(tables)
        tables.clear()
        table = table.combine_chunks().append_column("_writer", pa.array(ranks))
        del ranks
        # Stable: equal keys of one writer keep their arrival order, so the run's last row wins.
        order = pc.sort_indices(
            table, sort_keys=[*((k, "ascending") for k in kind.keys), ("_writer", "ascending")]
        )
        table = table.take(order)
        del order
        last = ~_same_as_previous(table, kind.keys)[1:]
        if not last.all():
            table = table.filter(pa.array(np.append(last, True)))
        ranks = np.asarray(table.column("_writer").to_numpy(), np.int32)
        return cls(table.drop_columns(["_writer"]).combine_chunks(), kind, ranks)

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def locate(self, keys: pa.Table) -> np.ndarray:
        """Row of each key in :attr:`table`, or -1 where the key is absent.

        Shapes:
            keys[N] (columns ``kind.keys``) → int64[N]
        """
        n = keys.num_rows
        if n == 0 or len(self) == 0:
            return np.full(n, -1, np.int64)
        # A million keys at a time bounds the search's temporaries (~10 int64 arrays of a chunk).
        return np.concatenate([self._locate(keys.slice(s, _CHUNK)) for s in range(0, n, _CHUNK)])

    def _locate(self, keys: pa.Table) -> np.ndarray:
        n = keys.num_rows
        rows = np.full(n, -1, np.int64)
        slot = self._query_slots(keys.column("query_id"))
        have = slot >= 0
        lo = np.where(have, self._bounds[np.maximum(slot, 0)], 0)
        end = np.where(have, self._bounds[np.maximum(slot, 0) + 1], 0)
        hi = end.copy()
        rest = self.kind.keys[1:]
        columns = [self.table.column(k) for k in rest]
        targets = [keys.column(k).combine_chunks() for k in rest]
        # Lower bound of each key's remaining columns within its query's rows, all keys at once.
        while True:
            active = np.flatnonzero(lo < hi)
            if active.size == 0:
                break
            mid = (lo[active] + hi[active]) // 2
            less = _less([c.take(mid) for c in columns], [_take(t, active, n) for t in targets])
            lo[active] = np.where(less, mid + 1, lo[active])
            hi[active] = np.where(less, hi[active], mid)
        cand = np.flatnonzero(lo < end)
        if cand.size:
            equal = np.ones(cand.size, dtype=bool)
            for c, t in zip(columns, targets, strict=True):
                equal &= _np(pc.equal(c.take(lo[cand]), _take(t, cand, n)))
            rows[cand[equal]] = lo[cand[equal]]
        return rows

    def _query_slots(self, queries: pa.ChunkedArray) -> np.ndarray:
        """Index of each query among the distinct stored queries, or -1."""
        # Search each distinct query of the batch once (50 keys a query in a training batch).
        encoded = pc.dictionary_encode(queries.combine_chunks())
        distinct = encoded.dictionary
        if len(distinct) * 8 < len(self._queries_py):
            # Few queries: binary search, no hash table of every stored query built per call.
            wanted = distinct.to_numpy(zero_copy_only=False)
            pos = np.searchsorted(self._queries_py, wanted)
            found = self._queries_py[np.minimum(pos, len(self._queries_py) - 1)] == wanted
            slots = np.where(found, pos, -1)
        else:
            slots = pc.index_in(distinct, value_set=self._queries).fill_null(-1).to_numpy()
        out: np.ndarray = np.asarray(slots, dtype=np.int64)[encoded.indices.to_numpy()]
        return out

    def query_rows(self, query_id: str) -> tuple[int, int]:
        """The row range ``[start, end)`` of one query (empty when it has no rows)."""
        pos = int(np.searchsorted(self._queries_py, query_id))
        if pos < len(self._queries_py) and self._queries_py[pos] == query_id:
            return int(self._bounds[pos]), int(self._bounds[pos + 1])
        return 0, 0


def keys_table(kind: Kind, keys: Sequence[Pair] | Sequence[Judgement] | pa.Table) -> pa.Table:
    """The keys as an Arrow table of the kind's key columns (string ids, no nulls).

    Raises:
        RkdError: records of another kind or width, a table without the key columns, or an id
            that is not a string.
    """
    names = list(kind.keys)
    if isinstance(keys, pa.Table):
        if not set(names) <= set(keys.column_names):
            raise RkdError(f"key table has columns {keys.column_names}; a {kind.name} store needs {names}")
        table = keys.select(names)
        if not all(pa.types.is_string(t) or pa.types.is_large_string(t) for t in table.schema.types):
            raise RkdError(f"key table columns {table.schema}: key ids must be strings")
        arrays = [table.column(k).cast(pa.string()) for k in names]
    else:
        widths = set(map(len, keys))
        if widths and widths != {len(names)}:
            example = next(k for k in keys if len(k) != len(names))
            raise RkdError(
                f"keys like {tuple(example)!r} do not fit a {kind.name} store: use "
                f"{kind.record.__name__}({', '.join(names)})"
            )
        # One column at a time: 10x faster than zip(*keys) on a million records.
        columns = [list(map(itemgetter(i), keys)) for i in range(len(names))]
        for col in columns:
            if not set(map(type, col)) <= {str}:  # the fast check; str subclasses pass below
                bad = next((i for i, x in enumerate(col) if not isinstance(x, str)), None)
                if bad is not None:
                    raise RkdError(
                        f"key {tuple(keys[bad])!r}: ids must be strings, not {type(col[bad]).__name__}"
                    )
        arrays = [pa.array(col, pa.string()) for col in columns]
    if any(a.null_count for a in arrays):
        raise RkdError("key ids must be strings, not None")
    return pa.Table.from_arrays(arrays, names=names)


def first_occurrences(table: pa.Table) -> np.ndarray:
    """Ascending positions of the first row of each distinct row of ``table``."""
    if table.num_rows == 0:
        return np.zeros(0, dtype=np.int64)
    order = pc.sort_indices(table, sort_keys=[(k, "ascending") for k in table.column_names]).to_numpy()
    # The sort is stable: equal rows keep their input order, so a run's first row came first.
    same = _same_as_previous(table.take(order), tuple(table.column_names))
    return np.sort(order[~same])


def _same_as_previous(table: pa.Table, keys: tuple[str, ...]) -> np.ndarray:
    """``out[i]``: row ``i`` has the same keys as row ``i - 1`` (``out[0]`` is False)."""
    n = table.num_rows
    same = np.ones(max(n - 1, 0), dtype=bool)
    for k in keys:
        col = table.column(k)
        same &= _np(pc.equal(col.slice(1), col.slice(0, n - 1)))
    return np.append(False, same) if n else np.zeros(0, dtype=bool)


def _less(left: list[pa.Array], right: list[pa.Array]) -> np.ndarray:
    """Lexicographic ``left < right`` over parallel columns."""
    less = np.zeros(len(left[0]), dtype=bool)
    tied = np.ones(len(left[0]), dtype=bool)
    for a, b in zip(left, right, strict=True):
        less |= tied & _np(pc.less(a, b))
        tied &= _np(pc.equal(a, b))
    return less


def _take(column: pa.Array, index: np.ndarray, n: int) -> pa.Array:
    return column if index.size == n else column.take(index)


def _np(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)

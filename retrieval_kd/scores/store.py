"""A durable, resumable store of teacher judgements: pointwise scores or pairwise preferences.

Layout, one folder per teacher fingerprint under a store root::

    root/<teacher_fingerprint>/
        manifest.json                 format "rkd-score-store/2", version 2, kind, fingerprint, spec,
                                      sha256 (of its other fields)
        part-<writer>-000001.parquet  pointwise: query_id, doc_id: string, score: float32
                                      pairwise:  query_id, doc_a, doc_b: string, value: float32
        parts-<writer>.jsonl          the writer's append-only journal (see journal.py)
        quarantine/                   damaged parts a writable open set aside, never deleted
        .staging-<writer>/            parts of an import not committed yet (:meth:`staged`)

A part only counts once its writer's journal lists it. Each process adds under its own
``writer`` name (``rank0``, ``shard1of4``), so its parts and journal are its alone and several
processes can fill one store at once; readers merge every writer's parts in (writer, sequence)
order, a later part winning for a key stored twice.

Write order per batch: part bytes to a temp file, fsync, rename, then one journal line appended
and fsynced. A process killed at any point loses at most the batch in flight: the writer's next
:meth:`ScoreStore.open` removes its stray temp files, cuts a torn journal line and adopts a part
renamed into place but never journaled.

Every read of a part checks its journaled sha256. A damaged part (altered, truncated or gone)
makes a read-only store raise; a writable store moves it to ``quarantine/`` and drops its
journal entry, so its keys read as missing and the next scoring run scores them again.
``rkd scores verify`` (:mod:`.verify`) checks and repairs a whole store, journals included.

Format 1 stores (``rkd-score-store/1``: pointwise, ``parts-<writer>.json`` journals rewritten
whole per batch) are read as they are. :meth:`ScoreStore.open` upgrades one in place: the
manifest becomes format 2 (kind pointwise, ``upgraded_from`` recorded) and the opening writer's
journal becomes JSON lines; other writers' format-1 journals are read until their writers open.
Parts are the same Parquet files in both formats.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeAlias, overload

import numpy as np
import pyarrow as pa

from retrieval_kd.errors import RkdError
from retrieval_kd.io import atomic_write
from retrieval_kd.scores import folder, journal, staging
from retrieval_kd.scores.folder import FORMAT, FORMAT_1, VERSION
from retrieval_kd.scores.merged import Merged, first_occurrences, keys_table
from retrieval_kd.scores.parts import KINDS, DamagedPart, Kind, encode, sha256
from retrieval_kd.types import Judgement, Pair

log = logging.getLogger(__name__)

__all__ = ["FORMAT", "FORMAT_1", "SCHEMA", "VERSION", "Keys", "ScoreStore"]
SCHEMA = KINDS["pointwise"].schema
# Keys of a lookup: Pair records (pointwise), Judgement records (pairwise), or an Arrow table
# with the kind's key columns.
Keys: TypeAlias = Sequence[Pair] | Sequence[Judgement] | pa.Table
_SCORE_TEACHER_HINT = "run `rkd score-teacher` to score the missing pairs"


class ScoreStore:
    """Teacher judgements of one teacher fingerprint, read merged across every writer's parts.

    Use :meth:`open` to add and :meth:`load` to read an existing store. Parts are read, and
    their checksums checked, on the first read (``missing``, ``lookup``, ``len``, ...) and kept
    merged in memory as one Arrow table; :meth:`add` keeps it current. Parts other processes
    add after that first read are not seen by this object.

    Attributes:
        path: ``root/<teacher_fingerprint>``.
        manifest: the parsed ``manifest.json`` (a format-1 store reads as version 1, pointwise).
    """

    def __init__(self, path: Path, manifest: dict[str, Any], writer: str | None) -> None:
        # Private: go through open() or load(), which check the folder first.
        self.path = path
        self.manifest = manifest
        self._kind: Kind = KINDS[manifest["kind"]]
        self._writer = writer
        self._next_seq = 1
        self._lock_fd: int | None = None
        self._merged: Merged | None = None
        self._added: list[pa.Table] = []  # parts added since the merge, in order
        self._writer_rank: dict[str, int] = {}  # writer name → its place in (writer, sequence)
        self._staged: list[journal.Entry] | None = None  # inside staged(): parts not committed

    # -- opening ----------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        root: Path,
        teacher_fingerprint: str,
        teacher_spec: dict[str, Any] | None = None,
        *,
        writer: str = "0",
        kind: str = "pointwise",
    ) -> ScoreStore:
        """Opens the store of ``teacher_fingerprint`` under ``root`` for adding, creating it if absent.

        Also recovers from a killed earlier run of the same ``writer`` (removes its temp files,
        cuts a torn journal line, adopts a part it renamed into place but never journaled) and
        upgrades a format-1 store in place (see the module docstring).

        Args:
            root: store root; it may hold the stores of several teachers.
            teacher_fingerprint: the teacher's ``fingerprint()``; names the folder.
            teacher_spec: JSON-able description of the teacher, recorded in a new manifest.
            writer: this process's part set; concurrent processes must use different names
                (``rank0``, ``shard1of4``). Two live processes with one name are refused.
            kind: ``"pointwise"`` (scores of (query, doc) pairs) or ``"pairwise"`` (values of
                (query, doc_a, doc_b) judgements); recorded in a new store, checked otherwise.

        Raises:
            RkdError: the folder holds another teacher's store or another kind, ``root`` is
                itself a teacher folder, a name or kind is invalid, or another live process
                holds this writer name.
        """
        folder.check_name("teacher fingerprint", teacher_fingerprint)
        folder.check_name("writer", writer)
        if kind not in KINDS:
            raise RkdError(f"unknown judgement kind {kind!r}; choose from {sorted(KINDS)}")
        folder.refuse_teacher_folder_as_root(Path(root))
        path = Path(root) / teacher_fingerprint
        manifest_path = path / "manifest.json"
        if not manifest_path.exists():
            # Two processes may race to create it; the atomic rename keeps exactly one whole,
            # and the kind check below refuses the loser if it asked for another kind.
            folder.create_manifest(path, teacher_fingerprint, teacher_spec, kind)
        manifest = folder.read_manifest(path, teacher_fingerprint)
        if manifest["kind"] != kind:
            raise RkdError(
                f"score store {path} holds {manifest['kind']} judgements, not {kind}: "
                f"kind {manifest['kind']!r} on disk vs {kind!r} requested; use another store root"
            )
        store = cls(path, manifest, writer)
        store._lock_fd = folder.lock(path, writer)
        try:
            if manifest["version"] == 1:
                store.manifest = folder.upgrade_manifest(path, manifest)
            store._next_seq = folder.recover(path, store._kind, writer)
        except BaseException:
            store.close()  # a refused journal must not keep the writer name locked
            raise
        return store

    @classmethod
    def load(cls, root: Path, teacher_fingerprint: str | None = None) -> ScoreStore:
        """Opens an existing store read-only.

        Args:
            root: store root.
            teacher_fingerprint: which teacher; may be left out when ``root`` holds exactly one.

        Raises:
            RkdError: no such store, or several teachers and no fingerprint given; the message
                lists the fingerprints found under ``root``.
        """
        path = folder.find_teacher(Path(root), teacher_fingerprint, _SCORE_TEACHER_HINT)
        return cls(path, folder.read_manifest(path, path.name), writer=None)

    @staticmethod
    def teachers(root: Path) -> list[str]:
        """The teacher fingerprints with a store under ``root``, sorted."""
        return folder.teachers(Path(root))

    def close(self) -> None:
        """Releases this writer's name so another process (or object) may open it; reads still work."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None

    def __enter__(self) -> ScoreStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def fingerprint(self) -> str:
        """The teacher fingerprint this store holds judgements of."""
        return str(self.manifest["teacher_fingerprint"])

    @property
    def kind(self) -> str:
        """``"pointwise"`` or ``"pairwise"``."""
        return self._kind.name

    # -- reading ----------------------------------------------------------------------------

    @overload
    def missing(self, keys: Sequence[Pair]) -> list[Pair]: ...
    @overload
    def missing(self, keys: Sequence[Judgement]) -> list[Judgement]: ...
    @overload
    def missing(self, keys: pa.Table) -> list[Pair] | list[Judgement]: ...
    def missing(self, keys: Keys) -> list[Any]:
        """The keys without a value, in input order, duplicates removed.

        Args:
            keys: :class:`Pair` records (pointwise) or :class:`Judgement` records (pairwise), or
                an Arrow table with the kind's key columns.

        Returns:
            ``list[Pair]`` or ``list[Judgement]``.
        """
        table = keys_table(self._kind, keys)
        absent = np.flatnonzero(self._view().locate(table) < 0)
        positions = absent[first_occurrences(table.take(absent))]
        record = self._kind.record
        if isinstance(keys, pa.Table):
            cols = [table.column(k).take(positions).to_pylist() for k in self._kind.keys]
            return [record(*row) for row in zip(*cols, strict=True)]
        return [k if type(k) is record else record(*k) for k in (keys[int(i)] for i in positions)]

    def lookup(self, keys: Keys) -> np.ndarray:
        """The stored value of every key, aligned with ``keys``.

        Shapes:
            keys[N] → float32[N]

        Raises:
            RkdError: a key has no value; the message names the first one (in input order) and
                how many are missing.
        """
        table = keys_table(self._kind, keys)
        view = self._view()
        rows = view.locate(table)
        absent = np.flatnonzero(rows < 0)
        if absent.size:
            first = tuple(table.column(k)[int(absent[0])].as_py() for k in self._kind.keys)
            value = "score" if self._kind.name == "pointwise" else "value"
            raise RkdError(
                f"no {value} for {self._kind.describe(first)} in {self.path} "
                f"({absent.size} of {len(rows)} keys missing); {_SCORE_TEACHER_HINT}"
            )
        return np.asarray(view.values[rows], dtype=np.float32)

    def get(self, query_id: str, doc_ids: Sequence[str]) -> np.ndarray:
        """Scores of ``query_id`` against ``doc_ids`` (pointwise stores).

        Shapes:
            doc_ids[N] → float32[N]

        Raises:
            RkdError: a pair has no score (the message names it), or the store is pairwise.
        """
        if self._kind.name != "pointwise":
            raise RkdError(
                f"score store {self.path} holds pairwise judgements; use lookup() with Judgement keys"
            )
        view = self._view()
        # One query: its few rows as a small dict beats the general search's fixed cost (~30x).
        start, end = view.query_rows(query_id)
        docs = view.table.column("doc_id").slice(start, end - start).to_pylist()
        row = {d: start + i for i, d in enumerate(docs)}
        rows = [row.get(d, -1) for d in doc_ids]
        if -1 in rows:
            return self.lookup([Pair(query_id, d) for d in doc_ids])  # raises, naming the pair
        return np.asarray(view.values[rows], dtype=np.float32)

    def __len__(self) -> int:
        return len(self._view())

    def to_table(self) -> pa.Table:
        """Every key once with its value, sorted by the key columns, to compare stores with ``equals``."""
        return self._view().table

    def verify(self) -> int:
        """Re-reads every journaled part against its checksum and returns how many; raises naming
        every damaged one (:func:`~retrieval_kd.scores.folder.check_parts`; ``rkd scores verify``
        repairs)."""
        return folder.check_parts(self.path, self._kind)

    # -- writing ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def staged(self) -> Iterator[None]:
        """Adds inside the block become part of the store together, when it ends without error.

        Parts go to ``.staging-<writer>/`` and are committed at the end (see
        :func:`~retrieval_kd.scores.staging.commit_staged`); an error, or a kill, leaves the store
        as it was (the writer's next open discards an unfinished staging area). Reads inside the
        block do not see the staged adds.
        """
        self._writable()
        assert self._writer is not None
        if self._staged is not None:
            raise RkdError(f"score store {self.path}: staged() blocks do not nest")
        aside = staging.staging_dir(self.path, self._writer)
        shutil.rmtree(aside, ignore_errors=True)  # settled at open; this is a leftover of ours
        aside.mkdir()
        self._staged = []
        try:
            yield
            entries = self._staged
        except BaseException:
            shutil.rmtree(aside, ignore_errors=True)
            raise
        finally:
            self._staged = None
        staging.commit_staged(self.path, self._writer, entries)
        self._merged, self._added = None, []  # read again, committed parts included

    def add(self, keys: Sequence[Pair] | Sequence[Judgement], values: np.ndarray) -> None:
        """Adds one batch as one durable part; a key already stored is overwritten.

        Shapes:
            keys[N], values[N] (cast to float32)

        Raises:
            RkdError: the store is read-only or closed, the lengths differ, a key is not a
                record of string ids of this kind, or a value is NaN/inf (naming the first bad
                key). Nothing of the batch is written then.
        """
        self._writable()
        assert self._writer is not None
        vals = np.asarray(values, dtype=np.float32)
        if vals.shape != (len(keys),):
            raise RkdError(f"{len(keys)} keys but values of shape {vals.shape}; need one value per key")
        if not len(keys):
            return
        key_columns = keys_table(self._kind, keys).columns  # every id a string, else RkdError
        bad = np.flatnonzero(~np.isfinite(vals))
        if bad.size:
            i = int(bad[0])
            raise RkdError(
                f"value {vals[i]} for {self._kind.describe(tuple(keys[i]))} is not finite; "
                f"none of this batch of {len(keys)} was stored"
            )
        table = pa.Table.from_arrays([*key_columns, pa.array(vals)], schema=self._kind.schema)
        data = encode(table)
        name = journal.part_name(self._writer, self._next_seq)
        entry = journal.Entry(name, len(keys), sha256(data))
        self._next_seq += 1
        if self._staged is not None:
            atomic_write(staging.staging_dir(self.path, self._writer) / name, lambda f: f.write(data))
            self._staged.append(entry)
            return
        atomic_write(self.path / name, lambda f: f.write(data))  # temp name, fsync, rename
        journal.append(self.path, self._writer, entry)
        if self._merged is not None:
            self._added.append(table)

    def _writable(self) -> None:
        if self._writer is None or self._lock_fd is None:
            how = "opened read-only (ScoreStore.load)" if self._writer is None else "closed"
            raise RkdError(f"score store {self.path} was {how}; use ScoreStore.open to add scores")

    # -- internals --------------------------------------------------------------------------

    def _view(self) -> Merged:
        if self._merged is None:
            self._added = []  # the parts on disk include them
            writers, tables = self._read_parts()
            self._merged = Merged.build(tables, writers, self._kind)
        elif self._added:
            tables = [self._merged.table, *self._added]
            ranks: list[int | np.ndarray] = [self._merged.writers]
            ranks += [self._writer_rank[str(self._writer)]] * len(self._added)
            # Dropped before the merge so its memory can go; were the merge to fail, the next
            # read would start again from the parts on disk, which hold every add.
            self._merged, self._added = None, []
            self._merged = Merged.build(tables, ranks, self._kind)
        return self._merged

    def _read_parts(self) -> tuple[list[int | np.ndarray], list[pa.Table]]:
        """Every journaled part, checksums checked, in (writer, sequence) order, with writer ranks."""
        listed = journal.writers(self.path)
        known = {*listed, self._writer} if self._writer else set(listed)
        self._writer_rank = {w: i for i, w in enumerate(sorted(known))}
        writers: list[int | np.ndarray] = []
        tables: list[pa.Table] = []
        damaged: list[tuple[str, DamagedPart]] = []
        for writer, got in folder.journaled_parts(self.path, self._kind):
            if isinstance(got, DamagedPart):
                damaged.append((writer, got))
            else:
                tables.append(got)
                writers.append(self._writer_rank[writer])
        if damaged and self._writer is None:
            bad = ", ".join(str(e) for _, e in damaged)
            raise RkdError(
                f"score store {self.path}: damaged part(s) {bad}; rerun `rkd score-teacher` to "
                "re-score them (opening the store for writing, or `rkd scores verify`, sets damaged "
                "parts aside in quarantine/)"
            )
        held = None if self._lock_fd is None else (str(self._writer), self._lock_fd)
        for writer, damage in damaged:
            folder.set_aside(self.path, writer, damage, held)
        return writers, tables

"""A durable, resumable store of teacher scores for (query id, doc id) pairs.

Layout, one folder per teacher fingerprint under a store root::

    root/<teacher_fingerprint>/
        manifest.json                 format, fingerprint, teacher spec, creation time
        part-<writer>-000001.parquet  query_id: string, doc_id: string, score: float32
        parts-<writer>.json           the writer's journal: file name, rows, sha256 per part

A part only counts once its writer's journal lists it. Each process adds under its own
``writer`` name (``rank0``, ``shard1of4``), so its parts and journal are its alone and several
processes can fill one store at once; readers merge every ``parts-*.json``.

Write order per batch: part bytes to a temp file, fsync, rename, then the journal rewritten
atomically. A process killed at any point loses at most the batch in flight: a stray temp file is
removed on the next :meth:`ScoreStore.open`, and a renamed part that missed its journal entry is
adopted then.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from retrieval_kd.errors import RkdError
from retrieval_kd.io import atomic_write, atomic_write_json, read_json
from retrieval_kd.types import Pair

log = logging.getLogger(__name__)

FORMAT = "rkd-score-store/1"
JOURNAL_FORMAT = "rkd-score-parts/1"
SCHEMA = pa.schema([("query_id", pa.string()), ("doc_id", pa.string()), ("score", pa.float32())])
# Names become file and folder names, so keep them to characters that are safe everywhere.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:=+@-]{0,199}")
_SCORE_TEACHER_HINT = "run `rkd score-teacher` to score the missing pairs"


class ScoreStore:
    """Teacher scores of one teacher fingerprint, read merged across every writer's parts.

    Use :meth:`open` to add scores and :meth:`load` to read an existing store. The merged scores
    are read once, on first use, and kept in memory (training reads them a lot); :meth:`add`
    keeps that copy current. Parts other processes add after that first read are not seen by
    this object.

    Attributes:
        path: ``root/<teacher_fingerprint>``.
        manifest: the parsed ``manifest.json``.
    """

    def __init__(self, path: Path, manifest: dict[str, Any], writer: str | None) -> None:
        # Private: go through open() or load(), which check the folder first.
        self.path = path
        self.manifest = manifest
        self._writer = writer
        self._journal: list[dict[str, Any]] = []
        self._next_seq = 1
        self._lock_fd: int | None = None
        self._cache: dict[tuple[str, str], float] | None = None

    # -- opening ----------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        root: Path,
        teacher_fingerprint: str,
        teacher_spec: dict[str, Any] | None = None,
        *,
        writer: str = "0",
    ) -> ScoreStore:
        """Opens the store of ``teacher_fingerprint`` under ``root`` for adding, creating it if absent.

        Also recovers from a killed earlier run of the same ``writer``: removes its stray temp
        files and adopts a part it renamed into place but never journaled.

        Args:
            root: store root; it may hold the stores of several teachers.
            teacher_fingerprint: the teacher's ``fingerprint()``; names the folder.
            teacher_spec: JSON-able description of the teacher, recorded in a new manifest.
            writer: this process's part set; concurrent processes must use different names
                (``rank0``, ``shard1of4``). Two live processes with one name are refused.

        Raises:
            RkdError: the folder holds another teacher's store, ``root`` is itself a teacher
                folder, a name is unsafe, or another live process holds this writer name.
        """
        _check_name("teacher fingerprint", teacher_fingerprint)
        _check_name("writer", writer)
        _refuse_teacher_folder_as_root(Path(root))
        path = Path(root) / teacher_fingerprint
        manifest_path = path / "manifest.json"
        if not manifest_path.exists():
            # Two processes may race to create it; both write an equivalent manifest and the
            # atomic rename keeps exactly one of them whole.
            atomic_write_json(
                manifest_path,
                {
                    "format": FORMAT,
                    "teacher_fingerprint": teacher_fingerprint,
                    "teacher": teacher_spec,
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                },
            )
        store = cls(path, _read_manifest(path, teacher_fingerprint), writer)
        store._lock_writer()
        store._recover()
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
        root = Path(root)
        found = cls.teachers(root)
        if teacher_fingerprint is None:
            if not found:
                raise RkdError(
                    f"no teacher score store under {root}{_teacher_folder_hint(root)}; {_SCORE_TEACHER_HINT}"
                )
            if len(found) > 1:
                raise RkdError(
                    f"{len(found)} teacher score stores under {root}: {found}; "
                    "pass the teacher fingerprint to choose one"
                )
            teacher_fingerprint = found[0]
        elif teacher_fingerprint not in found:
            raise RkdError(
                f"no score store for teacher {teacher_fingerprint!r} under {root}; found {found}"
                f"{_teacher_folder_hint(root)}; {_SCORE_TEACHER_HINT}"
            )
        path = root / teacher_fingerprint
        return cls(path, _read_manifest(path, teacher_fingerprint), writer=None)

    @staticmethod
    def teachers(root: Path) -> list[str]:
        """The teacher fingerprints with a store under ``root``, sorted."""
        root = Path(root)
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if (p / "manifest.json").is_file())

    def close(self) -> None:
        """Releases this writer's name so another process (or object) may open it."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None

    def __enter__(self) -> ScoreStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def fingerprint(self) -> str:
        """The teacher fingerprint this store holds scores of."""
        return str(self.manifest["teacher_fingerprint"])

    # -- reading ----------------------------------------------------------------------------

    def missing(self, pairs: Sequence[Pair]) -> list[Pair]:
        """The pairs without a score, in input order, duplicates removed."""
        have = self._index()
        seen: set[tuple[str, str]] = set()
        out: list[Pair] = []
        for q, d in pairs:
            key = (q, d)
            if key not in have and key not in seen:
                seen.add(key)
                out.append(Pair(q, d))
        return out

    def get(self, query_id: str, doc_ids: Sequence[str]) -> np.ndarray:
        """Scores of ``query_id`` against ``doc_ids``.

        Shapes:
            doc_ids[N] → float32[N]

        Raises:
            RkdError: a pair has no score; the message names it.
        """
        have = self._index()
        out = np.empty(len(doc_ids), dtype=np.float32)
        for i, d in enumerate(doc_ids):
            score = have.get((query_id, d))
            if score is None:
                n_missing = sum((query_id, x) not in have for x in doc_ids)
                raise RkdError(
                    f"no score for pair (query {query_id!r}, doc {d!r}) in {self.path} "
                    f"({n_missing} of {len(doc_ids)} docs of this query missing); {_SCORE_TEACHER_HINT}"
                )
            out[i] = score
        return out

    def scores(self) -> dict[tuple[str, str], float]:
        """Every score, merged across all writers (a copy)."""
        return dict(self._index())

    def __len__(self) -> int:
        return len(self._index())

    def to_table(self) -> pa.Table:
        """All rows sorted by (query_id, doc_id), to compare two stores pair for pair."""
        have = self._index()
        table = pa.table(
            {
                "query_id": pa.array([k[0] for k in have], pa.string()),
                "doc_id": pa.array([k[1] for k in have], pa.string()),
                "score": pa.array(list(have.values()), pa.float32()),
            },
            schema=SCHEMA,
        )
        return table.sort_by([("query_id", "ascending"), ("doc_id", "ascending")])

    def verify(self) -> None:
        """Re-hashes every journaled part against its recorded checksum.

        Raises:
            RkdError: a part is missing or its bytes changed; the message names the files.
        """
        bad: list[str] = []
        for _, entry in self._all_parts():
            file = self.path / entry["file"]
            if not file.exists():
                bad.append(f"{entry['file']} (missing)")
            elif _sha256(file.read_bytes()) != entry["sha256"]:
                bad.append(f"{entry['file']} (checksum mismatch)")
        if bad:
            raise RkdError(
                f"score store {self.path} is damaged: {', '.join(bad)}; delete those parts "
                f"and their journal entries, then {_SCORE_TEACHER_HINT}"
            )

    # -- writing ----------------------------------------------------------------------------

    def add(self, pairs: Sequence[Pair], scores: np.ndarray) -> None:
        """Adds one batch of scores as one durable part; a pair already stored is overwritten.

        Shapes:
            pairs[N], scores[N] (cast to float32)

        Raises:
            RkdError: the store was opened read-only, the lengths differ, an id is not a
                string, or a score is NaN/inf (naming the first bad pair). Nothing of the
                batch is written then.
        """
        if self._writer is None:
            raise RkdError(
                f"score store {self.path} was opened read-only (ScoreStore.load); "
                "use ScoreStore.open to add scores"
            )
        values = np.asarray(scores, dtype=np.float32)
        if values.shape != (len(pairs),):
            raise RkdError(f"{len(pairs)} pairs but scores of shape {values.shape}; need one score per pair")
        if not pairs:
            return
        qs = [p[0] for p in pairs]
        ds = [p[1] for p in pairs]
        for q, d in pairs:
            if not (isinstance(q, str) and isinstance(d, str)):
                raise RkdError(f"pair ({q!r}, {d!r}): query and doc ids must be strings")
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            i = int(bad[0])
            raise RkdError(
                f"score {values[i]} for pair (query {qs[i]!r}, doc {ds[i]!r}) is not finite; "
                f"none of this batch of {len(pairs)} was stored"
            )

        table = pa.table({"query_id": qs, "doc_id": ds, "score": values}, schema=SCHEMA)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        data = sink.getvalue().to_pybytes()
        name = f"part-{self._writer}-{self._next_seq:06d}.parquet"
        atomic_write(self.path / name, lambda f: f.write(data))  # temp name, fsync, rename
        self._journal.append({"file": name, "rows": len(pairs), "sha256": _sha256(data)})
        self._next_seq += 1
        self._write_journal()
        if self._cache is not None:
            self._cache.update(zip(zip(qs, ds, strict=True), values.tolist(), strict=True))

    # -- internals --------------------------------------------------------------------------

    def _index(self) -> dict[tuple[str, str], float]:
        if self._cache is None:
            cache: dict[tuple[str, str], float] = {}
            for _, entry in self._all_parts():
                cache.update(_read_part(self.path / entry["file"]))
            self._cache = cache
        return self._cache

    def _all_parts(self) -> list[tuple[str, dict[str, Any]]]:
        """Every journaled part as (writer, entry), in (writer, sequence) order: later parts win."""
        out: list[tuple[str, dict[str, Any]]] = []
        for journal in sorted(self.path.glob("parts-*.json")):
            writer = journal.name[len("parts-") : -len(".json")]
            parts = self._journal if writer == self._writer else _read_journal(journal)
            out.extend((writer, entry) for entry in parts)
        return out

    def _journal_path(self) -> Path:
        return self.path / f"parts-{self._writer}.json"

    def _write_journal(self) -> None:
        atomic_write_json(
            self._journal_path(), {"format": JOURNAL_FORMAT, "writer": self._writer, "parts": self._journal}
        )

    def _lock_writer(self) -> None:
        # Two live processes under one writer name would overwrite each other's parts and journal;
        # an flock makes that an error instead, and dies with its process, so a killed run leaves
        # no stale lock behind.
        fd = os.open(self.path / f".writer-{self._writer}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RkdError(
                f"score store {self.path}: writer {self._writer!r} is in use by another "
                "process or open store; give each process its own writer name"
            ) from None
        self._lock_fd = fd

    def _recover(self) -> None:
        """Cleans up after a killed run of this writer: drops temp files, adopts unjournaled parts."""
        journal_path = self._journal_path()
        self._journal = _read_journal(journal_path) if journal_path.exists() else []
        w = re.escape(str(self._writer))
        # atomic_write's temp names are ".<target name>.<random>.tmp"; match only this writer's.
        stray = re.compile(rf"\.(part-{w}-\d{{6,}}\.parquet|parts-{w}\.json)\..+\.tmp")
        part_name = re.compile(rf"part-{w}-(\d{{6,}})\.parquet")
        journaled = {entry["file"] for entry in self._journal}
        seqs = [0]
        adopted = False
        for file in sorted(self.path.iterdir()):
            if stray.fullmatch(file.name):
                log.info("removing %s left by a killed run", file)
                file.unlink()
                continue
            match = part_name.fullmatch(file.name)
            if match is None:
                continue
            seqs.append(int(match.group(1)))
            if file.name in journaled:
                continue
            # Renamed into place but the process died before the journal write: the part was
            # fsynced before its rename, so if it reads back it is whole and worth keeping.
            try:
                _read_part(file)
                rows = pq.read_metadata(file).num_rows
            except RkdError as e:
                log.warning("removing unreadable unjournaled part %s: %s", file, e)
                file.unlink()
                continue
            log.info("adopting unjournaled part %s (%d rows)", file, rows)
            self._journal.append({"file": file.name, "rows": rows, "sha256": _sha256(file.read_bytes())})
            adopted = True
        # Same prefix and zero-padded numbers: (length, name) order is sequence order, past 999999 too.
        self._journal.sort(key=lambda entry: (len(entry["file"]), entry["file"]))
        self._next_seq = max(seqs) + 1
        if adopted:
            self._write_journal()


def _check_name(what: str, name: str) -> None:
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
        raise RkdError(
            f"{what} {name!r} cannot name a file: use letters, digits and _.:=+@- "
            "(not first), at most 200 characters"
        )


def _teacher_folder_hint(root: Path) -> str:
    manifest = root / "manifest.json"
    if not manifest.is_file():
        return ""
    fp = read_json(manifest).get("teacher_fingerprint")
    return f" ({root} is itself the store of teacher {fp!r}: pass its parent folder as the root)"


def _refuse_teacher_folder_as_root(root: Path) -> None:
    # Opening a teacher's folder as a root would quietly nest a second store inside the first.
    hint = _teacher_folder_hint(root)
    if hint:
        raise RkdError(f"{root} is not a score store root{hint}")


def _read_manifest(path: Path, teacher_fingerprint: str) -> dict[str, Any]:
    manifest = read_json(path / "manifest.json")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise RkdError(f"{path / 'manifest.json'}: not a score store manifest (expected format {FORMAT!r})")
    if manifest.get("teacher_fingerprint") != teacher_fingerprint:
        raise RkdError(
            f"{path} holds scores of teacher {manifest.get('teacher_fingerprint')!r}, not "
            f"{teacher_fingerprint!r}; the folder must be named after its teacher's fingerprint"
        )
    return manifest


def _read_journal(path: Path) -> list[dict[str, Any]]:
    journal = read_json(path)
    if not isinstance(journal, dict) or journal.get("format") != JOURNAL_FORMAT:
        raise RkdError(f"{path}: not a score store journal (expected format {JOURNAL_FORMAT!r})")
    parts: list[dict[str, Any]] = journal["parts"]
    return parts


def _read_part(file: Path) -> dict[tuple[str, str], float]:
    try:
        table = pq.read_table(file)
    except (OSError, pa.ArrowException) as e:
        raise RkdError(f"{file}: unreadable score part ({e})") from None
    if not table.schema.equals(SCHEMA):
        raise RkdError(f"{file}: columns {table.schema} are not {SCHEMA}")
    keys = zip(table.column("query_id").to_pylist(), table.column("doc_id").to_pylist(), strict=True)
    return dict(zip(keys, table.column("score").to_numpy().tolist(), strict=True))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

"""What the two Lucene index kinds share: a JSON collection staged on disk, Anserini's indexer, the
rkd index folder around a Lucene index, and the searcher's hits as a Run.

Documents stream into a JSONL collection in a temporary folder as they are added (no corpus-sized
list in memory); the Lucene index is built from it by Anserini's ``IndexCollection`` (one
thread, so documents keep their order and a rebuild is the same index) on the first search or
save. On disk an rkd Lucene index is a folder: ``lucene/`` (the Lucene index), ``lucene.json``
(how it was built: Java, pyserini, indexer flags), ``doc_ids.json`` and ``manifest.json``, written
last. The manifest's ``settings`` hold everything that changes a score; the eval stage copies them
into its report.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from retrieval_kd.artifacts import replacing
from retrieval_kd.errors import DataError, RkdError
from retrieval_kd.indexes._folder import FORMAT, check_encoder, read_index_folder, write_index_folder
from retrieval_kd.types import Run

L = TypeVar("L", bound="LuceneIndex")

LUCENE_DIR = "lucene"
BUILD_FILE = "lucene.json"


def positive_int(kind: str, name: str, value: Any) -> int:
    """``value`` if it is an integer >= 1, else the error naming the option."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise RkdError(f"{kind} index option {name} must be an integer >= 1, got {value!r}")
    return value


def default_threads() -> int:
    import os

    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class LuceneIndex:
    """Base of the Lucene index kinds: a subclass says what a document record is
    (:meth:`records`), how Anserini indexes it (``COLLECTION``, :meth:`indexer_flags`) and how to
    search (:meth:`open_searcher`, :meth:`run_search`).

    Args:
        student_fingerprint: the encoder that made the documents' representations.
        settings: everything that changes a score (recorded in the manifest).
        threads: search threads (Anserini's batch search); no effect on the results.
    """

    kind: ClassVar[str] = ""
    OPTIONS: ClassVar[tuple[str, ...]] = ()
    COLLECTION: ClassVar[str] = "JsonCollection"

    def __init__(self, student_fingerprint: str, settings: Mapping[str, Any], threads: int) -> None:
        self.threads = positive_int(self.kind, "threads", threads)
        self.doc_ids: list[str] = []
        self._id_set: set[str] = set()
        self._staging: tempfile.TemporaryDirectory[str] | None = None
        self._lucene: Path | None = None  # the built Lucene index (staged, or a saved folder's)
        self._searcher: Any = None
        self.path: Path | None = None
        self.manifest: dict[str, Any] = {
            "format": FORMAT,
            "kind": self.kind,
            "count": 0,
            "student_fingerprint": student_fingerprint,
            "settings": dict(settings),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` as keyword arguments, refusing unknown names with the valid ones."""
        unknown = sorted(set(options) - set(cls.OPTIONS))
        if unknown:
            raise RkdError(f"unknown {cls.kind} index option(s) {unknown}; choose from {list(cls.OPTIONS)}")
        return dict(options)

    def __len__(self) -> int:
        return len(self.doc_ids)

    # -- what a kind defines ---------------------------------------------------------------------

    def records(self, doc_ids: Sequence[str], reps: Any) -> list[dict[str, Any]]:
        """One Anserini JSON document per id (``{"id": ..., "contents": ...}``)."""
        raise NotImplementedError

    def indexer_flags(self) -> list[str]:
        """Flags for Anserini's ``IndexCollection`` beyond collection, input and index."""
        raise NotImplementedError

    def open_searcher(self, folder: Path) -> Any:
        """A pyserini/Anserini searcher over the Lucene index at ``folder``."""
        raise NotImplementedError

    def run_search(self, searcher: Any, query_ids: list[str], query_reps: Any, k: int) -> dict[str, Any]:
        """Anserini's batch search: query id → its hits (objects with ``docid`` and ``score``)."""
        raise NotImplementedError

    def hit_score(self, score: float) -> float:
        """The score rkd reports for Lucene's ``score`` (the same, unless a kind rescales)."""
        return score

    # -- building --------------------------------------------------------------------------------

    def add(self, doc_ids: Sequence[str], reps: Any) -> None:
        """Appends documents to the staged collection (the Lucene index is built on first use)."""
        if self.path is not None and self._staging is None:
            raise RkdError(f"{self.path}: a saved Lucene index is read-only; rebuild it with `rkd index`")
        doc_ids = [str(d) for d in doc_ids]
        seen: set[str] = set()
        for doc_id in doc_ids:
            if doc_id in self._id_set or doc_id in seen:
                raise RkdError(f"duplicate document id {doc_id!r}: each document may be indexed once")
            seen.add(doc_id)
        records = self.records(doc_ids, reps)
        if len(records) != len(doc_ids):
            raise RkdError(f"{len(doc_ids)} document ids but {len(records)} document representations")
        if not doc_ids:
            return
        from retrieval_kd.lucene import write_jsonl

        if self._staging is None:
            self._staging = tempfile.TemporaryDirectory(prefix=f"rkd-{self.kind}-")
            (Path(self._staging.name) / "collection").mkdir()
        write_jsonl(Path(self._staging.name) / "collection" / "docs.jsonl", records)
        self.doc_ids.extend(doc_ids)
        self._id_set.update(doc_ids)
        self.manifest["count"] = len(self.doc_ids)
        self._lucene = self._searcher = None  # rebuilt with the new documents on next use

    def lucene_folder(self) -> Path:
        """The Lucene index of everything added so far, built now if needed."""
        if self._lucene is None:
            from retrieval_kd.lucene import run_indexer

            if self._staging is None:
                raise RkdError(f"empty {self.kind} index: add documents first")
            staging = Path(self._staging.name)
            out = staging / f"{LUCENE_DIR}-{len(self.doc_ids)}"
            shutil.rmtree(out, ignore_errors=True)
            run_indexer(self.COLLECTION, staging / "collection", out, self.indexer_flags())
            self._lucene = out
        return self._lucene

    # -- searching -------------------------------------------------------------------------------

    def search(self, query_ids: Sequence[str], query_reps: Any, k: int) -> Run:
        """The ``k`` best documents per query, best first; ties by doc id (Anserini's own order).

        Shapes:
            query_ids[Q], query_reps: the kind's query representations for Q queries → Run.
        """
        query_ids = [str(q) for q in query_ids]
        if k < 1:
            raise RkdError(f"k must be at least 1, got {k}")
        if not self.doc_ids or not query_ids:
            return {qid: {} for qid in query_ids}
        if self._searcher is None:
            self._searcher = self.open_searcher(self.lucene_folder())
        hits = self.run_search(self._searcher, query_ids, query_reps, k)
        run: Run = {}
        for qid in query_ids:
            ranked = sorted(
                ((str(h.docid), self.hit_score(float(h.score))) for h in hits.get(qid) or ()),
                key=lambda pair: (-pair[1], pair[0]),
            )
            run[qid] = dict(ranked[:k])
        return run

    # -- encoder check and persistence -----------------------------------------------------------

    def check_encoder(self, student_fingerprint: str) -> None:
        """Refuses queries from another encoder than the one that made the documents."""
        check_encoder(self.manifest, self.path, student_fingerprint)

    def save(self, path: Path) -> None:
        """Writes the folder: ``lucene/``, then ``lucene.json``, ``doc_ids.json`` and the manifest
        last, so a folder with a manifest is whole."""
        from retrieval_kd.lucene import find_java, pyserini_version

        if not self.doc_ids:
            raise RkdError(f"cannot save an empty {self.kind} index: add documents first")
        path = Path(path)
        source = self.lucene_folder()
        java = find_java()
        build = {
            "collection": self.COLLECTION,
            "indexer_flags": self.indexer_flags(),
            "pyserini": pyserini_version(),
            "java": {"version": java.version, "home": str(java.home), "source": java.source},
        }
        # over an older index: written beside and swapped in whole (write_index_folder then
        # writes in place and checksums lucene/ with the rest)
        with replacing(path, lambda p: (p / "manifest.json").exists()) as folder:
            shutil.rmtree(folder / LUCENE_DIR, ignore_errors=True)  # a killed save's leftovers
            shutil.copytree(source, folder / LUCENE_DIR, ignore=shutil.ignore_patterns("write.lock"))
            write_index_folder(
                folder,
                BUILD_FILE,
                lambda f: f.write(json.dumps(build, indent=2).encode()),
                self.doc_ids,
                self.manifest,
            )
        self._lucene = path / LUCENE_DIR
        self.path = path

    @classmethod
    def from_manifest(cls: type[L], manifest: Mapping[str, Any]) -> L:
        """An index object with the settings ``manifest`` records (documents are set by load)."""
        raise NotImplementedError

    @classmethod
    def load(cls: type[L], path: Path) -> L:
        """Reads a folder written by :meth:`save`; searches open its ``lucene/`` folder in place."""
        path = Path(path)
        manifest, doc_ids = read_index_folder(path, cls.kind, BUILD_FILE)
        if not (path / LUCENE_DIR).is_dir():
            raise DataError(f"{path / LUCENE_DIR}: no such folder (the Lucene index); rebuild the index")
        if manifest.get("count") != len(doc_ids):
            raise DataError(
                f"{path}: doc_ids.json holds {len(doc_ids)} ids, manifest.json says {manifest.get('count')}: "
                "the folder is inconsistent; rebuild it"
            )
        self = cls.from_manifest(manifest)
        self.manifest = dict(manifest)
        self.doc_ids = doc_ids
        self._id_set = set(doc_ids)
        self._lucene = path / LUCENE_DIR
        self.path = path
        return self

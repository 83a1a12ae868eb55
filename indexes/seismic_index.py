"""Sparse term-weight vectors (SPLADE) in a Seismic index: approximate, for large corpora.

Seismic (Bruch et al., SIGIR 2024; PyPI ``pyseismic-lsr``) prunes each term's posting list to
its highest-weight documents, groups each list into blocks summarised by a vector, and at query
time visits only the ``query_cut`` heaviest query terms, skipping a block whose summary scores
below ``heap_factor`` × the current k-th best. Documents reached are scored exactly against their
stored vector, whose weights Seismic keeps in half precision (float16).

The index takes the same representations as :class:`~retrieval_kd.indexes.sparse_index.SparseIndex`
(a ``[N, vocab]`` CSR matrix from ``encode_documents``): a term is its column number, written as
a string because that is Seismic's vocabulary type. Documents gather in a ``SeismicDataset`` and
the index is built on the first search or save; after that it is static. With ``query_cut`` at
least the query length, ``heap_factor = 0`` and no posting pruning (``n_postings`` ≥ the corpus),
every document sharing a term is scored: the search is exact over the float16 weights.

On disk an index is a folder: ``index.seismic`` (Seismic's own ``save``), ``doc_ids.json`` and
``manifest.json``, written last, so a folder with a manifest is complete.

References:
    Bruch, Nardini, Rulli, Venturini, "Efficient Inverted Indexes for Approximate Retrieval over
    Learned Sparse Representations", SIGIR 2024, arXiv:2404.18812.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from retrieval_kd.errors import DataError, RkdError
from retrieval_kd.indexes._folder import FORMAT, check_encoder, read_index_folder, write_index_folder
from retrieval_kd.indexes.sparse_index import as_csr, shaped
from retrieval_kd.types import Run

logger = logging.getLogger(__name__)

# Seismic's defaults. Build: the signature of `SeismicIndex.build_from_dataset` (pyseismic-lsr
# 0.5.4). Search: its Python API has none; these are its own search binary's
# (`perf_inverted_index`: --query-cut 10, --heap-factor 0.7, --n-knn 0) and `search`'s sorted=True.
BUILD_DEFAULTS: dict[str, Any] = {
    "n_postings": 3500,
    "centroid_fraction": 0.1,
    "min_cluster_size": 2,
    "summary_energy": 0.4,
    "max_fraction": 1.5,
    "doc_cut": 15,
    "nknn": 0,
}
SEARCH_DEFAULTS: dict[str, Any] = {"query_cut": 10, "heap_factor": 0.7, "n_knn": 0, "sorted": True}
# Seismic's SeismicIndex numbers terms with u16; a larger vocabulary needs its *LV classes (u32).
U16_TERMS = 65_535
INSTALL = "pip install 'retrieval-kd[seismic]' (PyPI pyseismic-lsr)"


def _seismic() -> Any:
    try:
        import seismic
    except ImportError:
        raise RkdError(f"the seismic index needs Seismic: {INSTALL}") from None
    return seismic


def _check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` over Seismic's defaults, each checked; raises naming the bad one."""
    unknown = sorted(set(options) - set(BUILD_DEFAULTS) - set(SEARCH_DEFAULTS))
    if unknown:
        valid = [*BUILD_DEFAULTS, *SEARCH_DEFAULTS]
        raise RkdError(f"unknown seismic index option(s) {unknown}; choose from {valid}")
    merged = {**BUILD_DEFAULTS, **SEARCH_DEFAULTS, **options}
    ints = {"n_postings": 1, "min_cluster_size": 1, "doc_cut": 1, "nknn": 0, "query_cut": 1, "n_knn": 0}
    for name, low in ints.items():
        value = merged[name]
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise RkdError(f"seismic index option {name} must be an integer >= {low}, got {value!r}")
    # (name, lowest, highest, whether the lowest itself is allowed)
    for name, lo, hi, closed in (
        ("centroid_fraction", 0.0, 1.0, False),
        ("summary_energy", 0.0, 1.0, False),
        ("max_fraction", 0.0, math.inf, False),
        ("heap_factor", 0.0, math.inf, True),
    ):
        value = merged[name]
        bounds = f"in ({lo:g}, {hi:g}]" if hi < math.inf else f"{'>=' if closed else '>'} {lo:g}"
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if not numeric or not (lo <= value if closed else lo < value) or value > hi:
            raise RkdError(f"seismic index option {name} must be a number {bounds}, got {value!r}")
        merged[name] = float(value)
    if not isinstance(merged["sorted"], bool):
        raise RkdError(f"seismic index option sorted must be true or false, got {merged['sorted']!r}")
    if merged["n_knn"] and not merged["nknn"]:
        raise RkdError("seismic index option n_knn needs a k-NN graph: set nknn > 0 as well")
    return merged


@contextlib.contextmanager
def _captured(fd: int) -> Iterator[None]:
    """Sends what native code writes to ``fd`` to the debug log instead.

    Seismic's Rust code prints its configuration and progress to the process's stdout (and a
    progress bar to a terminal's stderr), under rkd's own output; Python's ``sys.stdout`` cannot
    catch that, only the file descriptor can.
    """
    stream = sys.stdout if fd == 1 else sys.stderr
    stream.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), fd)
        try:
            yield
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode(errors="replace").strip()
            if text:
                logger.debug("seismic: %s", text)


class SeismicIndex:
    """An approximate dot-product index over sparse document vectors, searched by Seismic.

    Args:
        student_fingerprint: fingerprint of the student that encoded the documents; queries
            from another student are refused by :meth:`check_encoder`.
        options: Seismic's build options (``n_postings``, ``centroid_fraction``,
            ``min_cluster_size``, ``summary_energy``, ``max_fraction``, ``doc_cut``, ``nknn``)
            and search options (``query_cut``, ``heap_factor``, ``n_knn``, ``sorted``); the
            ones not given take Seismic's defaults (:data:`BUILD_DEFAULTS`, :data:`SEARCH_DEFAULTS`).

    Example:
        >>> index = SeismicIndex()
        >>> index.add(["a", "b", "c"], np.array([[1, 0, 0], [0, 2, 0], [1, 1, 0]], dtype=np.float32))
        >>> index.search(["q"], np.array([[2, 1, 0]], dtype=np.float32), k=5)
        {'q': {'c': 3.0, 'a': 2.0, 'b': 2.0}}
    """

    kind = "seismic"

    def __init__(self, student_fingerprint: str = "", options: Mapping[str, Any] | None = None) -> None:
        merged = _check_options(options or {})
        self.build_options = {k: merged[k] for k in BUILD_DEFAULTS}
        self.search_options = {k: merged[k] for k in SEARCH_DEFAULTS}
        self.dim = 0
        self.path: Path | None = None
        self.doc_ids: list[str] = []
        self._id_set: set[str] = set()
        self._dataset: Any = None  # a SeismicDataset while documents are added
        self._index: Any = None  # the built (or loaded) Seismic index
        self.manifest: dict[str, Any] = {
            "format": FORMAT,
            "kind": self.kind,
            "dim": None,
            "count": 0,
            "nnz": 0,
            "student_fingerprint": student_fingerprint,
            "metric": "dot",
            "build": dict(self.build_options),
            "search": dict(self.search_options),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }

    @classmethod
    def create(cls, student_fingerprint: str, options: Mapping[str, Any]) -> SeismicIndex:
        """An empty index for the encoder ``student_fingerprint``; ``options`` are
        ``[index.options]`` (see the class)."""
        return cls(student_fingerprint, options)

    def __len__(self) -> int:
        return len(self.doc_ids)

    # -- building ------------------------------------------------------------------------------

    def _csr(self, reps: Any, n: int, noun: str) -> Any:
        """``reps`` as CSR, shaped ``[n, dim]`` (the first documents set ``dim``)."""
        return shaped(self, as_csr(reps, noun), n, noun)

    def _variant(self, name: str) -> Any:
        """Seismic's class ``name`` (``SeismicDataset``, ``SeismicIndex``), or its large-vocabulary
        twin (``...LV``) when the vocabulary outgrows u16 term numbers."""
        return getattr(_seismic(), name + ("LV" if self.dim > U16_TERMS else ""))

    def add(self, doc_ids: Sequence[str], reps: Any) -> None:
        """Adds documents (before the first search or save).

        Shapes:
            doc_ids[N], reps csr_matrix (or array) float32[N, vocab].
        """
        doc_ids = [str(d) for d in doc_ids]
        if self._index is not None:
            raise RkdError(
                "a seismic index is static once built (first search or save, or loaded from disk): "
                "add every document before, or rebuild it with `rkd index --kind seismic`"
            )
        matrix = self._csr(reps, len(doc_ids), "document")
        fresh = set(doc_ids) - self._id_set
        if len(fresh) < len(doc_ids):
            dupe = next(d for i, d in enumerate(doc_ids) if d not in fresh or d in doc_ids[:i])
            raise RkdError(f"duplicate document id {dupe!r}: each document may be indexed once")
        if not doc_ids:
            return
        if self._dataset is None:
            self._dataset = self._variant("SeismicDataset")()
        string = _seismic().get_seismic_string()
        # a document is named by its position: doc_ids.json holds the ids, whatever their length
        terms = matrix.indices.astype(string)
        for row in range(matrix.shape[0]):
            lo, hi = matrix.indptr[row], matrix.indptr[row + 1]
            self._dataset.add_document(str(len(self.doc_ids) + row), terms[lo:hi], matrix.data[lo:hi])
        self._id_set.update(doc_ids)
        self.doc_ids.extend(doc_ids)
        self.manifest["count"] = len(self.doc_ids)
        self.manifest["nnz"] = int(self.manifest["nnz"]) + int(matrix.nnz)

    def build(self) -> None:
        """Builds the Seismic index from the documents added (done by the first search or save);
        the documents' dataset is released."""
        if self._index is not None:
            return
        if self._dataset is None:
            raise RkdError("cannot build an empty seismic index: add documents first")
        with _captured(1):
            self._index = self._variant("SeismicIndex").build_from_dataset(
                self._dataset, **self.build_options
            )
        self._dataset = None

    # -- searching -----------------------------------------------------------------------------

    def search(self, query_ids: Sequence[str], query_reps: Any, k: int) -> Run:
        """Up to ``k`` documents per query, as Seismic finds them (one batch search, on Rayon's
        threads), best dot product first, equal scores by doc id.

        Shapes:
            query_ids[Q], query_reps float32[Q, vocab] (CSR or array) → Run; a query sharing no
            term with the corpus gets ``{}``.
        """
        if k < 1:
            raise RkdError(f"k must be at least 1, got {k}")
        query_ids = [str(q) for q in query_ids]
        if not self.doc_ids:  # nothing to build an index of
            return {q: {} for q in query_ids}
        queries = self._csr(query_reps, len(query_ids), "query")
        self.build()
        string = _seismic().get_seismic_string()
        terms = queries.indices.astype(string)
        bounds = list(zip(queries.indptr[:-1], queries.indptr[1:], strict=True))
        with _captured(2):  # its progress bar, on a terminal
            hits = self._index.batch_search(
                np.array([str(i) for i in range(len(query_ids))], dtype=string),
                [terms[lo:hi] for lo, hi in bounds],
                [queries.data[lo:hi] for lo, hi in bounds],
                k=k,
                **self.search_options,
            )
        run: Run = {qid: {} for qid in query_ids}
        for found in hits:
            ranked = sorted((-score, self.doc_ids[int(doc)]) for _, score, doc in found)
            if ranked:
                run[query_ids[int(found[0][0])]] = {doc_id: -score for score, doc_id in ranked}
        return run

    # -- encoder check and persistence ----------------------------------------------------------

    def check_encoder(self, student_fingerprint: str) -> None:
        """Refuses queries encoded by a different student than the documents were."""
        check_encoder(self.manifest, self.path, student_fingerprint)

    def save(self, path: Path) -> None:
        """Writes the folder (building the index first); the manifest goes last."""
        if not self.doc_ids:
            raise RkdError("cannot save an empty seismic index: add documents first")
        self.build()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.manifest["variant"] = type(self._index).__name__
        self.manifest["seismic_version"] = seismic_version()

        def write(f: IO[bytes]) -> None:
            # Seismic saves to a path of its choosing (name + ".index.seismic"): copy that file
            # into the atomic writer's temporary file
            with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as tmp:
                with _captured(1):
                    self._index.save(str(Path(tmp) / "index"))
                with open(Path(tmp) / "index.index.seismic", "rb") as src:
                    shutil.copyfileobj(src, f)

        write_index_folder(path, "index.seismic", write, self.doc_ids, self.manifest)
        self.path = path

    @classmethod
    def load(cls, path: Path, **search_options: Any) -> SeismicIndex:
        """Reads a folder written by :meth:`save`; ``search_options`` override the saved ones."""
        path = Path(path)
        manifest, doc_ids = read_index_folder(path, cls.kind, "index.seismic")
        saved = {**dict(manifest.get("build") or {}), **dict(manifest.get("search") or {})}
        self = cls(str(manifest.get("student_fingerprint", "")), {**saved, **search_options})
        variant = manifest.get("variant")
        if variant not in ("SeismicIndex", "SeismicIndexLV"):
            raise DataError(f"{path / 'manifest.json'}: unknown seismic variant {variant!r}")
        try:
            with _captured(1):
                self._index = getattr(_seismic(), variant).load(str(path / "index.seismic"))
        except (OSError, ValueError, RuntimeError) as e:
            raise DataError(f"{path / 'index.seismic'}: unreadable Seismic index ({e})") from None
        if self._index.len != len(doc_ids) or manifest.get("count") != len(doc_ids):
            raise DataError(
                f"{path}: index.seismic holds {self._index.len} documents, doc_ids.json {len(doc_ids)} "
                f"ids, manifest.json says {manifest.get('count')}: the folder is inconsistent; rebuild it"
            )
        self.dim = int(manifest.get("dim") or 0)
        self.doc_ids = doc_ids
        self._id_set = set(doc_ids)
        self.manifest = {**manifest, "search": dict(self.search_options)}
        self.path = path
        return self


def seismic_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pyseismic-lsr")
    except PackageNotFoundError:
        return "unknown"

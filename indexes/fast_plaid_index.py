"""Token vectors (ColBERT) in a fast-plaid index: LightOn's PLAID engine (what PyLate uses).

fast-plaid (PyPI ``fast-plaid``, Rust and libtorch) builds the same kind of index as
:class:`~retrieval_kd.indexes.plaid_index.PlaidIndex` (k-means centroids over token vectors,
residuals in ``nbits`` bits per dimension, IVF lists, candidate generation by centroids, then
MaxSim over decompressed candidates) with its own CUDA and CPU kernels. Each wheel is built
against one torch release (1.7.0.2110 for torch 2.11, the GPU machines' torch), so it installs
beside some torch versions and not others: this kind is a second engine behind the same Index
contract where it installs, and the faiss-built ``plaid`` kind is the one every machine has.

Documents gather until the first search or save, then ``FastPlaid.create`` builds the index into
a folder of its own (a temporary one until the index is saved). Search runs fast-plaid's
``search`` with its own defaults (``n_ivf_probe`` 8, ``n_full_scores`` 4096); document positions
map back to ids through ``doc_ids.json``.

On disk an index is a folder: ``fast_plaid/`` (fast-plaid's own files), ``fast_plaid.json`` (the
versions that built it), ``doc_ids.json`` and ``manifest.json``, written last; the manifest's
checksums cover ``fast_plaid/`` too.

References:
    Santhanam et al., "PLAID: An Efficient Engine for Late Interaction Retrieval",
    arXiv:2205.09707; https://github.com/lightonai/fast-plaid.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retrieval_kd.artifacts import replacing
from retrieval_kd.errors import DataError, RkdError
from retrieval_kd.indexes._folder import read_index_folder, write_index_folder
from retrieval_kd.indexes.maxsim_index import DocIds, TokenIndex, torch_device
from retrieval_kd.types import Run

# fast-plaid's own defaults: the signatures of FastPlaid.create and FastPlaid.search (1.7.0)
BUILD = {"nbits": 4, "kmeans_niters": 4, "max_points_per_centroid": 256, "seed": 42}
SEARCH = {"n_ivf_probe": 8, "n_full_scores": 4096}
NBITS = (2, 4)
ENGINE_DIR = "fast_plaid"
BUILD_FILE = "fast_plaid.json"
INSTALL = (
    "pip install fast-plaid==1.7.0.<torch version without dots> (one wheel per torch release: "
    "1.7.0.2110 for torch 2.11); or use the `plaid` index kind, which needs only faiss"
)
# files fast-plaid writes beside its data that say nothing about the documents
_NOT_DATA = ("plaid.lock",)


def _fast_plaid() -> Any:
    try:
        from fast_plaid import search
    except (ImportError, OSError) as e:  # OSError: a wheel built against another torch's libraries
        raise RkdError(f"the fast-plaid index needs the fast-plaid engine ({e}): {INSTALL}") from None
    return search


def _check(options: Mapping[str, Any]) -> None:
    for name, value in options.items():
        lowest = 0 if name == "seed" else 1
        if not isinstance(value, int) or isinstance(value, bool) or value < lowest:
            raise RkdError(f"fast-plaid index option {name} must be an integer >= {lowest}, got {value!r}")
    if options.get("nbits", NBITS[-1]) not in NBITS:
        raise RkdError(
            f"fast-plaid index option nbits must be one of {list(NBITS)}, got {options['nbits']!r}"
        )


def engine_bytes(folder: Path) -> int:
    """Bytes of fast-plaid's files in ``folder`` (its lock file aside)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.name not in _NOT_DATA)


class FastPlaidIndex(TokenIndex):
    """ColBERT token vectors searched by fast-plaid (see the module docstring).

    Args:
        student_fingerprint: fingerprint of the student that encoded the documents.
        device: where fast-plaid builds and searches: ``auto`` (CUDA when present), ``cpu``, ``cuda``.
        nbits: residual bits per dimension, 2 or 4.
        kmeans_niters, max_points_per_centroid, seed: fast-plaid's k-means settings.
        n_ivf_probe: centroids probed per query token.
        n_full_scores: candidates scored in full (decompressed MaxSim).
    """

    kind = "fast-plaid"
    OPTIONS = (*BUILD, *SEARCH, "device")

    def __init__(self, student_fingerprint: str = "", device: str = "auto", **options: Any) -> None:
        self.build_options, self.search_options = self.split_options(options, BUILD, SEARCH)
        _check(options)
        super().__init__()
        self.device = torch_device(device)
        self._pending: list[np.ndarray] = []  # float16 token vectors of each document, until the build
        self._folder: Path | None = None  # fast-plaid's own folder
        # removes the temporary folder an unsaved index is built in (at save, or with the object)
        self._cleanup: weakref.finalize[Any, Any] | None = None
        self._engine: Any = None
        self.manifest = self.new_manifest(
            student_fingerprint, build=dict(self.build_options), search=dict(self.search_options)
        )

    @classmethod
    def create(cls, student_fingerprint: str, options: Mapping[str, Any]) -> FastPlaidIndex:
        """An empty index; ``options`` (``[index.options]``) are those of the class."""
        return cls(student_fingerprint, **dict(options))

    def add(self, doc_ids: Sequence[str], reps: Any) -> None:
        """Adds documents (before the first search or save: fast-plaid builds once).

        Shapes:
            doc_ids[N], reps TokenVectors (T, dim) of N documents (or N arrays [tokens, dim]).
        """
        if self._folder is not None:
            raise RkdError("fast-plaid index: documents can only be added before the first search or save")
        tv = self.accept(doc_ids, reps)
        if tv is not None:
            self._pending.extend(np.asarray(v, dtype=np.float16) for v in tv.split())

    def _open(self, folder: Path) -> Any:
        engine = _fast_plaid().FastPlaid(index=str(folder), device=self.device)
        self._folder, self._engine = folder, engine
        return engine

    def build(self) -> None:
        """Builds fast-plaid's index of every document added (once)."""
        import torch

        if self._folder is not None or not self._pending:
            return
        _fast_plaid()  # the clear error before a temporary folder is made
        tmp = Path(tempfile.mkdtemp(prefix="rkd-fast-plaid-"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, tmp, ignore_errors=True)
        t0 = time.perf_counter()
        engine = self._open(tmp / ENGINE_DIR)
        opts = self.build_options
        docs = [torch.from_numpy(v).float() for v in self._pending]
        engine.create(
            docs,
            kmeans_niters=int(opts["kmeans_niters"]),
            max_points_per_centroid=int(opts["max_points_per_centroid"]),
            nbits=int(opts["nbits"]),
            seed=int(opts["seed"]),
            start_from_scratch=0,  # keep no raw copy of the vectors for later updates
        )
        self._pending = []
        self.manifest["build_seconds"] = round(time.perf_counter() - t0, 3)
        self.manifest["bytes"] = engine_bytes(tmp / ENGINE_DIR)
        self.manifest["engine"] = {"fast_plaid": _version(), "torch": torch.__version__}

    def search(self, query_ids: Sequence[str], query_reps: Any, k: int) -> Run:
        """The ``k`` best documents per query by fast-plaid's search.

        Shapes:
            query_ids[Q], query_reps TokenVectors of Q queries → Run with ≤ k docs per query.
        """
        import torch

        query_ids, queries = self.search_inputs(query_ids, query_reps, k)
        if queries is None:
            return {qid: {} for qid in query_ids}
        self.build()
        assert self._engine is not None
        found = self._engine.search(
            [torch.from_numpy(np.ascontiguousarray(q, dtype=np.float32)) for q in queries.split()],
            top_k=min(k, len(self._ids)),
            n_ivf_probe=int(self.search_options["n_ivf_probe"]),
            n_full_scores=int(self.search_options["n_full_scores"]),
            show_progress=False,
        )
        ids = self._ids.ids
        return {
            qid: {ids[int(d)]: float(s) for d, s in hits} for qid, hits in zip(query_ids, found, strict=True)
        }

    def save(self, path: Path) -> None:
        """Writes the folder (building the index first): ``fast_plaid/``, ``fast_plaid.json``,
        ``doc_ids.json``, then the manifest."""
        if not self._ids:
            raise RkdError("cannot save an empty fast-plaid index: add documents first")
        self.build()
        assert self._folder is not None
        path = Path(path)
        if self.path is not None and path.resolve() == self.path.resolve():
            return  # a loaded index is its folder
        with replacing(path, lambda p: (p / "manifest.json").exists()) as folder:
            shutil.rmtree(folder / ENGINE_DIR, ignore_errors=True)  # a killed save's leftovers
            shutil.copytree(self._folder, folder / ENGINE_DIR, ignore=shutil.ignore_patterns(*_NOT_DATA))
            build = {"engine": self.manifest.get("engine"), "build": self.build_options}
            write_index_folder(
                folder,
                BUILD_FILE,
                lambda f: f.write(json.dumps(build, indent=2).encode()),
                self._ids.ids,
                self.manifest,
            )
        self.path = path
        self._open(path / ENGINE_DIR)  # search from the saved copy; the temporary one goes
        if self._cleanup is not None:
            self._cleanup()
            self._cleanup = None

    @classmethod
    def load(cls, path: Path, device: str = "auto", **search_options: Any) -> FastPlaidIndex:
        """Reads a folder written by :meth:`save`; ``search_options`` override the saved ones."""
        path = Path(path)
        manifest, doc_ids = read_index_folder(path, cls.kind, BUILD_FILE)
        if not (path / ENGINE_DIR).is_dir():
            raise DataError(f"{path / ENGINE_DIR}: no such folder; rebuild the index with `rkd index`")
        saved = {**dict(manifest.get("build") or {}), **dict(manifest.get("search") or {})}
        self = cls(str(manifest.get("student_fingerprint", "")), device, **{**saved, **search_options})
        self._ids = DocIds(doc_ids)
        self.dim = int(manifest.get("dim") or 0)
        self.manifest = dict(manifest)
        self.path = path
        self._open(path / ENGINE_DIR)
        return self


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fast-plaid")
    except PackageNotFoundError:
        return "unknown"

"""Dense vectors in a faiss index, inner-product metric.

Any faiss ``index_factory`` string works ("Flat", "IVF256,PQ32", "HNSW32", ...). Search runs on
faiss-gpu where that build is present, on torch top-k for a flat index on a CUDA machine
without it (the lent GPU machines), and on faiss-cpu otherwise; ``backend`` says which ran.

On disk an index is a folder: ``index.faiss`` (always the CPU index), ``doc_ids.json`` and
``manifest.json``, written last, so a folder with a manifest is complete.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval_kd.errors import DataError, RkdError
from retrieval_kd.indexes._folder import FORMAT, check_encoder, read_index_folder, write_index_folder
from retrieval_kd.types import Run

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda")
FACTORY_EXAMPLES = "'Flat', 'HNSW32', 'IVF256,Flat', 'IVF256,PQ32', 'OPQ32,IVF1024,PQ32'"


def _faiss_message(e: Exception) -> str:
    """faiss's complaint without the C++ function signature and source location."""
    return re.sub(r"^Error in .*? at \S+:\d+: ", "", str(e)).strip()


def _cuda_maybe_present() -> bool:
    """Whether importing torch to ask about CUDA could pay off: it already is, or a driver is."""
    return "torch" in sys.modules or os.path.exists("/proc/driver/nvidia/version")


class FaissIndex:
    """A faiss index over dense document vectors, scored by inner product.

    Args:
        dim: vector dimension.
        factory: a faiss ``index_factory`` string.
        student_fingerprint: fingerprint of the student that encoded the documents; queries
            from another student are refused by :meth:`check_encoder`.
        device: "auto" (faiss-gpu, else torch on CUDA for "Flat", else faiss-cpu), "cpu", or
            "cuda" (like "auto" but fails rather than fall back to the CPU).
        nprobe: IVF lists visited per query.
        ef_search: HNSW search breadth; None keeps faiss's default.

    Example:
        >>> index = FaissIndex(dim=2)
        >>> index.add(["a", "b"], np.array([[1, 0], [0, 1]], dtype=np.float32))
        >>> index.search(["q"], np.array([[2, 1]], dtype=np.float32), k=5)
        {'q': {'a': 2.0, 'b': 1.0}}
    """

    kind = "faiss"

    def __init__(
        self,
        dim: int | None = None,
        factory: str = "Flat",
        student_fingerprint: str = "",
        device: str = "auto",
        nprobe: int = 16,
        ef_search: int | None = None,
    ) -> None:
        if dim is not None and dim < 1:
            raise RkdError(f"index dimension must be positive, got {dim}")
        if device not in DEVICES:
            raise RkdError(f"unknown index device {device!r}; choose from {list(DEVICES)}")
        self._index: Any = None
        self.dim = 0
        self.factory = factory
        self.device = device
        self.nprobe = nprobe
        self.ef_search = ef_search
        self.backend = "faiss-cpu"
        self.path: Path | None = None
        self.doc_ids: list[str] = []
        self._id_set: set[str] = set()
        self._pending: list[tuple[list[str], np.ndarray]] = []  # held until the index can train
        self._gpu_cache: Any = None  # faiss-gpu index or torch doc matrix; dropped on add
        self.manifest: dict[str, Any] = {
            "format": FORMAT,
            "kind": self.kind,
            "factory": factory,
            "dim": dim,
            "count": 0,
            "student_fingerprint": student_fingerprint,
            "metric": "ip",
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        if dim is not None:
            self._build(dim)

    OPTIONS = ("factory", "device", "nprobe", "ef_search", "train_size")

    @classmethod
    def create(cls, student_fingerprint: str, options: Mapping[str, Any]) -> FaissIndex:
        """An empty index for the encoder ``student_fingerprint``; its dimension is taken from
        the first vectors added.

        Args:
            options: ``[index.options]``: ``factory`` (a faiss index_factory string, default
                "Flat"), ``device``, ``nprobe``, ``ef_search``, ``train_size`` (vectors held
                back to train an IVF/PQ index, default 65,536).
        """
        unknown = sorted(set(options) - set(cls.OPTIONS))
        if unknown:
            raise RkdError(f"unknown faiss index option(s) {unknown}; choose from {list(cls.OPTIONS)}")
        opts = dict(options)
        train_size = int(opts.pop("train_size", 65536))
        index = cls(None, student_fingerprint=student_fingerprint, **opts)
        index.train_size = train_size
        return index

    train_size = 65536

    def _build(self, dim: int) -> None:
        import faiss

        try:
            self._index = faiss.index_factory(dim, self.factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as e:
            raise RkdError(
                f"bad faiss index factory {self.factory!r}: {_faiss_message(e)}; examples: {FACTORY_EXAMPLES}"
            ) from None
        self.dim = dim
        self.manifest["dim"] = dim

    def __len__(self) -> int:
        self._flush()
        return len(self.doc_ids)

    # -- building ------------------------------------------------------------------------------

    def _check_reps(self, reps: Any, n: int, noun: str) -> np.ndarray:
        arr = np.ascontiguousarray(reps, dtype=np.float32)
        if self._index is None and arr.ndim == 2 and arr.shape[1] > 0:
            self._build(int(arr.shape[1]))
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise RkdError(
                f"{noun} vectors have shape {tuple(arr.shape)}; this index needs [N, {self.dim}] "
                "(dimension mismatch: were they encoded by the same student?)"
            )
        if arr.shape[0] != n:
            raise RkdError(f"{n} {noun} ids but {arr.shape[0]} {noun} vectors")
        return arr

    def min_training_vectors(self) -> int:
        """How many vectors the first :meth:`add` needs to train this index (0: none)."""
        import faiss

        if self._index.is_trained:
            return 0
        needed = 1
        ivf = None
        with contextlib.suppress(RuntimeError):
            ivf = faiss.extract_index_ivf(self._index)
        if ivf is not None:
            needed = max(needed, int(ivf.nlist))
        inner = faiss.downcast_index(ivf if ivf is not None else self._index)
        if isinstance(inner, faiss.IndexPreTransform):
            inner = faiss.downcast_index(inner.index)
        pq = getattr(inner, "pq", None)
        if pq is not None:
            needed = max(needed, int(pq.ksub))
        return needed

    def add(self, doc_ids: Sequence[str], reps: Any) -> None:
        """Adds documents. An index that needs training (IVF, PQ) holds them back until
        ``train_size`` vectors have arrived (or the index is searched or saved), then trains on
        everything held and adds it.

        Shapes:
            doc_ids[N], reps float32[N, dim].
        """
        doc_ids = list(doc_ids)
        arr = self._check_reps(reps, len(doc_ids), "document")
        if not doc_ids:
            return
        seen: set[str] = set()
        for doc_id in doc_ids:
            if doc_id in self._id_set or doc_id in seen:
                raise RkdError(f"duplicate document id {doc_id!r}: each document may be indexed once")
            seen.add(doc_id)
        self._id_set.update(doc_ids)
        if not self._index.is_trained:
            self._pending.append((doc_ids, arr))
            if sum(len(ids) for ids, _ in self._pending) >= self.train_size:
                self._flush()
            return
        self._add_trained(doc_ids, arr)

    def _flush(self) -> None:
        """Trains the index on the held-back vectors and adds them."""
        if not self._pending:
            return
        doc_ids = [d for ids, _ in self._pending for d in ids]
        arr = np.concatenate([a for _, a in self._pending])
        self._pending = []
        needed = self.min_training_vectors()
        if len(arr) < needed:
            self._id_set.difference_update(doc_ids)
            raise RkdError(
                f"faiss index {self.factory!r} needs at least {needed} vectors to train, got "
                f"{len(arr)}: add more documents or choose a smaller factory "
                "(fewer IVF lists, or 'Flat' / 'HNSW32', which need no training)"
            )
        try:
            self._index.train(arr)
        except RuntimeError as e:
            raise RkdError(f"training faiss index {self.factory!r} failed: {_faiss_message(e)}") from None
        self._add_trained(doc_ids, arr)

    def _add_trained(self, doc_ids: list[str], arr: np.ndarray) -> None:
        self._index.add(arr)
        self.doc_ids.extend(doc_ids)
        self._gpu_cache = None
        self.manifest["count"] = len(self.doc_ids)

    # -- searching -----------------------------------------------------------------------------

    def _set_search_params(self, index: Any) -> None:
        import faiss

        with contextlib.suppress(RuntimeError):
            faiss.extract_index_ivf(index).nprobe = self.nprobe
        if self.ef_search is not None:
            inner = faiss.downcast_index(index)
            if hasattr(inner, "hnsw"):
                inner.hnsw.efSearch = self.ef_search

    def _pick_backend(self) -> str:
        import faiss

        if self.device != "cpu":
            if faiss.get_num_gpus() > 0:
                return "faiss-gpu"
            if self.factory.strip() == "Flat" and (self.device == "cuda" or _cuda_maybe_present()):
                try:
                    import torch
                except ImportError:
                    torch = None  # type: ignore[assignment]
                if torch is not None and torch.cuda.is_available():
                    return "torch-cuda"
            if self.device == "cuda":
                raise RkdError(
                    f"device 'cuda' asked for, but there is no faiss-gpu build and no CUDA torch "
                    f"for factory {self.factory!r} (torch top-k serves only 'Flat'); use device 'auto'"
                )
        return "faiss-cpu"

    def search(self, query_ids: Sequence[str], query_reps: Any, k: int) -> Run:
        """The ``k`` best documents per query, by inner product; ``k`` is clipped to the index size.

        Shapes:
            query_ids[Q], query_reps float32[Q, dim] → Run with at most k docs per query.
        """
        self._flush()
        query_ids = list(query_ids)
        if self._index is None:
            return {qid: {} for qid in query_ids}
        queries = self._check_reps(query_reps, len(query_ids), "query")
        if k < 1:
            raise RkdError(f"k must be at least 1, got {k}")
        k = min(k, len(self.doc_ids))
        if k == 0 or not query_ids:
            return {qid: {} for qid in query_ids}
        backend = self._pick_backend()
        if backend == "torch-cuda":
            scores, indices = self._search_torch(queries, k)
        else:
            index = self._faiss_gpu_index() if backend == "faiss-gpu" else self._index
            if index is None:
                backend, index = "faiss-cpu", self._index
            self._set_search_params(index)
            scores, indices = index.search(queries, k)
        self.backend = backend
        run: Run = {}
        for qid, row_scores, row_indices in zip(query_ids, scores, indices, strict=True):
            # faiss pads with -1 when fewer than k documents are reachable (IVF, HNSW).
            run[qid] = {
                self.doc_ids[i]: float(s) for s, i in zip(row_scores, row_indices, strict=True) if i >= 0
            }
        return run

    def _faiss_gpu_index(self) -> Any:
        import faiss

        if self._gpu_cache is None:
            try:
                self._gpu_cache = faiss.index_cpu_to_all_gpus(self._index)
            except RuntimeError:  # not every index type has a GPU version (HNSW has none)
                return None
        return self._gpu_cache

    def _search_torch(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import torch

        from .topk import torch_topk

        docs: torch.Tensor | None = self._gpu_cache
        if docs is None:
            vectors = self._index.reconstruct_n(0, self._index.ntotal)
            docs = torch.from_numpy(np.ascontiguousarray(vectors)).to("cuda")
            self._gpu_cache = docs
        s, i = torch_topk(docs, torch.from_numpy(queries).to("cuda"), k)
        return s.cpu().numpy(), i.cpu().numpy()

    # -- encoder check and persistence ------------------------------------------------------------

    def check_encoder(self, student_fingerprint: str) -> None:
        """Refuses queries encoded by a different student than the documents were."""
        check_encoder(self.manifest, self.path, student_fingerprint)

    def save(self, path: Path) -> None:
        """Writes the folder; the manifest goes last, so its presence means the folder is whole."""
        import faiss

        self._flush()
        if self._index is None:
            raise RkdError("cannot save an empty faiss index: add documents first")
        path = Path(path)
        # faiss writes through a callback into rkd's atomic temp file (write, fsync, rename)
        write_index_folder(
            path,
            "index.faiss",
            lambda f: faiss.write_index(self._index, faiss.PyCallbackIOWriter(f.write)),  # type: ignore[attr-defined]
            self.doc_ids,
            self.manifest,
        )
        self.path = path

    @classmethod
    def load(
        cls, path: Path, device: str = "auto", nprobe: int = 16, ef_search: int | None = None
    ) -> FaissIndex:
        """Reads a folder written by :meth:`save`."""
        import faiss

        path = Path(path)
        manifest, doc_ids = read_index_folder(path, cls.kind, "index.faiss")
        index_file = path / "index.faiss"
        self = cls(
            int(manifest["dim"]),
            factory=str(manifest["factory"]),
            student_fingerprint=str(manifest.get("student_fingerprint", "")),
            device=device,
            nprobe=nprobe,
            ef_search=ef_search,
        )
        try:
            self._index = faiss.read_index(str(index_file))
        except RuntimeError as e:
            raise DataError(f"{index_file}: unreadable faiss index ({_faiss_message(e)})") from None
        if self._index.ntotal != len(doc_ids) or manifest.get("count") != len(doc_ids):
            raise DataError(
                f"{path}: index.faiss holds {self._index.ntotal} vectors, doc_ids.json {len(doc_ids)} ids, "
                f"manifest.json says {manifest.get('count')}: the folder is inconsistent; rebuild it"
            )
        if self._index.d != self.dim:
            raise DataError(f"{path}: index.faiss has dimension {self._index.d}, manifest.json {self.dim}")
        self.doc_ids = [str(d) for d in doc_ids]
        self._id_set = set(self.doc_ids)
        self.manifest = dict(manifest)
        self.path = path
        return self

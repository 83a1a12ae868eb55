"""Token vectors (ColBERT) in a PLAID-style compressed index, built from faiss's parts.

Build (on the first search or save, from every token vector added):

1. **Centroids**: faiss k-means (spherical) over a sample of the token vectors; ``nlist``
   defaults to ColBERTv2's ``16·√T`` for T tokens (as a power of 2), fewer where the memory
   budget has no room for their bytes (:func:`default_nlist`). More centroids leave smaller
   residuals to code: on SciFact's 816k token vectors 16,384 of them, against a quarter as many,
   lifted the dev recall of exact MaxSim's top 10 at ndocs 1024 from 0.961 to 0.977, at about
   the same search cost; k-means takes 6.6× as long (BENCHMARKS.md, "ColBERT").
2. **Codes**: each token's nearest centroid (a faiss flat inner-product search), kept as a
   uint16 (int32 past 65,536 centroids).
3. **Residuals**: token minus centroid, within ``nbits`` (2 or 4) bits per dimension: by
   faiss's product quantiser (``codec = "pq"``, the default: groups of ``8 / nbits``
   dimensions, each coded by as many bits as leave room for the centroid id,
   :class:`ProductCodec`), or by ColBERTv2's bucket codec with cutoffs per dimension
   (``codec = "scalar"``: each value its own ``nbits``, packed ``8 / nbits`` to a byte, the id
   on top; :class:`ResidualCodec`). Product quantisation decodes closer to the original at no
   more bytes (BENCHMARKS.md, "ColBERT"). Fewer than 1,024 token vectors are too few to train
   it, and such an index uses the scalar codec (the manifest says which).
4. **IVF lists**: per centroid, the documents with a token there (rebuilt in memory on load).

Search (per query, Santhanam et al.'s PLAID):

1. Candidate generation: the ``nprobe`` best centroids of each query token; the documents in
   their IVF lists.
2. Centroid interaction with pruning: each candidate's approximate MaxSim from centroid scores
   alone, counting only centroids some query token scores at least ``centroid_threshold``;
   the best ``ndocs`` go on.
3. Centroid interaction without pruning on those; the best ``ndocs / 4`` go on.
4. Their token vectors are decompressed (centroid + decoded residual, renormalised when the
   indexed vectors were unit length) and scored by exact MaxSim
   (:func:`~retrieval_kd.students.maxsim.maxsim`).

Index size: per token the residual codes and a 2-byte centroid id, together ``nbits / 16`` of a
float16 token vector with the product codec (the scalar codec's residuals alone take that);
then the centroids (float16), the codec's table and the document lengths. The manifest records
each.

On disk an index is a folder: ``plaid.npz``, ``doc_ids.json`` and ``manifest.json`` (last).

References:
    Santhanam et al., "ColBERTv2", arXiv:2112.01488; Santhanam et al., "PLAID: An Efficient
    Engine for Late Interaction Retrieval", arXiv:2205.09707.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retrieval_kd.errors import DataError, RkdError
from retrieval_kd.indexes.maxsim_index import (
    DocIds,
    TokenIndex,
    load_arrays,
    padded_queries,
    save_arrays,
    torch_device,
)
from retrieval_kd.indexes.plaid_lists import CentroidLists
from retrieval_kd.indexes.product_codec import ProductCodec
from retrieval_kd.indexes.residual_codec import (
    CODECS,
    NBITS,
    Codec,
    codec_from_arrays,
    train_codec,
    trains_pq,
)
from retrieval_kd.types import Run

logger = logging.getLogger(__name__)

BUILD = {"nbits": 4, "codec": "pq", "nlist": None, "kmeans_iters": 8, "kmeans_sample": 64, "seed": 1234}
# chosen on the SciFact dev carve with a distilled ColBERT student, 4 bits and 16,384 centroids:
# the smallest ndocs whose recall of exact MaxSim's top 10 comes within 0.002 of the codec's own
# ceiling (every document decompressed, 0.978) in two builds, so that the search loses next to
# nothing beyond the codec: 0.9765 at 2.0x exact's speed (768: 0.975-0.976, 2.6x; BENCHMARKS.md,
# "ColBERT"). It clears 0.95 by more than the 0.018 that test fell below dev at the last reading.
SEARCH = {"nprobe": 4, "centroid_threshold": 0.45, "ndocs": 1024}
ARRAYS = ("centroids", "codes", "residuals", "codec", "lengths")
CODEC_ARRAYS = ("codec_1", "codec_dims")  # a product codec of two bit widths


def default_nlist(tokens: int, fits: Callable[[int], bool] | None = None) -> int:
    """ColBERTv2's ``16·√tokens`` centroids, to the nearest power of 2 (ColBERTv2 rounds down) and
    at most ``tokens``, where ``fits(nlist)`` says the index's budget has room for them; otherwise
    halved until it has, down to a quarter of that (``4·√tokens``).

    Example:
        >>> default_nlist(815_632), default_nlist(815_632, lambda n: n <= 5_000)
        (4096, 4096)
        >>> default_nlist(815_632, lambda n: True), default_nlist(815_632, lambda n: n <= 10_000)
        (16384, 8192)
        >>> default_nlist(320, lambda n: True), default_nlist(320)
        (256, 64)
    """
    most = int(min(tokens, 2 ** round(math.log2(max(1.0, 16 * math.sqrt(tokens))))))
    least = int(min(tokens, 2 ** round(math.log2(max(1.0, 4 * math.sqrt(tokens))))))
    nlist = most
    while nlist > least and not (fits is not None and fits(nlist)):
        nlist //= 2
    return max(nlist, least)


def centroids_fit(nlist: int, tokens: int, docs: int, dim: int, nbits: int) -> bool:
    """Whether ``nlist`` float16 centroids, the document lengths and the largest codebook fit in
    the bits per token that a product codec's uniform codes and centroid id leave
    (:meth:`ProductCodec.spare_bits`), so that the whole index stays within ``nbits / 16`` of
    float16 token vectors. The scalar codec leaves none.

    Example (SciFact: 815,632 token vectors of 128 dimensions in 5,183 documents):
        >>> [centroids_fit(n, 815_632, 5_183, 128, 4) for n in (16_384, 32_768)]
        [True, False]
        >>> [centroids_fit(n, 815_632, 5_183, 128, 2) for n in (8_192, 4_096)]
        [False, True]
    """
    room = ProductCodec.spare_bits(dim, nbits, id_bits(nlist)) * tokens / 8
    return other_bytes(nlist, docs, dim, nbits) <= room


def other_bytes(nlist: int, docs: int, dim: int, nbits: int) -> int:
    """What an index stores besides residual codes and centroid ids: float16 centroids, int32
    document lengths, and at most :meth:`ProductCodec.table_bytes_bound` of codebook."""
    return nlist * dim * 2 + 4 * docs + ProductCodec.table_bytes_bound(dim, nbits)


def id_bits(nlist: int) -> int:
    """Bits of a token's centroid id: uint16 up to 65,536 centroids, int32 past them."""
    return 16 if nlist <= 1 << 16 else 32


class PlaidIndex(TokenIndex):
    """A compressed multi-vector index searched PLAID's way (see the module docstring).

    Args:
        student_fingerprint: fingerprint of the student that encoded the documents.
        nbits: bits per dimension, 2 or 4: residual and centroid id (``"pq"``) or residual alone
            (``"scalar"``).
        codec: ``"pq"`` (product quantisation, faiss) or ``"scalar"`` (ColBERTv2's buckets).
        nlist: centroids (None: :func:`default_nlist` of the token count, within the budget).
        kmeans_iters, kmeans_sample, seed: faiss k-means iterations, training points per
            centroid, and seed.
        nprobe: centroids probed per query token.
        centroid_threshold: centroid-pruning threshold of the approximate stage.
        ndocs: documents kept after pruned centroid interaction (a quarter of them are
            decompressed and scored exactly).
        device: where the final MaxSim runs.
    """

    kind = "plaid"
    OPTIONS = (*BUILD, *SEARCH, "device")

    def __init__(self, student_fingerprint: str = "", device: str = "auto", **options: Any) -> None:
        self.build_options, self.search_options = self.split_options(options, BUILD, SEARCH)
        if self.build_options["nbits"] not in NBITS:
            raise RkdError(
                f"plaid index option nbits must be one of {list(NBITS)}, got {self.build_options['nbits']!r}"
            )
        if self.build_options["codec"] not in CODECS:
            raise RkdError(
                f"plaid index option codec must be one of {list(CODECS)}, got {self.build_options['codec']!r}"
            )
        for name in ("nprobe", "ndocs", "kmeans_iters", "kmeans_sample"):
            value = {**self.build_options, **self.search_options}[name]
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise RkdError(f"plaid index option {name} must be an integer >= 1, got {value!r}")
        super().__init__()
        self.device = torch_device(device)
        self._pending: list[np.ndarray] = []  # float32 token vectors until the build
        self._pending_lengths: list[np.ndarray] = []
        self.centroids = np.zeros((0, 0), dtype=np.float32)
        self.codes = np.zeros(0, dtype=np.uint16)
        self.residuals = np.zeros((0, 0), dtype=np.uint8)
        self.codec: Codec | None = None
        self.lengths = np.zeros(0, dtype=np.int32)
        self.normalized = True
        self._lists: CentroidLists | None = None  # derived from codes and lengths
        self.manifest = self.new_manifest(
            student_fingerprint, build=dict(self.build_options), search=dict(self.search_options)
        )

    @classmethod
    def create(cls, student_fingerprint: str, options: Mapping[str, Any]) -> PlaidIndex:
        """An empty index; ``options`` (``[index.options]``) are those of the class."""
        return cls(student_fingerprint, **dict(options))

    # -- building ------------------------------------------------------------------------------

    def add(self, doc_ids: Sequence[str], reps: Any) -> None:
        """Adds documents; the first ones are held until the build (first search or save), later
        ones are encoded with the centroids and codec already trained.

        Shapes:
            doc_ids[N], reps TokenVectors (T, dim) of N documents (or N arrays [tokens, dim]).
        """
        tv = self.accept(doc_ids, reps)
        if tv is None:
            return
        self._pending.append(np.ascontiguousarray(tv.vectors, dtype=np.float32))
        self._pending_lengths.append(tv.lengths.astype(np.int32))

    def check_dim(self, dim: int) -> None:
        per_byte = 8 // int(self.build_options["nbits"])
        if dim % per_byte:
            raise RkdError(
                f"plaid index: {self.build_options['nbits']}-bit residuals need a dimension "
                f"divisible by {per_byte}, got {dim}"
            )

    def build(self) -> None:
        """Trains the centroids and codec on everything added so far (once) and encodes it."""
        import faiss

        if not self._pending:
            return
        x = np.concatenate(self._pending)
        lengths = np.concatenate(self._pending_lengths)
        self._pending, self._pending_lengths = [], []
        t0 = time.perf_counter()
        if self.codec is None:
            opts = self.build_options
            nbits = int(opts["nbits"])
            pq = trains_pq(str(opts["codec"]), len(x))  # the codec trained below

            def fits(n: int) -> bool:
                return pq and centroids_fit(n, len(x), len(lengths), self.dim, nbits)

            nlist = int(opts["nlist"] or default_nlist(len(x), fits))
            if not 1 <= nlist <= len(x):
                raise RkdError(f"plaid index: nlist={nlist} needs between 1 and {len(x)} (the token count)")
            self.normalized = bool(np.allclose(np.linalg.norm(x[:4096], axis=1), 1.0, atol=1e-3))
            kmeans = faiss.Kmeans(
                self.dim,
                nlist,
                niter=int(opts["kmeans_iters"]),
                seed=int(opts["seed"]),
                spherical=self.normalized,
                max_points_per_centroid=int(opts["kmeans_sample"]),
                min_points_per_centroid=1,
                verbose=False,
            )
            kmeans.train(x)
            # float16 centroids: half the bytes, and residuals are taken against these values
            self.centroids = np.ascontiguousarray(kmeans.centroids, dtype=np.float16)
            codes = self._assign(x)
            sample = np.random.default_rng(int(opts["seed"])).permutation(len(x))[: 1 << 16]
            other = other_bytes(nlist, len(lengths), self.dim, nbits)
            self.codec = train_codec(
                str(opts["codec"]),
                x[sample] - self.centroids[codes[sample]].astype(np.float32),
                nbits,
                int(opts["seed"]),
                id_bits=id_bits(nlist),  # the centroid id's type below
                overhead_bits=8 * other / len(x),
            )
            self.manifest["build"].update(nlist=nlist, codec=self.codec.kind)
            self.manifest["codec_groups"] = self.codec.layout  # groups per code width (not an option)
        else:
            codes = self._assign(x)
        residuals = self.codec.encode(x - self.centroids[codes].astype(np.float32))
        code_type = np.uint16 if id_bits(len(self.centroids)) == 16 else np.int32
        self.codes = np.concatenate([self.codes.astype(code_type), codes.astype(code_type)])
        self.residuals = np.concatenate([self.residuals.reshape(-1, residuals.shape[1]), residuals])
        self.lengths = np.concatenate([self.lengths, lengths])
        self._lists = None
        self.manifest["build_seconds"] = round(
            float(self.manifest.get("build_seconds", 0)) + time.perf_counter() - t0, 3
        )
        self.manifest["bytes"] = self.memory()

    def _assign(self, x: np.ndarray) -> np.ndarray:
        import faiss

        flat = faiss.IndexFlatIP(self.dim) if self.normalized else faiss.IndexFlatL2(self.dim)
        flat.add(self.centroids.astype(np.float32))
        _, nearest = flat.search(x, 1)
        out: np.ndarray = nearest[:, 0].astype(np.int64)
        return out

    def memory(self) -> dict[str, int]:
        """Bytes per part, their total, and fp16 token vectors of the same corpus for comparison."""
        assert self.codec is not None
        parts = {
            "residuals": int(self.residuals.nbytes),
            "codes": int(self.codes.nbytes),
            "centroids": int(self.centroids.nbytes),
            "codec": self.codec.nbytes,
            "lengths": int(self.lengths.nbytes),
        }
        return {**parts, "total": sum(parts.values()), "fp16_vectors": int(len(self.codes) * self.dim * 2)}

    def lists(self) -> CentroidLists:
        """The IVF lists and token layout of the tokens encoded so far (derived, cached)."""
        if self._lists is None:
            self._lists = CentroidLists(self.codes, self.lengths, len(self.centroids))
        return self._lists

    def decompress(self, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The approximate token vectors of documents ``docs`` (positions).

        Shapes: docs (n,) → vectors float32 (T_docs, dim), lengths (n,).
        """
        assert self.codec is not None
        rows = self.lists().token_rows(docs)
        x = self.centroids[self.codes[rows].astype(np.int64)].astype(np.float32)
        x += self.codec.decode(self.residuals[rows])
        if self.normalized:
            x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return x, self.lengths[docs]

    # -- searching -----------------------------------------------------------------------------

    def _candidates(self, q: np.ndarray, k: int) -> np.ndarray:
        """PLAID stages 1–3 for one query: the document positions to decompress.

        Shapes: q (Lq, dim) → (≤ max(k, ndocs / 4),).
        """
        opts = self.search_options
        lists = self.lists()
        scores = q @ self.centroids.astype(np.float32).T  # (Lq, nlist); float16 kept, upcast per query
        cand = lists.probe(scores, int(opts["nprobe"]))
        ndocs = int(opts["ndocs"])
        if len(cand) > ndocs:
            total = lists.pruned_interaction(scores, float(opts["centroid_threshold"]))[cand]
            cand = cand[np.argpartition(-total, ndocs - 1)[:ndocs]]
        keep = max(k, ndocs // 4)
        if len(cand) > keep:
            approx = lists.interaction(scores, cand)
            cand = cand[np.argpartition(-approx, keep - 1)[:keep]]
        return np.sort(cand)

    def search(self, query_ids: Sequence[str], query_reps: Any, k: int) -> Run:
        """The ``k`` best documents per query, by MaxSim over decompressed candidates.

        Shapes:
            query_ids[Q], query_reps TokenVectors of Q queries → Run with ≤ k docs per query.
        """
        import torch

        from retrieval_kd.students.maxsim import maxsim, pad

        self.build()
        query_ids, queries = self.search_inputs(query_ids, query_reps, k)
        if queries is None:
            return {qid: {} for qid in query_ids}
        run: Run = {}
        with torch.inference_mode():
            q_all, q_mask_all = padded_queries(queries, self.device)
            for row, (qid, q_np) in enumerate(zip(query_ids, queries.split(), strict=True)):
                cand = self._candidates(np.ascontiguousarray(q_np, dtype=np.float32), k)
                vectors, lengths = self.decompress(cand)
                docs, mask = pad(torch.from_numpy(vectors).to(self.device), lengths)
                scores = maxsim(q_all[row : row + 1], docs, q_mask_all[row : row + 1], mask)[0]
                top, idx = torch.topk(scores, min(k, len(cand)))
                run[qid] = {
                    self._ids.ids[int(cand[i])]: float(s)
                    for s, i in zip(top.tolist(), idx.tolist(), strict=True)
                }
        return run

    # -- encoder check and persistence ----------------------------------------------------------

    def save(self, path: Path) -> None:
        """Writes the folder (building the index first); the manifest goes last."""
        if not self._ids:
            raise RkdError("cannot save an empty plaid index: add documents first")
        self.build()
        assert self.codec is not None
        path = Path(path)
        self.manifest["normalized"] = self.normalized
        arrays: dict[str, np.ndarray] = {
            "centroids": self.centroids,
            "codes": self.codes,
            "residuals": self.residuals,
            "lengths": self.lengths,
            **self.codec.arrays(),
        }
        save_arrays(path, "plaid.npz", arrays, self._ids.ids, self.manifest)
        self.path = path

    @classmethod
    def load(cls, path: Path, device: str = "auto", **search_options: Any) -> PlaidIndex:
        """Reads a folder written by :meth:`save`; ``search_options`` override the saved ones."""
        path = Path(path)
        manifest, doc_ids, arrays = load_arrays(path, cls.kind, "plaid.npz", ARRAYS, CODEC_ARRAYS)
        saved = {**dict(manifest.get("build") or {}), **dict(manifest.get("search") or {})}
        self = cls(str(manifest.get("student_fingerprint", "")), device, **{**saved, **search_options})
        self.centroids, self.codes, self.residuals = arrays["centroids"], arrays["codes"], arrays["residuals"]
        self.codec, self.lengths = codec_from_arrays(arrays), arrays["lengths"].astype(np.int32)
        self.build_options["codec"] = self.codec.kind  # indexes saved before "pq": scalar
        tokens = int(self.lengths.sum())
        if len(self.lengths) != len(doc_ids) or not tokens == len(self.codes) == len(self.residuals):
            raise DataError(
                f"{path}: plaid.npz holds {len(self.lengths)} documents of {int(self.lengths.sum())} tokens, "
                f"doc_ids.json {len(doc_ids)} ids: the folder is inconsistent; rebuild it"
            )
        self.dim = int(self.centroids.shape[1])
        self.normalized = bool(manifest.get("normalized", True))
        self._ids = DocIds(doc_ids)
        self.manifest = dict(manifest)
        self.path = path
        return self

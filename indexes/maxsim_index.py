"""Token vectors (ColBERT) searched exactly by MaxSim: the reference every approximate
multi-vector index is measured against, and the index for small corpora.

Documents are held as one ``(T, dim)`` matrix of token vectors and their token counts; at the
first search they are sorted by length into padded blocks of about ``block_tokens`` token slots
(so padding wastes little) and scored block by block with
:func:`~retrieval_kd.students.maxsim.maxsim`, on the GPU when torch sees one. Vectors are stored
in float16 by default (``dtype = "float32"`` keeps them whole) and scored in float32.

On disk an index is a folder: ``tokens.npz`` (``vectors``, ``lengths``), ``doc_ids.json`` and
``manifest.json``, written last, so a folder with a manifest is complete.
"""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval_kd.errors import DataError, RkdError
from retrieval_kd.indexes._folder import FORMAT, check_encoder, read_index_folder, write_index_folder
from retrieval_kd.types import Run

if TYPE_CHECKING:
    import torch

    from retrieval_kd.students.maxsim import TokenVectors

DTYPES = ("float16", "float32")
DEVICES = ("auto", "cpu", "cuda")


def torch_device(device: str) -> str:
    """``auto``: CUDA when torch sees it, else the CPU."""
    import torch

    if device not in DEVICES:
        raise RkdError(f"unknown index device {device!r}; choose from {list(DEVICES)}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def token_vectors(reps: Any, dim: int, n: int, noun: str) -> TokenVectors:
    """``reps`` as TokenVectors of ``n`` texts and width ``dim`` (0: any), or a clear error."""
    from retrieval_kd.students.maxsim import TokenVectors

    tv = TokenVectors.coerce(reps, noun)
    if len(tv) != n:
        raise RkdError(f"{n} {noun} ids but {len(tv)} {noun} token-vector runs")
    if dim and len(tv) and tv.dim != dim:
        raise RkdError(
            f"{noun} token vectors have dimension {tv.dim}; this index needs {dim} "
            "(dimension mismatch: were they encoded by the same student?)"
        )
    return tv


def padded_queries(tv: TokenVectors, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Shapes: TokenVectors of Q queries → (Q, Lq, dim) float32 and its mask (Q, Lq)."""
    import torch

    from retrieval_kd.students.maxsim import pad

    return pad(torch.from_numpy(np.ascontiguousarray(tv.vectors, dtype=np.float32)).to(device), tv.lengths)


class DocIds:
    """Document ids in order, each at most once."""

    def __init__(self, ids: Sequence[str] = ()) -> None:
        self.ids: list[str] = [str(d) for d in ids]
        self._set = set(self.ids)

    def extend(self, doc_ids: Sequence[str]) -> None:
        seen: set[str] = set()
        for doc_id in doc_ids:
            if doc_id in self._set or doc_id in seen:
                raise RkdError(f"duplicate document id {doc_id!r}: each document may be indexed once")
            seen.add(doc_id)
        self._set.update(seen)
        self.ids.extend(doc_ids)

    def __len__(self) -> int:
        return len(self.ids)


def save_arrays(
    path: Path, data_file: str, arrays: Mapping[str, np.ndarray], doc_ids: list[str], manifest: dict[str, Any]
) -> None:
    """An index folder whose data is one uncompressed ``.npz`` of named arrays."""
    savez: Any = np.savez  # numpy's stub takes the first keyword for allow_pickle
    write_index_folder(path, data_file, lambda f: savez(f, **arrays), doc_ids, manifest)


def load_arrays(
    path: Path, kind: str, data_file: str, names: Sequence[str], optional: Sequence[str] = ()
) -> tuple[dict[str, Any], list[str], dict[str, np.ndarray]]:
    """The manifest, doc ids and the named arrays of a folder written by :func:`save_arrays`
    (and those of ``optional`` it holds).

    Raises:
        DataError: naming the file when it is unreadable or lacks an array.
    """
    manifest, doc_ids = read_index_folder(path, kind, data_file)
    try:
        with np.load(io.BytesIO((path / data_file).read_bytes()), allow_pickle=False) as npz:
            missing = [n for n in names if n not in npz.files]
            if missing:
                raise DataError(f"{path / data_file}: no array(s) {missing}; rebuild the index")
            arrays = {n: npz[n] for n in [*names, *optional] if n in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"{path / data_file}: unreadable ({e})") from None
    if manifest.get("count") != len(doc_ids):
        raise DataError(
            f"{path}: doc_ids.json holds {len(doc_ids)} ids, manifest.json says {manifest.get('count')}: "
            "the folder is inconsistent; rebuild it"
        )
    return manifest, doc_ids, arrays


def merge_top_k(
    best: tuple[torch.Tensor, torch.Tensor] | None, scores: torch.Tensor, positions: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The running ``k`` best (scores, doc positions) per query after one more block.

    Shapes: scores (Q, Nb), positions (Nb,) → (Q, ≤k) twice, best first.
    """
    import torch

    pos = positions.unsqueeze(0).expand_as(scores)
    if best is not None:
        scores, pos = torch.cat([best[0], scores], dim=1), torch.cat([best[1], pos], dim=1)
    top, idx = torch.topk(scores, min(k, scores.shape[1]), dim=1)
    return top, torch.gather(pos, 1, idx)


class TokenIndex:
    """What the multi-vector indexes share: document ids, the vector width, the manifest's
    counts and the encoder check. Subclasses set ``kind`` and ``manifest``."""

    kind: str
    OPTIONS: tuple[str, ...]
    manifest: dict[str, Any]

    def __init__(self) -> None:
        self.dim = 0
        self.path: Path | None = None
        self._ids = DocIds()

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def doc_ids(self) -> list[str]:
        return self._ids.ids

    def new_manifest(self, student_fingerprint: str, **fields: Any) -> dict[str, Any]:
        """An empty index's manifest, with the kind's own ``fields``."""
        return {
            "format": FORMAT,
            "kind": self.kind,
            "dim": None,
            "count": 0,
            "tokens": 0,
            "student_fingerprint": student_fingerprint,
            "metric": "maxsim",
            **fields,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }

    def check_dim(self, dim: int) -> None:
        """Refuses a vector width this kind cannot hold (checked on the first documents)."""

    def accept(self, doc_ids: Sequence[str], reps: Any) -> TokenVectors | None:
        """Checks a batch of documents and records their ids and counts; None when empty.

        Shapes: doc_ids[N], reps TokenVectors (T, dim) of N documents (or N arrays) → the same.
        """
        ids = [str(d) for d in doc_ids]
        tv = token_vectors(reps, self.dim, len(ids), "document")
        if not ids:
            return None
        if not self.dim:
            self.check_dim(tv.dim)
        self._ids.extend(ids)
        self.dim = self.manifest["dim"] = tv.dim
        self.manifest["count"] = len(self._ids)
        self.manifest["tokens"] = int(self.manifest["tokens"]) + len(tv.vectors)
        return tv

    def split_options(
        self, options: Mapping[str, Any], build: Mapping[str, Any], search: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """``options`` over the kind's ``build`` and ``search`` defaults; raises naming the
        unknown ones and the valid choices (``OPTIONS``)."""
        unknown = sorted(set(options) - set(build) - set(search))
        if unknown:
            raise RkdError(f"unknown {self.kind} index option(s) {unknown}; choose from {list(self.OPTIONS)}")
        return (
            {**build, **{k: v for k, v in options.items() if k in build}},
            {**search, **{k: v for k, v in options.items() if k in search}},
        )

    def search_inputs(
        self, query_ids: Sequence[str], query_reps: Any, k: int
    ) -> tuple[list[str], TokenVectors | None]:
        """A search's query ids (as strings) and checked token vectors; None when the index is
        empty, where every query finds nothing.

        Raises:
            RkdError: a count or width mismatch, or ``k`` below 1.
        """
        query_ids = [str(q) for q in query_ids]
        if not self._ids:
            return query_ids, None
        tv = token_vectors(query_reps, self.dim, len(query_ids), "query")
        if k < 1:
            raise RkdError(f"k must be at least 1, got {k}")
        return query_ids, tv

    def check_encoder(self, student_fingerprint: str) -> None:
        """Refuses queries encoded by a different student than the documents were."""
        check_encoder(self.manifest, self.path, student_fingerprint)


class MaxSimIndex(TokenIndex):
    """Exact MaxSim search over every token vector of every document.

    Args:
        student_fingerprint: fingerprint of the student that encoded the documents.
        dtype: storage of the token vectors, ``float16`` (default) or ``float32``.
        device: where search runs: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        block_tokens: padded token slots per scored block (bounds memory).
        query_batch: queries scored together.

    Example:
        >>> index = MaxSimIndex(dtype="float32", device="cpu")
        >>> index.add(["a", "b"], [np.array([[1.0, 0.0]]), np.array([[0.0, 1.0], [1.0, 1.0]])])
        >>> index.search(["q"], [np.array([[1.0, 0.0], [0.0, 1.0]])], k=2)
        {'q': {'b': 2.0, 'a': 1.0}}
    """

    kind = "maxsim"
    OPTIONS = ("dtype", "device", "block_tokens", "query_batch")

    def __init__(
        self,
        student_fingerprint: str = "",
        dtype: str = "float16",
        device: str = "auto",
        block_tokens: int = 1 << 16,
        query_batch: int = 16,
    ) -> None:
        if dtype not in DTYPES:
            raise RkdError(f"unknown maxsim index dtype {dtype!r}; choose from {list(DTYPES)}")
        for name, value in (("block_tokens", block_tokens), ("query_batch", query_batch)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise RkdError(f"maxsim index option {name} must be an integer >= 1, got {value!r}")
        super().__init__()
        self.device = torch_device(device)
        self.dtype = dtype
        self.block_tokens = block_tokens
        self.query_batch = query_batch
        self._parts: list[tuple[np.ndarray, np.ndarray]] = []
        self._vectors = np.zeros((0, 0), dtype=dtype)
        self._lengths = np.zeros(0, dtype=np.int32)
        self._blocks: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None
        self.manifest = self.new_manifest(student_fingerprint, dtype=dtype)

    @classmethod
    def create(cls, student_fingerprint: str, options: Mapping[str, Any]) -> MaxSimIndex:
        """An empty index for the encoder ``student_fingerprint``.

        Args:
            options: ``[index.options]``: ``dtype`` (float16), ``device`` (auto),
                ``block_tokens`` (65,536), ``query_batch`` (16).
        """
        unknown = sorted(set(options) - set(cls.OPTIONS))
        if unknown:
            raise RkdError(f"unknown maxsim index option(s) {unknown}; choose from {list(cls.OPTIONS)}")
        return cls(student_fingerprint, **dict(options))

    def add(self, doc_ids: Sequence[str], reps: Any) -> None:
        """Adds documents.

        Shapes:
            doc_ids[N], reps TokenVectors (T, dim) of N documents (or N arrays [tokens, dim]).
        """
        tv = self.accept(doc_ids, reps)
        if tv is None:
            return
        self._parts.append((tv.vectors.astype(self.dtype), tv.lengths.astype(np.int32)))
        self._blocks = None

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Every token vector and each document's token count. Shapes: → (T, dim), int32 (N,)."""
        if self._parts:
            self._vectors = np.concatenate(
                [self._vectors.reshape(-1, self.dim), *(v for v, _ in self._parts)]
            )
            self._lengths = np.concatenate([self._lengths, *(n for _, n in self._parts)])
            self._parts = []
        return self._vectors, self._lengths

    def _build_blocks(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Documents sorted by length, in padded float32 blocks of about ``block_tokens`` slots:
        (padded (Nb, Lb, dim), mask (Nb, Lb), doc positions (Nb,))."""
        import torch

        from retrieval_kd.students.maxsim import pad

        vectors, lengths = self.arrays()
        offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
        order = np.argsort(lengths, kind="stable")
        blocks = []
        start = 0
        while start < len(order):
            width = int(lengths[order[start]])
            stop = start + 1
            # grow while the block, padded to its longest (last) document, fits the budget
            while stop < len(order) and (stop + 1 - start) * int(lengths[order[stop]]) <= self.block_tokens:
                stop += 1
            docs = order[start:stop]
            width = int(lengths[docs[-1]])
            rows = np.concatenate([np.arange(offsets[d], offsets[d + 1]) for d in docs])
            flat = torch.from_numpy(np.ascontiguousarray(vectors[rows], dtype=np.float32)).to(self.device)
            padded, mask = pad(flat, lengths[docs])
            assert padded.shape[1] == width
            blocks.append((padded, mask, torch.from_numpy(docs.astype(np.int64)).to(self.device)))
            start = stop
        return blocks

    def search(self, query_ids: Sequence[str], query_reps: Any, k: int) -> Run:
        """The ``k`` best documents per query by exact MaxSim.

        Shapes:
            query_ids[Q], query_reps TokenVectors of Q queries → Run with min(k, N) docs per query.
        """
        import torch

        from retrieval_kd.students.maxsim import maxsim

        query_ids, queries = self.search_inputs(query_ids, query_reps, k)
        if queries is None:
            return {qid: {} for qid in query_ids}
        if self._blocks is None:
            self._blocks = self._build_blocks()
        run: Run = {}
        with torch.inference_mode():
            q_all, q_mask_all = padded_queries(queries, self.device)
            for start in range(0, len(query_ids), self.query_batch):
                q = q_all[start : start + self.query_batch]
                q_mask = q_mask_all[start : start + self.query_batch]
                best = None
                for padded, mask, positions in self._blocks:
                    best = merge_top_k(best, maxsim(q, padded, q_mask, mask), positions, k)
                assert best is not None
                for row, qid in enumerate(query_ids[start : start + self.query_batch]):
                    scores, docs = best[0][row].tolist(), best[1][row].tolist()
                    run[qid] = {self._ids.ids[d]: float(s) for s, d in zip(scores, docs, strict=True)}
        return run

    def save(self, path: Path) -> None:
        """Writes the folder; the manifest goes last, so its presence means the folder is whole."""
        if not self._ids:
            raise RkdError("cannot save an empty maxsim index: add documents first")
        vectors, lengths = self.arrays()
        path = Path(path)
        self.manifest["bytes"] = int(vectors.nbytes + lengths.nbytes)
        save_arrays(
            path, "tokens.npz", {"vectors": vectors, "lengths": lengths}, self._ids.ids, self.manifest
        )
        self.path = path

    @classmethod
    def load(cls, path: Path, **options: Any) -> MaxSimIndex:
        """Reads a folder written by :meth:`save`; ``options`` as for :meth:`create` (not dtype)."""
        path = Path(path)
        manifest, doc_ids, arrays = load_arrays(path, cls.kind, "tokens.npz", ("vectors", "lengths"))
        vectors, lengths = arrays["vectors"], arrays["lengths"]
        if len(lengths) != len(doc_ids) or int(lengths.sum()) != len(vectors) or vectors.ndim != 2:
            raise DataError(
                f"{path}: tokens.npz holds {len(lengths)} documents of {int(lengths.sum())} tokens and "
                f"{len(vectors)} vectors, doc_ids.json {len(doc_ids)} ids: the folder is inconsistent; "
                "rebuild it"
            )
        self = cls(str(manifest.get("student_fingerprint", "")), dtype=str(vectors.dtype), **options)
        self.dim = int(vectors.shape[1])
        self._vectors, self._lengths = vectors, lengths.astype(np.int32)
        self._ids = DocIds(doc_ids)
        self.manifest = dict(manifest)
        self.path = path
        return self

"""Product-quantised residuals of :class:`~retrieval_kd.indexes.plaid_index.PlaidIndex`
(``codec = "pq"``, the default): faiss's ``ProductQuantizer`` within ``nbits`` bits per dimension,
the centroid id included, with wider codes for the highest-variance groups where the index's
budget has room, and a decoder that unpacks whole bytes at a time.

References:
    Jégou et al., "Product quantization for nearest neighbor search", TPAMI 2011.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from retrieval_kd.errors import DataError, RkdError

PQ_MIN_ROWS = 1024  # faiss's k-means needs a point per centroid (up to 256 per group); 4 at the least


class ProductCodec:
    """Residuals product-quantised by faiss (``faiss.ProductQuantizer``) within a budget of
    ``nbits`` bits per dimension, the token's centroid id included: the ``dim`` dimensions split
    into ``M = dim · nbits / 8`` groups of ``8 / nbits``, each group coded by the nearest of the
    ``2^b`` centroids k-means found for it, with ``b = min(8, (dim · nbits - id_bits) // M)`` bits
    (7 at 128 dimensions and a 16-bit id, 2 or 4 bits per dimension), the codes bit-packed by
    faiss. Residual codes and centroid id together then fit in ``dim · nbits / 8`` bytes, an eighth
    (2 bits) or a quarter (4 bits) of a float16 vector, where :class:`ResidualCodec` spends all of
    it on the residual and the id comes on top. Coding groups of dimensions jointly uses their
    correlation, which scalar buckets cannot: on a distilled ColBERT student's SciFact vectors
    8-bit groups at the same residual bytes lifted the recall of exact MaxSim's top 10 with every
    document decompressed from 0.867 to 0.922 at 2 bits and from 0.951 to 0.974 at 4
    (BENCHMARKS.md, "ColBERT").

    **Wider groups where the budget has room.** ``b`` rounds down, so a few bits per token are
    left over (48 at 128 dimensions and 4 bits). Given what else the index stores per token
    (``overhead_bits``: centroids, lengths and this codebook, spread over the corpus),
    :meth:`train` spends them on ``b + 1``-bit codes for the groups of the highest-variance
    dimensions, as many as keep codes, id and overhead within ``dim · nbits`` bits per token.
    faiss's quantiser takes one bit width, so such a codec holds two: one over the wide groups'
    dimensions, one over the rest (``dims`` lists them in that order), each token's codes the
    two byte strings side by side. On SciFact (816k token vectors, 4 bits) 32 of the 64 groups
    get 8 bits: the whole index stays under a quarter of fp16 and the decoding error falls
    (BENCHMARKS.md, "ColBERT").

    Args:
        centroids: the codebook, (M, 2^b, dim / M); or one per bit width, wide groups first.
        dims: the dimensions the groups cover, in group order (default: ``0 .. dim-1``).

    Example:
        >>> k = np.arange(128, dtype=np.float32)
        >>> book = np.stack([np.stack([k, -k], axis=1)] * 2)  # centroid k of a group: (k, -k)
        >>> codec = ProductCodec(book)  # dim 4 in 2 groups of 2, 7 bits each: 14 bits, 2 bytes
        >>> codes = codec.encode(np.array([[1.1, -0.9, 2.2, -1.9]], dtype=np.float32))
        >>> codes.tolist(), codec.decode(codes).tolist()  # 1 | 2 << 7 = 257, little-endian
        ([[1, 1]], [[1.0, -1.0, 2.0, -2.0]])
    """

    kind = "pq"  # the PlaidIndex ``codec`` option that names it

    def __init__(self, centroids: np.ndarray | Sequence[np.ndarray], dims: np.ndarray | None = None) -> None:
        books = [centroids] if isinstance(centroids, np.ndarray) else list(centroids)
        self.books = [np.ascontiguousarray(b, dtype=np.float32) for b in books]
        shapes = [b.shape if b.ndim == 3 else (0, 0, 0) for b in self.books]
        widths = [1 << b for b in range(1, 9)]
        if not shapes or any(m < 1 or dsub != shapes[0][2] or ksub not in widths for m, ksub, dsub in shapes):
            raise DataError(
                "a product codec needs (groups, 2^bits, dimensions per group) codebooks with 1 to 8 bits "
                f"and equal group widths, got shapes {[list(b.shape) for b in self.books]}"
            )
        self.dim = sum(m * dsub for m, _, dsub in shapes)
        self.dims = np.arange(self.dim) if dims is None else np.asarray(dims, dtype=np.int64)
        if sorted(self.dims.tolist()) != list(range(self.dim)):
            raise DataError(f"a product codec's dims must list each of its {self.dim} dimensions once")
        self._pqs: list[Any] = []
        self._flat: np.ndarray | None = None

    @classmethod
    def train(
        cls,
        residuals: np.ndarray,
        nbits: int,
        seed: int,
        id_bits: int = 16,
        overhead_bits: float | None = None,
    ) -> ProductCodec:
        """faiss k-means per group over (at most 2^16 rows of) ``residuals``, at least
        :data:`PQ_MIN_ROWS` of them, sized so that the codes and an ``id_bits`` centroid id fit in
        ``nbits`` bits per dimension; with ``overhead_bits`` (the index's other bytes per token,
        in bits) the highest-variance groups get a bit more while everything fits.
        Shapes: residuals (T, dim)."""
        import faiss

        values = np.ascontiguousarray(residuals, dtype=np.float32)
        t, dim = values.shape
        groups = dim * nbits // 8
        bits = ProductCodec.uniform_bits(dim, nbits, id_bits)
        if dim % (8 // nbits) or bits < 1 or t < PQ_MIN_ROWS:
            raise RkdError(
                f"plaid index: a {nbits}-bit product codec needs a dimension divisible by {8 // nbits} "
                f"with room for a {id_bits}-bit centroid id, and at least {PQ_MIN_ROWS} token vectors; "
                f"got dimension {dim} and {t}"
            )
        if t > 1 << 16:
            values = values[np.random.default_rng(seed).choice(t, 1 << 16, replace=False)]
        budget = dim * nbits - id_bits - (overhead_bits or 0.0)
        wide = 0 if overhead_bits is None else wide_groups(groups, bits, budget)
        width = 8 // nbits
        by_variance = np.argsort(-values.var(axis=0), kind="stable")
        dims = np.concatenate([np.sort(by_variance[: wide * width]), np.sort(by_variance[wide * width :])])
        books, pqs = [], []
        for part, b in ((dims[: wide * width], bits + 1), (dims[wide * width :], bits)):
            if len(part) == 0:
                continue
            pq = faiss.ProductQuantizer(len(part), len(part) // width, b)
            pq.cp.seed = seed
            pq.verbose = False
            pq.train(np.ascontiguousarray(values[:, part]))
            books.append(faiss.vector_to_array(pq.centroids).reshape(pq.M, pq.ksub, pq.dsub))
            pqs.append(pq)
        codec = cls(books, dims)
        codec._pqs = pqs
        return codec

    @staticmethod
    def uniform_bits(dim: int, nbits: int, id_bits: int = 16) -> int:
        """Each group's code width when all are equal: ``min(8, (dim · nbits - id_bits) // M)``."""
        return min(8, (dim * nbits - id_bits) // max(dim * nbits // 8, 1))

    @staticmethod
    def spare_bits(dim: int, nbits: int, id_bits: int = 16) -> int:
        """Bits per token the uniform codes and the centroid id leave of ``dim · nbits``: what the
        index's other bytes (centroids, lengths, codebook) and then wider groups can use.

        Example:
            >>> [ProductCodec.spare_bits(dim, nbits) for dim, nbits in ((128, 4), (128, 2), (32, 4))]
            [48, 16, 0]
        """
        groups = dim * nbits // 8
        return dim * nbits - id_bits - groups * ProductCodec.uniform_bits(dim, nbits, id_bits)

    @staticmethod
    def table_bytes_bound(dim: int, nbits: int) -> int:
        """The most bytes :meth:`arrays` can take for ``dim`` dimensions at ``nbits``: every group
        at 8 bits (float32 centroids), plus ``codec_dims``; what an index counts against its
        budget before the codec is trained."""
        groups = dim * nbits // 8
        return groups * 256 * (8 // nbits) * 4 + 2 * dim

    @property
    def bits(self) -> int:
        """The widest groups' code width."""
        return max(int(b.shape[1]).bit_length() - 1 for b in self.books)

    @property
    def table(self) -> np.ndarray:
        """The codebook of a codec with one bit width, as saved. Shapes: → float32 (M, 2^b, dim / M)."""
        if len(self.books) != 1 or not self._natural:
            raise RkdError("a product codec of two bit widths has no single table: use arrays()")
        return self.books[0]

    def arrays(self) -> dict[str, np.ndarray]:
        """What an index saves: ``codec`` (the codebook), and for two bit widths ``codec_1`` (the
        narrower groups' codebook) and ``codec_dims``."""
        if len(self.books) == 1 and self._natural:
            return {"codec": self.books[0]}
        out = {"codec": self.books[0], "codec_dims": self.dims.astype(np.int16)}
        out.update({f"codec_{i}": b for i, b in enumerate(self.books) if i})
        return out

    def quantizers(self) -> list[Any]:
        """faiss's ``ProductQuantizer`` per codebook (rebuilt once for a loaded codec)."""
        import faiss

        if not self._pqs:
            for book in self.books:
                m, ksub, dsub = book.shape
                pq = faiss.ProductQuantizer(m * dsub, m, ksub.bit_length() - 1)
                faiss.copy_array_to_vector(book.ravel(), pq.centroids)
                self._pqs.append(pq)
        return self._pqs

    def _parts(self) -> list[tuple[Any, np.ndarray]]:
        parts, start = [], 0
        for pq in self.quantizers():
            parts.append((pq, self.dims[start : start + pq.d]))
            start += pq.d
        return parts

    def encode(self, residuals: np.ndarray) -> np.ndarray:
        """Shapes: (T, dim) → uint8 (T, code bytes), each group's centroid, bit-packed."""
        if residuals.shape[1] != self.dim:
            raise RkdError(
                f"plaid index: the residual codec has {self.dim} dimensions, got {residuals.shape[1]}"
            )
        x = np.asarray(residuals, dtype=np.float32)
        codes = [pq.compute_codes(np.ascontiguousarray(x[:, dims])) for pq, dims in self._parts()]
        return codes[0] if len(codes) == 1 else np.ascontiguousarray(np.concatenate(codes, axis=1))

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Shapes: uint8 (T, code bytes) → float32 (T, dim).

        faiss's decoder reads codes narrower than a byte one at a time (1.4 µs a token on
        SciFact, the largest cost of a PLAID search at ndocs 1536). Here eight ``b``-bit codes are
        ``b`` whole bytes, read as one little-endian integer and split by shifts; every group's
        centroid is then one gather from the stacked codebooks. Same values as faiss's
        ``decode`` (tested); a width whose groups are not a multiple of 8 goes through faiss."""
        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        if any(len(b) % 8 and b.shape[1] < 256 for b in self.books):
            return self._decode_faiss(codes)
        index, start, offset = [], 0, 0
        for book in self.books:
            m, ksub, _ = book.shape
            bits = ksub.bit_length() - 1
            size = m * bits // 8
            rows = unpack_codes(codes[:, start : start + size], m, bits) + (offset + ksub * np.arange(m))
            index.append(rows)
            start, offset = start + size, offset + m * ksub
        # one gather of whole centroids (as opaque items: 15x faster than numpy's row indexing
        # here), groups in the order of self.dims, then put back in dimension order
        items = np.take(self._flat_books(), np.concatenate(index, axis=1))
        out: np.ndarray = items.view(np.float32).reshape(len(codes), self.dim)
        if not self._natural:
            out = np.take(out, self._inverse, axis=1)
        return out

    def _decode_faiss(self, codes: np.ndarray) -> np.ndarray:
        out = np.empty((len(codes), self.dim), dtype=np.float32)
        start = 0
        for pq, dims in self._parts():
            out[:, dims] = pq.decode(np.ascontiguousarray(codes[:, start : start + pq.code_size]))
            start += pq.code_size
        return out

    def _flat_books(self) -> np.ndarray:
        """Every group's centroids, stacked, each one item of ``dim / M`` float32s.
        Shapes: → void (sum of M · 2^b,)."""
        if self._flat is None:
            stacked = np.ascontiguousarray(np.concatenate([b.reshape(-1, b.shape[2]) for b in self.books]))
            self._flat = stacked.view(np.dtype((np.void, 4 * stacked.shape[1])))[:, 0]
        return self._flat

    @property
    def _natural(self) -> bool:
        return bool(np.array_equal(self.dims, np.arange(self.dim)))

    @property
    def _inverse(self) -> np.ndarray:
        return np.argsort(self.dims)

    @property
    def layout(self) -> dict[str, int]:
        """Groups per code width, e.g. ``{"8": 32, "7": 32}`` (recorded in an index's manifest)."""
        return {str(b.shape[1].bit_length() - 1): int(b.shape[0]) for b in self.books}

    @property
    def nbytes(self) -> int:
        """Bytes of what :meth:`arrays` saves."""
        return sum(int(a.nbytes) for a in self.arrays().values())


def unpack_codes(packed: np.ndarray, m: int, bits: int) -> np.ndarray:
    """``m`` codes of ``bits`` bits each, bit-packed least significant first (faiss's layout),
    as integers; ``m`` must be a multiple of 8 below 8 bits (eight codes fill ``bits`` bytes).

    Example:
        >>> byte0 = 0b1_0000011  # code 0 = 3 (bits 0-6), code 1 starts with bit 7
        >>> unpack_codes(np.array([[byte0, 0b10, 0, 0, 0, 0, 0b1000_0000]], dtype=np.uint8), 8, 7).tolist()
        [[3, 5, 0, 0, 0, 0, 0, 64]]

    Shapes: uint8 (T, m · bits / 8) → int64 (T, m).
    """
    if bits == 8:
        return packed[:, :m].astype(np.int64)
    t = len(packed)
    chunks = np.zeros((t, m // 8, 8), dtype=np.uint8)
    chunks[:, :, :bits] = packed[:, : m * bits // 8].reshape(t, m // 8, bits)
    words = chunks.view("<u8")  # (T, m / 8, 1): eight codes each
    shifts = (bits * np.arange(8)).astype(np.uint64)
    out: np.ndarray = ((words >> shifts) & np.uint64((1 << bits) - 1)).reshape(t, m).astype(np.int64)
    return out


def wide_groups(groups: int, bits: int, budget: float) -> int:
    """How many of ``groups`` groups can take ``bits + 1``-bit codes (the rest ``bits``) with both
    byte strings within ``budget`` bits; 0 when even uniform codes exceed it, none above 8 bits.

    Example:
        >>> wide_groups(64, 7, 512 - 16 - 12)  # SciFact at 4 bits: 32 + 28 bytes = 480 bits
        32
        >>> wide_groups(64, 7, 512 - 16), wide_groups(64, 8, 512), wide_groups(64, 7, 400)
        (48, 0, 0)
    """
    if bits >= 8:
        return 0

    def code_bits(n: int) -> int:  # both byte strings, whole bytes each
        return 8 * (math.ceil(n * (bits + 1) / 8) + math.ceil((groups - n) * bits / 8))

    return max([n for n in range(groups + 1) if code_bits(n) <= budget], default=0)

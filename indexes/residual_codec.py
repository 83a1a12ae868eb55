"""Residual codecs of :class:`~retrieval_kd.indexes.plaid_index.PlaidIndex`: token-vector
residuals at 2 or 4 bits per dimension, either ColBERTv2's scalar buckets
(:class:`ResidualCodec`) or faiss's product quantiser within the same bytes, centroid id included
(:class:`~retrieval_kd.indexes.product_codec.ProductCodec`, the default, in its own module).
:func:`codec_from_arrays` reads either back from what an index saved.

References:
    Santhanam et al., "ColBERTv2", arXiv:2112.01488; Jégou et al., "Product quantization for
    nearest neighbor search", TPAMI 2011.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from retrieval_kd.errors import DataError, RkdError
from retrieval_kd.indexes.product_codec import PQ_MIN_ROWS, ProductCodec

NBITS = (2, 4)
CODECS = ("pq", "scalar")


class ResidualCodec:
    """ColBERTv2's residual codec, per dimension: every residual value falls in one of
    ``2^nbits`` buckets cut at the quantiles of its dimension's training residuals and decodes to
    its bucket's median; ``8 / nbits`` codes pack into a byte. ColBERTv2 cuts all dimensions at
    the same quantiles; one set per dimension costs ``dim · (2^(nbits+1) - 1)`` floats and, on a
    distilled ColBERT student's SciFact vectors at 4 bits, cut the decoding error by 6% and lifted
    the recall of exact MaxSim's top 10 from 0.941 to 0.951 with every document decompressed
    (BENCHMARKS.md, "ColBERT"). A codec saved with one set for all dimensions (1-D ``cutoffs``)
    still loads and decodes as before.

    faiss has no 2-bit scalar quantiser, so this codec is written here (one quantile pass). It is
    the ``codec = "scalar"`` option; :class:`ProductCodec` at the same bytes decodes better.

    Args:
        cutoffs: the ``2^nbits - 1`` bucket boundaries, ascending: (2^nbits - 1,) for every
            dimension alike, or (dim, 2^nbits - 1), a row per dimension.
        weights: the ``2^nbits`` values a code decodes to, (2^nbits,) or (dim, 2^nbits).

    Example:
        >>> codec = ResidualCodec(np.array([-1.0, 0.0, 1.0]), np.array([-2.0, -0.5, 0.5, 2.0]))
        >>> codes = codec.encode(np.array([[-3.0, -0.1, 0.1, 5.0]]))
        >>> codes.tolist(), codec.decode(codes).tolist()  # codes 0, 1, 2, 3 → 0b11100100
        ([[228]], [[-2.0, -0.5, 0.5, 2.0]])
    """

    kind = "scalar"  # the PlaidIndex ``codec`` option that names it

    def __init__(self, cutoffs: np.ndarray, weights: np.ndarray) -> None:
        # one row shared by every dimension (the 1-D layout) or a row per dimension
        self.cutoffs = np.atleast_2d(np.asarray(cutoffs, dtype=np.float32))
        self.weights = np.atleast_2d(np.asarray(weights, dtype=np.float32))
        self.nbits = int(math.log2(self.weights.shape[-1]))
        if (
            self.nbits not in NBITS
            or self.cutoffs.shape[-1] != self.weights.shape[-1] - 1
            or self.cutoffs.shape[0] != self.weights.shape[0]
            or self.cutoffs.ndim > 2
        ):
            raise DataError(
                f"a residual codec needs 2^nbits weights (nbits in {list(NBITS)}) and one cutoff "
                "fewer, for all dimensions or a row each"
            )

    @classmethod
    def train(cls, residuals: np.ndarray, nbits: int, seed: int) -> ResidualCodec:
        """Cutoffs and weights per dimension from the quantiles of (at most 2^16 rows of)
        ``residuals``. Shapes: residuals (T, dim)."""
        values = np.asarray(residuals, dtype=np.float32)
        if len(values) > 1 << 16:
            values = values[np.random.default_rng(seed).choice(len(values), 1 << 16, replace=False)]
        buckets = 1 << nbits
        cutoffs = np.quantile(values, np.arange(1, buckets) / buckets, axis=0).T  # (dim, buckets - 1)
        weights = np.quantile(values, (np.arange(buckets) + 0.5) / buckets, axis=0).T  # (dim, buckets)
        return cls(cutoffs, weights)

    @property
    def table(self) -> np.ndarray:
        """Cutoffs then weights, as saved. Shapes: → float32 (dim, 2^(nbits+1) - 1), or
        (1, 2^(nbits+1) - 1) for a codec with one set for all dimensions."""
        return np.concatenate([self.cutoffs, self.weights], axis=-1)

    @property
    def layout(self) -> dict[str, int]:
        """Groups per code width: every dimension its own ``nbits``-bit code (0 groups counted
        for an old table shared by all dimensions, which does not know its dimension)."""
        return {str(self.nbits): len(self.cutoffs) if len(self.cutoffs) > 1 else 0}

    def arrays(self) -> dict[str, np.ndarray]:
        """What an index saves: ``codec``, the table."""
        return {"codec": self.table}

    @property
    def nbytes(self) -> int:
        return int(self.table.nbytes)

    @classmethod
    def from_table(cls, table: np.ndarray) -> ResidualCodec:
        n = (table.shape[-1] - 1) // 2
        return cls(table[..., :n], table[..., n:])

    def encode(self, residuals: np.ndarray) -> np.ndarray:
        """Shapes: (T, dim) → uint8 (T, dim · nbits / 8); dim must be a multiple of 8 / nbits."""
        per_byte = 8 // self.nbits
        t, dim = residuals.shape
        if dim % per_byte:
            raise RkdError(
                f"plaid index: {self.nbits}-bit residuals need a dimension divisible by {per_byte}, got {dim}"
            )
        if len(self.cutoffs) not in (1, dim):
            raise RkdError(f"plaid index: the residual codec has {len(self.cutoffs)} dimensions, got {dim}")
        codes = np.zeros((t, dim), dtype=np.uint8)
        for j in range(self.cutoffs.shape[1]):  # a value on a cutoff goes below it
            codes += residuals > self.cutoffs[:, j]
        grouped = codes.reshape(t, dim // per_byte, per_byte)
        shifts = (np.arange(per_byte, dtype=np.uint8) * self.nbits).astype(np.uint8)
        packed: np.ndarray = np.bitwise_or.reduce(grouped << shifts, axis=2).astype(np.uint8)
        return packed

    def decode(self, packed: np.ndarray) -> np.ndarray:
        """Shapes: uint8 (T, dim · nbits / 8) → float32 (T, dim)."""
        per_byte = 8 // self.nbits
        shifts = (np.arange(per_byte, dtype=np.uint8) * self.nbits).astype(np.uint8)
        codes = (packed[:, :, None] >> shifts) & ((1 << self.nbits) - 1)  # (T, bytes, per_byte)
        codes = codes.reshape(len(packed), -1)
        rows = np.arange(codes.shape[1]) % len(self.weights)  # every dimension row 0 when shared
        out: np.ndarray = self.weights[rows, codes]
        return out


Codec = ResidualCodec | ProductCodec


def codec_from_table(table: np.ndarray) -> Codec:
    """The codec a saved table holds: a 3-D codebook is a :class:`ProductCodec`, a 1-D or 2-D
    cutoff table a :class:`ResidualCodec`."""
    return ProductCodec(table) if table.ndim == 3 else ResidualCodec.from_table(table)


def codec_from_arrays(arrays: Mapping[str, np.ndarray]) -> Codec:
    """The codec an index saved as ``codec`` (plus ``codec_1`` and ``codec_dims`` for a product
    codec of two bit widths)."""
    if "codec_dims" in arrays:
        return ProductCodec([arrays["codec"], arrays["codec_1"]], arrays["codec_dims"])
    return codec_from_table(arrays["codec"])


def trains_pq(kind: str, rows: int) -> bool:
    """Whether :func:`train_codec` of ``kind`` over ``rows`` residuals gives a product codec."""
    return kind == "pq" and rows >= PQ_MIN_ROWS


def train_codec(
    kind: str,
    residuals: np.ndarray,
    nbits: int,
    seed: int,
    id_bits: int = 16,
    overhead_bits: float | None = None,
) -> Codec:
    """A codec of ``kind`` (one of :data:`CODECS`) trained on ``residuals``; ``"pq"`` falls back
    to the scalar codec below :data:`PQ_MIN_ROWS` rows (too few for its centroids per group)."""
    if trains_pq(kind, len(residuals)):
        return ProductCodec.train(residuals, nbits, seed, id_bits, overhead_bits)
    return ResidualCodec.train(residuals, nbits, seed)

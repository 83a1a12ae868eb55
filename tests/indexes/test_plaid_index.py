"""The PLAID-style compressed index: residual codec round trip, memory by the byte, agreement
with exact MaxSim, exhaustive settings equal to MaxSim over the decompressed vectors, and a
round trip through its folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retrieval_kd.errors import RkdError
from retrieval_kd.indexes import load_index
from retrieval_kd.indexes.maxsim_index import MaxSimIndex
from retrieval_kd.indexes.plaid_index import PlaidIndex, default_nlist
from retrieval_kd.indexes.plaid_lists import CentroidLists
from retrieval_kd.indexes.product_codec import PQ_MIN_ROWS, ProductCodec, wide_groups
from retrieval_kd.indexes.residual_codec import ResidualCodec, codec_from_arrays, codec_from_table
from retrieval_kd.students.maxsim import TokenVectors

EXHAUSTIVE = {"nprobe": 10_000, "centroid_threshold": -1e9, "ndocs": 10_000}


def clustered(n_docs: int, dim: int, seed: int) -> tuple[TokenVectors, TokenVectors]:
    """Unit token vectors around 40 topics (each document mixes 2), and 12 queries of 8 tokens
    drawn near one document's tokens: the shape of ColBERT vectors, small."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((40, dim))

    def unit(x: np.ndarray) -> np.ndarray:
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    docs = [
        unit(topics[rng.choice(40, 2)][rng.integers(0, 2, m)] + 0.4 * rng.standard_normal((m, dim)))
        for m in rng.integers(5, 30, n_docs)
    ]
    queries = [
        unit(docs[i][rng.integers(0, len(docs[i]), 8)] + 0.3 * rng.standard_normal((8, dim)))
        for i in rng.choice(n_docs, 12)
    ]
    return TokenVectors.from_list(docs), TokenVectors.from_list(queries)


def test_codec_round_trip_error_is_bounded() -> None:
    # by hand: 2 bits, buckets cut at -1, 0, 1 decoding to -2, -.5, .5, 2; four codes a byte
    codec = ResidualCodec(np.array([-1.0, 0.0, 1.0]), np.array([-2.0, -0.5, 0.5, 2.0]))
    x = np.array([[-5.0, -0.5, 0.3, 1.5, 0.0, 9.0, -1.0, 0.9]])
    packed = codec.encode(x)  # codes 0 1 2 3 | 1 3 0 2 (a value on a cutoff goes below it)
    assert packed.tolist() == [[0b11100100, 0b10001101]]
    assert codec.decode(packed).tolist() == [[-2.0, -0.5, 0.5, 2.0, -0.5, 2.0, -2.0, 0.5]]
    # saved and read back as one table (the layout of indexes saved before per-dimension codecs)
    again = ResidualCodec.from_table(codec.table)
    assert again.decode(packed).tolist() == codec.decode(packed).tolist() and again.table.shape == (1, 7)
    # Gaussian residuals, each dimension its own spread: every value lands in its dimension's
    # bucket, so the error is at most the bucket's width; equal-mass buckets stay above the optimal
    # (Lloyd–Max) quantiser's relative error for a Gaussian (0.1175 at 2 bits, 0.0095 at 4) and
    # near it (measured 0.148 and 0.024)
    rng = np.random.default_rng(0)
    r = (np.linspace(0.1, 0.4, 16) * rng.standard_normal((4_000, 16))).astype(np.float32)
    errors = {}
    for nbits in (2, 4):
        c = ResidualCodec.train(r, nbits=nbits, seed=0)
        assert c.encode(r).shape == (4_000, 16 * nbits // 8) and c.table.shape == (16, 2 ** (nbits + 1) - 1)
        decoded = ResidualCodec.from_table(c.table).decode(c.encode(r))
        for j in range(16):
            edges = np.concatenate([[r[:, j].min()], c.cutoffs[j], [r[:, j].max()]])
            bucket = np.searchsorted(c.cutoffs[j], r[:, j])
            assert np.all(np.abs(decoded[:, j] - r[:, j]) <= (edges[bucket + 1] - edges[bucket]) + 1e-6)
        errors[nbits] = float(np.mean((decoded - r) ** 2 / np.mean(r**2, axis=0)))
    assert 0.1175 < errors[2] < 0.16 and 0.0095 < errors[4] < 0.03 and errors[2] > 5 * errors[4], errors
    # one set of cutoffs for every dimension cuts the narrow ones too coarsely (measured 0.198)
    pooled = ResidualCodec.train(r.reshape(-1, 1), nbits=2, seed=0)
    pooled_error = float(np.mean((pooled.decode(pooled.encode(r)) - r) ** 2 / np.mean(r**2, axis=0)))
    assert pooled_error > 1.25 * errors[2]
    with pytest.raises(RkdError, match=r"2-bit residuals need a dimension divisible by 4, got 6"):
        ResidualCodec.train(r, nbits=2, seed=0).encode(r[:, :6])


def test_product_codec_fits_the_centroid_id_in_the_budget_and_beats_scalar_buckets() -> None:
    # residuals whose dimensions come in correlated pairs (as a centroid's residuals do): the
    # product quantiser codes each group jointly, the buckets each value alone
    rng = np.random.default_rng(0)
    base = rng.standard_normal((6_000, 32)).astype(np.float32)
    r = np.repeat(base, 2, axis=1) + 0.3 * rng.standard_normal((6_000, 64)).astype(np.float32)
    for nbits in (2, 4):
        pq = ProductCodec.train(r, nbits=nbits, seed=0)
        scalar = ResidualCodec.train(r, nbits=nbits, seed=0)
        codes = pq.encode(r)
        groups = 64 * nbits // 8  # of 8 / nbits dimensions; 7 bits each leave 16 for the id
        assert pq.bits == min(8, (64 * nbits - 16) // groups) == 7
        assert pq.table.shape == (groups, 128, 8 // nbits)
        assert codes.shape == (6_000, -(-groups * 7 // 8))  # bit-packed: 14 bytes at 2, 28 at 4
        assert codes.shape[1] + 2 <= 64 * nbits // 8 == scalar.encode(r).shape[1]
        pq_error = float(np.mean((pq.decode(codes) - r) ** 2))
        scalar_error = float(np.mean((scalar.decode(scalar.encode(r)) - r) ** 2))
        assert pq_error < 0.8 * scalar_error, (nbits, pq_error, scalar_error)
        # unpacked (7 bits a group, least significant first), each code is its group's nearest
        # centroid and decodes to it
        bits = np.unpackbits(codes[:300], axis=1, bitorder="little")[:, : groups * 7].reshape(300, groups, 7)
        index = (bits.astype(np.int64) << np.arange(7)).sum(-1)  # (300, groups)
        sub = r[:300].reshape(300, groups, 8 // nbits)
        distances = ((sub[:, :, None, :] - pq.table[None]) ** 2).sum(-1)  # (300, groups, 128)
        np.testing.assert_allclose(
            distances.min(-1), np.take_along_axis(distances, index[..., None], 2)[..., 0]
        )
        expected = pq.table[np.arange(groups), index].reshape(300, 64)
        np.testing.assert_array_equal(pq.decode(codes[:300]), expected)
        # read back from its table (as a loaded index does): the same class, codes and values
        again = codec_from_table(pq.table)
        assert isinstance(again, ProductCodec) and np.array_equal(again.encode(r), codes)
        assert np.array_equal(again.decode(codes), pq.decode(codes))
    assert isinstance(codec_from_table(scalar.table), ResidualCodec)
    with pytest.raises(RkdError, match=r"and at least 1024 token vectors; got dimension 64 and 1000"):
        ProductCodec.train(r[:1000], nbits=2, seed=0)


def test_wide_groups_take_the_bits_left_over_on_the_highest_variance_dimensions() -> None:
    # 64 dims at 4 bits: 32 groups of 2 at 7 bits leave 256 - 16 - 224 = 16 bits; with 6 bits of
    # overhead per token, 8 groups can take 8 bits (8 + 21 bytes = 232 bits <= 234)
    assert wide_groups(32, 7, 256 - 16 - 6) == 8 and wide_groups(32, 7, 256 - 16 - 17) == 0
    rng = np.random.default_rng(1)
    spread = np.linspace(0.5, 1.5, 64)[rng.permutation(64)]  # every dimension its own variance
    r = (rng.standard_normal((10_000, 64)) * spread).astype(np.float32)
    uniform = ProductCodec.train(r, nbits=4, seed=0)
    wide = ProductCodec.train(r, nbits=4, seed=0, overhead_bits=6.0)
    assert len(uniform.books) == 1 and [b.shape for b in wide.books] == [(8, 256, 2), (24, 128, 2)]
    # the 8-bit groups cover the 16 dimensions of largest variance, in dimension order
    assert wide.dims[:16].tolist() == sorted(np.argsort(-spread)[:16].tolist())
    codes = wide.encode(r)
    assert codes.shape == (10_000, 8 + 21) and 8 * codes.shape[1] + 16 + 6 <= 256
    # decoding is a gather from each codebook: 8 bytes of 8-bit codes, then 7-bit codes packed
    hi = wide.books[0][np.arange(8), codes[:, :8].astype(np.int64)].reshape(-1, 16)
    np.testing.assert_array_equal(wide.decode(codes)[:, wide.dims[:16]], hi)
    bits = np.unpackbits(codes[:, 8:], axis=1, bitorder="little")[:, : 24 * 7].reshape(-1, 24, 7)
    lo = wide.books[1][np.arange(24), (bits.astype(np.int64) << np.arange(7)).sum(-1)].reshape(-1, 48)
    np.testing.assert_array_equal(wide.decode(codes)[:, wide.dims[16:]], lo)
    # the shift-and-gather decoder gives what faiss's own decoder gives
    for codec in (uniform, wide):
        np.testing.assert_array_equal(
            codec.decode(codec.encode(r[:2_000])), codec._decode_faiss(codec.encode(r[:2_000]))
        )
    error = {c: float(np.mean((c.decode(c.encode(r)) - r) ** 2)) for c in (uniform, wide)}
    assert error[wide] < 0.9 * error[uniform], error
    # saved as arrays and read back: the same codes and values
    again = codec_from_arrays(wide.arrays())
    assert sorted(wide.arrays()) == ["codec", "codec_1", "codec_dims"]
    assert np.array_equal(again.encode(r[:500]), codes[:500])
    assert np.array_equal(again.decode(codes), wide.decode(codes))
    assert sorted(uniform.arrays()) == ["codec"] and codec_from_arrays(uniform.arrays()).bits == 7


def test_default_centroids_are_colbertv2s_where_the_budget_has_room(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((300_000, 128)).astype(np.float32)
    docs = TokenVectors(x / np.linalg.norm(x, axis=1, keepdims=True), np.full(2_000, 150))
    index = PlaidIndex(nbits=4, kmeans_iters=1, kmeans_sample=4, device="cpu")  # a quick k-means
    index.add([f"d{i}" for i in range(2_000)], docs)
    index.build()
    # 16·√300,000 = 8,764 → 8,192 centroids; a quarter, 4·√T = 2,191 → 2,048. The 4-bit codes
    # (64 groups × 7 bits) and the 16-bit id leave 48 bits a token: 1,800,000 bytes, less 8,000 of
    # lengths and a codebook of at most 64 · 256 · 2 · 4 + 256 = 131,328: 1,660,672 bytes of room.
    # 8,192 float16 centroids of 128 dims take 2,097,152: too many; 4,096 take 1,048,576.
    assert index.manifest["build"]["nlist"] == len(index.centroids) == 4_096
    mem = index.memory()
    assert mem["total"] <= mem["fp16_vectors"] / 4 < mem["total"] + 4_096 * 128 * 2
    # the room left goes to wider codes: 48 bits a token less the other bytes' 31.7
    # (1,187,904 · 8 / 300,000) buy 16 groups of 8 bits
    assert index.manifest["codec_groups"] == {"8": 16, "7": 48}
    assert mem["codec"] == index.codec.nbytes and mem["residuals"] == 300_000 * (16 + 42)
    index.save(tmp_path / "idx")
    again = load_index(tmp_path / "idx")
    assert isinstance(again, PlaidIndex) and isinstance(again.codec, ProductCodec)
    assert np.array_equal(again.codec.dims, index.codec.dims)
    rows = np.arange(50)
    np.testing.assert_array_equal(again.decompress(rows)[0], index.decompress(rows)[0])
    assert default_nlist(300_000) == 2_048  # no budget said: the quarter, as for the scalar codec


@pytest.mark.parametrize(("nbits", "codec"), [(2, "pq"), (4, "pq"), (2, "scalar"), (4, "scalar")])
def test_memory_by_the_byte(nbits: int, codec: str) -> None:
    docs, _ = clustered(200, 32, 1)
    index = PlaidIndex(nbits=nbits, codec=codec, device="cpu")
    index.add([f"d{i}" for i in range(200)], docs)
    index.build()
    t, nlist = len(docs.vectors), default_nlist(len(docs.vectors))
    assert t >= PQ_MIN_ROWS
    if codec == "pq":
        # 32 dims in groups of 8 / nbits, each coded by the bits 2 bytes of id leave:
        # 2 bits: 8 groups × 6 bits = 6 bytes; 4 bits: 16 × 7 = 14 bytes; float32 codebook
        groups, bits = 32 * nbits // 8, {2: 6, 4: 7}[nbits]
        residual, table = groups * bits // 8, groups * 2**bits * (8 // nbits) * 4
    else:  # nbits per dimension, packed; float32 cutoffs and bucket weights per dimension
        residual, table = 32 * nbits // 8, 32 * (2 ** (nbits + 1) - 1) * 4
    mem = index.memory()
    assert mem == {
        "residuals": t * residual,
        "codes": 2 * t,  # one uint16 centroid id per token
        "centroids": nlist * 32 * 2,  # float16
        "codec": table,
        "lengths": 200 * 4,
        "total": t * (residual + 2) + nlist * 64 + table + 800,
        "fp16_vectors": t * 64,
    }
    # per token: an eighth (2 bits) or a quarter (4 bits) of float16 for residual and id together
    # (product codec), for the residual alone (scalar)
    per_token = (mem["residuals"] + mem["codes"]) if codec == "pq" else mem["residuals"]
    assert per_token / mem["fp16_vectors"] == nbits / 16
    assert index.manifest["bytes"] == mem
    assert index.manifest["build"]["nlist"] == nlist and index.manifest["build"]["codec"] == codec
    # too few tokens to spread a wider codebook over: every group at the uniform width
    groups = {("pq", 2): {"6": 8}, ("pq", 4): {"7": 16}}.get((codec, nbits), {str(nbits): 32})
    assert index.manifest["codec_groups"] == groups


def test_too_few_tokens_for_product_quantisation_use_the_scalar_codec() -> None:
    docs, _ = clustered(20, 32, 1)
    assert len(docs.vectors) < PQ_MIN_ROWS
    index = PlaidIndex(nbits=4, device="cpu")
    index.add([f"d{i}" for i in range(20)], docs)
    index.build()
    assert isinstance(index.codec, ResidualCodec) and index.manifest["build"]["codec"] == "scalar"


def test_centroid_stages_against_a_loop_over_documents() -> None:
    rng = np.random.default_rng(4)
    lengths = rng.integers(1, 9, 40)
    codes = rng.integers(0, 16, int(lengths.sum()))
    scores = rng.uniform(-1, 1, (5, 16)).astype(np.float32)  # 5 query tokens × 16 centroids
    lists = CentroidLists(codes, lengths, nlist=16)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    own = [codes[starts[d] : starts[d + 1]] for d in range(40)]  # each document's centroids
    # stage 1: the documents holding one of each query token's 2 best centroids
    best2 = {int(c) for row in scores for c in np.argsort(-row)[:2]}
    assert lists.probe(scores, 2).tolist() == [d for d in range(40) if best2 & set(own[d].tolist())]
    # stage 3: per query token the best of the document's centroids, summed
    expected = [scores[:, own[d]].max(axis=1).sum() for d in range(40)]
    np.testing.assert_allclose(lists.interaction(scores, np.arange(40)), expected, rtol=1e-6)
    # stage 2: the same with centroids no query token scores 0.5 counted as 0 (so is a lower max)
    kept = scores.max(axis=0) >= 0.5
    pruned = [
        np.maximum(np.where(kept[own[d]], scores[:, own[d]], 0).max(axis=1), 0).sum() for d in range(40)
    ]
    np.testing.assert_allclose(lists.pruned_interaction(scores, 0.5), pruned, rtol=1e-6)
    assert kept.sum() < 16 and not np.allclose(pruned, expected)


def test_agrees_with_exact_maxsim_and_exhaustive_is_exact_over_the_decompressed() -> None:
    docs, queries = clustered(300, 32, 2)
    ids = [f"d{i}" for i in range(300)]
    qids = [f"q{i}" for i in range(12)]
    exact = MaxSimIndex(dtype="float32", device="cpu")
    exact.add(ids, docs)
    reference = exact.search(qids, queries, k=10)
    for nbits, codec, floor, cosine in (
        (2, "scalar", 0.85, 0.99),
        (4, "scalar", 0.85, 0.998),
        (4, "pq", 0.85, 0.998),
    ):
        index = PlaidIndex(nbits=nbits, codec=codec, device="cpu")
        index.add(ids, docs)
        run = index.search(qids, queries, k=10)
        recall = np.mean([len(set(run[q]) & set(reference[q])) / 10 for q in qids])
        assert recall >= floor, (nbits, recall)
        vectors, _ = index.decompress(np.arange(300))
        assert np.mean(np.sum(vectors * docs.vectors, axis=1)) > cosine  # decompressed ≈ original
    # every document a candidate: the result is exact MaxSim over the decompressed vectors
    index.search_options.update(EXHAUSTIVE)
    run = index.search(qids, queries, k=10)
    vectors, lengths = index.decompress(np.arange(300))
    decompressed = MaxSimIndex(dtype="float32", device="cpu")
    decompressed.add(ids, TokenVectors(vectors, lengths))
    expected = decompressed.search(qids, queries, k=10)
    for q in qids:
        assert list(run[q]) == list(expected[q])
        np.testing.assert_allclose(list(run[q].values()), list(expected[q].values()), rtol=1e-5)


def test_save_load_round_trip_and_more_documents(tmp_path: Path) -> None:
    docs, queries = clustered(80, 16, 3)
    ids = [f"d{i}" for i in range(80)]
    index = PlaidIndex("fp-1", device="cpu", nbits=4, ndocs=16)
    index.add(ids[:60], TokenVectors(docs.vectors[: int(docs.lengths[:60].sum())], docs.lengths[:60]))
    index.build()
    centroids = index.centroids.copy()
    # later documents are encoded with the trained centroids and codec
    index.add(ids[60:], TokenVectors(docs.vectors[int(docs.lengths[:60].sum()) :], docs.lengths[60:]))
    qids = [f"q{i}" for i in range(12)]
    before = index.search(qids, queries, k=5)
    assert np.array_equal(index.centroids, centroids) and len(index.codes) == len(docs.vectors)
    index.save(tmp_path / "idx")
    again = load_index(tmp_path / "idx")
    assert isinstance(again, PlaidIndex) and again.manifest["count"] == 80
    # 1,354 token vectors: product-quantised, and the codebook read back codes as it was trained
    assert isinstance(again.codec, ProductCodec) and again.build_options["codec"] == "pq"
    # documents added to the loaded index are coded exactly as the original coded them
    tail = int(docs.lengths[60:].sum())
    again.add([f"e{i}" for i in range(20)], TokenVectors(docs.vectors[-tail:], docs.lengths[60:]))
    again.build()
    assert np.array_equal(again.residuals[-tail:], index.residuals[-tail:])
    assert np.array_equal(again.codes[-tail:], index.codes[-tail:])
    again = load_index(tmp_path / "idx")
    assert again.search(qids, queries, k=5) == before
    assert again.manifest["search"]["ndocs"] == 16 and again.manifest["build_seconds"] > 0
    wider = PlaidIndex.load(tmp_path / "idx", device="cpu", **EXHAUSTIVE)
    assert wider.search_options["ndocs"] == 10_000
    with pytest.raises(RkdError, match=r"built with student fp-1; these queries come from other"):
        again.check_encoder("other")


def test_clear_errors() -> None:
    with pytest.raises(RkdError, match=r"nbits must be one of \[2, 4\], got 3"):
        PlaidIndex(nbits=3)
    with pytest.raises(RkdError, match=r"unknown plaid index option\(s\) \['factory'\]; choose from"):
        PlaidIndex.create("", {"factory": "Flat"})
    with pytest.raises(RkdError, match=r"codec must be one of \['pq', 'scalar'\], got 'opq'"):
        PlaidIndex(codec="opq")
    with pytest.raises(RkdError, match=r"nprobe must be an integer >= 1, got 0"):
        PlaidIndex(nprobe=0)
    with pytest.raises(RkdError, match=r"2-bit residuals need a dimension divisible by 4, got 6"):
        PlaidIndex(nbits=2, device="cpu").add(["b"], [np.ones((3, 6), dtype=np.float32)])

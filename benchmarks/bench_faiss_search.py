"""FaissIndex search vs numpy brute force on the same random unit vectors; recall of approximate indexes.

Rows (queries per second, ratio = numpy time / row time, recall@k against the exact top k):

- baseline: numpy ``q @ D.T`` + ``argpartition`` top k (then sorted), in query chunks;
- raw faiss ``IndexFlatIP.search`` (the same index object rkd holds, no Run dict built);
- rkd ``FaissIndex("Flat").search`` (faiss search + the ``{query_id: {doc_id: score}}`` Run);
- rkd ``FaissIndex("HNSW32")`` and ``FaissIndex("IVF<nlist>,Flat")`` (with ``--nprobe``), each
  also timed raw, plus their build (add/train) time.

Random vectors in 384 dimensions have no cluster structure, the worst case for IVF and HNSW:
their recall here is a lower bound of what real embeddings give at the same settings.

Run::

    python benchmarks/bench_faiss_search.py                      # 100k × 384 docs, 1,000 queries, k=100
    python benchmarks/bench_faiss_search.py --docs 20000 --queries 200   # a 10 s smoke run
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from retrieval_kd.indexes.faiss_index import FaissIndex


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--queries", type=int, default=1_000)
    p.add_argument("-k", type=int, default=100)
    p.add_argument("--nlist", type=int, default=1024, help="IVF lists (default 1024)")
    p.add_argument("--nprobe", type=int, default=16, help="IVF lists probed (rkd's default 16)")
    p.add_argument("--ef-search", type=int, default=None, help="HNSW efSearch (default: faiss's 16)")
    p.add_argument("--skip-approx", action="store_true", help="only the exact rows")
    return p.parse_args()


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def numpy_topk(docs: np.ndarray, queries: np.ndarray, k: int, chunk: int = 256) -> np.ndarray:
    """Exact top-k doc rows per query, best first. Shapes: [N, d], [Q, d] → int64[Q, k]."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for s in range(0, len(queries), chunk):
        sims = queries[s : s + chunk] @ docs.T  # [chunk, N]
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1)
        out[s : s + chunk] = np.take_along_axis(part, order, axis=1)
    return out


def best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def recall(found: list[set[int]], exact: np.ndarray) -> float:
    k = exact.shape[1]
    return float(np.mean([len(f & set(e.tolist())) / k for f, e in zip(found, exact, strict=True)]))


def main() -> None:
    args = parse_args()
    console = Console()
    if not console.is_terminal:
        console = Console(width=150)
    import faiss

    rng = np.random.default_rng(0)
    docs = unit(rng, args.docs, args.dim)
    queries = unit(rng, args.queries, args.dim)
    doc_ids = [f"d{i}" for i in range(args.docs)]
    row_of = {d: i for i, d in enumerate(doc_ids)}
    qids = [f"q{i}" for i in range(args.queries)]
    k, nq = args.k, args.queries

    t_np, exact = best_of(lambda: numpy_topk(docs, queries, k), 2)
    rows: list[tuple[str, float, float | None, float | None]] = [
        ("numpy q @ D.T + argpartition", t_np, None, 1.0)
    ]

    def measure(label: str, factory: str, **opts: Any) -> None:
        index = FaissIndex(args.dim, factory, device="cpu", **opts)
        t0 = time.perf_counter()
        index.add(doc_ids, docs)
        build = time.perf_counter() - t0
        raw_index = index._index  # the faiss object rkd searches; search params set on first search
        t_rkd, run = best_of(lambda: index.search(qids, queries, k), 2)
        t_raw, (_, raw_i) = best_of(lambda: raw_index.search(queries, k), 2)
        found = [{row_of[d] for d in run[q]} for q in qids]
        raw_found = [set(r[r >= 0].tolist()) for r in raw_i]
        assert found == raw_found, "rkd's Run differs from faiss's own result"
        r = recall(found, exact)
        rows.append((f"raw faiss {factory} (no Run dict)", t_raw, None, r))
        rows.append((f"rkd FaissIndex({factory!r}){label}", t_rkd, build, r))

    measure("", "Flat")
    if not args.skip_approx:
        measure(f", efSearch {args.ef_search or 16}", "HNSW32", ef_search=args.ef_search)
        measure(f", nprobe {args.nprobe}", f"IVF{args.nlist},Flat", nprobe=args.nprobe)

    table = Table(
        title=f"Dense search: {args.docs:,} × {args.dim} docs, {nq:,} queries, k={k}, "
        f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} OpenMP threads"
    )
    for col in ("path", "search s", "QPS", "speed vs numpy", f"recall@{k} vs exact", "build s"):
        table.add_column(col, justify="left" if col == "path" else "right")
    for name, secs, build, rec in rows:
        table.add_row(
            name,
            f"{secs:.3f}",
            f"{nq / secs:,.0f}",
            f"{t_np / secs:.2f}×",
            f"{rec:.4f}" if rec is not None else "—",
            f"{build:.1f}" if build is not None else "—",
        )
    console.print(table)
    flat_raw = next(s for n, s, _, _ in rows if n.startswith("raw faiss Flat"))
    flat_rkd = next(s for n, s, _, _ in rows if n.startswith("rkd FaissIndex('Flat')"))
    console.print(
        f"speed vs numpy = numpy time / row time (best of 2 each). Run-dict overhead on Flat: "
        f"{(flat_rkd - flat_raw) * 1e3:.0f} ms for {nq * k:,} hits "
        f"({flat_rkd / flat_raw - 1:+.1%} of the search)."
    )


if __name__ == "__main__":
    main()

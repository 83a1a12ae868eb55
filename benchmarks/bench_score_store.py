"""ScoreStore write and read rates vs plain pyarrow Parquet and a python dict, on the same rows.

Rows: ``--pairs`` (query id, doc id, float32 score), ``--docs-per-query`` docs per query.

- write: ``ScoreStore.add`` in batches of ``--batch`` (each batch one Parquet part, fsynced and
  renamed, plus one journal line appended and fsynced) vs one ``pq.write_table`` of all rows;
  a middle row writes the same per-batch parts with ``pq.write_table`` and no fsync/journal, to
  split the cost of "many parts" from the cost of durability.
- full load: ``ScoreStore.load(...)`` + ``len`` on a fresh object (every part read, checksummed,
  merged into one sorted Arrow table) vs ``pq.read_table`` of the single file, and vs
  ``pq.read_table`` plus building a ``(query_id, doc_id) -> score`` dict (format 1's load).
- missing: ``store.missing(all pairs)`` on the full store vs a python set-membership scan.
- lookup: ``store.lookup`` of every pair, 64 queries per call, vs dict lookups into a float32
  array; get: ``store.get(query_id, doc_ids)`` per query vs dict lookups (the old per-pair dict).

The ratio column is baseline time / rkd time (below 1: rkd slower), measured in the same process.

Run::

    python benchmarks/bench_score_store.py                      # 200k pairs, batches of 4096
    python benchmarks/bench_score_store.py --pairs 1000000 --batch 8192
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from retrieval_kd.scores.store import SCHEMA, ScoreStore
from retrieval_kd.testing import store_dict
from retrieval_kd.types import Pair

FINGERPRINT = "bench-teacher"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=200_000)
    p.add_argument("--docs-per-query", type=int, default=32)
    p.add_argument("--batch", type=int, default=4096, help="pairs per ScoreStore.add (default 4096)")
    p.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp dir)")
    return p.parse_args()


def timed(fn):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    args = parse_args()
    console = Console()
    if not console.is_terminal:
        console = Console(width=150)
    tmp = Path(tempfile.mkdtemp(prefix="rkd-bench-store-", dir=args.dir))
    try:
        run(args, tmp, console)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, tmp: Path, console: Console) -> None:
    n, per_q = args.pairs, args.docs_per_query
    rng = np.random.default_rng(0)
    n_docs = max(10 * per_q, n // 4)
    qs = [f"q{i // per_q:07d}" for i in range(n)]
    ds = [f"d{j:08d}" for j in rng.integers(0, n_docs, size=n)]
    # unique pairs: a repeated doc within a query would be overwritten and skew the counts
    seen: set[tuple[str, str]] = set()
    for i in range(n):
        while (qs[i], ds[i]) in seen:
            ds[i] = f"d{int(rng.integers(0, n_docs)):08d}"
        seen.add((qs[i], ds[i]))
    scores = rng.standard_normal(n).astype(np.float32)
    pairs = [Pair(q, d) for q, d in zip(qs, ds, strict=True)]
    batches = range(0, n, args.batch)

    # -- write ---------------------------------------------------------------------------------
    def rkd_write() -> None:
        with ScoreStore.open(tmp / "store", FINGERPRINT, {"kind": "bench"}) as store:
            for s in batches:
                store.add(pairs[s : s + args.batch], scores[s : s + args.batch])

    def pq_single() -> None:
        pq.write_table(
            pa.table({"query_id": qs, "doc_id": ds, "score": scores}, schema=SCHEMA), tmp / "one.parquet"
        )

    def pq_parts() -> None:
        (tmp / "parts").mkdir()
        for k, s in enumerate(batches):
            e = s + args.batch
            t = pa.table({"query_id": qs[s:e], "doc_id": ds[s:e], "score": scores[s:e]}, schema=SCHEMA)
            pq.write_table(t, tmp / "parts" / f"part-{k:06d}.parquet")

    w_base, _ = timed(pq_single)
    w_parts, _ = timed(pq_parts)
    w_rkd, _ = timed(rkd_write)
    w_base2, _ = timed(pq_single)  # again after rkd, to see the drift from the neighbour's load
    w_base = min(w_base, w_base2)

    # -- full load ------------------------------------------------------------------------------
    def pq_read() -> pa.Table:
        return pq.read_table(tmp / "one.parquet")

    def pq_read_dict() -> dict[tuple[str, str], float]:
        t = pq.read_table(tmp / "one.parquet")
        keys = zip(t.column("query_id").to_pylist(), t.column("doc_id").to_pylist(), strict=True)
        return dict(zip(keys, t.column("score").to_numpy().tolist(), strict=True))

    def rkd_load() -> ScoreStore:
        store = ScoreStore.load(tmp / "store", FINGERPRINT)
        len(store)  # reads, checks and merges every part
        return store

    r_base = min(timed(pq_read)[0] for _ in range(3))
    r_dict, plain = min((timed(pq_read_dict) for _ in range(2)), key=lambda x: x[0])
    r_rkd, store = min((timed(rkd_load) for _ in range(2)), key=lambda x: x[0])
    assert len(store) == n and store_dict(store) == plain

    # -- missing, lookup and get ---------------------------------------------------------------
    def rkd_missing() -> None:
        assert store.missing(pairs) == []

    def set_missing() -> None:
        assert [p for p in pairs if p not in plain] == []

    m_base = min(timed(set_missing)[0] for _ in range(3))
    m_rkd = min(timed(rkd_missing)[0] for _ in range(3))

    by_query: dict[str, list[str]] = {}
    for q, d in pairs:
        by_query.setdefault(q, []).append(d)
    chunks: list[list[Pair]] = []
    for k, (q, docs) in enumerate(by_query.items()):
        if k % 64 == 0:
            chunks.append([])
        chunks[-1].extend(Pair(q, d) for d in docs)

    def rkd_lookup() -> None:
        for keys in chunks:
            store.lookup(keys)

    def dict_lookup() -> None:
        for keys in chunks:
            np.array([plain[k] for k in keys], dtype=np.float32)

    def rkd_get() -> None:
        for q, docs in by_query.items():
            store.get(q, docs)

    def dict_get() -> None:
        for q, docs in by_query.items():
            np.array([plain[(q, d)] for d in docs], dtype=np.float32)

    l_base = min(timed(dict_lookup)[0] for _ in range(3))
    l_rkd = min(timed(rkd_lookup)[0] for _ in range(3))
    g_base = min(timed(dict_get)[0] for _ in range(3))
    g_rkd = min(timed(rkd_get)[0] for _ in range(3))
    n_q = len(by_query)

    n_parts = len(batches)
    table = Table(
        title=f"ScoreStore: {n:,} pairs, {n_q:,} queries × {per_q} docs, add() batches of {args.batch}"
    )
    for col in ("operation", "path", "seconds", "rate", "ratio vs baseline"):
        table.add_column(col, justify="left" if col in ("operation", "path") else "right")

    def row(op: str, path: str, secs: float, unit: float, unit_name: str, base: float | None) -> None:
        ratio = f"{base / secs:.3f}×" if base is not None else "baseline"
        table.add_row(op, path, f"{secs:.3f}", f"{unit / secs:,.0f} {unit_name}", ratio)

    row("write", "pq.write_table, one file", w_base, n, "pairs/s", None)
    row("write", f"pq.write_table, {n_parts} parts, no fsync", w_parts, n, "pairs/s", w_base)
    row("write", f"ScoreStore.add × {n_parts} (fsync + journal)", w_rkd, n, "pairs/s", w_base)
    table.add_section()
    row("full load", "pq.read_table, one file", r_base, n, "pairs/s", None)
    row("full load", "pq.read_table + build dict", r_dict, n, "pairs/s", r_base)
    row("full load", f"ScoreStore.load() + len, {n_parts} parts", r_rkd, n, "pairs/s", r_base)
    table.add_row("", "  (vs read_table + build dict)", "", "", f"{r_dict / r_rkd:.3f}×")
    table.add_section()
    row("missing", "python set membership, all pairs", m_base, n, "pairs/s", None)
    row("missing", "ScoreStore.missing, all pairs", m_rkd, n, "pairs/s", m_base)
    table.add_section()
    row("lookup", f"dict lookups, {len(chunks)} × 64 queries", l_base, n, "pairs/s", None)
    row("lookup", f"ScoreStore.lookup, {len(chunks)} × 64 queries", l_rkd, n, "pairs/s", l_base)
    table.add_section()
    row("get", f"dict lookups, {per_q} docs/query", g_base, n_q, "queries/s", None)
    row("get", f"ScoreStore.get, {per_q} docs/query", g_rkd, n_q, "queries/s", g_base)
    console.print(table)
    size = sum(f.stat().st_size for f in (tmp / "store" / FINGERPRINT).glob("*.parquet"))
    console.print(
        f"ratio = baseline time / row time (below 1: slower than the baseline). Store on disk: "
        f"{size / 1e6:.1f} MB in {n_parts} parts vs {os.path.getsize(tmp / 'one.parquet') / 1e6:.1f} MB "
        f"in one file; {tmp.parent} filesystem."
    )


if __name__ == "__main__":
    main()

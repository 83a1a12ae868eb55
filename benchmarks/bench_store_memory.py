"""Peak memory of the score store at 100k, 1M and 10M pairs, against ``pq.read_table`` of the same rows.

Synthetic MS MARCO-like data: 50 docs per query, query ids 6–7 digit strings, doc ids 7 digit
strings, float32 scores. Every case runs in a fresh Python process and reports its peak RSS
(``getrusage(RUSAGE_SELF).ru_maxrss``), so no case inherits another's heap:

- baseline: ``pq.read_table`` of all pairs from one Parquet file (the data's own footprint);
- python keys: building the ``list[Pair]`` of all pairs that scoring code hands to ``missing``
  (the caller's memory, for reference: ~150 bytes a pair, Python objects);
- scoring: that list, ``ScoreStore.open``, ``missing`` over all pairs (80% already stored, in
  parts of 8,192), then ``add`` of the missing 20% in parts of 512 (``score_pairs``' default);
- loading: ``ScoreStore.load`` + ``len`` + ``to_table`` of the store scoring left;
- training: ``load``, then ``lookup`` of every pair, 64 query groups (3,200 pairs) per call,
  keys sliced from the candidate table in candidate order (the candidates stay in memory, as in
  training).

Columns: peak RSS; the ratio to the baseline's peak; and bytes per pair above the bare process
(interpreter, numpy, pyarrow and rkd imported, a one-row Parquet file read): constant across
sizes means memory grows with the data and no faster. The setup (data, the 80% store) runs in
its own process, untimed.

Run::

    python benchmarks/bench_store_memory.py                          # 100k, 1M and 10M pairs
    python benchmarks/bench_store_memory.py --pairs 100000 1000000   # skip 10M (about 4 min)
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PER_QUERY = 50
PRESTORED = 0.8
CASES = ("bare", "baseline", "python keys", "scoring", "loading", "training")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    p.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp dir)")
    p.add_argument("--case", choices=(*CASES, "setup"), help=argparse.SUPPRESS)  # child process
    p.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    return p.parse_args()


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def data(n: int) -> Any:
    """The candidate table: (query_id, doc_id, score), grouped by query, deterministic."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    rng = np.random.default_rng(0)
    n_q = -(-n // PER_QUERY)
    qids = rng.choice(np.arange(100_000, 10_000_000), n_q, replace=False)  # 6-7 digits, unique
    # 50 distinct doc ids per query: a random base plus distinct random steps, all 7 digits.
    base = rng.integers(1_000_000, 8_800_000, n_q)
    steps = np.argsort(rng.random((n_q, PER_QUERY)), axis=1) * 1_000 + rng.integers(0, 1_000, (n_q, 1))
    docs = (base[:, None] + steps).reshape(-1)[:n]
    return pa.table(
        {
            "query_id": pc.cast(pa.array(np.repeat(qids, PER_QUERY)[:n]), pa.string()),
            "doc_id": pc.cast(pa.array(docs), pa.string()),
            "score": pa.array(rng.standard_normal(n).astype(np.float32)),
        }
    )


def python_keys(table: Any) -> list[Any]:
    from retrieval_kd.types import Pair

    return list(map(Pair, table.column("query_id").to_pylist(), table.column("doc_id").to_pylist()))


def setup(root: Path, n: int) -> None:
    import pyarrow.parquet as pq

    from retrieval_kd.scores.store import ScoreStore

    table = data(n)
    pq.write_table(table, root / "candidates.parquet")
    pq.write_table(table.slice(0, 1), root / "one-row.parquet")
    keep = int(n * PRESTORED)
    with ScoreStore.open(root / "store", "bench-teacher", {"kind": "bench"}, writer="import") as store:
        for s in range(0, keep, 8192):
            part = table.slice(s, min(8192, keep - s))
            store.add(python_keys(part), part.column("score").to_numpy())


def run_case(case: str, root: Path) -> dict[str, Any]:
    import numpy as np
    import pyarrow.parquet as pq

    from retrieval_kd.scores.store import ScoreStore

    t0 = time.perf_counter()
    out: dict[str, Any] = {}
    if case == "bare":  # Arrow's memory pool and threads started: the fixed cost of any read
        pq.read_table(root / "one-row.parquet")
    elif case == "baseline":
        out["rows"] = pq.read_table(root / "candidates.parquet").num_rows
    elif case == "python keys":
        out["rows"] = len(
            python_keys(pq.read_table(root / "candidates.parquet", columns=["query_id", "doc_id"]))
        )
    elif case == "scoring":
        keys = python_keys(pq.read_table(root / "candidates.parquet", columns=["query_id", "doc_id"]))
        t1 = time.perf_counter()
        with ScoreStore.open(root / "store", "bench-teacher", writer="scorer") as store:
            todo = store.missing(keys)  # reads and merges the 80% first
            out["missing_s"] = time.perf_counter() - t1
            rng = np.random.default_rng(1)
            for s in range(0, len(todo), 512):
                batch = todo[s : s + 512]
                store.add(batch, rng.standard_normal(len(batch)).astype(np.float32))
        out["rows"], out["added"] = len(keys), len(todo)
    elif case == "loading":
        store = ScoreStore.load(root / "store")
        out["rows"] = len(store)
        assert store.to_table().num_rows == out["rows"]
    elif case == "training":
        candidates = pq.read_table(root / "candidates.parquet", columns=["query_id", "doc_id", "score"])
        store = ScoreStore.load(root / "store")
        batch, total, t1 = 64 * PER_QUERY, 0.0, time.perf_counter()
        for s in range(0, candidates.num_rows, batch):
            total += float(store.lookup(candidates.slice(s, batch)).sum())
        out["lookup_s"] = time.perf_counter() - t1
        out["rows"] = candidates.num_rows
    out["seconds"] = time.perf_counter() - t0
    return out


def child(args: argparse.Namespace) -> None:
    import numpy  # noqa: F401  the bare process: what every case pays before its work
    import pyarrow.parquet  # noqa: F401

    import retrieval_kd.scores.store  # noqa: F401

    if args.case == "setup":
        setup(args.root, args.pairs[0])
        result: dict[str, Any] = {}
    else:
        result = run_case(args.case, args.root)
    result["peak_mb"] = peak_mb()
    print(json.dumps(result))


def spawn(case: str, root: Path, n: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--case", case, "--root", str(root), "--pairs", str(n)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"{case} at {n:,} pairs failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    args = parse_args()
    if args.case:
        child(args)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"ScoreStore peak RSS, {PER_QUERY} docs/query, fresh process per case")
    for col in ("pairs", "case", "peak RSS MB", "× baseline", "bytes/pair over bare", "seconds"):
        table.add_column(col, justify="left" if col == "case" else "right")
    for n in args.pairs:
        root = Path(tempfile.mkdtemp(prefix="rkd-bench-mem-", dir=args.dir))
        try:
            t0 = time.perf_counter()
            spawn("setup", root, n)
            setup_s = time.perf_counter() - t0
            results = {case: spawn(case, root, n) for case in CASES}
        finally:
            shutil.rmtree(root, ignore_errors=True)
        bare, base = results["bare"]["peak_mb"], results["baseline"]["peak_mb"]
        for case in CASES[1:]:
            r = results[case]
            extra = ""
            if case == "scoring":
                extra = f" (open + missing {r['missing_s']:.1f} s, then {r['added']:,} added)"
            elif case == "training":
                extra = f" (lookups {r['lookup_s']:.1f} s)"
            table.add_row(
                f"{n:,}",
                case,
                f"{r['peak_mb']:,.0f}",
                f"{r['peak_mb'] / base:.2f}×",
                f"{(r['peak_mb'] - bare) * 2**20 / n:,.0f}",
                f"{r['seconds']:.1f}{extra}",
            )
        table.add_row(f"{n:,}", "(bare process; setup)", f"{bare:,.0f}", "", "", f"setup {setup_s:.1f}")
        table.add_section()
    console = Console(width=150)
    console.print(table)
    console.print(
        "× baseline = case peak / pq.read_table peak; bytes/pair = (case peak − bare peak) / pairs."
    )


if __name__ == "__main__":
    main()

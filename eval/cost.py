"""What a system costs, measured beside its quality in the same evaluation run.

Quality tables alone hide the reason a student exists: it is smaller and faster. Every
evaluation therefore records, next to its metrics (``metrics.json`` ``"cost"``):

- ``index_bytes``: the index folder's size on disk;
- ``encode_docs_per_s``: documents per second of building the index: the whole build (encode,
  add, write) from the manifest's ``build_stats``, which the index stage records; an index built
  outside it gives its ``encode`` record (:func:`retrieval_kd.indexing.build_index`). The whole
  build, not encoding alone: BM25's "encoder" hands the texts to Lucene, which analyses and
  indexes them when the index is written, so its encode time alone is ~0;
- ``qps``: queries per second of the whole batched evaluation (query encoding + search);
- ``latency_ms_p50`` / ``latency_ms_p95``: one query at a time (encode + search), over up to
  :data:`LATENCY_QUERIES` of the evaluated queries, after the batched pass has warmed up;
- ``parameters``: the query encoder's parameter count (0 for BM25).

Timings are wall-clock on the machine that ran the evaluation (``report.json`` records it as
``host``); compare them within one run, not across machines.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "COST_COLUMNS",
    "LATENCY_QUERIES",
    "build_rate",
    "cell",
    "folder_bytes",
    "latencies",
    "parameter_count",
    "shown",
    "summarise",
]

LATENCY_QUERIES = 50

# key in "cost" → (column header, format)
COST_COLUMNS: dict[str, tuple[str, str]] = {
    "index_bytes": ("index MB", "{:.1f}"),
    "encode_docs_per_s": ("docs/s", "{:.0f}"),
    "latency_ms_p50": ("p50 ms", "{:.2f}"),
    "latency_ms_p95": ("p95 ms", "{:.2f}"),
    "qps": ("QPS", "{:.0f}"),
    "parameters": ("params M", "{:.1f}"),
}


def build_rate(manifest: Mapping[str, Any]) -> dict[str, float] | None:
    """``{"docs", "seconds"}`` of building the index whose manifest this is (see the module
    docstring), or None when it records neither.

    Example:
        >>> build_rate({"encode": {"docs": 10, "seconds": 0.001}, "build_stats": {"items": 10, "seconds": 2}})
        {'docs': 10.0, 'seconds': 2.0}
        >>> build_rate({"encode": {"docs": 10, "seconds": 0.5}})
        {'docs': 10.0, 'seconds': 0.5}
    """
    from retrieval_kd.stages.index import STATS_KEY

    for key, count in ((STATS_KEY, "items"), ("encode", "docs")):
        record = manifest.get(key)
        if isinstance(record, Mapping) and record.get(count) and record.get("seconds"):
            return {"docs": float(record[count]), "seconds": float(record["seconds"])}
    return None


def folder_bytes(path: Path) -> int:
    """Bytes of every regular file under ``path`` (hard links counted once each, as `du` does)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for file in Path(path).rglob("*"):
        if file.is_file() and not file.is_symlink():
            st = file.stat()
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def parameter_count(student: Any) -> int:
    """Parameters of the student's model (0 for a retriever without weights such as BM25)."""
    params = getattr(getattr(student, "model", None), "parameters", None)
    if not callable(params):
        return 0
    return int(sum(p.numel() for p in params()))


def latencies(run_one: Callable[[str, str], object], queries: Iterable[tuple[str, str]]) -> list[float]:
    """Milliseconds of ``run_one(query_id, text)`` for each query, one at a time."""
    times = []
    for qid, text in queries:
        start = time.perf_counter()
        run_one(qid, text)
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def summarise(
    *,
    queries: int,
    seconds: float,
    latency_ms: list[float],
    parameters: int,
    encode: Mapping[str, Any] | None,
) -> dict[str, float | int | None]:
    """The ``cost`` record of one evaluation (sizes are added by the eval stage, which knows the
    folder).

    Example:
        >>> cost = summarise(queries=300, seconds=1.5, latency_ms=[1.0, 2.0, 3.0, 4.0], parameters=10,
        ...                  encode={"docs": 100, "seconds": 2.0})
        >>> cost["qps"], cost["latency_ms_p50"], cost["latency_ms_p95"], cost["encode_docs_per_s"]
        (200.0, 2.5, 3.85, 50.0)
    """
    docs_per_s = None
    if encode and encode.get("seconds"):
        docs_per_s = float(encode["docs"]) / float(encode["seconds"])
    return {
        "qps": queries / seconds if seconds > 0 else None,
        "latency_ms_p50": round(float(np.percentile(latency_ms, 50)), 3) if latency_ms else None,
        "latency_ms_p95": round(float(np.percentile(latency_ms, 95)), 3) if latency_ms else None,
        "parameters": parameters,
        "encode_docs_per_s": docs_per_s,
    }


def shown(costs: Mapping[str, Mapping[str, Any]] | None) -> list[str]:
    """The cost keys known for at least one system (a table leaves out all-unknown columns)."""
    return [
        key
        for key in COST_COLUMNS
        if any(cell(key, (c or {}).get(key)) != "–" for c in (costs or {}).values())
    ]


def cell(key: str, value: object) -> str:
    """A cost value as its column shows it ("–" when unknown)."""
    if (
        value is None
        or isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
    ):
        return "–"
    scale = {"index_bytes": 1e-6, "parameters": 1e-6}.get(key, 1.0)
    return COST_COLUMNS[key][1].format(value * scale)

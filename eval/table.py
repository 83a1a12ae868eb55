"""The metrics table the CLI prints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table

from retrieval_kd.eval.cost import COST_COLUMNS, cell, shown
from retrieval_kd.eval.metrics import letter

__all__ = ["metrics_table"]


def metrics_table(
    rows: Mapping[str, Mapping[str, float]],
    metrics: Sequence[str],
    markers: Mapping[str, Mapping[str, str]] | None = None,
    title: str | None = None,
    costs: Mapping[str, Mapping[str, Any]] | None = None,
) -> Table:
    """One row per system, one column per metric, scores to 4 decimals.

    Args:
        rows: system name → metric → score (as :func:`retrieval_kd.eval.metrics.evaluate` returns).
        metrics: the columns, in order; a system lacking one shows "–".
        markers: system → metric → significance letters (``CompareReport.markers()``), shown as
            a superscript-like suffix; the system names get matching letters.
        title: table title.
        costs: system → its ``cost`` record (:mod:`retrieval_kd.eval.cost`); adds the size,
            throughput, latency and parameter columns.
    """
    table = Table(title=title)
    table.add_column("#" if markers else "system", style="bold" if not markers else None)
    if markers:
        table.add_column("system", style="bold")
    for metric in metrics:
        table.add_column(metric, justify="right")
    columns = shown(costs)
    for key in columns:
        table.add_column(COST_COLUMNS[key][0], justify="right", style="dim")
    for i, (system, scores) in enumerate(rows.items()):
        cells = []
        for metric in metrics:
            if metric not in scores:
                cells.append("–")
                continue
            mark = (markers or {}).get(system, {}).get(metric, "")
            cells.append(f"{scores[metric]:.4f}" + (f" {mark}" if mark else ""))
        cells += [cell(key, ((costs or {}).get(system) or {}).get(key)) for key in columns]
        lead = [letter(i), system] if markers else [system]
        table.add_row(*lead, *cells)
    return table

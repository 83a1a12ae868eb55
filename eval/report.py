"""A comparison of systems written the three ways people read it: Markdown, JSON and a plot.

``rkd eval beir`` over several systems, ``rkd eval compare`` over saved runs and ``rkd run``
all end here: one table of quality (with significance letters after a multiple-comparison
correction) and cost (:mod:`retrieval_kd.eval.cost`), and a PNG of quality against query
latency with the Pareto front marked (the systems no other system beats on both).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from retrieval_kd.eval.cost import COST_COLUMNS, cell, shown
from retrieval_kd.eval.metrics import CompareReport, letter
from retrieval_kd.io import atomic_write_json, atomic_write_text

__all__ = ["markdown", "pareto", "plot_quality_latency", "write_comparison"]


def pareto(points: Mapping[str, tuple[float, float]]) -> list[str]:
    """Names on the Pareto front of (latency, quality) points: lower latency and higher quality
    are better, and a point is on the front when no other point is at least as good on both and
    better on one. Returned in order of latency.

    Example:
        >>> pareto({"bm25": (5.0, 0.66), "dense": (2.0, 0.57), "teacher": (4.0, 0.64), "slow": (9.0, 0.6)})
        ['dense', 'teacher', 'bm25']
    """

    def dominated(name: str) -> bool:
        lat, q = points[name]
        return any(
            (lo <= lat and qo >= q) and (lo < lat or qo > q)
            for other, (lo, qo) in points.items()
            if other != name
        )

    return sorted((n for n in points if not dominated(n)), key=lambda n: points[n])


def _letters(report: CompareReport | None) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    if report is None:
        return {}, {}
    markers = report.markers()
    names = {name: letter(i) for i, name in enumerate(report.run_names)}
    return names, markers


def markdown(
    rows: Mapping[str, Mapping[str, float]],
    metrics: Sequence[str],
    costs: Mapping[str, Mapping[str, Any]] | None = None,
    report: CompareReport | None = None,
) -> str:
    """The table as GitHub Markdown: letters, metrics (4 decimals, significance letters) and the
    cost columns; a legend line under it names the test and the correction."""
    letters, markers = _letters(report)
    head = (["#"] if letters else []) + ["system", *metrics]
    columns = shown(costs)
    head += [COST_COLUMNS[key][0] for key in columns]
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" if h in ("#", "system") else "---:" for h in head) + "|",
    ]
    for system, scores in rows.items():
        cells = [letters[system]] if letters else []
        cells.append(system)
        for m in metrics:
            mark = markers.get(system, {}).get(m, "")
            cells.append(f"{scores[m]:.4f}" + (f" {mark}" if mark else "") if m in scores else "–")
        cells += [cell(key, ((costs or {}).get(system) or {}).get(key)) for key in columns]
        lines.append("| " + " | ".join(cells) + " |")
    if report is not None:
        lines += ["", report.legend() + "."]
    return "\n".join(lines) + "\n"


def plot_quality_latency(
    rows: Mapping[str, Mapping[str, float]],
    costs: Mapping[str, Mapping[str, Any]],
    metric: str,
    path: Path,
    title: str | None = None,
) -> list[str]:
    """Writes a PNG: one point per system at (median query latency, ``metric``), labelled, the
    Pareto front joined by a line. Systems without a measured latency are left out.

    Returns:
        The systems on the Pareto front.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = {
        name: (float(costs[name]["latency_ms_p50"]), float(scores[metric]))
        for name, scores in rows.items()
        if metric in scores and isinstance((costs.get(name) or {}).get("latency_ms_p50"), int | float)
    }
    front = pareto(points)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, (lat, q) in points.items():
        on = name in front
        ax.scatter(lat, q, s=60 if on else 40, color="tab:blue" if on else "tab:gray", zorder=3)
        ax.annotate(name, (lat, q), textcoords="offset points", xytext=(6, 5), fontsize=9)
    if len(front) > 1:
        ax.plot([points[n][0] for n in front], [points[n][1] for n in front], "--", color="tab:blue", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("median query latency, ms (one query at a time, log scale)")
    ax.set_ylabel(metric)
    ax.set_title(title or f"{metric} against query latency (blue: Pareto front)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if points:
        low, high = min(q for _, q in points.values()), max(q for _, q in points.values())
        pad = max(0.02, (high - low) * 0.15)
        ax.set_ylim(max(0.0, low - pad), min(1.0, high + pad))
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return front


def write_comparison(
    out: Path,
    rows: Mapping[str, Mapping[str, float]],
    metrics: Sequence[str],
    costs: Mapping[str, Mapping[str, Any]] | None = None,
    report: CompareReport | None = None,
    *,
    dataset: str | None = None,
    stem: str = "compare",
) -> dict[str, Path]:
    """``<stem>.md``, ``<stem>.json`` and (when latencies are known) ``<stem>.png`` under ``out``.

    The JSON holds everything the table shows and more: raw and corrected p-values for every
    pair and metric, the test and the correction, and the Pareto front.
    """
    out.mkdir(parents=True, exist_ok=True)
    written = {"markdown": out / f"{stem}.md", "json": out / f"{stem}.json"}
    front: list[str] = []
    if costs and metrics and any((costs.get(n) or {}).get("latency_ms_p50") is not None for n in rows):
        written["plot"] = out / f"{stem}.png"
        front = plot_quality_latency(rows, costs, metrics[0], written["plot"])
    atomic_write_text(written["markdown"], markdown(rows, metrics, costs, report))
    record: dict[str, Any] = {
        "dataset": dataset,
        "metrics": {name: dict(scores) for name, scores in rows.items()},
        "cost": {name: dict((costs or {}).get(name) or {}) for name in rows},
        "pareto_front": {"metric": metrics[0] if metrics else None, "systems": front},
    }
    if report is not None:
        record["significance"] = {
            "test": report.stat_test,
            "correction": report.correction,
            "max_p": report.max_p,
            "better_than": report.better_than,
            "p_values": report.p_values,
            "p_adjusted": report.p_adjusted,
        }
    atomic_write_json(written["json"], record)
    return written

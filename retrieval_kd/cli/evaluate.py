"""``rkd eval beir``: retrieval metrics for one or more systems, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from retrieval_kd.cli._common import cli_errors, out, progress, say
from retrieval_kd.errors import RkdError

app = typer.Typer(help="Evaluate students and indexes.", no_args_is_help=True)


@app.command("beir")
@cli_errors
def beir(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="ir_datasets id or BEIR folder[:split]")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="writes <name>/run.trec, metrics.json")],
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="student folder or hub id")] = None,
    index: Annotated[
        list[Path] | None, typer.Option("--index", "-i", help="index folder from `rkd index`")
    ] = None,
    metric: Annotated[list[str] | None, typer.Option("--metric", help="repeatable")] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="retrieval depth")] = 100,
    factory: str = "Flat",
    max_queries: int | None = None,
    batch_size: int = 32,
) -> None:
    """Evaluate each --model (a fresh index of the corpus) and each --index (with the student
    recorded in it) on a dataset; print one table."""
    from retrieval_kd.data import load_dataset
    from retrieval_kd.eval.metrics import compare, parse_metric
    from retrieval_kd.eval.table import metrics_table
    from retrieval_kd.evaluation import evaluate_system
    from retrieval_kd.indexes import load_index
    from retrieval_kd.students import load_student

    metrics = tuple(metric or ("ndcg@10", "recall@100", "mrr@10"))
    [parse_metric(m_) for m_ in metrics]
    if not model and not index:
        raise RkdError("give at least one --model or --index")
    ds = load_dataset(dataset)
    systems: list[tuple[str, Any, Any]] = []
    for m in model or []:
        systems.append((Path(m).name or m, load_student(m), None))
    for ix in index or []:
        idx = load_index(ix)
        student_path = idx.manifest.get("student_path")
        if not student_path:
            raise RkdError(
                f"{ix}: the index does not record its student; pass it with --model and no --index"
            )
        systems.append((ix.name, load_student(student_path), idx))
    names = [name for name, _, _ in systems]
    if len(set(names)) < len(names):  # two folders with one basename: number them
        systems = [(f"{name}-{i + 1}", st, ix) for i, (name, st, ix) in enumerate(systems)]
    rows = {}
    runs = {}
    with progress() as p:
        for name, student, idx in systems:
            result = evaluate_system(
                name,
                student,
                ds,
                metrics,
                k,
                out_dir / name,
                index=idx,
                factory=factory,
                max_queries=max_queries,
                batch_size=batch_size,
                progress=p,
            )
            rows[name] = result.metrics
            runs[name] = result.run
            say(f"{name}: run → {out_dir / name / 'run.trec'}")
    markers = None
    if len(runs) > 1 and not max_queries:
        # paired t-test over queries (ranx.compare); a letter marks a significant win (p < 0.05)
        markers = compare(runs, ds.qrels, metrics).markers()
    out.print(metrics_table(rows, list(metrics), markers=markers))
    if markers:
        out.print("letters: significantly better than that row (paired t-test, p < 0.05)", style="dim")

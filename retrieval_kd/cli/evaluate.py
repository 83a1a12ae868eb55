"""``rkd eval beir``: retrieval metrics for one or more systems, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
    retriever: Annotated[
        list[str] | None,
        typer.Option("--retriever", "-r", help="a retriever without a model, such as bm25 (repeatable)"),
    ] = None,
    index: Annotated[
        list[Path] | None, typer.Option("--index", "-i", help="index folder from `rkd index`")
    ] = None,
    metric: Annotated[list[str] | None, typer.Option("--metric", help="repeatable")] = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="retrieval depth")] = 100,
    factory: Annotated[
        str | None, typer.Option(help="faiss factory of the index built for a dense --model")
    ] = None,
    max_queries: Annotated[int | None, typer.Option(min=1)] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
) -> None:
    """Evaluate each --model and --retriever (through an index of the corpus, built once and kept
    under OUT/indexes/) and each --index (with the student recorded in it) on a dataset; print one
    table."""
    from retrieval_kd.eval.metrics import compare, parse_metric
    from retrieval_kd.eval.table import metrics_table
    from retrieval_kd.eval.trec import read_trec
    from retrieval_kd.evaluation import check_depth
    from retrieval_kd.stages import EvalStage, IndexStage, evaluate_stage, index_stage
    from retrieval_kd.students import model_free

    metrics = tuple(metric or ("ndcg@10", "recall@100", "mrr@10"))
    for metric_name in metrics:
        parse_metric(metric_name)
    check_depth(metrics, k)  # before any index is built
    if not model and not index and not retriever:
        raise RkdError("give at least one --model, --retriever or --index")
    for r in retriever or []:
        model_free(r)
    # (name, model, index folder, student kind)
    systems: list[tuple[str, str | None, Path | None, str | None]] = [
        (Path(m).name or m, m, None, None) for m in model or []
    ]
    systems += [(r, r, None, r) for r in retriever or []]
    systems += [(ix_path.name, None, ix_path, None) for ix_path in index or []]
    names = [name for name, _, _, _ in systems]
    if len(set(names)) < len(names):  # two folders with one basename: number them
        systems = [(f"{name}-{i + 1}", m, ix, kd) for i, (name, m, ix, kd) in enumerate(systems)]
    rows, runs = {}, {}
    with progress() as p:
        for name, m, ix, student_kind in systems:
            if ix is None:
                assert m is not None
                options = {"factory": factory} if factory is not None and student_kind is None else {}
                built = index_stage(
                    IndexStage(
                        m, dataset, out_dir / "indexes" / name, None, options, batch_size, student_kind
                    ),
                    p,
                )
                say(built.message(f"index {name}"))
                ix = built.path
            result = evaluate_stage(
                EvalStage(name, ix, dataset, out_dir / name, metrics, k, max_queries, batch_size, model=m), p
            )
            say(result.message(f"eval {name}"))
            rows[name] = result.extra["metrics"]
            runs[name] = result.extra.get("run") or read_trec(out_dir / name / "run.trec")
    markers = None
    if len(runs) > 1 and not max_queries:
        from retrieval_kd.data import load_dataset

        # paired t-test over queries (ranx.compare); a letter marks a significant win (p < 0.05)
        qrels = load_dataset(dataset).qrels
        markers = compare(runs, qrels, metrics).markers()
    out.print(metrics_table(rows, list(metrics), markers=markers))
    if markers:
        out.print("letters: significantly better than that row (paired t-test, p < 0.05)", style="dim")

"""``rkd eval beir``: retrieval metrics for one or more systems, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from retrieval_kd.cli._common import cli_errors, out, print_table, progress, say
from retrieval_kd.errors import RkdError

StatTest = Annotated[str, typer.Option(help="paired test: student (t-test) or fisher (randomisation)")]
Correction = Annotated[
    str, typer.Option(help="multiple-comparison correction across all pairs: holm, bonferroni or none")
]

app = typer.Typer(help="Evaluate students and indexes.", no_args_is_help=True)


@app.command("beir")
@cli_errors
def beir(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="ir_datasets id or BEIR folder[:split]")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="writes <name>/run.trec, metrics.json")],
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="student folder or hub id, or NAME=MODEL to name its row"),
    ] = None,
    retriever: Annotated[
        list[str] | None,
        typer.Option(
            "--retriever", "-r", help="a retriever without a model, such as bm25, or NAME=KIND (repeatable)"
        ),
    ] = None,
    index: Annotated[
        list[str] | None,
        typer.Option("--index", "-i", help="index folder from `rkd index`, or NAME=DIR"),
    ] = None,
    metric: Annotated[list[str] | None, typer.Option("--metric", help="repeatable")] = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="retrieval depth")] = 100,
    factory: Annotated[
        str | None, typer.Option(help="faiss factory of the index built for a dense --model")
    ] = None,
    max_queries: Annotated[int | None, typer.Option(min=1)] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    rerank: Annotated[
        list[str] | None,
        typer.Option(
            help="a cross-encoder student (or CrossEncoder folder) reranking the first system's run, "
            "or NAME=MODEL"
        ),
    ] = None,
    depth: Annotated[int, typer.Option(min=1, help="documents per query a --rerank model reorders")] = 100,
    stat_test: StatTest = "student",
    correction: Correction = "holm",
) -> None:
    """Evaluate each --model and --retriever (through an index of the corpus, built once and kept
    under OUT/indexes/) and each --index (with the student recorded in it) on a dataset; print one
    table of quality (significance letters after the correction) and cost, and write it to
    OUT/compare.md, .json and .png (quality against latency). Each --rerank model reorders the
    top --depth of the first system's run."""
    from retrieval_kd.eval.metrics import parse_metric
    from retrieval_kd.evaluation import check_depth
    from retrieval_kd.students import model_free
    from retrieval_kd.systems import System, evaluate_systems, parse_index_spec, parse_named

    metrics = tuple(metric or ("ndcg@10", "recall@100", "mrr@10"))
    for metric_name in metrics:
        parse_metric(metric_name)
    check_depth(metrics, k)  # before any index is built
    _check_stats(stat_test, correction)
    if not model and not index and not retriever:
        raise RkdError("give at least one --model, --retriever or --index")
    options = {"factory": factory} if factory is not None else {}
    systems = []
    for spec in model or []:
        name, m = parse_named(spec, "--model")
        systems.append(System(name or Path(m).name or m, model=m, index_options=options))
    for spec in retriever or []:
        name, r = parse_named(spec, "--retriever")
        model_free(r)
        systems.append(System(name or r, model=r, student_kind=r))
    for spec in index or []:
        name, ix_path = parse_index_spec(spec)
        systems.append(System(name, index=ix_path))
    with progress() as p:
        comparison = evaluate_systems(
            systems,
            dataset,
            out_dir,
            metrics=metrics,
            k=k,
            max_queries=max_queries,
            batch_size=batch_size,
            progress=p,
            say=say,
        )
    if rerank:
        from retrieval_kd.systems import rerank_systems

        if depth > k:
            raise RkdError(
                f"--depth {depth} is deeper than the first stage's -k {k}; raise -k or lower --depth"
            )
        rerank_systems(
            comparison, rerank, dataset, out_dir, metrics=metrics, depth=depth, max_queries=max_queries,
            batch_size=batch_size, say=say,
        )  # fmt: skip
    _show(comparison, dataset, metrics, out_dir, stat_test, correction)


def _check_stats(stat_test: str, correction: str) -> None:
    from retrieval_kd.eval.metrics import STAT_TESTS
    from retrieval_kd.eval.stats import CORRECTIONS

    if stat_test not in STAT_TESTS:
        raise RkdError(f"--stat-test {stat_test!r}: choose from {list(STAT_TESTS)}")
    if correction not in CORRECTIONS:
        raise RkdError(f"--correction {correction!r}: choose from {list(CORRECTIONS)}")


def _show(
    comparison: Any, dataset: str, metrics: tuple[str, ...], out_dir: Path, stat_test: str, correction: str
) -> None:
    from retrieval_kd.data import load_dataset
    from retrieval_kd.eval.table import metrics_table
    from retrieval_kd.systems import compare_systems

    judged = load_dataset(dataset).qrels
    asked = set().union(*(set(run) for run in comparison.runs.values())) if comparison.runs else set()
    # the tests compare the evaluated queries only (all of them unless --max-queries cut them)
    qrels = {qid: rel for qid, rel in judged.items() if qid in asked}
    report, files = compare_systems(
        comparison, dataset, metrics, out_dir, stat_test=stat_test, correction=correction, qrels=qrels
    )
    markers = report.markers() if report is not None else None
    print_table(metrics_table(comparison.rows, list(metrics), markers=markers, costs=comparison.costs))
    if report is not None:
        out.print(report.legend(), style="dim", soft_wrap=True)
    say("wrote " + ", ".join(str(f) for f in files.values()))


@app.command("compare")
@cli_errors
def compare_runs(
    runs: Annotated[
        list[Path], typer.Argument(help="evaluation folders (run.trec + metrics.json), e.g. OUT/<system>")
    ],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="whose qrels judge the runs")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="writes compare.md, .json, .png")],
    metric: Annotated[
        list[str] | None, typer.Option("--metric", help="repeatable; default those of the first run")
    ] = None,
    stat_test: StatTest = "student",
    correction: Correction = "holm",
) -> None:
    """Compare saved evaluations (from `rkd eval beir` or `rkd run`) with paired tests under a
    multiple-comparison correction; cost columns come from their metrics.json."""
    from retrieval_kd.eval.metrics import evaluate, parse_metric
    from retrieval_kd.eval.trec import read_trec
    from retrieval_kd.io import read_json_object
    from retrieval_kd.systems import Comparison

    _check_stats(stat_test, correction)
    if len(runs) < 2:
        raise RkdError(f"compare needs at least two evaluation folders, got {len(runs)}")
    records = {}
    for folder in runs:
        for needed in ("run.trec", "metrics.json"):
            if not (folder / needed).is_file():
                raise RkdError(f"{folder}: no {needed}; give folders written by `rkd eval beir` or `rkd run`")
        records[folder] = read_json_object(folder / "metrics.json")
    first = records[runs[0]].get("metrics")
    metrics = tuple(parse_metric(m) for m in (metric or (list(first) if isinstance(first, dict) else [])))
    if not metrics:
        raise RkdError(f"{runs[0] / 'metrics.json'}: no metrics recorded; name them with --metric")
    from retrieval_kd.data import load_dataset

    qrels = load_dataset(dataset).qrels
    comparison = Comparison()
    for folder, record in records.items():
        name = str(record.get("name") or folder.name)
        if name in comparison.rows:
            name = f"{name} ({folder})"
        run = read_trec(folder / "run.trec")
        judged = {qid: rel for qid, rel in qrels.items() if qid in run}
        comparison.rows[name] = evaluate(judged, run, metrics)
        cost = record.get("cost")
        comparison.costs[name] = cost if isinstance(cost, dict) else {}
        comparison.runs[name] = run
    _show(comparison, dataset, metrics, out_dir, stat_test, correction)

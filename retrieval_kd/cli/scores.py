"""``rkd scores ...``: commands on score stores as a whole (``verify``, ``inspect``, ``combine``,
``export``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from retrieval_kd.cli._common import cli_errors, out, print_table

app = typer.Typer(help="Check, inspect, combine and export score stores.", no_args_is_help=True)

StoresArg = Annotated[
    list[Path], typer.Argument(help="score stores: teacher folders (root/<fingerprint>) or one-teacher roots")
]


@app.command("verify")
@cli_errors
def verify(
    store: Annotated[Path, typer.Argument(help="score store root (or one teacher's folder in it)")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only report; change nothing")] = False,
) -> None:
    """Check every part (checksum), journal and manifest of every teacher folder in STORE, and
    repair what a rescan can: drop journal lines of missing parts and damaged lines, set damaged
    parts aside in quarantine/ (their pairs are scored again by the next score-teacher), journal
    whole parts the journal lacks. Exit status 0 when the store is whole afterwards, 2 otherwise.
    """
    from rich.markup import escape
    from rich.table import Table

    from retrieval_kd.scores.verify import verify_store

    report = verify_store(store, repair=not dry_run)
    checked = (
        f"{len(report.teachers)} teacher folder(s), {report.writers} writer(s), "
        f"{report.parts} whole part(s) of {report.rows} rows"
    )
    if report.findings:
        table = Table(title=f"rkd scores verify {escape(str(store))}" + (" (dry run)" if dry_run else ""))
        for column in ("teacher", "file", "problem", "action"):
            table.add_column(column, overflow="fold")
        for f in report.findings:
            style = "green" if f.fixed else ("red" if f.action.startswith("not ") else "yellow")
            table.add_row(escape(f.teacher), escape(f.file), escape(f.problem), escape(f.action), style=style)
        print_table(table)
    if report.whole:
        repaired = f"; {len(report.findings)} problem(s) repaired" if report.findings else ""
        out.print(f"store {store} is whole: {checked}{repaired}", highlight=False, soft_wrap=True)
        return
    left = sum(not f.fixed for f in report.findings)
    hint = "run without --dry-run to repair" if dry_run else "see the table"
    summary = f"store {store} is not whole: {left} problem(s) left ({hint}); {checked}"
    out.print(summary, highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@app.command("inspect")
@cli_errors
def inspect(
    stores: StoresArg,
    png: Annotated[
        Path | None, typer.Option("--png", help="write the distributions and agreement plot here")
    ] = None,
    max_queries: Annotated[int, typer.Option(min=1, help="shared queries sampled for agreement")] = 2000,
) -> None:
    """Each store's score distribution and coverage, and the agreement of every two stores on the
    pairs both scored (Kendall τ per query, averaged; top-10 overlap)."""
    from rich.markup import escape
    from rich.table import Table

    from retrieval_kd.scores.ensemble import open_store
    from retrieval_kd.scores.inspect import QUANTILES, inspect_stores, plot

    found = inspect_stores([open_store(p) for p in stores], max_queries=max_queries)
    for i, name in enumerate(found.names):
        out.print(f"T{i + 1}  {escape(name)}", highlight=False, soft_wrap=True)
    # One column per teacher: a few teachers side by side stay readable in 80 columns.
    table = Table(title="score distributions")
    table.add_column("")
    for i in range(len(found.names)):
        table.add_column(f"T{i + 1}", justify="right")
    dists = found.distributions
    table.add_row("pairs", *(f"{d.pairs:,}" for d in dists))
    table.add_row("queries", *(f"{d.queries:,}" for d in dists))
    table.add_row("mean", *(f"{d.mean:.4g}" for d in dists))
    table.add_row("std", *(f"{d.std:.4g}" for d in dists))
    for j, q in enumerate(QUANTILES):
        name = {0.0: "min", 1.0: "max"}.get(q, f"q{q * 100:g}")
        table.add_row(name, *(f"{d.quantiles[j]:.4g}" for d in dists))
    print_table(table)
    if found.agreements:
        agree = Table(title="agreement on shared pairs")
        columns = (
            "stores",
            "shared pairs",
            "shared queries",
            "Kendall τ",
            "top-10 overlap",
            "queries measured",
        )
        for column in columns:
            agree.add_column(column, justify="left" if column == "stores" else "right")
        for g in found.agreements:
            agree.add_row(
                f"T{g.a + 1} vs T{g.b + 1}",
                f"{g.shared_pairs:,}",
                f"{g.shared_queries:,}",
                f"{g.kendall_tau:.4f}",
                f"{g.top10_overlap:.4f}",
                f"{g.queries:,}",
            )
        print_table(agree)
    if png is not None:
        plot(found, png)
        out.print(f"plot: {png}", highlight=False)


@app.command("combine")
@cli_errors
def combine(
    stores: StoresArg,
    normalisation: Annotated[
        str, typer.Option("--normalise", help="per query: zscore, minmax, rank or none")
    ] = "zscore",
    weights: Annotated[
        str | None,
        typer.Option(help="comma-separated, one per store (default: equal, or tuned with --tune-on)"),
    ] = None,
    tune_on: Annotated[
        str | None,
        typer.Option(
            "--tune-on", help="dataset spec of a TRAINING split whose qrels tune the weights (nDCG@10)"
        ),
    ] = None,
    step: Annotated[float, typer.Option(help="weight grid step for --tune-on")] = 0.1,
    eval_spec: Annotated[
        str | None, typer.Option("--eval", help="the evaluation split's spec, refused for --tune-on")
    ] = None,
    out_root: Annotated[
        Path | None, typer.Option("--out", help="write the ensemble as a score store under this root")
    ] = None,
) -> None:
    """Ensemble teacher: per-query normalised member scores, summed with weights. Prints its
    fingerprint and spec; --out writes it as a store (otherwise it is only a view)."""
    from rich.table import Table

    from retrieval_kd.errors import RkdError
    from retrieval_kd.scores.ensemble import combine as combine_view
    from retrieval_kd.scores.ensemble import open_store, tune

    members = [open_store(p) for p in stores]
    if tune_on is not None and weights is not None:
        raise RkdError("give --weights or --tune-on, not both")
    if tune_on is not None:
        view = tune(members, tune_on, normalisation, step=step, eval_spec=eval_spec)
    else:
        try:
            values = [float(w) for w in weights.split(",")] if weights else None
        except ValueError:
            raise RkdError(
                f"--weights {weights!r}: expected comma-separated numbers such as 0.6,0.4"
            ) from None
        view = combine_view(members, values, normalisation)
    shared = len(view)  # the first read: fuses, and counts each member's pairs not shared
    table = Table(title=f"ensemble {view.fingerprint} ({normalisation}, {shared:,} shared pairs)")
    for column in ("member", "weight", "pairs not shared"):
        table.add_column(column, justify="left" if column == "member" else "right")
    for m, w, dropped in zip(view.members, view.weights, view.dropped or [0] * len(members), strict=True):
        table.add_row(str(m.path), f"{w:g}", f"{dropped:,}")
    print_table(table)
    if view.tuning is not None:
        best = view.tuning.grid[0][1]
        out.print(f"tuned on {tune_on} ({view.tuning.queries} queries): nDCG@10 {best:.4f}", highlight=False)
        for point, ndcg in view.tuning.grid[:5]:
            out.print(f"  weights {list(point)}: nDCG@10 {ndcg:.4f}", highlight=False)
    if out_root is not None:
        written = view.materialise(out_root)
        out.print(f"ensemble store: {written.path}", highlight=False)


@app.command("export")
@cli_errors
def export(
    store: Annotated[Path, typer.Argument(help="score store: teacher folder or one-teacher root")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="file to write")],
    fmt: Annotated[
        str, typer.Option("--format", help="hofstatter, jsonl, parquet, pylate, st-pickle, trec or tsv")
    ],
    qrels: Annotated[
        str | None, typer.Option(help="dataset spec whose qrels name the positives (hofstatter)")
    ] = None,
    candidates: Annotated[
        Path | None, typer.Option(help="candidates folder whose positives are used (hofstatter)")
    ] = None,
    tag: Annotated[str, typer.Option(help="run tag of a trec file")] = "rkd",
) -> None:
    """Write a store's scores to a file other tools read; every score reads back bit-exactly."""
    from retrieval_kd.errors import RkdError
    from retrieval_kd.scores.ensemble import open_store
    from retrieval_kd.scores.exporters import export_scores

    if qrels is not None and candidates is not None:
        raise RkdError("give the positives once: --qrels or --candidates")
    positives: dict[str, set[str]] | None = None
    if qrels is not None:
        from retrieval_kd.data import load_dataset

        judged = load_dataset(qrels).qrels
        positives = {q: {d for d, g in docs.items() if g > 0} for q, docs in judged.items()}
    elif candidates is not None:
        from retrieval_kd.data.candidates import Candidates

        positives = {c.query_id: set(c.positives) for c in Candidates.load(candidates).items}
    result = export_scores(open_store(store), out_file, fmt, positives=positives, tag=tag)
    skipped = (
        f"; {result.skipped:,} pairs of queries without a positive or a negative left out"
        if result.skipped
        else ""
    )
    out.print(f"exported {result.pairs:,} scores → {out_file}{skipped}", highlight=False)

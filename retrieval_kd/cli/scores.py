"""``rkd scores ...``: commands on a score store as a whole (``verify``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from retrieval_kd.cli._common import cli_errors, out

app = typer.Typer(help="Check and repair score stores.", no_args_is_help=True)


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
        out.print(table)
    if report.whole:
        repaired = f"; {len(report.findings)} problem(s) repaired" if report.findings else ""
        out.print(f"store {store} is whole: {checked}{repaired}", highlight=False, soft_wrap=True)
        return
    left = sum(not f.fixed for f in report.findings)
    hint = "run without --dry-run to repair" if dry_run else "see the table"
    summary = f"store {store} is not whole: {left} problem(s) left ({hint}); {checked}"
    out.print(summary, highlight=False, soft_wrap=True)
    raise typer.Exit(2)
